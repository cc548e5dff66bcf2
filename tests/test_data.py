"""Transforms, dataset, collate and loader on tiny synthetic prepared scenes built here."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ceco3d.data import layout
from ceco3d.data import transforms as T
from ceco3d.data.collate import collate
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.label_sets import SCANNET20, SCANNET200
from ceco3d.data.layout import FORMAT_VERSION
from ceco3d.data.sampler import StepBatchSampler, build_train_loader
from ceco3d.data.voxelize import majority_labels, voxelize
from ceco3d.errors import InputError
from ceco3d.io import read_json, save_json
from ceco3d.paths import CONF_DIR

VOXEL = 0.02


# ----------------------------------------------------------------------------- fixture builders
def _plane(rng, n, origin, u, v, normal):
    s, t = rng.random((2, n, 1))
    coord = np.asarray(origin) + s * np.asarray(u) + t * np.asarray(v)
    return coord, np.broadcast_to(np.asarray(normal, dtype=float), (n, 3))


def synthetic_scene(rng: np.random.Generator, num_points: int, size=(2.0, 1.5, 1.0)) -> dict:
    """A room corner: floor, two walls and a box top, with ScanNet-like arrays (some ignored)."""
    w, d, h = size
    n = num_points // 5
    box = (0.5, 0.5, 0.4), (0.3, 0, 0), (0, 0.3, 0), (0, 0, 1)
    parts = [  # (coord, normal), scannet20 class, scannet200 class
        (_plane(rng, 2 * n, (0, 0, 0), (w, 0, 0), (0, d, 0), (0, 0, 1)), 1, 2),  # floor
        (_plane(rng, n, (0, 0, 0), (w, 0, 0), (0, 0, h), (0, 1, 0)), 0, 0),  # wall
        (_plane(rng, n, (0, 0, 0), (0, d, 0), (0, 0, h), (1, 0, 0)), 0, 0),  # wall
        (_plane(rng, num_points - 4 * n, *box), 6, 3),  # table top
    ]
    scene = {
        "coord": np.concatenate([c for (c, _), _, _ in parts]).astype(np.float32) + 3.0,
        "color": rng.integers(0, 256, (num_points, 3), dtype=np.uint8),
        "normal": np.concatenate([nrm for (_, nrm), _, _ in parts]).astype(np.float32),
        "segment20": np.concatenate([np.full(len(c), k) for (c, _), k, _ in parts]),
        "segment200": np.concatenate([np.full(len(c), k) for (c, _), _, k in parts]),
    }
    ignored = rng.random(num_points) < 0.05
    for key in ("segment20", "segment200"):
        scene[key] = np.where(ignored, -1, scene[key]).astype(np.int16)
    return scene


SETTINGS = {"format_version": FORMAT_VERSION, "voxel_size": VOXEL, "align": False,
            "label_table_sha256": "hand-built"}  # fmt: skip


def write_scene(folder: Path, scene: dict, voxel_size: float = VOXEL) -> None:
    """Write one scene the way ``ceco3d-prep`` does (same voxelize / majority_labels)."""
    folder.mkdir(parents=True)
    voxels = voxelize(scene["coord"], voxel_size)
    arrays = dict(scene, instance=np.zeros(len(scene["coord"]), np.int32))
    arrays["voxel_coord"] = voxels.grid.astype(np.int32)
    arrays["voxel_inverse"] = voxels.inverse.astype(np.int32)
    for key in ("segment20", "segment200"):
        arrays[f"voxel_{key}"] = majority_labels(voxels.inverse, scene[key], voxels.num_voxels)
    class_counts = {
        name: {"voxel_counts": np.bincount(v[v >= 0], minlength=ls.num_classes).tolist()}
        for name, ls, v in (("scannet20", SCANNET20, arrays["voxel_segment20"]),
                            ("scannet200", SCANNET200, arrays["voxel_segment200"]))
    }  # fmt: skip
    meta = {**SETTINGS, "num_vertices": len(scene["coord"]), "class_counts": class_counts}
    layout.write_scene(folder, arrays, meta)


def write_root(root: Path, splits: dict[str, dict[str, dict]], **overrides) -> Path:
    """Write scenes ``{split: {name: scene}}`` and a manifest; ``overrides`` patch the manifest."""
    stats = {}
    for split, scenes in splits.items():
        for name, scene in scenes.items():
            write_scene(root / split / name, scene)
        stats[split] = {}
        for label_set, key in ((SCANNET20, "segment20"), (SCANNET200, "segment200")):
            k = label_set.num_classes
            labels = [s[key][s[key] >= 0] for s in scenes.values()]
            voxel_labels = [np.load(root / split / n / f"voxel_{key}.npy") for n in scenes]
            stats[split][label_set.name] = {
                "point_counts": np.bincount(np.concatenate(labels), minlength=k).tolist(),
                "voxel_counts": sum(np.bincount(v[v >= 0], minlength=k) for v in voxel_labels)
                .astype(int)
                .tolist(),
                "scene_counts": sum((np.bincount(x, minlength=k) > 0).astype(int) for x in labels)
                .astype(int)
                .tolist(),
            }
    manifest = {
        **SETTINGS,
        "label_sets": {
            "scannet20": {"ids": list(SCANNET20.ids), "names": list(SCANNET20.names)},
            "scannet200": {"ids": list(SCANNET200.ids), "names": list(SCANNET200.names)},
        },
        "splits": {split: sorted(scenes) for split, scenes in splits.items()},
        "stats": stats,
    }
    manifest.update(overrides)
    save_json(root / "manifest.json", manifest)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    train = {f"scene{i:04d}_00": synthetic_scene(rng, 4000) for i in range(5)}
    val = {"scene0100_00": synthetic_scene(rng, 3000)}
    return write_root(tmp_path_factory.mktemp("prepared"), {"train": train, "val": val})


def default_aug() -> T.Compose:
    return instantiate(OmegaConf.load(CONF_DIR / "aug" / "default.yaml"))


def augmented_train_set(root: Path, **kwargs) -> ScanNetDataset:
    """The training set with colour+normal features and the default augmentation."""
    return ScanNetDataset(
        root,
        "train",
        "scannet20",
        "color_normal",
        augment=default_aug(),
        labelled_only=True,
        **kwargs,
    )


# ----------------------------------------------------------------------------- transforms
def point_sample(n: int = 500, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((n, 3)).astype(np.float32)
    return {
        "coord": (rng.random((n, 3)) * [4, 3, 2] + 1).astype(np.float32),
        "color": rng.uniform(20, 230, (n, 3)).astype(np.float32),
        "normal": normal / np.linalg.norm(normal, axis=1, keepdims=True),
        "other": np.arange(n),
    }


ALL_TRANSFORMS = [
    T.RandomRotateZ(),
    T.RandomTilt(),
    T.RandomFlip(p=0.5),
    T.RandomScale(),
    T.ElasticDistortion(p=1.0),
    T.ChromaticAutoContrast(p=1.0),
    T.ChromaticTranslation(p=1.0),
    T.ChromaticJitter(p=1.0),
]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transform_is_deterministic_and_leaves_input_alone(transform):
    sample = point_sample()
    before = {k: v.copy() for k, v in sample.items()}
    first = transform(sample, np.random.default_rng(7))
    second = transform(sample, np.random.default_rng(7))
    for key in sample:
        np.testing.assert_array_equal(first[key], second[key])
        np.testing.assert_array_equal(sample[key], before[key])
        assert first[key].shape == before[key].shape and first[key].dtype == before[key].dtype
    np.testing.assert_array_equal(first["other"], before["other"])
    changed = [
        not np.array_equal(transform(sample, np.random.default_rng(s))[key], before[key])
        for s in range(4)
        for key in ("coord", "color")
    ]
    assert any(changed)


def test_rotate_z_keeps_shape_and_rotates_normals_with_points():
    sample = point_sample()
    # Normals chosen as directions between points, so they must follow the same rotation.
    direction = sample["coord"] - sample["coord"][0]
    length = np.linalg.norm(direction, axis=1)
    direction[0] = [1, 0, 0]
    sample["normal"] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    out = T.RandomRotateZ()(sample, np.random.default_rng(3))
    np.testing.assert_allclose(out["coord"][:, 2], sample["coord"][:, 2], atol=1e-5)
    moved = out["coord"] - out["coord"][0]
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), length, atol=1e-4)
    np.testing.assert_allclose(
        out["normal"][1:], moved[1:] / np.linalg.norm(moved[1:], axis=1, keepdims=True), atol=1e-4
    )
    np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=1), 1, atol=1e-5)
    assert not np.allclose(out["coord"], sample["coord"], atol=1e-2)


def test_tilt_is_small():
    sample = point_sample()
    sample["normal"] = np.tile(np.float32([0, 0, 1]), (len(sample["coord"]), 1))
    max_angle = np.pi / 64
    for seed in range(10):
        out = T.RandomTilt(max_angle)(sample, np.random.default_rng(seed))
        angle = np.arccos(np.clip(out["normal"][0, 2], -1, 1))
        assert 0 < angle <= np.sqrt(2) * max_angle + 1e-6
        np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=1), 1, atol=1e-5)


def test_flip_forced_mirrors_and_twice_is_identity():
    sample = point_sample()
    flip = T.RandomFlip(p=1.0)
    once = flip(sample, np.random.default_rng(0))
    sums = once["coord"][:, :2] + sample["coord"][:, :2]  # mirror about a fixed centre
    np.testing.assert_allclose(sums, np.broadcast_to(sums[0], sums.shape), atol=1e-5)
    np.testing.assert_array_equal(once["coord"][:, 2], sample["coord"][:, 2])
    np.testing.assert_array_equal(once["normal"], sample["normal"] * [-1, -1, 1])
    twice = flip(once, np.random.default_rng(1))
    np.testing.assert_allclose(twice["coord"], sample["coord"], atol=1e-5)
    np.testing.assert_array_equal(twice["normal"], sample["normal"])
    assert T.RandomFlip(p=0.0)(sample, np.random.default_rng(0)) is sample


def test_scale_in_range():
    sample = point_sample()
    d0 = np.linalg.norm(sample["coord"][1:] - sample["coord"][0], axis=1)
    factors = []
    for seed in range(20):
        out = T.RandomScale(0.9, 1.1)(sample, np.random.default_rng(seed))
        ratio = np.linalg.norm(out["coord"][1:] - out["coord"][0], axis=1) / d0
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # isotropic
        factors.append(ratio[0])
    assert 0.9 - 1e-5 <= min(factors) < max(factors) <= 1.1 + 1e-5


def test_elastic_distortion_is_smooth_and_bounded():
    sample = point_sample(2000)
    neighbour = sample["coord"] + np.float32([0.005, 0, 0])
    sample["coord"] = np.concatenate([sample["coord"], neighbour])
    out = T.ElasticDistortion(p=1.0)(sample, np.random.default_rng(0))
    shift = out["coord"] - sample["coord"]
    size = np.linalg.norm(shift, axis=1)
    assert 0.01 < size.mean() and size.max() < 2.0
    # Points 5 mm apart move almost together: the noise is smooth at the voxel scale.
    gap = np.linalg.norm(shift[:2000] - shift[2000:], axis=1)
    assert gap.max() < 0.1 * size.max()
    assert T.ElasticDistortion(p=0.0)(sample, np.random.default_rng(0)) is sample


def test_chromatic_transforms_keep_range():
    sample = point_sample()
    sample["color"][:5] = [[0, 0, 0], [255, 255, 255], [0, 255, 3], [250, 1, 128], [5, 5, 5]]
    for seed in range(5):
        for transform in ALL_TRANSFORMS[5:]:
            out = transform(sample, np.random.default_rng(seed))
            assert out["color"].dtype == np.float32
            assert out["color"].min() >= 0 and out["color"].max() <= 255
    stretched = T.ChromaticAutoContrast(p=1.0, blend_factor=1.0)(
        dict(sample, color=sample["color"][5:]), np.random.default_rng(0)
    )
    np.testing.assert_allclose(stretched["color"].min(0), 0, atol=1e-3)
    np.testing.assert_allclose(stretched["color"].max(0), 255, atol=1e-3)
    shifted = T.ChromaticTranslation(p=1.0, ratio=0.05)(
        dict(sample, color=sample["color"][5:]), np.random.default_rng(0)
    )
    delta = shifted["color"] - sample["color"][5:]
    np.testing.assert_allclose(delta, np.broadcast_to(delta[0], delta.shape), atol=1e-3)
    assert 0 < np.abs(delta[0]).max() <= 0.05 * 255
    jittered = T.ChromaticJitter(p=1.0, std=0.05)(sample, np.random.default_rng(0))
    assert 0.8 * 0.05 * 255 < (jittered["color"] - sample["color"])[5:].std() < 1.2 * 0.05 * 255


def test_compose_and_configs():
    aug = default_aug()
    assert [type(t) for t in aug.transforms] == [type(t) for t in ALL_TRANSFORMS]
    assert aug.transforms[4].params == ((0.2, 0.4), (0.8, 1.6))
    assert aug.transforms[1].max_angle == pytest.approx(np.pi / 64)
    sample = point_sample()
    a, b = aug(sample, np.random.default_rng(5)), aug(sample, np.random.default_rng(5))
    for key in sample:
        np.testing.assert_array_equal(a[key], b[key])
    none = instantiate(OmegaConf.load(CONF_DIR / "aug" / "none.yaml"))
    assert none.transforms == () and none(sample, np.random.default_rng(0)) is sample


# ----------------------------------------------------------------------------- dataset
def test_eval_sample_reproduces_vertex_labels_through_inverse(root):
    dataset = ScanNetDataset(root, "val", "scannet20", features="color_normal_xyz")
    assert len(dataset) == 1 and dataset.num_channels == 9
    sample = dataset[0]
    folder = root / "val" / "scene0100_00"
    coord = np.load(folder / "coord.npy")
    point_label = np.load(folder / "segment20.npy")
    grid, inverse, label = sample["grid"], sample["inverse"], sample["label"]
    assert grid.dtype == np.int32 and inverse.dtype == np.int64 and label.dtype == np.int64
    assert sample["num_points"] == len(coord) == len(inverse)
    np.testing.assert_array_equal(
        grid[inverse], np.floor(coord.astype(np.float64) / VOXEL).astype(np.int32)
    )
    np.testing.assert_array_equal(sample["point_label"], point_label)
    assert len(np.unique(grid, axis=0)) == len(grid)
    # Each voxel label is the majority of its points' labels (checked by brute force).
    for voxel in range(len(grid)):
        votes = Counter(point_label[(inverse == voxel) & (point_label >= 0)].tolist())
        expected = min(votes, key=lambda k: (-votes[k], k)) if votes else -1
        assert label[voxel] == expected
    labelled = point_label >= 0
    assert (label[inverse] == point_label)[labelled].mean() > 0.95
    # Features: voxel means of colour in [-1, 1], normal, xyz from the scene's minimum corner.
    color = np.load(folder / "color.npy") / 127.5 - 1
    first = inverse == inverse[0]
    np.testing.assert_allclose(sample["feat"][inverse[0], :3], color[first].mean(0), atol=1e-5)
    assert sample["feat"].shape == (len(grid), 9) and sample["feat"].dtype == np.float32
    xyz = sample["feat"][:, 6:]
    assert xyz.min() >= 0 and xyz.max() <= (coord.max(0) - coord.min(0)).max() + 1e-5
    assert ScanNetDataset(root, "val", "scannet200")[0]["feat"].shape == (len(grid), 3)


def test_training_without_transform_matches_stored_voxels(root):
    stored = ScanNetDataset(root, "train", "scannet200", features="color_normal")[2]
    fresh = ScanNetDataset(root, "train", "scannet200", features="color_normal", revoxelize=True)[2]
    for key in ("grid", "inverse", "label", "point_label"):
        np.testing.assert_array_equal(fresh[key], stored[key])
    np.testing.assert_allclose(fresh["feat"], stored["feat"], atol=1e-6)


def test_training_sample_depends_on_seed_epoch_index_only(root):
    a, b = augmented_train_set(root), augmented_train_set(root)
    b[3]  # loading order does not matter
    first, again = a[1], b[1]
    for key in ("grid", "feat", "label", "inverse", "point_label"):
        np.testing.assert_array_equal(first[key], again[key])
    a.set_epoch(1)
    later = a[1]
    assert later["grid"].shape != first["grid"].shape or not np.array_equal(
        later["grid"], first["grid"]
    )
    assert not np.array_equal(augmented_train_set(root, seed=1)[1]["feat"][:50], first["feat"][:50])
    # Labels follow the augmented voxelization.
    np.testing.assert_array_equal(
        later["label"], majority_labels(later["inverse"], later["point_label"], len(later["grid"]))
    )
    assert np.array_equal(np.unique(later["inverse"]), np.arange(len(later["grid"])))


def test_max_voxels_crop(root):
    full = ScanNetDataset(root, "train", "scannet20")[0]
    dataset = ScanNetDataset(root, "train", "scannet20", crop=500)
    sample = dataset[0]
    grid, inverse = sample["grid"], sample["inverse"]
    assert len(full["grid"]) > 500 and len(grid) == 500 and len(sample["feat"]) == 500
    assert len(sample["label"]) == 500
    assert sample["num_points"] == len(inverse) == len(sample["point_label"]) < full["num_points"]
    assert np.array_equal(np.unique(inverse), np.arange(500))  # every kept voxel keeps its points
    kept = {tuple(row) for row in grid.tolist()}
    assert kept <= {tuple(row) for row in full["grid"].tolist()}
    # The crop is a ball around one voxel: far smaller than the scene.
    assert np.ptp(grid, 0).max() < np.ptp(full["grid"], 0).max()
    np.testing.assert_array_equal(
        sample["label"], majority_labels(inverse, sample["point_label"], 500)
    )


def test_train_class_counts_and_num_train_scenes(root):
    """Read from a val dataset, the statistics are the train split's, and say so by name."""
    dataset = ScanNetDataset(root, "val", "scannet200")
    train = ScanNetDataset(root, "train", "scannet200")
    points = dataset.train_class_counts("point_counts")
    assert points.shape == (200,) and points.dtype == np.int64
    assert points[[0, 2, 3]].min() > 0 and points.sum() == points[[0, 2, 3]].sum()
    assert dataset.train_class_counts("scene_counts")[[0, 2, 3]].tolist() == [5, 5, 5]
    assert dataset.train_class_counts().sum() < points.sum()  # voxel counts by default
    assert dataset.num_train_scenes == len(train) == 5 and dataset.num_classes == 200
    assert len(dataset) != dataset.num_train_scenes  # this split's size is len(), not the stat
    assert not hasattr(dataset, "class_counts") and not hasattr(dataset, "num_scenes")
    with pytest.raises(ValueError, match="kind"):
        dataset.train_class_counts("pixels")


