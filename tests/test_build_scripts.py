"""scripts/build_minkowski.sh and its patches: the CUDA patch and the CPU patch each apply on top
of the main one, and each leaves the other build alone (its sources and its wheel-cache key)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "build_minkowski.sh"
PATCHES = REPO_ROOT / "scripts" / "patches"
MAIN_PATCH = PATCHES / "minkowskiengine-0.5.4.patch"
CUDA_PATCH = PATCHES / "minkowskiengine-0.5.4-cuda.patch"
CPU_PATCH = PATCHES / "minkowskiengine-0.5.4-cpu.patch"
CACHE = Path(os.environ.get("CECO3D_CACHE", Path.home() / ".cache" / "ceco3d"))
SDIST = CACHE / "sdist" / "MinkowskiEngine-0.5.4.tar.gz"


def _patched_files(patch: Path) -> list[str]:
    lines = patch.read_text().splitlines()
    return [line.split()[1].removeprefix("b/") for line in lines if line.startswith("+++ ")]


def test_cuda_patch_touches_only_cuda_sources_and_setup():
    # The CPU build compiles .cpp/.hpp only; setup.py's changes sit in its CUDA branch.
    files = _patched_files(CUDA_PATCH)
    assert files
    assert all(f == "setup.py" or f.endswith((".cu", ".cuh")) for f in files), files


def test_cpu_patch_touches_only_the_cpu_convolution_kernel():
    # Compiled into the CPU build only; the CUDA build's CPU path keeps the released kernel.
    assert _patched_files(CPU_PATCH) == ["src/convolution_kernel.hpp"]


def _patched_sdist(tmp_path: Path, patches: tuple[Path, ...]) -> Path:
    """The sdist's sources with ``patches`` applied in order, as build_minkowski.sh does."""
    with tarfile.open(SDIST) as tar:
        tar.extractall(tmp_path, filter="data")
    src = tmp_path / "MinkowskiEngine-0.5.4"
    for patch in patches:
        with patch.open() as f:
            done = subprocess.run(["patch", "-p1", "-d", str(src)], stdin=f, capture_output=True,
                                  text=True)  # fmt: skip
        assert done.returncode == 0, f"{patch.name}: {done.stdout}{done.stderr}"
    return src


@pytest.mark.skipif(not SDIST.is_file(), reason=f"no MinkowskiEngine source package at {SDIST}")
def test_cpu_patch_applies_to_the_sdist_after_the_main_one(tmp_path):
    src = _patched_sdist(tmp_path, (MAIN_PATCH, CPU_PATCH))
    assert "scatter_add_rows" in (src / "src" / "convolution_kernel.hpp").read_text()


@pytest.mark.skipif(not SDIST.is_file(), reason=f"no MinkowskiEngine source package at {SDIST}")
def test_both_patches_apply_to_the_sdist_in_order(tmp_path):
    src = _patched_sdist(tmp_path, (MAIN_PATCH, CUDA_PATCH))
    assert "CCCL_DISABLE_NVTX" in (src / "setup.py").read_text()
    assert "thrust::unary_function" not in (src / "src" / "coordinate_map_functors.cuh").read_text()


def _key(kind: str) -> str:
    done = subprocess.run(["bash", str(SCRIPT), "--print-key", sys.executable, kind],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_cache_keys_name_torch_python_variant_and_patches():
    pytag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    cpu = hashlib.sha256(MAIN_PATCH.read_bytes() + CPU_PATCH.read_bytes()).hexdigest()[:8]
    # The CPU key hashes the main and CPU patches only, so CUDA patch edits keep the CPU wheel
    # cached (and CPU patch edits the CUDA wheel); it names the OpenBLAS it links.
    assert _key("cpu") == f"me0.5.4-torch{torch.__version__}-{pytag}-cpu-openblas_openmp-patch{cpu}"
    if torch.version.cuda is None:
        done = subprocess.run(["bash", str(SCRIPT), "--print-key", sys.executable, "cuda"],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode != 0 and "CPU-only build" in done.stderr
    else:
        both = hashlib.sha256(MAIN_PATCH.read_bytes() + CUDA_PATCH.read_bytes()).hexdigest()[:8]
        assert _key("cuda").startswith(f"me0.5.4-torch{torch.__version__}-{pytag}-cu")
        assert _key("cuda").endswith(f"-patch{both}")
