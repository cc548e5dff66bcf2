"""One ScanNet scene: raw mesh + segments + aggregation -> per-vertex and per-voxel arrays.

Arrays are one row per mesh vertex in mesh order (``coord``, ``color``, ``normal``,
``segment20``, ``segment200``, ``instance``) plus the voxelization at the requested voxel size
(``voxel_coord``, ``voxel_inverse``, ``voxel_segment20``, ``voxel_segment200``). Every file is
written atomically and ``meta.json`` last (see ``ceco3d.data.layout``); meta.json also records
the fingerprints of the raw inputs, so a scene is redone when any input's content changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceco3d.data import raw_layout
from ceco3d.data.geometry import vertex_normals
from ceco3d.data.label_sets import IGNORE_INDEX, LABEL_SETS
from ceco3d.data.layout import (
    FORMAT_VERSION,
    SEGMENT_KEY,
    read_scene_meta,
    scene_problem,
    write_scene,
)
from ceco3d.data.voxelize import majority_labels, voxelize
from ceco3d.errors import InputError
from ceco3d.io import read_json, read_mesh
from data_prep.fingerprint import fingerprint, same_content


@dataclass(frozen=True)
class SceneSource:
    """Where one scene's raw files are; test scenes (``labelled=False``) have only the mesh
    and the ``.txt``."""

    scene_id: str
    split: str
    folder: Path
    labelled: bool

    @property
    def mesh(self) -> Path:
        return raw_layout.mesh_file(self.folder, self.scene_id)

    @property
    def segments(self) -> Path:
        return raw_layout.segments_file(self.folder, self.scene_id)

    @property
    def aggregation(self) -> Path:
        return raw_layout.aggregation_file(self.folder, self.scene_id)

    @property
    def info(self) -> Path:
        return raw_layout.info_file(self.folder, self.scene_id)

    def inputs(self, align: bool) -> list[Path]:
        paths = [self.mesh]
        if self.labelled:
            paths += [self.segments, self.aggregation]
        if align:
            paths.append(self.info)
        return paths


@dataclass(frozen=True)
class Settings:
    voxel_size: float
    align: bool
    label_table_sha256: str

    def record(self) -> dict:
        """The ``ceco3d.data.layout.SETTINGS`` that these settings give a scene."""
        return {
            "format_version": FORMAT_VERSION,
            "voxel_size": self.voxel_size,
            "align": self.align,
            "label_table_sha256": self.label_table_sha256,
        }


def read_axis_alignment(path: Path) -> np.ndarray | None:
    """The 4x4 ``axisAlignment`` matrix of a scene's ``.txt``; None where the line is absent
    (as in every test scan)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found (needed by --align)") from None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() != "axisAlignment":
            continue
        try:
            numbers = [float(x) for x in value.split()]
        except ValueError:
            raise InputError(f"{path}: axisAlignment is not a list of numbers") from None
        if len(numbers) != 16:
            raise InputError(f"{path}: axisAlignment has {len(numbers)} numbers, expected 16")
        return np.array(numbers, dtype=np.float64).reshape(4, 4)
    return None


