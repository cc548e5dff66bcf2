"""Batching of voxel samples for MinkowskiEngine, and the seeding of DataLoader workers.

Batches depend on ``(seed, step)`` only, never on ``num_workers``: each sample draws from its own
``(seed, epoch, index)`` generator (see ``ceco3d.data.dataset``) and the order comes from the
step-indexed sampler in ``ceco3d.data.sampler``.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def collate(samples: list[dict]) -> dict:
    """Concatenate B samples into one sparse batch.

    Returns ``coords`` (ΣM, 4) int32 rows ``[batch index, x, y, z]`` (the layout of
    ``ME.utils.batched_coordinates``), ``feats`` (ΣM, C) float32, ``labels`` (ΣM,) int64,
    ``offsets`` (B + 1,) int64 so that sample b owns rows ``offsets[b]:offsets[b + 1]``, and the
    per-sample lists ``scene`` (str), ``inverse`` and ``point_label`` ((N_b,) int64 tensors;
    ``inverse`` indexes the sample's own rows, i.e. it is relative to ``offsets[b]``).
    """
    sizes = torch.tensor([len(s["grid"]) for s in samples], dtype=torch.int64)
    offsets = torch.zeros(len(samples) + 1, dtype=torch.int64)
    torch.cumsum(sizes, 0, out=offsets[1:])
    batch_index = torch.repeat_interleave(torch.arange(len(samples), dtype=torch.int32), sizes)
    grid = torch.from_numpy(np.concatenate([s["grid"] for s in samples]).astype(np.int32))
    return {
        "coords": torch.cat([batch_index[:, None], grid], dim=1),
        "feats": torch.from_numpy(np.concatenate([s["feat"] for s in samples]).astype(np.float32)),
        "labels": torch.from_numpy(np.concatenate([s["label"] for s in samples]).astype(np.int64)),
        "offsets": offsets,
        "scene": [s["scene"] for s in samples],
        "inverse": [torch.as_tensor(s["inverse"], dtype=torch.int64) for s in samples],
        "point_label": [torch.as_tensor(s["point_label"], dtype=torch.int64) for s in samples],
    }


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed a worker's global RNGs from its torch seed (itself from the
    loader's generator), for any library code that still reads them."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)  # noqa: NPY002 (the legacy global state is what it seeds)
    random.seed(worker_seed)
