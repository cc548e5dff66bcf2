"""CE + lambda * center-collapse loss (CeCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ceco3d.losses.cross_entropy import CrossEntropyLoss


class CeCoLoss(CrossEntropyLoss):
    """``loss = CE(voxels) + lambda_ * CE(center logits, present classes)``.

    The center term averages over the classes present in the batch (the ``center_logits`` rows
    the model's center head produced); a batch without valid voxels contributes 0.
    """

    def __init__(self, lambda_: float = 0.4, class_counts=None, class_weighting: str = "none"):
        super().__init__(class_counts, class_weighting)
        self.lambda_ = lambda_

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = super().forward(outputs, labels)
        if "center_logits" not in outputs:
            raise KeyError("CeCoLoss needs the model's center branch (model in training mode)")
        center_logits = outputs["center_logits"]
        if center_logits.shape[0] == 0:
            center = outputs["logits"].sum() * 0.0
        else:
            center = F.cross_entropy(center_logits, outputs["center_classes"])
        parts["center"] = center
        parts["loss"] = parts["ce"] + self.lambda_ * center
        return parts
