"""ceco3d-grid: a method is one entry of a YAML file, the grid one Hydra multirun, its table the
per-run summaries' mean ± std and paired differences, and a half-finished grid resumes."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ceco3d.engine.train import train
from ceco3d.errors import UsageError
from ceco3d.io import read_json
from ceco3d.losses import CeCoLoss
from ceco3d.tools.demo import PRESETS, synth_arguments
from ceco3d.tools.grid import METHODS_FILE, load_methods, method_config, run_dir, run_grid
from data_prep import prep
from data_prep.synth import generate
from tests.fixtures import compose_config


def test_each_method_file_entry_composes_as_its_overrides(tmp_path):
    methods = load_methods(METHODS_FILE)
    assert {"ce", "ce_weighted", "ceco", "repeat_factor", "tail_paste"} <= methods.keys()
    methods["custom"] = ["loss=ceco", "loss.lambda_=0.2", "model.center_head.sync_centers=true"]
    (tmp_path / "method").mkdir()
    for name, overrides in methods.items():
        (tmp_path / "method" / f"{name}.yaml").write_text(method_config(overrides))
    base = ["data.root=/data/prepared", "experiment=demo"]
    for name, overrides in methods.items():
        via_group = compose_config(
            "train", [f"hydra.searchpath=[file://{tmp_path}]", f"+method={name}", *base]
        )
        direct = compose_config("train", [*base, *overrides])
        assert OmegaConf.to_container(via_group) == OmegaConf.to_container(direct), name
    assert compose_config("train", [*base, *methods["custom"]]).loss.lambda_ == 0.2


def test_overrides_the_grid_sets_itself_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"\['seed'\].*--seeds"):
        run_grid(tmp_path, tmp_path / "out", ["ce"], [0], ["experiment=demo", "seed=3"])
    assert not (tmp_path / "out").exists()


def test_a_malformed_methods_file_is_refused(tmp_path):
    path = tmp_path / "methods.yaml"
    path.write_text("ce: []\nbad name: [loss=ceco]\nceco: loss=ceco\n")
    with pytest.raises(UsageError, match=r"bad name.*ceco|ceco.*bad name"):
        load_methods(path)


def quick_demo_data(folder):
    """The data set of ``ceco3d-demo --quick``, prepared at its recipe's voxel size."""
    assert generate.main(synth_arguments(folder / "raw", PRESETS["quick"], 0)) == 0
    assert prep.main([str(folder / "raw"), str(folder / "prepared"), "-j", "1",
                      "--voxel-size", "0.08"]) == 0  # fmt: skip
    return folder / "prepared"


RECIPE = ["experiment=demo_quick", "trainer.max_steps=2", "trainer.val_every=2",
          "trainer.ckpt_every=1", "trainer.val_max_scenes=1", "data.max_voxels=1500",
          "data.num_workers=0", "trainer.threads=1"]  # fmt: skip


def crash_in_step_two(root, out, method, seed, monkeypatch):
    """An unfinished run: the grid's run of ``method`` and ``seed``, stopped in step 2 with
    the step-1 checkpoint written."""
    folder = run_dir(out, method, seed)
    overrides = [*RECIPE, *load_methods(METHODS_FILE)[method], f"data.root={root}",
                 f"seed={seed}", "trainer.resume=auto", f"runs_root={folder.parent}",
                 f"run_name={folder.name}"]  # fmt: skip
    cfg = compose_config("train", overrides)
    original, calls = CeCoLoss.forward, itertools.count(1)

    def forward(self, outputs, labels):
        if next(calls) == 2:
            raise KeyboardInterrupt
        return original(self, outputs, labels)

    threads = torch.get_num_threads()  # trainer.threads=1 sets it for the whole process
    with monkeypatch.context() as patched:
        patched.setattr(CeCoLoss, "forward", forward)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, folder)
    torch.set_num_threads(threads)
    assert not (folder / "val_summary.json").exists()


def cell_values(cell: str) -> list[float]:
    return [float(v) for v in re.findall(r"[+-]?\d+\.\d+", cell)]


