"""What every Hydra entry point shares: the config folder and clean failure on bad input."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from ceco3d.engine.errors import NonFiniteLossError
from ceco3d.io import InputError
from ceco3d.paths import CONF_DIR

log = logging.getLogger("ceco3d")


def quiet_minkowski_warnings() -> None:
    warnings.filterwarnings("ignore", message=".*MinkowskiEngine was compiled with CPU_ONLY.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="MinkowskiEngine")


def data_overrides(cfg: DictConfig) -> list[str]:
    """The ``data.*`` keys a user set (non-null) as overrides of a checkpoint's config."""
    return [f"data.{k}={v}" for k, v in cfg.data.items() if v is not None]


def hydra_app(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console-script ``main`` that composes ``conf/<config_name>.yaml`` (found wherever the
    user stands) with the command line's overrides and calls ``run(cfg)``. Expected failures
    (bad input, a diverged run) become one clear line and exit status 1."""

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> None:
        quiet_minkowski_warnings()
        try:
            run(cfg)
        except (InputError, NonFiniteLossError) as e:
            log.error("%s", e)
            sys.exit(1)

    return main
