"""The prepared-data format: the one owner of what ``ceco3d-prep`` writes and the dataset reads.

    ROOT/manifest.json                MANIFEST: settings, label sets, splits, counts, statistics
    ROOT/<split>/<scene>/<key>.npy    ARRAYS: one row per mesh vertex, or per voxel (voxel_*)
    ROOT/<split>/<scene>/meta.json    SCENE_META, written last: the settings, the fingerprints of
                                      the raw inputs, and every array's shape, dtype and size

A scene folder belongs to a manifest when its meta.json carries the manifest's ``SETTINGS`` and
every array file still has the size, shape and dtype that meta.json records (a truncated or
replaced array does not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ceco3d.errors import InputError
from ceco3d.io import read_json, remove_entry, save_json, save_npy, temporaries

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
LABELLED_SPLITS = ("train", "val")  # ScanNet withholds the test labels
SCENE_META = "meta.json"
# Hidden siblings of a scene folder while it is written: the new one, and the one it replaces.
STAGING, REPLACED = ".partial", ".replaced"
# The file stem of each label set's per-vertex labels; "voxel_" + stem holds the voxel labels.
SEGMENT_KEY = {"scannet20": "segment20", "scannet200": "segment200"}
ARRAYS = (
    "coord",
    "color",
    "normal",
    *SEGMENT_KEY.values(),
    "instance",
    "voxel_coord",
    "voxel_inverse",
    *(f"voxel_{key}" for key in SEGMENT_KEY.values()),
)
# What the manifest and every scene's meta.json must agree on.
SETTINGS = ("format_version", "voxel_size", "align", "label_table_sha256")


def data_identity(manifest: dict) -> str:
    """What identifies one preparation of a folder: a hash of its manifest (settings, scenes,
    counts and statistics). A run records it and checks it at every validation and resume, so
    data prepared again under a running training is noticed."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_of(record: dict) -> dict:
    """The ``SETTINGS`` of a manifest or a scene's meta.json."""
    return {key: record.get(key) for key in SETTINGS}


def read_scene_meta(folder: Path) -> dict | None:
    """The meta.json of a scene folder, or None where there is none (or it is unreadable)."""
    try:
        meta = read_json(folder / SCENE_META)
    except InputError:
        return None
    return meta if isinstance(meta, dict) else None


def write_scene(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> dict:
    """Write ``arrays`` (every key of ``ARRAYS``), then meta.json: ``meta`` plus each array's
    shape, dtype and file size. Returns what meta.json holds.

    Everything is written into a sibling folder that replaces ``folder`` only once complete, so
    a full disk or an interruption leaves the earlier scene as it was."""
    staging = folder.with_name(f".{folder.name}{STAGING}")
    remove_entry(staging)
    records = {}
    for key in ARRAYS:
        path = staging / f"{key}.npy"
        save_npy(path, arrays[key])
        records[key] = {
            "shape": list(arrays[key].shape),
            "dtype": arrays[key].dtype.str,
            "bytes": path.stat().st_size,
        }
    meta = {**meta, "arrays": records}
    save_json(staging / SCENE_META, meta)
    # A scene folder that is a link (to a copy elsewhere) is replaced as a link: what it points
    # to is left as it was.
    replaced = folder.with_name(f".{folder.name}{REPLACED}")
    remove_entry(replaced)
    with contextlib.suppress(FileNotFoundError):
        os.rename(folder, replaced)
    os.rename(staging, folder)
    remove_entry(replaced)
    return meta


def remove_leftovers(root: Path) -> list[Path]:
    """Remove, and return, what an interrupted ``ceco3d-prep`` (``kill -9``, a power cut) left in
    ``root``: scene staging folders, replaced scene folders (or links), temporary files."""
    found = temporaries(root)
    for split in SPLITS:
        if (root / split).is_dir():
            hidden = [p for p in (root / split).iterdir() if p.name.startswith(".")]
            found += sorted(p for p in hidden if p.name.endswith((STAGING, REPLACED)))
    for path in found:
        remove_entry(path)
    return found


def scene_problem(folder: Path, settings: dict) -> str | None:
    """Why ``folder`` is not a complete scene prepared with ``settings``; None when it is."""
    return meta_problem(folder, read_scene_meta(folder), settings)


def meta_problem(folder: Path, meta: dict | None, settings: dict) -> str | None:
    """``scene_problem`` of a scene whose meta.json (or None) has been read already."""
    if meta is None:
        return f"no {SCENE_META} (preparation unfinished or interrupted)"
    differing = [f"{key}={meta.get(key)!r}" for key in SETTINGS if meta.get(key) != settings[key]]
    if differing:
        return "prepared with " + ", ".join(differing)
    records = meta.get("arrays")
    for key in ARRAYS:
        record = records.get(key) if isinstance(records, dict) else None
        if not isinstance(record, dict):
            return f"{SCENE_META} records no {key}.npy"
        try:
            size = (folder / f"{key}.npy").stat().st_size
        except FileNotFoundError:
            return f"{key}.npy is missing"
        if size != record.get("bytes"):
            return (
                f"{key}.npy has {size} bytes, {SCENE_META} says {record.get('bytes')} (truncated?)"
            )
        problem = array_problem(folder / f"{key}.npy", record)
        if problem is not None:
            return problem
    return None


def npy_header(path: Path) -> tuple[list[int], str]:
    """(shape, dtype string such as ``"<i4"``) of a ``.npy`` file from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
            np.lib.format.read_array_header_2_0)  # fmt: skip
        shape, _, dtype = read(f)
    return list(shape), dtype.str


def array_problem(path: Path, record: dict) -> str | None:
    """Why the ``.npy`` at ``path`` is not the array its meta.json ``record`` describes."""
    try:
        shape, dtype = npy_header(path)
    except (OSError, ValueError, EOFError) as e:
        return f"{path.name} is unreadable ({e})"
    return layout_problem(path.name, shape, dtype, record)


def layout_problem(name: str, shape: list[int], dtype: str, record: dict) -> str | None:
    """Why an array of ``shape`` and ``dtype`` is not the one meta.json's ``record`` describes
    (an array of the same byte size but another layout was replaced, not prepared)."""
    if list(shape) == record.get("shape") and dtype == record.get("dtype"):
        return None
    return (
        f"{name} holds a {dtype} array of shape {tuple(shape)}, {SCENE_META} says "
        f"{record.get('dtype')} {tuple(record.get('shape') or ())} (replaced since it was "
        "prepared?)"
    )
