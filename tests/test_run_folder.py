"""A run folder holds one run: a second run with the same name refuses and changes nothing, and
``trainer.resume=auto`` says whether it resumed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ceco3d.engine.train import train
from ceco3d.errors import UsageError
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    BIN,
    synthetic_scannet,
    tiny_train_config,
    train_overrides,
)
from tests.test_cli import run_script

ONE_STEP = ("loss=ce", "trainer.max_steps=1", "trainer.ckpt_every=1")


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def train_in(runs: Path, prepared: Path, name: str, *overrides: str) -> dict:
    cfg = tiny_train_config(prepared, runs, name, *ONE_STEP, *overrides)
    return train(cfg, runs / name)


@pytest.mark.slow
def test_a_second_run_with_the_same_name_refuses_and_changes_nothing(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    overrides = train_overrides(synthetic_scannet.prepared, tmp_path, "base", *ONE_STEP)
    first = run_script("ceco3d-train", *overrides, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = contents(tmp_path / "base")
    assert "checkpoints/last.pt" in before and ".hydra/config.yaml" in before

    again = run_script("ceco3d-train", *overrides, "trainer.max_steps=2", cwd=tmp_path)
    assert again.returncode == 2
    assert "trainer.resume=auto" in again.stderr and "run_name=" in again.stderr
    assert "Traceback" not in again.stderr
    assert contents(tmp_path / "base") == before  # .hydra/ and the log included


def test_the_engine_refuses_too_and_an_explicit_resume_of_the_own_checkpoint_is_allowed(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    prepared = synthetic_scannet.prepared
    train_in(tmp_path, prepared, "base")
    before = contents(tmp_path / "base")
    with pytest.raises(UsageError, match=r"already holds a run \(checkpoints/last\.pt"):
        train_in(tmp_path, prepared, "base")
    train_in(tmp_path, prepared, "other")
    other_last = tmp_path / "other" / "checkpoints" / "last.pt"
    with pytest.raises(UsageError, match="already holds a run"):  # another run's checkpoint
        train_in(tmp_path, prepared, "base", f"trainer.resume={other_last}")
    assert contents(tmp_path / "base") == before
    own_last = tmp_path / "base" / "checkpoints" / "last.pt"
    train_in(tmp_path, prepared, "base", f"trainer.resume={own_last}", "trainer.max_steps=2")


def test_resume_auto_says_whether_it_resumed_and_from_which_step(
    synthetic_scannet,  # noqa: F811
    tmp_path,
    caplog,
):
    prepared = synthetic_scannet.prepared
    with caplog.at_level(logging.INFO, logger="ceco3d.train"):
        train_in(tmp_path, prepared, "typo", "trainer.resume=auto")
    assert f"no checkpoint in {tmp_path / 'typo' / 'checkpoints'}" in caplog.text
    assert "new run from step 0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ceco3d.train"):
        train_in(tmp_path, prepared, "typo", "trainer.resume=auto", "trainer.max_steps=2")
    last = tmp_path / "typo" / "checkpoints" / "last.pt"
    assert f"resumed from {last} at step 1" in caplog.text
    assert "new run" not in caplog.text
