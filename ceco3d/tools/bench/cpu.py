"""CPU training speed of whole processes: this environment against a slower way to run it.

    python -m ceco3d.tools.bench.cpu BATCH.pt STEPS data.root=... model=... loss=ce

builds the model, loss and optimizer for the composed training config, runs one warm-up step
on the saved batch and then STEPS timed steps, and prints one JSON line: the wall seconds of
each step, and per step the user and system CPU seconds and minor page faults of the process
(all its threads), and its peak resident memory (``VmHWM``).

``bench_cpu`` runs that module in fresh processes, two environments alternating (order reversed
every round): ``after`` is this environment as installed; ``before`` is the same build with the
threading of the old one restored (docs/cpu_speed.md): OpenBLAS's own pthreads
instead of torch's OpenMP threads (the pthread build of OpenBLAS preloaded; it answers to the
same ``libopenblas.so.0``) and libgomp's default spin of 300,000 rounds. With ``before_python``
the ``before`` processes run that interpreter instead, e.g. of an environment with an older build.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ceco3d.device import quiet_minkowski_warnings
from ceco3d.tools.bench.measure import child_result, peak_rss_mib
from ceco3d.tools.bench.training import build_training, training_step
from ceco3d.tools.bench.workspace import Preset, compose_config, save_batch, training_batch

TARGET_SPEEDUP = 1.3  # after over before, step wall time
TARGET_SYS_PCT = 5.0  # system time as a share of the step's CPU time
LIBGOMP_DEFAULT_SPIN = "300000"  # GOMP_SPINCOUNT when neither it nor OMP_WAIT_POLICY is set


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]  # of the training config, besides data.root and loss
    scenes: int  # in the batch
    steps: int  # timed steps per process, after one warm-up step


def cases(preset: Preset) -> list[Case]:
    """The preset's crops of its first model, then the demo's recipe."""
    model = preset.models[0]
    found = [
        Case(f"{model}, {voxels:,} voxels",
             (f"model={model}", f"data.voxel_size={preset.voxel_size}",
              f"data.max_voxels={voxels}", "data.batch_size=1"), 1, steps)
        for voxels, steps in preset.cpu_cases
    ]  # fmt: skip
    if preset.cpu_demo_steps:
        # The demo's backbone, voxel size, crop and batch; the bench's scenes were prepared at
        # another voxel size, so every sample is voxelized afresh.
        demo = compose_config(["experiment=demo", "data.root=unused"])
        found.append(Case("demo recipe", ("experiment=demo", "data.revoxelize=true"),
                          demo.data.batch_size, preset.cpu_demo_steps))  # fmt: skip
    return found


def pthread_openblas() -> str | None:
    """The pthread build of OpenBLAS (Debian's layout), or None where there is none."""
    found = sorted(glob.glob("/usr/lib/*/openblas-pthread/libopenblas.so.0"))
    return found[0] if found else None


def environments(before_python: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    """``{"before" | "after": (python, environment)}``."""
    after = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "LD_PRELOAD")}
    before = {**after, "GOMP_SPINCOUNT": LIBGOMP_DEFAULT_SPIN}
    if before_python is None:
        library = pthread_openblas()
        if library is None:
            raise RuntimeError(
                "no pthread build of OpenBLAS to compare against (Debian: apt-get install "
                "libopenblas0-pthread), or pass --before PYTHON"
            )
        before["LD_PRELOAD"] = library
    return {"before": (before_python or sys.executable, before), "after": (sys.executable, after)}


def _run(python: str, env: dict[str, str], batch: Path, case: Case, root: Path) -> dict:
    cmd = [python, "-m", "ceco3d.tools.bench.cpu", str(batch), str(case.steps),
           f"data.root={root}", "loss=ce", *case.overrides]  # fmt: skip
    return child_result(cmd, env)


def _summary(runs: list[dict]) -> dict:
    per_step = {key: float(np.median([r[key] for r in runs])) for key in
                ("wall_s", "user_s", "sys_s", "minflt", "peak_mib")}  # fmt: skip
    per_step["sys_pct"] = 100 * per_step["sys_s"] / (per_step["user_s"] + per_step["sys_s"])
    return per_step


def bench_cpu(root: Path, preset: Preset, work: Path, before_python: str | None = None) -> dict:
    """Every case of ``cases(preset)``: ``preset.cpu_rounds`` fresh processes per environment."""
    rounds = preset.cpu_rounds
    envs = environments(before_python)
    results = {"rounds": rounds, "before_python": before_python, "cases": [],
               "target_speedup": TARGET_SPEEDUP, "target_sys_pct": TARGET_SYS_PCT}  # fmt: skip
    for case in cases(preset):
        batch = training_batch(compose_config([f"data.root={root}", *case.overrides]), case.scenes)
        batch_path = work / f"cpu_batch_{len(results['cases'])}.pt"
        save_batch(batch, batch_path)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for round_index in range(rounds):
            order = ("before", "after") if round_index % 2 == 0 else ("after", "before")
            for name in order:
                python, env = envs[name]
                runs[name].append(_run(python, env, batch_path, case, root))
        pairs = [
            b["wall_s"] / a["wall_s"] for b, a in zip(runs["before"], runs["after"], strict=True)
        ]
        results["cases"].append({
            "case": case.name, "voxels": len(batch["labels"]), "steps": case.steps,
            "before": _summary(runs["before"]), "after": _summary(runs["after"]),
            "speedup": float(np.median(pairs)), "speedup_min": min(pairs),
            "speedup_max": max(pairs),
        })  # fmt: skip
    return results


def measure_steps(cfg, batch: dict, steps: int) -> dict:
    """One warm-up step, then ``steps`` timed ones; per-step means of the process's usage."""
    device = torch.device("cpu")
    model, loss_fn, optimizer = build_training(cfg, device)
    step = training_step(model, loss_fn, optimizer, batch, device)
    step()
    start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    walls = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t)
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step_s": walls, "wall_s": (time.perf_counter() - start) / steps,
        "user_s": (end.ru_utime - usage.ru_utime) / steps,
        "sys_s": (end.ru_stime - usage.ru_stime) / steps,
        "minflt": (end.ru_minflt - usage.ru_minflt) / steps, "peak_mib": peak_rss_mib(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ceco3d.tools.bench.cpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("batch", type=Path, help="torch.save'd coords, feats, labels")
    parser.add_argument("steps", type=int)
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_intermixed_args(argv)
    quiet_minkowski_warnings()
    cfg = compose_config(args.overrides)
    print(json.dumps(measure_steps(cfg, torch.load(args.batch), args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
