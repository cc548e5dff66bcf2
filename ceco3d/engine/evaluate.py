"""Inference over a split and the benchmark's point-level metrics.

Predictions are made per voxel and mapped back to every mesh vertex through the inverse map;
one point-level confusion matrix per run gives every number (the official ScanNet semantics:
ignored ground truth skipped, classes without ground truth and prediction are NaN and left out
of means). Voxel-level numbers are reported too, labelled as such.
"""

from __future__ import annotations

from collections.abc import Iterator

import MinkowskiEngine as ME
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ceco3d.analysis.collapse import FeatureAccumulator, collapse_statistics
from ceco3d.data.collate import collate
from ceco3d.data.meta import get_label_set
from ceco3d.engine.distributed import DistInfo
from ceco3d.metrics import ConfusionMatrix, summarize
from ceco3d.models.segmentor import Segmentor


def classifier_weights(model: Segmentor) -> np.ndarray:
    """(K, C) rows of the per-voxel classifier (the final 1x1 convolution)."""
    kernel = model.backbone.final.kernel.detach().cpu()
    return kernel.reshape(-1, *kernel.shape[-2:])[0].T.numpy()


def scene_loader(dataset, dist_info: DistInfo | None = None, max_scenes=None, num_workers=0):
    """One scene per batch; under DDP each rank takes every world_size-th scene."""
    dist_info = dist_info or DistInfo()
    indices = range(len(dataset) if max_scenes is None else min(max_scenes, len(dataset)))
    shard = Subset(dataset, list(indices[dist_info.rank :: dist_info.world_size]))
    return DataLoader(shard, batch_size=1, shuffle=False, num_workers=num_workers,
                      collate_fn=collate)  # fmt: skip


@torch.no_grad()
def predict_voxels(
    model: Segmentor, loader: DataLoader, device: torch.device, progress: bool = False
) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Yields ``(batch, logits (M, K), features (M, C))`` per scene, model in eval mode."""
    model.eval()
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        x = ME.SparseTensor(batch["feats"].to(device), coordinates=batch["coords"].to(device))
        out = model(x)
        yield batch, out["logits"], out["features"]


@torch.no_grad()
def evaluate(
    model: Segmentor,
    dataset,
    device: torch.device,
    dist_info: DistInfo | None = None,
    max_scenes: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> dict:
    """Point- and voxel-level metrics plus neural-collapse statistics of one split.

    Returns ``{"point": summary, "voxel": summary, "collapse": stats, "confusion": (K, K)}``.
    """
    dist_info = dist_info or DistInfo()
    label_set = get_label_set(dataset.label_set)
    k = label_set.num_classes
    points, voxels = ConfusionMatrix(k), ConfusionMatrix(k)
    centers = FeatureAccumulator(k, model.backbone.feature_dim)
    loader = scene_loader(dataset, dist_info, max_scenes, num_workers)
    for batch, logits, features in predict_voxels(model, loader, device, progress):
        labels = batch["labels"]
        pred = logits.argmax(1).cpu()
        voxels.update(labels.numpy(), pred.numpy())
        points.update(batch["point_label"][0], pred[batch["inverse"][0]].numpy())
        centers.update(features, labels.to(features.device))
    if dist_info.enabled:
        points.reduce_()
        voxels.reduce_()
        centers.reduce_()
    return {
        "point": summarize(points.matrix, label_set),
        "voxel": summarize(voxels.matrix, label_set, prefix="voxel_"),
        "collapse": collapse_statistics(centers.centers(), classifier_weights(model)),
        "confusion": points.matrix,
    }
