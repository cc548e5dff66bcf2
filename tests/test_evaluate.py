"""Evaluation with test-time augmentation and exports, and the analysis of two checkpoints,
on a model trained for a few steps on the tiny synthetic ScanNet (in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ceco3d.cli.analyze import run as run_analyze
from ceco3d.cli.evaluate import run as run_eval
from ceco3d.data.transforms import TTAView, tta_views
from ceco3d.engine.checkpoint import TRAIN_VOXEL_COUNTS, load_checkpoint
from ceco3d.engine.config_checks import check_resumable
from ceco3d.engine.inference import forward_sample, load_for_inference, view_datasets
from ceco3d.engine.train import train
from ceco3d.errors import UsageError
from ceco3d.io import read_mesh
from ceco3d.losses import log_class_prior
from tests.fixtures import compose_config, synthetic_scannet, tiny_train_config  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoints(synthetic_scannet, tmp_path_factory):  # noqa: F811
    runs = tmp_path_factory.mktemp("runs")
    paths = {}
    for loss in ("ce", "ceco"):
        cfg = tiny_train_config(
            synthetic_scannet.prepared, runs, loss, f"loss={loss}", "trainer.max_steps=3",
            "trainer.val_every=3", "trainer.ckpt_every=3",
        )  # fmt: skip
        train(cfg, runs / loss)
        paths[loss] = runs / loss / "checkpoints" / "last.pt"
    return paths


def test_tta_views_start_with_the_identity():
    views = tta_views(rotations=4, flips=True, scales=[0.9, 1.1])
    assert views[0] == TTAView()
    assert len(views) == 4 * 2 * 3 and len(set(views)) == len(views)
    sample = {"coord": np.random.default_rng(0).random((50, 3)).astype(np.float32),
              "normal": np.tile(np.float32([1, 0, 0]), (50, 1))}  # fmt: skip
    turned = TTAView(angle=np.pi / 2)(sample)
    np.testing.assert_allclose(turned["normal"], np.tile([0, 1, 0], (50, 1)), atol=1e-6)
    # Distances are kept by rotations and flips, and scaled by scales.
    d0 = np.linalg.norm(sample["coord"][0] - sample["coord"][1])
    flipped = TTAView(angle=1.0, flip_x=True, scale=1.1)(sample)
    np.testing.assert_allclose(
        np.linalg.norm(flipped["coord"][0] - flipped["coord"][1]), 1.1 * d0, rtol=1e-5
    )


def test_inference_model_has_no_center_branch(checkpoints):
    model, cfg = load_for_inference(checkpoints["ceco"])
    assert model.center_head is None
    assert cfg.model.center_head is not None  # the config still says how it was trained


def test_checkpoint_of_the_old_config_layout_evaluates_and_resumes(checkpoints, tmp_path):
    """A checkpoint written when the center head sat in loss.center_head and the backbone was a
    name loads as the same model, and its run resumes under today's config."""
    ckpt = torch.load(checkpoints["ceco"], map_location="cpu", weights_only=False)
    model_cfg, loss_cfg = ckpt["config"]["model"], ckpt["config"]["loss"]
    backbone, head = model_cfg.pop("backbone"), model_cfg.pop("center_head")
    head.pop("_target_")
    model_cfg["backbone"] = backbone["_target_"].rpartition(".")[2].lower()
    model_cfg["bn_momentum"] = backbone["bn_momentum"]
    loss_cfg["center_head"] = head
    loss_cfg["class_weighting"] = loss_cfg.pop("voxel")["class_weighting"]  # CE + center term
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    model, cfg = load_for_inference(old)
    new_model, new_cfg = load_for_inference(checkpoints["ceco"])
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(new_cfg)
    new_weights = new_model.state_dict()
    assert model.state_dict().keys() == new_weights.keys()
    assert all(torch.equal(w, new_weights[k]) for k, w in model.state_dict().items())
    check_resumable(load_checkpoint(old)["config"], new_cfg, old)  # raises on any difference


def test_views_score_the_same_vertices(checkpoints, synthetic_scannet):  # noqa: F811
    _, cfg = load_for_inference(checkpoints["ce"])
    plain, turned = view_datasets(cfg, "val", [TTAView(), TTAView(angle=np.pi)])
    a, b = plain[0], turned[0]
    assert a["scene"] == b["scene"]
    np.testing.assert_array_equal(a["point_label"], b["point_label"])
    assert len(b["inverse"]) == len(a["inverse"]) and b["inverse"].max() < len(b["grid"])


