"""Self-describing checkpoints: weights, optimizer, scheduler, step, RNG states, the resolved
config, the git revision and package versions. Written atomically."""

from __future__ import annotations

import random
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceco3d.io import InputError, atomic_write
from ceco3d.paths import REPO_ROOT

CHECKPOINT_VERSION = 1
# Beside the weights: the loss's state (buffers that change in training, e.g. the seesaw loss's
# class counts) and the training set's voxels per class (the class prior of post-hoc logit
# adjustment). Checkpoints written before either existed lack the key.
LOSS_STATE = "loss_state"
TRAIN_VOXEL_COUNTS = "train_voxel_counts"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        rev = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return f"{rev}{'-dirty' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("ceco3d", "torch", "MinkowskiEngine", "numpy", "hydra-core"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (saving the global state)
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    torch.random.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Save ``state`` plus provenance (version, git revision, package versions, RNG states)."""
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "git_revision": git_revision(),
        "package_versions": package_versions(),
        "rng_states": rng_states(),
        **state,
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: not a ceco3d checkpoint (version {CHECKPOINT_VERSION})")
    if isinstance(ckpt.get("config"), dict):
        ckpt["config"] = upgrade_config(ckpt["config"], path)
    return ckpt


def upgrade_config(config: dict, path: Path) -> dict:
    """A checkpoint's config in today's layout. Older checkpoints name the backbone
    (``model.backbone: minkunet34c`` beside ``model.bn_momentum``) where conf/model/ now gives
    its ``_target_``, and keep the center head's settings in ``loss.center_head`` where they now
    are ``model.center_head``; nor do they have ``data.revoxelize``. Their CeCo loss was CE +
    center term, with the CE's ``class_weighting`` beside ``lambda_``, where the CE is now
    ``loss.voxel``."""
    model, loss = dict(config.get("model") or {}), dict(config.get("loss") or {})
    if isinstance(model.get("backbone"), str):
        from ceco3d.models.minkunet import BACKBONES

        name = model.pop("backbone")
        if name.lower() not in BACKBONES:
            raise InputError(
                f"{path}: model.backbone={name!r} is not a backbone ceco3d knows "
                f"({', '.join(sorted(BACKBONES))})"
            )
        cls = BACKBONES[name.lower()]
        model["backbone"] = {"_target_": f"{cls.__module__}.{cls.__name__}"}
        if "bn_momentum" in model:
            model["backbone"]["bn_momentum"] = model.pop("bn_momentum")
    if isinstance(loss.get("center_head"), dict):
        from ceco3d.models.center_collapse import CenterCollapseHead

        target = f"{CenterCollapseHead.__module__}.{CenterCollapseHead.__name__}"
        model["center_head"] = {"_target_": target, **loss.pop("center_head")}
    if loss.get("_target_") == "ceco3d.losses.CeCoLoss" and "voxel" not in loss:
        weighting = loss.pop("class_weighting", "none")
        loss["voxel"] = {"_target_": "ceco3d.losses.CrossEntropyLoss", "class_weighting": weighting}
    # Before data.revoxelize, evaluation required the prepared voxel size (as it does now).
    data = {"revoxelize": False, **(config.get("data") or {})}
    return {**config, "data": data, "model": model, "loss": loss}
