"""A sweep's summary: one entry per job of a multirun (its overrides, its run folder, how far it
trained, its validation mIoU), written into the sweep folder when the cluster launchers' sweep
ends, also when some of its jobs failed."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from ceco3d.engine.checkpoint import load_checkpoint
from ceco3d.engine.run_folder import CHECKPOINT_DIR, LAST, VAL_SUMMARY
from ceco3d.io import read_json, save_json

log = logging.getLogger("ceco3d.sweep")

SWEEP_SUMMARY = "sweep_summary.json"
JOB_OVERRIDES = Path(".hydra") / "overrides.yaml"  # Hydra's record of a job's command line


def job_summary(job_dir: Path) -> dict:
    last = job_dir / CHECKPOINT_DIR / LAST
    ckpt = load_checkpoint(last) if last.is_file() else None
    step = ckpt["step"] if ckpt else 0
    max_steps = ckpt["config"]["trainer"]["max_steps"] if ckpt else None
    val = job_dir / VAL_SUMMARY
    return {
        "folder": job_dir.name,
        "overrides": list(OmegaConf.load(job_dir / JOB_OVERRIDES)),
        "step": step,
        "max_steps": max_steps,
        "finished": ckpt is not None and step == max_steps,
        "mIoU": read_json(val)["point"]["mIoU"] if val.is_file() else None,
    }


def write_sweep_summary(sweep_dir: Path) -> Path:
    """``sweep_dir/sweep_summary.json`` from the job folders there (those Hydra has started)."""
    jobs = sorted(
        (p.parent.parent for p in sweep_dir.glob(f"*/{JOB_OVERRIDES}")),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
    )
    summary = [job_summary(job) for job in jobs]
    path = sweep_dir / SWEEP_SUMMARY
    save_json(path, {"jobs": summary})
    done = sum(job["finished"] for job in summary)
    log.info("sweep summary: %d of %d jobs finished, %s", done, len(summary), path)
    return path