@pytest.mark.parametrize(
    ("patch", "split", "match"),
    [
        ({"format_version": 1}, "train", "format_version"),
        ({"splits": {"val": []}}, "train", "no split 'train'"),
        ({"label_sets": {"scannet200": {"ids": list(SCANNET200.ids)}}}, "train", "scannet20"),
        ({"label_sets": {"scannet20": {"ids": [1, 2]}}}, "train", "differ"),
        ({"voxel_size": 0.05}, "train", "do not match it.*--voxel-size 0.05"),
        ({"splits": {"train": ["scene0999_00"]}}, "train", "scene0999_00"),
    ],
)
def test_manifest_problems_name_the_file_and_the_command(root, tmp_path, patch, split, match):
    manifest = read_json(root / "manifest.json")
    manifest.update(patch)
    (tmp_path / "train").symlink_to(root / "train")
    save_json(tmp_path / "manifest.json", manifest)
    with pytest.raises(InputError, match=match) as error:
        ScanNetDataset(tmp_path, split, "scannet20")
    assert str(tmp_path / "manifest.json") in str(error.value)
    assert f"ceco3d-prep RAW_SCANNET {tmp_path}" in str(error.value)


def test_missing_manifest_and_the_voxel_size(root, tmp_path):
    with pytest.raises(InputError, match=r"manifest\.json: not found.*ceco3d-prep"):
        ScanNetDataset(tmp_path, "train", "scannet20")
    # The prepared voxel size by default; another one is an error, or asks to re-voxelize.
    prepared = ScanNetDataset(root, "train", "scannet20")
    assert prepared.voxel_size == read_json(root / "manifest.json")["voxel_size"]
    with pytest.raises(InputError, match=r"asks for 0\.05.*data\.revoxelize=true"):
        ScanNetDataset(root, "train", "scannet20", voxel_size=0.05, labelled_only=True)
    coarse = ScanNetDataset(root, "train", "scannet20", voxel_size=0.05, revoxelize=True)[0]
    assert len(coarse["grid"]) < len(prepared[0]["grid"])
    with pytest.raises(ValueError, match="features"):
        ScanNetDataset(root, "train", "scannet20", features="rgb")


