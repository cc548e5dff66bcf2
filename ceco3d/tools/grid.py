"""Methods x seeds as one Hydra multirun of ``ceco3d-train``, and one table of the results.

A method is data: ``conf/grid/methods.yaml`` maps its name to the ``ceco3d-train`` overrides
that make it. Each method becomes an option of a config group ``method`` written into
``OUT/grid_conf/method/`` (group overrides such as ``loss=ceco`` as defaults-list overrides,
values such as ``loss.lambda_=0.2`` as config), and the grid is

    ceco3d-train -m hydra.searchpath=[file://OUT/grid_conf] +method=A,B seed=0,1 ...

with every run in ``OUT/runs/<method>_seed<seed>`` and ``trainer.resume=auto``. A run is
finished when its ``val_summary.json`` (the validation at the end of training) is of the last
step; finished runs are reused, unfinished ones continue from their last checkpoint, and only
the methods and seeds with a run left to do are swept. The table (``OUT/grid.md``, ``.json``):
mIoU, head, common, tail and mAcc (point level, val, %) as mean ± sample std over the seeds,
and each method's paired per-seed difference to the baseline; the figure
``OUT/iou_by_train_frequency.png``: every method's per-class IoU (mean over seeds), classes by
training frequency.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ceco3d.analysis.plots import plot_iou_by_frequency
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.label_sets import get_label_set
from ceco3d.device import CHILD_WARNINGS
from ceco3d.engine.run_folder import VAL_SUMMARY
from ceco3d.errors import UsageError
from ceco3d.io import read_json, save_json, save_text
from ceco3d.paths import CONF_DIR
from ceco3d.tools.seed_tables import difference_table, seed_table

METHODS_FILE = CONF_DIR / "grid" / "methods.yaml"
COLUMNS = [
    ("mIoU", "mIoU"), ("head", "mIoU_head"), ("common", "mIoU_common"), ("tail", "mIoU_tail"),
    ("mAcc", "mAcc"),
]  # fmt: skip
NAME = re.compile(r"[A-Za-z0-9_-]+")
RECORD = "grid_record.json"  # what the runs in OUT/runs were made with
GRID_KEYS = {"seed", "data.root", "runs_root", "run_name", "trainer.resume", "hydra.sweep.dir",
             "hydra.sweep.subdir", "hydra.searchpath"}  # fmt: skip


def load_methods(path: Path) -> dict[str, list[str]]:
    """``{name: overrides}`` of a methods file, checked."""
    try:
        methods = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read the methods file ({e})") from None
    bad = [
        name
        for name, overrides in (methods or {}).items()
        if not NAME.fullmatch(str(name))
        or not isinstance(overrides, list)
        or not all(isinstance(o, str) for o in overrides)
    ]
    if not methods or bad:
        raise UsageError(
            f"{path}: a methods file maps each method name (letters, digits, _ and -) to a list "
            f"of ceco3d-train overrides, e.g. `ceco: [loss=ceco]`; wrong: {bad or 'empty'}"
        )
    return methods


def method_config(overrides: list[str]) -> str:
    """The ``method`` group option (YAML) that applies ``overrides`` to the training config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    defaults, body = [], OmegaConf.create()
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if (CONF_DIR / key).is_dir():  # a group choice, also one placed elsewhere (loss@loss.voxel)
            at = f"@{override.package}" if override.package else ""
            defaults.append({f"override /{key}{at}": override.value()})
        else:
            OmegaConf.update(body, key, override.value(), force_add=True)
    config = OmegaConf.create({"defaults": [*defaults, "_self_"]})
    return "# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.merge(config, body))


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_dir(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"{method}_seed{seed}"


def finished_summary(out: Path, method: str, seed: int, max_steps: int) -> dict | None:
    """The run's final validation summary, or None if the run has steps left."""
    path = run_dir(out, method, seed) / VAL_SUMMARY
    if not path.is_file():
        return None
    summary = read_json(path)
    return summary if summary.get("step") == max_steps else None


def _check_record(out: Path, recipe: list[str], methods: dict[str, list[str]]) -> None:
    """Refuse to mix runs made with other overrides into the table; record the new ones."""
    path = out / RECORD
    record = read_json(path) if path.is_file() else {"recipe": recipe, "methods": {}}
    if record["recipe"] != recipe:
        raise UsageError(
            f"{out} holds runs of the recipe {record['recipe']}, not {recipe}: use another "
            "--out, or the same overrides"
        )
    for name, overrides in methods.items():
        if record["methods"].get(name, overrides) != overrides:
            raise UsageError(
                f"{out}: method {name!r} was run with {record['methods'][name]}, the methods "
                f"file now says {overrides}: rename the method, or delete {out / 'runs'}/"
                f"{name}_seed*"
            )
    record["methods"].update(methods)
    save_json(path, record)


def _multirun_command(out: Path, root: Path, recipe, methods, seeds, threads) -> list[str]:
    conf = out / "grid_conf"
    return [
        sys.executable, "-m", "ceco3d.cli.train", "-m", f"hydra.searchpath=[file://{conf}]",
        f"+method={','.join(methods)}", f"seed={','.join(map(str, seeds))}",
        f"data.root={root}", f"runs_root={out / 'runs'}", f"hydra.sweep.dir={out / 'runs'}",
        "hydra.sweep.subdir=${hydra:runtime.choices.method}_seed${seed}",
        "run_name=${hydra:runtime.choices.method}_seed${seed}", "trainer.resume=auto", *recipe,
        *([f"trainer.threads={threads}"] if threads else []),
    ]  # fmt: skip


def _multirun(out: Path, root: Path, recipe, methods: list[str], seeds: list[int], jobs: int = 1):
    """One multirun of ``methods`` x ``seeds``; with ``jobs`` > 1, that many multiruns at once
    (the methods dealt out among them), each on its share of the cores."""
    groups = [methods[k::jobs] for k in range(min(jobs, len(methods)))]
    threads = max(1, (os.cpu_count() or 1) // len(groups)) if len(groups) > 1 else None
    env = {**os.environ, "PYTHONWARNINGS": CHILD_WARNINGS}
    procs = []
    for k, group in enumerate(groups):
        cmd = _multirun_command(out, root, recipe, group, seeds, threads)
        print(f"[grid] {' '.join(cmd[1:])}", flush=True)
        if len(groups) == 1:
            procs.append(subprocess.Popen(cmd, env=env))
        else:  # one console cannot hold several progress bars: each job logs to a file
            with open(out / f"multirun_{k}.log", "w") as log:  # the child keeps its own copy
                print(f"[grid] its output: {log.name}", flush=True)
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        raise UsageError(f"the grid's multirun failed; see the logs in {out / 'runs'}")


def run_grid(
    root: Path,
    out: Path,
    names: list[str] | None,
    seeds: list[int],
    recipe: list[str],
    methods_file: Path = METHODS_FILE,
    baseline: str = "ce",
    jobs: int = 1,
) -> str:
    """Train what is left of ``names`` x ``seeds`` on the prepared ``root``, with the training
    overrides ``recipe``, ``jobs`` runs at a time; write the table and figure into ``out``;
    return the table."""
    start = time.perf_counter()
    taken = sorted({o.split("=")[0].lstrip("+~") for o in recipe} & GRID_KEYS)
    if taken:
        raise UsageError(f"the grid sets {taken} itself: use --seeds, --data and --out instead")
    methods = load_methods(methods_file)
    names = names or list(methods)
    unknown = sorted(set(names) - set(methods))
    if unknown:
        raise UsageError(f"{methods_file} has no method {unknown}; it has {sorted(methods)}")
    if baseline not in names:
        raise UsageError(f"the baseline {baseline!r} must be one of the methods run: {names}")
    methods = {name: methods[name] for name in [baseline, *names] if name in names}
    max_steps, label_sets = {}, set()
    for name, overrides in methods.items():
        cfg = _compose([*recipe, *overrides, f"data.root={root}"])
        label_sets.add(cfg.data.label_set)
        if not cfg.trainer.val_every:
            raise UsageError(
                f"method {name}: trainer.val_every is 0, so its runs end without the "
                "validation the table needs; set trainer.val_every=N"
            )
        max_steps[name] = cfg.trainer.max_steps
    if len(label_sets) > 1:
        raise UsageError(f"the methods train on different label sets {sorted(label_sets)}")
    out.mkdir(parents=True, exist_ok=True)
    _check_record(out, recipe, methods)
    conf = out / "grid_conf" / "method"
    conf.mkdir(parents=True, exist_ok=True)
    for name, overrides in methods.items():
        save_text(conf / f"{name}.yaml", method_config(overrides))

    todo = [(m, s) for m in methods for s in seeds
            if finished_summary(out, m, s, max_steps[m]) is None]  # fmt: skip
    if todo:
        pending_methods = [m for m in methods if any(t[0] == m for t in todo)]
        pending_seeds = [s for s in seeds if any(t[1] == s for t in todo)]
        _multirun(out, root, recipe, pending_methods, pending_seeds, jobs)
    per_seed = {}
    for name in methods:
        summaries = [finished_summary(out, name, s, max_steps[name]) for s in seeds]
        if any(s is None for s in summaries):
            raise UsageError(f"method {name}: a run ended before step {max_steps[name]} "
                             f"without a final validation; see {out / 'runs'}")  # fmt: skip
        per_seed[name] = [s["point"] for s in summaries]
    return _report(out, root, label_sets.pop(), per_seed, seeds, baseline, recipe, start)


def _report(out, root, label_set_name, per_seed, seeds, baseline, recipe, start) -> str:
    label_set = get_label_set(label_set_name)
    ious = {}
    for name, rows in per_seed.items():
        values = [[r["iou_per_class"][c] for c in label_set.names] for r in rows]
        values = np.array(values, dtype=np.float64) / 100  # None (no such class) -> nan
        with warnings.catch_warnings():  # a class absent from every seed's val stays nan
            warnings.simplefilter("ignore", RuntimeWarning)
            ious[name] = np.nanmean(values, axis=0)
    train_voxels = ScanNetDataset(root, "train", label_set_name).train_class_counts("voxel_counts")
    plot_iou_by_frequency(out / "iou_by_train_frequency.png", ious, train_voxels, label_set)
    text = "\n".join([
        f"# ceco3d grid: {len(per_seed)} methods x seeds {seeds}", "",
        f"Data {root}; recipe: {' '.join(recipe) or '(defaults)'}. Point-level val metrics in "
        "% at the end of training, mean ± sample std over the seeds:", "",
        seed_table(per_seed, COLUMNS), "",
        f"Paired per-seed difference to {baseline} (mean ± sample std, then each seed's, "
        f"seeds {seeds}):", "", difference_table(per_seed, COLUMNS, baseline), "",
        f"Figure: {out / 'iou_by_train_frequency.png'}. This call: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
    ])  # fmt: skip
    save_text(out / "grid.md", text + "\n")
    save_json(out / "grid.json", {"seeds": seeds, "baseline": baseline, "recipe": recipe,
                                  "per_seed": per_seed})  # fmt: skip
    print(text, flush=True)
    return text
