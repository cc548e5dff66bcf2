import csv

import numpy as np
import pytest

from ceco3d.data.label_sets import IGNORE_INDEX, SCANNET20, SCANNET200
from ceco3d.io import read_mesh
from ceco3d.metrics import accuracy_per_class, confusion_matrix, iou_per_class
from ceco3d.viz import (
    CORRECT_COLOR,
    IGNORE_COLOR,
    IGNORED_GT_COLOR,
    WRONG_COLOR,
    class_palette,
    colorize,
    export_scene_plys,
    plot_per_class_iou,
    render_scene_preview,
    scannet200_colormap,
    write_per_class_csv,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("label_set", [SCANNET20, SCANNET200])
def test_palette_is_fixed_distinct_and_not_the_ignore_colour(label_set):
    palette = class_palette(label_set)
    assert palette.shape == (label_set.num_classes, 3)
    assert palette.dtype == np.uint8
    assert len(np.unique(palette, axis=0)) == label_set.num_classes
    assert not (palette == IGNORE_COLOR).all(axis=1).any()
    np.testing.assert_array_equal(palette, class_palette(label_set))


def test_scannet20_uses_scannet_colours():
    palette = class_palette(SCANNET20)
    assert tuple(palette[SCANNET20.names.index("wall")]) == (174, 199, 232)
    assert tuple(palette[SCANNET20.names.index("otherfurniture")]) == (82, 84, 163)
    np.testing.assert_array_equal(class_palette(SCANNET200), scannet200_colormap())


def test_colorize_maps_ignore_and_rejects_out_of_range():
    rgb = colorize(np.array([0, IGNORE_INDEX, 19]), SCANNET20)
    palette = class_palette(SCANNET20)
    np.testing.assert_array_equal(rgb, [palette[0], IGNORE_COLOR, palette[19]])
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([20]), SCANNET20)
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([-2]), SCANNET20)


def _scene(n=400, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.random((n, 3)).astype(np.float32)
    gt = rng.integers(-1, 20, n)
    pred = np.where(rng.random(n) < 0.7, np.maximum(gt, 0), rng.integers(0, 20, n))
    return xyz, gt, pred


def test_export_scene_plys_round_trip(tmp_path):
    xyz, gt, pred = _scene(n=6)
    gt[:3] = [4, IGNORE_INDEX, 7]
    pred[:3] = [4, 2, 8]
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    paths = export_scene_plys(tmp_path, "scene0011_00", xyz, faces, pred, gt, SCANNET20)
    assert [p.name for p in paths] == [
        "scene0011_00_pred.ply",
        "scene0011_00_gt.ply",
        "scene0011_00_error.ply",
    ]
    palette = class_palette(SCANNET20)
    for path in paths:
        xyz_back, _, faces_back = read_mesh(path)
        np.testing.assert_allclose(xyz_back, xyz)
        np.testing.assert_array_equal(faces_back, faces)
    np.testing.assert_array_equal(read_mesh(paths[0])[1], palette[pred])
    gt_rgb = read_mesh(paths[1])[1]
    np.testing.assert_array_equal(gt_rgb[0], palette[4])
    np.testing.assert_array_equal(gt_rgb[1], IGNORE_COLOR)
    error_rgb = read_mesh(paths[2])[1]
    np.testing.assert_array_equal(error_rgb[:3], [CORRECT_COLOR, IGNORED_GT_COLOR, WRONG_COLOR])


def test_export_without_gt_writes_prediction_only(tmp_path):
    xyz, _, pred = _scene(n=5)
    paths = export_scene_plys(tmp_path, "scene0707_00", xyz, None, pred, None, SCANNET20)
    assert [p.name for p in paths] == ["scene0707_00_pred.ply"]


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


def test_render_scene_preview(tmp_path):
    xyz, gt, pred = _scene(n=3000)
    render_scene_preview(tmp_path / "p.png", xyz, pred, gt, SCANNET20, max_points=500)
    _assert_png(tmp_path / "p.png")
    render_scene_preview(tmp_path / "test.png", xyz, pred, None, SCANNET20)
    _assert_png(tmp_path / "test.png")


@pytest.mark.parametrize("label_set", [SCANNET20, SCANNET200])
def test_plot_per_class_iou_with_nan_classes(tmp_path, label_set):
    rng = np.random.default_rng(1)
    k = label_set.num_classes
    iou = rng.random(k)
    iou[::7] = np.nan
    counts = rng.integers(0, 10**6, k)
    plot_per_class_iou(tmp_path / "iou.png", iou, label_set, counts)
    _assert_png(tmp_path / "iou.png")


def test_write_per_class_csv(tmp_path):
    gt = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    conf = confusion_matrix(gt, pred, 200)
    counts = np.arange(200) * 10
    write_per_class_csv(
        tmp_path / "per_class.csv",
        SCANNET200,
        iou_per_class(conf),
        accuracy_per_class(conf),
        counts,
    )
    with open(tmp_path / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200
    assert list(rows[0]) == ["name", "benchmark_id", "group", "train_point_count", "iou", "acc"]
    # wall: tp 1, fp 1, fn 1 -> IoU 1/3, acc 1/2; chair: tp 2, fp 1 -> 2/3, acc 1
    assert rows[0] == {
        "name": "wall",
        "benchmark_id": "1",
        "group": "head",
        "train_point_count": "0",
        "iou": "33.33",
        "acc": "50.00",
    }
    assert (rows[1]["iou"], rows[1]["acc"]) == ("66.67", "100.00")
    assert (rows[2]["name"], rows[2]["iou"], rows[2]["acc"]) == ("floor", "0.00", "0.00")
    last = rows[-1]
    assert (last["name"], last["benchmark_id"], last["group"]) == ("mattress", "1191", "common")
    assert (last["iou"], last["acc"], last["train_point_count"]) == ("", "", "1990")