# ----------------------------------------------------------------------------- collate, loader
def test_collate_shapes_offsets_and_batch_column():
    rng = np.random.default_rng(0)
    samples = [
        {
            "scene": f"s{m}",
            "grid": rng.integers(-5, 5, (m, 3)).astype(np.int32),
            "feat": rng.random((m, 6), dtype=np.float32),
            "label": rng.integers(-1, 3, m),
            "inverse": rng.integers(0, m, 2 * m),
            "point_label": rng.integers(-1, 3, 2 * m),
            "num_points": 2 * m,
        }
        for m in (4, 7, 2)
    ]
    batch = collate(samples)
    assert batch["coords"].shape == (13, 4) and batch["coords"].dtype == torch.int32
    assert batch["offsets"].tolist() == [0, 4, 11, 13]
    assert batch["coords"][:, 0].tolist() == [0] * 4 + [1] * 7 + [2] * 2
    assert batch["feats"].shape == (13, 6) and batch["feats"].dtype == torch.float32
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (13,)
    for b, sample in enumerate(samples):
        rows = slice(batch["offsets"][b], batch["offsets"][b + 1])
        np.testing.assert_array_equal(batch["coords"][rows, 1:].numpy(), sample["grid"])
        np.testing.assert_array_equal(batch["labels"][rows].numpy(), sample["label"])
        np.testing.assert_array_equal(batch["inverse"][b].numpy(), sample["inverse"])
        assert batch["point_label"][b].dtype == torch.int64
    assert batch["scene"] == ["s4", "s7", "s2"]


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for x, y in zip(first, second, strict=True):
        assert x["scene"] == y["scene"]
        for key in ("coords", "feats", "labels", "offsets"):
            assert torch.equal(x[key], y[key]), key
        for key in ("inverse", "point_label"):
            assert all(torch.equal(a, b) for a, b in zip(x[key], y[key], strict=True))


