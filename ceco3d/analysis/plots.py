"""Figures of the imbalance and neural-collapse analysis, written as PNG files.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global backend state, no
display needed, nothing kept alive after the file is written. Every function writes its PNG
atomically and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ceco3d.analysis.imbalance import imbalance_factor, pearson
from ceco3d.io import atomic_write
from ceco3d.neural_collapse import COLLAPSE_TAGS
from ceco3d.viz import GROUP_COLORS

if TYPE_CHECKING:
    from ceco3d.data.label_sets import LabelSet

DPI = 120


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=DPI)
    return Path(path)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _tick_fontsize(num_ticks: int) -> float:
    return float(np.clip(400 / max(num_ticks, 1), 3, 9))


def _class_axis(ax, class_names: Sequence[str], order: np.ndarray) -> None:
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels(
        [class_names[i] for i in order], rotation=90, fontsize=_tick_fontsize(len(order))
    )
    ax.set_xlim(-0.6, len(order) - 0.4)


def _group_runs(ax, shown_groups: np.ndarray) -> list[tuple[int, int]]:
    """Shade each run of neighbouring classes in the same group; returns the runs' bar ranges."""
    starts = np.flatnonzero(np.r_[True, shown_groups[1:] != shown_groups[:-1]])
    ends = np.r_[starts[1:], len(shown_groups)]
    for start, end in zip(starts, ends, strict=True):
        color = GROUP_COLORS.get(shown_groups[start], "gray")
        ax.axvspan(start - 0.5, end - 0.5, color=color, alpha=0.08, lw=0)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def plot_frequency_histograms(
    path: str | os.PathLike,
    point_counts: np.ndarray,
    scene_counts: np.ndarray,
    class_names: Sequence[str],
) -> Path:
    """Per-class point counts and center counts (scenes with the class), each sorted by size.

    Log y scale; each panel's legend gives its imbalance factor. Zero-count classes are left
    out of the factor and of the panel (a synthetic set uses a few of ScanNet200's classes).
    """
    panels = (
        ("points", "point", np.asarray(point_counts)),
        ("scenes (centers)", "center", np.asarray(scene_counts)),
    )
    num_classes = len(class_names)
    shown = max(np.count_nonzero(counts) for _, _, counts in panels)
    fig = Figure(figsize=(max(8.0, 0.09 * shown), 7.5))
    for row, (unit, kind, counts) in enumerate(panels, start=1):
        if len(counts) != num_classes:
            raise ValueError(f"{len(counts)} {kind} counts for {num_classes} class names")
        factor, left_out = imbalance_factor(counts)
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0]
        label = f"{kind} imbalance factor {factor:.1f}"
        if left_out:
            label += f" ({left_out} zero-count classes left out)"
        ax = fig.add_subplot(2, 1, row)
        ax.bar(np.arange(len(order)), counts[order], color="tab:blue", label=label)
        ax.set_yscale("log")
        ax.set_ylabel(f"{unit} per class")
        _class_axis(ax, class_names, order)
        ax.legend(loc="upper right")
    return _save(fig, path)


def plot_accuracy_vs_frequency(
    path: str | os.PathLike,
    acc: np.ndarray | Mapping[str, np.ndarray],
    point_freq: np.ndarray,
    center_freq: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Per-class accuracy against normalised point and center frequency (log x).

    ``acc`` is one ``(K,)`` array or ``{"CE": acc_ce, "CeCo": acc_ceco}`` to overlay models;
    each legend entry gives that model's Pearson coefficient (over classes with finite
    accuracy). ``class_names`` annotates the points of the first model.
    """
    models = dict(acc) if isinstance(acc, Mapping) else {"model": acc}
    panels = (("point", np.asarray(point_freq)), ("center", np.asarray(center_freq)))
    fig = Figure(figsize=(12, 5))
    for col, (kind, freq) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 2, col)
        for index, (name, model_acc) in enumerate(models.items()):
            model_acc = np.asarray(model_acc, dtype=np.float64)
            r = pearson(model_acc, freq)
            ax.scatter(freq, model_acc, s=14, alpha=0.75, label=f"{name} (Pearson r = {r:.3f})")
            if class_names is not None and index == 0:
                for x, y, text in zip(freq, model_acc, class_names, strict=True):
                    if np.isfinite(y) and x > 0:
                        ax.annotate(text, (x, y), fontsize=6, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel(f"normalised {kind} frequency")
        ax.set_ylabel("per-class accuracy")
        ax.set_title(f"accuracy vs {kind} frequency")
        ax.legend(loc="lower right")
    return _save(fig, path)


def plot_collapse_curves(
    path: str | os.PathLike, runs: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]
) -> Path:
    """Equiangularity and separation (features / weights) over training steps, one line per run.

    ``runs`` maps a run name to ``{tag: [(step, value), ...]}`` as ``read_scalars`` returns it,
    keyed by ``COLLAPSE_TAGS`` values (the bare ``collapse_statistics`` keys work too).
    """
    fig = Figure(figsize=(10, 7))
    layout = (
        ("equiangularity_features", "features: equiangularity"),
        ("separation_features", "features: maximal separation"),
        ("equiangularity_weights", "weights: equiangularity"),
        ("separation_weights", "weights: maximal separation"),
    )
    for index, (key, title) in enumerate(layout, start=1):
        ax = fig.add_subplot(2, 2, index)
        for run, series in runs.items():
            points = series.get(COLLAPSE_TAGS[key], series.get(key, ()))
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker=".", label=run)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return _save(fig, path)


def plot_iou_by_frequency(
    path: str | os.PathLike,
    ious: Mapping[str, np.ndarray],
    train_counts: np.ndarray,
    label_set: LabelSet,
) -> Path:
    """Per-class IoU of several models side by side, classes sorted by training point count
    (most frequent left); classes absent from training are left out. The background shades
    each class's group (head / common / tail) and the legend gives each model's group means.
    """
    counts = np.asarray(train_counts)
    if len(counts) != label_set.num_classes:
        raise ValueError(f"{len(counts)} counts for {label_set.num_classes} classes")
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    groups = np.array(label_set.group_of_class)
    shown = groups[order]
    fig = Figure(figsize=(max(8.0, 0.3 * len(order) * len(ious)), 4.8))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(ious), 1)
    for index, (name, iou) in enumerate(ious.items()):
        iou = np.asarray(iou, dtype=np.float64)
        means = " / ".join(f"{_nanmean(iou[groups == g]):.3f}" for g in dict.fromkeys(shown))
        x = np.arange(len(order)) - 0.4 + width * (index + 0.5)
        ax.bar(x, iou[order], width, label=f"{name} ({'/'.join(dict.fromkeys(shown))}: {means})")
    _group_runs(ax, shown)
    ax.set_ylabel("IoU")
    ax.set_title(
        f"{label_set.name}: per-class IoU, classes by training point count (shading: group)"
    )
    _class_axis(ax, label_set.names, order)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
