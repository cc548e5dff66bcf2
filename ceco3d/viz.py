"""Visual output: class colours, coloured PLY meshes, scene previews and per-class IoU plots.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so
nothing depends on a display or on global backend state.
"""

from __future__ import annotations

import colorsys
import csv
import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ceco3d.data.label_sets import GROUPS, IGNORE_INDEX, LabelSet
from ceco3d.io import atomic_write, save_text, write_mesh

IGNORE_COLOR = (0, 0, 0)  # ScanNet's colour for unlabelled points
CORRECT_COLOR = (150, 200, 150)
WRONG_COLOR = (220, 30, 30)
IGNORED_GT_COLOR = (70, 70, 70)
GROUP_COLORS = {"head": "#1f77b4", "common": "#ff7f0e", "tail": "#2ca02c", "": "#7f7f7f"}

# ScanNet's own colour map (util.py, create_color_palette), for the 20 benchmark NYU40 ids.
SCANNET20_COLORS_BY_ID = {
    1: (174, 199, 232), 2: (152, 223, 138), 3: (31, 119, 180), 4: (255, 187, 120),
    5: (188, 189, 34), 6: (140, 86, 75), 7: (255, 152, 150), 8: (214, 39, 40),
    9: (197, 176, 213), 10: (148, 103, 189), 11: (196, 156, 148), 12: (23, 190, 207),
    14: (247, 182, 210), 16: (219, 219, 141), 24: (255, 127, 14), 28: (158, 218, 229),
    33: (44, 160, 44), 34: (112, 128, 144), 36: (227, 119, 194), 39: (82, 84, 163),
}  # fmt: skip

PREVIEW_POINTS = 60_000
LEGEND_CLASSES = 12


def scannet20_colormap(label_set: LabelSet) -> np.ndarray:
    """(20, 3) uint8, ScanNet's standard colours in the label set's class order."""
    return np.array([SCANNET20_COLORS_BY_ID[i] for i in label_set.ids], dtype=np.uint8)


def scannet200_colormap(num_classes: int = 200) -> np.ndarray:
    """(K, 3) uint8 distinct colours from a golden-ratio hue walk; deterministic, never black."""
    golden = (5**0.5 - 1) / 2
    colors = [
        colorsys.hsv_to_rgb((k * golden) % 1.0, (0.85, 0.55, 0.95)[k % 3], (0.95, 0.75)[k // 3 % 2])
        for k in range(num_classes)
    ]
    return np.round(np.array(colors) * 255).astype(np.uint8)


def class_palette(label_set: LabelSet) -> np.ndarray:
    """(K, 3) uint8 colour per class index of ``label_set``."""
    if set(label_set.ids) <= SCANNET20_COLORS_BY_ID.keys():
        return scannet20_colormap(label_set)
    return scannet200_colormap(label_set.num_classes)


def colorize(labels: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """(N,) class indices (ignore index allowed) -> (N, 3) uint8 colours."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < IGNORE_INDEX or labels.max() >= label_set.num_classes):
        raise ValueError(f"labels outside [0, {label_set.num_classes}) and the ignore index")
    table = np.vstack([class_palette(label_set), np.array(IGNORE_COLOR, dtype=np.uint8)])
    return table[np.where(labels == IGNORE_INDEX, label_set.num_classes, labels)]


def error_colors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 3) uint8: correct, wrong, or ground truth ignored."""
    colors = np.where((pred == gt)[:, None], CORRECT_COLOR, WRONG_COLOR)
    colors[gt == IGNORE_INDEX] = IGNORED_GT_COLOR
    return colors.astype(np.uint8)


def export_scene_plys(
    out_dir: str | os.PathLike,
    scene: str,
    xyz: np.ndarray,
    faces: np.ndarray | None,
    pred: np.ndarray,
    gt: np.ndarray | None,
    label_set: LabelSet,
) -> list[Path]:
    """Write ``<scene>_pred.ply`` and, when ``gt`` is given, ``_gt.ply`` and ``_error.ply``."""
    out_dir = Path(out_dir)
    layers = {"pred": colorize(pred, label_set)}
    if gt is not None:
        layers["gt"] = colorize(gt, label_set)
        layers["error"] = error_colors(np.asarray(pred), np.asarray(gt))
    paths = []
    for layer, rgb in layers.items():
        path = out_dir / f"{scene}_{layer}.ply"
        write_mesh(path, xyz, rgb, faces)
        paths.append(path)
    return paths


def _save_figure(fig: Figure, path: str | os.PathLike, dpi: int) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def render_scene_preview(
    path_png: str | os.PathLike,
    xyz: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray | None,
    label_set: LabelSet,
    max_points: int = PREVIEW_POINTS,
) -> None:
    """Top-down PNG: prediction | ground truth | errors (prediction only when ``gt`` is None)."""
    panels = [("prediction", np.asarray(pred))]
    if gt is not None:
        panels.append(("ground truth", np.asarray(gt)))
        panels.append(("errors (red)", error_colors(np.asarray(pred), np.asarray(gt))))
    render_view(path_png, xyz, panels, label_set, max_points)


def _project(xyz: np.ndarray, elevation: float, azimuth: float) -> tuple[np.ndarray, np.ndarray]:
    """Screen (N, 2) and depth towards the viewer (N,) of points seen from ``elevation`` degrees
    above the horizon (90: straight down), the scene turned ``azimuth`` degrees about z."""
    turn, tilt = np.radians(azimuth), np.radians(elevation)
    x = xyz[:, 0] * np.cos(turn) - xyz[:, 1] * np.sin(turn)
    y = xyz[:, 0] * np.sin(turn) + xyz[:, 1] * np.cos(turn)
    screen = np.stack([x, y * np.sin(tilt) + xyz[:, 2] * np.cos(tilt)], axis=1)
    return screen, xyz[:, 2] * np.sin(tilt) - y * np.cos(tilt)


def render_view(
    path_png: str | os.PathLike,
    xyz: np.ndarray,
    panels: list[tuple[str, np.ndarray]],
    label_set: LabelSet | None,
    max_points: int = PREVIEW_POINTS,
    elevation: float = 90.0,
    azimuth: float = 0.0,
) -> None:
    """PNG of the points (at most ``max_points`` of them) seen from above, straight down or
    from ``elevation`` degrees (see ``_project``), one panel per ``(title, values)``: values are
    (N,) class indices of ``label_set``, coloured by class and listed in the legend, or (N, 3)
    uint8 colours drawn as they are."""
    keep = np.arange(len(xyz))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(keep), max_points, replace=False))
    screen, depth = _project(np.asarray(xyz[keep], dtype=np.float64), elevation, azimuth)
    # Painter's order: farthest points first, so the view shows the surfaces nearest to it.
    order = np.argsort(depth, kind="stable")
    keep, screen = keep[order], screen[order]
    extent = np.ptp(screen, axis=0) if len(keep) else np.ones(2)
    panel_height = float(np.clip(5.0 * extent[1] / max(extent[0], 1e-6), 2.0, 8.0))
    fig = Figure(figsize=(5 * len(panels), panel_height + 0.8), layout="constrained")
    size = min(20.0, 1e5 / max(len(keep), 1))
    for i, (title, values) in enumerate(panels):
        rgb = values[keep] if values.ndim == 2 else colorize(values[keep], label_set)
        ax = fig.add_subplot(1, len(panels), i + 1)
        # Square dots without anti-aliasing: solid surfaces, and PNGs a third of the size.
        ax.scatter(screen[:, 0], screen[:, 1], c=rgb / 255.0, s=size, marker="s", linewidths=0,
                   antialiased=False)  # fmt: skip
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.axis("off")
    label_panels = [values for _, values in panels if values.ndim == 1]
    if label_panels:
        labels = np.concatenate(label_panels).astype(np.int64)
        counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=label_set.num_classes)
        frequent = [k for k in np.argsort(-counts, kind="stable")[:LEGEND_CLASSES] if counts[k]]
        palette = class_palette(label_set) / 255.0
        handles = [Patch(color=palette[k], label=label_set.names[k]) for k in frequent]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, max(1, len(handles))))
    _save_figure(fig, path_png, dpi=90)


