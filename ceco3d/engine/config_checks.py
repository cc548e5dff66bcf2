"""Config values checked before any work starts; each failure names the key and the fix."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ceco3d.data.dataset import FEATURE_CHANNELS
from ceco3d.data.meta import LABEL_SETS
from ceco3d.errors import UsageError

# key -> (smallest allowed value, may be null); every one of them is a whole number
TRAINING_COUNTS = {
    "seed": (0, False),
    "trainer.max_steps": (1, False),
    "trainer.log_every": (1, False),
    "trainer.val_every": (0, False),
    "trainer.val_max_scenes": (1, True),
    "trainer.ckpt_every": (1, False),
    "trainer.threads": (1, True),
    "data.batch_size": (1, False),
    "data.num_workers": (0, False),
    "data.max_voxels": (1, True),
}
# What a model's weights fix: a checkpoint cannot be used with other values of these.
FIXED_BY_WEIGHTS = ("data.label_set", "data.num_classes", "data.features")


def check_count(cfg: DictConfig, key: str, minimum: int, nullable: bool) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"a whole number >= {minimum}" + (" or null" if nullable else "")
        raise UsageError(f"{key}={value!r}: expected {allowed}, e.g. {key}={max(minimum, 2)}")


def check_data(cfg: DictConfig) -> None:
    """``data.label_set``, ``data.num_classes``, ``data.features`` and ``data.voxel_size``
    agree with each other and with what ceco3d knows."""
    data = cfg.data
    if data.label_set not in LABEL_SETS:
        raise UsageError(f"data.label_set={data.label_set!r}: choose one of {sorted(LABEL_SETS)}")
    classes = LABEL_SETS[data.label_set].num_classes
    if data.num_classes != classes:
        raise UsageError(
            f"data.num_classes={data.num_classes!r} but data.label_set={data.label_set} has "
            f"{classes} classes; switch label sets with data={data.label_set} (sets both)"
        )
    if data.features not in FEATURE_CHANNELS:
        raise UsageError(f"data.features={data.features!r}: choose one of {list(FEATURE_CHANNELS)}")
    size = data.voxel_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int | float)
                             or not size > 0):  # fmt: skip
        raise UsageError(
            f"data.voxel_size={size!r}: expected metres > 0 (e.g. 0.02), or null for the "
            "prepared data's"
        )


def check_posthoc_tau(tau: object) -> None:
    """``posthoc_tau`` of ceco3d-eval and ceco3d-predict is a finite number."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
        raise UsageError(
            f"posthoc_tau={tau!r}: expected a number, 0 for no post-hoc logit adjustment or "
            "e.g. posthoc_tau=1.0 for argmax(z - log pi)"
        )


def check_training(cfg: DictConfig) -> None:
    for key, (minimum, nullable) in TRAINING_COUNTS.items():
        check_count(cfg, key, minimum, nullable)
    clip = cfg.trainer.grad_clip
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int | float)
                             or not clip > 0):  # fmt: skip
        raise UsageError(f"trainer.grad_clip={clip!r}: expected a norm > 0 or null")
    check_data(cfg)


def fixed_settings(config: dict, sections: tuple[str, ...] = ()) -> dict[str, object]:
    """Flat ``{key: value}`` of ``FIXED_BY_WEIGHTS`` and of every key under ``sections``."""

    def flat(node: dict, prefix: str) -> dict[str, object]:
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else
                       {f"{prefix}{key}": value})  # fmt: skip
        return out

    data = config.get("data", {})
    return {**flat({s: config.get(s, {}) for s in sections}, ""),
            **{k: data.get(k.removeprefix("data.")) for k in FIXED_BY_WEIGHTS}}  # fmt: skip


SHOWN_CHANGES = 8  # a message lists this many changed settings, then counts the rest


def changed_settings(saved: dict, cfg: DictConfig, sections: tuple[str, ...] = ()) -> str:
    """``key=saved (now current)`` for each setting that differs (the first ``SHOWN_CHANGES``
    in key order, then how many more), or "" when none does."""
    before = fixed_settings(saved, sections)
    after = fixed_settings(OmegaConf.to_container(cfg, resolve=True), sections)
    changed = [k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)]
    shown = [f"{k}={before.get(k)!r} (now {after.get(k)!r})" for k in changed[:SHOWN_CHANGES]]
    more = len(changed) - SHOWN_CHANGES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_resumable(saved: dict, cfg: DictConfig, path: Path) -> None:
    """A run resumes only with the model, loss and label set its checkpoint was made with."""
    changed = changed_settings(saved, cfg, ("model", "loss"))
    if changed:
        raise UsageError(
            f"{path} was made with other settings: {changed}; resume with the checkpoint's "
            "settings, or start a new run with another run_name"
        )


def check_weights_fit(saved: dict, cfg: DictConfig, path: Path) -> None:
    """Overrides given for inference leave what the checkpoint's weights fix unchanged."""
    changed = changed_settings(saved, cfg)
    if changed:
        raise UsageError(
            f"{path}: its weights were trained with other settings than asked for: {changed}; "
            "drop that override, or use a checkpoint trained with it"
        )
