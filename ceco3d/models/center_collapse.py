"""The CeCo center-collapse branch (Zhong et al., CVPR 2023) for sparse 3D features.

Computed in the order of the authors' released 2D head (``uper_head_ceco.py`` in
dvlab-research/Parametric-Contrastive-Learning), on the penultimate features f_i of the N_l
labelled voxels of the batch:

1. reduce, per voxel:    z_i = BN(W_r f_i)               Linear(C -> 128, no bias) + BatchNorm1d
                                                          with the batch's statistics
2. class centers:        c_k = mean_{i : y_i = k} z_i    for the P classes present in the batch
3. gain, per center:     g_k = ReLU(W_g c_k + b_g)       Linear(128 -> d) + ReLU, on P rows only
4. fixed classifier:     l_k = s W* dropout(g_k / |g_k|) + log(prior)
                         W* = sqrt(K/(K-1)) U (I - 11^T/K), the simplex ETF (unit rows, no bias)
5. loss (``CeCoLoss``):  mean over the P present classes of CE(l_k, k), times lambda.

reduce, gain and W* stay at their seeded random init (``train_projection`` trains reduce and
gain). The centers are those of the process's own batch, as in the release; ``sync_centers``
computes steps 1-2 over the global batch of all DDP ranks instead. The branch runs in training
only: ``Segmentor`` never calls it in eval mode and drops it from inference weights.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ceco3d.data.meta import IGNORE_INDEX

LOG_PRIOR_EPS = 1e-12  # the release's guard: log(prior + 1e-12)


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(num_classes, dim) rows of W* = sqrt(K/(K-1)) U (I - 11^T/K), U (dim, K) with orthonormal
    columns drawn uniformly (Haar) from the seed.

    Rows have unit norm and pairwise cosine -1/(K-1); they sum to zero.
    """
    if dim < num_classes:
        raise ValueError(f"ETF dimension {dim} must be >= number of classes {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, num_classes, generator=generator, dtype=torch.float64)
    u, r = torch.linalg.qr(gaussian)
    u = u * torch.sign(torch.diagonal(r))  # QR's sign convention would bias U away from Haar
    k = num_classes
    centering = torch.eye(k, dtype=torch.float64) - torch.full((k, k), 1.0 / k, dtype=torch.float64)
    w = math.sqrt(k / (k - 1)) * u @ centering  # (dim, K)
    return w.T.contiguous().float()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks. Every rank back-propagates its own loss through the sum, so the gradient
    of each rank's addend is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


def class_centers(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, sync: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every class present: ``features`` (N, D) of labelled voxels only,
    ``labels`` (N,) in [0, num_classes).

    With ``sync``, sums and counts are all-reduced over the process group first, so every rank
    gets the centers of the global batch. Returns ``(centers (P, D), classes (P,))`` for the P
    present classes in ascending class order.
    """
    sums = features.new_zeros(num_classes, features.shape[1]).index_add(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    if sync and _distributed():
        sums = _all_reduce_sum(sums)
        dist.all_reduce(counts)
    classes = torch.nonzero(counts > 0).flatten()
    return sums[classes] / counts[classes, None], classes


def global_batch_norm(z: torch.Tensor, norm: nn.BatchNorm1d, count: float) -> torch.Tensor:
    """BatchNorm of ``z`` (n, C) with the mean and biased variance of all ranks' rows
    (``count`` in all), and the running statistics updated as ``norm`` would on that batch."""
    mean = _all_reduce_sum(z.sum(0)) / count
    centered = z - mean
    var = _all_reduce_sum((centered * centered).sum(0)) / count
    with torch.no_grad():
        momentum = norm.momentum
        norm.running_mean.lerp_(mean.detach(), momentum)
        norm.running_var.lerp_(var.detach() * count / (count - 1), momentum)
        norm.num_batches_tracked += 1
    return centered * torch.rsqrt(var + norm.eps) * norm.weight + norm.bias


class CenterCollapseHead(nn.Module):
    """reduce -> class centers -> gain -> normalise -> dropout -> fixed ETF x s + log prior.

    ``prior`` (K,) is each class's share of training scenes (the release: of training images);
    it enters as ``log(prior + 1e-12)`` added to the center logits, the logit adjustment of the
    paper. A class absent from the training set thus drops out of the center softmax. The
    defaults are the release's and ``conf/loss/ceco.yaml``'s.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        prior: torch.Tensor | None = None,
        reduce_dim: int = 128,
        proj_dim: int = 512,
        scale: float = 5.0,
        dropout: float = 0.1,
        train_projection: bool = False,
        sync_centers: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale
        self.sync_centers = sync_centers
        # The random init of reduce and gain is part of the method (they stay frozen), so it is
        # drawn from the head's own seed without touching the global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.reduce = nn.Sequential(
                nn.Linear(in_dim, reduce_dim, bias=False), nn.BatchNorm1d(reduce_dim)
            )
            self.gain = nn.Sequential(nn.Linear(reduce_dim, proj_dim), nn.ReLU())
        self.reduce.requires_grad_(train_projection)
        self.gain.requires_grad_(train_projection)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("etf", simplex_etf(num_classes, proj_dim, seed))
        if prior is None:
            prior = torch.full((num_classes,), 1.0 / num_classes)
        prior = torch.as_tensor(prior, dtype=torch.float32)
        self.register_buffer("log_prior", torch.log(prior + LOG_PRIOR_EPS))

    @staticmethod
    def prior_from_scene_counts(scene_counts, num_scenes: int) -> torch.Tensor:
        """Share of training scenes containing each class."""
        return torch.as_tensor(scene_counts, dtype=torch.float32) / max(num_scenes, 1)

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` (N, in_dim), ``labels`` (N,) with IGNORE_INDEX for unlabelled voxels.
        Returns ``(logits (P, K), classes (P,))`` for the P classes present."""
        valid = labels != IGNORE_INDEX
        if not bool(valid.all()):  # boolean indexing copies: skip it when nothing is ignored
            features, labels = features[valid], labels[valid]
        linear, norm = self.reduce
        reduced = linear(features)
        sync = self.sync_centers and _distributed()
        count = float(len(reduced))
        if sync:
            total = torch.tensor([count], device=reduced.device)
            dist.all_reduce(total)
            count = total.item()
        if count < 2:
            # BatchNorm has no batch statistics for fewer than two voxels: no center this step.
            # The empty pass keeps every parameter in the autograd graph (for DDP) and the ranks
            # in step when centers are synced.
            reduced, labels = reduced[:0] * norm.weight + norm.bias, labels[:0]
        elif sync:
            reduced = global_batch_norm(reduced, norm, count)
        else:
            reduced = norm(reduced)
        centers, classes = class_centers(reduced, labels, self.num_classes, sync)
        gained = self.gain(centers)
        logits = self.scale * self.dropout(F.normalize(gained, dim=1)) @ self.etf.T
        return logits + self.log_prior, classes
