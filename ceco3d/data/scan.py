"""A user's own scan, a mesh or a point cloud in a format open3d reads, as the points a model
trained on prepared ScanNet expects: metres, z up, colour 0..255, unit normals.

Meshes keep their faces (for the outputs) and get the area-weighted vertex normals that
preprocessing computes; point clouds get normals estimated by open3d from a neighbourhood of
each point. Points with NaN or infinite coordinates are dropped and counted; ``kept`` says which
input points remain, so outputs can still be given per input point.

open3d is imported inside the functions that need it, so that training and preprocessing, which
import this package, never load it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceco3d.data.geometry import vertex_normals
from ceco3d.errors import InputError
from ceco3d.io import COLOR_CHANNELS, colors_as_uint8, ply_header

log = logging.getLogger("ceco3d.scan")

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".off", ".stl", ".fbx")
CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
SUFFIXES = tuple(sorted(set(MESH_SUFFIXES) | set(CLOUD_SUFFIXES)))
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
UP_AXES = ("z", "y", "x", "-z", "-y", "-x")
# Colour feature 0 (``color / 127.5 - 1``): the colour channels then add nothing to the first
# convolution, as if the scan had no colour.
NEUTRAL_COLOR = 127.5
# Largest side of the bounding box outside which an indoor scan was probably read in the
# wrong unit: a room is not 30 cm nor 100 m across.
INDOOR_EXTENT_M = (0.3, 100.0)


@dataclass
class Scan:
    """``xyz`` (N, 3) float32 metres, z up, relative to ``origin`` (3,) float64 (whole metres
    near the scan's centre, so that a georeferenced scan keeps its millimetres); ``color``
    (N, 3) uint8 or None when the file has none; ``faces`` (F, 3) int32 into ``xyz``, None for
    a point cloud; ``kept`` (N_input,) bool, the input points with finite coordinates (``xyz``
    holds exactly those, in input order)."""

    path: Path
    xyz: np.ndarray
    color: np.ndarray | None
    faces: np.ndarray | None
    kept: np.ndarray
    origin: np.ndarray

    @property
    def num_dropped(self) -> int:
        return int(len(self.kept) - len(self.xyz))

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None


def open3d():
    """The open3d module, quiet (this module reports read failures itself)."""
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def check_scan_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(
            f"{path}: unsupported extension {path.suffix!r}; ceco3d-predict reads "
            f"{', '.join(SUFFIXES)} (convert the scan to one of them, e.g. PLY)"
        )


def scan_files(path: Path) -> list[Path]:
    """``path`` itself, or the supported files directly in the folder ``path`` (sorted)."""
    if not path.is_dir():
        check_scan_path(path)
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"{path}: folder holds no scan ({', '.join(SUFFIXES)})")
    return files


def _colors(path: Path, read: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours from open3d's (N, 3) floats. open3d divides a PLY's colour values by
    255 whatever their type (16-bit ones then exceed 1, floats 0..1 all but vanish), so for a
    PLY the values are taken back and scaled by the type its header gives."""
    properties = ply_header(path).get("vertex", (0, {}))[1] if path.suffix.lower() == ".ply" else {}
    if "red" not in properties:
        return np.round(np.clip(read, 0, 1) * 255).astype(np.uint8)
    dtype = properties["red"]
    if any(properties.get(c) != dtype for c in COLOR_CHANNELS):
        raise InputError(f"{path}: the colour channels {COLOR_CHANNELS} have different types")
    values = read * 255.0
    return colors_as_uint8(np.round(values) if dtype.kind != "f" else values, dtype, path)


def _check_faces(path: Path, faces: np.ndarray, num_points: int) -> None:
    bad = (faces < 0) | (faces >= num_points)
    if bad.any():
        face = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(
            f"{path}: face {face} refers to vertex {int(faces[bad][0])}, but the vertices are "
            f"0..{num_points - 1} ({int(bad.any(axis=1).sum())} such faces); repair or re-export "
            "the mesh"
        )


def _read_geometry(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(N, 3) float64 coordinates as the file has them, (N, 3) uint8 colours or None, and
    (F, 3) int32 faces or None (a point cloud)."""
    o3d = open3d()
    suffix = path.suffix.lower()
    faces_declared = suffix == ".ply" and ply_header(path).get("face", (0, {}))[0] > 0
    is_mesh = suffix in MESH_SUFFIXES and (suffix != ".ply" or faces_declared)
    if is_mesh:
        mesh = o3d.io.read_triangle_mesh(str(path))
        xyz, colors = np.asarray(mesh.vertices), np.asarray(mesh.vertex_colors)
        # A mesh file of vertices only is a point cloud (its normals are then estimated).
        faces = np.asarray(mesh.triangles, dtype=np.int32) if len(mesh.triangles) else None
    else:
        cloud = o3d.io.read_point_cloud(str(path))
        xyz, colors, faces = np.asarray(cloud.points), np.asarray(cloud.colors), None
    if len(xyz) == 0:
        raise InputError(
            f"{path}: no points (the file is empty, or not a readable {suffix} "
            f"{'mesh' if is_mesh else 'point cloud'})"
        )
    if faces is not None:
        _check_faces(path, faces, len(xyz))
    color = _colors(path, colors) if len(colors) == len(xyz) else None
    return np.array(xyz, dtype=np.float64), color, faces


def check_frame(units: str, up: str) -> None:
    if units not in UNITS:
        raise InputError(f"units={units}: choose one of {', '.join(UNITS)}")
    if up not in UP_AXES:
        raise InputError(f"up={up}: choose one of {', '.join(UP_AXES)}")


def up_rotation(up: str) -> np.ndarray:
    """(3, 3) proper rotation taking the unit vector along ``up`` (e.g. ``"-y"``) to +z."""
    axis = "xyz".index(up[-1])
    new_z = np.eye(3)[axis] * (-1.0 if up.startswith("-") else 1.0)
    new_x = np.eye(3)[(axis + 1) % 3]
    return np.stack([new_x, np.cross(new_z, new_x), new_z])


def to_metres_z_up(xyz: np.ndarray, units: str, up: str) -> np.ndarray:
    """(N, 3) float64: ``xyz`` scaled from ``units`` to metres and turned so ``up`` is +z."""
    check_frame(units, up)
    return np.asarray(xyz, dtype=np.float64) @ (UNITS[units] * up_rotation(up)).T


def from_metres_z_up(xyz: np.ndarray, units: str, up: str) -> np.ndarray:
    """(N, 3) float64: the inverse of ``to_metres_z_up``, back in the input's unit and axes."""
    return np.asarray(xyz, dtype=np.float64) @ up_rotation(up) / UNITS[units]


def recentre(metres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float32 coordinates relative to the (3,) float64 origin, the whole metres nearest
    the bounding box's centre: float32 keeps about 7 digits, so 5,000,000 m would lose 0.5 m
    where relative coordinates lose micrometres (and a room near 0 keeps origin 0)."""
    origin = np.round((metres.min(axis=0) + metres.max(axis=0)) / 2)
    return (metres - origin).astype(np.float32), origin


def input_coordinates(scan: Scan, units: str, up: str) -> np.ndarray:
    """(N, 3) float64 coordinates of the kept points in the input's unit and axes."""
    return from_metres_z_up(scan.xyz.astype(np.float64) + scan.origin, units, up)


def warn_if_not_room_sized(path: Path, xyz: np.ndarray, units: str) -> None:
    extent = float(max(c.max() - c.min() for c in xyz.T))
    low, high = INDOOR_EXTENT_M
    if not low <= extent <= high:
        log.warning(
            "%s: the scan is %.3g m across with units=%s; an indoor scene is %g-%g m, so the "
            "unit is probably wrong (set units=m, cm or mm)", path, extent, units, low, high,
        )  # fmt: skip


def _kept_faces(faces: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Faces whose three corners are all kept, renumbered over the kept points."""
    new_index = np.cumsum(kept, dtype=np.int64) - 1
    whole = kept[faces].all(axis=1)
    return new_index[faces[whole]].astype(np.int32)


def read_scan(path: str | Path, units: str = "m", up: str = "z") -> Scan:
    """Read a mesh or point cloud, drop non-finite points, convert to metres and z up."""
    path = Path(path)
    check_scan_path(path)
    xyz, color, faces = _read_geometry(path)
    kept = np.isfinite(xyz).all(axis=1)
    if not kept.any():
        raise InputError(f"{path}: every one of its {len(xyz)} points has NaN or inf coordinates")
    if not kept.all():
        log.warning("%s: dropped %d of %d points with NaN or inf coordinates",
                    path, int((~kept).sum()), len(kept))  # fmt: skip
        xyz = xyz[kept]
        color = None if color is None else color[kept]
        faces = None if faces is None else _kept_faces(faces, kept)
    if color is None:
        log.warning(
            "%s: no colours; using neutral grey (%g), so the model sees geometry only and "
            "predicts less well", path, NEUTRAL_COLOR,
        )  # fmt: skip
    xyz, origin = recentre(to_metres_z_up(xyz, units, up))
    warn_if_not_room_sized(path, xyz, units)
    return Scan(path, xyz, color, faces, kept, origin)


def estimate_normals(xyz: np.ndarray, radius: float, max_nn: int) -> np.ndarray:
    """(N, 3) float32 unit normals of a point cloud: open3d's plane fit to at most ``max_nn``
    neighbours within ``radius`` metres, each turned to face the centre of the bounding box.
    A scan is taken from inside the room, so its surfaces face the room's interior, as the
    camera-facing normals of ScanNet's meshes do."""
    o3d = open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    center = (xyz.min(axis=0) + xyz.max(axis=0)) / 2
    cloud.orient_normals_towards_camera_location(center.astype(np.float64))
    return np.asarray(cloud.normals, dtype=np.float32)


def scan_normals(scan: Scan, radius: float, max_nn: int) -> np.ndarray:
    """Model-input normals: a mesh's area-weighted vertex normals (as ``ceco3d-prep`` computes
    them; normals stored in the file are ignored, for they may be made otherwise), or normals
    estimated for a point cloud."""
    if scan.is_mesh:
        return vertex_normals(scan.xyz, scan.faces)
    return estimate_normals(scan.xyz, radius, max_nn)
