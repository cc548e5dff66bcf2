"""Seesaw loss (Wang, Zhang, Zang, Cao, Pang, Gong, Liu, Loy, Lin, CVPR 2021, "Seesaw Loss for
Long-Tailed Instance Segmentation": mitigation and compensation factors), on voxels."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ceco3d.data.label_sets import IGNORE_INDEX
from ceco3d.losses.voxel import VoxelLoss


class SeesawLoss(VoxelLoss):
    """``L = mean_i -log( e^{z_iy} / (e^{z_iy} + sum_{j != y} S_yj e^{z_ij}) )``, y = y_i, with

    * mitigation ``M_yj = (N_j / N_y)^p`` where ``N_y > N_j``, else 1, ``N`` the labelled voxels
      of each class seen so far in training (this batch's included), counted online as in the
      paper, a class not yet seen counting 1 (as in the release, mmdetection's SeesawLoss);
    * compensation ``C_yj = (sigma_j / sigma_y)^q`` where ``sigma_j > sigma_y``, else 1,
      ``sigma = softmax(z_i)`` without gradient and ``sigma_y`` at least ``eps`` (the release);
    * ``S_yj = M_yj C_yj``, i.e. ``L = CE(z_i + log S_y, y)`` since ``S_yy = 1``.

    ``p = q = 0`` is plain cross-entropy. Under DDP the counts are summed over all processes,
    so every process holds the same ``N`` (the paper's count over the training set seen; the
    release counts per process) and a checkpoint's copy is every process's. They are a buffer
    (``seen``), saved with the loss's state in the checkpoint. ``class_counts`` gives only the
    number of classes: the training set's counts are not used, as in the paper.
    """

    part_names = ("seesaw",)

    def __init__(self, p: float = 0.8, q: float = 2.0, eps: float = 1e-2, class_counts=None):
        super().__init__()
        if class_counts is None:
            raise ValueError("the seesaw loss needs class_counts (for the number of classes)")
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        self.register_buffer("seen", torch.zeros(len(class_counts), dtype=torch.float64))

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        # Counted before the loss, and on every process even where a batch has no labelled
        # voxel (the sum over processes waits for all of them).
        labelled = labels[labels != IGNORE_INDEX]
        batch = torch.bincount(labelled, minlength=len(self.seen)).to(self.seen)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch)
        self.seen += batch
        return super().forward(outputs, labels)

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = self.seen.clamp(min=1.0)
        ratio = counts[None, :] / counts[:, None]  # [y, j] = N_j / N_y
        mitigation = torch.where(ratio < 1.0, ratio**self.p, 1.0)[labels].to(logits.dtype)
        sigma = logits.detach().softmax(1)
        own = sigma.gather(1, labels[:, None]).clamp(min=self.eps)
        score_ratio = sigma / own
        compensation = torch.where(score_ratio > 1.0, score_ratio**self.q, 1.0)
        loss = F.cross_entropy(logits + torch.log(mitigation * compensation), labels)
        return {"loss": loss, "seesaw": loss}
