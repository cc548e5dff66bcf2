"""ceco3d-bench --quick end to end: every section present, the numbers positive and finite
(no timing thresholds: timings depend on the machine)."""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("MinkowskiEngine", reason="the benchmark runs MinkowskiEngine models")

from ceco3d.paths import CONF_DIR
from ceco3d.tools.bench.long_tail import LONG_TAIL_METHODS, method_overrides, method_steps
from ceco3d.tools.bench.workspace import (
    PRESETS,
    compose_config,
    config_overrides,
    training_batch,
)
from tests.fixtures import VOXEL_SIZE, synthetic_scannet  # noqa: F401 (fixture)

# Quantities that must be positive; ratios like the CeCo overhead may have either sign.
POSITIVE = {
    "training_step.minkunet14a": [
        "ce.median_ms", "ceco.median_ms", "ratio", "paired_ratio", "voxels",
        "cpu.ce.median_ms", "cpu.ceco.median_ms", "cpu_ratio", "cpu_paired_ratio",
        "branch.median_ms", "branch_pct", "branch_cpu_pct",
    ],
    "inference": [
        "ce.median_ms", "ce.parameters", "ceco_deployed.median_ms", "ceco_deployed.ratio",
        "ceco_segmentor.median_ms", "ceco_segmentor.ratio", "ceco_segmentor.parameters",
    ],
    "data_loader": [
        "workers_0.samples_per_s", "workers_0.ratio_to_step",
        "workers_2.samples_per_s", "workers_2.ratio_to_step",
    ],
    "preprocessing": [
        "vertices", "scenes", "jobs_1.vertices_per_s", "jobs_1.scenes_per_s",
        "jobs_2.vertices_per_s", "jobs_2.scenes_per_s", "speedup_j2",
    ],
    "evaluation": [
        "vertices", "back_projection.vertices_per_s", "confusion_update.vertices_per_s",
        "total.vertices_per_s",
    ],
}  # fmt: skip
MACHINE = ["date_utc", "cpu", "cpu_cores", "torch", "MinkowskiEngine", "device"]


def _get(section: dict, dotted: str):
    for key in dotted.split("."):
        section = section[key]
    return section


