"""A run folder holds one run: a new run never replaces another run's checkpoints or results."""

from __future__ import annotations

from pathlib import Path

from ceco3d.errors import UsageError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
VAL_SUMMARY = "val_summary.json"


def run_outputs(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` that a new run would replace."""
    candidates = [run_dir / CHECKPOINT_DIR / LAST, run_dir / CHECKPOINT_DIR / BEST]
    return [p for p in [*candidates, run_dir / VAL_SUMMARY] if p.is_file()]


def resume_checkpoint(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint that ``trainer.resume`` selects for a run in ``run_dir``, or None for a
    fresh run. Refuses (UsageError) a fresh run, or a resume from another run's checkpoint, in a
    folder that already holds a run."""
    outputs = run_outputs(run_dir)
    if resume == "auto":
        last = run_dir / CHECKPOINT_DIR / LAST
        path = last if last.is_file() else None
    elif resume in (None, "", "null"):
        path = None
    else:
        path = Path(resume)
    own = path is not None and path.resolve().parent == (run_dir / CHECKPOINT_DIR).resolve()
    if outputs and not own:
        held = ", ".join(str(p.relative_to(run_dir)) for p in outputs)
        raise UsageError(
            f"{run_dir} already holds a run ({held}); nothing was changed. To continue that run "
            "add trainer.resume=auto with the same run_name; to start a new run choose another "
            "run_name=NAME (or delete the folder)"
        )
    return path
