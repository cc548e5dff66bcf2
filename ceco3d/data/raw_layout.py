"""The raw ScanNet v2 release's layout: the one owner of its folder and file names, which
preparation, evaluation exports, the benchmark submission, the synthetic generator and the
scripts all use.

    RAW/scans/<scene>/       labelled scenes (train and val): the mesh, its over-segmentation,
                             the aggregation of segments into objects and the scan's .txt
    RAW/scans_test/<scene>/  the test scenes: the mesh and the .txt only
    RAW/scannetv2_<split>.txt            the scene names of a split, one per line
    RAW/scannetv2-labels.combined.tsv    the label table
"""

from __future__ import annotations

from pathlib import Path

LABEL_TABLE = "scannetv2-labels.combined.tsv"
LABELLED_SCANS, TEST_SCANS = "scans", "scans_test"
MESH_SUFFIX = "_vh_clean_2.ply"
SEGMENTS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
AGGREGATION_SUFFIX = ".aggregation.json"
INFO_SUFFIX = ".txt"


def scans_folder(raw: str | Path, split: str) -> Path:
    """The folder that holds a split's scene folders: test scenes live in ``scans_test/``."""
    return Path(raw) / (TEST_SCANS if split == "test" else LABELLED_SCANS)


def scene_folder(raw: str | Path, split: str, scene: str) -> Path:
    return scans_folder(raw, split) / scene


def split_list(folder: str | Path, split: str) -> Path:
    """``scannetv2_<split>.txt`` in ``folder`` (the raw root unless the lists live elsewhere)."""
    return Path(folder) / f"scannetv2_{split}.txt"


def mesh_file(folder: str | Path, scene: str) -> Path:
    """The mesh every benchmark number is counted on (its vertices, in file order)."""
    return Path(folder) / f"{scene}{MESH_SUFFIX}"


def segments_file(folder: str | Path, scene: str) -> Path:
    return Path(folder) / f"{scene}{SEGMENTS_SUFFIX}"


def aggregation_file(folder: str | Path, scene: str) -> Path:
    return Path(folder) / f"{scene}{AGGREGATION_SUFFIX}"


def info_file(folder: str | Path, scene: str) -> Path:
    """The scan's ``.txt`` (sensor settings; ``axisAlignment`` for labelled scenes)."""
    return Path(folder) / f"{scene}{INFO_SUFFIX}"


def scene_mesh(raw: str | Path, split: str, scene: str) -> Path:
    """``RAW/scans[_test]/<scene>/<scene>_vh_clean_2.ply``."""
    return mesh_file(scene_folder(raw, split, scene), scene)


def looks_like_raw(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a raw ScanNet release rather than prepared data."""
    return (Path(folder) / LABELLED_SCANS).is_dir()
