"""A built wheel runs without the checkout: the configs and class tables ship inside the package.

The wheel is built from this checkout, installed (without dependencies) into a scratch virtual
environment, and its entry points are run from an empty folder. The scratch environment borrows
this environment's third-party packages through a path entry, which adds their folder to
``sys.path`` but, unlike a site folder, does not process its ``.pth`` files, so this checkout's
editable install of ceco3d stays invisible there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The scratch environment's bin folder, with the wheel of this checkout installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    # From a copy of the tracked files: a build in the checkout would leave build/ there, whose
    # stale files a later build could package.
    source = tmp / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in tracked:
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "dist"), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = (tmp / "dist").glob("ceco3d-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ceco3d/conf/train.yaml" in names and "ceco3d/data/tables/scannet200.csv" in names
    env_dir = tmp / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    scratch_python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(scratch_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(scratch_python), "install", "--no-deps",
         "-q", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return env_dir / "bin"


def run_in(folder: Path, *command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)


def test_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    out = run_in(tmp_path, str(installed / "python"), "-c", "import ceco3d; print(ceco3d.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(installed.parent)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["ceco3d-train", "--cfg", "job", "data.root=/data/prep", "loss=ceco"], "lambda_: 0.4"),
        (["ceco3d-train", "--cfg", "job", "experiment=scannet200"], "Res16UNet34C"),
        (["ceco3d-eval", "--cfg", "job", "ckpt=x.pt"], "tta:"),
        (["ceco3d-submit", "--cfg", "job", "check=sub.zip"], "split: test"),
    ],
)
def test_wheel_entry_points_find_their_configs(installed, tmp_path, command, expected):
    out = run_in(tmp_path, str(installed / command[0]), *command[1:])
    assert out.returncode == 0, out.stdout + out.stderr
    assert expected in out.stdout
