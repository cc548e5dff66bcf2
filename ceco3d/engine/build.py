"""Build datasets, model and loss from the config (orchestration: plain code, leaves via Hydra)."""

from __future__ import annotations

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ceco3d.data.dataset import FEATURE_CHANNELS, ScanNetDataset, prepared_voxel_size
from ceco3d.data.layout import MANIFEST
from ceco3d.data.paste import PasteSettings
from ceco3d.data.sampler import repeat_factors
from ceco3d.data.transforms import TTAView
from ceco3d.errors import InputError
from ceco3d.models.center_collapse import CenterCollapseHead
from ceco3d.models.segmentor import Segmentor


def build_dataset(
    cfg: DictConfig, split: str, training: bool, view: TTAView | None = None
) -> ScanNetDataset:
    """Training: augmented, cropped to ``data.max_voxels``, labelled scenes only, with the
    instances ``paste`` asks for. Otherwise the prepared voxels, or the scenes seen through a
    test-time ``view``."""
    data = cfg.data
    return ScanNetDataset(
        root=data.root,
        split=split,
        label_set=data.label_set,
        features=data.features,
        voxel_size=data.voxel_size,
        augment=instantiate(cfg.aug) if training else view,
        crop=data.max_voxels if training else None,
        revoxelize=data.revoxelize,
        labelled_only=training,
        seed=cfg.seed,
        paste=PasteSettings(**cfg.paste) if training and cfg.paste.instances else None,
    )


def require_scenes(dataset: ScanNetDataset, key: str) -> None:
    """``dataset`` has a scene to work on; otherwise the message names the split's ``key``."""
    if not len(dataset):
        raise InputError(
            f"{dataset.root / MANIFEST}: the {dataset.split} split lists no scenes, so there is "
            f"nothing to evaluate; choose another {key}=, or prepare scenes of this split "
            "(ceco3d-prep reads them from its split lists)"
        )


def fill_voxel_size(cfg: DictConfig) -> None:
    """``data.voxel_size=null`` means the prepared data's: write it into the config, which the
    augmentations interpolate and the checkpoints record."""
    if cfg.data.voxel_size is None:
        cfg.data.voxel_size = prepared_voxel_size(cfg.data.root)


def build_model(cfg: DictConfig, train_set: ScanNetDataset | None = None) -> Segmentor:
    """The segmentor; with ``loss=ceco`` and a training set (for the class prior) it carries the
    center-collapse head, otherwise it is the plain inference model."""
    backbone = instantiate(
        cfg.model.backbone,
        in_channels=FEATURE_CHANNELS[cfg.data.features],
        num_classes=cfg.data.num_classes,
    )
    head_cfg = cfg.model.get("center_head")
    center_head = None
    if head_cfg is not None and train_set is not None:
        prior = CenterCollapseHead.prior_from_scene_counts(
            train_set.train_class_counts("scene_counts"), train_set.num_train_scenes
        )
        center_head = instantiate(
            head_cfg, in_dim=backbone.feature_dim, num_classes=cfg.data.num_classes, prior=prior
        )
    return Segmentor(backbone, center_head)


def scene_repeat_factors(cfg: DictConfig, train_set: ScanNetDataset) -> np.ndarray | None:
    """The training scenes' repeat factors under ``sampler=repeat_factor``, else None."""
    threshold = cfg.sampler.repeat_threshold
    if threshold is None:
        return None
    return repeat_factors(train_set.scene_class_presence(), threshold)


def build_loss(cfg: DictConfig, train_set: ScanNetDataset):
    """The loss, given the training voxel counts (class weights and priors come from them). A
    loss with a ``voxel`` node (ceco3d/conf/loss/ceco.yaml) adds a term to that per-voxel loss,
    which is the one that takes the counts."""
    counts = train_set.train_class_counts("voxel_counts")
    if "voxel" in cfg.loss:
        return instantiate(cfg.loss, voxel={"class_counts": counts})
    return instantiate(cfg.loss, class_counts=counts)
