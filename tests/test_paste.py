"""Tail-instance pasting (LanguageGroundedSemseg's sample_tail_instances): instances of tail
classes from other training scenes land in the sample with their labels, inside the crop's
extent and voxel budget, on a free place."""

from __future__ import annotations

import numpy as np
import pytest

from ceco3d.data.dataset import ScanNetDataset
from ceco3d.data.label_sets import get_label_set
from ceco3d.data.paste import PasteSettings, TailInstancePaster
from ceco3d.data.voxelize import majority_labels, voxelize
from tests.fixtures import VOXEL_SIZE, synthetic_scannet  # noqa: F401 (a fixture)

CROP = 1500


def train_set(root, paste: PasteSettings | None) -> ScanNetDataset:
    return ScanNetDataset(root, "train", "scannet200", crop=CROP, labelled_only=True, seed=2,
                          paste=paste)  # fmt: skip


def test_the_bank_holds_the_tail_instances_of_the_training_scenes(synthetic_scannet):  # noqa: F811
    dataset = train_set(synthetic_scannet.prepared, PasteSettings(instances=3))
    tail = get_label_set("scannet200").group_mask("tail")
    bank = dataset.paster.bank
    assert bank and all(tail[c] for c in bank)
    for label, instances in bank.items():
        for found in instances:
            scene = dataset.root / "train" / dataset.scenes[found.scene]
            ids, labels = np.load(scene / "instance.npy"), np.load(scene / "segment200.npy")
            values = labels[(ids == found.instance) & (labels >= 0)]
            assert found.label == label == np.bincount(values).argmax()


def test_pasted_instances_carry_their_labels_and_stay_inside_the_crop(
    synthetic_scannet,  # noqa: F811
    monkeypatch,
):
    dataset = train_set(synthetic_scannet.prepared, PasteSettings(instances=3))
    calls = []
    place = TailInstancePaster.place

    def spy(self, points, grid, pasted, voxel_size, rng):
        merged, placed = place(self, points, grid, pasted, voxel_size, rng)
        calls.append((points, grid, pasted, dict(merged), placed))  # the caller pops label
        return merged, placed

    monkeypatch.setattr(TailInstancePaster, "place", spy)
    tail = get_label_set("scannet200").group_mask("tail")
    placed_any = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert len(sample["grid"]) <= CROP  # the pasted voxels fit in the crop's budget
        points, grid, pasted, merged, placed = calls[-1]
        assert len(pasted) == 3
        lo, hi = grid.min(0), grid.max(0)
        occupied = set(map(tuple, grid.tolist()))
        row = len(points["coord"])
        np.testing.assert_array_equal(merged["label"][:row], points["label"])  # sample kept
        for instance in (p for p, ok in zip(pasted, placed, strict=True) if ok):
            rows = slice(row, row + len(instance["coord"]))
            row = rows.stop
            # Its own points with their own labels and colours, moved by whole voxels.
            np.testing.assert_array_equal(merged["label"][rows], instance["label"])
            np.testing.assert_array_equal(merged["color"][rows], instance["color"])
            assert tail[np.bincount(instance["label"][instance["label"] >= 0]).argmax()]
            shift = (merged["coord"][rows] - instance["coord"]) / VOXEL_SIZE
            np.testing.assert_allclose(shift, np.round(shift[:1]).repeat(len(shift), 0),
                                       atol=1e-3)  # fmt: skip
            voxels = np.floor(merged["coord"][rows] / VOXEL_SIZE).astype(np.int64)
            assert (voxels[:, :2] >= lo[:2]).all() and (voxels[:, :2] <= hi[:2]).all()
            assert not occupied & set(map(tuple, voxels.tolist()))  # a free place
            occupied |= set(map(tuple, voxels.tolist()))
            # In the sample, the instance's voxels carry the instance's majority labels.
            own = voxelize(merged["coord"][rows], VOXEL_SIZE)
            expected = zip(map(tuple, own.grid.tolist()), _majority(own, instance), strict=True)
            in_sample = dict(zip(map(tuple, sample["grid"].tolist()), sample["label"], strict=True))
            assert all(in_sample[voxel] == label for voxel, label in expected)
            placed_any += 1
        assert row == len(merged["coord"])
    assert placed_any >= len(dataset)  # most draws find a place


def _majority(voxels, instance) -> list[int]:
    return majority_labels(voxels.inverse, instance["label"], voxels.num_voxels).tolist()


def test_no_instance_comes_from_the_sample_itself_and_probability_zero_pastes_nothing(
    synthetic_scannet,  # noqa: F811
):
    dataset = train_set(synthetic_scannet.prepared, PasteSettings(instances=4))
    rng = np.random.default_rng(0)
    for scene in range(len(dataset)):
        assert all(found.scene != scene for found in dataset.paster.draw(scene, rng))
    never = train_set(synthetic_scannet.prepared, PasteSettings(probability=0.0))
    plain = train_set(synthetic_scannet.prepared, None)
    assert not never.paster.draw(0, rng)
    assert len(never[0]["grid"]) == len(plain[0]["grid"])


def test_a_label_set_without_the_group_is_refused(synthetic_scannet):  # noqa: F811
    with pytest.raises(ValueError, match=r"paste\.group='rare'"):
        train_set(synthetic_scannet.prepared, PasteSettings(group="rare"))
