"""A step-indexed batch sampler: the batches of step s depend only on (seed, s), so a resumed
run sees exactly the batches the uninterrupted run would have seen, on any number of workers.

Optionally with repeat-factor sampling (Gupta et al., "LVIS: A Dataset for Large Vocabulary
Instance Segmentation", CVPR 2019, Sec. 4.1), scenes in place of images: with f(c) the fraction
of training scenes that contain class c and threshold t,

    r(c) = max(1, sqrt(t / f(c))),        r(s) = max_{c in s} r(c),

and an epoch holds each scene floor(r(s)) times plus once more with probability
r(s) - floor(r(s)) (LVIS's stochastic rounding, drawn afresh per epoch), in a seeded shuffle.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ceco3d.data.collate import collate, seed_worker


def repeat_factors(presence: np.ndarray, threshold: float) -> np.ndarray:
    """(S,) r(s) of S scenes from ``presence`` (S, K), true where scene s contains class c.

    Classes in no scene do not count; a scene with no class has factor 1.
    """
    if not threshold > 0:
        raise ValueError(f"repeat-factor threshold must be > 0, got {threshold}")
    presence = np.asarray(presence, dtype=bool)
    fraction = presence.mean(0)
    per_class = np.ones(presence.shape[1])
    seen = fraction > 0
    per_class[seen] = np.maximum(1.0, np.sqrt(threshold / fraction[seen]))
    return np.where(presence, per_class, 1.0).max(1, initial=1.0)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start_step .. max_steps-1``, this rank's list of ``(key, index)``:
    scene ``index``, and the key of its per-sample randomness (the epoch; with repeats, the
    epoch and the copy, so that two copies of a scene are augmented differently).

    Each epoch is a seeded order of the dataset (a permutation; with ``factors``, the repeated
    scenes shuffled); a global batch is ``batch_size x world_size`` consecutive entries of it
    (incomplete global batches are dropped), and rank r takes entries r, r + world_size, ... of
    that window. One process with batch size B x W therefore sees the same scenes per step as W
    processes with batch size B.
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
        factors: np.ndarray | None = None,
    ):
        self.global_batch = batch_size * world_size
        if num_samples < self.global_batch:
            raise ValueError(
                f"{num_samples} training scenes cannot fill one global batch of "
                f"{self.global_batch} (batch_size {batch_size} x {world_size} processes)"
            )
        self.num_samples = num_samples
        self.max_steps, self.seed, self.start_step = max_steps, seed, start_step
        self.rank, self.world_size = rank, world_size
        self.factors = None if factors is None else np.asarray(factors, dtype=np.float64)
        # Keys of one epoch's copies: epoch * copies + copy (the epoch itself without repeats).
        self.copies = 1 if factors is None else int(np.ceil(self.factors.max()))

    def __len__(self) -> int:
        return max(self.max_steps - self.start_step, 0)

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(index, key)`` of every entry of ``epoch``, a function of (seed, epoch) only."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.factors is None:
            return rng.permutation(self.num_samples), np.full(self.num_samples, epoch)
        whole = np.floor(self.factors)
        counts = (whole + (rng.random(self.num_samples) < self.factors - whole)).astype(np.int64)
        index = np.repeat(np.arange(self.num_samples), counts)
        copy = np.arange(len(index)) - np.repeat(np.cumsum(counts) - counts, counts)
        order = rng.permutation(len(index))
        return index[order], epoch * self.copies + copy[order]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # Epoch lengths vary with repeats, so the epoch of a step is found by walking the
        # epochs from the first (cheap: one draw per scene and epoch).
        epoch, first_step = 0, 0
        index, key = self.epoch_order(0)
        for step in range(self.start_step, self.max_steps):
            while step >= first_step + len(index) // self.global_batch:
                first_step += len(index) // self.global_batch
                epoch += 1
                index, key = self.epoch_order(epoch)
            window = slice((step - first_step) * self.global_batch,
                           (step - first_step + 1) * self.global_batch)  # fmt: skip
            mine = slice(window.start + self.rank, window.stop, self.world_size)
            yield [(int(k), int(i)) for k, i in zip(key[mine], index[mine], strict=True)]


class EpochIndexed(Dataset):
    """Lets a sampler pass a randomness key (the epoch, or epoch and copy) with each index
    (``dataset[(key, index)]``), so workers derive per-sample randomness from it without shared
    state."""

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
    factors: np.ndarray | None = None,
) -> DataLoader:
    """The training DataLoader: batches of steps ``start_step..max_steps-1`` for this rank;
    ``factors``: the scenes' repeat factors (``repeat_factors``), None for plain epochs."""
    sampler = StepBatchSampler(
        len(dataset), batch_size, max_steps, seed, rank, world_size, start_step, factors
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
