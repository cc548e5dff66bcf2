"""Scans as others make them: georeferenced coordinates far from the origin, colours stored as
16-bit or floating-point numbers, faces that point past the vertices. Each is segmented as well as
a scan at the origin with 8-bit colours, or refused with a message naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from ceco3d.cli.predict import run as run_predict
from ceco3d.data.scan import read_scan
from ceco3d.errors import InputError
from ceco3d.io import read_mesh
from data_prep.synth.classes import select_classes
from data_prep.synth.scene import generate_scene
from tests.fixtures import compose_config, synthetic_scannet, tiny_train_config, train_tiny  # noqa: F401

pytest.importorskip("open3d", reason="ceco3d-predict reads scans with open3d")

GEOREFERENCED = np.array([500_000.0, 5_000_000.0, 200.0])  # UTM-like metres
COLOURS = {  # PLY type -> the stored values of 8-bit (0, 64, 128, 255)
    "u1": [0, 64, 128, 255],
    "u2": [0, 64 * 256, 128 * 256, 65535],  # a plain cast to uint8 turns 64 * 256 into 0
    "f4": [0.0, 64 / 255, 128 / 255, 1.0],
    "f8": [0.0, 64 / 255, 128 / 255, 1.0],
}


@pytest.fixture(scope="module")
def checkpoint(synthetic_scannet, tmp_path_factory):  # noqa: F811
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny(synthetic_scannet.prepared, runs, "far", "loss=ce",
                      "trainer.max_steps=2", "trainer.ckpt_every=2")  # fmt: skip


@pytest.fixture(scope="module")
def room():
    return generate_scene(np.random.default_rng(3), select_classes(10), (), spacing=0.1)


def write_ply(path, xyz, colors, faces=None, coordinate="f8", color="u1"):
    channels = [*((a, coordinate) for a in "xyz"), *((c, color) for c in ("red", "green", "blue"))]
    vertex = np.empty(len(xyz), dtype=channels)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = colors[:, i]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements).write(str(path))
    return path


def predict(ckpt, scan, out):
    return run_predict(compose_config("predict", [f"ckpt={ckpt}", f"input={scan}", f"out={out}"]))


def test_a_georeferenced_scan_predicts_as_at_the_origin(checkpoint, room, tmp_path):
    near = write_ply(tmp_path / "near.ply", room.xyz, room.rgb, room.faces)
    far_xyz = room.xyz.astype(np.float64) + GEOREFERENCED
    far = write_ply(tmp_path / "far.ply", far_xyz, room.rgb, room.faces)
    near_out = predict(checkpoint, near, tmp_path / "near")
    far_out = predict(checkpoint, far, tmp_path / "far")
    same = np.load(far_out / "far_labels.npy") == np.load(near_out / "near_labels.npy")
    assert same.mean() > 0.99  # float64 rounding may move a point across a voxel border
    written = PlyData.read(str(far_out / "far_pred.ply"))["vertex"].data
    xyz = np.stack([written[a] for a in "xyz"], axis=1)
    np.testing.assert_allclose(xyz, far_xyz, rtol=0, atol=1e-3)  # the input's own coordinates


def test_a_scan_beyond_the_voxel_grid_is_refused(checkpoint, room, tmp_path):
    xyz = np.concatenate([room.xyz, [[2e9, 0, 0]]])
    rgb = np.concatenate([room.rgb, [[0, 0, 0]]])
    scan = write_ply(tmp_path / "huge.ply", xyz, rgb)
    with pytest.raises(InputError, match=r"huge\.ply: coordinates reach .* int32"):
        predict(checkpoint, scan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("color_type", sorted(COLOURS))
def test_ply_colours_of_any_type_are_scaled_to_8_bit(color_type, room, tmp_path):
    xyz = room.xyz[:4]
    stored = np.repeat(np.asarray(COLOURS[color_type])[:, None], 3, axis=1)
    expected = np.repeat(np.array([0, 64, 128, 255], np.uint8)[:, None], 3, axis=1)
    mesh = write_ply(tmp_path / "mesh.ply", xyz, stored, [[0, 1, 2], [1, 2, 3]], "f4", color_type)
    np.testing.assert_array_equal(read_mesh(mesh)[1], expected)  # ceco3d-prep
    cloud = write_ply(tmp_path / "cloud.ply", xyz, stored, None, "f4", color_type)
    np.testing.assert_array_equal(read_scan(cloud).color, expected)  # ceco3d-predict
    np.testing.assert_array_equal(read_scan(mesh).color, expected)


@pytest.mark.parametrize(
    ("color_type", "values", "message"),
    [("i4", [0, 5, 70000, 9], "stored as int32"), ("f4", [0, 12, 200, 255], "must lie in 0..1")],
)
def test_ply_colours_that_cannot_be_read_are_refused(color_type, values, message, room, tmp_path):
    stored = np.repeat(np.asarray(values)[:, None], 3, axis=1)
    path = write_ply(tmp_path / "odd.ply", room.xyz[:4], stored, [[0, 1, 2]], "f4", color_type)
    for read in (read_mesh, read_scan):
        with pytest.raises(InputError, match=rf"odd\.ply: colours .*{message}"):
            read(path)


def test_a_bad_face_index_fails_that_scan_alone(checkpoint, room, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    write_ply(folder / "good.ply", room.xyz, room.rgb, room.faces)
    faces = room.faces.copy()
    faces[7, 1] = len(room.xyz) + 5
    write_ply(folder / "broken.ply", room.xyz, room.rgb, faces)
    with pytest.raises(InputError, match="1 of 2 scans failed"):
        predict(checkpoint, folder, tmp_path / "out")
    assert (tmp_path / "out" / "good_labels.npy").is_file()
    assert not list((tmp_path / "out").glob("broken_*"))
    with pytest.raises(InputError, match=r"broken\.ply: face 7 refers to vertex"):
        read_scan(folder / "broken.ply")
