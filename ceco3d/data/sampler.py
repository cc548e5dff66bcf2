"""A step-indexed batch sampler: the batches of step s depend only on (seed, s), so a resumed
run sees exactly the batches the uninterrupted run would have seen, on any number of workers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ceco3d.data.collate import collate, seed_worker


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start_step .. max_steps-1``, this rank's list of ``(epoch, index)``.

    Each epoch is a seeded permutation of the dataset; a global batch is ``batch_size x
    world_size`` consecutive entries of it (incomplete global batches are dropped), and rank r
    takes entries r, r + world_size, ... of that window. One process with batch size B x W
    therefore sees the same scenes per step as W processes with batch size B.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        max_steps: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ):
        self.global_batch = batch_size * world_size
        if num_samples < self.global_batch:
            raise ValueError(
                f"{num_samples} training scenes cannot fill one global batch of "
                f"{self.global_batch} (batch_size {batch_size} x {world_size} processes)"
            )
        self.num_samples = num_samples
        self.steps_per_epoch = num_samples // self.global_batch
        self.max_steps, self.seed, self.start_step = max_steps, seed, start_step
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(self.max_steps - self.start_step, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for step in range(self.start_step, self.max_steps):
            step_epoch, offset = divmod(step, self.steps_per_epoch)
            if step_epoch != epoch:
                epoch = step_epoch
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            window = perm[offset * self.global_batch : (offset + 1) * self.global_batch]
            yield [(epoch, int(i)) for i in window[self.rank :: self.world_size]]


class EpochIndexed(Dataset):
    """Lets a sampler pass the epoch with each index (``dataset[(epoch, index)]``), so workers
    derive per-sample randomness from it without shared state."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def build_train_loader(
    dataset,
    batch_size: int,
    max_steps: int,
    seed: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
) -> DataLoader:
    """The training DataLoader: batches of steps ``start_step..max_steps-1`` for this rank."""
    sampler = StepBatchSampler(
        len(dataset), batch_size, max_steps, seed, rank, world_size, start_step
    )
    return DataLoader(
        EpochIndexed(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        worker_init_fn=seed_worker,
        # iter(loader) draws the workers' base seed; from the global torch RNG that draw would
        # shift the stream (e.g. the center head's dropout) after a resume restores RNG states.
        generator=torch.Generator().manual_seed(seed),
    )
