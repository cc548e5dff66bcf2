"""Class-balanced loss (Cui, Jia, Lin, Song, Belongie, CVPR 2019, "Class-Balanced Loss Based on
Effective Number of Samples"), on softmax cross-entropy or on the softmax focal loss."""

from __future__ import annotations

import numpy as np
import torch

from ceco3d.losses.focal import weighted_focal
from ceco3d.losses.voxel import VoxelLoss


def effective_number_weights(class_counts, beta: float) -> torch.Tensor:
    """The paper's effective number ``E_n = (1 - beta^n) / (1 - beta)`` gives the weight
    ``w_k = 1 / E_{n_k}``, normalised so that the weights sum to the number of classes (every
    class with training data; classes without any get 0, they cannot occur in the labels).
    ``beta=0`` gives 1 for every class with data; ``beta -> 1`` tends to inverse frequency."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta!r}: the class-balanced loss needs 0 <= beta < 1")
    counts = np.asarray(class_counts, dtype=np.float64)
    seen = counts > 0
    if not seen.any():
        raise ValueError("the class-balanced loss needs training class counts; all are zero")
    weights = np.zeros_like(counts)
    weights[seen] = (1.0 - beta) / (1.0 - beta ** counts[seen])
    weights[seen] *= seen.sum() / weights[seen].sum()
    return torch.as_tensor(weights, dtype=torch.float32)


class ClassBalancedLoss(VoxelLoss):
    """``CB = mean_i w_{y_i} (1 - p_{i,y_i})^gamma (-log p_{i,y_i})`` over labelled voxels,
    ``w`` from ``effective_number_weights`` of the training voxel counts; ``gamma=0`` is the
    class-balanced softmax cross-entropy, ``gamma > 0`` the class-balanced focal loss."""

    part_names = ("class_balanced",)

    def __init__(self, beta: float = 0.9999, gamma: float = 0.0, class_counts=None):
        super().__init__()
        if class_counts is None:
            raise ValueError("the class-balanced loss needs class_counts")
        self.gamma = float(gamma)
        self.register_buffer("weight", effective_number_weights(class_counts, beta))

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = weighted_focal(logits, labels, self.weight, self.gamma)
        return {"loss": loss, "class_balanced": loss}
