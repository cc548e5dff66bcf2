"""ScanNet's label table -> per-label-set lookups from an aggregation ``label`` string.

An aggregation group's ``label`` is a ``raw_category`` of ``scannetv2-labels.combined.tsv``.
Several raw categories share one id (``stick`` and ``object`` are both 1163; three spellings of
``wardrobe`` are 99) and ``category`` cells are not clean (``wardrobe `` with a trailing space),
so the lookup goes by ``raw_category`` only, never by ``category``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ceco3d.data.label_sets import IGNORE_INDEX, LABEL_SETS
from ceco3d.errors import InputError

RAW_CATEGORY = "raw_category"


def read_label_table(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read the label table.

    Returns ``{label_set_name: {raw_category: class index}}`` for every label set in
    ``ceco3d.data.label_sets.LABEL_SETS``; a raw category whose id is outside a benchmark maps to
    ``IGNORE_INDEX`` there. Every raw category of the table is a key of every dict, so a string
    that is not a key is unknown to the table.
    """
    path = Path(path)
    try:
        # newline="": the real table has CRLF line ends, which csv handles only this way.
        with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM is not a column name
            reader = csv.DictReader(f, delimiter="\t")
            rows = list(reader)
            header = reader.fieldnames or []
    except FileNotFoundError:
        raise InputError(f"{path}: label table not found (pass --labels)") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: unreadable label table ({e})") from None
    columns = [RAW_CATEGORY] + [s.source_column for s in LABEL_SETS.values()]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"{path}: label table lacks columns {missing} (is it tab-separated?)")
    if not rows:
        raise InputError(f"{path}: label table has a header but no rows")

    lookups: dict[str, dict[str, int]] = {name: {} for name in LABEL_SETS}
    for line, row in enumerate(rows, start=2):
        empty = [c for c in columns if not (row[c] or "").strip()]
        if empty:
            cells = sum(row[c] is not None for c in header) + len(row.get(None) or ())
            raise InputError(
                f"{path}:{line}: no value in column(s) {empty} ({cells} cells, the header has "
                f"{len(header)}); fill them in, separated by tabs"
            )
        raw = row[RAW_CATEGORY]
        if raw in lookups[next(iter(LABEL_SETS))]:
            raise InputError(f"{path}:{line}: raw_category {raw!r} appears twice")
        for name, label_set in LABEL_SETS.items():
            cell = row[label_set.source_column].strip()
            try:
                benchmark_id = int(cell)
            except ValueError:
                raise InputError(
                    f"{path}:{line}: {label_set.source_column} {cell!r} is not an integer"
                ) from None
            lookups[name][raw] = label_set.id_to_index.get(benchmark_id, IGNORE_INDEX)
    return lookups
