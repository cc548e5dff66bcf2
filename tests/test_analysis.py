"""Neural-collapse / imbalance statistics, their plots, and reading TensorBoard scalars back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ceco3d.analysis.imbalance import (
    class_counts,
    imbalance_factor,
    imbalance_statistics,
    normalized_frequency,
    pearson,
)
from ceco3d.neural_collapse import (
    COLLAPSE_TAGS,
    FeatureAccumulator,
    center_features,
    collapse_statistics,
    cosine_matrix,
    equiangularity,
    max_separation,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def strict_numerics():
    """Any warning is an error and so is any floating-point division by zero or invalid op."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        yield


def simplex_etf(num_classes: int, dim: int, seed: int) -> np.ndarray:
    """``(K, d)`` simplex ETF rotated by a random orthonormal ``U`` (d x K)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(dim, num_classes)))
    centering = np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes
    return np.sqrt(num_classes / (num_classes - 1)) * centering @ u.T


@pytest.mark.parametrize(("num_classes", "dim"), [(5, 8), (20, 32)])
def test_simplex_etf_has_zero_equiangularity_and_separation(num_classes, dim, strict_numerics):
    etf = simplex_etf(num_classes, dim, seed=num_classes)
    cos = cosine_matrix(etf)
    off_diagonal = cos[~np.eye(num_classes, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, -1 / (num_classes - 1), atol=1e-9)
    assert equiangularity(etf) == pytest.approx(0, abs=1e-6)
    assert max_separation(etf) == pytest.approx(0, abs=1e-6)
    # Stats are invariant to scaling each vector, and centering undoes a global offset.
    scaled = etf * np.linspace(0.5, 3, num_classes)[:, None]
    offset = center_features(etf + 7.0)
    for vectors in (scaled, offset):
        assert equiangularity(vectors) == pytest.approx(0, abs=1e-6)
        assert max_separation(vectors) == pytest.approx(0, abs=1e-6)


def test_random_vectors_are_not_collapsed():
    rng = np.random.default_rng(0)
    vectors = rng.uniform(0, 1, size=(10, 16))
    assert equiangularity(vectors) > 0.01
    assert max_separation(vectors) > 0.1
    stats = collapse_statistics(vectors, rng.normal(size=(10, 16)))
    assert stats["equiangularity_weights"] > 0.01
    assert stats["separation_weights"] > 0.1
    assert set(COLLAPSE_TAGS) <= set(stats)


def test_separation_and_equiangularity_match_definition():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, 4))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [unit[i] @ unit[j] for i in range(6) for j in range(6) if i != j]
    assert equiangularity(vectors) == pytest.approx(np.std(pairs))
    assert max_separation(vectors) == pytest.approx(np.mean(np.abs(np.array(pairs) + 1 / 5)))


def test_absent_classes_are_left_out(strict_numerics):
    present = np.array([True, False, True, True, False, True, True, True])
    etf = simplex_etf(int(present.sum()), 8, seed=3)
    centers = np.full((len(present), 8), np.nan)
    centers[present] = etf + 2.5  # feature centers are not centered yet
    weights = np.zeros((len(present), 8))
    weights[present] = etf * 3  # absent classes still have (arbitrary) classifier rows
    weights[~present] = 1.0
    stats = collapse_statistics(centers, weights)
    assert stats["num_classes_present"] == present.sum()
    for key in COLLAPSE_TAGS:
        assert stats[key] == pytest.approx(0, abs=1e-6), key
    assert np.isnan(cosine_matrix(centers)[1]).all()
    # An explicit mask wins over the finite rows of the centers. Re-centered, a simplex minus a
    # vertex is a smaller simplex; the (uncentered) weights now miss -1/(K-1) for the new K.
    partial = collapse_statistics(centers, weights, present=present & (np.arange(8) != 7))
    assert partial["num_classes_present"] == present.sum() - 1
    assert partial["separation_features"] == pytest.approx(0, abs=1e-6)
    k = present.sum()
    assert partial["separation_weights"] == pytest.approx(1 / (k - 2) - 1 / (k - 1))


def test_too_few_classes_give_nan_not_errors(strict_numerics):
    centers = np.full((4, 3), np.nan)
    centers[2] = [1.0, 2.0, 3.0]
    stats = collapse_statistics(centers, np.ones((4, 3)))
    assert stats["num_classes_present"] == 1
    assert all(np.isnan(stats[key]) for key in COLLAPSE_TAGS)
    assert np.isnan(equiangularity(np.full((3, 2), np.nan)))
    assert np.isnan(center_features(np.full((3, 2), np.nan))).all()


def test_weights_must_match_centers():
    with pytest.raises(ValueError, match=r"\(K, C\)"):
        collapse_statistics(np.zeros((5, 3)), np.zeros((3, 5)))


def test_imbalance_factor_leaves_out_zero_counts(strict_numerics):
    assert imbalance_factor(np.array([100, 0, 10, 50])) == (10.0, 1)
    assert imbalance_factor(np.array([7, 7, 7])) == (1.0, 0)
    factor, left_out = imbalance_factor(np.zeros(3))
    assert np.isnan(factor)
    assert left_out == 3


def test_pearson_matches_corrcoef_and_ignores_nan(strict_numerics):
    rng = np.random.default_rng(2)
    x = rng.normal(size=50)
    y = 0.3 * x + rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    x_nan, y_nan = x.copy(), y.copy()
    x_nan[[3, 10]] = np.nan
    y_nan[20] = np.nan
    keep = np.ones(50, dtype=bool)
    keep[[3, 10, 20]] = False
    assert pearson(x_nan, y_nan) == pytest.approx(np.corrcoef(x[keep], y[keep])[0, 1])
    assert np.isnan(pearson(np.ones(5), y[:5]))
    assert np.isnan(pearson(np.array([1.0, np.nan]), np.array([2.0, 3.0])))


def test_imbalance_statistics(strict_numerics):
    points = np.array([1000, 400, 0, 50, 10])
    scenes = np.array([20, 10, 0, 5, 2])
    acc = np.array([0.95, 0.8, np.nan, 0.5, 0.2])
    stats = imbalance_statistics(points, scenes, acc)
    assert stats["point_imbalance_factor"] == 100.0
    assert stats["center_imbalance_factor"] == 10.0
    assert stats["point_classes_left_out"] == 1
    assert stats["center_classes_left_out"] == 1
    assert stats["accuracy_classes_left_out"] == 1
    keep = np.isfinite(acc)
    for kind, counts in (("point", points), ("center", scenes)):
        freq = counts[keep] / counts.sum()
        expected = np.corrcoef(acc[keep], freq)[0, 1]
        assert stats[f"pearson_acc_{kind}_freq"] == pytest.approx(expected)
    np.testing.assert_allclose(normalized_frequency(points).sum(), 1.0)


def test_class_counts():
    scenes = [np.array([0, 0, 1, -1]), np.array([1, 1, 1]), np.array([-1, -1])]
    points, scene_counts = class_counts(scenes, num_classes=3)
    np.testing.assert_array_equal(points, [2, 4, 0])
    np.testing.assert_array_equal(scene_counts, [1, 2, 0])


def naive_sums_and_counts(features, labels, num_classes):
    sums = np.zeros((num_classes, features.shape[1]))
    counts = np.zeros(num_classes, dtype=np.int64)
    for k in range(num_classes):
        sums[k] = features[labels == k].astype(np.float64).sum(axis=0)
        counts[k] = (labels == k).sum()
    return sums, counts


@pytest.fixture
def labelled_features():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(500, 6)).astype(np.float32)
    labels = rng.integers(-1, 5, size=500)  # -1 is ignored; class 5 of 6 never occurs
    return features, labels


def test_accumulator_matches_naive_loop(labelled_features, strict_numerics):
    features, labels = labelled_features
    sums, counts = naive_sums_and_counts(features, labels, 6)
    acc = FeatureAccumulator(6, 6)
    acc.update(features, labels)
    np.testing.assert_allclose(acc.sums, sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(acc.counts, counts)
    centers = acc.centers()
    assert np.isnan(centers[5]).all()
    np.testing.assert_allclose(centers[:5], sums[:5] / counts[:5, None], rtol=1e-12)


def test_accumulator_torch_input_and_merge(labelled_features):
    features, labels = labelled_features
    whole = FeatureAccumulator(6, 6)
    whole.update(features, labels)
    first, second = FeatureAccumulator(6, 6), FeatureAccumulator(6, 6)
    first.update(torch.from_numpy(features[:200]), torch.from_numpy(labels[:200]))
    second.update(features[200:], labels[200:])
    assert first.merge(second) is first
    np.testing.assert_allclose(first.sums, whole.sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(first.counts, whole.counts)


def test_accumulator_rejects_bad_input(labelled_features):
    features, labels = labelled_features
    acc = FeatureAccumulator(4, 6)
    for data in (features, torch.from_numpy(features)):
        with pytest.raises(ValueError, match="out of range"):
            acc.update(data, labels)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        acc.update(features[:, :3], labels)
    with pytest.raises(ValueError, match="cannot merge"):
        acc.merge(FeatureAccumulator(6, 6))
    assert acc.counts.sum() == 0


def test_reduce_without_distributed_is_a_no_op(labelled_features):
    features, labels = labelled_features
    acc = FeatureAccumulator(6, 6)
    acc.update(features, labels)
    sums, counts = acc.sums.copy(), acc.counts.copy()
    acc.reduce_()
    np.testing.assert_array_equal(acc.sums, sums)
    np.testing.assert_array_equal(acc.counts, counts)


def _reduce_worker(rank: int, init_file: str, features, labels, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    acc = FeatureAccumulator(6, 6)
    half = slice(0, 250) if rank == 0 else slice(250, None)
    acc.update(features[half], labels[half])
    acc.reduce_()
    np.savez(f"{out_dir}/rank{rank}.npz", sums=acc.sums, counts=acc.counts)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_reduce_sums_over_ranks(labelled_features, tmp_path):
    features, labels = labelled_features
    torch.multiprocessing.spawn(
        _reduce_worker,
        args=(str(tmp_path / "init"), features, labels, str(tmp_path)),
        nprocs=2,
    )
    sums, counts = naive_sums_and_counts(features, labels, 6)
    for rank in range(2):
        result = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(result["sums"], sums, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(result["counts"], counts)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1024
    assert not list(path.parent.glob(".*.tmp")), "atomic write left a temporary file"


def test_plots_write_pngs(tmp_path, strict_numerics):
    from ceco3d.analysis import plots
    from ceco3d.data.label_sets import LabelSet

    rng = np.random.default_rng(5)
    names = tuple(f"class{k}" for k in range(9))
    label_set = LabelSet(
        "toy",
        tuple(range(1, 10)),
        names,
        "id",
        groups={"head": names[:3], "common": names[3:6], "tail": names[6:]},
    )
    points = np.array([9000, 5000, 3000, 800, 400, 100, 30, 0, 5])
    scenes = np.array([90, 80, 60, 30, 20, 8, 3, 0, 1])
    acc_ce = np.r_[rng.uniform(0.3, 1.0, size=7), np.nan, 0.1]
    acc_ceco = np.clip(acc_ce + 0.05, 0, 1)
    iou = np.r_[rng.uniform(0.2, 0.9, size=7), np.nan, 0.05]
    runs = {
        name: {tag: [(s, rng.uniform()) for s in (0, 100, 200)] for tag in COLLAPSE_TAGS.values()}
        for name in ("CE", "CeCo")
    }
    written = [
        plots.plot_frequency_histograms(tmp_path / "freq.png", points, scenes, names),
        plots.plot_accuracy_vs_frequency(
            tmp_path / "acc.png",
            {"CE": acc_ce, "CeCo": acc_ceco},
            normalized_frequency(points),
            normalized_frequency(scenes),
            class_names=names,
        ),
        plots.plot_accuracy_vs_frequency(
            tmp_path / "acc_single.png",
            acc_ce,
            normalized_frequency(points),
            normalized_frequency(scenes),
        ),
        plots.plot_collapse_curves(tmp_path / "curves.png", runs),
        # class 7 has no training points: left out of the panel
        plots.plot_iou_by_frequency(
            tmp_path / "iou_by_frequency.png", {"CE": iou, "CeCo": iou * 0.9}, points, label_set
        ),
    ]
    with pytest.raises(ValueError, match="8 counts for 9 classes"):
        plots.plot_iou_by_frequency(tmp_path / "bad.png", {"CE": iou}, points[:8], label_set)
    for path in written:
        assert path.parent.is_dir()
        assert_png(path)


def test_read_scalars_round_trip(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from ceco3d.analysis.tb_logs import read_scalars

    tags = list(COLLAPSE_TAGS.values())
    expected = {tag: {} for tag in tags}
    with SummaryWriter(tmp_path / "run") as writer:
        for step in (0, 50, 100):
            for i, tag in enumerate(tags):
                value = float(i + step / 1000)
                writer.add_scalar(tag, value, step, walltime=1000.0 + step)
                expected[tag][step] = value
        writer.add_scalar("loss/total", 1.0, 0)
    # A resumed run in a sub-folder rewrites step 100 later and goes on.
    with SummaryWriter(tmp_path / "run" / "resumed") as writer:
        for step in (100, 150):
            value = float(-step)
            writer.add_scalar(tags[0], value, step, walltime=5000.0 + step)
            expected[tags[0]][step] = value

    series = read_scalars(tmp_path / "run", [*tags, "never/logged"])
    assert series["never/logged"] == []
    for tag in tags:
        assert [step for step, _ in series[tag]] == sorted(expected[tag])
        for step, value in series[tag]:
            assert value == pytest.approx(expected[tag][step])
    assert "loss/total" not in series


def test_read_scalars_missing_dir(tmp_path):
    from ceco3d.analysis.tb_logs import read_scalars
    from ceco3d.errors import InputError

    with pytest.raises(InputError, match="not a directory"):
        read_scalars(tmp_path / "nope", list(COLLAPSE_TAGS.values()))
