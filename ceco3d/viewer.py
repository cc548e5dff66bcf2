"""Look at a scan and its labels (``ceco3d-view``): the input's colours, a prediction and a ground
truth as layers of one open3d window, switched by keys; without a display, one PNG per layer
instead (the scan seen from above a corner).

Labels are benchmark ids, one per input point, as ``ceco3d-predict`` writes them (``_labels.npy``,
or ``_labels.txt`` whose lines start with the id) or as ScanNet's own label files list them
(one id per line). Ids outside the label set (ScanNet's 0 for unannotated points among them) are
shown black, as unlabelled.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceco3d import viz
from ceco3d.data.label_sets import IGNORE_INDEX, LabelSet, get_label_set
from ceco3d.data.scan import Scan, open3d, read_scan
from ceco3d.errors import InputError, UsageError
from ceco3d.scan_export import GREY, VIEW, read_labels, recorded_label_set

LAYER_KEYS = {"1": "input", "2": "prediction", "3": "ground truth"}
LEGEND_LINES = 20  # classes listed per layer, most points first


@dataclass
class Layers:
    """The scan (metres, z up) and per kept point the colours of each layer, (N, 3) uint8."""

    scan: Scan
    colors: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # (N,) class indices of the label layers, -1 unlabelled


def label_set_for(pred: Path | None, name: str | None) -> LabelSet:
    """``name``, or the label set ``ceco3d-predict`` recorded beside ``pred``; both, where they
    disagree, are a usage error (the names shown would be another set's)."""
    recorded = recorded_label_set(pred) if pred is not None else None
    if name is not None:
        if recorded is not None and recorded.name != name:
            raise UsageError(
                f"--label-set {name}, but {pred} holds {recorded.name} ids (its _classes.json "
                f"says so); drop --label-set, or pass --label-set {recorded.name}"
            )
        return get_label_set(name)
    if recorded is None:
        raise InputError(
            "which label set are the ids from? pass --label-set scannet20 or scannet200 (found "
            "no ceco3d-predict _classes.json beside --pred)"
        )
    return recorded


def load_layers(
    path: Path, pred: Path | None, gt: Path | None, label_set: LabelSet | None,
    units: str = "m", up: str = "z",
) -> Layers:  # fmt: skip
    scan = read_scan(path, units, up)
    colors = {
        "input": scan.color if scan.color is not None else np.full_like(scan.xyz, GREY, np.uint8)
    }
    labels = {}
    for layer, file in (("prediction", pred), ("ground truth", gt)):
        if file is not None:
            labels[layer] = read_labels(file, scan, label_set)
            colors[layer] = viz.colorize(labels[layer], label_set)
    return Layers(scan, colors, labels)


def legend(layers: Layers, label_set: LabelSet | None) -> str:
    """Keys, and per label layer its classes (most points first) with a colour swatch."""
    lines = ["keys: " + ", ".join(f"{k} {name}" for k, name in LAYER_KEYS.items()
                                  if name in layers.colors) + ", Q quit"]  # fmt: skip
    if not layers.labels:
        return lines[0]
    palette = viz.class_palette(label_set)
    for layer, labels in layers.labels.items():
        counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=label_set.num_classes)
        lines.append(f"{layer} ({label_set.name}):")
        present = [k for k in np.argsort(-counts, kind="stable") if counts[k]]
        for k in present[:LEGEND_LINES]:
            r, g, b = palette[k]
            swatch = f"\033[48;2;{r};{g};{b}m    \033[0m " if sys.stdout.isatty() else ""
            lines.append(f"  {swatch}{label_set.ids[k]:>5} {label_set.names[k]:<24} "
                         f"{counts[k]:>10,} points")  # fmt: skip
        rest = present[LEGEND_LINES:]
        if rest:
            lines.append(f"  ... {len(rest)} more classes, {counts[rest].sum():,} points")
    return "\n".join(lines)


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def write_png_views(layers: Layers, label_set: LabelSet, out: Path) -> list[Path]:
    """One PNG per layer: ``<stem>_view_<layer>.png`` in ``out``."""
    paths = []
    for layer, colors in layers.colors.items():
        path = out / f"{layers.scan.path.stem}_view_{layer.replace(' ', '_')}.png"
        values = layers.labels.get(layer, colors)
        viz.render_view(path, layers.scan.xyz, [(layer, values)], label_set, **VIEW)
        paths.append(path)
    return paths


def show_window(layers: Layers) -> bool:
    """The interactive window; False when open3d cannot open one."""
    o3d = open3d()
    scan = layers.scan
    points = o3d.utility.Vector3dVector(scan.xyz.astype(np.float64))
    if scan.is_mesh:
        geometry = o3d.geometry.TriangleMesh(points, o3d.utility.Vector3iVector(scan.faces))
        geometry.compute_vertex_normals()
    else:
        geometry = o3d.geometry.PointCloud(points)

    def paint(layer: str) -> None:
        rgb = o3d.utility.Vector3dVector(layers.colors[layer] / 255.0)
        if scan.is_mesh:
            geometry.vertex_colors = rgb
        else:
            geometry.colors = rgb

    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(window_name=f"ceco3d-view {scan.path.name}"):
        return False
    paint("input")
    vis.add_geometry(geometry)
    for key, layer in LAYER_KEYS.items():
        if layer in layers.colors:

            def switch(vis, layer=layer):
                paint(layer)
                vis.update_geometry(geometry)
                print(f"showing {layer}", flush=True)
                return True

            vis.register_key_callback(ord(key), switch)
    vis.run()
    vis.destroy_window()
    return True
