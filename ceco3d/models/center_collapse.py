"""The CeCo center-collapse branch (Zhong et al., CVPR 2023), for sparse 3D features.

For the voxels of the current mini-batch, the branch projects the penultimate features, averages
them per present class (one ``index_add``, no loop over classes), L2-normalises these class
centers and classifies them with a fixed simplex equiangular tight frame (ETF). It exists only
in training: ``Segmentor`` never calls it in eval mode and drops it from inference weights.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ceco3d.data.meta import IGNORE_INDEX


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(num_classes, dim) rows of W* = sqrt(K/(K-1)) U (I - 11^T/K), U with orthonormal columns.

    Rows have unit norm and pairwise cosine -1/(K-1); they sum to zero.
    """
    if dim < num_classes:
        raise ValueError(f"ETF dimension {dim} must be >= number of classes {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, num_classes, generator=generator, dtype=torch.float64))
    k = num_classes
    centering = torch.eye(k, dtype=torch.float64) - torch.full((k, k), 1.0 / k, dtype=torch.float64)
    w = math.sqrt(k / (k - 1)) * u @ centering  # (dim, K)
    return w.T.contiguous().float()


def class_centers(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, sync: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every class present among the valid voxels.

    ``features`` (N, D), ``labels`` (N,) with IGNORE_INDEX for ignored voxels. With ``sync``, sums
    and counts are all-reduced over the process group (differentiably) first, so every rank sees
    the centers of the global batch. Returns ``(centers (P, D), classes (P,))`` for the P present
    classes in ascending class order.
    """
    valid = labels != IGNORE_INDEX
    features, labels = features[valid], labels[valid]
    sums = features.new_zeros(num_classes, features.shape[1]).index_add(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    if sync and dist.is_available() and dist.is_initialized():
        import torch.distributed.nn.functional as dist_nn

        sums = dist_nn.all_reduce(sums)
        counts = counts.clone()
        dist.all_reduce(counts)
    classes = torch.nonzero(counts > 0).flatten()
    return sums[classes] / counts[classes, None], classes


class CenterCollapseHead(nn.Module):
    """Projection + per-class centers + fixed-ETF classifier with logit adjustment.

    ``prior`` (K,) is each class's share of training scenes (from the data manifest); it enters
    as ``log(prior)`` added to the center logits, the logit adjustment of the CeCo paper.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        prior: torch.Tensor | None = None,
        proj_dim: int = 512,
        hidden_dim: int = 128,
        scale: float = 5.0,
        dropout: float = 0.1,
        train_projection: bool = True,
        sync_centers: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale
        self.sync_centers = sync_centers
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the projection's init is part of the method (frozen variant)
        self.projection = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.Linear(hidden_dim, proj_dim),
            nn.ReLU(inplace=True),
        )
        torch.random.set_rng_state(generator_state)
        self.projection.requires_grad_(train_projection)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("etf", simplex_etf(num_classes, proj_dim, seed))
        if prior is None:
            prior = torch.full((num_classes,), 1.0 / num_classes)
        self.register_buffer("log_prior", torch.log(torch.as_tensor(prior, dtype=torch.float32)))

    @staticmethod
    def prior_from_scene_counts(scene_counts, num_scenes: int) -> torch.Tensor:
        """Share of training scenes containing each class; an unseen class counts as seen once,
        so that its log-prior stays finite."""
        counts = torch.as_tensor(scene_counts, dtype=torch.float32).clamp(min=1.0)
        return counts / max(num_scenes, 1)

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` (N, in_dim), ``labels`` (N,). Returns ``(logits (P, K), classes (P,))``."""
        # Only labelled voxels make centers: project those alone (cheaper; BatchNorm statistics
        # then describe the voxels that the loss sees).
        valid = labels != IGNORE_INDEX
        features, labels = features[valid], labels[valid]
        if self.projection[1].training and features.shape[0] < 2:
            # BatchNorm1d cannot normalise a single sample: no local center, but the (possibly
            # cross-rank) center computation below still runs, so ranks stay in step.
            features, labels = features[:0], labels[:0]
            projected = features.new_zeros(0, self.etf.shape[1])
        else:
            projected = self.projection(features)
        centers, classes = class_centers(projected, labels, self.num_classes, self.sync_centers)
        centers = self.dropout(F.normalize(centers, dim=1))
        logits = self.scale * centers @ self.etf.T + self.log_prior
        return logits, classes
