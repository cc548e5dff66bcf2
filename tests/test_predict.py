"""ceco3d-predict and ceco3d-view end to end: a synthetic room written by open3d as a PLY mesh, an
OBJ, a PCD and an XYZ cloud, segmented with a model trained for a few steps on the tiny synthetic
ScanNet; every bad input the command promises to refuse cleanly."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from plyfile import PlyData

from ceco3d.cli.predict import run as run_predict
from ceco3d.cli.view import main as view_main
from ceco3d.data.label_sets import get_label_set
from ceco3d.engine.inference import (
    TTAView,
    load_for_inference,
    predict_points,
    predict_scenes,
    view_datasets,
)
from ceco3d.errors import InputError
from ceco3d.scan_export import DROPPED_ID, DROPPED_NAME
from ceco3d.viz import colorize
from data_prep.synth.classes import select_classes
from data_prep.synth.scene import generate_scene
from tests.fixtures import BIN, compose_config, synthetic_scannet, tiny_train_config, train_tiny  # noqa: F401

o3d = pytest.importorskip("open3d", reason="ceco3d-predict reads scans with open3d")
pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(synthetic_scannet, tmp_path_factory):  # noqa: F811
    """Two training steps of MinkUNet14A on colour and normals (so point clouds need normals)."""
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny(synthetic_scannet.prepared, runs, "predict",
                      "data.features=color_normal", "trainer.max_steps=2",
                      "trainer.ckpt_every=2")  # fmt: skip


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    """One synthetic room as a PLY mesh, an OBJ mesh, a PCD cloud and an XYZ cloud (no colour)."""
    folder = tmp_path_factory.mktemp("scans")
    room = generate_scene(np.random.default_rng(0), select_classes(10), (), spacing=0.15)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(room.xyz.astype(np.float64)),
                                     o3d.utility.Vector3iVector(room.faces))  # fmt: skip
    mesh.vertex_colors = o3d.utility.Vector3dVector(room.rgb / 255.0)
    cloud = o3d.geometry.PointCloud(mesh.vertices)
    cloud.colors = mesh.vertex_colors
    paths = {"ply": folder / "room_mesh.ply", "obj": folder / "room.obj",
             "pcd": folder / "room_cloud.pcd", "xyz": folder / "room_points.xyz"}  # fmt: skip
    assert o3d.io.write_triangle_mesh(str(paths["ply"]), mesh)
    assert o3d.io.write_triangle_mesh(str(paths["obj"]), mesh)
    assert o3d.io.write_point_cloud(str(paths["pcd"]), cloud)
    assert o3d.io.write_point_cloud(str(paths["xyz"]), cloud)
    return paths


def predict(ckpt, scan, out, *overrides):
    return run_predict(compose_config("predict", [f"ckpt={ckpt}", f"input={scan}",
                                                  f"out={out}", *overrides]))  # fmt: skip


def read_input(path):
    """(N, 3) coordinates and (F, 3) faces (None for a cloud) as open3d reads the input."""
    if path.suffix in (".ply", ".obj"):
        mesh = o3d.io.read_triangle_mesh(str(path))
        return np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    return np.asarray(o3d.io.read_point_cloud(str(path)).points), None


@pytest.mark.parametrize("kind", ["ply", "obj", "pcd", "xyz"])
def test_predict_each_format(kind, checkpoint, scans, tmp_path, caplog):
    scan = scans[kind]
    out = predict(checkpoint, scan, tmp_path / "out")
    xyz, faces = read_input(scan)
    stem = scan.stem
    label_set = get_label_set("scannet200")
    ids = np.load(out / f"{stem}_labels.npy")
    assert ids.shape == (len(xyz),)  # one label per input point
    assert set(ids.tolist()) <= set(label_set.ids)
    lines = (out / f"{stem}_labels.txt").read_text().splitlines()
    assert len(lines) == len(xyz)
    name_of = dict(zip(label_set.ids, label_set.names, strict=True))
    for line, i in zip(lines[::97], ids[::97], strict=True):
        assert line == f"{i}\t{name_of[i]}"
    classes = np.array([label_set.id_to_index[i] for i in ids])
    # The coloured copy: the input's geometry, readable by plyfile and by open3d.
    ply = PlyData.read(str(out / f"{stem}_pred.ply"))
    assert ply["vertex"].count == len(xyz)
    rgb = np.stack([ply["vertex"][c] for c in ("red", "green", "blue")], axis=1)
    np.testing.assert_array_equal(rgb, colorize(classes, label_set))
    if faces is None:
        assert "face" not in ply
        copy = o3d.io.read_point_cloud(str(out / f"{stem}_pred.ply"))
        np.testing.assert_allclose(np.asarray(copy.points), xyz, atol=1e-5)
    else:
        copy = o3d.io.read_triangle_mesh(str(out / f"{stem}_pred.ply"))
        np.testing.assert_allclose(np.asarray(copy.vertices), xyz, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(copy.triangles), faces)
    summary = json.loads((out / f"{stem}_classes.json").read_text())
    assert summary["points"] == len(xyz) and summary["dropped_points"] == 0
    assert sum(row["points"] for row in summary["classes"]) == len(xyz)
    assert summary["kind"] == ("point cloud" if faces is None else "mesh")
    assert all(row["area_m2"] > 0 for row in summary["classes"])
    assert (out / f"{stem}_preview.png").read_bytes()[:8] == PNG_MAGIC
    no_colour = [r.message for r in caplog.records if "no colours" in r.getMessage()]
    assert bool(no_colour) == (kind == "xyz")


def test_mesh_areas_add_up_to_the_surface(checkpoint, scans, tmp_path):
    out = predict(checkpoint, scans["obj"], tmp_path / "out")
    xyz, faces = read_input(scans["obj"])
    corners = xyz[faces]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]),
                          axis=1).sum() / 2  # fmt: skip
    summary = json.loads((out / "room_classes.json").read_text())
    assert sum(row["area_m2"] for row in summary["classes"]) == pytest.approx(area, rel=1e-3)


def test_posthoc_adjustment_is_applied_and_recorded(checkpoint, scans, tmp_path):
    plain = predict(checkpoint, scans["ply"], tmp_path / "plain")
    adjusted = predict(checkpoint, scans["ply"], tmp_path / "adjusted", "posthoc_tau=1.0")
    settings = [json.loads((out / "room_mesh_classes.json").read_text())["posthoc"]
                for out in (plain, adjusted)]  # fmt: skip
    assert settings == [
        {"tau": 0.0},
        {"tau": 1.0, "prior": "training voxel counts kept in the checkpoint"},
    ]
    model, cfg = load_for_inference(checkpoint, posthoc_tau=1.0)
    assert cfg.posthoc.tau == 1.0 and model.backbone.final.bias.abs().sum() > 0


def test_points_predict_like_evaluation(checkpoint, synthetic_scannet):  # noqa: F811
    """A prepared scene fed as points gets the per-vertex predictions evaluation makes, with and
    without test-time augmentation."""
    model, cfg = load_for_inference(checkpoint)
    views = [TTAView(), TTAView(angle=np.pi / 2, flip_x=True, scale=1.1)]
    scene = view_datasets(cfg, "val", [TTAView()])[0].scenes[0]
    folder = synthetic_scannet.prepared / "val" / scene
    points = {name: np.load(folder / f"{name}.npy").astype(np.float32)
              for name in ("coord", "color", "normal")}  # fmt: skip
    for tta in ([TTAView()], views):
        datasets = view_datasets(cfg, "val", tta)
        _, _, expected = next(predict_scenes(model, datasets, torch.device("cpu"), [0]))
        got, voxel = predict_points(model, points, cfg.data.features, cfg.data.voxel_size, tta)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(voxel, np.load(folder / "voxel_inverse.npy"))


def test_non_finite_points_are_dropped_and_counted(checkpoint, scans, tmp_path, caplog):
    cloud = o3d.io.read_point_cloud(str(scans["pcd"]))
    xyz = np.asarray(cloud.points).copy()
    xyz[[3, 10]] = np.nan
    xyz[20, 1] = np.inf
    cloud.points = o3d.utility.Vector3dVector(xyz)
    path = tmp_path / "holes.pcd"
    o3d.io.write_point_cloud(str(path), cloud)
    out = predict(checkpoint, path, tmp_path / "out")
    ids = np.load(out / "holes_labels.npy")
    assert len(ids) == len(xyz)
    assert (ids[[3, 10, 20]] == DROPPED_ID).all() and (np.delete(ids, [3, 10, 20]) > 0).all()
    assert (out / "holes_labels.txt").read_text().splitlines()[3] == f"{DROPPED_ID}\t{DROPPED_NAME}"
    assert json.loads((out / "holes_classes.json").read_text())["dropped_points"] == 3
    assert PlyData.read(str(out / "holes_pred.ply"))["vertex"].count == len(xyz) - 3
    assert any("dropped 3 of" in r.getMessage() for r in caplog.records)


def test_units_and_up_axis(checkpoint, scans, tmp_path, caplog):
    """The room written in centimetres with y up gives the labels of the room in metres, z up,
    and the coloured copy is in the input's own unit and axes."""
    cloud = o3d.io.read_point_cloud(str(scans["pcd"]))
    xyz = np.asarray(cloud.points)
    cloud.points = o3d.utility.Vector3dVector(100 * np.stack([xyz[:, 1], xyz[:, 2], xyz[:, 0]], 1))
    path = tmp_path / "room_cm.pcd"
    o3d.io.write_point_cloud(str(path), cloud)
    reference = predict(checkpoint, scans["pcd"], tmp_path / "m")
    out = predict(checkpoint, path, tmp_path / "cm", "units=cm", "up=y")
    same = np.load(out / "room_cm_labels.npy") == np.load(reference / "room_cloud_labels.npy")
    assert same.mean() > 0.97  # float rounding may move a few points across a voxel border
    copy = o3d.io.read_point_cloud(str(out / "room_cm_pred.ply"))
    np.testing.assert_allclose(np.asarray(copy.points), np.asarray(cloud.points), atol=1e-3)
    assert not any("unit is probably wrong" in r.getMessage() for r in caplog.records)
    predict(checkpoint, path, tmp_path / "wrong_unit")  # centimetres read as metres
    assert any("unit is probably wrong" in r.getMessage() for r in caplog.records)


