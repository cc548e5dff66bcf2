"""ceco3d-demo: the whole system on a synthetic long-tailed ScanNet200: CE, the strongest
rebalancing baseline of the method grid, CeCo, and CeCo on that baseline.

Runs the same commands a user runs (each as its own process): ceco3d-synth -> ceco3d-prep ->
ceco3d-train (the four models: same seed, data and budget) -> ceco3d-eval ->
ceco3d-analyze -> ceco3d-submit (+ check=), and ends with a comparison table (Markdown and
JSON) and the analysis figures. Finished steps are reused when the same command runs again
(more seeds, or after an interruption).

    ceco3d-demo                      # about 6 minutes on 2 CPU cores
    ceco3d-demo --quick              # about 1 minute, a first look
    ceco3d-demo --seeds 0 1 2        # over several training seeds: mean, spread and the paired
                                     # per-seed differences to CE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ceco3d.data.layout import MANIFEST, data_identity
from ceco3d.device import CHILD_WARNINGS
from ceco3d.engine.run_folder import VAL_SUMMARY
from ceco3d.errors import UsageError, report_errors
from ceco3d.io import read_json, save_json, save_text
from ceco3d.paths import CONF_DIR
from ceco3d.tools import backbone_name
from ceco3d.tools.grid import METHODS_FILE, load_methods, run_grid
from ceco3d.tools.readme_blocks import check, publish
from ceco3d.tools.seed_tables import difference_table, seed_table

# The synthetic benchmark keeps ScanNet200's long tail (data_prep/synth/classes.py); its sizes
# and the recipe were tuned on the CE baseline alone, for a 2-core CPU. CeCo keeps the paper's
# settings (ceco3d/conf/loss/ceco.yaml, ceco3d/conf/model/center_head/ceco.yaml).


@dataclass(frozen=True)
class Preset:
    """The synthetic data set; the training recipe is ``ceco3d/conf/experiment/<name>.yaml``."""

    scenes: int  # train + val
    test_scenes: int
    classes: int | None  # None: every class of the class set
    vertex_spacing: float  # metres
    experiment: str
    class_set: str = "catalogue"  # data_prep/synth/classes.py


PRESETS = {
    # Every common and tail class with a signature of its own: a few minutes on 2 CPU cores.
    "full": Preset(60, 2, 15, 0.06, "demo"),
    "quick": Preset(12, 1, 15, 0.08, "demo_quick"),
    # The fine-grained long-tail benchmark: 45 classes, most common and tail ones close relatives
    # of a head class, calibrated on CE alone (README, "The long-tail benchmark").
    "fine_grained": Preset(60, 2, None, 0.06, "benchmark", "fine_grained"),
}
STAT_COLUMNS = [
    ("mIoU", "mIoU"), ("head", "mIoU_head"), ("common", "mIoU_common"), ("tail", "mIoU_tail"),
    ("mAcc", "mAcc"), ("allAcc", "allAcc"),
]  # fmt: skip
# The compared models: report name -> method of ceco3d/conf/grid/methods.yaml. CE first (the
# baseline of the per-seed differences), then the strongest rebalancing baseline of the method
# grid on the full preset's data (class-weighted CE, +19 mIoU over 3 seeds:
# docs/long_tail_methods.md), CeCo, and CeCo on top of that baseline.
STRONGEST = "ce_weighted"
MODELS = {
    "CE": "ce",
    STRONGEST: STRONGEST,
    "CeCo": "ceco",
    f"CeCo + {STRONGEST}": f"ceco_{STRONGEST}",
}
BASELINE = "CE"
COLLAPSE_COLUMNS = [
    ("equiang. F", "equiangularity_features"), ("sep. F", "separation_features"),
    ("equiang. W", "equiangularity_weights"), ("sep. W", "separation_weights"),
]  # fmt: skip


def synth_arguments(raw: Path, preset: Preset, data_seed: int) -> list[str]:
    """``ceco3d-synth`` arguments of the preset's synthetic data set."""
    classes = [] if preset.classes is None else ["--classes", str(preset.classes)]
    return [str(raw), "--scenes", str(preset.scenes), "--test-scenes", str(preset.test_scenes),
            "--seed", str(data_seed), "--class-set", preset.class_set, *classes,
            "--vertex-spacing", str(preset.vertex_spacing)]  # fmt: skip


