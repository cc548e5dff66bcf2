"""Neural-collapse statistics (the CeCo paper's supplementary analysis).

For K classes with feature centers ``z_k`` (mean penultimate feature of class k over a split,
globally centered) and classifier weights ``w_k``, with hat = L2-normalised:

- equiangularity: Std over k != k' of cos(hat z_k, hat z_k') (same for hat w);
- maximal separation: Avg over k != k' of |cos(hat z_k, hat z_k') + 1/(K-1)| (same for hat w).

Both are zero exactly for a simplex equiangular tight frame (ETF). Everything is computed over
the classes present in the split only: an absent class has no center (a NaN row), and K in the
1/(K-1) term counts present classes. Training and evaluation log these statistics, and
``ceco3d.analysis`` reports them, so they live below both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

COLLAPSE_TAGS = {
    "equiangularity_features": "collapse/equiangularity_features",
    "equiangularity_weights": "collapse/equiangularity_weights",
    "separation_features": "collapse/separation_features",
    "separation_weights": "collapse/separation_weights",
}
"""``collapse_statistics`` key -> TensorBoard scalar tag the training loop logs it under."""


class FeatureAccumulator:
    """Per-class sums (float64) and counts of ``(N, C)`` features over a split.

    Labels are class indices 0..K-1, with -1 (ignore) skipped.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        self.num_classes = num_classes
        self.dim = dim
        self.sums = np.zeros((num_classes, dim), dtype=np.float64)
        self.counts = np.zeros(num_classes, dtype=np.int64)

    def update(
        self, features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray
    ) -> None:
        """Add ``(N, C)`` features with ``(N,)`` labels."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (N, {self.dim}), got {tuple(features.shape)}")
        if tuple(labels.shape) != (features.shape[0],):
            raise ValueError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
        if isinstance(features, torch.Tensor):
            sums, counts = self._reduce_torch(features, labels)
        else:
            sums, counts = self._reduce_numpy(features, labels)
        self.sums += sums
        self.counts += counts

    def _reduce_torch(
        self, features: torch.Tensor, labels: torch.Tensor | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # Reduce on the features' device: moving (N, C) features to the host every step would
        # cost more than the reduction; only (K, C) sums cross over.
        labels = torch.as_tensor(labels, device=features.device).long()
        keep = labels >= 0
        labels = labels[keep]
        counts = torch.bincount(labels, minlength=self.num_classes)
        self._check_range(counts.numel())
        sums = torch.zeros(
            self.num_classes, self.dim, dtype=torch.float64, device=features.device
        ).index_add_(0, labels, features.detach()[keep].double())
        return sums.cpu().numpy(), counts.cpu().numpy()

    def _reduce_numpy(
        self, features: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels).astype(np.int64)
        keep = labels >= 0
        labels = labels[keep]
        features = np.asarray(features, dtype=np.float64)[keep]
        counts = np.bincount(labels, minlength=self.num_classes)
        self._check_range(len(counts))
        # One bincount over flattened (class, channel) bins sums every channel at once.
        bins = (labels[:, None] * self.dim + np.arange(self.dim)).ravel()
        sums = np.bincount(bins, weights=features.ravel(), minlength=self.num_classes * self.dim)
        return sums.reshape(self.num_classes, self.dim), counts

    def _check_range(self, num_bins: int) -> None:
        if num_bins > self.num_classes:
            raise ValueError(f"label {num_bins - 1} out of range [0, {self.num_classes})")

    def centers(self) -> np.ndarray:
        """``(K, C)`` per-class mean features; NaN rows for classes never seen."""
        out = np.full_like(self.sums, np.nan)
        np.divide(self.sums, self.counts[:, None], out=out, where=self.counts[:, None] > 0)
        return out

    def merge(self, other: FeatureAccumulator) -> FeatureAccumulator:
        """Add another accumulator's sums and counts into this one; returns self."""
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ValueError(
                f"cannot merge a ({other.num_classes}, {other.dim}) accumulator into a "
                f"({self.num_classes}, {self.dim}) one"
            )
        self.sums += other.sums
        self.counts += other.counts
        return self

    def reduce_(self) -> FeatureAccumulator:
        """Sum over all torch.distributed ranks (a no-op when not initialised); returns self."""
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cpu"
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        # Counts travel as float64 with the sums: exact up to 2**53 points, one collective call.
        packed = np.concatenate([self.sums, self.counts[:, None].astype(np.float64)], axis=1)
        buffer = torch.from_numpy(packed).to(device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        packed = buffer.cpu().numpy()
        self.sums = packed[:, :-1].copy()
        self.counts = np.rint(packed[:, -1]).astype(np.int64)
        return self


def present_rows(vectors: np.ndarray) -> np.ndarray:
    """Boolean ``(K,)`` mask of rows that are finite and non-zero (they have a direction)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    finite = np.isfinite(vectors).all(axis=1)
    nonzero = np.zeros_like(finite)
    nonzero[finite] = np.linalg.norm(vectors[finite], axis=1) > 0
    return nonzero


def center_features(centers: np.ndarray) -> np.ndarray:
    """Subtract the mean of the present (finite) centers; NaN rows stay NaN."""
    centers = np.asarray(centers, dtype=np.float64)
    finite = np.isfinite(centers).all(axis=1)
    if not finite.any():
        return centers.copy()
    return centers - centers[finite].mean(axis=0)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """``(K, K)`` cosine similarities between rows; NaN in the rows/columns of absent ones."""
    vectors = np.asarray(vectors, dtype=np.float64)
    present = present_rows(vectors)
    unit = np.full_like(vectors, np.nan)
    unit[present] = vectors[present] / np.linalg.norm(vectors[present], axis=1, keepdims=True)
    cos = np.full((len(vectors), len(vectors)), np.nan)
    cos[np.ix_(present, present)] = unit[present] @ unit[present].T
    return cos


def _pairwise_cosines(vectors: np.ndarray) -> np.ndarray:
    """Cosines of every unordered pair of present rows (empty with fewer than two)."""
    present = present_rows(vectors)
    cos = cosine_matrix(vectors)[np.ix_(present, present)]
    return cos[np.triu_indices(len(cos), k=1)]


def equiangularity(vectors: np.ndarray) -> float:
    """Std of the pairwise cosines of the present rows; NaN with fewer than two."""
    cos = _pairwise_cosines(vectors)
    return float(cos.std()) if cos.size else float("nan")


def max_separation(vectors: np.ndarray) -> float:
    """Mean |cos + 1/(K-1)| over pairs of the K present rows; NaN with fewer than two."""
    cos = _pairwise_cosines(vectors)
    if not cos.size:
        return float("nan")
    num_present = int(present_rows(vectors).sum())
    return float(np.abs(cos + 1.0 / (num_present - 1)).mean())


def collapse_statistics(
    centers: np.ndarray, weights: np.ndarray, present: np.ndarray | None = None
) -> dict[str, float | int]:
    """Equiangularity and separation of ``(K, C)`` feature centers and classifier weights.

    ``centers`` are raw class means (NaN rows for absent classes; they are globally centered
    here); ``weights`` is the ``(K, C)`` per-voxel classifier weight. Both are restricted to the
    same present classes: ``present`` when given, else the finite rows of ``centers``.
    """
    centers = np.asarray(centers, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != centers.shape:
        raise ValueError(
            f"weights {weights.shape} and centers {centers.shape} must both be (K, C) "
            "(transpose a (C, K) kernel)"
        )
    if present is None:
        present = np.isfinite(centers).all(axis=1)
    present = np.asarray(present, dtype=bool)
    features = center_features(centers[present])
    weights = weights[present]
    return {
        "equiangularity_features": equiangularity(features),
        "equiangularity_weights": equiangularity(weights),
        "separation_features": max_separation(features),
        "separation_weights": max_separation(weights),
        "num_classes_present": int(present.sum()),
    }
