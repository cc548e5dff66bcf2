"""Ordinary mistakes get one paragraph naming the key or file and the fix, exit status 2 (usage)
or 1 (data), no traceback, and are caught before the work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ceco3d.analysis.report import analyze
from ceco3d.engine.config_checks import check_training
from ceco3d.engine.inference import load_for_inference
from ceco3d.engine.train import train
from ceco3d.errors import UsageError, report_errors
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    synthetic_scannet,
    tiny_train_config,
    train_overrides,
    train_tiny,
)
from tests.test_cli import run_script

ONE_STEP = ("loss=ce", "trainer.max_steps=1", "trainer.ckpt_every=1")


def trained(runs: Path, prepared: Path, name: str, *overrides: str) -> Path:
    return train_tiny(prepared, runs, name, *ONE_STEP, *overrides)


@pytest.fixture(scope="module")
def scannet20_ckpt(synthetic_scannet, tmp_path_factory) -> Path:  # noqa: F811
    runs = tmp_path_factory.mktemp("runs")
    return trained(runs, synthetic_scannet.prepared, "s20", "data=scannet20")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("trainer.max_steps", "two"),
        ("trainer.max_steps", 0),
        ("trainer.ckpt_every", 2.5),
        ("data.batch_size", True),
        ("data.max_voxels", -1),
        ("trainer.grad_clip", "big"),
        ("data.voxel_size", 0),
        ("data.num_classes", 20),  # with the default data=scannet200
        ("data.features", "rgb"),
    ],
)
def test_bad_training_values_name_the_key(key, value, tmp_path):
    cfg = tiny_train_config(tmp_path, tmp_path, "x")
    OmegaConf.update(cfg, key, value)
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        check_training(cfg)


def test_resuming_with_another_loss_or_model_is_refused_before_loading(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    prepared = synthetic_scannet.prepared
    last = trained(tmp_path, prepared, "run")
    before = last.read_bytes()
    for change, key in (("loss=ceco", "loss._target_"), ("model=minkunet18a", "model.backbone")):
        cfg = tiny_train_config(
            prepared, tmp_path, "run", *ONE_STEP, change, "trainer.resume=auto",
            "trainer.max_steps=2",
        )  # fmt: skip
        with pytest.raises(UsageError, match=f"{last} was made with other settings") as error:
            train(cfg, tmp_path / "run")
        assert key in str(error.value) and "another run_name" in str(error.value)
        assert len(str(error.value)) < 800  # a paragraph, not a state_dict listing
    assert last.read_bytes() == before


def test_a_batch_of_one_voxel_names_max_voxels(synthetic_scannet, tmp_path):  # noqa: F811
    cfg = tiny_train_config(
        synthetic_scannet.prepared, tmp_path, "tiny", *ONE_STEP, "data.max_voxels=1",
        "data.batch_size=1",
    )  # fmt: skip
    with pytest.raises(UsageError, match=r"data\.max_voxels=1.*raise data\.max_voxels"):
        train(cfg, tmp_path / "tiny")


def test_inference_overrides_that_the_weights_cannot_serve_are_refused(scannet20_ckpt):
    with pytest.raises(UsageError, match=r"data\.num_classes=20 but data\.label_set=scannet200"):
        load_for_inference(scannet20_ckpt, ["data.label_set=scannet200"])
    both = ["data.label_set=scannet200", "data.num_classes=200"]
    with pytest.raises(UsageError, match=r"data\.label_set='scannet20' \(now 'scannet200'\)"):
        load_for_inference(scannet20_ckpt, both)


def test_analyze_refuses_checkpoints_of_different_label_sets_before_evaluating(
    synthetic_scannet,  # noqa: F811
    scannet20_ckpt,
    tmp_path,
    monkeypatch,
):
    ckpt200 = trained(tmp_path, synthetic_scannet.prepared, "s200")
    monkeypatch.setattr("ceco3d.analysis.report.evaluate", pytest.fail)  # must not get there
    with pytest.raises(UsageError, match="different label sets") as error:
        analyze([str(scannet20_ckpt), str(ckpt200)], None, "val", tmp_path, torch.device("cpu"))
    assert "(scannet20)" in str(error.value) and "(scannet200)" in str(error.value)


def test_debug_shows_the_traceback(monkeypatch, capsys):
    def work():
        raise UsageError("x=1: bad")

    assert report_errors("ceco3d-x", work) == 2
    assert capsys.readouterr().err == "ceco3d-x: error: x=1: bad\n"
    monkeypatch.setenv("CECO3D_DEBUG", "1")
    with pytest.raises(UsageError):
        report_errors("ceco3d-x", work)


@pytest.mark.slow
def test_command_line_mistakes_exit_with_one_paragraph(
    synthetic_scannet,  # noqa: F811
    scannet20_ckpt,
    tmp_path,
):
    base = train_overrides(synthetic_scannet.prepared, tmp_path, "cli", *ONE_STEP)
    no_root = [o for o in base if not o.startswith("data.root=")]
    cases = [
        ("ceco3d-train", no_root, 2, "data.root is required: add data.root=..."),
        ("ceco3d-train", [*base, "trainer.max_steps=two"], 2, "trainer.max_steps='two'"),
        ("ceco3d-train", [*base, "splt=val"], 2, "splt"),
        ("ceco3d-train", [*base, f"data.root={synthetic_scannet.raw}"], 1,
         f"looks like raw ScanNet (it has scans/): prepare it into a folder of its own with "
         f"`ceco3d-prep {synthetic_scannet.raw} PREPARED`"),
        ("ceco3d-eval", [f"ckpt={scannet20_ckpt}", "split=test"], 2,
         "ScanNet withholds the labels of these scenes"),
        ("ceco3d-eval", [f"ckpt={scannet20_ckpt}", "+data.label_set=scannet200"], 2,
         "data.num_classes=20 but data.label_set=scannet200"),
        ("ceco3d-eval", [], 2, "ckpt is required"),
    ]  # fmt: skip
    for name, args, code, message in cases:
        done = run_script(name, *args, cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == code, (args, output[-2000:])
        assert message in output, (args, output[-2000:])
        assert "Traceback" not in output
    assert not (tmp_path / "cli" / "checkpoints").exists()  # nothing ran


def test_eval_of_the_unlabelled_test_split_says_why_before_loading(tmp_path):
    from ceco3d.cli.evaluate import run as evaluate_run
    from tests.fixtures import compose_config

    cfg = compose_config("eval", [f"ckpt={tmp_path / 'absent.pt'}", "split=test"])
    with pytest.raises(UsageError, match="split=test: ScanNet withholds the labels"):
        evaluate_run(cfg)  # before the (absent) checkpoint is read
