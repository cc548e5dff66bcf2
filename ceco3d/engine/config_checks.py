"""Config values checked before any work starts; each failure names the key and the fix."""

from __future__ import annotations

import math
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ceco3d.data.dataset import FEATURE_CHANNELS
from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.device import resolve_device
from ceco3d.errors import UsageError
from ceco3d.losses import CeCoLoss

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
# What a resumed run compares with its checkpoint's config ...
RESUME_SECTIONS = ("seed", "data", "model", "loss", "aug", "optim", "sched")
# ... but for these: how long and how often (the schedule's horizon follows trainer.max_steps
# and keeps the checkpoint's, with a warning), how data is loaded, where the prepared data lies
# (its identity is compared instead).
RESUME_FREE = ("trainer.", "data.num_workers", "data.root", "sched.total_iters",
               "sched.total_steps")  # fmt: skip
# Restored from the checkpoint's state whatever the config says: a change could not take effect.
NEVER_ACCEPTED = ("optim.", "sched.", "seed")


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


def is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def check_optimizer(cfg: DictConfig) -> None:
    lr = OmegaConf.select(cfg, "optim.lr")
    if not is_number(lr) or not lr > 0:
        raise UsageError(f"optim.lr={lr!r}: expected a learning rate > 0, e.g. optim.lr=0.1")


def is_whole(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def check_center_head(cfg: DictConfig) -> None:
    """A loss of the CeCo family has the model's center head to read, and the head's numbers
    are in range."""
    head = OmegaConf.select(cfg, "model.center_head")
    if head is None:
        target = OmegaConf.select(cfg, "loss._target_")
        if target is not None and issubclass(get_class(target), CeCoLoss):
            raise UsageError(
                f"loss._target_={target} needs the model's center head, but model.center_head is "
                "null; drop model.center_head=null (loss=ceco adds the head), or train with loss=ce"
            )
        return
    k = cfg.data.num_classes
    allowed = {
        "reduce_dim": (lambda v: is_whole(v) and v >= 1, "a whole number >= 1"),
        "proj_dim": (lambda v: is_whole(v) and v >= k,
                     f"a whole number >= data.num_classes ({k}), one ETF direction per class"),
        "scale": (lambda v: is_number(v) and v > 0, "a number > 0"),
        "dropout": (lambda v: is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    }  # fmt: skip
    for name, (fits, expected) in allowed.items():
        if name in head and not fits(head[name]):
            key = f"model.center_head.{name}"
            raise UsageError(
                f"{key}={head[name]!r}: expected {expected} "
                "(ceco3d/conf/model/center_head/ceco.yaml has the defaults)"
            )


def check_training(cfg: DictConfig) -> None:
    for key, (minimum, nullable) in TRAINING_COUNTS.items():
        check_count(cfg, key, minimum, nullable)
    resolve_device(cfg.trainer.device, "trainer.device")
    check_optimizer(cfg)
    check_center_head(cfg)
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


def changed_keys(saved: dict, cfg: DictConfig, sections: tuple[str, ...] = ()) -> dict:
    """``{key: "key=saved (now current)"}`` for each setting that differs."""
    before = fixed_settings(saved, sections)
    after = fixed_settings(OmegaConf.to_container(cfg, resolve=True), sections)
    changed = [k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)]
    return {k: f"{k}={before.get(k)!r} (now {after.get(k)!r})" for k in changed}


def changed_settings(saved: dict, cfg: DictConfig, sections: tuple[str, ...] = ()) -> str:
    """``key=saved (now current)`` for each setting that differs, or "" when none does."""
    return ", ".join(changed_keys(saved, cfg, sections).values())


def check_resumable(saved: dict, cfg: DictConfig, path: Path) -> list[str]:
    """A run resumes only with the settings its checkpoint was made with, but for the keys of
    ``RESUME_FREE`` and the changes ``trainer.resume_accept`` names (data, augmentation, model
    or loss keys; the optimiser's and the schedule's would be overridden by their restored
    state, and what the weights fix cannot change). Returns the accepted changes."""
    changed = changed_keys(saved, cfg, RESUME_SECTIONS)
    changed = {k: v for k, v in changed.items() if not k.startswith(RESUME_FREE)}
    accept = cfg.trainer.get("resume_accept") or ()
    accept = (accept,) if isinstance(accept, str) else tuple(map(str, accept))
    fixed = [k for k in changed if k.startswith(NEVER_ACCEPTED) or k in FIXED_BY_WEIGHTS]
    refused = {k: v for k, v in changed.items() if k in fixed or not k.startswith(accept)}
    if refused:
        listed = ", ".join(list(refused.values())[:4])
        listed += f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        groups = sorted({k.split(".")[0] for k in refused})
        stuck = ", ".join([k for k in refused if k in fixed][:4])
        hint = (" (the optimiser and the schedule restore their own state and the weights fix "
                f"{', '.join(FIXED_BY_WEIGHTS)}, so {stuck} cannot change in a resumed run)"
                if stuck else
                f", or accept the change with trainer.resume_accept=[{','.join(groups)}] "
                "(logged, and recorded in the run's config)")  # fmt: skip
        raise UsageError(
            f"{path} was made with other settings: {listed}; resume with the checkpoint's "
            f"settings, or start a new run with another run_name{hint}"
        )
    return list(changed.values())


def check_weights_fit(saved: dict, cfg: DictConfig, path: Path) -> None:
    """Overrides given for inference leave what the checkpoint's weights fix unchanged."""
    changed = changed_settings(saved, cfg)
    if changed:
        raise UsageError(
            f"{path}: its weights were trained with other settings than asked for: {changed}; "
            "drop that override, or use a checkpoint trained with it"
        )
