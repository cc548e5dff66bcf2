"""One synthetic room: walls, floor, maybe a ceiling, and furniture-like objects.

The room is built axis-aligned in metres (x in [0, W], y in [0, D], floor at z = 0). Objects
stand on the floor, hang on a wall, hang from the ceiling or stand on top of furniture. Each
object is over-segmented into patches (walls and floor into 1 m patches) and annotated as one
aggregation group, except a little unannotated clutter, as in real ScanNet scenes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import cos, pi, sin, sqrt

import numpy as np

from data_prep.synth.classes import BY_NAME, STRUCTURE, SynthClass
from data_prep.synth.mesh import SHAPES, Part, grid, support_height

OBJECT_PATCH = 0.5  # metres: segment size on objects
STRUCTURE_PATCH = 1.0  # and on walls, floor and ceiling
POSITION_NOISE = 0.003  # metres, like a depth sensor's
COLOR_NOISE = 6.0
ALIAS_PROBABILITY = 0.2
CEILING_PROBABILITY = 0.3
MAX_ATTEMPTS = 30  # room enlargements before giving up
ROOM_SIDE = (3.0, 5.5)  # metres, before enlarging for the objects
UNKNOWN_LABEL = "synthetic unknown category"
CLUTTER = SynthClass(
    "", 40, "box", "floor", ((0.1, 0.4), (0.1, 0.4), (0.05, 0.3)), (128, 128, 128), 60, 0.5
)


class PlacementError(Exception):
    """A required object found no free place; the room is rebuilt larger."""


@dataclass
class RawScene:
    """A scene in its aligned frame: mesh, per-vertex segment ids and aggregation groups."""

    xyz: np.ndarray
    rgb: np.ndarray
    faces: np.ndarray
    segments: np.ndarray
    groups: list[dict]


@dataclass
class _Object:
    label: str | None  # None: unannotated
    parts: list[Part]
    color: np.ndarray
    patch: float = OBJECT_PATCH


@dataclass
class _Room:
    width: float
    depth: float
    height: float
    objects: list[_Object] = field(default_factory=list)
    floor_boxes: list[tuple] = field(default_factory=list)
    supports: list[dict] = field(default_factory=list)
    wall_boxes: dict[int, list[tuple]] = field(default_factory=lambda: {k: [] for k in range(4)})

    def wall(self, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Wall ``k``'s start corner, direction along it (inside on the left) and length."""
        w, d = self.width, self.depth
        start, along = [((0, 0), (1, 0)), ((w, 0), (0, 1)), ((w, d), (-1, 0)), ((0, d), (0, -1))][k]
        return np.array([*start, 0.0]), np.array([*along, 0.0]), (w, d, w, d)[k]


def _overlaps(box: tuple, others: list[tuple], margin: float) -> bool:
    x0, y0, x1, y1 = box
    return any(
        x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
        for b in others
    )


def _transform(parts: list[Part], yaw: float, offset) -> list[Part]:
    c, s = cos(yaw), sin(yaw)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return [Part(p.vertices @ rotation.T + offset, p.faces) for p in parts]


def _size(rng: np.random.Generator, cls: SynthClass) -> tuple[float, float, float]:
    w = rng.uniform(*cls.size[0])
    d = rng.uniform(*cls.size[1]) if cls.size[1][1] > 0 else w
    h = rng.uniform(*cls.size[2]) if cls.size[2][1] > 0 else w
    return w, d, h


def _color(rng: np.random.Generator, cls: SynthClass) -> np.ndarray:
    shift = rng.normal(0, 0.7 * cls.color_std) + rng.normal(0, 0.5 * cls.color_std, 3)
    return np.asarray(cls.color, dtype=np.float64) + shift


def _label(rng: np.random.Generator, cls: SynthClass) -> str | None:
    if not cls.name:
        return None
    if cls.aliases and rng.random() < ALIAS_PROBABILITY:
        return str(rng.choice(cls.aliases))
    return cls.name


