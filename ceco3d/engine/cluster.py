"""The scheduler a training runs under: torchrun, a SLURM job (submitted by submitit, or a plain
``srun``), submitit's local executor, or none. It says the ranks and the rendezvous, and which
signal comes before the scheduler stops a job (its time limit, a pre-emption).

Under submitit a job that gets that signal is checkpointed and requeued by submitit's own
handler (``submitit.helpers.DelayedSubmission``); training saves ``last.pt`` first and hands the
signal on (``pass_on_preemption``), and ``guard_requeue`` keeps a job whose training
has ended from being requeued.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

log = logging.getLogger("ceco3d.cluster")

# submitit's own setting for the signal it asks SLURM for (sbatch --signal) and sends locally.
PREEMPTION_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
# Rendezvous ports derived from the job id lie below Linux's ephemeral ports (32768 and up), so
# no outgoing connection holds one; two jobs on one node get the same port only if their ids
# differ by a multiple of PORT_SPAN.
PORT_BASE, PORT_SPAN = 20000, 10000
# What every job a cluster launcher starts adds to its overrides: a job owns its sweep folder, so
# a requeued job (by submitit or by SLURM itself) continues from that folder's last.pt.
RESUME_OVERRIDE = "trainer.resume=auto"


def preemption_signal() -> signal.Signals:
    """The signal sent ahead of a time limit or a pre-emption: USR2, as submitit asks SLURM for
    it (``#SBATCH --signal=USR2@<delay>``) and sends it in its local executor, unless
    ``SUBMITIT_PREEMPT_SIGNAL`` names another."""
    return signal.Signals[f"SIG{os.environ.get(PREEMPTION_SIGNAL_ENV, 'USR2')}"]


@dataclass(frozen=True)
class Rendezvous:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    def as_environment(self) -> dict[str, str]:
        """The variables torchrun would set (``init_process_group``'s ``env://``)."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def rendezvous_port(job_id: str) -> int:
    """A port that the tasks of one job agree on without talking: derived from the job id."""
    return PORT_BASE + int(job_id) % PORT_SPAN


def scheduler_rendezvous() -> Rendezvous | None:
    """The ranks and rendezvous of this process from its scheduler: submitit's job environment
    (``SUBMITIT_EXECUTOR`` set: its slurm or local executor) or, in a task of a plain ``srun``,
    SLURM's variables. None where torchrun (or the user) has set ``RANK`` already, for a single
    task, and outside a scheduler. ``MASTER_PORT``, when set, is kept."""
    if "RANK" in os.environ:
        return None
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
    elif "SLURM_STEP_NUM_TASKS" in os.environ:  # set by srun in each task, not in the batch script
        from submitit.slurm.slurm import SlurmJobEnvironment

        job = SlurmJobEnvironment()
    else:
        return None
    if job.num_tasks == 1:
        return None
    port = os.environ.get("MASTER_PORT") or rendezvous_port(job.raw_job_id)
    return Rendezvous(job.global_rank, job.num_tasks, job.local_rank, job.hostnames[0], int(port))


def export_rendezvous() -> None:
    """Describe the scheduler's rendezvous in torchrun's variables, for ``env://``."""
    rendezvous = scheduler_rendezvous()
    if rendezvous is not None:
        os.environ.update(rendezvous.as_environment())


class _TrainingState:
    finished = False


def mark_training_finished() -> None:
    """Training has run its last step: a pre-emption signal from now on requeues nothing."""
    _TrainingState.finished = True


def pass_on_preemption(signum: int) -> None:
    """Hand the pre-emption signal, which training has caught and saved ``last.pt`` for, to the
    handler that was there before training: submitit's (through ``guard_requeue``),
    which requeues the job and exits on rank 0. Without one, nothing happens."""
    handler = signal.getsignal(signum)
    if signum == preemption_signal() and callable(handler):
        handler(signum, None)


def guard_requeue() -> None:
    """From now on the pre-emption signal goes to the handler installed before (submitit's:
    checkpoint and requeue) only while training has not finished: a finished run is never
    requeued."""
    signum = preemption_signal()
    requeue = signal.getsignal(signum)

    def guarded(signum: int, frame) -> None:
        if _TrainingState.finished:
            log.warning("%s after the last training step: the run is finished, not requeued",
                        signal.Signals(signum).name)  # fmt: skip
        elif callable(requeue):
            requeue(signum, frame)

    _TrainingState.finished = False
    signal.signal(signum, guarded)
