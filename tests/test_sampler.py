"""Repeat-factor scene sampling (LVIS, Gupta et al. 2019) in the step-indexed sampler: factors
by hand on a small manifest, stochastic rounding, and the batches of a step as a function of
(seed, step) alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.sampler import StepBatchSampler, repeat_factors
from tests.fixtures import synthetic_scannet  # noqa: F401 (a fixture)


def test_repeat_factors_by_hand():
    # 4 scenes, 4 classes: class 0 in every scene, 1 and 2 in one scene each, 3 in none.
    presence = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]], dtype=bool)
    # f = (1, 1/2, 1/2, 0); t = 0.8: r(0) = 1, r(1) = r(2) = sqrt(0.8 / 0.5) = sqrt(1.6)
    expected = [1.0, math.sqrt(1.6), math.sqrt(1.6), math.sqrt(1.6)]
    np.testing.assert_allclose(repeat_factors(presence, 0.8), expected, rtol=1e-15)
    # t = 0.25: every f >= t, so nothing repeats; t = 4: r(0) = 2, r(1) = r(2) = sqrt(8)
    np.testing.assert_array_equal(repeat_factors(presence, 0.25), np.ones(4))
    np.testing.assert_allclose(repeat_factors(presence, 4.0), [2, 8**0.5, 8**0.5, 8**0.5])
    assert repeat_factors(np.zeros((2, 3), dtype=bool), 0.5).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="threshold"):
        repeat_factors(presence, 0.0)


def test_repeat_factors_of_a_prepared_manifest_by_hand(synthetic_scannet):  # noqa: F811
    dataset = ScanNetDataset(synthetic_scannet.prepared, "train", "scannet200", labelled_only=True)
    threshold = 0.5
    # By hand from the scenes' own voxel label arrays.
    labels = [np.load(dataset.root / "train" / s / "voxel_segment200.npy") for s in dataset.scenes]
    classes = [set(v[v >= 0].tolist()) for v in labels]
    fraction = {c: sum(c in s for s in classes) / len(classes) for c in set().union(*classes)}
    expected = [max(max(1.0, math.sqrt(threshold / fraction[c])) for c in s) for s in classes]
    got = repeat_factors(dataset.scene_class_presence(), threshold)
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert (got > 1).any()  # the small manifest has classes in fewer than half of its scenes


FACTORS = np.array([1.0, 2.5, 1.2, 3.0, 1.0, 1.7])


def batches(start_step=0, max_steps=60, factors=FACTORS, batch_size=2, rank=0, world=1):
    sampler = StepBatchSampler(6, batch_size, max_steps, seed=3, rank=rank, world_size=world,
                               start_step=start_step, factors=factors)  # fmt: skip
    return list(sampler)


def test_epochs_round_the_factors_stochastically():
    sampler = StepBatchSampler(6, 2, 1, seed=3, factors=FACTORS)
    counts = []
    for epoch in range(2000):
        index, key = sampler.epoch_order(epoch)
        count = np.bincount(index, minlength=6)
        assert ((count == np.floor(FACTORS)) | (count == np.ceil(FACTORS))).all()
        # copies of one scene carry different randomness keys, unique within the epoch
        assert len(set(zip(index.tolist(), key.tolist(), strict=True))) == len(index)
        assert (key // sampler.copies == epoch).all()
        counts.append(count)
    # LVIS's stochastic rounding: floor(r) + Bernoulli(r - floor(r)), mean r
    np.testing.assert_allclose(np.mean(counts, 0), FACTORS, atol=0.03)


def test_resume_at_any_step_continues_the_same_batches():
    whole = batches()
    assert len(whole) == 60 and all(len(b) == 2 for b in whole)
    for start in (1, 5, 6, 7, 23, 59):  # epochs hold 10 or so entries: steps cross epochs
        assert batches(start_step=start) == whole[start:]
    keys = {key for batch in whole for key, _ in batch}
    assert len(keys) > 60 // 5  # many epochs and copies were visited


def test_ranks_split_the_global_batch_of_one_process():
    one = batches(batch_size=4)
    ranks = [batches(batch_size=2, rank=r, world=2) for r in range(2)]
    for step, joint in enumerate(one):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(joint)


def test_without_factors_the_epochs_are_the_seeded_permutations():
    """The plain sampler's order, unchanged: step s takes window s mod E of the permutation
    of epoch s // E (E steps per epoch), with the epoch as the randomness key."""
    got = batches(factors=None, max_steps=9)
    for step, batch in enumerate(got):
        epoch, offset = divmod(step, 3)
        perm = np.random.default_rng([3, epoch]).permutation(6)
        assert batch == [(epoch, int(i)) for i in perm[offset * 2 : offset * 2 + 2]]
