"""CeCo's cost: training-step time with and without the center-collapse branch on the same
batch, and inference time of the deployed models (which should not differ at all)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ceco3d.engine.build import build_dataset, build_loss, build_model
from ceco3d.engine.inference import predict_points
from ceco3d.models.segmentor import Segmentor, sparse_input
from ceco3d.tools import backbone_name
from ceco3d.tools.bench.measure import interleaved, paired_ratio, summary_ms

TARGET_OVERHEAD_PCT = 1.0  # training-step time, CeCo over CE
TARGET_MEMORY_PCT = 3.0  # peak step memory, CeCo over CE
PAPER_OVERHEAD_PCT = 10.2  # CeCo paper's reported training-time overhead


def build_training(
    cfg: DictConfig, device: torch.device
) -> tuple[Segmentor, torch.nn.Module, torch.optim.Optimizer]:
    """``(model, loss_fn, optimizer)`` as ``ceco3d.engine.train`` builds them, same seed."""
    train_set = build_dataset(cfg, "train", training=True)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train_set).to(device)
    loss_fn = build_loss(cfg, train_set).to(device)
    optimizer = instantiate(cfg.optim)(params=[p for p in model.parameters() if p.requires_grad])
    return model, loss_fn, optimizer


def training_step(
    model: Segmentor,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    device: torch.device,
) -> Callable[[], None]:
    """One step of the training loop (forward, backward, SGD) on ``batch``."""

    def step() -> None:
        model.train()
        # A new SparseTensor every step, as in training: ME caches kernel maps per tensor.
        x = sparse_input(batch["feats"], batch["coords"], device)
        labels = batch["labels"].to(device)
        parts = loss_fn(model(x, labels), labels)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()

    return step


def branch_step(model: Segmentor, batch: dict, device: torch.device) -> Callable[[], None]:
    """The center branch alone, forward and backward to the backbone's features, on the
    features the backbone gives ``batch``: what CeCo adds to a step, measured directly (the
    difference of two whole steps is lost in their noise on a shared machine)."""
    model.train()
    labels = batch["labels"].to(device)
    with torch.no_grad():
        features = model(sparse_input(batch["feats"], batch["coords"], device))["features"]
    features.requires_grad_()

    def step() -> None:
        logits, classes = model.center_head(features, labels)
        torch.nn.functional.cross_entropy(logits, classes).backward()
        features.grad = None

    return step


def forward_pass(model: Segmentor, batch: dict, device: torch.device) -> Callable[[], None]:
    @torch.no_grad()
    def forward() -> None:
        model(sparse_input(batch["feats"], batch["coords"], device))

    return forward


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_training(
    cfgs: dict[str, DictConfig], batch: dict, device: torch.device, repeats: int, warmup: int
) -> tuple[dict, dict[str, Segmentor]]:
    """Step time of ``loss=ce`` against ``loss=ceco``; returns the results and the two models
    after their steps (the "trained" models of the inference benchmark)."""
    built = {loss: build_training(cfg, device) for loss, cfg in cfgs.items()}
    steps = {loss: training_step(*parts, batch, device) for loss, parts in built.items()}
    steps["branch"] = branch_step(built["ceco"][0], batch, device)
    cpu: dict[str, list[float]] = {}
    times = interleaved(steps, repeats, warmup, device, cpu_times=cpu)
    branch = summary_ms(times["branch"])
    ce, ceco = summary_ms(times["ce"]), summary_ms(times["ceco"])
    ratio = ceco["median_ms"] / ce["median_ms"]
    cpu_ratio = float(np.median(cpu["ceco"]) / np.median(cpu["ce"]))
    results = {
        "model": backbone_name(cfgs["ce"]),
        "num_classes": cfgs["ce"].data.num_classes,
        "voxels": len(batch["labels"]),
        "warmup": warmup,
        "ce": ce,
        "ceco": ceco,
        "ratio": ratio,
        "paired_ratio": paired_ratio(times["ceco"], times["ce"]),
        "overhead_pct": 100 * (ratio - 1),
        # CPU time of this process: what the branch costs, whatever else runs on the machine
        "cpu": {"ce": summary_ms(cpu["ce"]), "ceco": summary_ms(cpu["ceco"])},
        "cpu_ratio": cpu_ratio,
        "cpu_paired_ratio": paired_ratio(cpu["ceco"], cpu["ce"]),
        "cpu_overhead_pct": 100 * (cpu_ratio - 1),
        # The branch alone (forward + backward), as a share of the CE step
        "branch": branch,
        "branch_pct": 100 * branch["median_ms"] / ce["median_ms"],
        "branch_cpu_pct": 100 * float(np.median(cpu["branch"]) / np.median(cpu["ce"])),
        "target_overhead_pct": TARGET_OVERHEAD_PCT,
        "paper_overhead_pct": PAPER_OVERHEAD_PCT,
    }
    return results, {loss: parts[0] for loss, parts in built.items()}


def bench_inference(
    cfgs: dict[str, DictConfig],
    trained: dict[str, Segmentor],
    batch: dict,
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict:
    """Eval-mode forward time of the CE model, of the CeCo model deployed as inference does
    (``inference_state_dict()`` loaded into a plain model) and of the CeCo segmentor itself."""
    deployed = build_model(cfgs["ceco"]).to(device)
    deployed.load_state_dict(trained["ceco"].inference_state_dict())
    models = {"ce": trained["ce"], "ceco_deployed": deployed, "ceco_segmentor": trained["ceco"]}
    for model in models.values():
        model.eval()
    times = interleaved(
        {name: forward_pass(model, batch, device) for name, model in models.items()},
        repeats,
        warmup,
        device,
    )
    results = {"voxels": len(batch["labels"]), "warmup": warmup}
    for name, model in models.items():
        results[name] = {**summary_ms(times[name]), "parameters": num_parameters(model)}
        if name != "ce":
            results[name]["ratio"] = results[name]["median_ms"] / results["ce"]["median_ms"]
            results[name]["paired_ratio"] = paired_ratio(times[name], times["ce"])
    results["deployed_parameters_equal_ce"] = (
        results["ceco_deployed"]["parameters"] == results["ce"]["parameters"]
    )
    results["scene"] = bench_scene(cfgs["ce"], trained["ce"], repeats, warmup, device)
    return results


def largest_scene(cfg: DictConfig) -> dict:
    """The points (``coord``, ``color``, ``normal`` where the features use it) of the prepared
    train scene with the most points, as ceco3d-predict hands them to the model."""
    dataset = build_dataset(cfg, "train", training=False)
    scene = max(dataset.scenes, key=lambda s: len(dataset.load_array(s, "coord")))
    names = ("coord", "color") if cfg.data.features == "color" else ("coord", "color", "normal")
    points = {name: dataset.load_array(scene, name).astype(np.float32) for name in names}
    return {"scene": scene, "points": points}


def bench_scene(
    cfg: DictConfig, model: Segmentor, repeats: int, warmup: int, device: torch.device
) -> dict:
    """A whole scene segmented as ceco3d-predict and ceco3d-eval do (``predict_points``: voxelize,
    voxel-mean features, the model, each point its voxel's class back on the host), without
    reading or writing files: wall ms per scene."""
    scene = largest_scene(cfg)
    features, voxel_size = cfg.data.features, float(cfg.data.voxel_size)
    voxels: list[int] = []

    def segment() -> None:
        _, inverse = predict_points(model, scene["points"], features, voxel_size)
        voxels[:] = [int(inverse.max()) + 1]

    times = interleaved({"scene": segment}, repeats, warmup, device)["scene"]
    return {"scene": scene["scene"], "points": len(scene["points"]["coord"]), "voxels": voxels[0],
            **summary_ms(times)}  # fmt: skip
