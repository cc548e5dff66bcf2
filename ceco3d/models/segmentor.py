"""Backbone + optional center-collapse branch; the branch runs only in training."""

from __future__ import annotations

import MinkowskiEngine as ME
import torch
from torch import nn

from ceco3d.models.center_collapse import CenterCollapseHead
from ceco3d.models.minkunet import MinkUNetBase

CENTER_HEAD_PREFIX = "center_head."


def sparse_input(
    feats: torch.Tensor, coords: torch.Tensor, device: torch.device
) -> ME.SparseTensor:
    """``feats`` (N, C) on ``coords`` (N, 4) batch+grid as a SparseTensor on ``device``.

    Built anew for every batch (its coordinate manager caches kernel maps per batch). ME's
    default coordinate manager calls ``omp_set_num_threads(os.cpu_count())`` whenever it is
    built, which silently undoes ``torch.set_num_threads`` for every later op, and its
    multi-threaded kernel-map construction then depends on thread timing, so CPU runs would not
    repeat. The manager is therefore built with torch's own thread count.
    """
    map_type = ME.CoordinateMapType.CUDA if device.type == "cuda" else ME.CoordinateMapType.CPU
    manager = ME.CoordinateManager(
        D=coords.shape[1] - 1, num_threads=torch.get_num_threads(), coordinate_map_type=map_type
    )
    return ME.SparseTensor(
        feats.to(device), coordinates=coords.to(device), coordinate_manager=manager
    )


def shifted_to_min_corner(x: ME.SparseTensor) -> ME.SparseTensor:
    """``x`` with each batch item's grid coordinates minus their minimum (rows kept in order)."""
    coords = x.C.clone()
    if not len(coords):
        return x
    batch = coords[:, 0].long()
    minimum = torch.full((int(batch.max()) + 1, coords.shape[1] - 1), torch.iinfo(coords.dtype).max,
                         dtype=coords.dtype, device=coords.device)  # fmt: skip
    minimum = minimum.scatter_reduce(0, batch[:, None].expand(-1, minimum.shape[1]), coords[:, 1:],
                                     "amin")  # fmt: skip
    coords[:, 1:] -= minimum[batch]
    return sparse_input(x.F, coords, x.F.device)


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
        if self.backbone.grid_origin == "min_corner":
            x = shifted_to_min_corner(x)
        logits, features = self.backbone(x)
        out = {"logits": logits, "features": features}
        if self.training and self.center_head is not None and labels is not None:
            out["center_logits"], out["center_classes"] = self.center_head(features, labels)
        return out

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the deployed model: the center-collapse branch is not part of it."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(CENTER_HEAD_PREFIX)}
