"""The Makefile's knobs reach the scripts they are meant for."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["setup", "test", "demo"])
def test_venv_is_the_environment_that_setup_builds(target, tmp_path):
    venv = tmp_path / "other-venv"
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), target, f"VENV={venv}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    setup_lines = [line for line in dry.splitlines() if "scripts/setup.sh" in line]
    assert setup_lines, dry
    assert all(f"CECO3D_VENV={venv}" in line for line in setup_lines), dry
