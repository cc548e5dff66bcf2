"""Markdown tables over training seeds: mean ± sample std per model, and each model's paired
per-seed difference to a baseline (same seed: same initialisation and data order)."""

from __future__ import annotations

import numpy as np

Columns = list[tuple[str, str]]  # (column title, summary key)


def _values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def spread(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def seed_table(per_seed: dict[str, list[dict]], columns: Columns) -> str:
    """One row per model: its number of seeds, then mean ± std of every column."""
    header = ["model", "seeds", *[c for c, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in per_seed.items():
        cells = ["{:.2f} ± {:.2f}".format(*spread(_values(rows, key))) for _, key in columns]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(per_seed: dict[str, list[dict]], key: str, name: str, baseline: str):
    """``name``'s value of ``key`` minus ``baseline``'s, seed by seed."""
    return _values(per_seed[name], key) - _values(per_seed[baseline], key)


def difference_table(per_seed: dict[str, list[dict]], columns: Columns, baseline: str) -> str:
    """Each model minus ``baseline``, seed by seed: mean ± std, then every seed's."""
    header = ["difference", *[c for c, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in per_seed:
        if name == baseline:
            continue
        cells = []
        for _, key in columns:
            diff = paired_differences(per_seed, key, name, baseline)
            each = " / ".join(f"{d:+.2f}" for d in diff)
            cells.append("{:+.2f} ± {:.2f} ".format(*spread(diff)) + f"({each})")
        lines.append(f"| {name} − {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
