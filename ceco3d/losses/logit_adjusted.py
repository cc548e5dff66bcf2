"""Logit-adjusted cross-entropy (Menon, Jayasumana, Rawat, Jain, Veit, Kumar, ICLR 2021,
"Long-Tail Learning via Logit Adjustment"), whose tau = 1 is the balanced softmax (Ren, Yu,
Sheng, Ma, Zhao, Yi, Li, NeurIPS 2020, "Balanced Meta-Softmax for Long-Tailed Visual
Recognition": the softmax with each exp(z_j) scaled by n_j, i.e. z_j + log pi_j)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ceco3d.losses.voxel import VoxelLoss


def log_class_prior(class_counts) -> torch.Tensor:
    """(K,) float64 ``log pi_k``, ``pi_k = n_k / sum_j n_j`` the training voxel frequency. A class
    without training voxels counts as one voxel, so that its log prior stays finite (``tau *
    log pi`` must not be -inf: it would take the class out of training's softmax and put it
    first in every post-hoc adjusted prediction)."""
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    return torch.as_tensor(np.log(counts / counts.sum()))


class LogitAdjustedLoss(VoxelLoss):
    """``LA = mean_i -log softmax(z_i + tau log pi)_{y_i}`` over labelled voxels, ``pi`` from
    ``log_class_prior`` of the training voxel counts. ``tau=0`` is plain cross-entropy,
    ``tau=1`` the balanced softmax."""

    part_names = ("logit_adjusted",)

    def __init__(self, tau: float = 1.0, class_counts=None):
        super().__init__()
        if class_counts is None:
            raise ValueError("the logit-adjusted loss needs class_counts (the class prior)")
        self.register_buffer("offset", float(tau) * log_class_prior(class_counts))  # float64

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(logits + self.offset.to(logits.dtype), labels)
        return {"loss": loss, "logit_adjusted": loss}
