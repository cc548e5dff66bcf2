"""A per-voxel loss + lambda * center-collapse loss (CeCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ceco3d.losses.cross_entropy import CrossEntropyLoss


class CeCoLoss(nn.Module):
    """``loss = voxel(logits, labels) + lambda_ * CE(center logits, present classes)``.

    ``voxel`` is any per-voxel loss of ceco3d.losses (ceco3d/conf/loss/ceco.yaml: plain
    cross-entropy, the paper's). The center term averages over the classes present in the batch (the
    ``center_logits`` rows the model's center head produced); a batch without valid voxels
    contributes 0. The parts are the voxel loss's, ``center`` and the total ``loss``.
    """

    def __init__(self, lambda_: float = 0.4, voxel: nn.Module | None = None):
        super().__init__()
        if isinstance(voxel, CeCoLoss):
            raise ValueError("loss.voxel is a CeCo loss: choose a per-voxel loss, e.g. ce")
        self.voxel = voxel if voxel is not None else CrossEntropyLoss()
        self.lambda_ = lambda_

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self.voxel(outputs, labels)
        if "center_logits" not in outputs:
            raise KeyError("CeCoLoss needs the model's center branch (model in training mode)")
        center_logits = outputs["center_logits"]
        if center_logits.shape[0] == 0:
            center = outputs["logits"].sum() * 0.0
        else:
            center = F.cross_entropy(center_logits, outputs["center_classes"])
        parts["center"] = center
        parts["loss"] = parts["loss"] + self.lambda_ * center
        return parts
