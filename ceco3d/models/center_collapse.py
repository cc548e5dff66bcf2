"""The CeCo center-collapse branch (Zhong et al., CVPR 2023) for sparse 3D features.

The authors' released 2D head (``uper_head_ceco.py`` in dvlab-research/Parametric-Contrastive-
Learning) computes, on the penultimate features x_i of the voxels of the batch:

1. reduce, per voxel:    z_i = BN(W_r x_i)               Linear(C -> 128, no bias) + BatchNorm1d
                                                          with the statistics of ALL voxels of
                                                          the batch, ignored ones included (the
                                                          release's BN sees the whole feature
                                                          map before the 255 mask)
2. class centers:        c_k = mean_{i : y_i = k} z_i    over the labelled voxels, for the P
                                                          classes present in the batch
3. gain, per center:     g_k = ReLU(W_g c_k + b_g)       Linear(128 -> d) + ReLU, on P rows only
4. fixed classifier:     l_k = s W* dropout(g_k / |g_k|) + log(prior)
                         W* = sqrt(K/(K-1)) U (I - 11^T/K), the simplex ETF (unit rows, no bias)
5. loss (``CeCoLoss``):  mean over the P present classes of CE(l_k, k), times lambda.

Steps 1-2 are affine per channel, so the class means commute with them: with the class means
m_k of the labelled x_i and the mean mu and biased covariance S of all x_i,

    c_k = gamma * W_r (m_k - mu) / sqrt(diag(W_r S W_r^T) + eps) + beta,

exactly what step 1 then step 2 give (``tests/test_center_collapse.py`` checks it against the
per-voxel equations and a transcription of the release, gradient included). Ignored voxels
thus receive gradient through mu and S, as in the release. Computed so, the branch touches each
voxel only to accumulate class sums and S (C x C) and keeps no per-voxel activation: its cost is
a few per cent of a 1x1 convolution's instead of a 128-channel layer's.

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

from ceco3d.data.label_sets import IGNORE_INDEX

LOG_PRIOR_EPS = 1e-12  # the release's guard: log(prior + 1e-12)


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(num_classes, dim) float64 rows of W* = sqrt(K/(K-1)) U (I - 11^T/K), U (dim, K) with
    orthonormal columns drawn uniformly (Haar) from the seed.

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
    return w.T.contiguous()


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


class _ClassMoments(torch.autograd.Function):
    """Per-bin feature sums and the scatter matrix of all N voxels about their mean c:

        S_k = sum_{i: b_i = k} x_i                          (K + 1, C)
        M   = sum_i (x_i - c)(x_i - c)^T                     (C, C), c held constant

    ``index`` (b_i) is a voxel's class, or the spare bin K for an ignored one, so row K sums the
    ignored voxels. With ``sync``, c is the global batch's mean. Neither pass keeps an (N, C)
    copy: M is accumulated over row chunks in one reused buffer, and the backward pass writes
    the voxel gradient

        dx_i = dS_{b_i} + (dM + dM^T)(x_i - c)

    into one (N, C) buffer. ``x`` itself is what the backbone's last layer keeps anyway.
    Returns ``(S, M, c)``; c carries no gradient.
    """

    CHUNK = 65_536  # rows per scatter update: 24 MiB of temporaries at 96 float32 channels

    @staticmethod
    def forward(ctx, x, index, num_classes: int, sync: bool):
        sums = x.new_zeros(num_classes + 1, x.shape[1]).index_add_(0, index, x)
        total = torch.cat([sums.sum(0), x.new_full((1,), len(x))])
        if sync:
            dist.all_reduce(total)
        shift = total[:-1] / total[-1].clamp_min(1)
        scatter = x.new_zeros(x.shape[1], x.shape[1])
        centered = x.new_empty(min(len(x), _ClassMoments.CHUNK), x.shape[1])
        for start in range(0, len(x), _ClassMoments.CHUNK):
            rows = slice(start, start + _ClassMoments.CHUNK)
            block = centered[: len(x[rows])]
            torch.sub(x[rows], shift, out=block)
            scatter.addmm_(block.T, block)
        ctx.save_for_backward(x, index, shift)
        ctx.mark_non_differentiable(shift)
        return sums, scatter, shift

    @staticmethod
    def backward(ctx, grad_sums, grad_scatter, _):
        x, index, shift = ctx.saved_tensors
        sym = grad_scatter + grad_scatter.T
        # Row k of the table is dS_k - (dM + dM^T) c, so one gather and one product give dx.
        table = grad_sums - shift @ sym
        grad = table.index_select(0, index)
        grad.addmm_(x, sym)
        return grad, None, None, None


def class_moments(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, sync: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(counts (K,), sums (K, C), total, mean (C,), cov (C, C))`` of ``features`` (N, C):
    per-class counts and feature sums of the labelled voxels (``labels`` != IGNORE_INDEX), and
    the count, mean and biased covariance of ALL N voxels, ignored ones included (the release's
    BatchNorm sees the whole feature map). With ``sync`` and a process group, those of the
    global batch of all ranks (all-reduced, differentiably).
    """
    sync = sync and _distributed()
    index = torch.where(labels != IGNORE_INDEX, labels, num_classes)
    counts = torch.bincount(index, minlength=num_classes + 1).to(features.dtype)
    # The scatter is taken about the (constant) mean, so that the covariance is no difference of
    # large raw moments (float32 cancellation); the offset term, zero in value, restores the
    # gradient through the mean.
    sums, scatter, shift = _ClassMoments.apply(features, index, num_classes, sync)
    if sync:
        dist.all_reduce(counts)
        sums, scatter = _AllReduceSum.apply(sums), _AllReduceSum.apply(scatter)
    total = counts.sum()
    mean = sums.sum(0) / total.clamp_min(1)
    offset = mean - shift
    cov = scatter / total.clamp_min(1) - torch.outer(offset, offset)
    return counts[:num_classes], sums[:num_classes], total, mean, cov


