"""What each long-tail method costs against plain cross-entropy, on one training batch: the
training-step time (every method's step in turn, the order reversed every round), the loss
alone (forward + backward on the step's logits, and features for the center term), and the
peak memory of a step (one fresh process per method), each as a ratio to CE."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ceco3d.engine.build import build_dataset, build_loss
from ceco3d.models.segmentor import Segmentor, sparse_input
from ceco3d.tools import backbone_name
from ceco3d.tools.bench.measure import child_result, interleaved, paired_ratio, summary_ms
from ceco3d.tools.bench.memory import step_memory_key
from ceco3d.tools.bench.training import build_training, training_step
from ceco3d.tools.bench.workspace import (
    Preset,
    compose_config,
    config_overrides,
    save_batch,
    training_batch,
)

# method -> (conf/loss file, the per-voxel loss under the center term or None). The balanced
# softmax is logit_adjusted's computation (tau = 1) and is not timed apart.
LONG_TAIL_METHODS: dict[str, tuple[str, str | None]] = {
    "ce": ("ce", None),
    "ce_weighted": ("ce_weighted", None),
    "focal": ("focal", None),
    "focal_lg": ("focal_lg", None),
    "class_balanced": ("class_balanced", None),
    "class_balanced_focal": ("class_balanced_focal", None),
    "logit_adjusted": ("logit_adjusted", None),
    "lovasz": ("lovasz", None),
    "lovasz_ce": ("lovasz_ce", None),
    "seesaw": ("seesaw", None),
    "ceco": ("ceco", None),
    "ceco + lovasz_ce": ("ceco", "lovasz_ce"),
}


def method_overrides(root: Path, preset: Preset, model: str, method: str) -> list[str]:
    loss, voxel = LONG_TAIL_METHODS[method]
    overrides = config_overrides(root, preset, model, loss, preset.long_tail_voxels)
    return overrides + ([f"loss@loss.voxel={voxel}"] if voxel else [])


def loss_alone(
    model: Segmentor, loss_fn: torch.nn.Module, batch: dict, device: torch.device
) -> Callable[[], None]:
    """The loss's forward and backward (with the center branch where the model has one) on the
    logits and features the network gives ``batch``."""
    model.train()
    labels = batch["labels"].to(device)
    with torch.no_grad():
        out = model(sparse_input(batch["feats"], batch["coords"], device))
    logits, features = out["logits"].requires_grad_(), out["features"].requires_grad_()

    def step() -> None:
        outputs = {"logits": logits}
        if model.center_head is not None:
            outputs["center_logits"], outputs["center_classes"] = model.center_head(
                features, labels
            )
        loss_fn(outputs, labels)["loss"].backward()
        logits.grad = features.grad = None

    return step


def method_steps(
    cfgs: dict[str, DictConfig], batch: dict, device: torch.device
) -> tuple[dict[str, Callable[[], None]], dict[str, Callable[[], None]]]:
    """Each method's training step and loss alone. One network (and optimizer) per kind, plain
    or with the center head, is shared by the methods of that kind: only the loss differs."""
    networks: dict[bool, tuple] = {}
    steps, losses = {}, {}
    for name, cfg in cfgs.items():
        center = "center_head" in cfg.model
        if center not in networks:
            model, _, optimizer = build_training(cfg, device)
            networks[center] = model, optimizer
        model, optimizer = networks[center]
        loss_fn = build_loss(cfg, build_dataset(cfg, "train", training=True)).to(device)
        steps[name] = training_step(model, loss_fn, optimizer, batch, device)
        losses[name] = loss_alone(model, loss_fn, batch, device)
    return steps, losses


def bench_long_tail(root: Path, preset: Preset, work: Path, device: torch.device) -> dict:
    """Step time, loss time and step memory of every ``LONG_TAIL_METHODS`` entry against CE, on
    the preset's long-tail model (default: its first) and a batch of ``preset.batch_scenes``
    scenes of up to ``preset.long_tail_voxels`` voxels each."""
    model = preset.long_tail_backbone
    cfgs = {m: compose_config(method_overrides(root, preset, model, m)) for m in LONG_TAIL_METHODS}
    batch = training_batch(cfgs["ce"], preset.batch_scenes)
    steps, losses = method_steps(cfgs, batch, device)
    cpu: dict[str, list[float]] = {}
    step_times = interleaved(steps, preset.repeats, preset.warmup, device, cpu_times=cpu)
    loss_times = interleaved(losses, preset.repeats, preset.warmup, device)
    batch_path = work / "long_tail_batch.pt"
    save_batch(batch, batch_path)
    ce_ms = summary_ms(step_times["ce"])["median_ms"]
    methods = {}
    for name in LONG_TAIL_METHODS:
        overrides = method_overrides(root, preset, model, name)
        memory = child_result([sys.executable, "-m", "ceco3d.tools.bench.memory", "--device",
                               device.type, str(batch_path), *overrides])  # fmt: skip
        step, loss = summary_ms(step_times[name]), summary_ms(loss_times[name])
        methods[name] = {
            "overrides": [o for o in overrides if o.startswith("loss")],
            "step": step,
            "ratio": step["median_ms"] / ce_ms,
            "paired_ratio": paired_ratio(step_times[name], step_times["ce"]),
            "cpu_ratio": float(np.median(cpu[name]) / np.median(cpu["ce"])),
            "loss": loss,
            "loss_pct_of_ce_step": 100 * loss["median_ms"] / ce_ms,
            "memory": memory,
        }
    key = step_memory_key(methods["ce"]["memory"])
    for entry in methods.values():
        entry["memory_ratio"] = entry["memory"][key] / methods["ce"]["memory"][key]
    return {
        "model": backbone_name(cfgs["ce"]),
        "num_classes": cfgs["ce"].data.num_classes,
        "voxels": len(batch["labels"]),
        "repeats": preset.repeats,
        "warmup": preset.warmup,
        "memory_key": key,
        "methods": methods,
    }