def plot_per_class_iou(
    path_png: str | os.PathLike,
    iou_per_class: np.ndarray,
    label_set: LabelSet,
    train_counts: np.ndarray,
) -> None:
    """Bars of IoU (fractions, as ``metrics.iou_per_class`` returns) by descending train frequency.

    Bars are coloured by head / common / tail when the label set has groups, and the legend gives
    each group's mean IoU; NaN classes get no bar, only a grey cross on the axis. The training
    point counts are drawn on a log axis. The one per-class IoU figure of evaluation and analysis.
    """
    iou = np.asarray(iou_per_class, dtype=np.float64)
    order = np.argsort(-np.asarray(train_counts), kind="stable")
    x = np.arange(label_set.num_classes)
    groups = [label_set.group_of_class[k] for k in order]
    fig = Figure(figsize=(max(8.0, 0.09 * len(x) + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    heights = np.nan_to_num(100.0 * iou[order], nan=0.0)
    ax.bar(x, heights, width=0.8, color=[GROUP_COLORS[g] for g in groups])
    missing = np.isnan(iou[order])
    ax.scatter(x[missing], np.zeros(missing.sum()), marker="x", color="grey", s=12, zorder=3)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU (%)")
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [label_set.names[k] for k in order], rotation=90, fontsize=max(3, 9 - len(x) // 40)
    )
    counts_ax = ax.twinx()
    counts_ax.plot(x, np.maximum(np.asarray(train_counts)[order], 1), color="black", lw=0.8)
    counts_ax.set_yscale("log")
    counts_ax.set_ylabel("training points")
    all_groups = np.array(label_set.group_of_class)
    handles = []
    for g in (g for g in GROUPS if g in groups):
        values = iou[all_groups == g]
        mean = np.nanmean(values) if np.isfinite(values).any() else np.nan
        handles.append(Patch(color=GROUP_COLORS[g], label=f"{g or 'all'}: mIoU {100 * mean:.1f}"))
    handles.append(
        Line2D([], [], marker="x", color="grey", linestyle="", label="no gt, no prediction")
    )
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title(f"{label_set.name}: per-class IoU, classes by training frequency")
    _save_figure(fig, path_png, dpi=130)


def _percent_cell(value: float) -> str:
    return "" if np.isnan(value) else f"{100.0 * value:.2f}"


def write_per_class_csv(
    path: str | os.PathLike,
    label_set: LabelSet,
    iou: np.ndarray,
    acc: np.ndarray,
    train_counts: np.ndarray,
) -> None:
    """CSV in benchmark order: name, benchmark_id, group, train_point_count, iou, acc (percent)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "benchmark_id", "group", "train_point_count", "iou", "acc"])
    for k, name in enumerate(label_set.names):
        writer.writerow(
            [
                name,
                label_set.ids[k],
                label_set.group_of_class[k],
                int(train_counts[k]),
                _percent_cell(float(iou[k])),
                _percent_cell(float(acc[k])),
            ]
        )
    save_text(path, buffer.getvalue())
