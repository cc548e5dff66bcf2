"""Where computation runs: the device that ``auto``, ``cpu`` or ``cuda`` means on this machine,
and the one filter for MinkowskiEngine's CPU-only build notice (every entry point sets it, and
the tools pass it to the processes they start)."""

from __future__ import annotations

import re
import warnings

from ceco3d.errors import UsageError

CPU_ONLY_NOTICE = "The MinkowskiEngine was compiled with CPU_ONLY"
# The same filter as a PYTHONWARNINGS value, for child processes (it matches a message prefix).
CHILD_WARNINGS = f"ignore:{CPU_ONLY_NOTICE}:UserWarning"
DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")


def quiet_minkowski_warnings() -> None:
    """Call before MinkowskiEngine is first imported: its CPU-only build notice and its
    deprecation warnings say nothing a user can act on."""
    warnings.filterwarnings("ignore", message=re.escape(CPU_ONLY_NOTICE))
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="MinkowskiEngine")


def resolve_device(name: str, key: str = "device") -> str:
    """``auto`` -> ``cuda`` where a CUDA device is available, else ``cpu``; ``cuda`` without
    one, or a name that is none of these, is a usage error naming ``key`` (the setting or option
    that gave ``name``). (torch is imported here, not above: help texts must not pay for it.)"""
    if not isinstance(name, str) or not DEVICE_NAMES.fullmatch(name):
        raise UsageError(f"{key}={name!r}: choose auto, cpu or cuda (cuda:N for GPU N)")
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"{key}={name} but torch {torch.__version__} sees no CUDA device on this machine; "
            f"use {key}=cpu (or {key}=auto, which picks a GPU where there is one)"
        )
    return name