def _recipe(experiment: str):
    """The composed training config of ``experiment`` (its data and trainer settings)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", "data.root=-"])


def _run(step: str, module: str, *args: str, log_dir: Path, echo: bool = True) -> None:
    """Run ``python -m module args``; its output goes to a log file and, with ``echo``, streams
    to the console (off where several steps run at once)."""
    cmd = [sys.executable, "-m", module, *args]
    print(f"\n[demo] {step}: {' '.join(['python -m', module, *args])}", flush=True)
    start = time.perf_counter()
    log_dir.mkdir(parents=True, exist_ok=True)
    # The CPU build's "compiled with CPU_ONLY" notice would repeat in every step's output.
    env = {**os.environ, "PYTHONWARNINGS": CHILD_WARNINGS}
    path = log_dir / f"{step.replace(' ', '_')}.log"
    with open(path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)  # fmt: skip
        for line in proc.stdout:
            log.write(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        if proc.wait() != 0:
            raise UsageError(f"{step} failed (exit {proc.returncode}); see {path}")
    print(f"[demo] {step}: done in {time.perf_counter() - start:.0f} s", flush=True)


def _cell(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _table(rows: dict[str, dict]) -> str:
    header = ["model", *[c for c, _ in STAT_COLUMNS], *[c for c, _ in COLLAPSE_COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [_cell(row[k]) for _, k in STAT_COLUMNS]
        cells += [_cell(row["collapse"][k]) for _, k in COLLAPSE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _model_key(data_root: Path, recipe) -> str:
    """What makes a model besides its loss and seed: the prepared data (its identity) and the
    training recipe. Runs are named with it, so a demo with other data never reuses a model."""
    identity = data_identity(read_json(data_root / MANIFEST))
    made_of = {"data": identity, "recipe": OmegaConf.to_container(recipe, resolve=False)}
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:8]


def _run_name(method: str, seed: int, key: str) -> str:
    return f"{method}_seed{seed}_{key}"


def _checkpoint(out: Path, run_name: str) -> Path:
    return out / "runs" / run_name / "checkpoints" / "last.pt"


def _train_and_evaluate(
    out: Path, data_root: Path, preset: Preset, run_name: str, method: list[str], seed: int,
    logs: Path, jobs: int = 1,
) -> dict:  # fmt: skip
    """Train one model (or reuse a finished run) and return its val summary; ``method`` is its
    training overrides, ``jobs`` how many models train at once (they share the cores)."""
    ckpt = _checkpoint(out, run_name)
    summary_path = out / "eval" / run_name / "summary.json"
    done = ckpt.is_file() and summary_path.is_file()
    if done and summary_path.stat().st_mtime > ckpt.stat().st_mtime:
        print(f"[demo] {run_name}: trained and evaluated already ({summary_path})")
        return json.loads(summary_path.read_text())
    # The recipe sets trainer.resume=auto: an interrupted demo continues its runs.
    threads = [] if jobs == 1 else [f"trainer.threads={max(1, (os.cpu_count() or 1) // jobs)}"]
    _run(f"train {run_name}", "ceco3d.cli.train", f"experiment={preset.experiment}", *method,
         f"seed={seed}", f"data.root={data_root}", f"runs_root={out / 'runs'}",
         f"run_name={run_name}", *threads, log_dir=logs, echo=jobs == 1)  # fmt: skip
    _run(f"eval {run_name}", "ceco3d.cli.evaluate", f"ckpt={ckpt}",
         f"out={out / 'eval' / run_name}", "export.preview=true", "export.max_scenes=2",
         log_dir=logs, echo=jobs == 1)  # fmt: skip
    return json.loads(summary_path.read_text())


def _prepare(
    out: Path, preset: Preset, data_seed: int, voxel_size: float, logs: Path, balanced=False
) -> None:
    """``ceco3d-synth`` (unless ``out/raw`` holds this data set) and ``ceco3d-prep``; with
    ``balanced``, the class-balanced draw of the same generator."""
    synth_args = synth_arguments(out / "raw", preset, data_seed) + ["--balanced"] * balanced
    synth_stamp = out / "synth_args.json"
    if synth_stamp.is_file() and json.loads(synth_stamp.read_text()) == synth_args:
        print(f"[demo] synth: {out / 'raw'} already holds this data set")
    else:
        _run("synth", "data_prep.synth.generate", *synth_args, log_dir=logs)
        save_json(synth_stamp, synth_args)
    _run("prep", "data_prep.prep", str(out / "raw"), str(out / "prepared"), "-j", "2",
         "--voxel-size", str(voxel_size), log_dir=logs)  # fmt: skip


def _data_line(preset: Preset, recipe, data_seed: int) -> str:
    classes = "45" if preset.classes is None else str(preset.classes)
    return (
        f"Synthetic ScanNet200 (class set {preset.class_set}, {classes} classes, a third each "
        f"head, common and tail; {preset.scenes} train+val scenes, data seed {data_seed}), "
        f"experiment={preset.experiment}: {backbone_name(recipe)}, "
        f"{recipe.data.voxel_size * 100:g} cm voxels, {recipe.trainer.max_steps} steps of batch "
        f"{recipe.data.batch_size} (crop {recipe.data.max_voxels} voxels), "
        f"{recipe.optim._target_.rsplit('.', 1)[-1]} lr {recipe.optim.lr:g}"
    )


def _peak_mib() -> float:
    """The largest resident set of any finished child process (the steps of this command)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _demo_report(out, preset, recipe, args, per_seed, analysis, minutes) -> str:
    imbalance = analysis["imbalance_train"]
    first = args.seeds[0]
    report = [
        f"# ceco3d demo ({args.preset} preset)",
        "",
        f"{_data_line(preset, recipe, args.data_seed)}, training seed {first}. Point imbalance "
        f"factor (train, voxels): {imbalance['point_imbalance_factor']:.0f}; center imbalance "
        f"factor: {imbalance['center_imbalance_factor']:.0f}. Methods "
        f"(ceco3d/conf/grid/methods.yaml): {', '.join(f'{k} = {v}' for k, v in MODELS.items())}. "
        "Point-level val metrics in %; neural-collapse statistics of the val features (F) and "
        "classifier weights (W), lower is closer to a simplex ETF.",
        "",
        _table({name: rows[0] for name, rows in per_seed.items()}),
    ]
    if len(args.seeds) > 1:
        report += ["", f"Over training seeds {args.seeds} (mean ± sample std):", "",
                   seed_table(per_seed, STAT_COLUMNS), "",
                   f"Paired per-seed difference to {BASELINE} (mean ± sample std, then each "
                   "seed's):", "", difference_table(per_seed, STAT_COLUMNS, BASELINE)]  # fmt: skip
    figures = sorted(p.name for p in (out / "analysis").glob("*.png"))
    report += ["", f"Figures in {out / 'analysis'}: {', '.join(figures)}.", "",
               f"Wall time: {minutes:.1f} min; peak memory (the largest step's resident set): "
               f"{_peak_mib():.0f} MiB."]  # fmt: skip
    return "\n".join(report) + "\n"


