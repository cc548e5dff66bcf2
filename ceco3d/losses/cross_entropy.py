"""Per-voxel cross-entropy, plain or class-frequency weighted."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ceco3d.data.label_sets import IGNORE_INDEX


def class_weights(class_counts, weighting: str) -> torch.Tensor | None:
    """Per-class loss weights from training counts.

    ``none``: no weights. ``enet``: w_k = 1 / ln(1.02 + p_k) with p_k the class frequency (Paszke
    et al., ENet), bounded for rare classes unlike inverse frequency. ``inverse_sqrt``:
    w_k = 1 / sqrt(p_k). Weights are normalised to mean 1 over classes with data; classes without
    training data get weight 0 (they cannot appear in the labels).
    """
    if weighting == "none":
        return None
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("class-weighted loss needs training class counts; all counts are zero")
    freq = counts / counts.sum()
    seen = counts > 0
    weights = np.zeros_like(freq)
    if weighting == "enet":
        weights[seen] = 1.0 / np.log(1.02 + freq[seen])
    elif weighting == "inverse_sqrt":
        weights[seen] = 1.0 / np.sqrt(freq[seen])
    else:
        raise ValueError(f"unknown class weighting {weighting!r}: none, enet or inverse_sqrt")
    weights[seen] /= weights[seen].mean()
    return torch.as_tensor(weights, dtype=torch.float32)


def voxel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean CE over non-ignored voxels; 0 (still in the graph) when every voxel is ignored."""
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_INDEX)


class CrossEntropyLoss(nn.Module):
    def __init__(self, class_counts=None, class_weighting: str = "none"):
        super().__init__()
        weight = class_weights(class_counts, class_weighting) if class_counts is not None else None
        if class_weighting != "none" and weight is None:
            raise ValueError(f"class_weighting={class_weighting!r} needs class_counts")
        self.register_buffer("weight", weight)

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = voxel_cross_entropy(outputs["logits"], labels, self.weight)
        return {"loss": ce, "ce": ce}
