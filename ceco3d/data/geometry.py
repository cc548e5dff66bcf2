"""Mesh geometry that preprocessing and prediction must compute alike: the vertex normals the
model sees as features, and the surface area each vertex stands for."""

from __future__ import annotations

import numpy as np

FALLBACK_NORMAL = (0.0, 0.0, 1.0)


def _face_cross_products(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) float64: each face's cross product, twice its area times its unit normal."""
    corners = np.asarray(xyz, dtype=np.float64)[faces]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def vertex_normals(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (N, 3) float32 of unit length.

    Each face adds its cross product (twice its area times its unit normal) to its three
    vertices. Vertices on no face, or whose faces cancel or have zero area, get
    ``FALLBACK_NORMAL``.
    """
    normals = np.zeros((len(xyz), 3), dtype=np.float64)
    if len(faces):
        face_normals = _face_cross_products(xyz, faces)
        for axis in range(3):
            for corner in range(3):
                normals[:, axis] += np.bincount(
                    faces[:, corner], weights=face_normals[:, axis], minlength=len(xyz)
                )
    length = np.linalg.norm(normals, axis=1)
    defined = length > 1e-12
    normals[defined] /= length[defined, None]
    normals[~defined] = FALLBACK_NORMAL
    return normals.astype(np.float32)


def vertex_areas(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) float64 m²: a third of the area of every face a vertex is on, so that the areas of
    all vertices add up to the mesh's area."""
    areas = np.zeros(len(xyz), dtype=np.float64)
    if len(faces):
        third = np.linalg.norm(_face_cross_products(xyz, faces), axis=1) / 6
        for corner in range(3):
            areas += np.bincount(faces[:, corner], weights=third, minlength=len(xyz))
    return areas
