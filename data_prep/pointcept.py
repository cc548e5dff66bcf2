"""Pointcept's prepared ScanNet as the source of ``ceco3d-prep`` (``--from pointcept``).

Pointcept's ``pointcept/datasets/preprocessing/scannet/preprocess_scannet.py`` (read at
Pointcept/Pointcept@d74c646bea) writes, per scene, ``SRC/{train,val,test}/<scene>/``:

* ``coord.npy`` (N, 3) float32 and ``color.npy`` (N, 3) uint8, one row per vertex of
  ``<scene>_vh_clean_2.ply`` in the mesh's own order, not axis-aligned;
* ``normal.npy`` (N, 3) float32, area-weighted vertex normals (written by default);
* train and val only: ``segment20.npy`` / ``segment200.npy`` (N,) int64, the class index in
  ``VALID_CLASS_IDS_20`` / ``_200`` order (the benchmark order of ``ceco3d.data.label_sets``), -1
  ignored; ``instance.npy`` (N,) int64, the aggregation group id, -1 for none.

These are the arrays that ``ceco3d-prep`` makes from the raw mesh, so a scene is taken over as it
is and voxelized. What the arrays lack is the mesh's faces: ``ceco3d-eval export.ply=true`` needs
``export.raw=RAW`` to keep them, and a submission is checked against ``RAW`` (its vertex order is
the mesh's, which Pointcept keeps).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.data.layout import SEGMENT_KEY, SPLITS
from ceco3d.errors import InputError
from data_prep.fingerprint import fingerprint
from data_prep.scene import Scene, Settings, write_prepared

SOURCE = "pointcept"
GEOMETRY = ("coord", "color", "normal")
INSTANCE = "instance"
UNLABELLED_SPLIT = "test"


@dataclass(frozen=True)
class PointceptScene:
    """One scene folder of a Pointcept-layout tree (the test split has no label arrays)."""

    scene_id: str
    split: str
    folder: Path

    @property
    def labelled(self) -> bool:
        return self.split != UNLABELLED_SPLIT

    def array(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def inputs(self, align: bool = False) -> list[Path]:
        keys = [*GEOMETRY]
        if self.labelled:
            keys += [*SEGMENT_KEY.values(), INSTANCE]
        return [self.array(key) for key in keys]


def is_pointcept_folder(src: Path) -> bool:
    """A folder with ``train/``, ``val/`` or ``test/`` scene folders holding ``coord.npy``, and no
    raw ``scans/``."""
    if (src / "scans").is_dir():
        return False
    return any(scene.is_file() for split in SPLITS for scene in src.glob(f"{split}/*/coord.npy"))


def find_pointcept_scenes(src: Path) -> list[PointceptScene]:
    """Every scene folder of ``src``'s split folders, by split, then by name."""
    scenes = []
    for split in SPLITS:
        folder = src / split
        if folder.is_dir():
            scenes += [
                PointceptScene(path.name, split, path)
                for path in sorted(folder.iterdir())
                if path.is_dir() and not path.name.startswith(".")
            ]
    if not scenes and any(src.glob("*/scene*.pth")):
        raise InputError(
            f"{src}: one .pth per scene is the layout of Pointcept before v1.5.2, which "
            "ceco3d does not read; run Pointcept's current preprocess_scannet.py (a folder of "
            ".npy files per scene) or prepare the raw ScanNet release"
        )
    if not scenes:
        raise InputError(
            f"{src}: no scene folders under {', '.join(f'{s}/' for s in SPLITS)} (a Pointcept "
            "ScanNet folder holds train/<scene>/coord.npy ...)"
        )
    return scenes


def read_array(path: Path, columns: int | None, num_rows: int | None = None) -> np.ndarray:
    """The numeric array in ``path``: (N, columns), or (N,) where ``columns`` is None."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (ValueError, EOFError, OSError) as e:
        raise InputError(f"{path}: not a readable .npy array ({e})") from None
    shape = "(N,)" if columns is None else f"(N, {columns})"
    wrong_shape = (
        array.ndim != 1 if columns is None else array.ndim != 2 or array.shape[1] != columns
    )
    if wrong_shape or array.dtype.kind not in "iuf":
        raise InputError(f"{path}: a {array.dtype} array of shape {array.shape}, expected {shape} "
                         "numbers (as Pointcept's preprocess_scannet.py writes it)")  # fmt: skip
    if num_rows is not None and len(array) != num_rows:
        raise InputError(f"{path}: {len(array)} rows but coord.npy has {num_rows}")
    if not np.isfinite(array).all():
        raise InputError(f"{path}: contains NaN or inf")
    return array


def read_labels(scene: PointceptScene, num_rows: int) -> dict[str, np.ndarray]:
    """The per-vertex class index of every label set, checked against its class count."""
    labels = {}
    for name, key in SEGMENT_KEY.items():
        path = scene.array(key)
        values = read_array(path, None, num_rows)
        classes = LABEL_SETS[name].num_classes
        if values.dtype.kind == "f" or (
            values.size and not -1 <= values.min() <= values.max() < classes
        ):
            raise InputError(f"{path}: class indices must be whole numbers in -1..{classes - 1} "
                             f"({name}; -1 ignored)")  # fmt: skip
        labels[name] = values.astype(np.int16)
    return labels


def prepare_pointcept_scene(
    source: PointceptScene, folder: Path, settings: Settings, lookups: dict | None = None
) -> dict:
    """Read, voxelize and write one Pointcept scene into ``folder``; returns its meta.json.
    ``lookups`` (the raw path's label table) is not needed: the labels are class indices."""
    if settings.align:
        raise InputError(f"{source.folder}: Pointcept's arrays are not axis-aligned and keep no "
                         "axisAlignment; prepare without --align")  # fmt: skip
    inputs = {path.name: fingerprint(path) for path in _existing(source.inputs())}
    xyz = read_array(source.array("coord"), 3).astype(np.float32)
    color = read_array(source.array("color"), 3, len(xyz))
    if color.size and not 0 <= color.min() <= color.max() <= 255:
        raise InputError(f"{source.array('color')}: colours must lie in 0..255")
    normal = read_array(source.array("normal"), 3, len(xyz))
    if source.labelled:
        labels = read_labels(source, len(xyz))
        instance = read_array(source.array(INSTANCE), None, len(xyz))
    else:
        labels = {name: np.full(len(xyz), -1, np.int16) for name in LABEL_SETS}
        instance = np.full(len(xyz), -1, np.int32)
    scene = Scene(source.scene_id, source.split, source.labelled, inputs, aligned=False)
    return write_prepared(scene, folder, settings, xyz, color, normal, labels, instance,
                          Counter(), extra={"source": SOURCE})  # fmt: skip


def _existing(paths: list[Path]) -> list[Path]:
    for path in paths:
        if not path.is_file():
            hint = " (Pointcept writes it with --parse_normals, its default)" * (
                path.stem == "normal"
            )
            raise InputError(f"{path}: file not found{hint}")
    return paths
