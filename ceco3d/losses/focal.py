"""Softmax focal loss (Lin, Goyal, Girshick, He, Dollár, ICCV 2017, "Focal Loss for Dense
Object Detection": its alpha-balanced form, eq. 5, on the softmax probability of the true class)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ceco3d.losses.cross_entropy import class_weights
from ceco3d.losses.voxel import VoxelLoss


def weighted_focal(
    logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor | None, gamma: float
) -> torch.Tensor:
    """mean_i alpha_{y_i} (1 - p_i)^gamma (-log p_i), p_i = softmax(z_i)_{y_i}, over the M
    voxels given (``logits`` (M, K), ``labels`` (M,), none ignored). The mean is over voxels,
    not over the weights (as LanguageGroundedSemseg reduces its focal loss); ``alpha=None`` is
    1 for every class, and ``gamma=0`` leaves out the focal factor (whose gradient at p = 1 is
    0 * inf in floating point)."""
    nll = F.cross_entropy(logits, labels, reduction="none")  # -log p_i
    if gamma:
        nll = nll * (-torch.expm1(-nll)) ** gamma  # 1 - p_i = -expm1(log p_i)
    if alpha is not None:
        nll = nll * alpha[labels]
    return nll.mean()


class FocalLoss(VoxelLoss):
    """``FL = mean_i -alpha_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}`` over labelled voxels.

    ``alpha``: per-class weights from the training voxel counts, by the names of
    ``class_weights`` (``none``, ``enet``, ``inverse_sqrt``; mean 1 over classes with data).
    ``gamma=0, alpha=none`` is plain cross-entropy.
    """

    part_names = ("focal",)

    def __init__(self, gamma: float = 2.0, alpha: str = "none", class_counts=None):
        super().__init__()
        if alpha != "none" and class_counts is None:
            raise ValueError(f"alpha={alpha!r} needs class_counts")
        self.gamma = float(gamma)
        self.register_buffer("alpha", class_weights(class_counts, alpha))

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        focal = weighted_focal(logits, labels, self.alpha, self.gamma)
        return {"loss": focal, "focal": focal}
