"""Self-describing checkpoints: weights, optimizer, scheduler, step, RNG states, the resolved
config, the git revision and package versions. Written atomically.

A checkpoint holds tensors and plain data only (RNG states included), so it is read with
``torch.load(weights_only=True)``: a file someone sends cannot run code when it is loaded. A
checksum of its tensors, written beside them, catches a file damaged since it was written.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceco3d.errors import InputError, UsageError
from ceco3d.io import atomic_write
from ceco3d.paths import REPO_ROOT

CHECKPOINT_VERSION = 2
# Version 1 kept numpy's RNG state as a numpy array, which only an unrestricted (code-running)
# unpickler reads; ``python -m ceco3d.cli.convert_checkpoint`` rewrites such a file.
CONVERT_COMMAND = "python -m ceco3d.cli.convert_checkpoint"
# Beside the weights: the loss's state (buffers that change in training, e.g. the seesaw loss's
# class counts) and the training set's voxels per class (the class prior of post-hoc logit
# adjustment). Checkpoints written before either existed lack the key.
LOSS_STATE = "loss_state"
TRAIN_VOXEL_COUNTS = "train_voxel_counts"


def git_revision() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes); "unknown" for an installed
    package, whose folder above is no checkout of ceco3d."""
    if not (REPO_ROOT / ".git").exists():  # a folder in a clone, a file in a worktree
        return "unknown"
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
    """Every RNG's state as tensors and plain values (what ``weights_only`` loading reads)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state)
    states = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    version, mt_state, gauss = states["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.random.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def tensor_checksum(state: Any) -> str:
    """SHA-256 over every tensor in ``state`` (nested dicts and lists): its place, dtype, shape
    and bytes."""
    digest = hashlib.sha256()

    def visit(node: Any, where: str) -> None:
        if isinstance(node, torch.Tensor):
            flat = node.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}:{node.dtype}:{tuple(node.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(node, dict):
            for key in sorted(node, key=str):
                visit(node[key], f"{where}/{key}")
        elif isinstance(node, list | tuple):
            for i, item in enumerate(node):
                visit(item, f"{where}/{i}")

    visit(state, "")
    return digest.hexdigest()


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Save ``state`` plus provenance (version, git revision, package versions, RNG states) and
    the checksum of its tensors."""
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "git_revision": git_revision(),
        "package_versions": package_versions(),
        "rng_states": rng_states(),
        **state,
    }
    payload["checksum"] = tensor_checksum(payload)
    with atomic_write(path) as f:
        try:
            torch.save(payload, f)
        except RuntimeError as e:
            # torch's zip writer reports a failed write (a full disk) as "unexpected pos ...";
            # the write's own error says what happened.
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def read_checkpoint_file(path: Path, trusted: bool = False) -> Any:
    """The unpickled content of ``path``: tensors and plain data only, unless ``trusted``."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        if trusted or "weights_only" not in str(e).lower():
            raise InputError(f"{path}: not a readable checkpoint ({e})") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        needs = f"first: {found[1]}" if found else "e.g. numpy arrays"
        raise InputError(
            f"{path}: it holds Python objects, not only tensors and plain data ({needs}), so it "
            "was not loaded: unpickling them could run code hidden in the file. Checkpoints of "
            f"ceco3d before version {CHECKPOINT_VERSION} hold such objects; if you trust where "
            f"the file came from, convert it once with {CONVERT_COMMAND} {path} NEW.pt and use "
            "NEW.pt"
        ) from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ceco3d checkpoint, read safely (no code runs) and checked against its checksum."""
    path = Path(path)
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("checkpoint_version") != CHECKPOINT_VERSION:
        version = ckpt.get("checkpoint_version") if isinstance(ckpt, dict) else None
        hint = f"; convert it with {CONVERT_COMMAND} {path} NEW.pt" if version == 1 else ""
        raise InputError(f"{path}: not a ceco3d checkpoint (version {CHECKPOINT_VERSION}){hint}")
    stored = ckpt.pop("checksum", None)
    if stored != tensor_checksum(ckpt):
        raise InputError(
            f"{path}: its tensors do not match the checksum written with them (the file was "
            "damaged or edited since it was saved); use another copy or another checkpoint"
        )
    ckpt["checksum"] = stored
    if isinstance(ckpt.get("config"), dict):
        ckpt["config"] = upgrade_config(ckpt["config"], path)
    return ckpt


def convert_checkpoint(source: str | Path, target: str | Path) -> None:
    """Rewrite a trusted ceco3d checkpoint of an earlier version (or one holding numpy objects)
    as a current one: read with the unrestricted unpickler, RNG states as tensors and plain
    data, a new checksum. ``target`` must not exist."""
    source, target = Path(source), Path(target)
    if target.exists():
        raise UsageError(f"{target}: exists already; choose a new file for the converted copy")
    ckpt = read_checkpoint_file(source, trusted=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise InputError(f"{source}: not a ceco3d checkpoint (it has no model weights and config)")
    ckpt.pop("checksum", None)
    states = ckpt.get("rng_states") or {}
    if isinstance(states.get("numpy"), tuple | list):
        kind, keys, *rest = states["numpy"]
        states["numpy"] = [kind, torch.as_tensor(np.asarray(keys, np.int64)), *rest]
    if isinstance(states.get("python"), tuple):
        version, mt_state, gauss = states["python"]
        states["python"] = [version, list(mt_state), gauss]
    ckpt["checkpoint_version"] = CHECKPOINT_VERSION
    ckpt["checksum"] = tensor_checksum(ckpt)
    with atomic_write(target) as f:
        torch.save(ckpt, f)
    read_checkpoint_file(target)  # what was written loads safely


def upgrade_config(config: dict, path: Path) -> dict:
    """A checkpoint's config in today's layout. Older checkpoints name the backbone
    (``model.backbone: minkunet34c`` beside ``model.bn_momentum``) where ceco3d/conf/model/ now
    gives its ``_target_``, and keep the center head's settings in ``loss.center_head`` where they
    now are ``model.center_head``; nor do they have ``data.revoxelize``. Their CeCo loss was CE +
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
