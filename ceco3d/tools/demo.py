"""ceco3d-demo: the whole system on a synthetic long-tailed ScanNet200: CE, class-weighted CE
and CeCo.

Runs the same commands a user runs (each as its own process): ceco3d-synth -> ceco3d-prep ->
ceco3d-train (CE, weighted CE, CeCo: same seed, data and budget) -> ceco3d-eval ->
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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ceco3d.data.layout import MANIFEST, data_identity
from ceco3d.device import CHILD_WARNINGS
from ceco3d.io import read_json, save_json
from ceco3d.paths import CONF_DIR
from ceco3d.tools import backbone_name
from ceco3d.tools.seed_tables import difference_table, seed_table

# The synthetic benchmark keeps ScanNet200's long tail (data_prep/synth/classes.py); its sizes
# and the recipe were tuned on the CE baseline alone, for a 2-core CPU. CeCo keeps the paper's
# settings (ceco3d/conf/loss/ceco.yaml, ceco3d/conf/model/center_head/ceco.yaml).


@dataclass(frozen=True)
class Preset:
    """The synthetic data set; the training recipe is ``ceco3d/conf/experiment/<name>.yaml``."""

    scenes: int  # train + val
    test_scenes: int
    classes: int
    vertex_spacing: float  # metres
    experiment: str


PRESETS = {
    "full": Preset(60, 2, 15, 0.06, "demo"),
    "quick": Preset(12, 1, 15, 0.08, "demo_quick"),
}
STAT_COLUMNS = [
    ("mIoU", "mIoU"), ("head", "mIoU_head"), ("common", "mIoU_common"), ("tail", "mIoU_tail"),
    ("mAcc", "mAcc"), ("allAcc", "allAcc"),
]  # fmt: skip
# The compared models: report name -> ceco3d/conf/loss/<name>.yaml; the baseline comes first, and
# the seed table gives every other model's per-seed difference to it.
MODELS = {"CE": "ce", "CE-weighted": "ce_weighted", "CeCo": "ceco"}
BASELINE = "CE"
COLLAPSE_COLUMNS = [
    ("equiang. F", "equiangularity_features"), ("sep. F", "separation_features"),
    ("equiang. W", "equiangularity_weights"), ("sep. W", "separation_weights"),
]  # fmt: skip


def synth_arguments(raw: Path, preset: Preset, data_seed: int) -> list[str]:
    """``ceco3d-synth`` arguments of the preset's synthetic data set."""
    return [str(raw), "--scenes", str(preset.scenes), "--test-scenes", str(preset.test_scenes),
            "--seed", str(data_seed), "--classes", str(preset.classes), "--vertex-spacing",
            str(preset.vertex_spacing)]  # fmt: skip