def _place_floor(rng, room: _Room, cls, size, tries: int = 80):
    w, d, h = size
    for _ in range(tries):
        yaw = rng.integers(4) * pi / 2 + rng.normal(0, 0.08)
        ex = abs(cos(yaw)) * w / 2 + abs(sin(yaw)) * d / 2
        ey = abs(sin(yaw)) * w / 2 + abs(cos(yaw)) * d / 2
        if 2 * ex + 0.1 > room.width or 2 * ey + 0.1 > room.depth:
            return None
        x = rng.uniform(ex + 0.05, room.width - ex - 0.05)
        y = rng.uniform(ey + 0.05, room.depth - ey - 0.05)
        footprint = (x - ex, y - ey, x + ex, y + ey)
        if not _overlaps(footprint, room.floor_boxes, 0.05):
            room.floor_boxes.append(footprint)
            top = support_height(cls.shape, h)
            if top is not None:
                shrink = 0.05 if cls.shape in ("box", "table", "desk") else 0.2
                rect = (x - ex + shrink, y - ey + shrink, x + ex - shrink, y + ey - shrink)
                if rect[2] > rect[0] and rect[3] > rect[1]:
                    room.supports.append({"rect": rect, "z": top, "items": []})
            return yaw, (x, y, 0.0)
    return None


def _place_top(rng, room: _Room, size):
    w, d, _ = size
    for k in rng.permutation(len(room.supports)):
        support = room.supports[k]
        x0, y0, x1, y1 = support["rect"]
        for _ in range(10):
            yaw = rng.uniform(0, 2 * pi)
            ex = abs(cos(yaw)) * w / 2 + abs(sin(yaw)) * d / 2
            ey = abs(sin(yaw)) * w / 2 + abs(cos(yaw)) * d / 2
            if 2 * ex > x1 - x0 or 2 * ey > y1 - y0:
                break
            x, y = rng.uniform(x0 + ex, x1 - ex), rng.uniform(y0 + ey, y1 - ey)
            footprint = (x - ex, y - ey, x + ex, y + ey)
            if not _overlaps(footprint, support["items"], 0.02):
                support["items"].append(footprint)
                return yaw, (x, y, support["z"])
    return None


def _place_wall(rng, room: _Room, cls, size, tries: int = 40):
    w, d, h = size
    for _ in range(tries):
        k = int(rng.integers(4))
        start, along, length = room.wall(k)
        if w + 0.1 > length:
            continue
        a = rng.uniform(w / 2 + 0.05, length - w / 2 - 0.05)
        z = min(rng.uniform(*cls.elevation), room.height - h - 0.05)
        rect = (a - w / 2, z, a + w / 2, z + h)
        if z >= 0 and not _overlaps(rect, room.wall_boxes[k], 0.03):
            room.wall_boxes[k].append(rect)
            inward = np.array([-along[1], along[0], 0.0])
            yaw = np.arctan2(along[1], along[0])
            return yaw, start + along * a + inward * (d / 2 + 0.003) + (0, 0, z)
    return None


def _place(rng, room: _Room, cls: SynthClass, size):
    if cls.place == "wall":
        return _place_wall(rng, room, cls, size)
    if cls.place == "ceiling":
        w, d, h = size
        x, y = rng.uniform(w / 2, room.width - w / 2), rng.uniform(d / 2, room.depth - d / 2)
        return rng.integers(2) * pi / 2, (x, y, room.height - h - 0.01)
    if cls.place == "top" and room.supports:
        placed = _place_top(rng, room, size)
        if placed is not None:
            return placed
    return _place_floor(rng, room, cls, size)


def _structure(rng, room: _Room, ceiling: bool, spacing: float) -> None:
    """Four walls facing in, the floor facing up and maybe the ceiling facing down."""
    w, d, h = room.width, room.depth, room.height
    surfaces = []
    for k in range(4):
        start, along, length = room.wall(k)
        surfaces.append(("wall", start, (0, 0, h), along * length))  # normal: up x along = in
    surfaces.append(("floor", (0, 0, 0), (w, 0, 0), (0, d, 0)))
    if ceiling:
        surfaces.append(("ceiling", (0, 0, h), (0, d, 0), (w, 0, 0)))
    for name, origin, u, v in surfaces:
        part = grid(origin, u, v, spacing)
        room.objects.append(_Object(name, [part], _color(rng, BY_NAME[name]), STRUCTURE_PATCH))


