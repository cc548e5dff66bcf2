"""Class-imbalance statistics (the CeCo paper's supplementary analysis): imbalance factors of
point and center counts, and how per-class accuracy follows class frequency. They leave out
classes with zero count or undefined (NaN) accuracy, and say how many they left out.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def class_counts(
    scene_labels: Iterable[np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class point counts and scene (center) counts from each scene's ``(N,)`` labels."""
    points = np.zeros(num_classes, dtype=np.int64)
    scenes = np.zeros(num_classes, dtype=np.int64)
    for labels in scene_labels:
        labels = np.asarray(labels)
        per_class = np.bincount(labels[labels >= 0], minlength=num_classes)
        if len(per_class) > num_classes:
            raise ValueError(f"label {len(per_class) - 1} out of range [0, {num_classes})")
        points += per_class
        scenes += per_class > 0
    return points, scenes


def imbalance_factor(counts: np.ndarray) -> tuple[float, int]:
    """``max / min`` over the non-zero counts, and how many zero-count classes were left out."""
    counts = np.asarray(counts, dtype=np.float64)
    nonzero = counts[counts > 0]
    left_out = len(counts) - len(nonzero)
    if not nonzero.size:
        return float("nan"), left_out
    return float(nonzero.max() / nonzero.min()), left_out


def normalized_frequency(counts: np.ndarray) -> np.ndarray:
    """Counts as fractions of their total (NaN everywhere when the total is zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full_like(counts, np.nan)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over the entries where both are finite; NaN if it is undefined."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pearson needs equal shapes, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    x = x[keep] - x[keep].mean()
    y = y[keep] - y[keep].mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def imbalance_statistics(
    point_counts: np.ndarray, scene_counts: np.ndarray, per_class_acc: np.ndarray
) -> dict[str, float | int]:
    """Imbalance factors and the correlation of per-class accuracy with class frequency.

    ``point_counts`` / ``scene_counts`` are per-class point counts and center counts (scenes in
    which the class occurs); ``per_class_acc`` is NaN for classes absent from the evaluated split.
    """
    point_factor, point_left_out = imbalance_factor(point_counts)
    center_factor, center_left_out = imbalance_factor(scene_counts)
    per_class_acc = np.asarray(per_class_acc, dtype=np.float64)
    return {
        "point_imbalance_factor": point_factor,
        "center_imbalance_factor": center_factor,
        "point_classes_left_out": point_left_out,
        "center_classes_left_out": center_left_out,
        "pearson_acc_point_freq": pearson(per_class_acc, normalized_frequency(point_counts)),
        "pearson_acc_center_freq": pearson(per_class_acc, normalized_frequency(scene_counts)),
        "accuracy_classes_left_out": int((~np.isfinite(per_class_acc)).sum()),
    }
