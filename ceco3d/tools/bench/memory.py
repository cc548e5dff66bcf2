"""Peak resident memory of one training step by voxel count, each size in a fresh process.

    python -m ceco3d.tools.bench.memory --device cpu BATCH.pt data.root=... model=... loss=ce

builds the model, loss and optimizer for the composed training config, notes the peak resident
memory (``VmHWM``, see ``measure.peak_rss_mib``), runs one training step on the saved batch and
prints one JSON line: the peak after the step minus that baseline, and the time of a second step.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from ceco3d.device import quiet_minkowski_warnings
from ceco3d.tools.bench.measure import child_result, peak_rss_mib, synchronize
from ceco3d.tools.bench.training import TARGET_MEMORY_PCT, build_training, training_step
from ceco3d.tools.bench.workspace import (
    Preset,
    compose_config,
    config_overrides,
    save_batch,
    training_batch,
)


def measure_step(cfg: DictConfig, batch: dict, device: torch.device) -> dict:
    """Peak memory (MiB) over the baseline after one training step, and a second step's ms."""
    model, loss_fn, optimizer = build_training(cfg, device)
    step = training_step(model, loss_fn, optimizer, batch, device)
    gc.collect()
    baseline = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        gpu_baseline = torch.cuda.memory_allocated(device) / 2**20
    step()
    synchronize(device)
    result = {"baseline_mib": baseline, "peak_mib": peak_rss_mib()}
    result["step_mib"] = result["peak_mib"] - baseline
    if device.type == "cuda":  # the GPU's own: what the step allocates over model and batch
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu_step_mib"] = result["gpu_peak_mib"] - gpu_baseline
    start = time.perf_counter()
    step()
    synchronize(device)
    result["step_ms"] = 1000 * (time.perf_counter() - start)
    return result


def step_memory_key(entry: dict) -> str:
    """The step memory to compare: the GPU's allocations on a GPU (the host's resident memory
    there is the CUDA context's, not the step's), else the resident memory."""
    return "gpu_step_mib" if "gpu_step_mib" in entry else "step_mib"


def bench_memory(root: Path, preset: Preset, model: str, work: Path, device: torch.device) -> dict:
    """One fresh process for every crop size and loss of the preset (sizes in increasing
    order, the losses alternating), for ``model``."""
    results = {
        "model": model, "losses": list(preset.memory_losses), "target_pct": TARGET_MEMORY_PCT,
        "sizes": [],
    }  # fmt: skip
    for max_voxels in preset.memory_voxels:
        batch_path = work / f"batch_{max_voxels}.pt"
        overrides = config_overrides(root, preset, model, "ce", max_voxels)
        batch = training_batch(compose_config(overrides), preset.batch_scenes)
        save_batch(batch, batch_path)
        row = {"max_voxels": max_voxels, "voxels": len(batch["labels"])}
        for loss in preset.memory_losses:
            overrides = config_overrides(root, preset, model, loss, max_voxels)
            cmd = [sys.executable, "-m", "ceco3d.tools.bench.memory", "--device", device.type,
                   str(batch_path), *overrides]  # fmt: skip
            row[loss] = child_result(cmd)
        if "ceco" in row and "ce" in row:
            key = step_memory_key(row["ce"])
            row["ceco_over_ce"] = row["ceco"][key] / row["ce"][key]
        results["sizes"].append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ceco3d.tools.bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("batch", type=Path, help="torch.save'd coords, feats, labels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_intermixed_args(argv)
    quiet_minkowski_warnings()
    cfg = compose_config(args.overrides)
    batch = torch.load(args.batch)
    print(json.dumps(measure_step(cfg, batch, torch.device(args.device))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