def test_eval_with_tta_and_exports(checkpoints, synthetic_scannet, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    cfg = compose_config("eval", [
        f"ckpt={checkpoints['ceco']}", f"out={out}", "tta.enabled=true", "tta.rotations=2",
        "tta.scales=[1.1]", "tta.flips=false", "export.ply=true", "export.preview=true",
        f"export.raw={synthetic_scannet.raw}",
    ])  # fmt: skip
    results = run_eval(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tta"]["views"] == 2 * 2  # 2 rotations x scales 1.0 and 1.1
    assert summary["mIoU"] == pytest.approx(results["point"]["mIoU"])
    assert summary["tta"]["tta_mIoU"] == pytest.approx(results["tta"]["tta_mIoU"])
    assert "voxel_mIoU" in summary["voxel"]
    # Single pass and TTA score the same vertices.
    assert np.load(out / "confusion.npy").sum() == np.load(out / "confusion_tta.npy").sum()
    scene = json.loads((synthetic_scannet.prepared / "manifest.json").read_text())["splits"]["val"][
        0
    ]
    xyz, _, faces = read_mesh(out / "ply" / f"{scene}_pred.ply")
    raw_xyz, _, raw_faces = read_mesh(
        synthetic_scannet.raw / "scans" / scene / f"{scene}_vh_clean_2.ply"
    )
    np.testing.assert_allclose(xyz, raw_xyz)
    np.testing.assert_array_equal(faces, raw_faces)
    assert (out / "ply" / f"{scene}_error.ply").is_file()
    assert (out / "preview" / f"{scene}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_with_posthoc_adjustment_predicts_the_adjusted_argmax(checkpoints, tmp_path):
    ckpt = checkpoints["ce"]
    run_eval(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'plain'}"]))
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["posthoc"] == {"tau": 0.0}
    run_eval(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'la'}", "posthoc_tau=0.5"]))
    summary = json.loads((tmp_path / "la" / "summary.json").read_text())
    assert summary["posthoc"]["tau"] == 0.5
    assert summary["posthoc"]["prior"] == "training voxel counts kept in the checkpoint"

    model, cfg = load_for_inference(ckpt)
    adjusted, _ = load_for_inference(ckpt, posthoc_tau=0.5)
    sample = view_datasets(cfg, "val", [])[0][0]
    z = forward_sample(model, sample, torch.device("cpu"))["logits"]
    log_pi = log_class_prior(load_checkpoint(ckpt)[TRAIN_VOXEL_COUNTS]).float()
    expected = z - 0.5 * log_pi
    got = forward_sample(adjusted, sample, torch.device("cpu"))["logits"]
    torch.testing.assert_close(got, expected)
    assert torch.equal(got.argmax(1), expected.argmax(1))

    # A checkpoint from before the counts were kept: the manifest's, said so.
    old = torch.load(ckpt, map_location="cpu", weights_only=False)
    del old[TRAIN_VOXEL_COUNTS]
    torch.save(old, tmp_path / "old.pt")
    from_manifest, old_cfg = load_for_inference(tmp_path / "old.pt", posthoc_tau=0.5)
    assert old_cfg.posthoc.prior == f"training voxel counts of the manifest in {cfg.data.root}"
    assert torch.equal(from_manifest.backbone.final.bias, adjusted.backbone.final.bias)
    with pytest.raises(UsageError, match=r"posthoc_tau='x': expected a number"):
        load_for_inference(ckpt, posthoc_tau="x")


def test_summary_counts_the_scenes_scored_not_max_scenes(checkpoints, synthetic_scannet, tmp_path):  # noqa: F811
    manifest = json.loads((synthetic_scannet.prepared / "manifest.json").read_text())
    num_val = len(manifest["splits"]["val"])
    out = tmp_path / "eval"
    cfg = compose_config("eval", [f"ckpt={checkpoints['ce']}", f"out={out}", "max_scenes=1000"])
    results = run_eval(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_scenes"] == results["num_scenes"] == num_val


def test_analyze_two_checkpoints_side_by_side(checkpoints, tmp_path):
    out = tmp_path / "analysis"
    cfg = compose_config("analyze", [
        f"ckpt=[{checkpoints['ce']},{checkpoints['ceco']}]", "names=[CE,CeCo]", f"out={out}",
    ])  # fmt: skip
    report = run_analyze(cfg)
    saved = json.loads((out / "analysis.json").read_text())
    assert set(saved["models"]) == {"CE", "CeCo"}
    for model in saved["models"].values():
        assert model["collapse"]["num_classes_present"] >= 2
        for key in ("equiangularity_features", "separation_features",
                    "equiangularity_weights", "separation_weights"):  # fmt: skip
            assert model["collapse"][key] is not None and model["collapse"][key] >= 0
        correlation = model["correlation_with_train_frequency"]
        assert -1 <= correlation["pearson_acc_point_freq"] <= 1
    assert saved["imbalance_train"]["point_imbalance_factor"] > 1
    assert report["models"]["CE"]["mIoU"] == saved["models"]["CE"]["mIoU"]
    for name in ("accuracy_vs_frequency", "frequency_train", "frequency_val", "iou_CE",
                 "iou_CeCo", "collapse_curves"):  # fmt: skip
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000, name
    assert torch.load(checkpoints["ce"], weights_only=False)["step"] == 3
