import json

import numpy as np
import pytest

from ceco3d.data.label_sets import IGNORE_INDEX, SCANNET20, SCANNET200
from ceco3d.metrics import (
    ConfusionMatrix,
    accuracy_per_class,
    confusion_matrix,
    format_table,
    iou_per_class,
    summarize,
)


def test_ignore_label_never_lands_in_a_class_bin():
    gt = np.array([0, 1, IGNORE_INDEX, 2, IGNORE_INDEX])
    pred = np.array([0, 1, 2, 2, 0])
    conf = confusion_matrix(gt, pred, num_classes=3)
    np.testing.assert_array_equal(conf, np.diag([1, 1, 1]))
    assert conf.sum() == 3  # the two ignored points are nowhere


def test_confusion_matrix_by_hand():
    # gt:   0 0 1 1 2 -1
    # pred: 0 1 1 1 0  3
    gt = np.array([0, 0, 1, 1, 2, IGNORE_INDEX])
    pred = np.array([0, 1, 1, 1, 0, 3])
    conf = confusion_matrix(gt, pred, num_classes=4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(conf, expected)
    assert conf.dtype == np.int64
    # class 0: tp 1, fp 1 (gt 2), fn 1 (pred 1) -> 1/3; class 1: tp 2, fp 1 -> 2/3;
    # class 2: tp 0, fn 1 -> 0; class 3: no gt, no prediction -> NaN
    np.testing.assert_allclose(iou_per_class(conf), [1 / 3, 2 / 3, 0.0, np.nan])
    np.testing.assert_allclose(accuracy_per_class(conf), [1 / 2, 1.0, 0.0, np.nan])


def test_class_with_predictions_but_no_gt_has_zero_iou_and_nan_accuracy():
    conf = confusion_matrix(np.array([0, 0]), np.array([0, 1]), num_classes=2)
    np.testing.assert_allclose(iou_per_class(conf), [0.5, 0.0])
    np.testing.assert_allclose(accuracy_per_class(conf), [0.5, np.nan])


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        ([0, 1], [0, 3], "pred holds 3"),
        ([0, 1], [0, -1], "pred holds -1"),
        ([0, 5], [0, 1], "gt holds 5"),
        ([0, -2], [0, 1], "gt holds -2"),
        ([0, 1, 2], [0, 1], "gt has 3 points but pred has 2"),
        ([0.0, 1.0], [0, 1], "gt must hold integer"),
    ],
)
def test_confusion_matrix_rejects_bad_input(gt, pred, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(np.array(gt), np.array(pred), num_classes=3)


def test_accumulator_equals_one_call_on_all_points():
    rng = np.random.default_rng(0)
    gt = rng.integers(-1, 7, size=500)
    pred = rng.integers(0, 7, size=500)
    acc = ConfusionMatrix(7)
    for part in np.array_split(np.arange(500), 4):
        acc.update(gt[part], pred[part])
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(gt, pred, 7))
    assert acc.matrix.sum() == (gt != IGNORE_INDEX).sum()
    # without torch.distributed initialised, reduce_ leaves the matrix alone
    before = acc.matrix.copy()
    assert acc.reduce_() is acc
    np.testing.assert_array_equal(acc.matrix, before)
    acc.reset()
    assert acc.matrix.sum() == 0


def test_accumulator_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    acc = ConfusionMatrix(3)
    acc.update(torch.tensor([0, 1, -1]), torch.tensor([0, 2, 1]))
    np.testing.assert_array_equal(acc.matrix, [[1, 0, 0], [0, 0, 1], [0, 0, 0]])


def _scannet200_case() -> np.ndarray:
    """A hand-built ScanNet200 confusion matrix touching each of head, common and tail."""
    idx = {name: SCANNET200.names.index(name) for name in ("wall", "chair", "cushion", "paper")}
    idx["cup"] = SCANNET200.names.index("cup")
    conf = np.zeros((200, 200), dtype=np.int64)
    conf[idx["wall"], idx["wall"]] = 3  # head
    conf[idx["wall"], idx["chair"]] = 1  # head, a wall point called chair
    conf[idx["chair"], idx["chair"]] = 1  # head
    conf[idx["cushion"], idx["cushion"]] = 2  # common, perfect
    conf[idx["paper"], idx["cup"]] = 2  # tail, both paper points called cup
    return conf


