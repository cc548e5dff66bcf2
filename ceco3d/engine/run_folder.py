"""A run folder holds one run: a new run never replaces another run's checkpoints or results."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig

from ceco3d.claims import claim, release
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.errors import UsageError
from ceco3d.paths import rank_zero

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
VAL_SUMMARY = "val_summary.json"
HYDRA_SUBDIR = ".hydra"
SEGMENTS = "segments"

log = logging.getLogger("ceco3d.train")


def claim_run_folder(run_dir: Path) -> None:
    """Claim ``run_dir`` for this training (rank 0 of a distributed one claims for all)."""
    if rank_zero():
        claim(run_dir, "run folder", "choose another run_name=NAME")


def release_run_folder(run_dir: Path) -> None:
    """End this process's claim on ``run_dir`` (a training called in-process has ended)."""
    release(run_dir)


def keep_segment_config(run_dir: Path) -> Path | None:
    """Move the ``.hydra/`` files of the run's earlier segment into ``.hydra/segments/<k>/``
    (k = 1, 2, ... in order) before Hydra writes the resumed segment's; the new folder (None
    on other ranks than 0, or where there is nothing to keep)."""
    hydra = run_dir / HYDRA_SUBDIR
    if not rank_zero():
        return None
    files = [p for p in hydra.glob("*.yaml") if p.is_file()]
    if not files:
        return None
    segments = hydra / SEGMENTS
    target = segments / str(len(list(segments.glob("*"))) + 1 if segments.is_dir() else 1)
    target.mkdir(parents=True)
    for path in files:
        shutil.move(path, target / path.name)
    return target


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


def check_same_data(ckpt: dict, train_set: ScanNetDataset, cfg: DictConfig, path: Path) -> None:
    """A resumed run trains on the preparation its checkpoint was trained on (wherever that
    folder now lies), unless ``trainer.resume_accept`` names ``data.root``."""
    saved = ckpt.get("data_identity")
    if saved is None or saved == train_set.identity:
        return
    if "data.root" in (cfg.trainer.get("resume_accept") or ()):
        log.warning(
            "resuming %s on another preparation of the data (identity %s, was %s): "
            "trainer.resume_accept names data.root",
            path,
            train_set.identity,
            saved,
        )
        return
    raise UsageError(
        f"{path} was trained on another preparation of the data (identity {saved}, from "
        f"{ckpt['config']['data'].get('root')}) than {train_set.root} holds now "
        f"({train_set.identity}); resume with data.root set to the data it was trained on, "
        "start a new run with another run_name, or accept the change with "
        "trainer.resume_accept=[data.root] (logged, and recorded in the run's config)"
    )
