"""Where the project's own folders are, wherever the user stands, and the resolvers that the
configs in ``CONF_DIR`` use beside Hydra's own."""

import functools
import os
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
# The Hydra configs ship inside the package, so an installed wheel has them as a checkout does.
CONF_DIR = Path(__file__).resolve().parent / "conf"


@functools.cache
def run_id() -> str:
    """A name that two commands started in the same second cannot share: the start time and
    the process id (under torchrun the launching agent's, which every rank shares). One name
    per process, however often a config asks."""
    pid = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid()
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime()) + f"_{pid}"


def rank_zero() -> bool:
    """Whether this process is rank 0 of torchrun's process group (or runs alone), from the
    environment: configs and run folders are settled before the group is joined."""
    return os.environ.get("RANK", "0") == "0"


OmegaConf.register_new_resolver("run_id", run_id, replace=True)
# ${rank_zero_only:X}: X on rank 0, null on the others (the ranks would write one file at once).
OmegaConf.register_new_resolver("rank_zero_only", lambda value: value if rank_zero() else None,
                                replace=True)  # fmt: skip
