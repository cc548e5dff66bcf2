"""The benchmark tables of ceco3d.data.label_sets against the benchmark's own definition file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ceco3d.data.label_sets import (
    IGNORE_INDEX,
    SCANNET20,
    SCANNET200,
    SCANNET200_TRAIN_ONLY,
    get_label_set,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "scannet"
needs_shared = pytest.mark.skipif(
    not (SHARED / "benchmark_classes.json").is_file(),
    reason=f"ScanNet reference files not found in {SHARED}",
)


@pytest.fixture(scope="module")
def benchmark() -> dict:
    return json.loads((SHARED / "benchmark_classes.json").read_text())


@pytest.fixture(scope="module")
def label_table() -> list[dict]:
    with open(SHARED / "scannetv2-labels.combined.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@needs_shared
def test_scannet20_ids_and_names_in_benchmark_order(benchmark):
    assert list(SCANNET20.ids) == benchmark["scannet20"]["valid_class_ids"]
    assert list(SCANNET20.names) == benchmark["scannet20"]["class_labels"]
    assert SCANNET20.source_column == "nyu40id"


@needs_shared
def test_scannet200_ids_and_names_in_benchmark_order(benchmark):
    assert list(SCANNET200.ids) == benchmark["scannet200"]["valid_class_ids"]
    assert list(SCANNET200.names) == benchmark["scannet200"]["class_labels"]
    assert SCANNET200.source_column == "id"


@needs_shared
@pytest.mark.parametrize("group", ["head", "common", "tail"])
def test_scannet200_groups(benchmark, group):
    # Not swapped (Pointcept's and Mask3D's copies swap variable names). The table lists each
    # group's classes in benchmark class order (the definition file's head list has its own).
    assert sorted(SCANNET200.groups[group]) == sorted(benchmark["scannet200"][group])
    assert len(SCANNET200.groups[group]) == len(benchmark["scannet200"][group])
    mask = SCANNET200.group_mask(group)
    assert [SCANNET200.names[i] for i in np.flatnonzero(mask)] == [
        n for n in SCANNET200.names if n in benchmark["scannet200"][group]
    ]


@needs_shared
def test_train_only_classes(benchmark):
    assert list(SCANNET200_TRAIN_ONLY) == benchmark["scannet200"]["train_only_labels"]
    index = [SCANNET200.names.index(n) for n in SCANNET200_TRAIN_ONLY]
    assert [SCANNET200.ids[i] for i in index] == benchmark["scannet200"]["train_only_ids"]


def test_groups_partition_the_200_classes():
    groups = SCANNET200.groups
    assert (len(groups["head"]), len(groups["common"]), len(groups["tail"])) == (66, 68, 66)
    assert sorted(n for names in groups.values() for n in names) == sorted(SCANNET200.names)
    assert len(set(SCANNET200.names)) == 200 and len(set(SCANNET200.ids)) == 200
    assert set(SCANNET200_TRAIN_ONLY) <= set(SCANNET200.names)


def test_label_set_lookups():
    assert SCANNET20.id_to_index[39] == 19  # otherfurniture, the last class
    assert SCANNET200.id_to_index[1191] == 199  # mattress
    assert SCANNET200.group_of_class[SCANNET200.names.index("mattress")] == "common"
    assert list(SCANNET20.index_to_id(np.array([0, 19]))) == [1, 39]
    with pytest.raises(ValueError):
        SCANNET20.index_to_id(np.array([IGNORE_INDEX]))
    assert get_label_set("scannet200") is SCANNET200
    with pytest.raises(ValueError, match="unknown label set"):
        get_label_set("scannet40")


@needs_shared
def test_every_benchmark_id_is_in_the_label_table(label_table):
    ids = {int(r["id"]) for r in label_table}
    nyu40 = {int(r["nyu40id"]) for r in label_table}
    assert set(SCANNET200.ids) <= ids
    assert set(SCANNET20.ids) <= nyu40
    # ScanNet200 names are the table's `category` of their id (stripped: cells are not clean).
    categories = {}
    for row in label_table:
        categories.setdefault(int(row["id"]), set()).add(row["category"].strip())
    for benchmark_id, name in zip(SCANNET200.ids, SCANNET200.names, strict=True):
        assert name in categories[benchmark_id], (benchmark_id, name)


@needs_shared
def test_label_table_quirks(label_table):
    """The quirks that force mapping by raw_category: shared ids and a dirty category cell."""
    by_raw = {r["raw_category"]: r for r in label_table}
    assert len(by_raw) == len(label_table) == 607  # raw_category is unique, ids are not
    assert by_raw["stick"]["id"] == by_raw["object"]["id"] == "1163"
    assert {by_raw[r]["id"] for r in ("wardrobe", "wardrobe closet", "closet wardrobe")} == {"99"}
    assert by_raw["wardrobe cabinet"]["category"] == "wardrobe "
    assert by_raw["wardrobe cabinet"]["id"] == "1177" and 1177 not in SCANNET200.ids
