"""Point-level training augmentations, and the fixed views of test-time augmentation (``TTAView``):
small ``sample -> sample`` callables.

Every transform takes the sample dict and an explicit ``numpy.random.Generator`` and draws all of
its randomness from that generator, so a sample is a pure function of its seed. They act on the
point-level keys ``coord`` (N, 3) float32 metres, ``color`` (N, 3) float32 in 0..255 and, where
present, ``normal`` (N, 3) float32 unit vectors; other keys pass through untouched, except that a
transform that drops points (``RandomVoxelDropout``) drops the same rows of every array, so every
value in a sample is a per-point array (the dataset hands the point labels along as ``label``).
Arrays are replaced, never written in place, so a caller's arrays are never changed.

Geometric transforms act about the centre of the cloud's bounding box, so the scene stays where it
was. The defaults follow Pointcept's ScanNet recipe (``ceco3d/conf/aug/default.yaml`` lists them);
``ceco3d/conf/aug/csc.yaml`` and ``ceco3d/conf/aug/lg.yaml`` express the CSC / LG recipes with the
same pieces.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d, map_coordinates

from ceco3d.data.voxelize import voxelize

Sample = dict
Transform = Callable[[Sample, np.random.Generator], Sample]


class Compose:
    """Apply ``transforms`` in order; an empty list is the identity."""

    def __init__(self, transforms: Sequence[Transform] = ()) -> None:
        self.transforms = tuple(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({list(self.transforms)})"


class _Transform:
    """Gives every transform a readable repr. Transforms are plain classes, not dataclasses:
    OmegaConf would turn dataclass instances that Hydra instantiates into DictConfigs."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"


