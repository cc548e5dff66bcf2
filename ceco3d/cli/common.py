"""What every Hydra entry point shares: the config folder and clean failure on bad input."""

from __future__ import annotations

import functools
import logging
import sys
import warnings

from ceco3d.io import InputError

log = logging.getLogger("ceco3d")


def quiet_minkowski_warnings() -> None:
    warnings.filterwarnings("ignore", message=".*MinkowskiEngine was compiled with CPU_ONLY.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="MinkowskiEngine")


def exit_cleanly_on(*errors: type[Exception]):
    """Turn expected failures (bad input, a diverged run) into one clear line and exit 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (InputError, *errors) as e:
                log.error("%s", e)
                sys.exit(1)

        return wrapper

    return decorate
