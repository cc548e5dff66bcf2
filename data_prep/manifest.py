"""The manifest of a prepared folder, assembled from its scenes' own meta.json files (so a
resumed run gets full totals) and never replaced by one that lost scenes to failed inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.data.layout import LABELLED_SPLITS, SPLITS
from ceco3d.errors import InputError
from ceco3d.io import read_json

NO_VERTICES = "no vertices"


def excluded_reason(meta: dict) -> str | None:
    """Why a prepared scene cannot be listed at all (a scene with no labelled vertex stays: the
    training dataset skips it for the label set concerned)."""
    return NO_VERTICES if meta["num_vertices"] == 0 else None


def build_manifest(metas: list[dict], settings: dict) -> dict:
    """The manifest of the scenes whose meta.json files are ``metas``, made with ``settings``."""
    excluded = {m["scene_id"]: excluded_reason(m) for m in metas if excluded_reason(m)}
    by_split = {
        split: sorted(
            (m for m in metas if m["split"] == split and m["scene_id"] not in excluded),
            key=lambda m: m["scene_id"],
        )
        for split in SPLITS
    }
    label_sets = {}
    for name, label_set in LABEL_SETS.items():
        label_sets[name] = {"ids": list(label_set.ids), "names": list(label_set.names)}
        if label_set.groups:
            label_sets[name]["groups"] = {g: list(n) for g, n in label_set.groups.items()}
    stats = {}
    for split in LABELLED_SPLITS:
        stats[split] = {}
        for name, label_set in LABEL_SETS.items():
            points = np.zeros(label_set.num_classes, np.int64)
            voxels = np.zeros(label_set.num_classes, np.int64)
            scenes = np.zeros(label_set.num_classes, np.int64)
            for meta in by_split[split]:
                counts = meta["class_counts"][name]
                points += counts["point_counts"]
                voxels += counts["voxel_counts"]
                scenes += np.asarray(counts["voxel_counts"]) > 0
            stats[split][name] = {
                "point_counts": points.tolist(),
                "voxel_counts": voxels.tolist(),
                "scene_counts": scenes.tolist(),
            }
    return {
        **settings,
        "label_sets": label_sets,
        "splits": {s: [m["scene_id"] for m in by_split[s]] for s in SPLITS},
        "excluded": dict(sorted(excluded.items())),
        "num_vertices": {s: sum(m["num_vertices"] for m in by_split[s]) for s in SPLITS},
        "num_voxels": {s: sum(m["num_voxels"] for m in by_split[s]) for s in SPLITS},
        "stats": stats,
    }


def scenes_dropped(path: Path, manifest: dict) -> list[str]:
    """The scenes that the manifest at ``path`` lists and ``manifest`` does not."""
    try:
        old = read_json(path)
    except InputError:
        return []
    splits = old.get("splits") if isinstance(old, dict) else None
    if not isinstance(splits, dict):
        return []
    listed = {scene for names in manifest["splits"].values() for scene in names}
    return sorted({s for names in splits.values() for s in names} - listed)