def _numbers(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _numbers(value)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


def _run_quick(out, *extra) -> dict:
    cmd = [sys.executable, "-m", "ceco3d.cli.bench", "--quick", "--out", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| ce |" in done.stdout  # the Markdown is printed
    assert (out / "bench.md").read_text().strip()
    return json.loads((out / "bench.json").read_text())


def _check(results: dict, device: str) -> None:
    for key in MACHINE:
        assert results["machine"][key], key
    assert results["machine"]["device"] == device
    host = socket.gethostname()
    if len(host) >= 6:  # a shorter name could occur in other text by chance
        assert host not in json.dumps(results)
    for section, keys in POSITIVE.items():
        for number in _numbers(_get(results, section)):
            assert math.isfinite(number), section
        for key in keys:
            value = _get(_get(results, section), key)
            assert math.isfinite(value) and value > 0, f"{section}.{key} = {value}"
    inference = results["inference"]
    assert inference["deployed_parameters_equal_ce"]
    assert inference["ceco_segmentor"]["parameters"] > inference["ce"]["parameters"]
    assert list(results["training_step"]) == ["minkunet14a"]  # the quick preset's one model
    memory = results["memory"]["minkunet14a"]
    assert len(memory["sizes"]) == 3
    voxels = [size["voxels"] for size in memory["sizes"]]
    assert voxels == sorted(voxels) and voxels[0] > 0
    for size in memory["sizes"]:
        for loss in memory["losses"]:
            entry = size[loss]
            for key in ("baseline_mib", "peak_mib", "step_mib", "step_ms"):
                assert math.isfinite(entry[key]) and entry[key] > 0, (size["voxels"], loss, key)
    _check_predict(results["predict"])
    _check_cpu_speed(results["cpu_speed"])
    assert results["wall_s"] > 0


def _check_cpu_speed(cpu: dict) -> None:
    assert [case["case"] for case in cpu["cases"]] == ["minkunet14a, 8,000 voxels"]
    for case in cpu["cases"]:
        assert case["voxels"] > 0
        assert case["speedup_min"] <= case["speedup"] <= case["speedup_max"]
        for side in ("before", "after"):
            entry = case[side]
            for key in ("wall_s", "user_s", "peak_mib"):
                assert math.isfinite(entry[key]) and entry[key] > 0, (side, key)
            assert 0 <= entry["sys_pct"] < 100 and entry["minflt"] >= 0


def _check_predict(predict: dict) -> None:
    assert predict["sizes"]
    for size in predict["sizes"]:
        assert size["points"] > 0 and 0 < size["voxels"] <= size["points"]
        assert all(seconds > 0 for seconds in size["seconds"].values())
        assert size["total_s"] == pytest.approx(sum(size["seconds"].values()))
        assert size["points_per_s"] == pytest.approx(size["points"] / size["total_s"])
        assert size["peak_mib"] >= size["model_mib"] > 0


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path):
    _check(_run_quick(tmp_path / "bench", "--device", "cpu"), "cpu")


@pytest.mark.slow
def test_predict_section_runs_alone(tmp_path):
    cmd = [sys.executable, "-m", "ceco3d.cli.bench", "--quick", "--only", "predict",
           "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    assert set(results) == {"settings", "machine", "predict", "section_wall_s", "wall_s"}
    _check_predict(results["predict"])
    assert "ceco3d-predict" in done.stdout and "| ce |" not in done.stdout


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quick_bench_on_gpu(tmp_path):
    # CeCo's cost on the GPU (training step, memory; not every section: predict needs open3d,
    # the CPU speed a CPU run, and scripts/gpu_check.sh runs the gpu group at full size)
    results = _run_quick(tmp_path / "bench", "--device", "cuda", "--only", "ceco")
    assert results["machine"]["device"] == "cuda"
    assert results["training_step"]["minkunet14a"]["ce"]["median_ms"] > 0
    sizes = results["memory"]["minkunet14a"]["sizes"]
    assert all(size["ce"]["gpu_peak_mib"] >= size["ce"]["gpu_step_mib"] > 0 for size in sizes)


@pytest.mark.slow
def test_gpu_group_runs_what_gpu_check_reports(tmp_path):
    # scripts/gpu_check.sh's bench stage (--only gpu), here on the CPU at the quick sizes
    results = _run_quick(tmp_path, "--only", "gpu", "--device", "cpu")
    sections = {"training_step", "inference", "long_tail"}  # not predict: open3d
    assert set(results) == {"settings", "machine", "section_wall_s", "wall_s"} | sections
    long_tail = results["long_tail"]
    assert long_tail["model"] == "MinkUNet14A"  # the quick preset names no long-tail model
    assert long_tail["methods"].keys() == LONG_TAIL_METHODS.keys()
    assert long_tail["memory_key"] == "step_mib"  # host memory on the CPU
    assert long_tail["methods"]["ce"]["memory_ratio"] == 1.0
    scene = results["inference"]["scene"]  # the largest synthetic scene, whole
    assert 0 < scene["voxels"] < scene["points"] and scene["min_ms"] > 0
    report = (tmp_path / "bench.md").read_text()
    assert "## 9. Long-tail losses" in report and "A whole scene" in report


def test_gpu_preset_times_the_long_tail_on_the_papers_model_at_scannet_size():
    gpu = PRESETS["gpu"]
    assert gpu.long_tail_model == "res16unet34c" and gpu.models[0] == "minkunet34c"
    assert gpu.long_tail_voxels == gpu.train_voxels == 100_000 and gpu.batch_scenes == 4


def test_training_batch_collates_the_presets_scenes(synthetic_scannet):  # noqa: F811
    # The gpu preset's batch: the first train scenes, each cropped, with their own batch index.
    preset = dataclasses.replace(PRESETS["gpu"], voxel_size=VOXEL_SIZE, train_voxels=400)
    cfg = compose_config(config_overrides(synthetic_scannet.prepared, preset, "minkunet14a"))
    batch = training_batch(cfg, preset.batch_scenes)
    scene_index, counts = batch["coords"][:, 0].unique(return_counts=True)
    assert scene_index.tolist() == list(range(preset.batch_scenes))
    assert (counts <= 400).all() and len(batch["labels"]) == counts.sum()
    with pytest.raises(ValueError, match="train scene"):
        training_batch(cfg, 99)


@pytest.mark.slow
def test_long_tail_section_times_every_loss_and_each_step_runs(synthetic_scannet):  # noqa: F811
    timed = {name for pair in LONG_TAIL_METHODS.values() for name in pair if name}
    assert {p.stem for p in (CONF_DIR / "loss").glob("*.yaml")} - timed == {"balanced_softmax"}
    # ... which is the logit-adjusted loss's computation, at its default tau = 1
    same = [OmegaConf.load(CONF_DIR / "loss" / f"{n}.yaml") for n in ("balanced_softmax",
                                                                     "logit_adjusted")]  # fmt: skip
    assert same[0] == same[1]
    preset = dataclasses.replace(PRESETS["quick"], voxel_size=VOXEL_SIZE, long_tail_voxels=400)
    root = synthetic_scannet.prepared
    cfgs = {m: compose_config(method_overrides(root, preset, "minkunet14a", m))
            for m in LONG_TAIL_METHODS}  # fmt: skip
    assert cfgs["ceco + lovasz_ce"].loss.voxel.ce_weight == 1.0
    steps, losses = method_steps(cfgs, training_batch(cfgs["ce"]), torch.device("cpu"))
    assert steps.keys() == losses.keys() == LONG_TAIL_METHODS.keys()
    for run in [*steps.values(), *losses.values()]:
        run()
