"""Values that are wrong for this machine or for each other, a disk that fills up, files with a
byte-order mark: one paragraph naming the key or file and the fix, exit status 2 (usage) or 1
(data), found before the work starts, and no output that looks complete when it is not."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ceco3d.engine.config_checks import check_training
from ceco3d.engine.train import train
from ceco3d.errors import InputError, UsageError, report_errors
from data_prep import prep
from data_prep.synth import generate
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    compose_config,
    synthetic_scannet,
    tiny_train_config,
    train_tiny,
)
from tests.test_cli import run_script

ONE_STEP = ("loss=ce", "trainer.max_steps=1", "trainer.ckpt_every=1")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture(scope="module")
def checkpoint(synthetic_scannet, tmp_path_factory) -> Path:  # noqa: F811
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny(synthetic_scannet.prepared, runs, "one", *ONE_STEP)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.device=tpu"], "trainer.device='tpu': choose auto, cpu or cuda"),
        (["optim.lr=-0.1"], r"optim.lr=-0.1: expected a learning rate > 0"),
        (["optim.lr=abc"], r"optim.lr='abc': expected a learning rate > 0"),
        (["loss=ceco", "model.center_head=null"], "needs the model's center head"),
        (["loss=ceco", "model.center_head.proj_dim=5"],
         r"model.center_head.proj_dim=5: expected a whole number >= data.num_classes \(200\)"),
        (["loss=ceco", "model.center_head.dropout=1.5"],
         r"model.center_head.dropout=1.5: expected a probability in \[0, 1\)"),
        (["loss=ceco", "model.center_head.scale=0"], "model.center_head.scale=0"),
    ],
)  # fmt: skip
def test_bad_training_values_are_refused_before_training(overrides, message, tmp_path):
    cfg = tiny_train_config(tmp_path, tmp_path, "x", *overrides)
    with pytest.raises(UsageError, match=message):
        check_training(cfg)


@NO_CUDA
def test_cuda_on_a_machine_without_it_names_each_commands_key(tmp_path):
    from ceco3d.cli.analyze import run as analyze_run
    from ceco3d.cli.evaluate import run as evaluate_run
    from ceco3d.cli.predict import run as predict_run

    cfg = tiny_train_config(tmp_path, tmp_path, "x", "trainer.device=cuda")
    with pytest.raises(UsageError, match=r"trainer.device=cuda but torch .* sees no CUDA device"):
        check_training(cfg)
    absent = tmp_path / "absent.pt"  # never read: the device is checked first
    commands = {
        "eval": (evaluate_run, [f"ckpt={absent}"]),
        "predict": (predict_run, [f"ckpt={absent}", f"input={tmp_path}", f"out={tmp_path}/o"]),
        "analyze": (analyze_run, [f"ckpt={absent}", f"out={tmp_path}/a"]),
    }
    for name, (run, args) in commands.items():
        with pytest.raises(UsageError, match=r"^device=cuda but .* use device=cpu"):
            run(compose_config(name, [*args, "device=cuda"]))


@NO_CUDA
def test_cuda_on_a_machine_without_it_exits_2_before_the_run_folder(synthetic_scannet, tmp_path):  # noqa: F811
    args = [f"data.root={synthetic_scannet.prepared}", f"runs_root={tmp_path}", "run_name=gpu",
            "trainer.device=cuda"]  # fmt: skip
    done = run_script("ceco3d-train", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "trainer.device=cuda but torch" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "gpu").exists()


@pytest.mark.parametrize("value", [0, -3])
def test_eval_max_scenes_below_one_is_refused(value, tmp_path):
    from ceco3d.cli.evaluate import run as evaluate_run

    cfg = compose_config("eval", [f"ckpt={tmp_path / 'absent.pt'}", f"max_scenes={value}"])
    with pytest.raises(UsageError, match=f"max_scenes={value}: expected a whole number >= 1"):
        evaluate_run(cfg)


def without_val_scenes(prepared: Path, folder: Path) -> Path:
    """A copy of ``prepared`` whose manifest lists no val scene."""
    copy = folder / "prepared"
    shutil.copytree(prepared, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["val"] = []
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_an_empty_val_split_is_refused_by_eval_and_training(
    synthetic_scannet,  # noqa: F811
    checkpoint,
    tmp_path,
):
    from ceco3d.cli.evaluate import run as evaluate_run

    root = without_val_scenes(synthetic_scannet.prepared, tmp_path)
    cfg = compose_config("eval", [f"ckpt={checkpoint}", f"data.root={root}", f"out={tmp_path}/e"])
    with pytest.raises(InputError, match="the val split lists no scenes"):
        evaluate_run(cfg)
    assert not (tmp_path / "e" / "summary.json").exists()
    cfg = tiny_train_config(root, tmp_path, "run", *ONE_STEP, "trainer.val_every=1")
    with pytest.raises(InputError, match=r"the val split lists no scenes.*data.val_split="):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def full_disk(monkeypatch, spared: str = "") -> None:
    """Every file written through ``ceco3d.io.atomic_write`` fails with ENOSPC on its first
    write, except those whose name contains ``spared``."""
    real = os.fdopen

    class Full:
        def __init__(self, file):
            self.file = file

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        file = real(fd, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{fd}")
        return file if spared and spared in name else Full(file)

    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_a_full_disk_in_training_names_the_checkpoint(
    synthetic_scannet,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    cfg = tiny_train_config(synthetic_scannet.prepared, tmp_path, "full", *ONE_STEP)
    full_disk(monkeypatch)
    assert report_errors("ceco3d-train", lambda: train(cfg, tmp_path / "full")) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'full' / 'checkpoints' / 'last.pt'}: No space left on device" in err
    assert "free space on that disk" in err and "unexpected pos" not in err
    assert os.listdir(tmp_path / "full" / "checkpoints") == []  # no temporary file left


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_a_full_disk_in_eval_leaves_no_summary(checkpoint, tmp_path, monkeypatch, capsys):
    from ceco3d.cli.evaluate import run as evaluate_run

    cfg = compose_config("eval", [f"ckpt={checkpoint}", f"out={tmp_path / 'eval'}"])
    full_disk(monkeypatch, spared="summary.json")  # the disk fills after the summary
    assert report_errors("ceco3d-eval", lambda: evaluate_run(cfg)) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_bench_with_an_unwritable_out_fails_before_the_run(tmp_path, monkeypatch, capsys):
    from ceco3d.cli import bench

    monkeypatch.setattr("ceco3d.tools.bench.run.run_all", pytest.fail)  # must not get there
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as done:
        bench.main(["--quick", "--device", "cpu", "--out", str(tmp_path / "file" / "bench")])
    assert done.value.code == 2
    assert "cannot write the output folder" in capsys.readouterr().err


def test_a_byte_order_mark_in_the_label_table_and_split_lists_is_read(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert generate.main([str(raw), "--scenes", "2", "--test-scenes", "1",
                          "--vertex-spacing", "0.3"]) == 0  # fmt: skip
    for name in ("scannetv2-labels.combined.tsv", "scannetv2_train.txt", "scannetv2_test.txt"):
        path = raw / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert prep.main([str(raw), str(tmp_path / "out"), "--voxel-size", "0.1"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    train_names = (raw / "scannetv2_train.txt").read_text(encoding="utf-8-sig").split()
    assert manifest["splits"]["train"] == sorted(train_names)
    assert len(manifest["splits"]["test"]) == 1


def test_view_refuses_a_label_set_other_than_the_predictions(tmp_path, capsys):
    pytest.importorskip("open3d", reason="ceco3d-view reads scans with open3d")
    from ceco3d.cli.view import main as view_main

    scan = tmp_path / "room.xyz"
    scan.write_text("0 0 0\n1 0 0\n0 1 0\n")
    np.save(tmp_path / "room_labels.npy", np.array([3, 5, 3], np.int32))
    (tmp_path / "room_classes.json").write_text(json.dumps({"label_set": "scannet200"}))
    args = [str(scan), "--pred", str(tmp_path / "room_labels.npy"), "--out", str(tmp_path / "v")]
    assert view_main([*args, "--label-set", "scannet20"]) == 2
    err = capsys.readouterr().err
    assert "--label-set scannet20, but" in err and "holds scannet200 ids" in err
    assert not (tmp_path / "v").exists()