class CenterCollapseHead(nn.Module):
    """reduce -> class centers -> gain -> normalise -> dropout -> fixed ETF x s + log prior.

    ``prior`` (K,) is each class's share of training scenes (the release: of training images);
    it enters as ``log(prior + 1e-12)`` added to the center logits, the logit adjustment of the
    paper. A class absent from the training set thus drops out of the center softmax. The
    defaults are the release's and ``ceco3d/conf/loss/ceco.yaml``'s.
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
        self.register_buffer("etf", simplex_etf(num_classes, proj_dim, seed).float())
        if prior is None:
            prior = torch.full((num_classes,), 1.0 / num_classes)
        prior = torch.as_tensor(prior, dtype=torch.float32)
        self.register_buffer("log_prior", torch.log(prior + LOG_PRIOR_EPS))

    @staticmethod
    def prior_from_scene_counts(scene_counts, num_scenes: int) -> torch.Tensor:
        """Share of training scenes containing each class."""
        return torch.as_tensor(scene_counts, dtype=torch.float32) / max(num_scenes, 1)

    def reduced_centers(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-2: ``(centers (P, 128), classes (P,))``, the class means over the labelled
        voxels of BN(W_r x_i), whose batch statistics (and running ones, updated as BatchNorm1d
        does) are those of all voxels, ignored ones included, as in the release."""
        linear, norm = self.reduce
        counts, sums, total, mean, cov = class_moments(
            features, labels, self.num_classes, self.sync_centers
        )
        if total < 2:
            # BatchNorm has no batch statistics for fewer than two voxels: no center this step.
            # The empty rows keep the parameters in the autograd graph (DDP needs them there).
            empty = linear(features[:0]) * norm.weight + norm.bias
            return empty, labels.new_zeros(0)
        weight = linear.weight
        var = ((weight @ cov) * weight).sum(1).clamp_min(0)  # diag(W_r S W_r^T)
        classes = torch.nonzero(counts).flatten()  # none if no voxel is labelled
        class_means = sums[classes] / counts[classes, None]
        centers = linear(class_means - mean) * torch.rsqrt(var + norm.eps) * norm.weight + norm.bias
        if norm.training and norm.track_running_stats:
            with torch.no_grad():
                norm.running_mean.lerp_(linear(mean), norm.momentum)
                norm.running_var.lerp_(var * total / (total - 1), norm.momentum)
                norm.num_batches_tracked += 1
        return centers, classes

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` (N, in_dim), ``labels`` (N,) with IGNORE_INDEX for unlabelled voxels.
        Returns ``(logits (P, K), classes (P,))`` for the P classes present, ascending."""
        centers, classes = self.reduced_centers(features, labels)
        gained = self.gain(centers)
        logits = self.scale * self.dropout(F.normalize(gained, dim=1)) @ self.etf.T
        return logits + self.log_prior, classes
