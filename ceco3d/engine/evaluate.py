"""Inference over a split and the benchmark's point-level metrics.

Predictions are made per voxel and mapped back to every mesh vertex through the inverse map;
one point-level confusion matrix per run gives every number (the official ScanNet semantics:
ignored ground truth skipped, classes without ground truth and prediction are NaN and left out
of means). Voxel-level numbers are reported too, labelled as such; with test-time augmentation
the averaged-logit numbers are reported separately from the single pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from ceco3d.data.dataset import ScanNetDataset
from ceco3d.engine.distributed import DistInfo
from ceco3d.engine.inference import predict_scenes
from ceco3d.metrics import ConfusionMatrix, summarize
from ceco3d.models.segmentor import Segmentor
from ceco3d.neural_collapse import FeatureAccumulator, collapse_statistics


def classifier_weights(model: Segmentor) -> np.ndarray:
    """(K, C) rows of the per-voxel classifier (the final 1x1 convolution)."""
    kernel = model.backbone.final.kernel.detach().cpu()
    return kernel.reshape(-1, *kernel.shape[-2:])[0].T.numpy()


@torch.no_grad()
def evaluate(
    model: Segmentor,
    datasets: ScanNetDataset | list[ScanNetDataset],
    device: torch.device,
    dist_info: DistInfo | None = None,
    max_scenes: int | None = None,
    progress: bool = False,
    on_scene: Callable[[dict, np.ndarray], None] | None = None,
) -> dict:
    """Metrics of one split. ``datasets``: the plain evaluation dataset, optionally followed by
    test-time-augmentation views (see ``ceco3d.engine.inference.view_datasets``).

    Returns ``{"point", "voxel", "collapse", "confusion", "num_scenes"}`` (+ ``"tta"``,
    ``"confusion_tta"`` with views), ``num_scenes`` the scenes scored (all ranks);
    ``on_scene(sample, vertex_prediction)`` is called for every scene.
    Under DDP each rank predicts every world_size-th scene and the matrices are summed.
    """
    dist_info = dist_info or DistInfo()
    datasets = datasets if isinstance(datasets, list) else [datasets]
    label_set = datasets[0].label_set
    k = label_set.num_classes
    single, voxels, tta = ConfusionMatrix(k), ConfusionMatrix(k), ConfusionMatrix(k)
    centers = FeatureAccumulator(k, model.backbone.feature_dim)
    count = len(datasets[0]) if max_scenes is None else min(max_scenes, len(datasets[0]))
    indices = range(count)[dist_info.rank :: dist_info.world_size]
    scenes = predict_scenes(model, datasets, device, indices)
    for sample, out, vertex_pred in tqdm(
        scenes, total=len(indices), desc="evaluate", disable=not progress, leave=False
    ):
        voxels.update(sample["label"], out["pred"])
        single.update(sample["point_label"], out["pred"][sample["inverse"]])
        if len(datasets) > 1:
            tta.update(sample["point_label"], vertex_pred)
        centers.update(out["features"], torch.as_tensor(sample["label"], device=device))
        if on_scene is not None:
            on_scene(sample, vertex_pred)
    if dist_info.enabled:
        for accumulator in (single, voxels, tta, centers):
            accumulator.reduce_()
    results = {
        "point": summarize(single.matrix, label_set),
        "voxel": summarize(voxels.matrix, label_set, prefix="voxel_"),
        "collapse": collapse_statistics(centers.centers(), classifier_weights(model)),
        "confusion": single.matrix,
        "num_scenes": count,
    }
    if len(datasets) > 1:
        results["tta"] = summarize(tta.matrix, label_set, prefix="tta_")
        results["confusion_tta"] = tta.matrix
    return results
