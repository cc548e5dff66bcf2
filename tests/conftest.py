"""Shared test fixtures: tiny deterministic sparse scenes built in the test."""

from __future__ import annotations

import ceco3d  # noqa: F401  first: it sets libgomp's spin count before torch loads libgomp

# isort: split
from pathlib import Path

import numpy as np
import pytest
import torch

from ceco3d.device import quiet_minkowski_warnings

quiet_minkowski_warnings()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SCANNET = REPO_ROOT.parent / "shared" / "scannet"


def random_scene(num_points: int = 600, extent: int = 40, seed: int = 0, batch: int = 1):
    """(N, 4) int32 unique batch+grid coordinates and (N, 3) float features."""
    rng = np.random.default_rng(seed)
    coords = []
    for b in range(batch):
        grid = np.unique(rng.integers(0, extent, size=(num_points, 3)), axis=0)
        coords.append(np.concatenate([np.full((len(grid), 1), b), grid], axis=1))
    coords = torch.from_numpy(np.concatenate(coords)).int()
    feats = torch.from_numpy(rng.standard_normal((len(coords), 3))).float()
    return coords, feats


@pytest.fixture
def scene():
    return random_scene()
