"""Every measurement, in the order the data flows: synthetic raw scenes -> preprocessing ->
training step -> inference -> loader (against the step) -> evaluation -> memory, then
``ceco3d-predict`` on large point clouds (which needs nothing from the others, so it can also run
alone)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ceco3d.tools import COMPARED_LOSSES
from ceco3d.tools.bench.cpu import bench_cpu
from ceco3d.tools.bench.data import bench_evaluation, bench_loader
from ceco3d.tools.bench.long_tail import bench_long_tail
from ceco3d.tools.bench.measure import describe_machine, stopwatch
from ceco3d.tools.bench.memory import bench_memory
from ceco3d.tools.bench.predict import bench_predict
from ceco3d.tools.bench.prep import bench_prep, prepare, prepared_root
from ceco3d.tools.bench.training import bench_inference, bench_training
from ceco3d.tools.bench.workspace import (
    Preset,
    compose_config,
    config_overrides,
    synthesize,
    training_batch,
)

# bench.json's sections, in the numbering of the report.
SECTIONS = (
    "training_step", "inference", "data_loader", "preprocessing", "evaluation", "memory",
    "predict", "cpu_speed",
)  # fmt: skip


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _predict_section(
    preset: Preset, device: torch.device, work: Path, results: dict, wall: dict
) -> None:
    sizes = ", ".join(f"{n:,}" for n in preset.predict_points)
    _say(f"7. ceco3d-predict: {preset.models[0]}, point clouds of {sizes} points, {device.type}")
    with stopwatch(wall, "predict"):
        results["predict"] = bench_predict(work, preset, device.type)


def run_all(
    preset: Preset, device: torch.device, only: tuple[str, ...] | None = None,
    before_python: str | None = None,
) -> dict:  # fmt: skip
    """Results of every section (keys ``SECTIONS``; with ``only``, of those alone), ``machine``,
    and wall seconds (``wall_s`` of the whole run, ``section_wall_s`` of each part); the
    synthetic data lives in a temporary folder that is removed afterwards. ``before_python``:
    the interpreter of the CPU-speed section's ``before`` processes (see ``bench.cpu``)."""
    start = time.perf_counter()
    results: dict = {"machine": describe_machine(device)}
    wall: dict[str, float] = {}
    sections = SECTIONS if only is None else only
    if not preset.cpu_rounds:  # a preset without CPU cases (gpu)
        sections = tuple(name for name in sections if name != "cpu_speed")
    with tempfile.TemporaryDirectory(prefix="ceco3d-bench-") as tmp:
        work = Path(tmp)
        if set(sections) - {"predict"}:
            _model_sections(preset, device, work, sections, results, wall, before_python)
        if "predict" in sections:
            _predict_section(preset, device, work, results, wall)
    return _finish(results, wall, start, sections)


def _model_sections(
    preset: Preset, device: torch.device, work: Path, sections: tuple[str, ...], results: dict,
    wall: dict, before_python: str | None,
) -> None:  # fmt: skip
    """Sections 1-6, 8 and 9, on synthetic scenes prepared here (timed as section 4 when
    asked for)."""
    repeats, warmup = preset.repeats, preset.warmup
    _say(f"synthesizing {preset.scenes} scenes, vertex spacing {preset.vertex_spacing} m")
    with stopwatch(wall, "synthesis"):
        synthesize(work / "raw", preset)
    if "preprocessing" in sections:
        _say("4. preprocessing: ceco3d-prep -j 1 vs -j 2")
        with stopwatch(wall, "preprocessing"):
            results["preprocessing"] = bench_prep(
                work / "raw", work / "prepared", preset.voxel_size, repeats, warmup
            )
    else:
        prepare(work / "raw", work / "prepared", preset.voxel_size)
    root = prepared_root(work / "prepared")
    cfgs = {
        model: {loss: compose_config(config_overrides(root, preset, model, loss))
                for loss in COMPARED_LOSSES}
        for model in preset.models
    }  # fmt: skip
    first = preset.models[0]
    batch = training_batch(cfgs[first]["ce"], preset.batch_scenes)  # one batch for every model
    if "training_step" in sections:
        results["training_step"] = {}
        for model in preset.models:
            _say(f"1. training step: ce vs ceco, {model}, {len(batch['labels'])} voxels")
            with stopwatch(wall, f"training_step_{model}"):
                results["training_step"][model], trained = bench_training(
                    cfgs[model], batch, device, repeats, warmup
                )
            if model == first and "inference" in sections:
                _say(f"2. inference: ce vs ceco (deployed, segmentor), {model}")
                with stopwatch(wall, "inference"):
                    results["inference"] = bench_inference(
                        cfgs[model], trained, batch, device, repeats, warmup
                    )
            del trained
    if "data_loader" in sections:
        _say("3. data path: loader with 0 vs 2 workers")
        with stopwatch(wall, "data_loader"):
            step_ms = results["training_step"][first]["ce"]["median_ms"]
            results["data_loader"] = bench_loader(
                cfgs[first]["ce"], preset.loader_batches, repeats, warmup, step_ms
            )
    if "evaluation" in sections:
        _say("5. evaluation: back-projection and confusion update")
        with stopwatch(wall, "evaluation"):
            results["evaluation"] = bench_evaluation(cfgs[first]["ce"], repeats, warmup)
    if "memory" in sections:
        results["memory"] = {}
        for model in preset.models:
            sizes = ", ".join(map(str, preset.memory_voxels))
            _say(f"6. memory: {model}, {sizes} voxels, fresh processes")
            with stopwatch(wall, f"memory_{model}"):
                results["memory"][model] = bench_memory(root, preset, model, work, device)
    if "long_tail" in sections:
        model, voxels = preset.long_tail_backbone, preset.long_tail_voxels
        _say(f"9. long-tail losses against CE: {model}, {voxels:,} voxels")
        with stopwatch(wall, "long_tail"):
            results["long_tail"] = bench_long_tail(root, preset, work, device)
    if "cpu_speed" in sections:
        _say("8. CPU training speed: whole processes, threading before vs after")
        with stopwatch(wall, "cpu_speed"):
            results["cpu_speed"] = bench_cpu(root, preset, work, before_python)


def _finish(results: dict, wall: dict, start: float, sections: tuple[str, ...]) -> dict:
    results["section_wall_s"] = wall
    results["wall_s"] = time.perf_counter() - start
    return {key: results[key] for key in ("machine", *sections, "section_wall_s", "wall_s")}
