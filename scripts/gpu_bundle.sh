#!/usr/bin/env bash
# Prepare, on a machine with the package registries, everything scripts/gpu_check.sh needs on a
# GPU machine without network: a folder (default: gpu_bundle/, git-ignored) to copy or carry
# next to the repository.
#
#   scripts/gpu_bundle.sh [DIR]          # make gpu-bundle
#
#   DIR/minkowski/<key>/*.whl  MinkowskiEngine built with CUDA against the GPU machine's torch
#                              (<key> as in the wheel cache: gpu_check.sh finds it by its torch)
#   DIR/wheels/                pure-Python packages ceco3d needs beyond a CUDA torch image
#   DIR/build/                 setuptools<70, wheel, ninja: gpu_check.sh's fallback build
#   DIR/sdist/                 the MinkowskiEngine source package, for that build
#   DIR/debs/                  OpenBLAS (run time and headers) and libgfortran, Debian packages
#
# Environment knobs (defaults: what this project's lent H200 machines have):
#   GPU_PYTHON   a Python of the GPU machine's version (default: python3.12)
#   GPU_TORCH    the GPU machine's torch, a CUDA build from the registry (default: torch==2.11.0)
#   TORCH_CUDA_ARCH_LIST  the GPU machine's architecture (default: 9.0, H100 / H200: one device
#                compile pass per source instead of the three of build_minkowski.sh's default)
#   plus scripts/build_minkowski.sh's (MAX_JOBS, CUDA_HOME, CECO3D_CACHE).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$(realpath -m "${1:-$ROOT/gpu_bundle}")"
GPU_PYTHON="${GPU_PYTHON:-python3.12}"
GPU_TORCH="${GPU_TORCH:-torch==2.11.0}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
CACHE="${CECO3D_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ceco3d}"
LIMIT_MIB=60  # what a GPU machine of the device tool accepts beside the repository

die() { printf '[gpu-bundle] ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf '[gpu-bundle] %s\n' "$*" >&2; }

PYVER=$("$GPU_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null) \
    || die "$GPU_PYTHON does not run; set GPU_PYTHON to a Python of the GPU machine's version"

# The GPU machine's torch, in an environment of its own: the wheel is built against it.
VENV="$CACHE/gpu-target/py$PYVER-${GPU_TORCH//[^A-Za-z0-9.]/_}"
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
    say "creating $VENV with $GPU_TORCH (a CUDA build, several GB)"
    rm -rf "$VENV"
    "$GPU_PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "$GPU_TORCH" numpy
    "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" \
        || die "pip installed a CPU-only $GPU_TORCH into $VENV (a find-links folder or index in pip's configuration? see 'pip config list'); remove $VENV and retry without it"
fi
WHEEL_DIR=$(bash "$ROOT/scripts/build_minkowski.sh" "$VENV/bin/python" cuda)

rm -rf "$DIR.tmp"
mkdir -p "$DIR.tmp"/{minkowski,wheels,build,sdist,debs}
cp -r "$WHEEL_DIR" "$DIR.tmp/minkowski/"
cp "$CACHE/sdist/MinkowskiEngine-0.5.4.tar.gz" "$DIR.tmp/sdist/"
download() {  # wheels for the GPU machine's Python, whatever this machine's is
    "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$@"
}
# ceco3d's dependencies that a CUDA torch image lacks (numpy, scipy, matplotlib, tensorboard,
# tqdm, PyYAML come with it), with their own: hydra-core -> omegaconf, antlr4 4.9.
say "downloading wheels"
download "$DIR.tmp/wheels" "hydra-core>=1.3,<1.4" "omegaconf>=2.3,<2.4" "plyfile>=1.0"
# antlr4 4.9 is published as source only: a pure-Python wheel built here.
"$VENV/bin/python" -m pip wheel -q --no-deps "antlr4-python3-runtime==4.9.3" -w "$DIR.tmp/wheels"
download "$DIR.tmp/build" "setuptools<70" wheel ninja
say "downloading the OpenBLAS Debian packages"
(cd "$DIR.tmp/debs" && apt-get download -q libopenblas0-pthread libopenblas-pthread-dev \
    libgfortran5 libquadmath0 >"$DIR.tmp/apt.log" 2>&1 && rm "$DIR.tmp/apt.log") \
    || die "apt-get download failed (run 'apt-get update' first)"

size_mib=$(( $(du -sb "$DIR.tmp" | cut -f1) / 1048576 ))
(( size_mib <= LIMIT_MIB )) || die "the bundle is $size_mib MiB, over $LIMIT_MIB MiB: $DIR.tmp"
rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
say "wrote $DIR ($size_mib MiB): $(basename "$WHEEL_DIR")"