@pytest.mark.slow
def test_grid_table_from_the_runs_and_a_half_finished_grid_resumes(tmp_path, capfd, monkeypatch):
    root, out = quick_demo_data(tmp_path / "data"), tmp_path / "grid"
    seeds = [0, 1]
    run_grid(root, out, ["ce"], seeds, RECIPE)  # CE done
    crash_in_step_two(root, out, "ceco", 0, monkeypatch)  # CeCo seed 0 half done, seed 1 not
    ce_checkpoints = {s: (run_dir(out, "ce", s) / "checkpoints" / "last.pt").stat().st_mtime_ns
                      for s in seeds}  # fmt: skip
    capfd.readouterr()

    table = run_grid(root, out, ["ce", "ceco"], seeds, RECIPE)
    printed = capfd.readouterr().out
    assert "+method=ceco seed=0,1" in printed  # only CeCo was left to do
    for s in seeds:  # the finished CE runs were reused, not trained again
        assert (run_dir(out, "ce", s) / "checkpoints" / "last.pt").stat().st_mtime_ns == (
            ce_checkpoints[s]
        )
    assert "resumed from" in (run_dir(out, "ceco", 0) / "train.log").read_text()
    assert "resumed from" not in (run_dir(out, "ceco", 1) / "train.log").read_text()

    # The table, by hand from the per-run summaries.
    point = {(m, s): read_json(run_dir(out, m, s) / "val_summary.json")["point"]
             for m in ("ce", "ceco") for s in seeds}  # fmt: skip
    assert all(read_json(run_dir(out, m, s) / "val_summary.json")["step"] == 2
               for m, s in point)  # fmt: skip
    cells = [[c.strip() for c in line.strip("| ").split("|")] for line in table.splitlines()]
    rows = {row[0]: row for row in cells}
    for column, key in enumerate(["mIoU", "mIoU_head", "mIoU_common", "mIoU_tail", "mAcc"]):
        diffs = [point["ceco", s][key] - point["ce", s][key] for s in seeds]
        mean, std = np.mean(diffs), np.std(diffs, ddof=1)
        got = cell_values(rows["ceco − ce"][column + 1])
        np.testing.assert_allclose(got, [mean, std, *diffs], atol=0.006)
        ce = [point["ce", s][key] for s in seeds]
        assert rows["ce"][column + 2] == f"{np.mean(ce):.2f} ± {np.std(ce, ddof=1):.2f}"
    assert (out / "iou_by_train_frequency.png").stat().st_size > 1000
    assert read_json(out / "grid.json")["per_seed"]["ceco"] == [point["ceco", s] for s in seeds]

    # Everything done: nothing is trained again, and the same table comes out.
    again = run_grid(root, out, ["ce", "ceco"], seeds, RECIPE)
    assert "+method=" not in capfd.readouterr().out
    assert again.splitlines()[4:-1] == table.splitlines()[4:-1]
    # A method whose overrides changed is not mixed into the table.
    with pytest.raises(UsageError, match="method 'ceco' was run with"):
        changed = _methods_file(tmp_path, ceco=["loss=ceco", "loss.lambda_=0.8"])
        run_grid(root, out, ["ce", "ceco"], seeds, RECIPE, methods_file=changed)


def _methods_file(folder, **methods):
    path = folder / "methods.yaml"
    path.write_text(OmegaConf.to_yaml({"ce": [], **methods}))
    return path


@pytest.mark.slow
def test_runs_side_by_side_give_the_runs_one_after_the_other(tmp_path, capfd):
    root = quick_demo_data(tmp_path / "data")
    one, two = tmp_path / "one", tmp_path / "two"
    table = run_grid(root, one, ["ce", "ceco"], [0], RECIPE)
    capfd.readouterr()
    side_by_side = run_grid(root, two, ["ce", "ceco"], [0], RECIPE, jobs=2)
    printed = capfd.readouterr().out
    # Two multiruns at once, a method each, each logging to its own file.
    assert "+method=ce seed=0" in printed and "+method=ceco seed=0" in printed
    assert "+method=ceco" in (two / "multirun_1.log").read_text()
    for method in ("ce", "ceco"):
        a = read_json(run_dir(one, method, 0) / "val_summary.json")
        b = read_json(run_dir(two, method, 0) / "val_summary.json")
        assert a["point"] == b["point"], method  # same threads (RECIPE: 1), same numbers
    assert side_by_side.splitlines()[4:-1] == table.splitlines()[4:-1]
