"""What every Hydra entry point shares: the config folder and clean failure on bad input."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ceco3d.claims import claim
from ceco3d.device import quiet_minkowski_warnings
from ceco3d.errors import UsageError, report_errors
from ceco3d.paths import CONF_DIR

log = logging.getLogger("ceco3d")
HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"

# What a required key (``???`` in ceco3d/conf/) holds, for the message when it is left out.
REQUIRED_KEYS = {
    "data.root": "the output folder of ceco3d-prep",
    "ckpt": "a checkpoint, e.g. runs/NAME/checkpoints/best.pt",
}


class ClaimOutputFolder(Callback):
    """Claims the command's output folder (``hydra.run.dir``, its ``out=``) before Hydra writes
    its log there: a second command with the same ``out=`` is refused while the first runs."""

    def __init__(self, what: str) -> None:
        self.what = what

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        def take() -> None:
            claim(config.hydra.run.dir, self.what, "choose another out=FOLDER")

        code = report_errors(f"ceco3d-{config.hydra.job.name}", take)
        if code:
            sys.exit(code)


def data_overrides(cfg: DictConfig) -> list[str]:
    """The ``data.*`` keys a user set (non-null) as overrides of a checkpoint's config."""
    return [f"data.{k}={v}" for k, v in cfg.data.items() if v is not None]


def missing_key_error(error: OmegaConfBaseException) -> UsageError | None:
    """The message for a required key left out, from OmegaConf's error on reading it (directly,
    or through an interpolation such as the output folder's name); None for other errors."""
    found = re.search(r"Missing mandatory value: ([\w.]+)", str(error))
    key = error.full_key if isinstance(error, MissingMandatoryValue) else found and found[1]
    if not key:
        return None
    what = REQUIRED_KEYS.get(key, "a value")
    return UsageError(f"{key} is required: add {key}=... ({what}) to the command line")


def hydra_message(error: Exception) -> str:
    """Hydra's message on a command line it rejects, with the reason it gives as the cause and
    without its config search path."""
    message = str(error).split("\nConfig search path:")[0].strip()
    if isinstance(error.__cause__, OmegaConfBaseException):
        message += f" ({str(error.__cause__).splitlines()[0]})"
    return " ".join(message.split())


def hydra_app(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console-script ``main`` that composes ``ceco3d/conf/<config_name>.yaml`` (found
    wherever the user stands) with the command line's overrides and calls ``run(cfg)``. Expected
    failures become one paragraph and the exit status of ``ceco3d.errors``; a command line that
    Hydra rejects (unknown key, bad override) exits 2. ``HYDRA_FULL_ERROR=1`` shows tracebacks,
    as ``CECO3D_DEBUG=1`` does."""
    started = debug = False

    def work(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except OmegaConfBaseException as e:
            raise (missing_key_error(e) or e) from None

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def hydra_main(cfg: DictConfig) -> None:
        nonlocal started
        started = True
        quiet_minkowski_warnings()
        code = report_errors(f"ceco3d-{config_name}", lambda: work(cfg), say=log.error, debug=debug)
        if code:
            sys.exit(code)

    def compose_and_run() -> None:
        nonlocal started
        started = False
        try:
            hydra_main()
        except (HydraException, OmegaConfBaseException) as e:
            if started:
                raise
            # Composing the config failed: an unknown key, a bad override, a required key that
            # Hydra itself needs (the run folder's name)...
            raise (missing_key_error(e) or UsageError(hydra_message(e))) from None

    def main() -> None:
        nonlocal debug
        user_setting = os.environ.get(HYDRA_FULL_ERROR)
        debug = user_setting == "1"
        # Hydra then raises instead of printing: report_errors decides what the user sees.
        os.environ[HYDRA_FULL_ERROR] = "1"
        try:
            code = report_errors(f"ceco3d-{config_name}", compose_and_run, debug=debug)
        finally:
            if user_setting is None:
                del os.environ[HYDRA_FULL_ERROR]
            else:
                os.environ[HYDRA_FULL_ERROR] = user_setting
        sys.exit(code)

    return main