def _benchmark(
    out: Path, preset: Preset, seeds: list[int], readme: Path | None, start: float, jobs: int
) -> int:
    """The whole method grid x ``seeds`` on the prepared benchmark (``ceco3d-grid``, ``jobs``
    multiruns at once); ``start``: when the command began (its wall time includes the data)."""
    recipe = [f"experiment={preset.experiment}"]
    text = run_grid(out / "prepared", out / "grid", None, seeds, recipe, jobs=jobs)
    minutes = (time.perf_counter() - start) / 60
    text += f"\nWall time of `ceco3d-demo --benchmark` (data included): {minutes:.1f} min.\n"
    save_text(out / "grid" / "benchmark.md", text)
    if readme is not None:
        publish(
            readme,
            "benchmark",
            text,
            {"benchmark_iou_by_train_frequency.png": out / "grid" / "iou_by_train_frequency.png"},
        )
    return 0


def _calibrate(out: Path, preset: Preset, args, recipe, readme: Path | None) -> int:
    """CE alone on the benchmark and on its class-balanced draw (``ceco3d/tools/calibrate.py``)."""
    from ceco3d.analysis.imbalance import imbalance_factor
    from ceco3d.tools import calibrate

    logs, steps = out / "logs", recipe.trainer.max_steps
    balanced_out = out / "balanced"
    _prepare(balanced_out, preset, args.data_seed, recipe.data.voxel_size, logs, balanced=True)
    draws = {"long-tailed draw": out, "balanced draw": balanced_out}
    runs, imbalance, data = {}, {}, {}
    threads = [] if args.jobs == 1 else [f"trainer.threads={max(1, (os.cpu_count() or 1) // 2)}"]

    def train(folder: Path) -> Path:
        prepared = folder / "prepared"
        run_name = f"calibrate_ce_{'balanced' if folder != out else 'long_tail'}_" + _model_key(
            prepared, recipe)  # fmt: skip
        summary = out / "runs" / run_name / VAL_SUMMARY
        if not (summary.is_file() and read_json(summary).get("step") == steps):
            _run(f"train {run_name}", "ceco3d.cli.train", f"experiment={preset.experiment}",
                 "loss=ce", f"seed={args.seeds[0]}", f"data.root={prepared}",
                 f"runs_root={out / 'runs'}", f"run_name={run_name}",
                 f"trainer.val_every={max(1, steps // calibrate.CHECKPOINTS_PER_RUN)}",
                 *threads, log_dir=logs, echo=args.jobs == 1)  # fmt: skip
        return out / "runs" / run_name

    with ThreadPoolExecutor(min(2, args.jobs)) as pool:
        folders = list(pool.map(train, draws.values()))
    for (name, folder), run in zip(draws.items(), folders, strict=True):
        prepared = folder / "prepared"
        runs[name] = run
        stats = read_json(prepared / MANIFEST)["stats"]["train"]["scannet200"]
        imbalance[name] = {
            "point_imbalance_factor": imbalance_factor(np.array(stats["voxel_counts"]))[0],
            "center_imbalance_factor": imbalance_factor(np.array(stats["scene_counts"]))[0],
        }
        data[name] = " ".join(
            [
                "ceco3d-synth",
                *synth_arguments(folder / "raw", preset, args.data_seed)[1:],
                *(["--balanced"] if folder != out else []),
            ]
        )
    data["recipe"] = (
        f"{_data_line(preset, recipe, args.data_seed)}, CE, training seed {args.seeds[0]}"
    )
    text = calibrate.report(out / "calibration", runs, steps, imbalance, data)
    if readme is not None:
        publish(
            readme,
            "calibration",
            text,
            {"calibration_curves.png": out / "calibration" / "calibration_curves.png"},
        )
    print("\n" + text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ceco3d-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="full",
        help="full (default): 15 classes with a signature each; quick: a one-minute first look; "
        "fine_grained: the 45-class long-tail benchmark (tens of minutes a model on a CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="the same as --preset quick")
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="the whole method grid (ceco3d/conf/grid/methods.yaml) x --seeds on the benchmark, "
        "with ceco3d-grid, instead of the demo's four models",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="CE alone on the benchmark and on its class-balanced draw: is it in ScanNet200's "
        "regime (ceco3d/tools/calibrate.py)?",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default demo_out; demo_quick_out, benchmark_out for the other "
        "presets: their runs share names, so one folder must not hold two presets)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="models trained at once, sharing the cores (default: 2, or 1 on one core)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help="rewrite this file's generated block (the demo's or the benchmark's table, between "
        "its BEGIN/END comments) and the figures in docs/figures/ beside it",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.preset = "quick"
    if args.preset == "quick" and (args.benchmark or args.calibrate or args.readme):
        parser.error("--quick is a first look: no --benchmark, --calibrate or --readme")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.benchmark and args.calibrate:
        parser.error("--benchmark and --calibrate are two commands: run one, then the other")
    return report_errors("ceco3d-demo", lambda: _demo(args))


def _demo(args: argparse.Namespace) -> int:
    preset = PRESETS[args.preset]
    recipe = _recipe(preset.experiment)
    default_out = {"full": "demo_out", "quick": "demo_quick_out", "fine_grained": "benchmark_out"}
    out = (args.out or Path(default_out[args.preset])).resolve()
    logs = out / "logs"
    if args.readme is not None:
        check(args.readme, "benchmark" if args.benchmark else "calibration" if args.calibrate
              else "demo")  # fmt: skip
    start = time.perf_counter()
    print(f"[demo] preset {args.preset}: {preset}; output in {out}")
    _prepare(out, preset, args.data_seed, recipe.data.voxel_size, logs)
    if args.benchmark:
        return _benchmark(out, preset, args.seeds, args.readme, start, args.jobs)
    if args.calibrate:
        return _calibrate(out, preset, args, recipe, args.readme)

    prepared, methods = out / "prepared", load_methods(METHODS_FILE)
    key = _model_key(prepared, recipe)
    tasks = [(name, seed) for seed in args.seeds for name in MODELS]

    def train(task: tuple[str, int]) -> dict:
        method, seed = MODELS[task[0]], task[1]
        return _train_and_evaluate(out, prepared, preset, _run_name(method, seed, key),
                                   methods[method], seed, logs, args.jobs)  # fmt: skip

    # Two small CPU trainings side by side, a core each, finish sooner than one after the other
    # on two cores (docs/demo_results.md); the logs then go to OUT/logs only.
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(train, tasks))
    per_seed = {name: [] for name in MODELS}
    for (name, _), summary in zip(tasks, summaries, strict=True):
        per_seed[name].append(summary)

    first = args.seeds[0]
    ckpts = {name: _checkpoint(out, _run_name(m, first, key)) for name, m in MODELS.items()}
    _run("analyze", "ceco3d.cli.analyze", f"ckpt=[{','.join(map(str, ckpts.values()))}]",
         f"names=[{','.join(ckpts)}]", f"out={out / 'analysis'}", log_dir=logs)  # fmt: skip
    submission = out / "submission_scannet200_test.zip"
    _run("submit", "ceco3d.cli.submit", f"ckpt={ckpts['CeCo']}", "split=test",
         f"out={submission}", "overwrite=true", log_dir=logs)  # the demo's own file # fmt: skip
    _run("submit check", "ceco3d.cli.submit", f"check={submission}", f"raw={out / 'raw'}",
         "benchmark=scannet200", "split=test", log_dir=logs)  # fmt: skip

    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    minutes = (time.perf_counter() - start) / 60
    text = _demo_report(out, preset, recipe, args, per_seed, analysis, minutes)
    (out / "results.md").write_text(text)
    recipe_used = {k: OmegaConf.to_container(recipe[k]) for k in ("model", "data", "trainer")}
    summary = {"preset": preset.__dict__, "recipe": recipe_used, "models": MODELS,
               "per_seed": per_seed, "analysis": analysis}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    if args.readme is not None:
        figures = {f"demo_{p.name}": p for p in sorted((out / "analysis").glob("*.png"))}
        publish(args.readme, "demo", text, figures)
    print("\n" + text)
    print(f"[demo] figures: {out / 'analysis'}, {out / 'eval'}; submission: {submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
