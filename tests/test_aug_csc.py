"""The CSC / LG training augmentation (ceco3d/conf/aug/csc.yaml, lg.yaml) and the transforms it
added: RandomRotation, RandomFlip's p_apply, RandomVoxelDropout, RandomGridShift."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hydra.utils import instantiate

from ceco3d.data import transforms as T
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.voxelize import majority_labels, voxelize
from tests.fixtures import VOXEL_SIZE, compose_config, synthetic_scannet  # noqa: F401 (fixture)


def point_sample(n: int = 2000, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "coord": (rng.random((n, 3)) * [2, 1.5, 1] + 1).astype(np.float32),
        "color": rng.uniform(20, 230, (n, 3)).astype(np.float32),
        "label": np.arange(n),  # a per-point array that must follow the points
    }


def rotation(axis: int, angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` about coordinate axis ``axis``, written out."""
    c, s = np.cos(angle), np.sin(angle)
    return {
        0: np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        1: np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        2: np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def rotated_about_box_centre(coord: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    center = (coord.min(0) + coord.max(0)) / 2
    return (coord - center) @ matrix.T + center


# --- RandomRotation ----------------------------------------------------------------------------


def test_rotation_composes_the_three_axis_rotations_in_a_random_order():
    sample = point_sample(200)
    angles = (0.3, 0.5, 0.7)
    transform = T.RandomRotation(bounds=[(a, a) for a in angles])
    rotations = [rotation(axis, angle) for axis, angle in enumerate(angles)]
    candidates = [
        rotated_about_box_centre(sample["coord"], a @ b @ c)
        for a, b, c in itertools.permutations(rotations)
    ]
    orders = set()
    for seed in range(24):
        out = transform(sample, np.random.default_rng(seed))["coord"]
        matches = [i for i, c in enumerate(candidates) if np.allclose(out, c, atol=1e-5)]
        assert len(matches) == 1
        orders.add(matches[0])
    assert len(orders) >= 4  # the order is drawn, not fixed

    fixed = T.RandomRotation(bounds=[(a, a) for a in angles], random_order=False)
    out = fixed(sample, np.random.default_rng(0))["coord"]
    np.testing.assert_allclose(out, candidates[0], atol=1e-5)  # x @ y @ z
    np.testing.assert_array_equal(sample["label"], np.arange(200))


def test_rotation_angles_stay_in_their_bounds():
    sample = {"coord": np.eye(3, dtype=np.float32)}
    transform = T.RandomRotation(bounds=[(0, 0), (0, 0), (-0.2, 0.1)])
    for seed in range(50):
        out = transform(sample, np.random.default_rng(seed))["coord"]
        x_axis = out[0] - out[2] + [0, 0, 1]  # image of e_x, box centre cancelled
        angle = np.arctan2(x_axis[1], x_axis[0])
        assert -0.2 - 1e-6 <= angle <= 0.1 + 1e-6


def test_rotation_rejects_bounds_without_three_axes():
    with pytest.raises(ValueError, match=r"one \(low, high\) per axis x, y, z, not"):
        T.RandomRotation(bounds=[(-1, 1), (-1, 1)])


# --- RandomFlip(p_apply) -----------------------------------------------------------------------


def test_flip_p_apply_gates_the_whole_step():
    sample = point_sample(50)
    for seed in range(5):
        assert T.RandomFlip(p=1.0, p_apply=0.0)(sample, np.random.default_rng(seed)) is sample
        # p_apply=1 draws nothing extra: the recipe without it sees the same stream.
        a = T.RandomFlip(p=0.5)(sample, np.random.default_rng(seed))
        b = T.RandomFlip(p=0.5, p_apply=1.0)(sample, np.random.default_rng(seed))
        np.testing.assert_array_equal(a["coord"], b["coord"])

    # CSC: with 0.95 the step runs, then each of x and y flips with 0.5.
    transform, runs = T.RandomFlip(p=0.5, p_apply=0.95), 4000
    unflipped = sum(
        np.array_equal(transform(sample, np.random.default_rng(s))["coord"], sample["coord"])
        for s in range(runs)
    )
    assert unflipped / runs == pytest.approx(0.05 + 0.95 * 0.25, abs=0.025)


# --- RandomVoxelDropout ------------------------------------------------------------------------


def test_voxel_dropout_drops_whole_voxels_and_every_per_point_array_with_them():
    sample = point_sample()
    voxel_size = 0.2
    before = voxelize(sample["coord"], voxel_size)
    out = T.RandomVoxelDropout(voxel_size, ratio=0.3, p=1.0)(sample, np.random.default_rng(0))
    kept = out["label"]  # the original row of every remaining point
    np.testing.assert_array_equal(out["coord"], sample["coord"][kept])
    np.testing.assert_array_equal(out["color"], sample["color"][kept])
    kept_voxels = np.unique(before.inverse[kept])
    assert len(kept_voxels) == int(before.num_voxels * 0.7)
    # A voxel is kept or dropped as a whole.
    assert np.array_equal(np.sort(kept), np.flatnonzero(np.isin(before.inverse, kept_voxels)))
    np.testing.assert_array_equal(sample["label"], np.arange(len(sample["coord"])))
    assert T.RandomVoxelDropout(voxel_size, p=0.0)(sample, np.random.default_rng(0)) is sample


def test_voxel_dropout_in_the_dataset_keeps_labels_on_their_points(synthetic_scannet):  # noqa: F811
    def dataset(transform):
        root = synthetic_scannet.prepared
        return ScanNetDataset(
            root, "train", "scannet20", voxel_size=VOXEL_SIZE, augment=transform, labelled_only=True
        )

    full = dataset(T.Compose([]))[0]
    dropped = dataset(T.RandomVoxelDropout(VOXEL_SIZE, ratio=0.5, p=1.0))[0]
    assert len(dropped["grid"]) == int(len(full["grid"]) * 0.5)
    assert len(dropped["point_label"]) == len(dropped["inverse"]) == dropped["num_points"]
    np.testing.assert_array_equal(
        dropped["label"],
        majority_labels(dropped["inverse"], dropped["point_label"], len(dropped["grid"])),
    )
    # The kept voxels carry the labels they had without the dropout.
    full_label = dict(zip(map(tuple, full["grid"]), full["label"], strict=True))
    kept = zip(map(tuple, dropped["grid"]), dropped["label"], strict=True)
    assert all(full_label[grid] == label for grid, label in kept)


# --- RandomGridShift ---------------------------------------------------------------------------


def test_grid_shift_moves_the_voxelization_by_whole_voxels():
    sample = point_sample()
    voxel_size = 0.05
    before = voxelize(sample["coord"], voxel_size)
    shifts = set()
    for seed in range(10):
        out = T.RandomGridShift(voxel_size, max_voxels=100)(sample, np.random.default_rng(seed))
        after = voxelize(out["coord"], voxel_size)
        shift = after.grid[after.inverse] - before.grid[before.inverse]
        assert (shift == shift[0]).all()  # every point moves by the same whole number of voxels
        assert ((0 <= shift[0]) & (shift[0] < 100)).all()
        np.testing.assert_array_equal(after.inverse, before.inverse)
        shifts.add(tuple(shift[0]))
        assert out["coord"].dtype == np.float32 and out["color"] is sample["color"]
    assert len(shifts) > 1


# --- the recipes -------------------------------------------------------------------------------

CSC_ORDER = [
    T.ElasticDistortion,
    T.RandomRotation,
    T.RandomScale,
    T.RandomFlip,
    T.RandomVoxelDropout,
    T.RandomGridShift,
    T.ChromaticAutoContrast,
    T.ChromaticTranslation,
    T.ChromaticJitter,
]
LG_ORDER = [t for t in CSC_ORDER if t not in (T.RandomVoxelDropout, T.RandomGridShift)]


@pytest.mark.parametrize("name,order", [("csc", CSC_ORDER), ("lg", LG_ORDER)])
def test_recipe_has_the_published_parameters(name, order):
    # The augmentations that act on the voxel grid interpolate data.voxel_size (training fills
    # it in from the manifest when it is null).
    overrides = [f"aug={name}", "data.root=/data/prepared", "data.voxel_size=0.02"]
    cfg = compose_config("train", overrides)
    aug = instantiate(cfg.aug)
    assert [type(t) for t in aug.transforms] == order
    by_type = {type(t): t for t in aug.transforms}
    elastic = by_type[T.ElasticDistortion]
    assert elastic.params == ((0.2, 0.4), (0.8, 1.6)) and elastic.p == 0.95
    rotate = by_type[T.RandomRotation]
    np.testing.assert_allclose(
        rotate.bounds, [(-np.pi / 64, np.pi / 64), (-np.pi / 64, np.pi / 64), (-np.pi, np.pi)]
    )
    assert rotate.random_order
    scale, flip = by_type[T.RandomScale], by_type[T.RandomFlip]
    assert (scale.low, scale.high, flip.p, flip.p_apply) == (0.9, 1.1, 0.5, 0.95)
    assert by_type[T.ChromaticAutoContrast].p == 0.2
    assert by_type[T.ChromaticAutoContrast].blend_factor is None
    translation, jitter = by_type[T.ChromaticTranslation], by_type[T.ChromaticJitter]
    assert (translation.p, translation.ratio, jitter.p, jitter.std) == (0.95, 0.1, 0.95, 0.05)
    if name == "csc":
        dropout, shift = by_type[T.RandomVoxelDropout], by_type[T.RandomGridShift]
        assert dropout.voxel_size == shift.voxel_size == cfg.data.voxel_size
        assert (dropout.ratio, dropout.p, shift.max_voxels) == (0.2, 0.2, 100)

    sample = point_sample()
    for seed in range(3):
        out = aug(sample, np.random.default_rng(seed))
        assert len(out["coord"]) == len(out["color"]) == len(out["label"])
        assert np.isfinite(out["coord"]).all()
        assert out["color"].min() >= 0 and out["color"].max() <= 255
