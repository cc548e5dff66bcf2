"""The data side of a training step (load + augment + voxelize + collate) and of evaluation
(voxel predictions back to mesh vertices, confusion accumulation)."""

from __future__ import annotations

import time

import numpy as np
import torch
from omegaconf import DictConfig

from ceco3d.data.sampler import build_train_loader
from ceco3d.engine.build import build_dataset
from ceco3d.metrics import ConfusionMatrix
from ceco3d.tools.bench.measure import interleaved, summary_ms

LOADER_WORKERS = (0, 2)


def _loader_round(dataset, cfg: DictConfig, workers: int, batches: int, start: int) -> float:
    """Seconds to draw steps ``start .. start + batches - 1`` from a fresh training loader
    (worker start-up included, as every resumed or restarted run pays it)."""
    loader = build_train_loader(
        dataset, cfg.data.batch_size, start + batches, cfg.seed, workers, start_step=start
    )
    begin = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - begin


def bench_loader(cfg: DictConfig, batches: int, repeats: int, warmup: int, step_ms: float) -> dict:
    """Per-batch time of the training loader with 0 and 2 workers, in alternating rounds (both
    draw the same batches in a round), against ``step_ms``, the model's training-step time."""
    dataset = build_dataset(cfg, "train", training=True)
    per_batch: dict[int, list[float]] = {w: [] for w in LOADER_WORKERS}
    for round_index in range(warmup + repeats):
        for workers in LOADER_WORKERS:
            seconds = _loader_round(dataset, cfg, workers, batches, round_index * batches)
            if round_index >= warmup:
                per_batch[workers].append(seconds / batches)
    results = {
        "batch_size": cfg.data.batch_size,
        "max_voxels": cfg.data.max_voxels,
        "batches_per_round": batches,
        "step_ms": step_ms,
    }
    for workers, seconds in per_batch.items():
        batch = summary_ms(seconds)
        batch["samples_per_s"] = cfg.data.batch_size * 1000 / batch["median_ms"]
        batch["ratio_to_step"] = batch["median_ms"] / step_ms
        results[f"workers_{workers}"] = batch
    return results


def bench_evaluation(cfg: DictConfig, repeats: int, warmup: int, seed: int = 0) -> dict:
    """Vertices/s of the evaluation code after the model, on the first validation scene with
    seeded random voxel logits: argmax + gather through the inverse map, then
    ``ConfusionMatrix.update`` (as ``ceco3d.engine.evaluate`` does per scene)."""
    sample = build_dataset(cfg, cfg.data.val_split, training=False)[0]
    num_classes = cfg.data.num_classes
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(
        rng.standard_normal((len(sample["grid"]), num_classes), dtype=np.float32)
    )
    inverse, point_label = sample["inverse"], sample["point_label"]
    matrix = ConfusionMatrix(num_classes)
    vertex_pred = None  # set by back_project, which runs first in every round

    def back_project() -> None:
        nonlocal vertex_pred
        vertex_pred = logits.argmax(1).cpu().numpy()[inverse]

    def accumulate() -> None:
        matrix.update(point_label, vertex_pred)

    times = interleaved(
        {"back_projection": back_project, "confusion_update": accumulate}, repeats, warmup
    )
    vertices = int(sample["num_points"])
    results = {"vertices": vertices, "voxels": len(sample["grid"]), "num_classes": num_classes}
    for name, seconds in times.items():
        results[name] = summary_ms(seconds)
        results[name]["vertices_per_s"] = vertices * 1000 / results[name]["median_ms"]
    total_ms = sum(results[name]["median_ms"] for name in times)
    results["total"] = {"median_ms": total_ms, "vertices_per_s": vertices * 1000 / total_ms}
    return results
