"""Process-group helpers: one code path for a single process, torchrun / DDP and a scheduler's
tasks (SLURM, submitit; see ``ceco3d.engine.cluster``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ceco3d.engine import cluster


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group that torchrun, or else the scheduler's tasks, describe in the
    environment (NCCL on GPU, gloo on CPU); a plain single-process launch returns the trivial
    ``DistInfo``."""
    cluster.export_rendezvous()
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    info = DistInfo(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    )
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over processes (identity without a process group)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def gather_objects(obj: object) -> list:
    """``obj`` of every process, in rank order (``[obj]`` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest ``value`` of all processes (``value`` itself without a process group), so
    that every rank takes the same branch."""
    if dist.is_available() and dist.is_initialized():
        reduced = torch.tensor(float(value), device=device)
        dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
        return int(reduced.item())
    return value


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
