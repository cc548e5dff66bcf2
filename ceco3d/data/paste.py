"""Tail-instance pasting: instances of rare classes from other training scenes placed into a
training sample, after the Language-Grounded Semantic Segmentation release (Rozenberszki et al.,
ECCV 2022; RozDavid/LanguageGroundedSemseg at 3af87e9, ``lib/datasets/scannet.py``,
``add_instances_to_cloud``, with ``--sample_tail_instances``).

LG, per training scene: draws ``num_instances_to_add`` (5) categories with its per-class
instance-sampling weights, takes a random stored instance of each, picks a random (x, y) in the
scene's extent, sets the instance's centre height to the scene's height map there (the column
maxima, max-filtered over 5 x 5 voxels) plus half the instance's height, retries up to
``max_instance_placing_iterations`` (50) times while its box intersects a scene instance's box,
and appends the instance's points with their labels. Here, per sample, after the augmentation
and the crop, all in voxel units of the sample:

* with probability ``probability`` (LG: every scene), ``instances`` draws of a class uniformly
  among the tail classes that have an instance in another training scene (LG's weights file,
  ``tail_split_inst_sampling_weights.pkl``, is not released), then of one of its instances;
* (x, y) uniform such that the instance's footprint lies inside the cropped sample's extent;
  its bottom one voxel above the highest sample voxel within ``support_window`` x
  ``support_window`` voxels of the footprint's centre (the floor of the sample where none);
* up to ``max_tries`` draws of (x, y) until no pasted voxel coincides with a sample voxel (LG
  tests boxes); an instance without a free place is left out (LG's help text says so; its code
  places it at the last tried spot);
* the instance's points keep their labels, colours and normals, and are moved by a whole number
  of voxels (no rotation or scaling of their own); the crop leaves room for their voxels, so
  the sample stays within the voxel budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ceco3d.data.voxelize import voxelize

INSTANCE = "instance"  # the prepared per-vertex instance ids (-1: no instance)


@dataclass(frozen=True)
class PasteSettings:
    """``conf/paste/*.yaml``: how many instances of which group's classes, and how placed."""

    instances: int = 5  # LG's num_instances_to_add
    probability: float = 1.0  # LG pastes into every training scene
    max_tries: int = 50  # LG's max_instance_placing_iterations
    support_window: int = 5  # LG's maximum_filter size on the height map (voxels)
    group: str = "tail"  # the classes pasted: ScanNet200's tail third


@dataclass(frozen=True, eq=False)
class Instance:
    scene: int  # index into the dataset's scenes
    instance: int  # id in the scene's instance array
    label: int  # majority class of its labelled vertices
    rows: np.ndarray  # its vertices in the scene's per-vertex arrays


def majority_label_per_instance(ids: np.ndarray, labels: np.ndarray, num_classes: int):
    """``(instance id, majority label)`` of every instance with a labelled vertex (ties: the
    smaller label)."""
    keep = (ids >= 0) & (labels >= 0)
    pairs, counts = np.unique(ids[keep].astype(np.int64) * num_classes + labels[keep],
                              return_counts=True)  # fmt: skip
    instance, label = np.divmod(pairs, num_classes)
    order = np.lexsort((label, -counts, instance))  # per instance: most votes, smaller label
    first = order[np.r_[True, instance[order][1:] != instance[order][:-1]]]
    return [(int(i), int(k)) for i, k in zip(instance[first], label[first], strict=True)]


class TailInstancePaster:
    """The instances of ``classes`` in the training scenes, and their placement into samples.

    ``load(scene_index, array_name)`` reads a prepared per-vertex array of a training scene.
    """

    def __init__(
        self,
        load: Callable[[int, str], np.ndarray],
        num_scenes: int,
        label_key: str,
        classes: np.ndarray,
        settings: PasteSettings,
    ):
        self.load, self.label_key, self.settings = load, label_key, settings
        self.bank: dict[int, list[Instance]] = {}
        for scene in range(num_scenes):
            ids, labels = load(scene, INSTANCE), load(scene, label_key)
            for instance, label in majority_label_per_instance(ids, labels, len(classes)):
                if classes[label]:
                    rows = np.flatnonzero(ids == instance)
                    self.bank.setdefault(label, []).append(Instance(scene, instance, label, rows))

    def draw(self, scene: int, rng: np.random.Generator) -> list[Instance]:
        """The instances to paste into training scene ``scene`` (none from itself)."""
        if rng.random() >= self.settings.probability:
            return []
        classes = sorted(
            c for c, found in self.bank.items() if any(i.scene != scene for i in found)
        )
        if not classes:
            return []
        chosen = []
        for _ in range(self.settings.instances):
            others = [i for i in self.bank[classes[rng.integers(len(classes))]] if i.scene != scene]
            chosen.append(others[rng.integers(len(others))])
        return chosen

    def points_of(self, instance: Instance, keys) -> dict[str, np.ndarray]:
        """The instance's points: the arrays ``keys`` of its scene, and ``label``."""
        rows = instance.rows
        points = {key: self.load(instance.scene, key)[rows].astype(np.float32) for key in keys}
        points["label"] = self.load(instance.scene, self.label_key)[rows].astype(np.int64)
        return points

    def place(
        self, points: dict, grid: np.ndarray, pasted: list[dict], voxel_size: float, rng
    ) -> tuple[dict, list[bool]]:
        """``points`` (with ``label``) of a sample whose voxels are ``grid`` (M, 3), with the
        ``pasted`` instances' points appended where a place was found; and which were placed."""
        occupied = set(map(tuple, grid.tolist()))
        lo, hi = grid.min(0), grid.max(0)
        parts, placed = [points], []
        for instance in pasted:
            own = np.floor(instance["coord"] / voxel_size).astype(np.int64)
            offset = self._free_offset(own, grid, occupied, lo, hi, rng)
            placed.append(offset is not None)
            if offset is None:
                continue
            occupied |= set(map(tuple, (own + offset).tolist()))
            parts.append(dict(instance, coord=instance["coord"] + offset * np.float32(voxel_size)))
        return {key: np.concatenate([p[key] for p in parts]) for key in points}, placed

    def _free_offset(self, own, grid, occupied, lo, hi, rng) -> np.ndarray | None:
        """A whole-voxel shift that puts the voxels ``own`` inside the (x, y) extent
        ``lo..hi``, resting on the sample and clear of ``occupied``; None if none is found."""
        own_lo = own.min(0)
        dims = own.max(0) - own_lo + 1
        room = hi[:2] - lo[:2] + 1 - dims[:2]
        if (room < 0).any():
            return None
        half = self.settings.support_window // 2
        for _ in range(self.settings.max_tries):
            corner = lo[:2] + rng.integers(0, room + 1)
            center = corner + dims[:2] // 2
            near = (np.abs(grid[:, :2] - center) <= half).all(1)
            bottom = (grid[near, 2].max() if near.any() else lo[2] - 1) + 1
            offset = np.array([*corner, bottom]) - own_lo
            if not any(tuple(v) in occupied for v in (own + offset).tolist()):
                return offset
        return None

    @staticmethod
    def voxel_count(instance: dict, voxel_size: float) -> int:
        return voxelize(instance["coord"], voxel_size).num_voxels