def test_loader_batches_do_not_depend_on_workers(root):
    def batches(num_workers, start_step=0):
        dataset = augmented_train_set(root, crop=800, seed=4)
        loader = build_train_loader(dataset, 2, max_steps=4, seed=4, num_workers=num_workers,
                                    start_step=start_step)  # fmt: skip
        return list(loader)

    serial, parallel = batches(0), batches(2)
    _assert_same_batches(serial, parallel)
    _assert_same_batches(serial[3:], batches(2, start_step=3))  # a resumed loader
    steps_per_epoch = len(augmented_train_set(root).scenes) // 2
    epoch0 = serial[:steps_per_epoch]
    epoch1 = serial[steps_per_epoch : 2 * steps_per_epoch]
    assert [b["scene"] for b in epoch0] != [b["scene"] for b in epoch1]
    assert len({s for b in epoch0 for s in b["scene"]}) == 2 * steps_per_epoch
    assert all(b["coords"][:, 0].max() == len(b["scene"]) - 1 for b in serial)


def test_step_sampler_ranks_split_the_global_batch():
    single = list(StepBatchSampler(7, batch_size=2, max_steps=6, seed=1))
    ranks = [list(StepBatchSampler(7, 1, 6, seed=1, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(single):
        assert [ranks[0][step][0], ranks[1][step][0]] == batch
    assert single[3:] == list(StepBatchSampler(7, 2, 6, seed=1, start_step=3))
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        StepBatchSampler(3, batch_size=2, max_steps=1, world_size=2)


# ----------------------------------------------------------------------------- throughput
def room_scene(rng: np.random.Generator, num_points: int = 150_000) -> dict:
    """A 5 m × 4 m × 2.5 m room with furniture boxes (~150k points), the scale of a ScanNet scan."""
    planes = [  # origin, u, v, normal, scannet20 class
        ((0, 0, 0), (5, 0, 0), (0, 4, 0), (0, 0, 1), 1),
        ((0, 0, 0), (5, 0, 0), (0, 0, 2.5), (0, 1, 0), 0),
        ((0, 4, 0), (5, 0, 0), (0, 0, 2.5), (0, -1, 0), 0),
        ((0, 0, 0), (0, 4, 0), (0, 0, 2.5), (1, 0, 0), 0),
        ((5, 0, 0), (0, 4, 0), (0, 0, 2.5), (-1, 0, 0), 0),
    ]
    for x, y, sx, sy, h, k in rng.uniform(
        [0.3, 0.3, 0.4, 0.4, 0.4, 2], [4, 3, 1.2, 1.2, 1, 19], (8, 6)
    ):
        k = int(k)
        planes += [
            ((x, y, h), (sx, 0, 0), (0, sy, 0), (0, 0, 1), k),
            ((x, y, 0), (sx, 0, 0), (0, 0, h), (0, -1, 0), k),
            ((x, y, 0), (0, sy, 0), (0, 0, h), (-1, 0, 0), k),
        ]
    area = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v, _, _ in planes])
    counts = np.floor(area / area.sum() * num_points).astype(int)
    counts[0] += num_points - counts.sum()
    coords, normals, labels = [], [], []
    for (origin, u, v, normal, k), n in zip(planes, counts, strict=True):
        coord, nrm = _plane(rng, n, origin, u, v, normal)
        coords.append(coord)
        normals.append(nrm)
        labels.append(np.full(n, k))
    seg20 = np.concatenate(labels).astype(np.int16)
    return {
        "coord": np.concatenate(coords).astype(np.float32),
        "color": rng.integers(0, 256, (num_points, 3), dtype=np.uint8),
        "normal": np.concatenate(normals).astype(np.float32),
        "segment20": seg20,
        "segment200": seg20,
    }


@pytest.mark.slow
def test_loader_throughput_on_scannet_sized_scenes(tmp_path):
    """Reports samples/s of load + augmentation + voxelization + collate (no timing asserts)."""
    rng = np.random.default_rng(0)
    scenes = {f"scene{i:04d}_00": room_scene(rng) for i in range(4)}
    write_root(tmp_path, {"train": scenes})
    dataset = augmented_train_set(tmp_path)
    voxels = len(ScanNetDataset(tmp_path, "train", "scannet20")[0]["grid"])
    batches = {}
    for num_workers in (0, 2):
        loader = build_train_loader(dataset, 2, max_steps=6, seed=0, num_workers=num_workers)
        start = time.perf_counter()
        batches[num_workers] = list(loader)
        rate = 6 * 2 / (time.perf_counter() - start)
        print(
            f"\nloader: 150k points, {voxels} voxels at 2 cm, default aug, batch 2, "
            f"num_workers={num_workers}: {rate:.2f} samples/s"
        )
    _assert_same_batches(batches[0], batches[2])
    assert all(len(b["scene"]) == 2 and len(b["coords"]) > 50_000 for b in batches[0])
