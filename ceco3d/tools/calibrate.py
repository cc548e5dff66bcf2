"""``ceco3d-demo --calibrate``: is the benchmark in ScanNet200's regime? CE alone, twice.

1. CE at the recipe's budget on the benchmark (the long-tailed draw), validated every eighth of
   training: *converged* when val mIoU changes by less than 1 point over the last quarter (from
   the validation at 3/4 of the steps to the last; the spread over those validations is shown
   too), and in
   ScanNet200's shape when head >= 2 x common >= 1.5 x tail and tail <= 20 (the ScanNet200
   authors' from-scratch CE: roughly 48 / 19 / 8).
2. CE at the same budget on the class-balanced draw of the same generator (``ceco3d-synth
   --balanced``, every object class equally frequent): the tail is *learnable* when its tail IoU
   is at least 2/3 of its head IoU, so what fails on the long tail is the imbalance.

The table (``OUT/calibration/calibration.md``), the validation curves
(``calibration_curves.png``) and each check's verdict; nothing here trains anything but CE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ceco3d.io import atomic_write, read_json, save_text

GROUPS = ("mIoU", "mIoU_head", "mIoU_common", "mIoU_tail")
CHECKPOINTS_PER_RUN = 8  # validations over a run: the curve's points


def val_curve(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` of a run's validations, read from its TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    curve: dict[int, dict[str, float]] = {}
    tags = set(events.Tags()["scalars"])
    for key in GROUPS:
        if f"val/{key}" in tags:
            for event in events.Scalars(f"val/{key}"):
                curve.setdefault(event.step, {})[key] = event.value
    return dict(sorted(curve.items()))


def last_quarter_change(curve: dict[int, dict[str, float]], max_steps: int) -> float:
    """How much val mIoU changed over the last quarter of training: its value at the end minus
    its value at the first validation from step 3/4 * max_steps on."""
    values = [v["mIoU"] for s, v in curve.items() if s >= 0.75 * max_steps]
    return float(values[-1] - values[0]) if values else float("nan")


def last_quarter_range(curve: dict[int, dict[str, float]], max_steps: int) -> float:
    """The spread (max - min) of val mIoU over the validations of the last quarter."""
    values = [v["mIoU"] for s, v in curve.items() if s >= 0.75 * max_steps]
    return float(max(values) - min(values)) if values else float("nan")


def checks(long_tail: dict, balanced: dict, change: float) -> list[tuple[str, bool, str]]:
    """(criterion, met, the numbers) of the regime's four conditions; ``long_tail`` and
    ``balanced`` are the two runs' final point-level metrics."""
    head, common, tail = (long_tail[f"mIoU_{g}"] for g in ("head", "common", "tail"))
    b_head, b_tail = balanced["mIoU_head"], balanced["mIoU_tail"]
    return [
        ("converged: val mIoU changes by < 1 point over the last quarter", abs(change) < 1,
         f"{change:+.2f} points"),
        ("head >= 2 x common", head >= 2 * common, f"{head:.1f} vs 2 x {common:.1f}"),
        ("common >= 1.5 x tail", common >= 1.5 * tail, f"{common:.1f} vs 1.5 x {tail:.1f}"),
        ("tail <= 20", tail <= 20, f"{tail:.1f}"),
        ("balanced draw: tail >= 2/3 x head", b_tail >= 2 / 3 * b_head,
         f"{b_tail:.1f} vs 2/3 x {b_head:.1f}"),
    ]  # fmt: skip


def plot_curves(path: Path, curves: dict[str, dict[int, dict[str, float]]]) -> None:
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, len(curves), sharey=True)
    for ax, (name, curve) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        steps = list(curve)
        for key, style in zip(GROUPS, ("k-", "C0-", "C1-", "C3-"), strict=True):
            ax.plot(steps, [curve[s].get(key, np.nan) for s in steps], style, marker="o",
                    markersize=3, label=key.replace("mIoU_", ""))  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("val IoU (%)")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def report(
    out: Path,
    runs: dict[str, Path],
    max_steps: int,
    imbalance: dict[str, dict],
    data_lines: dict[str, str],
) -> str:
    """The calibration table and verdicts of the two CE runs (``runs``: {"long-tailed draw": run
    folder, "balanced draw": run folder}); writes the figure and the table into ``out``."""
    curves = {name: val_curve(run) for name, run in runs.items()}
    final = {name: read_json(run / "val_summary.json")["point"] for name, run in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(out / "calibration_curves.png", curves)
    (long_tail, lt_final), (_, bal_final) = list(final.items())
    change = last_quarter_change(curves[long_tail], max_steps)
    lines = [
        "| CE at the budget | mIoU | head | common | tail | PIF | CIF | last quarter: change "
        "/ spread of val mIoU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in final.items():
        moved = last_quarter_change(curves[name], max_steps)
        spread = last_quarter_range(curves[name], max_steps)
        factors = imbalance[name]
        lines.append(
            f"| {name} | {row['mIoU']:.1f} | {row['mIoU_head']:.1f} | {row['mIoU_common']:.1f} | "
            f"{row['mIoU_tail']:.1f} | {factors['point_imbalance_factor']:.0f} | "
            f"{factors['center_imbalance_factor']:.0f} | {moved:+.2f} / {spread:.2f} |"
        )
    lines += ["", "Validation curves (val mIoU / head / common / tail, %, by step):", ""]
    lines += ["| step | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for step in sorted({s for c in curves.values() for s in c}):
        cells = []
        for curve in curves.values():
            v = curve.get(step)
            cells.append(
                "-" if v is None else " / ".join(f"{v.get(k, np.nan):.1f}" for k in GROUPS)
            )
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "| condition | met | numbers |", "|---|---|---|"]
    verdicts = checks(lt_final, bal_final, change)
    lines += [f"| {c} | {'yes' if ok else '**no**'} | {n} |" for c, ok, n in verdicts]
    lines += ["", *[f"{name}: {text}." for name, text in data_lines.items()]]
    text = "\n".join(lines) + "\n"
    save_text(out / "calibration.md", text)
    record = {
        "final": final,
        "curves": {name: {str(s): v for s, v in c.items()} for name, c in curves.items()},
        "checks": [{"condition": c, "met": ok, "numbers": n} for c, ok, n in verdicts],
        "imbalance": imbalance,
    }
    save_text(out / "calibration.json", json.dumps(record, indent=1))
    return text