def _bounds(coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Column by column: numpy's axis-0 reduction over an (N, 3) array is ~8x slower.
    return np.array([c.min() for c in coord.T]), np.array([c.max() for c in coord.T])


def _bbox_center(coord: np.ndarray) -> np.ndarray:
    low, high = _bounds(coord)
    return ((low + high) / 2).astype(coord.dtype)


def _rotate(sample: Sample, rotation: np.ndarray) -> Sample:
    """Rotate ``coord`` about its bounding-box centre and ``normal`` (if any) by ``rotation``."""
    rotation = rotation.astype(np.float32)
    coord = sample["coord"]
    center = _bbox_center(coord)
    # einsum, not `@`: a (N, 3) x (3, 3) product in multithreaded BLAS stalls for tens of
    # milliseconds when loader workers and MinkowskiEngine's OpenMP threads share the cores.
    out = dict(sample, coord=np.einsum("ij,kj->ik", coord - center, rotation) + center)
    if "normal" in sample:
        out["normal"] = np.einsum("ij,kj->ik", sample["normal"], rotation)
    return out


def _rotation_matrix(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3  # cyclic, so right-handed about every axis (y too)
    rotation = np.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


class RandomRotateZ(_Transform):
    """Rotate about the vertical axis by an angle uniform in [-π, π)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return _rotate(sample, _rotation_matrix(2, rng.uniform(-np.pi, np.pi)))


class RandomTilt(_Transform):
    """Small rotations about x then y, each by an angle uniform in [-max_angle, max_angle]."""

    def __init__(self, max_angle: float = np.pi / 64) -> None:
        self.max_angle = float(max_angle)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        angle_x, angle_y = rng.uniform(-self.max_angle, self.max_angle, size=2)
        return _rotate(sample, _rotation_matrix(1, angle_y) @ _rotation_matrix(0, angle_x))


class RandomRotation(_Transform):
    """Rotate about x, y and z by angles uniform in ``bounds`` (one (low, high) pair of radians per
    axis), the three rotations composed in a random order when ``random_order`` is set (the CSC /
    LG voxelizer does so "to prevent bias")."""

    def __init__(
        self,
        bounds: Sequence[Sequence[float]] = ((-np.pi / 64, np.pi / 64),) * 2 + ((-np.pi, np.pi),),
        random_order: bool = True,
    ) -> None:
        self.bounds = tuple((float(low), float(high)) for low, high in bounds)
        if len(self.bounds) != 3:
            raise ValueError(
                f"RandomRotation bounds: one (low, high) per axis x, y, z, not {list(bounds)}"
            )
        self.random_order = bool(random_order)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        rotations = [
            _rotation_matrix(axis, rng.uniform(low, high))
            for axis, (low, high) in enumerate(self.bounds)
        ]
        if self.random_order:
            rotations = [rotations[i] for i in rng.permutation(3)]
        return _rotate(sample, rotations[0] @ rotations[1] @ rotations[2])


class RandomFlip(_Transform):
    """Mirror x and y independently, each with probability ``p``, about the box centre; the whole
    step runs with probability ``p_apply`` (CSC / LG: 0.95, then 0.5 per axis)."""

    def __init__(self, p: float = 0.5, p_apply: float = 1.0) -> None:
        self.p, self.p_apply = float(p), float(p_apply)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        # Draw for p_apply only when it can fail, so recipes without it see the same random stream.
        if self.p_apply < 1 and rng.random() >= self.p_apply:
            return sample
        flip = rng.random(2) < self.p
        if not flip.any():
            return sample
        sign = np.array([-1 if flip[0] else 1, -1 if flip[1] else 1, 1], dtype=np.float32)
        coord = sample["coord"]
        center = _bbox_center(coord)
        out = dict(sample, coord=(coord - center) * sign + center)
        if "normal" in sample:
            out["normal"] = sample["normal"] * sign
        return out


class RandomScale(_Transform):
    """Scale isotropically about the box centre by a factor uniform in [low, high]."""

    def __init__(self, low: float = 0.9, high: float = 1.1) -> None:
        self.low, self.high = float(low), float(high)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = np.float32(rng.uniform(self.low, self.high))
        coord = sample["coord"]
        center = _bbox_center(coord)
        return dict(sample, coord=(coord - center) * scale + center)


class RandomVoxelDropout(_Transform):
    """With probability ``p``, remove the points of a random ``ratio`` share of the voxels they
    occupy at ``voxel_size`` metres, and the same rows of every other per-point array.

    CSC's ``RandomDropout`` drops voxels of the voxelized scene. Here the points go before
    voxelization, so only whole-voxel shifts (``RandomGridShift``) may follow this transform: its
    grid has to be the one the dataset voxelizes on.
    """

    def __init__(self, voxel_size: float, ratio: float = 0.2, p: float = 0.2) -> None:
        self.voxel_size, self.ratio, self.p = float(voxel_size), float(ratio), float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        voxels = voxelize(sample["coord"], self.voxel_size)
        count = int(voxels.num_voxels * (1 - self.ratio))
        keep_voxel = np.zeros(voxels.num_voxels, dtype=bool)
        keep_voxel[rng.choice(voxels.num_voxels, count, replace=False)] = True
        keep = keep_voxel[voxels.inverse]
        return {key: value[keep] for key, value in sample.items()}


class RandomGridShift(_Transform):
    """Translate by a whole number of voxels, uniform in [0, ``max_voxels``) per axis.

    The voxelization is the same up to that shift (and float32 rounding); what changes is the
    parity of the grid coordinates, i.e. which voxels the stride-2 convolutions merge (CSC: "making
    the network invariant to even, odd coords is important").
    """

    def __init__(self, voxel_size: float, max_voxels: int = 100) -> None:
        self.voxel_size, self.max_voxels = float(voxel_size), int(max_voxels)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        shift = self.voxel_size * rng.integers(0, self.max_voxels, size=3)
        return dict(sample, coord=(sample["coord"] + shift).astype(np.float32))


class ElasticDistortion(_Transform):
    """Displace points by smooth random noise (MinkowskiEngine / Pointcept elastic distortion).

    For each ``(granularity, magnitude)`` pair in ``params`` (metres): draw gaussian noise on a grid
    of spacing ``granularity`` covering the cloud with one node to spare on each side, blur it
    with a 3-wide box filter along each axis twice, interpolate it trilinearly at every point and
    add ``magnitude`` times it. The whole distortion is applied with probability ``p``.
    """

    def __init__(
        self, params: Sequence[Sequence[float]] = ((0.2, 0.4), (0.8, 1.6)), p: float = 0.95
    ) -> None:
        # Hydra hands in ListConfigs; keep plain floats so the transform pickles cheaply.
        self.params = tuple((float(g), float(m)) for g, m in params)
        self.p = float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        coord = sample["coord"].astype(np.float64)
        for granularity, magnitude in self.params:
            coord = coord + magnitude * self._noise_at(coord, granularity, rng)
        return dict(sample, coord=coord.astype(np.float32))

    @staticmethod
    def _noise_at(coord: np.ndarray, granularity: float, rng: np.random.Generator) -> np.ndarray:
        low, high = _bounds(coord)
        shape = ((high - low) // granularity).astype(int) + 3
        noise = rng.standard_normal((3, *shape)).astype(np.float32)
        box = np.full(3, 1 / 3, dtype=np.float32)
        for _ in range(2):
            for axis in (1, 2, 3):
                noise = convolve1d(noise, box, axis=axis, mode="constant", cval=0.0)
        index = ((coord - low) / granularity + 1).T  # node k sits at low + (k - 1) * granularity
        return np.stack([map_coordinates(channel, index, order=1) for channel in noise], axis=1)


class ChromaticAutoContrast(_Transform):
    """With probability ``p``, stretch each channel to 0..255 and blend it with the original.

    The blend weight is ``blend_factor``, or uniform in [0, 1) when it is None.
    """

    def __init__(self, p: float = 0.2, blend_factor: float | None = None) -> None:
        self.p = float(p)
        self.blend_factor = None if blend_factor is None else float(blend_factor)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        color = sample["color"]
        low, high = color.min(0, keepdims=True), color.max(0, keepdims=True)
        contrast = (color - low) * (255 / np.maximum(high - low, 1e-6))
        blend = rng.random() if self.blend_factor is None else self.blend_factor
        out = (1 - blend) * color + blend * contrast
        return dict(sample, color=np.clip(out, 0, 255).astype(np.float32))


class ChromaticTranslation(_Transform):
    """With probability ``p``, shift all colours by one offset uniform in ±``ratio`` × 255."""

    def __init__(self, p: float = 0.95, ratio: float = 0.05) -> None:
        self.p, self.ratio = float(p), float(ratio)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        shift = (rng.random((1, 3)) - 0.5) * 255 * 2 * self.ratio
        color = np.clip(sample["color"] + shift, 0, 255).astype(np.float32)
        return dict(sample, color=color)


class ChromaticJitter(_Transform):
    """With probability ``p``, add per-point gaussian noise of ``std`` × 255 to the colours."""

    def __init__(self, p: float = 0.95, std: float = 0.05) -> None:
        self.p, self.std = float(p), float(std)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        color = sample["color"]
        noise = rng.standard_normal(color.shape, dtype=np.float32) * np.float32(self.std * 255)
        return dict(sample, color=np.clip(color + noise, 0, 255).astype(np.float32))


# ---------------------------------------------------------------- test-time views
@dataclass(frozen=True)
class TTAView:
    """A fixed view of the scene: rotate by ``angle`` about z (around the bounding-box centre),
    optionally mirror x, scale by ``scale``. Called like a training transform."""

    angle: float = 0.0
    flip_x: bool = False
    scale: float = 1.0

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        c, s = np.cos(self.angle), np.sin(self.angle)
        linear = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        if self.flip_x:
            linear = np.diag([-1.0, 1.0, 1.0]) @ linear
        out = dict(sample)
        center = (sample["coord"].min(0) + sample["coord"].max(0)) / 2
        out["coord"] = ((sample["coord"] - center) @ (self.scale * linear).T + center).astype(
            np.float32
        )
        if "normal" in sample:
            out["normal"] = (sample["normal"] @ linear.T).astype(np.float32)
        return out


def tta_views(rotations: int, flips: bool, scales) -> list[TTAView]:
    """All combinations; the identity view first."""
    angles = [2 * np.pi * i / max(rotations, 1) for i in range(max(rotations, 1))]
    flip_options = (False, True) if flips else (False,)
    scale_options = sorted({1.0, *map(float, scales)}, key=lambda v: (v != 1.0, v))
    return [TTAView(a, f, s) for s, f, a in itertools.product(scale_options, flip_options, angles)]