def _recipe(experiment: str):
    """The composed training config of ``experiment`` (its data and trainer settings)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", "data.root=-"])


def _run(step: str, module: str, *args: str, log_dir: Path) -> None:
    """Run ``python -m module args``; its output streams to the console and to a log file."""
    cmd = [sys.executable, "-m", module, *args]
    print(f"\n[demo] {step}: {' '.join(['python -m', module, *args])}", flush=True)
    start = time.perf_counter()
    log_dir.mkdir(parents=True, exist_ok=True)
    # The CPU build's "compiled with CPU_ONLY" notice would repeat in every step's output.
    env = {**os.environ, "PYTHONWARNINGS": CHILD_WARNINGS}
    with open(log_dir / f"{step.replace(' ', '_')}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)  # fmt: skip
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
        if proc.wait() != 0:
            raise SystemExit(f"[demo] {step} failed (exit {proc.returncode}); see {log.name}")
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


def _run_name(loss: str, seed: int, key: str) -> str:
    return f"{loss}_seed{seed}_{key}"


def _checkpoint(out: Path, run_name: str) -> Path:
    return out / "runs" / run_name / "checkpoints" / "last.pt"


def _train_and_evaluate(
    out: Path, data_root: Path, preset: Preset, run_name: str, loss: str, seed: int, logs: Path
) -> dict:
    """Train one model (or reuse a finished run) and return its val summary."""
    ckpt = _checkpoint(out, run_name)
    summary_path = out / "eval" / run_name / "summary.json"
    done = ckpt.is_file() and summary_path.is_file()
    if done and summary_path.stat().st_mtime > ckpt.stat().st_mtime:
        print(f"[demo] {run_name}: trained and evaluated already ({summary_path})")
        return json.loads(summary_path.read_text())
    # The recipe sets trainer.resume=auto: an interrupted demo continues its runs.
    _run(f"train {run_name}", "ceco3d.cli.train", f"experiment={preset.experiment}",
         f"loss={loss}", f"seed={seed}", f"data.root={data_root}",
         f"runs_root={out / 'runs'}", f"run_name={run_name}", log_dir=logs)  # fmt: skip
    _run(f"eval {run_name}", "ceco3d.cli.evaluate", f"ckpt={ckpt}",
         f"out={out / 'eval' / run_name}", "export.preview=true", "export.max_scenes=2",
         log_dir=logs)  # fmt: skip
    return json.loads(summary_path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ceco3d-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a one-minute first look")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default demo_out, with --quick demo_quick_out: the presets' runs "
        "share names, so one folder must not hold both)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    args = parser.parse_args(argv)

    preset = PRESETS["quick" if args.quick else "full"]
    recipe = _recipe(preset.experiment)
    out = (args.out or Path("demo_quick_out" if args.quick else "demo_out")).resolve()
    raw, prepared, logs = out / "raw", out / "prepared", out / "logs"
    start = time.perf_counter()
    print(f"[demo] preset {'quick' if args.quick else 'full'}: {preset}; output in {out}")

    synth_args = synth_arguments(raw, preset, args.data_seed)
    synth_stamp = out / "synth_args.json"
    if synth_stamp.is_file() and json.loads(synth_stamp.read_text()) == synth_args:
        print(f"[demo] synth: {raw} already holds this data set")
    else:
        _run("synth", "data_prep.synth.generate", *synth_args, log_dir=logs)
        save_json(synth_stamp, synth_args)
    _run("prep", "data_prep.prep", str(raw), str(prepared), "-j", "2",
         "--voxel-size", str(recipe.data.voxel_size), log_dir=logs)  # fmt: skip

    key = _model_key(prepared, recipe)
    per_seed = {name: [] for name in MODELS}
    for seed in args.seeds:
        for name, loss in MODELS.items():
            run_name = _run_name(loss, seed, key)
            per_seed[name].append(
                _train_and_evaluate(out, prepared, preset, run_name, loss, seed, logs)
            )

    first = args.seeds[0]
    ckpts = {name: _checkpoint(out, _run_name(loss, first, key)) for name, loss in MODELS.items()}
    _run("analyze", "ceco3d.cli.analyze", f"ckpt=[{','.join(map(str, ckpts.values()))}]",
         f"names=[{','.join(ckpts)}]", f"out={out / 'analysis'}", log_dir=logs)  # fmt: skip
    submission = out / "submission_scannet200_test.zip"
    _run("submit", "ceco3d.cli.submit", f"ckpt={ckpts['CeCo']}", "split=test",
         f"out={submission}", "overwrite=true", log_dir=logs)  # the demo's own file # fmt: skip
    _run("submit check", "ceco3d.cli.submit", f"check={submission}", f"raw={raw}",
         "benchmark=scannet200", "split=test", log_dir=logs)  # fmt: skip

    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    imbalance = analysis["imbalance_train"]
    minutes = (time.perf_counter() - start) / 60
    report = [
        f"# ceco3d demo ({'quick' if args.quick else 'full'} preset)",
        "",
        f"Synthetic ScanNet200 ({preset.classes} classes, a third each head, common and tail; "
        f"{preset.scenes} train+val scenes, data seed {args.data_seed}), "
        f"experiment={preset.experiment}: {backbone_name(recipe)}, "
        f"{recipe.data.voxel_size * 100:g} cm voxels, {recipe.trainer.max_steps} steps of batch "
        f"{recipe.data.batch_size} (crop {recipe.data.max_voxels} voxels), training seed "
        f"{first}. Point imbalance factor (train, voxels): "
        f"{imbalance['point_imbalance_factor']:.0f}; center imbalance factor: "
        f"{imbalance['center_imbalance_factor']:.0f}. Point-level val metrics in %; "
        "neural-collapse statistics of the val features (F) and classifier weights (W), "
        "lower is closer to a simplex ETF.",
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
               f"Wall time: {minutes:.1f} min."]  # fmt: skip
    text = "\n".join(report) + "\n"
    (out / "results.md").write_text(text)
    recipe_used = {k: OmegaConf.to_container(recipe[k]) for k in ("model", "data", "trainer")}
    summary = {"preset": preset.__dict__, "recipe": recipe_used, "models": MODELS,
               "per_seed": per_seed, "analysis": analysis}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    print("\n" + text)
    print(f"[demo] figures: {out / 'analysis'}, {out / 'eval'}; submission: {submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
