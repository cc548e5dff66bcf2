"""``ceco3d-eval`` (config: ``ceco3d/conf/eval.yaml``): a checkpoint's benchmark metrics on a
split, with test-time augmentation and per-scene exports on request, written to ``cfg.out``:
``summary.json`` (last, so that it stands for a complete evaluation), ``confusion.npy``,
``per_class.csv``, ``per_class_iou.png`` and the exports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ceco3d import viz
from ceco3d.data import raw_layout
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.label_sets import LabelSet
from ceco3d.data.layout import LABELLED_SPLITS
from ceco3d.data.transforms import tta_views
from ceco3d.device import resolve_device
from ceco3d.engine import distributed as dist_utils
from ceco3d.engine.build import require_scenes
from ceco3d.engine.config_checks import check_count
from ceco3d.engine.evaluate import evaluate
from ceco3d.engine.inference import (
    checkpoint_record,
    data_overrides,
    inference_model,
    posthoc_setting,
    read_for_inference,
    view_datasets,
)
from ceco3d.errors import UsageError
from ceco3d.io import json_safe, read_mesh, save_json, save_npy
from ceco3d.metrics import accuracy_per_class, format_table, iou_per_class

log = logging.getLogger("ceco3d.eval")


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt`` on ``cfg.split``; returns ``ceco3d.engine.evaluate.evaluate``'s
    results. Under DDP every rank predicts its share of the scenes and rank 0 writes."""
    labelled = cfg.split in LABELLED_SPLITS
    if not labelled and not (cfg.export.ply or cfg.export.preview):
        raise UsageError(
            f"split={cfg.split}: ScanNet withholds the labels of these scenes, so there is nothing "
            "to score; evaluate split=val, export predictions with export.ply=true or "
            "export.preview=true, or write a benchmark submission with ceco3d-submit"
        )
    check_count(cfg, "max_scenes", 1, nullable=True)
    check_count(cfg, "export.max_scenes", 0, nullable=False)
    device_type = resolve_device(cfg.device)
    dist_info = dist_utils.init_distributed(device_type)
    device = torch.device(f"cuda:{dist_info.local_rank}" if device_type == "cuda" else "cpu")
    ckpt = read_for_inference(cfg.ckpt)
    model, train_cfg = inference_model(
        ckpt, cfg.ckpt, data_overrides(cfg), str(device), cfg.posthoc_tau
    )
    record = checkpoint_record(ckpt, cfg.ckpt)
    del ckpt  # the model holds the weights now
    views = tta_views(cfg.tta.rotations, cfg.tta.flips, cfg.tta.scales) if cfg.tta.enabled else []
    datasets = view_datasets(train_cfg, cfg.split, views)
    require_scenes(datasets[0], "split")
    out = Path(cfg.out)

    results = evaluate(model, datasets, device, dist_info, cfg.max_scenes, progress=True,
                       on_scene=scene_exporter(cfg, datasets[0], out))  # fmt: skip
    if dist_info.is_main and not labelled:
        log.info("%s has no labels: wrote the exports only, no scores, to %s", cfg.split, out)
    elif dist_info.is_main:
        summary = {
            **results["point"],
            "level": "point (every mesh vertex; official ScanNet semantics)",
            "voxel": results["voxel"],
            "collapse": results["collapse"],
            **record,
            "split": cfg.split,
            "num_scenes": results["num_scenes"],
            "posthoc": posthoc_setting(train_cfg),
        }
        if "tta" in results:
            summary["tta"] = {**results["tta"], "views": len(datasets)}
        write_results(out, results, summary, datasets[0])
        log.info("point-level results (%s, %s):\n%s", cfg.split, cfg.ckpt,
                 format_table(results["point"], datasets[0].label_set))  # fmt: skip
        if "tta" in results:
            log.info("with TTA (%d views): mIoU %s", len(datasets), results["tta"]["tta_mIoU"])
        log.info("wrote %s", out)
    dist_utils.cleanup()
    return results


def write_results(out: Path, results: dict, summary: dict, dataset: ScanNetDataset) -> None:
    """The confusion matrices, the per-class table and figure, then ``summary.json``."""
    if "confusion_tta" in results:
        save_npy(out / "confusion_tta.npy", results["confusion_tta"])
    save_npy(out / "confusion.npy", results["confusion"])
    label_set: LabelSet = dataset.label_set
    train_counts = dataset.train_class_counts("point_counts")
    iou, acc = iou_per_class(results["confusion"]), accuracy_per_class(results["confusion"])
    viz.write_per_class_csv(out / "per_class.csv", label_set, iou, acc, train_counts)
    viz.plot_per_class_iou(out / "per_class_iou.png", iou, label_set, train_counts)
    # Last: a summary.json stands for a complete evaluation (a full disk stops before it).
    save_json(out / "summary.json", json_safe(summary))


def scene_exporter(
    cfg: DictConfig, dataset: ScanNetDataset, out: Path
) -> Callable[[dict, np.ndarray], None]:
    """``evaluate``'s per-scene callback: the first ``export.max_scenes`` scenes as coloured PLYs
    (with the raw mesh's faces when ``export.raw`` is given) and / or PNG previews."""
    exported: list[str] = []

    def export_scene(sample: dict, vertex_pred: np.ndarray) -> None:
        if not (cfg.export.ply or cfg.export.preview) or len(exported) >= cfg.export.max_scenes:
            return
        scene = sample["scene"]
        exported.append(scene)
        xyz = dataset.load_array(scene, "coord")
        gt = sample["point_label"] if (sample["point_label"] >= 0).any() else None
        if cfg.export.ply:
            faces = None
            if cfg.export.raw:
                faces = read_mesh(raw_layout.scene_mesh(cfg.export.raw, cfg.split, scene))[2]
            viz.export_scene_plys(out / "ply", scene, xyz, faces, vertex_pred, gt,
                                  dataset.label_set)  # fmt: skip
        if cfg.export.preview:
            viz.render_scene_preview(out / "preview" / f"{scene}.png", xyz, vertex_pred, gt,
                                     dataset.label_set)  # fmt: skip

    return export_scene
