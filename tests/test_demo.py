"""The demo: its synthetic data keeps ScanNet200's long tail, and ceco3d-demo --quick runs the
README's main job end to end (about a minute)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ceco3d.analysis.imbalance import imbalance_factor
from ceco3d.data.label_sets import SCANNET200
from ceco3d.data.layout import MANIFEST
from ceco3d.submission import check_submission
from ceco3d.tools.demo import (
    BASELINE,
    MODELS,
    PRESETS,
    STAT_COLUMNS,
    STRONGEST,
    _recipe,
    synth_arguments,
)
from ceco3d.tools.seed_tables import difference_table, seed_table
from data_prep import prep
from data_prep.synth import generate


@pytest.mark.parametrize("name", ["full", "fine_grained"])
def test_demo_data_has_a_scannet200_like_long_tail(tmp_path, name):
    """The full preset's training split, prepared at its recipe's voxel size: point imbalance
    factor >= 1,000, center imbalance factor >= 10, and head / common / tail are the thirds of
    the used classes by training point count."""
    preset = PRESETS[name]
    voxel_size = _recipe(preset.experiment).data.voxel_size
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    assert generate.main(synth_arguments(raw, preset, 0)) == 0
    assert prep.main([str(raw), str(prepared), "-j", "1", "--voxel-size", str(voxel_size)]) == 0
    stats = json.loads((prepared / MANIFEST).read_text())["stats"]["train"]["scannet200"]
    points, centers = np.array(stats["voxel_counts"]), np.array(stats["scene_counts"])
    classes = preset.classes or 45  # None: the fine-grained class set, all of it
    assert imbalance_factor(points)[1] == SCANNET200.num_classes - classes
    assert imbalance_factor(points)[0] >= 1000
    assert imbalance_factor(centers)[0] >= 10
    used = np.flatnonzero(points)
    assert len(used) == classes
    by_count = used[np.argsort(-points[used], kind="stable")]
    groups = [SCANNET200.group_of_class[k] for k in by_count]
    third = classes // 3
    assert groups == ["head"] * (classes - 2 * third) + ["common"] * third + ["tail"] * third
    # Every class is in the validation split too.
    val = json.loads((prepared / MANIFEST).read_text())["stats"]["val"]["scannet200"]
    assert (np.array(val["voxel_counts"])[used] > 0).all()


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    demo = Path(sys.executable).parent / "ceco3d-demo"
    done = subprocess.run([str(demo), "--quick", "--out", str(out)], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "results.md").read_text()
    for name in MODELS:
        assert f"| {name} |" in table
    results = json.loads((out / "results.json").read_text())
    assert list(results["per_seed"]) == list(MODELS)
    assert list(MODELS.values()) == ["ce", STRONGEST, "ceco", f"ceco_{STRONGEST}"]
    for name in MODELS:
        summary = results["per_seed"][name][0]
        assert 0 <= summary["mIoU"] <= 100
        assert all(summary[f"mIoU_{g}"] is not None for g in ("head", "common", "tail"))
    assert set(results["analysis"]["models"]) == set(MODELS)
    assert results["analysis"]["imbalance_train"]["point_imbalance_factor"] >= 100
    zip_path = out / "submission_scannet200_test.zip"
    assert check_submission(zip_path, out / "raw", SCANNET200, split="test") == []
    figures = ("accuracy_vs_frequency.png", "frequency_train.png", "collapse_curves.png",
               "iou_by_train_frequency.png")  # fmt: skip
    for png in figures:
        assert (out / "analysis" / png).stat().st_size > 1000
        assert png in table

    # Running it again reuses every finished step instead of training anew.
    again = subprocess.run([str(demo), "--quick", "--out", str(out)], capture_output=True,
                           text=True, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("trained and evaluated already") == len(MODELS)
    assert "already holds this data set" in again.stdout


def test_seed_tables_give_spread_and_paired_differences():
    def summary(miou: float, tail: float | None) -> dict:
        return {"mIoU": miou, "mIoU_head": 50.0, "mIoU_common": 20.0, "mIoU_tail": tail,
                "mAcc": 30.0, "allAcc": 80.0}  # fmt: skip

    per_seed = {
        "CE": [summary(10.0, 1.0), summary(12.0, 3.0), summary(14.0, 2.0)],
        "CeCo": [summary(11.0, 2.0), summary(12.0, 5.0), summary(17.0, 2.0)],
    }
    spread = seed_table(per_seed, STAT_COLUMNS).splitlines()
    # CE mIoU 10, 12, 14: mean 12, sample std 2.
    assert spread[2].startswith("| CE | 3 | 12.00 ± 2.00 | 50.00 ± 0.00 |")
    differences = difference_table(per_seed, STAT_COLUMNS, BASELINE).splitlines()
    assert len(differences) == 3  # header, rule, one row: the baseline has no difference row
    # CeCo - CE per seed: mIoU +1, 0, +3 (mean 1.33, sample std 1.53); tail +1, +2, 0.
    cells = differences[2].split(" | ")
    assert cells[0] == "| CeCo − CE"
    assert cells[1] == "+1.33 ± 1.53 (+1.00 / +0.00 / +3.00)"
    assert cells[4] == "+1.00 ± 1.00 (+1.00 / +2.00 / +0.00)"


def test_benchmark_runs_the_whole_grid_and_rewrites_its_readme_block(tmp_path, monkeypatch):
    """``ceco3d-demo --preset fine_grained --benchmark``: the data, then ceco3d-grid over every
    method x the seeds with the benchmark's recipe and --jobs, then its table in the README's
    benchmark block. The grid itself is tests/test_grid.py's; here it is replaced by a stand-in
    that records what it was asked and writes the figure the grid writes."""
    from ceco3d.tools import demo
    from ceco3d.tools.readme_blocks import FIGURES, markers

    calls = {}

    def prepare(out, preset, data_seed, voxel_size, logs, balanced=False):
        calls["prepare"] = (out, preset, data_seed, voxel_size, balanced)

    def run_grid(root, out, names, seeds, recipe, jobs=1):
        calls["grid"] = (root, out, names, seeds, recipe, jobs)
        out.mkdir(parents=True)
        (out / "iou_by_train_frequency.png").write_bytes(b"\x89PNG figure")
        return "| method | mIoU |\n|---|---|\n| ce | 1.00 |\n"

    monkeypatch.setattr(demo, "_prepare", prepare)
    monkeypatch.setattr(demo, "run_grid", run_grid)
    begin, end = markers("benchmark")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}\nNot run yet\n{end}\nrest\n")
    out = tmp_path / "bench"
    args = ["--preset", "fine_grained", "--benchmark", "--seeds", "0", "1", "2", "--jobs", "2",
            "--out", str(out), "--readme", str(readme)]  # fmt: skip
    assert demo.main(args) == 0
    preset = PRESETS["fine_grained"]
    assert calls["prepare"] == (out, preset, 0, _recipe("benchmark").data.voxel_size, False)
    assert calls["grid"] == (out / "prepared", out / "grid", None, [0, 1, 2],
                             ["experiment=benchmark"], 2)  # fmt: skip
    text = readme.read_text()
    assert text.startswith(f"intro\n{begin}\n| method | mIoU |\n|---|---|\n| ce | 1.00 |\n")
    assert "Wall time of `ceco3d-demo --benchmark` (data included):" in text
    assert text.endswith(f"{end}\nrest\n")
    figure = tmp_path / FIGURES / "benchmark_iou_by_train_frequency.png"
    assert figure.read_bytes() == b"\x89PNG figure"
    assert (out / "grid" / "benchmark.md").is_file()


def test_a_readme_without_the_block_fails_before_anything_runs(tmp_path, monkeypatch, capsys):
    from ceco3d.tools import demo

    monkeypatch.setattr(demo, "_prepare", lambda *a, **k: pytest.fail("prepared data"))
    readme = tmp_path / "README.md"
    readme.write_text("no generated blocks here\n")
    args = ["--preset", "fine_grained", "--calibrate", "--out", str(tmp_path / "o"),
            "--readme", str(readme)]  # fmt: skip
    assert demo.main(args) != 0
    err = capsys.readouterr().err
    assert str(readme) in err and "<!-- BEGIN ceco3d-calibration -->" in err
    assert readme.read_text() == "no generated blocks here\n"
