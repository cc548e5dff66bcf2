"""Voxelization shared by preprocessing, training and evaluation, so all three agree.

Grid coordinates are ``floor(xyz / voxel_size)``; the occupied voxels are the unique grid cells,
found with numpy alone, so that ``ceco3d-prep`` needs neither torch nor MinkowskiEngine. The
vertex -> voxel inverse map travels with every sample so that predictions can be scored and
submitted per original mesh vertex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ceco3d.data.label_sets import IGNORE_INDEX
from ceco3d.errors import InputError

GRID_LIMIT = 2**31  # voxel coordinates are int32 (here and in MinkowskiEngine)


@dataclass(frozen=True)
class Voxelization:
    """``grid`` (M, 3) int32 voxel coordinates; ``index`` (M,) the first point of each voxel;
    ``inverse`` (N,) the voxel of every point (``grid[inverse]`` is every point's voxel)."""

    grid: np.ndarray
    index: np.ndarray
    inverse: np.ndarray

    @property
    def num_voxels(self) -> int:
        return len(self.grid)


def voxelize(coord: np.ndarray, voxel_size: float, source: object = "the points") -> Voxelization:
    """Quantize (N, 3) metric coordinates at ``voxel_size`` metres. Voxels come in the order of
    their grid coordinates (x, then y, then z); each keeps the first of its points. Coordinates
    beyond the int32 grid are an ``InputError`` naming ``source``."""
    if len(coord) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Voxelization(np.zeros((0, 3), np.int32), empty, empty)
    cells = np.floor(np.asarray(coord, dtype=np.float64) / voxel_size)
    reach = float(np.abs(cells).max())
    if not reach < GRID_LIMIT:
        raise InputError(
            f"{source}: coordinates reach {reach * voxel_size:.4g} m from the voxel grid's origin, "
            f"{reach:.4g} voxels of {voxel_size:g} m, beyond its int32 range "
            f"(+-{GRID_LIMIT}); check the unit (units=mm for a scan in millimetres) or split "
            "the scan"
        )
    discrete = cells.astype(np.int32)
    # One int64 key per cell (the cell's row-major offset in the scene's bounding box) makes
    # the unique cells one sort of N integers instead of a sort of N rows.
    offset = discrete.astype(np.int64) - discrete.min(axis=0)
    extent = [int(e) + 1 for e in offset.max(axis=0)]
    # A stable sort (numpy's choice when the index is asked for) makes each index the first point.
    if extent[0] * extent[1] * extent[2] < 2**62:
        keys = (offset[:, 0] * extent[1] + offset[:, 1]) * extent[2] + offset[:, 2]
        _, index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:  # a box too large for one integer key: sort the rows themselves (same order, slower)
        _, index, inverse = np.unique(discrete, axis=0, return_index=True, return_inverse=True)
    index, inverse = index.astype(np.int64), inverse.reshape(-1).astype(np.int64)
    return Voxelization(discrete[index], index, inverse)


def majority_labels(inverse: np.ndarray, labels: np.ndarray, num_voxels: int) -> np.ndarray:
    """Per-voxel label by majority vote over the voxel's points.

    Ignored points (``-1``) do not vote; a voxel whose points are all ignored is ignored. Ties go
    to the smaller class index. Returns (M,) int16.
    """
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(num_voxels, IGNORE_INDEX, dtype=np.int16)
    valid = labels != IGNORE_INDEX
    if not valid.any():
        return out
    voxel, label = inverse[valid], labels[valid]
    num_labels = int(label.max()) + 1
    pairs, counts = np.unique(voxel * num_labels + label, return_counts=True)
    pair_voxel, pair_label = pairs // num_labels, pairs % num_labels
    # Sort by voxel, then by count descending, then by label ascending; keep each voxel's first.
    order = np.lexsort((pair_label, -counts, pair_voxel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_voxel[order][1:] != pair_voxel[order][:-1]
    winners = order[first]
    out[pair_voxel[winners]] = pair_label[winners]
    return out
