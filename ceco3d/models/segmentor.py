"""Backbone + optional center-collapse branch; the branch runs only in training."""

from __future__ import annotations

import MinkowskiEngine as ME
import torch
from torch import nn

from ceco3d.models.center_collapse import CenterCollapseHead
from ceco3d.models.minkunet import MinkUNetBase

CENTER_HEAD_PREFIX = "center_head."


class Segmentor(nn.Module):
    def __init__(self, backbone: MinkUNetBase, center_head: CenterCollapseHead | None = None):
        super().__init__()
        self.backbone = backbone
        self.center_head = center_head

    def forward(self, x: ME.SparseTensor, labels: torch.Tensor | None = None) -> dict:
        """``x`` on (N, 4) batch+grid coordinates; ``labels`` (N,) voxel labels (training only).

        Returns ``logits`` (N, K) and ``features`` (N, C); in training with a center head also
        ``center_logits`` (P, K) and ``center_classes`` (P,) for the P classes in the batch.
        """
        logits, features = self.backbone(x)
        out = {"logits": logits, "features": features}
        if self.training and self.center_head is not None and labels is not None:
            out["center_logits"], out["center_classes"] = self.center_head(features, labels)
        return out

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the deployed model: the center-collapse branch is not part of it."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(CENTER_HEAD_PREFIX)}
