"""What a killed run leaves behind (``kill -9``: no ``finally`` runs) is removed and reported by
the next run into the same folder, and a scene folder that is a link does not trip later runs."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from ceco3d.errors import InputError
from data_prep import prep
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    compose_config,
    synthetic_scannet,
    tiny_train_config,
)
from tests.test_prep import raw, strip_scene, write_splits

_ = raw  # a fixture
NAMES = ["scene0000_00", "scene0001_00"]


def prepare(raw: Path, out: Path, *options: str) -> int:
    for name in NAMES:
        strip_scene(raw, name)
    write_splits(raw, train=NAMES)
    return prep.main([str(raw), str(out), *options])


def test_prep_removes_and_reports_what_a_killed_run_left(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(raw, out) == 0
    staging = out / "train" / f".{NAMES[0]}.partial"  # a scene being written
    staging.mkdir()
    (staging / "coord.npy").write_bytes(b"half")
    replaced = out / "train" / f".{NAMES[1]}.replaced"  # a scene being replaced
    shutil.copytree(out / "train" / NAMES[1], replaced)
    temporary = out / ".manifest.json.x1y2.tmp"  # the manifest being written
    temporary.write_text("{")
    capsys.readouterr()
    assert prepare(raw, out) == 0
    err = capsys.readouterr().err
    assert "removed 3 leftovers of an interrupted run" in err
    for path in (staging, replaced, temporary):
        assert not path.exists() and path.relative_to(out).as_posix() in err
    assert sorted(p.name for p in (out / "train").iterdir()) == NAMES


def test_a_linked_scene_folder_is_replaced_as_a_link(raw, tmp_path):
    out = tmp_path / "out"
    assert prepare(raw, out) == 0
    elsewhere = tmp_path / "elsewhere" / NAMES[0]
    shutil.copytree(out / "train" / NAMES[0], elsewhere)
    shutil.rmtree(out / "train" / NAMES[0])
    (out / "train" / NAMES[0]).symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    for _ in range(2):  # the second --force once met the first's hidden link
        assert prepare(raw, out, "--force") == 0
        assert sorted(p.name for p in (out / "train").iterdir()) == NAMES
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before  # not written through


def test_training_removes_and_reports_temporary_checkpoint_files(
    synthetic_scannet,  # noqa: F811
    tmp_path,
    caplog,
):
    from ceco3d.engine.train import train

    def config(*overrides):
        return tiny_train_config(synthetic_scannet.prepared, tmp_path, "run", "loss=ce",
                                 "trainer.ckpt_every=1", *overrides)  # fmt: skip

    train(config("trainer.max_steps=1"), tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    killed = checkpoints / ".last.pt.k9z0.tmp"  # a write that kill -9 stopped
    killed.write_bytes(os.urandom(64))
    with caplog.at_level(logging.WARNING, logger="ceco3d.train"):
        train(config("trainer.max_steps=2", "trainer.resume=auto"), tmp_path / "run")
    assert not killed.exists()
    assert any(killed.name in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]


def test_predict_reports_the_folder_a_killed_run_left(tmp_path, caplog):
    from ceco3d.cli.predict import run as predict_run

    left = tmp_path / ".out.k9z0.tmp"  # what a killed ceco3d-predict out=OUT leaves
    left.mkdir()
    args = [f"ckpt={tmp_path / 'absent.pt'}", f"input={tmp_path}", f"out={tmp_path / 'out'}"]
    with caplog.at_level(logging.WARNING, logger="ceco3d.predict"):
        with pytest.raises(InputError):  # after the report: the checkpoint is absent
            predict_run(compose_config("predict", [*args, "device=cpu"]))
    assert any(f"{left}: left by a ceco3d-predict into" in r.getMessage() for r in caplog.records)
    assert left.is_dir()  # reported, not removed: it may be another run's, still being written