def test_folder_of_scans(checkpoint, scans, tmp_path):
    out = predict(checkpoint, scans["pcd"].parent, tmp_path / "out", "tta.enabled=true",
                  "tta.rotations=2", "tta.flips=false", "tta.scales=[]")  # fmt: skip
    for path in scans.values():
        assert (out / f"{path.stem}_labels.npy").is_file()
        assert json.loads((out / f"{path.stem}_classes.json").read_text())["tta_views"] == 2


def _bad_checkpoint(checkpoint, path):
    ckpt = torch.load(checkpoint, weights_only=False)
    del ckpt["config"]["data"]["voxel_size"]
    torch.save(ckpt, path)
    return path


def _empty_scan(path):
    path.write_text("")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("extension", r"unsupported extension '\.txt'"),
        ("empty", "no points"),
        ("all_nan", "NaN or inf"),
        ("checkpoint", "lacks config key data.voxel_size"),
        ("out_exists", "already exists"),
        ("units", "units=km"),
        ("stems", "share the file stem"),
    ],
)
def test_bad_input_fails_cleanly(case, message, checkpoint, scans, tmp_path):
    scan, ckpt, overrides = scans["pcd"], checkpoint, []
    if case == "missing":
        scan = tmp_path / "nowhere.ply"
    elif case == "extension":
        scan = tmp_path / "notes.txt"
        scan.write_text("1 2 3\n")
    elif case == "empty":
        scan = _empty_scan(tmp_path / "empty.xyz")
    elif case == "all_nan":
        scan = tmp_path / "nan.xyz"
        scan.write_text("nan 0 0\n0 inf 0\n")
    elif case == "checkpoint":
        ckpt = _bad_checkpoint(checkpoint, tmp_path / "bad.pt")
    elif case == "out_exists":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
    elif case == "units":
        overrides = ["units=km"]
    elif case == "stems":  # both would write room_labels.npy
        scan = tmp_path / "two"
        scan.mkdir()
        for suffix in (".pcd", ".xyz"):
            (scan / f"room{suffix}").write_bytes(scans[suffix[1:]].read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=message):
        predict(ckpt, scan, tmp_path / "out", *overrides)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    if case == "out_exists":
        assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_folder_keeps_the_good_scans_when_one_fails(checkpoint, scans, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "good.pcd").write_bytes(scans["pcd"].read_bytes())
    _empty_scan(folder / "bad.xyz")
    with pytest.raises(InputError, match="1 of 2 scans failed"):
        predict(checkpoint, folder, tmp_path / "out")
    assert (tmp_path / "out" / "good_labels.npy").is_file()
    assert not list((tmp_path / "out").glob("bad_*"))


