"""Reading one's own scans (ceco3d.data.scan): frames, normals, dropped points, refusals; and
that open3d stays out of training and preprocessing."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from ceco3d.data.geometry import vertex_areas
from ceco3d.data.scan import (
    UP_AXES,
    estimate_normals,
    from_metres_z_up,
    read_scan,
    scan_files,
    to_metres_z_up,
    up_rotation,
)
from ceco3d.errors import InputError

o3d = pytest.importorskip("open3d", reason="scans are read with open3d")


@pytest.mark.parametrize("up", UP_AXES)
def test_up_rotation_is_proper_and_takes_up_to_z(up):
    rotation = up_rotation(up)
    vector = np.zeros(3)
    vector["xyz".index(up[-1])] = -1.0 if up.startswith("-") else 1.0
    np.testing.assert_allclose(rotation @ vector, [0, 0, 1])
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_units_and_axes_round_trip():
    xyz = np.random.default_rng(0).uniform(-300, 300, (50, 3))
    metres = to_metres_z_up(xyz, "cm", "y")
    np.testing.assert_allclose(metres[:, 2], xyz[:, 1] / 100, rtol=1e-6)
    np.testing.assert_allclose(from_metres_z_up(metres, "cm", "y"), xyz, rtol=1e-5, atol=1e-4)


def _box_room(spacing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Points on the floor (z=0) and on the wall x=0 of a 4 x 4 x 2.5 m room, and which is
    which (True: floor)."""
    grid = np.arange(0, 4 + 1e-9, spacing)
    u, v = np.meshgrid(grid, grid)
    floor = np.stack([u.ravel(), v.ravel(), np.zeros(u.size)], 1)
    wall = np.stack([np.zeros(u.size), u.ravel(), 2.5 * v.ravel() / 4], 1)
    return np.concatenate([floor, wall]), np.arange(2 * u.size) < u.size


def test_estimated_normals_face_into_the_room():
    xyz, is_floor = _box_room()
    normals = estimate_normals(xyz.astype(np.float32), radius=0.25, max_nn=30)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)
    inner = (xyz[:, 0] > 0.3) & (xyz[:, 2] > 0.3) | (is_floor & (xyz[:, 0] > 0.3))
    assert (normals[is_floor & inner, 2] > 0.99).all()  # floor: up
    assert (normals[~is_floor & inner, 0] > 0.99).all()  # wall x=0: towards +x


def test_vertex_areas_share_out_the_faces():
    xyz = np.array([[0, 0, 0], [2, 0, 0], [0, 3, 0], [2, 3, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    areas = vertex_areas(xyz, faces)
    np.testing.assert_allclose(areas, [1, 2, 2, 1])  # each triangle is 3 m²
    assert areas.sum() == pytest.approx(6)


def test_mesh_with_a_non_finite_vertex_loses_its_faces(tmp_path, caplog):
    xyz, is_floor = _box_room(spacing=1.0)
    xyz = xyz[is_floor]  # a 5 x 5 grid of floor points
    faces = np.array([[0, 1, 5], [1, 6, 5], [6, 7, 11], [7, 12, 11]])
    xyz[6] = [np.nan, 0, 0]
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(xyz),
                                     o3d.utility.Vector3iVector(faces))  # fmt: skip
    path = tmp_path / "floor.ply"
    o3d.io.write_triangle_mesh(str(path), mesh)
    with caplog.at_level(logging.WARNING):
        scan = read_scan(path)
    assert scan.num_dropped == 1 and len(scan.xyz) == len(xyz) - 1 and not scan.kept[6]
    assert scan.is_mesh and scan.color is None
    # The faces on vertex 6 go; the vertices after it move down by one.
    np.testing.assert_array_equal(scan.faces, [[0, 1, 5], [6, 11, 10]])
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped 1 of 25 points" in messages and "no colours" in messages


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_scan(tmp_path / "absent.pcd")
    (tmp_path / "scan.las").write_text("")
    with pytest.raises(InputError, match=r"unsupported extension '\.las'"):
        read_scan(tmp_path / "scan.las")
    with pytest.raises(InputError, match="folder holds no scan"):
        scan_files(tmp_path)
    (tmp_path / "garbage.ply").write_text("not a ply\n")
    with pytest.raises(InputError, match="no points"):
        read_scan(tmp_path / "garbage.ply")
    with pytest.raises(InputError, match="up=w"):
        to_metres_z_up(np.zeros((1, 3)), "m", "w")


def test_training_and_prep_do_not_import_open3d():
    """open3d is loaded only by the commands that read scans, and only when they read one."""
    code = ("import sys, ceco3d.engine.train, ceco3d.cli.train, data_prep.prep, "
            "ceco3d.engine.segment, ceco3d.cli.predict, ceco3d.viewer; "
            "sys.exit('open3d' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
