"""Hydra's submitit launchers (``hydra-submitit-launcher``) with what a training job needs on a
cluster: every job resumes its own folder's ``last.pt`` when it is started again, is requeued at
most ``max_requeues`` times, and never once training has finished; the sweep ends with its
summary (``ceco3d.engine.sweep``).

submitit requeues a job from its signal handler by calling the launcher's ``checkpoint`` (the
job's pickled call, to run again) and then ``scontrol requeue`` (SLURM) or exit status 144 (its
local executor, which starts the job's tasks again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    BaseSubmititLauncher,
    LocalLauncher,
    SlurmLauncher,
)

from ceco3d.engine import cluster

log = logging.getLogger("ceco3d.cluster")
# Before Hydra sets up the job's logging, submitit's logger writes into the job's own log file.
job_log = logging.getLogger("submitit")


class RequeueingLauncher(BaseSubmititLauncher):
    def __init__(self, max_requeues: int, **params: Any) -> None:
        super().__init__(**params)
        self.max_requeues = max_requeues
        self.requeues = 0  # travels with the job's pickle into the requeued job

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            # Imported here: Hydra loads this plugin in every command, which need not load torch.
            from ceco3d.engine.sweep import write_sweep_summary

            write_sweep_summary(Path(str(self.config.hydra.sweep.dir)))

    def __call__(self, sweep_overrides: list[str], *args: Any) -> JobReturn:
        cluster.guard_requeue()
        if self.requeues:
            job_log.info("requeued job: attempt %d of at most %d", self.requeues + 1,
                         self.max_requeues + 1)  # fmt: skip
        return super().__call__([*sweep_overrides, cluster.RESUME_OVERRIDE], *args)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        if self.requeues >= self.max_requeues:
            log.error("not requeued: the job was requeued %d times already (hydra.launcher."
                      "max_requeues=%d)", self.requeues, self.max_requeues)  # fmt: skip
            return None
        self.requeues += 1
        log.warning("requeued (%d of at most %d): the job continues from its last checkpoint",
                    self.requeues, self.max_requeues)  # fmt: skip
        return super().checkpoint(*args, **kwargs)


class RequeueingSlurmLauncher(RequeueingLauncher, SlurmLauncher):
    pass


class RequeueingLocalLauncher(RequeueingLauncher, LocalLauncher):
    pass
