"""What ``ceco3d-predict`` writes for one scan, and how ``ceco3d-view`` reads it back.

Named after the scan's file stem: per input point its benchmark class id (``_labels.npy``, int32)
and id and name (``_labels.txt``, ``id<TAB>name`` lines), a copy of the input's geometry in its
own unit and axes coloured by class (``_pred.ply``, faces kept), the class counts and areas with
the settings of the run (``_classes.json``) and a picture from above, input | prediction
(``_preview.png``). Points dropped for non-finite coordinates are listed with ScanNet's id for
unannotated points; the PLY leaves them (and the faces on them) out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ceco3d import viz
from ceco3d.data.geometry import vertex_areas
from ceco3d.data.label_sets import IGNORE_INDEX, LabelSet, get_label_set
from ceco3d.data.scan import Scan, input_coordinates
from ceco3d.errors import InputError
from ceco3d.io import atomic_write, json_safe, read_json, save_json, save_npy, write_mesh

LABELS_TXT, LABELS_NPY = "_labels.txt", "_labels.npy"
COLORED_PLY, CLASSES_JSON, PREVIEW_PNG = "_pred.ply", "_classes.json", "_preview.png"
# ScanNet's id for unannotated points (no class has it): given to the dropped points.
DROPPED_ID, DROPPED_NAME = 0, "unlabelled"
TEXT_CHUNK = 1 << 20  # label lines joined at a time, to bound memory on large scans
GREY = 128  # the input panel's colour for a scan without colours
# Pictures look from 60 degrees above the horizon, the scan turned 30 degrees: walls show.
VIEW = {"elevation": 60.0, "azimuth": -30.0}
# Below this (in the input's unit) float32 coordinates are within 1/1000 of a unit of the input's;
# beyond (a georeferenced scan) the PLY gets float64 ones.
FLOAT32_EXACT = 1e4


def _write_label_text(path: Path, codes: np.ndarray, lines: np.ndarray) -> None:
    with atomic_write(path, "w") as f:
        for start in range(0, len(codes), TEXT_CHUNK):
            f.write("".join(lines[codes[start : start + TEXT_CHUNK]]))


def write_labels(folder: Path, scan: Scan, classes: np.ndarray, label_set: LabelSet) -> None:
    """``_labels.npy`` and ``_labels.txt``: one row per input point."""
    # Table rows: the classes, then the dropped points' row K.
    codes = np.full(len(scan.kept), label_set.num_classes, dtype=np.int16)
    codes[scan.kept] = classes
    ids = np.append(np.asarray(label_set.ids, dtype=np.int32), np.int32(DROPPED_ID))
    save_npy(folder / f"{scan.path.stem}{LABELS_NPY}", ids[codes])
    names = [*label_set.names, DROPPED_NAME]
    lines = np.array([f"{i}\t{name}\n" for i, name in zip(ids, names, strict=True)], dtype=object)
    _write_label_text(folder / f"{scan.path.stem}{LABELS_TXT}", codes, lines)


def class_statistics(
    scan: Scan, classes: np.ndarray, voxel: np.ndarray, label_set: LabelSet, voxel_size: float
) -> tuple[str, list[dict]]:
    """How areas are measured, and per predicted class (most points first) its benchmark id,
    name, point count and area in m²: a mesh's faces shared out to their vertices, or a point
    cloud's occupied voxels (``voxel``: each point's) times the voxel face area."""
    k = label_set.num_classes
    points = np.bincount(classes, minlength=k)
    if scan.is_mesh:
        method = "mesh faces, each vertex a third of its faces' area"
        area = np.bincount(classes, weights=vertex_areas(scan.xyz, scan.faces), minlength=k)
    else:
        method = f"occupied {voxel_size:g} m voxels x voxel face area"
        pairs = np.unique(voxel.astype(np.int64) * k + classes)
        area = np.bincount(pairs % k, minlength=k) * voxel_size**2
    rows = [
        {"id": label_set.ids[c], "name": label_set.names[c], "points": int(points[c]),
         "area_m2": round(float(area[c]), 4)}
        for c in np.argsort(-points, kind="stable") if points[c]
    ]  # fmt: skip
    return method, rows


def write_scan_outputs(
    folder: Path,
    scan: Scan,
    classes: np.ndarray,
    voxel: np.ndarray,
    label_set: LabelSet,
    voxel_size: float,
    settings: dict,
) -> None:
    """Every output of one scan into ``folder``; ``classes``, ``voxel``: (N,) class index and
    voxel of each kept point; ``settings`` (``units`` and ``up`` among them) go into the JSON."""
    stem = scan.path.stem
    write_labels(folder, scan, classes, label_set)
    xyz = input_coordinates(scan, settings["units"], settings["up"])
    coordinate_type = "f4" if np.abs(xyz).max() < FLOAT32_EXACT else "f8"
    write_mesh(folder / f"{stem}{COLORED_PLY}", xyz, viz.colorize(classes, label_set), scan.faces,
               coordinate_type=coordinate_type)  # fmt: skip
    del xyz
    method, rows = class_statistics(scan, classes, voxel, label_set, voxel_size)
    summary = {
        "input": str(scan.path.resolve()),
        "label_set": label_set.name,
        "voxel_size": voxel_size,
        **settings,
        "kind": "mesh" if scan.is_mesh else "point cloud",
        "points": len(scan.kept),
        "dropped_points": scan.num_dropped,
        "faces": len(scan.faces) if scan.is_mesh else 0,
        "area": method,
        "classes": rows,
    }
    save_json(folder / f"{stem}{CLASSES_JSON}", json_safe(summary))
    color = scan.color if scan.color is not None else np.full_like(scan.xyz, GREY, np.uint8)
    panels = [("input", color), ("prediction", classes)]
    viz.render_view(folder / f"{stem}{PREVIEW_PNG}", scan.xyz, panels, label_set, **VIEW)


def recorded_label_set(labels: Path) -> LabelSet | None:
    """The label set in the ``_classes.json`` beside a ``_labels`` file, if there is one."""
    for ending in (LABELS_NPY, LABELS_TXT):
        if labels.name.endswith(ending):
            summary = labels.with_name(labels.name.removesuffix(ending) + CLASSES_JSON)
            if summary.is_file():
                return get_label_set(read_json(summary)["label_set"])
    return None


def read_labels(path: Path, scan: Scan, label_set: LabelSet) -> np.ndarray:
    """(N,) int16 class indices of the kept points of ``scan`` from a file of benchmark ids, one
    per input point: ``.npy``, or text whose lines start with the id (this module's
    ``_labels.txt``, ScanNet's label files). Ids outside ``label_set`` become the ignore index."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        if path.suffix == ".npy":
            ids = np.load(path, allow_pickle=False)
        else:
            with open(path) as f:
                ids = np.array([line.split(maxsplit=1)[0] for line in f if line.strip()])
        ids = np.asarray(ids).astype(np.int64).reshape(-1)
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a list of integer class ids ({e})") from None
    if len(ids) != len(scan.kept):
        raise InputError(f"{path}: {len(ids)} labels, but {scan.path} has {len(scan.kept)} "
                         "points; give the labels of this very scan")  # fmt: skip
    table = np.full(max(label_set.ids) + 1, IGNORE_INDEX, dtype=np.int16)
    table[list(label_set.ids)] = np.arange(label_set.num_classes)
    ids = ids[scan.kept]
    known = (ids >= 0) & (ids < len(table))
    return np.where(known, table[np.where(known, ids, 0)], IGNORE_INDEX).astype(np.int16)
