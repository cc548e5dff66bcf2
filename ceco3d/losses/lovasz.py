"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, "The Lovász-Softmax Loss: A
Tractable Surrogate for the Optimization of the Intersection-Over-Union Measure in Neural
Networks"), alone or added to cross-entropy as Pointcept's ScanNet200 configs do
(``CrossEntropyLoss`` and ``LovaszLoss``, loss weights 1 and 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ceco3d.losses.voxel import VoxelLoss


def jaccard_loss_increments(foreground_sorted: torch.Tensor) -> torch.Tensor:
    """The paper's Algorithm 1 (the gradient of the Lovász extension of the Jaccard loss
    ``Delta_J(M) = |M| / |{y = c} u M|``) for (M, C) 0/1 foreground indicators sorted by
    decreasing error in each column: ``g_i = Delta_J(top i) - Delta_J(top i-1)``, where the
    top ``i`` voxels are taken as mispredicted."""
    total = foreground_sorted.sum(0, keepdim=True)
    missed = total - foreground_sorted.cumsum(0)  # foreground voxels outside the top i
    union = total + (1.0 - foreground_sorted).cumsum(0)  # |{y = c} u top i|
    jaccard = 1.0 - missed / union
    return torch.diff(jaccard, dim=0, prepend=torch.zeros_like(jaccard[:1]))


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's Lovász-softmax with ``classes="present"`` over one batch (Pointcept's
    ``per_image=False``): for each class c among ``labels``, the errors ``m_i = |[y_i = c] -
    p_i(c)|`` sorted decreasingly, dotted with ``jaccard_loss_increments``; the mean over those
    classes. ``probs`` (M, K) softmax probabilities, ``labels`` (M,), none ignored."""
    present = torch.unique(labels)
    foreground = (labels[:, None] == present[None, :]).to(probs.dtype)
    errors = (foreground - probs[:, present]).abs()
    errors_sorted, order = torch.sort(errors, dim=0, descending=True)
    increments = jaccard_loss_increments(torch.gather(foreground, 0, order))
    return (errors_sorted * increments).sum(0).mean()


class LovaszSoftmaxLoss(VoxelLoss):
    """``loss = Lovasz(softmax(z), y) + ce_weight * CE(z, y)`` over labelled voxels;
    ``ce_weight=0`` is the Lovász-softmax alone, ``1`` Pointcept's ScanNet200 recipe."""

    def __init__(self, ce_weight: float = 0.0, class_counts=None):
        super().__init__()
        del class_counts  # the Lovász extension needs no training statistics
        self.ce_weight = float(ce_weight)
        self.part_names = ("lovasz", "ce") if self.ce_weight else ("lovasz",)

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = {"lovasz": lovasz_softmax(logits.softmax(1), labels)}
        parts["loss"] = parts["lovasz"]
        if self.ce_weight:
            parts["ce"] = F.cross_entropy(logits, labels)
            parts["loss"] = parts["loss"] + self.ce_weight * parts["ce"]
        return parts
