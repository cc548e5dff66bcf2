"""The neural-collapse and imbalance analysis of one or more checkpoints, as JSON and plots.

Per model: the collapse statistics of the per-class feature centers and classifier weights on
the analysed split, per-class accuracy, and its Pearson correlation with the training split's
point (voxel) and center (scene) frequencies. Per split: the imbalance factors from the data
manifest. Training curves of the collapse statistics come from each run's TensorBoard log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ceco3d import viz
from ceco3d.analysis import plots
from ceco3d.analysis.imbalance import imbalance_statistics, normalized_frequency
from ceco3d.analysis.tb_logs import read_scalars
from ceco3d.engine.checkpoint import load_checkpoint
from ceco3d.engine.evaluate import evaluate
from ceco3d.engine.inference import (
    checkpoint_record,
    inference_model,
    view_datasets,
)
from ceco3d.errors import UsageError
from ceco3d.io import json_safe, save_json
from ceco3d.metrics import accuracy_per_class, iou_per_class
from ceco3d.neural_collapse import COLLAPSE_TAGS

log = logging.getLogger("ceco3d.analyze")


def split_counts(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxel counts, scene counts) per class of ``split`` from the manifest."""
    stats = dataset.manifest["stats"][split][dataset.label_set.name]
    return np.asarray(stats["voxel_counts"]), np.asarray(stats["scene_counts"])


def model_names(ckpts: list[str], names: list[str] | None) -> list[str]:
    """One name per checkpoint, each a plain file name (the plots are named after it, inside
    ``out``) and no two alike. By default the run folder's name, with the checkpoint's
    (``run_best``, ``run_last``) where two checkpoints come from one run."""
    if names is None:
        runs = [Path(c).resolve().parent.parent.name for c in ckpts]
        names = [f"{r}_{Path(c).stem}" if runs.count(r) > 1 else r
                 for r, c in zip(runs, ckpts, strict=True)]  # fmt: skip
    if len(names) != len(ckpts):
        raise UsageError(f"names: {len(names)} names for {len(ckpts)} checkpoints")
    for name in map(str, names):
        if not name or Path(name).name != name or name.startswith(".") or "\\" in name:
            raise UsageError(
                f"names: {name!r} is not a plain file name (the plots are named after it, "
                "inside out=); use letters, digits, '-' and '_'"
            )
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        raise UsageError(f"names: {repeated!r} names two checkpoints; give each its own name")
    return list(map(str, names))


def analyze(
    ckpts: list[str],
    names: list[str] | None,
    split: str,
    out: Path,
    device: torch.device,
    data_overrides: list[str] = (),
    max_scenes: int | None = None,
) -> dict:
    names = model_names(ckpts, names)
    report: dict = {"split": split, "models": {}}
    accuracies, ious, curves, label_set = {}, {}, {}, None
    # Every checkpoint is loaded before any is evaluated: a mismatch fails before the work.
    records = {c: load_checkpoint(c) for c in ckpts}
    loaded = [inference_model(records[c], c, data_overrides, device=str(device)) for c in ckpts]
    records = {c: checkpoint_record(ckpt, c) for c, ckpt in records.items()}
    label_sets = {c: cfg.data.label_set for c, (_, cfg) in zip(ckpts, loaded, strict=True)}
    if len(set(label_sets.values())) > 1:
        listed = ", ".join(f"{c} ({s})" for c, s in label_sets.items())
        raise UsageError(
            f"the checkpoints were trained on different label sets: {listed}; analyze "
            "checkpoints of one label set together"
        )
    for name, ckpt, (model, cfg) in zip(names, ckpts, loaded, strict=True):
        dataset = view_datasets(cfg, split, [])[0]
        label_set = dataset.label_set
        log.info("%s: evaluating %s on %d %s scenes", name, ckpt, len(dataset), split)
        results = evaluate(model, dataset, device, max_scenes=max_scenes, progress=True)
        acc = accuracy_per_class(results["confusion"])
        train_voxels, train_scenes = split_counts(dataset, "train")
        accuracies[name] = acc
        ious[name] = iou_per_class(results["confusion"])
        report["models"][name] = {
            **records[ckpt],
            "collapse": results["collapse"],
            "correlation_with_train_frequency": imbalance_statistics(
                train_voxels, train_scenes, acc
            ),
            "mIoU": results["point"]["mIoU"],
            **{f"mIoU_{g}": results["point"].get(f"mIoU_{g}") for g in ("head", "common", "tail")},
        }
        curves[name] = read_scalars(
            Path(ckpt).resolve().parent.parent, list(COLLAPSE_TAGS.values())
        )
        viz.plot_per_class_iou(out / f"iou_{name}.png", ious[name], label_set, train_voxels)

    for counts_split in sorted({"train", split}):
        if counts_split in dataset.manifest["stats"]:
            voxels, scenes = split_counts(dataset, counts_split)
            stats = imbalance_statistics(voxels, scenes, np.full(len(voxels), np.nan))
            report[f"imbalance_{counts_split}"] = {
                k: stats[k]
                for k in ("point_imbalance_factor", "center_imbalance_factor",
                          "point_classes_left_out", "center_classes_left_out")
            }  # fmt: skip
            plots.plot_frequency_histograms(
                out / f"frequency_{counts_split}.png", voxels, scenes, label_set.names
            )
    train_voxels, train_scenes = split_counts(dataset, "train")
    plots.plot_accuracy_vs_frequency(
        out / "accuracy_vs_frequency.png",
        accuracies,
        normalized_frequency(train_voxels),
        normalized_frequency(train_scenes),
        class_names=label_set.names,
    )
    plots.plot_iou_by_frequency(out / "iou_by_train_frequency.png", ious, train_voxels, label_set)
    if any(any(values for values in run.values()) for run in curves.values()):
        plots.plot_collapse_curves(out / "collapse_curves.png", curves)
    save_json(out / "analysis.json", json_safe(report))
    return report
