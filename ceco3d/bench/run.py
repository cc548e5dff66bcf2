"""Every measurement, in the order the data flows: synthetic raw scenes -> preprocessing ->
training step -> inference -> loader (against the step) -> evaluation -> memory."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ceco3d.bench.data import bench_evaluation, bench_loader
from ceco3d.bench.measure import describe_machine, stopwatch
from ceco3d.bench.memory import bench_memory
from ceco3d.bench.prep import bench_prep, prepared_root
from ceco3d.bench.training import bench_inference, bench_training
from ceco3d.bench.workspace import (
    LOSSES,
    Preset,
    compose_config,
    config_overrides,
    synthesize,
    training_batch,
)

# bench.json's sections, in the numbering of the report.
SECTIONS = ("training_step", "inference", "data_loader", "preprocessing", "evaluation", "memory")


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_all(preset: Preset, device: torch.device) -> dict:
    """Results of every section (keys ``SECTIONS``), ``machine``, and wall seconds (``wall_s``
    of the whole run, ``section_wall_s`` of each part); the synthetic data lives in a temporary
    folder that is removed afterwards."""
    start = time.perf_counter()
    repeats, warmup = preset.repeats, preset.warmup
    results: dict = {"machine": describe_machine(device)}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ceco3d-bench-") as tmp:
        work = Path(tmp)
        _say(f"synthesizing {preset.scenes} scenes, vertex spacing {preset.vertex_spacing} m")
        with stopwatch(wall, "synthesis"):
            synthesize(work / "raw", preset)
        _say("4. preprocessing: ceco3d-prep -j 1 vs -j 2")
        with stopwatch(wall, "preprocessing"):
            results["preprocessing"] = bench_prep(
                work / "raw", work / "prepared", preset.voxel_size, repeats, warmup
            )
        root = prepared_root(work / "prepared")
        cfgs = {
            model: {loss: compose_config(config_overrides(root, preset, model, loss))
                    for loss in LOSSES}
            for model in preset.models
        }  # fmt: skip
        first = preset.models[0]
        # one batch (scenes and crops) for every model
        batch = training_batch(cfgs[first]["ce"], preset.batch_scenes)
        results["training_step"] = {}
        for model in preset.models:
            _say(f"1. training step: ce vs ceco, {model}, {len(batch['labels'])} voxels")
            with stopwatch(wall, f"training_step_{model}"):
                results["training_step"][model], trained = bench_training(
                    cfgs[model], batch, device, repeats, warmup
                )
            if model == first:
                _say(f"2. inference: ce vs ceco (deployed, segmentor), {model}")
                with stopwatch(wall, "inference"):
                    results["inference"] = bench_inference(
                        cfgs[model], trained, batch, device, repeats, warmup
                    )
            del trained
        _say("3. data path: loader with 0 vs 2 workers")
        with stopwatch(wall, "data_loader"):
            step_ms = results["training_step"][first]["ce"]["median_ms"]
            results["data_loader"] = bench_loader(
                cfgs[first]["ce"], preset.loader_batches, repeats, warmup, step_ms
            )
        _say("5. evaluation: back-projection and confusion update")
        with stopwatch(wall, "evaluation"):
            results["evaluation"] = bench_evaluation(cfgs[first]["ce"], repeats, warmup)
        results["memory"] = {}
        for model in preset.models:
            sizes = ", ".join(map(str, preset.memory_voxels))
            _say(f"6. memory: {model}, {sizes} voxels, fresh processes")
            with stopwatch(wall, f"memory_{model}"):
                results["memory"][model] = bench_memory(root, preset, model, work, device)
    results["section_wall_s"] = wall
    results["wall_s"] = time.perf_counter() - start
    return {key: results[key] for key in ("machine", *SECTIONS, "section_wall_s", "wall_s")}