def test_summarize_scannet200_by_hand():
    s = summarize(_scannet200_case(), SCANNET200)
    # IoU: wall 3/(3+0+1) = .75, chair 1/(1+1+0) = .5, cushion 1, paper 0/2 = 0, cup 0/2 = 0;
    # the other 195 classes have neither gt nor prediction: NaN, left out of every mean.
    assert s["iou_per_class"]["wall"] == pytest.approx(75.0)
    assert s["iou_per_class"]["chair"] == pytest.approx(50.0)
    assert s["iou_per_class"]["cushion"] == pytest.approx(100.0)
    assert s["iou_per_class"]["paper"] == 0.0
    assert s["iou_per_class"]["cup"] == 0.0
    assert s["iou_per_class"]["bed"] is None
    assert sum(v is not None for v in s["iou_per_class"].values()) == 5
    assert s["mIoU"] == pytest.approx(100 * (0.75 + 0.5 + 1 + 0 + 0) / 5)  # 45
    assert s["mIoU_head"] == pytest.approx(100 * (0.75 + 0.5) / 2)  # 62.5
    assert s["mIoU_common"] == pytest.approx(100.0)
    assert s["mIoU_tail"] == pytest.approx(0.0)
    # Acc: wall 3/4, chair 1, cushion 1, paper 0; cup has no gt -> NaN, left out
    assert s["acc_per_class"]["cup"] is None
    assert s["mAcc"] == pytest.approx(100 * (0.75 + 1 + 1 + 0) / 4)  # 68.75
    assert s["allAcc"] == pytest.approx(100 * 6 / 9)  # tp 3+1+2, points 4+1+2+2
    json.dumps(s, allow_nan=False)


def test_group_without_any_class_is_none():
    conf = np.zeros((200, 200), dtype=np.int64)
    conf[0, 0] = 4  # wall, head only
    s = summarize(conf, SCANNET200)
    assert s["mIoU_head"] == pytest.approx(100.0)
    assert s["mIoU_common"] is None
    assert s["mIoU_tail"] is None
    assert summarize(np.zeros((20, 20), dtype=np.int64), SCANNET20)["mIoU"] is None


def test_perfect_prediction_scores_100():
    gt = np.repeat(np.arange(20), 3)
    s = summarize(confusion_matrix(gt, gt, 20), SCANNET20)
    assert s["mIoU"] == pytest.approx(100.0)
    assert s["mAcc"] == pytest.approx(100.0)
    assert s["allAcc"] == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in s["iou_per_class"].values())
    assert "mIoU_head" not in s  # ScanNet20 has no head/common/tail split


def test_summarize_prefix_and_shape_check():
    s = summarize(_scannet200_case(), SCANNET200, prefix="val/")
    assert set(s) == {
        "val/mIoU",
        "val/mIoU_head",
        "val/mIoU_common",
        "val/mIoU_tail",
        "val/mAcc",
        "val/allAcc",
        "val/iou_per_class",
        "val/acc_per_class",
    }
    with pytest.raises(ValueError, match="scannet20 needs"):
        summarize(np.zeros((3, 3)), SCANNET20)


def test_format_table_lists_means_and_every_defined_class():
    conf = _scannet200_case()
    summary = summarize(conf, SCANNET200, prefix="val/")
    text = format_table(summary, SCANNET200, prefix="val/")
    lines = text.splitlines()
    assert lines[0].startswith("mIoU 45.00")
    assert "mIoU_head 62.50" in lines[0]
    defined = [name for name, iou in summary["val/iou_per_class"].items() if iou is not None]
    assert len(lines) == 2 + len(defined)
    wall = next(line for line in lines if line.startswith("wall "))
    assert wall.split()[1:] == ["head", "75.00", "75.00"]
    assert not any(line.startswith("bed ") for line in lines)  # no ground truth, no prediction
    means_only = format_table(summary, SCANNET200, prefix="val/", per_class=False)
    assert means_only == lines[0]
