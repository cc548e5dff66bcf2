"""File I/O shared by every stage: atomic writes and ScanNet mesh (PLY) reading and writing.

Every file ceco3d writes goes through ``atomic_write`` (temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from ceco3d.errors import InputError, UsageError

_UMASK = os.umask(0)
os.umask(_UMASK)


TEMPORARY_SUFFIX = ".tmp"  # of the hidden files and folders that atomic writes fill


def remove_entry(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree; absent is fine."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def temporaries(folder: Path, name: str = "*") -> list[Path]:
    """The temporary files and folders of atomic writes in ``folder`` (of ``folder / name``
    alone, where given): of writes under way, or of writes killed before they could clean up
    (``kill -9``, a power cut)."""
    return sorted(folder.glob(f".{name}.*{TEMPORARY_SUFFIX}")) if folder.is_dir() else []


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove, and return, ``temporaries(folder)``, where no other write can be under way."""
    found = temporaries(folder)
    for path in found:
        remove_entry(path)
    return found


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename is None:
            # A write that failed (a full disk) names no file; the user needs this one.
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary folder next to ``path`` to fill; when the ``with`` block ends without
    an exception it becomes ``path`` (which must not exist yet), otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(folder: Path, option: str) -> None:
    """Fail once, before any work, where the output ``folder`` (given by ``option``) cannot be
    created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(
            f"{folder}: cannot write the output folder ({e.strerror}); choose another {option} "
            "or make it writable"
        ) from None


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array))


def json_safe(obj: Any) -> Any:
    """Nested containers with NaN/inf floats as None and numpy scalars/arrays as Python values."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


TRIANGLES = {"face": {"vertex_indices": 3, "vertex_index": 3}}
COLOR_CHANNELS = ("red", "green", "blue")
PLY_HEADER_LINES = 1000  # read no further looking for a header's end (a file that is no PLY)
# PLY scalar type names (both spellings) -> numpy dtype
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def ply_header(path: str | os.PathLike) -> dict[str, tuple[int, dict[str, np.dtype]]]:
    """``{element: (count, {scalar property: numpy dtype})}`` from a PLY header alone (fast;
    list properties such as faces' are left out of the dict)."""
    elements: dict[str, tuple[int, dict[str, np.dtype]]] = {}
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f):
                words = line.decode("ascii", errors="replace").split()
                if words[:1] == ["end_header"] or number > PLY_HEADER_LINES:
                    break
                if words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
                    properties: dict[str, np.dtype] = {}
                    elements[words[1]] = (int(words[2]), properties)
                elif words[:1] == ["property"] and len(words) == 3 and elements:
                    if words[1] in PLY_TYPES:
                        properties[words[2]] = np.dtype(PLY_TYPES[words[1]])
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    return elements


def colors_as_uint8(values: np.ndarray, dtype: np.dtype, path: str | os.PathLike) -> np.ndarray:
    """(N, 3) uint8 colours from (N, 3) colour values a PLY stores as ``dtype``: 8-bit as they
    are, 16-bit scaled by 255/65535, floating point 0..1 scaled by 255. Other types, and
    floating-point values outside 0..1, are refused rather than guessed at."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and dtype.itemsize == 1:
        return np.asarray(values).astype(np.uint8)
    if dtype.kind == "u" and dtype.itemsize == 2:
        return np.round(np.asarray(values, dtype=np.float64) * (255 / 65535)).astype(np.uint8)
    if dtype.kind != "f":
        raise InputError(
            f"{path}: colours stored as {dtype.name}; ceco3d reads 8-bit (uchar) and 16-bit "
            "(ushort) colours and floating-point ones in 0..1: convert the colours to one of these"
        )
    values = np.asarray(values, dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        low, high = np.nanmin(values), np.nanmax(values)
        raise InputError(
            f"{path}: colours are {dtype.name} values from {low:g} to {high:g}; floating-point "
            "colours must lie in 0..1 (divide them by their full scale, e.g. 255, or store "
            "them as uchar 0..255)"
        )
    return np.round(values * 255).astype(np.uint8)


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a ScanNet ``*_vh_clean_2.ply``.

    Returns ``xyz`` (N, 3) float32, ``rgb`` (N, 3) uint8 and ``faces`` (F, 3) int64 vertex indices
    (F may be 0 for a point cloud).
    """
    try:
        try:
            # Declaring faces as 3-lists lets plyfile read them in one go instead of one Python
            # call per face (5x faster on a ScanNet mesh); other meshes take the general path.
            ply = PlyData.read(str(path), known_list_len=TRIANGLES)
        except PlyParseError:
            ply = PlyData.read(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (PlyParseError, ValueError, EOFError, OSError) as e:
        raise InputError(f"{path}: unreadable PLY ({e})") from None
    if "vertex" not in ply:
        raise InputError(f"{path}: PLY has no 'vertex' element")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    missing = [n for n in ("x", "y", "z", "red", "green", "blue") if n not in names]
    if missing:
        raise InputError(f"{path}: vertex element lacks properties {missing}")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    rgb = colors_as_uint8(np.stack([v[c] for c in COLOR_CHANNELS], axis=1), v["red"].dtype, path)
    faces = np.zeros((0, 3), dtype=np.int64)
    if "face" in ply and len(ply["face"].data):
        face_data = ply["face"].data
        key = "vertex_indices" if "vertex_indices" in face_data.dtype.names else "vertex_index"
        try:
            column = face_data[key]
            faces = (np.stack(column) if column.dtype == object else column).astype(np.int64)
        except ValueError:
            raise InputError(f"{path}: faces are not all triangles") from None
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise InputError(f"{path}: faces are not all triangles")
        if faces.size and (faces.min() < 0 or faces.max() >= len(xyz)):
            raise InputError(f"{path}: face refers to a vertex outside 0..{len(xyz) - 1}")
    if not np.isfinite(xyz).all():
        raise InputError(f"{path}: vertex coordinates contain NaN or inf")
    return xyz, rgb, faces


def write_mesh(
    path: str | os.PathLike,
    xyz: np.ndarray,
    rgb: np.ndarray,
    faces: np.ndarray | None = None,
    binary: bool = True,
    coordinate_type: str = "f4",
) -> None:
    """Write a mesh (or a point cloud when ``faces`` is None) in ScanNet's PLY layout (float32
    coordinates, unless ``coordinate_type="f8"``)."""
    vertex = np.empty(
        len(xyz),
        dtype=[*((axis, coordinate_type) for axis in "xyz"), *((c, "u1") for c in COLOR_CHANNELS)],
    )
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(COLOR_CHANNELS):
        vertex[channel] = rgb[:, i]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face"))
    with atomic_write(path) as f:
        PlyData(elements, text=not binary).write(f)


def count_ply_vertices(path: str | os.PathLike) -> int:
    """Vertex count from a PLY header alone (fast; used by the submission checker)."""
    header = ply_header(path)
    if "vertex" not in header:
        raise InputError(f"{path}: PLY header has no 'element vertex N' line")
    return header["vertex"][0]
