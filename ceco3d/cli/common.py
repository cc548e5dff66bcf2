"""What every Hydra entry point shares: the config folder and clean failure on bad input."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from ceco3d.errors import UsageError, report_errors
from ceco3d.paths import CONF_DIR

log = logging.getLogger("ceco3d")

# What a required key (``???`` in conf/) holds, for the message when it is left out.
REQUIRED_KEYS = {
    "data.root": "the output folder of ceco3d-prep",
    "ckpt": "a checkpoint, e.g. runs/NAME/checkpoints/best.pt",
}


def quiet_minkowski_warnings() -> None:
    warnings.filterwarnings("ignore", message=".*MinkowskiEngine was compiled with CPU_ONLY.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="MinkowskiEngine")


def data_overrides(cfg: DictConfig) -> list[str]:
    """The ``data.*`` keys a user set (non-null) as overrides of a checkpoint's config."""
    return [f"data.{k}={v}" for k, v in cfg.data.items() if v is not None]


def missing_key_error(key: str) -> UsageError:
    what = REQUIRED_KEYS.get(key, "a value")
    return UsageError(f"{key} is required: add {key}=... ({what}) to the command line")


def hydra_app(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console-script ``main`` that composes ``conf/<config_name>.yaml`` (found wherever the
    user stands) with the command line's overrides and calls ``run(cfg)``. Expected failures
    become one logged paragraph and the exit status of ``ceco3d.errors``; a command line that
    Hydra rejects (unknown key, bad override) exits 2."""
    started = False

    def work(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except MissingMandatoryValue as e:
            raise missing_key_error(e.full_key) from None

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def hydra_main(cfg: DictConfig) -> None:
        nonlocal started
        started = True
        quiet_minkowski_warnings()
        code = report_errors(f"ceco3d-{config_name}", lambda: work(cfg), say=log.error)
        if code:
            sys.exit(code)

    def main() -> None:
        try:
            hydra_main()
        except SystemExit as e:
            if e.code == 1 and not started:  # Hydra's own report of a bad command line
                sys.exit(UsageError.exit_code)
            raise

    return main
