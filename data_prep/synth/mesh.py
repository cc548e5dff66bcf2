"""Triangle-mesh primitives and the object shapes of the synthetic generator.

Shapes are built in an object frame: x across (width), y front to back (depth), z up from the
floor at 0, centred on the z axis. Every surface is tessellated so that vertices are at most
``spacing`` apart, and triangles wind counter-clockwise seen from outside (normals point out).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil, pi

import numpy as np


@dataclass(frozen=True)
class Part:
    """One piece of an object: (n, 3) float64 vertices and (m, 3) int64 faces."""

    vertices: np.ndarray
    faces: np.ndarray


def _steps(length: float, spacing: float) -> int:
    return max(1, ceil(length / spacing - 1e-9))


def grid(origin, u, v, spacing: float) -> Part:
    """The parallelogram ``origin + s u + t v`` (s, t in [0, 1]); its normal is ``u x v``."""
    origin, u, v = (np.asarray(a, dtype=np.float64) for a in (origin, u, v))
    nu, nv = _steps(np.linalg.norm(u), spacing), _steps(np.linalg.norm(v), spacing)
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    vertices = origin + s[..., None] * u + t[..., None] * v
    index = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
    return Part(vertices.reshape(-1, 3), faces)


def box(lo, size, spacing: float, bottom: bool = False) -> list[Part]:
    """An axis-aligned box from corner ``lo`` with ``size`` (w, d, h); no bottom face unless
    asked (nothing scans the underside of furniture)."""
    (x, y, z), (w, d, h) = lo, size
    faces = [
        grid((x, y, z + h), (w, 0, 0), (0, d, 0), spacing),  # top
        grid((x, y, z), (w, 0, 0), (0, 0, h), spacing),  # front (-y)
        grid((x, y + d, z), (0, 0, h), (w, 0, 0), spacing),  # back (+y)
        grid((x, y, z), (0, 0, h), (0, d, 0), spacing),  # left (-x)
        grid((x + w, y, z), (0, d, 0), (0, 0, h), spacing),  # right (+x)
    ]
    if bottom:
        faces.append(grid((x, y, z), (0, d, 0), (w, 0, 0), spacing))
    return faces


def centred_box(cx, cy, z0, w, d, h, spacing: float) -> list[Part]:
    return box((cx - w / 2, cy - d / 2, z0), (w, d, h), spacing)


def revolve(profile, spacing: float, centre=(0.0, 0.0)) -> Part:
    """Surface of revolution about the vertical axis through ``centre``.

    ``profile`` lists (radius, z) points; walking along it, the outside is on the right (start
    at the bottom centre, go out, up and back in to close a solid). Radius 0 is a pole.
    """
    points = [np.asarray(profile[0], dtype=np.float64)]
    for p, q in itertools.pairwise(profile):
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
        n = _steps(np.linalg.norm(q - p), spacing)
        points.extend(p + (q - p) * k / n for k in range(1, n + 1))
    radius, z = np.array(points).T
    n_theta = max(8, _steps(2 * pi * radius.max(), spacing))
    theta = np.arange(n_theta) * (2 * pi / n_theta)

    vertices, ring_index, count = [], [], 0
    for r, height in zip(radius, z, strict=True):
        if r == 0:
            vertices.append([[centre[0], centre[1], height]])
            ring_index.append(np.full(n_theta, count))
            count += 1
        else:
            ring = np.stack(
                [
                    centre[0] + r * np.cos(theta),
                    centre[1] + r * np.sin(theta),
                    np.full(n_theta, height),
                ],
                axis=1,
            )
            vertices.append(ring)
            ring_index.append(count + np.arange(n_theta))
            count += n_theta
    faces = []
    for a, b in itertools.pairwise(ring_index):
        a1, b1 = np.roll(a, -1), np.roll(b, -1)
        faces += [np.stack([a, a1, b1], -1), np.stack([a, b1, b], -1)]
    faces = np.concatenate(faces)
    distinct = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    )
    return Part(np.concatenate(vertices), faces[distinct])


def cylinder(r: float, z0: float, z1: float, spacing: float, centre=(0.0, 0.0)) -> Part:
    return revolve([(0, z0), (r, z0), (r, z1), (0, z1)], spacing, centre)


# --- object shapes: (width, depth, height, spacing) -> parts --------------------------------


def _legs(w, d, h, leg, spacing) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx, cy = sx * (w / 2 - leg), sy * (d / 2 - leg)
            parts += centred_box(cx, cy, 0, leg, leg, h, spacing)
    return parts


def table(w, d, h, s):
    return centred_box(0, 0, h - 0.04, w, d, 0.04, s) + _legs(w, d, h - 0.04, 0.05, s)


def desk(w, d, h, s):
    sides = [
        *centred_box(-(w / 2 - 0.015), 0, 0, 0.03, d, h - 0.03, s),
        *centred_box(w / 2 - 0.015, 0, 0, 0.03, d, h - 0.03, s),
    ]
    modesty = centred_box(0, d / 2 - 0.02, h / 2, w - 0.06, 0.02, h / 2 - 0.03, s)
    return centred_box(0, 0, h - 0.03, w, d, 0.03, s) + sides + modesty


def chair(w, d, h, s):
    seat = 0.45
    return (
        centred_box(0, 0, seat - 0.05, w, d, 0.05, s)
        + centred_box(0, d / 2 - 0.025, seat, w, 0.05, h - seat, s)
        + _legs(w, d, seat - 0.05, 0.04, s)
    )


def office_chair(w, d, h, s):
    seat = 0.5
    return (
        centred_box(0, 0, seat - 0.08, w, d, 0.08, s)
        + centred_box(0, d / 2 - 0.03, seat + 0.05, w * 0.9, 0.06, h - seat - 0.05, s)
        + [cylinder(0.03, 0.08, seat - 0.08, s), cylinder(w / 2, 0.0, 0.08, s)]
    )


def stool(w, d, h, s):
    return [cylinder(w / 2, h - 0.05, h, s), *_legs(w * 0.75, w * 0.75, h - 0.05, 0.03, s)]


def sofa(w, d, h, s):
    arm = 0.15
    return (
        centred_box(0, -0.1, 0, w - 2 * arm, d - 0.2, 0.42, s)
        + centred_box(0, d / 2 - 0.1, 0, w, 0.2, h, s)
        + centred_box(-(w - arm) / 2, -0.1, 0, arm, d - 0.2, 0.6, s)
        + centred_box((w - arm) / 2, -0.1, 0, arm, d - 0.2, 0.6, s)
    )


def bed(w, d, h, s):
    return (
        centred_box(0, -0.04, 0, w, d - 0.08, 0.3, s)
        + centred_box(0, -0.04, 0.3, w - 0.04, d - 0.12, 0.2, s)
        + centred_box(0, d / 2 - 0.04, 0, w, 0.08, h, s)
    )


def shelf(w, d, h, s, back=False):
    boards = max(2, round(h / 0.35))
    parts = centred_box(-(w / 2 - 0.015), 0, 0, 0.03, d, h, s)
    parts += centred_box(w / 2 - 0.015, 0, 0, 0.03, d, h, s)
    for k in range(boards + 1):
        parts += centred_box(0, 0, k * (h - 0.02) / boards, w - 0.06, d, 0.02, s)
    if back:
        parts += centred_box(0, d / 2 - 0.01, 0, w - 0.06, 0.02, h, s)
    return parts


def bookshelf(w, d, h, s):
    return shelf(w, d, h, s, back=True)


def lamp(w, d, h, s):
    return [
        cylinder(w * 0.35, 0, 0.03, s),
        cylinder(0.015, 0.03, 0.75 * h, s),
        revolve([(0, 0.7 * h), (w / 2, 0.7 * h), (w * 0.3, h), (0, h)], s),
    ]


def toilet(w, d, h, s):
    bowl = revolve([(0, 0), (w * 0.35, 0), (w / 2, 0.4), (0, 0.4)], s, centre=(0, -d / 2 + w / 2))
    return [bowl, *centred_box(0, d / 2 - 0.1, 0, w * 1.1, 0.2, h, s)]


def monitor(w, d, h, s):
    return (
        centred_box(0, 0, 0, w * 0.4, d, 0.02, s)
        + centred_box(0, 0, 0.02, 0.05, 0.03, 0.12, s)
        + centred_box(0, 0, 0.12, w, 0.03, h - 0.12, s)
    )


def laptop(w, d, h, s):
    return centred_box(0, 0, 0, w, d, 0.02, s) + centred_box(
        0, d / 2 - 0.005, 0.02, w, 0.01, h - 0.02, s
    )


def bottle(w, d, h, s):
    r = w / 2
    return [revolve([(0, 0), (r, 0), (r, 0.7 * h), (0.35 * r, 0.85 * h), (0.35 * r, h), (0, h)], s)]


def bowl(w, d, h, s):
    return [revolve([(0, 0), (w * 0.3, 0), (w / 2, h), (0, h)], s)]


def sphere(w, d, h, s):
    angles = np.linspace(-pi / 2, pi / 2, 9)
    r = w / 2
    return [
        revolve([(r * np.cos(a) if abs(a) < pi / 2 else 0, r + r * np.sin(a)) for a in angles], s)
    ]


def guitar(w, d, h, s):
    body = 0.5 * h
    return centred_box(0, 0, 0, w, d, body, s) + centred_box(0, 0, body, 0.06, 0.04, h - body, s)


def plain_box(w, d, h, s):
    return centred_box(0, 0, 0, w, d, h, s)


def plain_cylinder(w, d, h, s):
    return [cylinder(w / 2, 0, h, s)]


SHAPES: dict[str, Callable[..., list[Part]]] = {
    "box": plain_box, "cylinder": plain_cylinder, "table": table, "desk": desk, "chair": chair,
    "office_chair": office_chair, "stool": stool, "sofa": sofa, "bed": bed, "shelf": shelf,
    "bookshelf": bookshelf, "lamp": lamp, "toilet": toilet, "monitor": monitor, "laptop": laptop,
    "bottle": bottle, "bowl": bowl, "sphere": sphere, "guitar": guitar,
}  # fmt: skip


def support_height(shape: str, height: float) -> float | None:
    """Height of the flat top that smaller objects can stand on; None where there is none."""
    if shape in ("box", "table", "desk"):
        return height if height >= 0.3 else None
    return {"bed": 0.5, "sofa": 0.42}.get(shape)
