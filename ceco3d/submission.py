"""ScanNet benchmark submission: write the zip, read it back, and check it before uploading.

The benchmark expects one ``sceneXXXX_YY.txt`` per scene at the root of a zip, one integer per
line and one line per vertex of ``<scene>_vh_clean_2.ply`` in mesh order. The integer is the
benchmark id, not ceco3d's class index: the NYU40 id for ScanNet20, the raw ScanNet id for
ScanNet200.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ceco3d.data import raw_layout
from ceco3d.data.label_sets import LabelSet
from ceco3d.errors import InputError
from ceco3d.io import atomic_write, count_ply_vertices

SCENE_PATTERN = re.compile(r"scene\d{4}_\d{2}")
INTEGER = re.compile(r"[+-]?[0-9]+")
MAX_LISTED = 5  # how many bad values a problem message quotes


def write_submission(
    zip_path: str | os.PathLike, predictions: dict[str, np.ndarray], label_set: LabelSet
) -> None:
    """Write per-vertex class indices (0..K-1, mesh vertex order) as benchmark ids into a zip."""
    with atomic_write(zip_path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        for scene in sorted(predictions):
            if not SCENE_PATTERN.fullmatch(scene):
                raise ValueError(f"{scene!r} is not a ScanNet scene name (sceneXXXX_YY)")
            pred = np.asarray(predictions[scene])
            if pred.ndim != 1 or not np.issubdtype(pred.dtype, np.integer):
                raise ValueError(
                    f"{scene}: predictions must be a 1-D integer array of class indices, "
                    f"got shape {pred.shape} dtype {pred.dtype}"
                )
            try:
                ids = label_set.index_to_id(pred)
            except ValueError as e:
                raise ValueError(f"{scene}: {e}") from None
            text = "".join(f"{i}\n" for i in ids.tolist())
            zf.writestr(f"{scene}.txt", text)


def _parse_ids(text: str, name: str) -> np.ndarray:
    """One integer per line -> int64 array; InputError names the first bad line."""
    lines = text.splitlines()
    ids = np.empty(len(lines), dtype=np.int64)
    for number, line in enumerate(lines, start=1):
        if not INTEGER.fullmatch(line.strip()):
            raise InputError(f"{name}: line {number}: {line!r} is not an integer")
        try:
            ids[number - 1] = int(line)
        except OverflowError:
            raise InputError(f"{name}: line {number}: {line!r} is out of range") from None
    return ids


def _open_zip(zip_path: str | os.PathLike) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise InputError(f"{zip_path}: file not found") from None
    except zipfile.BadZipFile:
        raise InputError(f"{zip_path}: not a zip file") from None


def _read_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        text = zf.read(name).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None
    return _parse_ids(text, name)


def read_submission(zip_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Benchmark ids per scene from every ``.txt`` at the zip root (anything else is skipped)."""
    with _open_zip(zip_path) as zf:
        return {
            name.removesuffix(".txt"): _read_member(zf, name)
            for name in zf.namelist()
            if name.endswith(".txt") and "/" not in name
        }


def read_split(raw_root: str | os.PathLike, split: str, split_file: str | None = None) -> list[str]:
    """Scene names of a split, from ``raw_root/scannetv2_<split>.txt`` unless a file is given."""
    path = Path(split_file) if split_file else raw_layout.split_list(raw_root, split)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM is no part of a scene name
        scenes = [line.strip() for line in text.splitlines() if line.strip()]
    except FileNotFoundError:
        raise InputError(f"{path}: split file not found") from None
    if not scenes:
        raise InputError(f"{path}: split file lists no scenes")
    return scenes


def mesh_path(raw_root: str | os.PathLike, scene: str, split: str) -> Path:
    return raw_layout.scene_mesh(raw_root, split, scene)


def _zip_layout_problems(names: list[str], scenes: set[str], split: str) -> list[str]:
    problems = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"{name}: appears more than once in the zip")
        seen.add(name)
        if name.endswith("/"):
            problems.append(f"{name}: directory entry; files must sit at the zip root")
        elif "/" in name or "\\" in name:
            problems.append(f"{name}: nested path; files must sit at the zip root")
        elif not name.endswith(".txt"):
            problems.append(f"{name}: stray file (not a .txt)")
        elif (stem := name.removesuffix(".txt")) not in scenes:
            problems.append(f"{name}: stray file (no scene {stem} in the {split} split)")
    return problems


def _content_problems(
    name: str, ids: np.ndarray, num_vertices: int, label_set: LabelSet
) -> list[str]:
    problems = []
    if len(ids) != num_vertices:
        problems.append(f"{name}: {len(ids)} lines but the mesh has {num_vertices} vertices")
    invalid = np.flatnonzero(~np.isin(ids, label_set.ids))
    if invalid.size:
        quoted = ", ".join(f"line {i + 1}: {ids[i]}" for i in invalid[:MAX_LISTED])
        problems.append(
            f"{name}: {invalid.size} lines hold ids that are not {label_set.name} benchmark ids "
            f"({quoted})"
        )
    return problems


def check_submission(
    zip_path: str | os.PathLike,
    raw_root: str | os.PathLike,
    label_set: LabelSet,
    split: str = "test",
    split_file: str | None = None,
) -> list[str]:
    """Everything the benchmark server would reject, one message per problem (empty = OK)."""
    scenes = read_split(raw_root, split, split_file)
    with _open_zip(zip_path) as zf:
        names = zf.namelist()
        problems = _zip_layout_problems(names, set(scenes), split)
        root_names = set(names)
        for scene in scenes:
            name = f"{scene}.txt"
            if name not in root_names:
                problems.append(f"{scene}: missing from the zip (expected {name} at the zip root)")
                continue
            try:
                ids = _read_member(zf, name)
                num_vertices = count_ply_vertices(mesh_path(raw_root, scene, split))
            except InputError as e:
                problems.append(str(e))
                continue
            problems += _content_problems(name, ids, num_vertices, label_set)
    return problems
