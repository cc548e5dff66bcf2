"""Prepared ScanNet scenes (written by ``ceco3d-prep``) as voxel samples.

A sample is one scene:

* ``grid`` (M, 3) int32 voxel coordinates ``floor(xyz / voxel_size)``;
* ``feat`` (M, C) float32, the mean over each voxel's points of the point features: colour
  scaled to [-1, 1] (``color / 127.5 - 1``), then the unit normal, then xyz in metres relative to
  the minimum corner of the sample's (augmented, cropped) points, so the features do not depend on
  where the scan happens to sit;
* ``label`` (M,) int64 voxel label, majority vote of the voxel's points (-1 ignored);
* ``inverse`` (N,) int64 voxel of every point, so that ``grid[inverse]`` is every point's voxel;
* ``point_label`` (N,) int64 and ``num_points`` N.

Three modes, each its own parameter. By default a sample uses the voxelization stored by
``ceco3d-prep``; points are the scene's original mesh vertices in file order, so predictions can
be scored and submitted per vertex through ``inverse``. ``augment`` (a transform: training's
augmentation, or a fixed test-time view) moves the points, which are then voxelized afresh.
``crop``: above that many voxels, keep the ``crop`` voxels nearest to a random one; the points of
dropped voxels are removed from ``inverse`` / ``point_label`` (training reads voxel labels only),
so ``inverse`` is always a valid index into ``grid``. ``revoxelize`` voxelizes every sample afresh
at ``voxel_size``, which may then differ from the prepared one (otherwise a mismatch is an error).
``labelled_only`` (training) leaves out the scenes without a labelled voxel in the label set.
``paste`` (training) pastes instances of rare classes from other scenes of the split into each
sample, after the augmentation and the crop (``ceco3d.data.paste``).

Randomness comes from ``np.random.default_rng([seed, epoch, index])``: a sample depends on those
three numbers only, never on the worker that loads it or the order of loading, so a resumed run
sees exactly the samples it would have seen.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from ceco3d.data import raw_layout
from ceco3d.data.label_sets import get_label_set
from ceco3d.data.layout import (
    FORMAT_VERSION,
    MANIFEST,
    SEGMENT_KEY,
    data_identity,
    layout_problem,
    meta_problem,
    read_scene_meta,
    scene_problem,
    settings_of,
)
from ceco3d.data.paste import PasteSettings, TailInstancePaster
from ceco3d.data.transforms import Transform
from ceco3d.data.voxelize import majority_labels, voxelize
from ceco3d.errors import InputError
from ceco3d.io import read_json

log = logging.getLogger("ceco3d.data")

FEATURE_CHANNELS = {"color": 3, "color_normal": 6, "color_normal_xyz": 9}
CLASS_COUNT_KINDS = ("voxel_counts", "point_counts", "scene_counts")


class ScanNetDataset(torch.utils.data.Dataset):
    """One split of a prepared ScanNet root for one label set (``scannet20`` / ``scannet200``)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        label_set: str,
        features: str = "color",
        voxel_size: float | None = None,
        augment: Transform | None = None,
        crop: int | None = None,
        revoxelize: bool = False,
        labelled_only: bool = False,
        seed: int = 0,
        paste: PasteSettings | None = None,
    ) -> None:
        if features not in FEATURE_CHANNELS:
            raise ValueError(
                f"unknown features {features!r}; choose one of {list(FEATURE_CHANNELS)}"
            )
        if crop is not None and crop < 1:
            raise ValueError(f"crop must be positive or None, got {crop}")
        self.root = Path(root)
        self.split = split
        self.label_set = get_label_set(label_set)
        self.features = features
        self.augment = augment
        self.crop = crop
        self.revoxelize = revoxelize
        self.labelled_only = labelled_only
        self.seed = seed
        self.epoch = 0
        self.manifest = self._read_manifest()
        self.identity = data_identity(self.manifest)
        self.voxel_size = self._voxel_size(voxel_size)
        self.scenes: list[str] = self._usable_scenes()
        self._segment = SEGMENT_KEY[self.label_set.name]
        self.paster = None if paste is None else self._paster(paste)

    @property
    def num_channels(self) -> int:
        return FEATURE_CHANNELS[self.features]

    @property
    def num_classes(self) -> int:
        return self.label_set.num_classes

    def _fail(self, problem: str, prep_options: str = "") -> InputError:
        return manifest_error(self.root, problem, prep_options)

    def _read_manifest(self) -> dict:
        manifest = read_manifest(self.root)
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise self._fail(f"format_version is {version!r}, this ceco3d reads {FORMAT_VERSION}")
        splits = manifest.get("splits", {})
        if self.split not in splits:
            raise self._fail(f"no split {self.split!r} (it has {sorted(splits)})")
        label_sets = manifest.get("label_sets", {})
        name = self.label_set.name
        if name not in label_sets:
            raise self._fail(f"no label set {name!r} (it has {sorted(label_sets)})")
        if tuple(label_sets[name].get("ids", ())) != self.label_set.ids:
            raise self._fail(f"label set {name!r} has ids that differ from ceco3d.data.label_sets")
        missing = [s for s in splits[self.split] if not (self.root / self.split / s).is_dir()]
        if missing:
            raise self._fail(
                f"{len(missing)} {self.split} scene folder(s) missing under "
                f"{self.root / self.split} (first: {missing[0]})"
            )
        return manifest

    def _voxel_size(self, asked: float | None) -> float:
        """``asked``, or the prepared voxel size where it is None; another size than the
        prepared one only with ``revoxelize``."""
        stored = prepared_voxel_size(self.root, self.manifest)
        if asked is None or math.isclose(asked, stored):
            return stored
        if not self.revoxelize:
            raise self._fail(
                f"scenes were voxelized at voxel_size={stored}, data.voxel_size asks for {asked} "
                f"(set data.voxel_size={stored} or null, set data.revoxelize=true to voxelize "
                f"every sample afresh, or prepare again with --voxel-size {asked})"
            )
        return float(asked)

    def _usable_scenes(self) -> list[str]:
        """The split's scenes, each checked against the manifest (settings, complete arrays);
        for training, without the scenes that have no labelled voxel in this label set."""
        settings = settings_of(self.manifest)
        problems, unlabelled, scenes = {}, [], []
        self._arrays: dict[str, dict] = {}  # scene -> meta.json's record of its arrays
        self._scene_voxel_counts: list[list[int]] = []
        for scene in self.manifest["splits"][self.split]:
            folder = self.root / self.split / scene
            meta = read_scene_meta(folder)
            problem = meta_problem(folder, meta, settings)
            if problem is not None:
                problems[scene] = problem
            elif self.labelled_only and not sum(_voxel_counts(meta, self.label_set.name)):
                unlabelled.append(scene)
            else:
                scenes.append(scene)
                self._arrays[scene] = meta["arrays"]
                self._scene_voxel_counts.append(_voxel_counts(meta, self.label_set.name))
        if problems:
            listed = "; ".join(f"{s}: {p}" for s, p in list(problems.items())[:5])
            more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
            options = f" --voxel-size {settings['voxel_size']}" + " --align" * bool(
                settings["align"]
            )
            raise self._fail(
                f"{len(problems)} {self.split} scenes do not match it ({listed}{more}), so the "
                "folder mixes preparations",
                options,
            )
        if unlabelled:
            log.warning("%s: %d %s scenes have no labelled voxel in %s and are skipped: %s",
                        self.root, len(unlabelled), self.split, self.label_set.name,
                        " ".join(unlabelled))  # fmt: skip
        if self.labelled_only and not scenes:
            raise self._fail(f"no {self.split} scene has a labelled voxel in {self.label_set.name}")
        return scenes

    def check_unchanged(self) -> None:
        """Fail (InputError) where the folder no longer holds the preparation this dataset was
        built on: another manifest, or a scene replaced by another preparation (a
        ``ceco3d-prep --force`` at other settings running meanwhile)."""
        identity = data_identity(read_manifest(self.root))
        settings = settings_of(self.manifest)
        changed = next((f"{s}: {p}" for s in self.scenes if (p := scene_problem(
            self.root / self.split / s, settings))), None)  # fmt: skip
        if identity != self.identity or changed:
            what = changed or f"manifest rewritten: identity {identity}, was {self.identity}"
            raise InputError(
                f"{self.root}: the prepared data changed while this command used it ({what}); "
                "its results would mix preparations. Keep one preparation per folder while "
                "runs use it (prepare other settings into a new folder)"
            )

    def _paster(self, settings: PasteSettings) -> TailInstancePaster:
        if not self.label_set.groups or settings.group not in self.label_set.groups:
            raise ValueError(
                f"paste.group={settings.group!r}: label set {self.label_set.name} has groups "
                f"{sorted(self.label_set.groups or ())}; choose one of them or paste=none"
            )
        return TailInstancePaster(
            lambda scene, name: self.load_array(self.scenes[scene], name), len(self.scenes),
            self._segment, self.label_set.group_mask(settings.group), settings,
        )  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def train_class_counts(self, kind: str = "voxel_counts") -> np.ndarray:
        """Per-class counts over the TRAIN split (whatever split this dataset reads): voxels,
        points, or scenes containing the class. Losses and priors are built from these."""
        if kind not in CLASS_COUNT_KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose one of {CLASS_COUNT_KINDS}")
        try:
            counts = self.manifest["stats"]["train"][self.label_set.name][kind]
        except KeyError:
            raise self._fail(f"no stats.train.{self.label_set.name}.{kind}") from None
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (self.num_classes,):
            raise self._fail(
                f"stats.train.{self.label_set.name}.{kind} has shape {counts.shape}, "
                f"expected ({self.num_classes},)"
            )
        return counts

    def scene_class_presence(self) -> np.ndarray:
        """(S, K) bool: which classes each of the dataset's S scenes contains (a voxel)."""
        presence = np.zeros((len(self.scenes), self.num_classes), dtype=bool)
        for row, scene, counts in zip(presence, self.scenes, self._scene_voxel_counts,
                                      strict=True):  # fmt: skip
            if len(counts) != self.num_classes:
                raise self._fail(f"{self.split}/{scene}: its meta has {len(counts)} class "
                                 f"counts, expected {self.num_classes}")  # fmt: skip
            row[:] = np.asarray(counts) > 0
        return presence

    @property
    def num_train_scenes(self) -> int:
        """Number of TRAIN scenes (the denominator of ``train_class_counts("scene_counts")``);
        ``len(dataset)`` is this split's."""
        return len(self.manifest["splits"].get("train", ()))

    def __len__(self) -> int:
        return len(self.scenes)

    def load_array(self, scene: str, name: str) -> np.ndarray:
        """One prepared array of ``scene`` (``coord``, ``voxel_inverse``, ...), checked against
        the shape and dtype its meta.json records."""
        path = self.root / self.split / scene / f"{name}.npy"
        try:
            array = np.load(path)
        except FileNotFoundError:
            raise self._fail(f"scene file {path} is missing") from None
        except (ValueError, EOFError, OSError) as e:  # truncated or overwritten since the check
            raise self._fail(f"scene file {path} is unreadable ({e})") from None
        problem = layout_problem(str(path), array.shape, array.dtype.str, self._arrays[scene][name])
        if problem is not None:  # replaced since the check
            raise self._fail(problem)
        return array

    def __getitem__(self, index: int) -> dict:
        scene = self.scenes[index]
        points = {"coord": self.load_array(scene, "coord").astype(np.float32)}
        points["color"] = self.load_array(scene, "color").astype(np.float32)
        if self.features != "color":
            points["normal"] = self.load_array(scene, "normal").astype(np.float32)
        point_label = self.load_array(scene, self._segment).astype(np.int64)
        if self.augment is not None or self.crop is not None or self.revoxelize or self.paster:
            return self._fresh_sample(scene, index, points, point_label)
        grid = self.load_array(scene, "voxel_coord").astype(np.int32)
        inverse = self.load_array(scene, "voxel_inverse").astype(np.int64)
        label = self.load_array(scene, f"voxel_{self._segment}").astype(np.int64)
        return self._sample(scene, grid, inverse, label, points, point_label)

    def _fresh_sample(self, scene: str, index: int, points: dict, point_label: np.ndarray) -> dict:
        """Augmented (where asked), voxelized at ``voxel_size``, cropped (where asked)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment is not None:
            # The labels ride along, so that a transform that drops points drops their labels.
            points = self.augment(dict(points, label=point_label), rng)
            point_label = points.pop("label")
        voxels = voxelize(points["coord"], self.voxel_size)
        label = majority_labels(voxels.inverse, point_label, voxels.num_voxels).astype(np.int64)
        grid, inverse = voxels.grid, voxels.inverse
        pasted = [] if self.paster is None else [
            self.paster.points_of(instance, points.keys())
            for instance in self.paster.draw(index, rng)
        ]  # fmt: skip
        crop = self.crop
        if crop is not None and pasted:  # room for the pasted voxels within the budget
            crop -= sum(TailInstancePaster.voxel_count(p, self.voxel_size) for p in pasted)
            crop = max(crop, 1)
        if crop is not None and voxels.num_voxels > crop:
            keep = _nearest_voxels(grid, crop, rng)
            new_index = np.full(len(grid), -1, dtype=np.int64)
            new_index[keep] = np.arange(len(keep))
            inverse = new_index[inverse]
            kept_points = inverse >= 0
            points = {key: value[kept_points] for key, value in points.items()}
            grid, label = grid[keep], label[keep]
            inverse, point_label = inverse[kept_points], point_label[kept_points]
        if pasted:
            points, _ = self.paster.place(
                dict(points, label=point_label), grid, pasted, self.voxel_size, rng
            )
            point_label = points.pop("label")
            voxels = voxelize(points["coord"], self.voxel_size)
            label = majority_labels(voxels.inverse, point_label, voxels.num_voxels)
            grid, inverse, label = voxels.grid, voxels.inverse, label.astype(np.int64)
        return self._sample(scene, grid, inverse, label, points, point_label)

    def _sample(
        self,
        scene: str,
        grid: np.ndarray,
        inverse: np.ndarray,
        label: np.ndarray,
        points: dict,
        point_label: np.ndarray,
    ) -> dict:
        return {
            "scene": scene,
            "grid": grid,
            "feat": voxel_mean(point_features(points, self.features), inverse, len(grid)),
            "label": label,
            "inverse": inverse,
            "point_label": point_label,
            "num_points": len(inverse),
        }


def manifest_error(root: Path, problem: str, prep_options: str = "") -> InputError:
    """``problem`` with ROOT/manifest.json, and the command that prepares ``root``."""
    path = Path(root) / MANIFEST
    if raw_layout.looks_like_raw(root):
        return InputError(
            f"{path}: {problem}; {root} looks like raw ScanNet (it has scans/): prepare it into "
            f"a folder of its own with `ceco3d-prep {root} PREPARED` and set data.root=PREPARED"
        )
    return InputError(
        f"{path}: {problem}; run `ceco3d-prep RAW_SCANNET {root}{prep_options}` (RAW_SCANNET: "
        "the raw ScanNet v2 folder) to prepare the data"
    )


def read_manifest(root: str | os.PathLike) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise manifest_error(Path(root), "not found")
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise manifest_error(Path(root), "is not a JSON object")
    return manifest


def prepared_voxel_size(root: str | os.PathLike, manifest: dict | None = None) -> float:
    """The voxel size (metres) that ``root`` was prepared with, from its manifest."""
    manifest = read_manifest(root) if manifest is None else manifest
    size = manifest.get("voxel_size")
    if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
        raise manifest_error(Path(root), f"voxel_size is {size!r}, not metres > 0")
    return float(size)


def point_features(points: dict, features: str) -> np.ndarray:
    """(N, C) float32 model input of every point (see the module docstring); ``points`` holds
    ``color`` (N, 3) 0..255, and ``normal`` (N, 3) and ``coord`` (N, 3) where ``features``
    uses them."""
    parts = [points["color"] / np.float32(127.5) - 1]
    if features != "color":
        parts.append(points["normal"])
    if features == "color_normal_xyz":
        parts.append(points["coord"] - points["coord"].min(0))
    return np.concatenate(parts, axis=1, dtype=np.float32)


def _voxel_counts(meta: dict, label_set: str) -> list[int]:
    return meta.get("class_counts", {}).get(label_set, {}).get("voxel_counts", [])


def voxel_mean(values: np.ndarray, inverse: np.ndarray, num_voxels: int) -> np.ndarray:
    """(N, C) point values -> (M, C) mean over the points of each voxel."""
    counts = np.maximum(np.bincount(inverse, minlength=num_voxels), 1)
    sums = [np.bincount(inverse, weights=column, minlength=num_voxels) for column in values.T]
    return (np.stack(sums, axis=1) / counts[:, None]).astype(np.float32)


def _nearest_voxels(grid: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of the ``count`` voxels nearest to a voxel drawn from ``rng``."""
    center = grid[rng.integers(len(grid))].astype(np.int64)
    distance = ((grid.astype(np.int64) - center) ** 2).sum(1)
    return np.sort(np.argpartition(distance, count - 1)[:count])