def test_cli_exit_status_and_message(checkpoint, tmp_path):
    cmd = [sys.executable, "-m", "ceco3d.cli.predict", f"ckpt={checkpoint}",
           f"input={tmp_path / 'nowhere.obj'}", f"out={tmp_path / 'out'}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "nowhere.obj: file not found" in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_viewer_without_display_writes_png_views(checkpoint, scans, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = predict(checkpoint, scans["obj"], tmp_path / "pred")
    labels = out / "room_labels.npy"
    views = tmp_path / "views"
    gt = out / "room_labels.txt"  # any labels of the scan will do
    assert view_main([str(scans["obj"]), "--pred", str(labels), "--gt", str(gt),
                      "--out", str(views)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "no display" in printed and "1 input, 2 prediction, 3 ground truth" in printed
    top = json.loads((out / "room_classes.json").read_text())["classes"][0]
    assert top["name"] in printed
    for layer in ("input", "prediction", "ground_truth"):
        assert (views / f"room_view_{layer}.png").read_bytes()[:8] == PNG_MAGIC


def test_viewer_refuses_labels_of_another_scan(checkpoint, scans, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones(5, dtype=np.int32))
    assert view_main([str(scans["pcd"]), "--pred", str(wrong), "--label-set", "scannet200",
                      "--out", str(tmp_path)]) == 1  # fmt: skip
    assert "5 labels, but" in capsys.readouterr().err
    assert view_main([str(scans["pcd"]), "--pred", str(wrong)]) == 1
    assert "--label-set" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


WINDOW_SCRIPT = """
ceco3d-view "$1" --pred "$2" > "$3" 2>&1 &
for _ in $(seq 30); do
    window=$(xdotool search --name ceco3d-view 2>/dev/null | head -n 1) && [ -n "$window" ] && break
    sleep 1
done
for key in 3 2 1 q; do xdotool key --window "$window" "$key"; sleep 1; done
wait $!
"""


@pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("xdotool")),
                    reason="needs xvfb-run and xdotool for a virtual display")  # fmt: skip
def test_viewer_window_switches_layers_by_key(checkpoint, scans, tmp_path):
    out = predict(checkpoint, scans["obj"], tmp_path / "pred")
    log = tmp_path / "view.log"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = ["xvfb-run", "-a", "bash", "-c", WINDOW_SCRIPT, "view", str(scans["obj"]),
           str(out / "room_labels.npy"), str(log)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    printed = log.read_text()
    assert done.returncode == 0, printed + done.stderr
    assert "no display" not in printed
    # Key 3 has no layer without --gt; 2 and 1 switch to the prediction and back.
    assert "showing prediction\nshowing input" in printed
