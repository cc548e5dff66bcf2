"""ScanNet benchmark tables: the one place that defines class ids, names and splits.

ScanNet20 scores the 20 NYU40 classes of the v2 benchmark; ScanNet200 scores 200 raw ScanNet
categories in benchmark order and reports their head / common / tail thirds (split by training
point frequency). The tables are data, one row per class in benchmark order (``tables/*.csv``:
id, name, group, train_only); ``tests/test_meta.py`` checks them against the benchmark's own
definition file when it is available.

A label set maps a benchmark id (NYU40 id or raw ScanNet id) to a contiguous class index
0..K-1 in benchmark order; -1 is the ignore index everywhere in ceco3d.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import numpy as np

IGNORE_INDEX = -1
GROUPS = ("head", "common", "tail")  # ScanNet200's frequency thirds, most frequent first


@dataclass(frozen=True)
class LabelSet:
    """One benchmark's classes.

    ``source_column`` names the column of ``scannetv2-labels.combined.tsv`` whose value is the
    benchmark id of a raw category (``nyu40id`` for ScanNet20, ``id`` for ScanNet200).
    """

    name: str
    ids: tuple[int, ...]
    names: tuple[str, ...]
    source_column: str
    groups: dict[str, tuple[str, ...]] | None = None
    train_only: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    @cached_property
    def id_to_index(self) -> dict[int, int]:
        return {benchmark_id: index for index, benchmark_id in enumerate(self.ids)}

    @cached_property
    def group_of_class(self) -> tuple[str, ...]:
        """Group name ("head", "common", "tail") per class index; "" without groups."""
        if not self.groups:
            return ("",) * self.num_classes
        by_name = {name: group for group, names in self.groups.items() for name in names}
        return tuple(by_name[name] for name in self.names)

    def group_mask(self, group: str) -> np.ndarray:
        """Boolean mask over class indices that belong to ``group``."""
        return np.array([g == group for g in self.group_of_class])

    def index_to_id(self, index: np.ndarray) -> np.ndarray:
        """Class indices (0..K-1) -> benchmark ids; raises on the ignore index."""
        index = np.asarray(index)
        if index.size and (index.min() < 0 or index.max() >= self.num_classes):
            raise ValueError(f"class index out of range [0, {self.num_classes}) for {self.name}")
        return np.asarray(self.ids, dtype=np.int64)[index]


def read_table(name: str, source_column: str) -> LabelSet:
    """The label set of ``tables/<name>.csv``. ``groups`` list each group's classes in
    benchmark order; a table whose ``group`` column is empty has no groups."""
    text = resources.files(__package__).joinpath("tables", f"{name}.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    names = tuple(row["name"] for row in rows)
    groups = {
        group: tuple(row["name"] for row in rows if row["group"] == group)
        for group in GROUPS
        if any(row["group"] == group for row in rows)
    }
    return LabelSet(
        name,
        ids=tuple(int(row["id"]) for row in rows),
        names=names,
        source_column=source_column,
        groups=groups or None,
        train_only=tuple(row["name"] for row in rows if row["train_only"] == "yes"),
    )


SCANNET20 = read_table("scannet20", "nyu40id")
SCANNET200 = read_table("scannet200", "id")
SCANNET200_TRAIN_ONLY = SCANNET200.train_only
LABEL_SETS = {label_set.name: label_set for label_set in (SCANNET20, SCANNET200)}


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(
            f"unknown label set {name!r}; choose one of {sorted(LABEL_SETS)}"
        ) from None