def _layout(
    rng, room: _Room, items: list[tuple[SynthClass, tuple, bool]], spacing: float, ceiling: bool
) -> None:
    _structure(rng, room, ceiling, spacing)
    order = {"floor": 0, "wall": 1, "ceiling": 2, "top": 3}
    # Large floor objects first, so that small ones fill the gaps and find supports.
    ranked = sorted(items, key=lambda it: (order[it[0].place], -it[1][0] * it[1][1]))
    for cls, size, required in ranked:
        placed = _place(rng, room, cls, size)
        if placed is None:
            if required:
                raise PlacementError(cls.name)
            continue
        yaw, offset = placed
        parts = _transform(SHAPES[cls.shape](*size, spacing), yaw, offset)
        room.objects.append(_Object(_label(rng, cls), parts, _color(rng, cls)))


def generate_scene(
    rng: np.random.Generator,
    used: Sequence[SynthClass],
    required: Sequence[SynthClass],
    spacing: float,
    objects: bool = True,
    unknown_label: bool = False,
) -> RawScene:
    """A room with random objects of the ``used`` classes (each drawn about ``rate`` times per
    25 m^2) plus one of each ``required`` class; no objects at all when ``objects`` is False."""
    width, depth, height = rng.uniform(*ROOM_SIDE), rng.uniform(*ROOM_SIDE), rng.uniform(2.5, 3.0)
    items: list[tuple[SynthClass, tuple, bool]] = []
    if objects:
        area = width * depth
        for cls in used:
            if cls.name not in STRUCTURE:
                count = rng.poisson(cls.rate * area / 25)
                items += [(cls, _size(rng, cls), False) for _ in range(count)]
        items += [(cls, _size(rng, cls), True) for cls in required if cls.name not in STRUCTURE]
        items += [(CLUTTER, _size(rng, CLUTTER), False) for _ in range(rng.poisson(CLUTTER.rate))]
        if unknown_label:
            unknown = SynthClass(
                UNKNOWN_LABEL, 40, "box", "floor", ((0.3, 0.5),) * 3, (100, 160, 100), 20, 0
            )
            items.append((unknown, _size(rng, unknown), True))
        floor_need = sum(s[0] * s[1] for c, s, _ in items if c.place in ("floor", "top"))
        scale = max(1.0, sqrt(3 * floor_need / area))
        width, depth = width * scale, depth * scale
    ceiling = any(c.name == "ceiling" for c in used) and (
        any(c.name == "ceiling" for c in required) or rng.random() < CEILING_PROBABILITY
    )
    for _ in range(MAX_ATTEMPTS):
        room = _Room(width, depth, height)
        try:
            _layout(rng, room, items, spacing, ceiling)
            return _assemble(rng, room.objects)
        except PlacementError:
            width, depth = width * 1.15, depth * 1.15
    raise RuntimeError(f"could not place {len(items)} objects even in a {width:.0f} m room")


def _assemble(rng, objects: list[_Object]) -> RawScene:
    """One mesh from all objects, with sensor noise, over-segments and one group per object."""
    xyz, rgb, faces, keys, owner = [], [], [], [], []
    count = key_count = 0
    for index, obj in enumerate(objects):
        for part in obj.parts:
            v = part.vertices
            cells = np.floor((v - v.min(0)) / obj.patch).astype(np.int64)
            _, local = np.unique(cells, axis=0, return_inverse=True)
            local = local.reshape(-1)
            keys.append(key_count + local)
            key_count += int(local.max()) + 1
            owner.append(np.full(int(local.max()) + 1, index))
            xyz.append(v)
            rgb.append(np.broadcast_to(obj.color, v.shape))
            faces.append(part.faces + count)
            count += len(v)
    xyz = np.concatenate(xyz)
    xyz = xyz + rng.normal(0, POSITION_NOISE, xyz.shape)
    rgb = np.concatenate(rgb) + rng.normal(0, COLOR_NOISE, xyz.shape)
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    key = np.concatenate(keys)
    # A segment's id is one of its vertex indices (its first): sparse ids, like ScanNet's.
    first = np.full(key_count, len(key), dtype=np.int64)
    np.minimum.at(first, key, np.arange(len(key)))
    segments = first[key]
    segment_owner = np.concatenate(owner)
    groups = []
    for index, obj in enumerate(objects):
        if obj.label is None:
            continue
        members = np.unique(first[segment_owner == index]).tolist()
        groups.append(
            {"id": len(groups), "objectId": len(groups), "segments": members, "label": obj.label}
        )
    return RawScene(xyz, rgb, np.concatenate(faces), segments, groups)
