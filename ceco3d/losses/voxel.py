"""What every per-voxel loss shares: ignored voxels (label -1) are dropped before the loss sees
the logits, and a batch without a labelled voxel gives 0 (still in the autograd graph)."""

from __future__ import annotations

import torch
from torch import nn

from ceco3d.data.label_sets import IGNORE_INDEX


class VoxelLoss(nn.Module):
    """A loss on the (N, K) per-voxel logits ``outputs["logits"]`` and the (N,) labels.

    Subclasses implement ``terms(logits, labels)`` on the labelled voxels only, returning their
    named parts and ``"loss"``, the total; ``part_names`` lists the parts besides ``"loss"``.
    """

    part_names: tuple[str, ...] = ()

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = outputs["logits"]
        labelled = labels != IGNORE_INDEX
        if not labelled.any():
            zero = logits.sum() * 0.0
            return {"loss": zero, **dict.fromkeys(self.part_names, zero)}
        return self.terms(logits[labelled], labels[labelled])

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