def read_segments(path: Path, num_vertices: int, mesh: Path) -> np.ndarray:
    """``segIndices`` (N,) int64: the over-segment of every mesh vertex."""
    data = read_json(path)
    if not isinstance(data, dict) or "segIndices" not in data:
        raise InputError(f"{path}: no 'segIndices' list")
    try:
        segments = np.asarray(data["segIndices"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{path}: 'segIndices' is not a list of integers") from None
    if segments.ndim != 1 or len(segments) != num_vertices:
        raise InputError(
            f"{path}: {segments.size} segIndices but {mesh.name} has {num_vertices} vertices"
        )
    return segments


def label_vertices(
    segments: np.ndarray, aggregation: Path, lookups: dict[str, dict[str, int]]
) -> tuple[dict[str, np.ndarray], np.ndarray, Counter]:
    """Per-vertex class index for every label set, instance id, and unknown label strings.

    A group labels every vertex of its segments; where groups overlap the later one wins, as
    in ScanNet's own export script. Vertices in no group are ignored (-1) with no instance.
    """
    data = read_json(aggregation)
    groups = data.get("segGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise InputError(f"{aggregation}: no 'segGroups' list")
    segment_ids, vertex_segment = np.unique(segments, return_inverse=True)
    segment_labels = {name: np.full(len(segment_ids), IGNORE_INDEX, np.int16) for name in lookups}
    segment_instance = np.full(len(segment_ids), -1, np.int32)
    known = next(iter(lookups.values()))
    unknown: Counter = Counter()
    for n, group in enumerate(groups):
        try:
            raw = group["label"]
            instance = int(group["objectId"] if "objectId" in group else group["id"])
            members = np.asarray(group["segments"], dtype=np.int64).reshape(-1)
            if not isinstance(raw, str):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{aggregation}: segGroups[{n}] needs 'label', 'segments' and 'objectId' or 'id'"
            ) from None
        rows = np.minimum(np.searchsorted(segment_ids, members), len(segment_ids) - 1)
        stray = members[segment_ids[rows] != members] if len(segment_ids) else members
        if stray.size:
            raise InputError(
                f"{aggregation}: segGroups[{n}] ({raw!r}) refers to segments "
                f"{sorted(set(stray.tolist()))[:5]} that no vertex has"
            )
        if raw not in known:
            unknown[raw] += 1
        for name, lookup in lookups.items():
            segment_labels[name][rows] = lookup.get(raw, IGNORE_INDEX)
        segment_instance[rows] = instance
    labels = {name: per_segment[vertex_segment] for name, per_segment in segment_labels.items()}
    return labels, segment_instance[vertex_segment], unknown


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels[labels >= 0], minlength=num_classes).tolist()


def up_to_date(source: SceneSource, folder: Path, settings: Settings) -> dict | None:
    """The meta.json of ``folder`` when it holds a complete scene made with ``settings`` from
    inputs with the content they have now; None when the scene must be (re)made."""
    if scene_problem(folder, settings.record()) is not None:
        return None
    meta = read_scene_meta(folder)
    recorded = meta.get("inputs")
    paths = source.inputs(settings.align)
    if not isinstance(recorded, dict) or set(recorded) != {p.name for p in paths}:
        return None
    try:
        unchanged = all(
            same_content(fingerprint(p, recorded[p.name]), recorded[p.name]) for p in paths
        )
    except FileNotFoundError:
        return None
    return meta if unchanged else None


def prepare_scene(
    source: SceneSource, folder: Path, settings: Settings, lookups: dict[str, dict[str, int]]
) -> dict:
    """Read, label, voxelize and write one scene into ``folder``; returns its meta.json."""
    if not source.folder.is_dir():
        raise InputError(
            f"{source.folder}: scene folder not found (the {source.split} split list names it)"
        )
    for path in source.inputs(settings.align):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
    inputs = {path.name: fingerprint(path) for path in source.inputs(settings.align)}
    xyz, rgb, faces = read_mesh(source.mesh)
    aligned = False
    if settings.align:
        matrix = read_axis_alignment(source.info)
        if matrix is not None:
            xyz = (np.c_[xyz.astype(np.float64), np.ones(len(xyz))] @ matrix.T)[:, :3]
            xyz = xyz.astype(np.float32)
            aligned = True

    num_vertices = len(xyz)
    if source.labelled:
        segments = read_segments(source.segments, num_vertices, source.mesh)
        labels, instance, unknown = label_vertices(segments, source.aggregation, lookups)
    else:
        labels = {name: np.full(num_vertices, IGNORE_INDEX, np.int16) for name in LABEL_SETS}
        instance, unknown = np.full(num_vertices, -1, np.int32), Counter()

    voxels = voxelize(xyz, settings.voxel_size)
    voxel_labels = {
        name: majority_labels(voxels.inverse, labels[name], voxels.num_voxels)
        for name in LABEL_SETS
    }

    arrays = {
        "coord": xyz.astype(np.float32),
        "color": rgb.astype(np.uint8),
        "normal": vertex_normals(xyz, faces),
        "instance": instance.astype(np.int32),
        "voxel_coord": voxels.grid.astype(np.int32),
        "voxel_inverse": voxels.inverse.astype(np.int32),
    }
    for name, key in SEGMENT_KEY.items():
        arrays[key] = labels[name].astype(np.int16)
        arrays[f"voxel_{key}"] = voxel_labels[name].astype(np.int16)
    meta = {
        **settings.record(),
        "scene_id": source.scene_id,
        "split": source.split,
        "inputs": inputs,
        "aligned": aligned,
        "labelled": source.labelled,
        "num_vertices": num_vertices,
        "num_voxels": voxels.num_voxels,
        "class_counts": {
            name: {
                "point_counts": class_counts(labels[name], label_set.num_classes),
                "voxel_counts": class_counts(voxel_labels[name], label_set.num_classes),
            }
            for name, label_set in LABEL_SETS.items()
        },
        "unknown_labels": dict(sorted(unknown.items())),
    }
    return write_scene(folder, arrays, meta)
