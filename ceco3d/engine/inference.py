"""Inference from a checkpoint: per-vertex predictions of a split or of any point set,
optionally with test-time augmentation (rotations about z, flips, scales; logits averaged per
vertex)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ceco3d.data.collate import collate
from ceco3d.data.dataset import ScanNetDataset, point_features, voxel_mean
from ceco3d.data.transforms import TTAView
from ceco3d.data.voxelize import voxelize
from ceco3d.engine.build import build_dataset, build_model
from ceco3d.engine.checkpoint import TRAIN_VOXEL_COUNTS, load_checkpoint
from ceco3d.engine.config_checks import check_data, check_posthoc_tau, check_weights_fit
from ceco3d.engine.published_weights import read_published
from ceco3d.errors import InputError
from ceco3d.losses import log_class_prior
from ceco3d.models.segmentor import CENTER_HEAD_PREFIX, Segmentor, sparse_input

log = logging.getLogger("ceco3d.inference")

# What a checkpoint's config must say to rebuild the model and feed it like in training.
INFERENCE_KEYS = (
    "data.label_set", "data.num_classes", "data.features", "data.voxel_size",
    "model.backbone._target_",
)  # fmt: skip


def _check_inference_metadata(path: str | Path, ckpt: dict) -> None:
    lacks = [] if "model" in ckpt else ["model weights"]
    config = OmegaConf.create(ckpt.get("config") or {})
    lacks += [f"config key {k}" for k in INFERENCE_KEYS if OmegaConf.select(config, k) is None]
    if lacks:
        raise InputError(
            f"{path}: the checkpoint lacks {', '.join(lacks)}; use a checkpoint written by "
            "ceco3d-train (RUN/checkpoints/last.pt or best.pt)"
        )


def data_overrides(cfg: DictConfig) -> list[str]:
    """The ``data.*`` keys a user set (non-null) as overrides of a checkpoint's config."""
    return [f"data.{k}={v}" for k, v in cfg.data.items() if v is not None]


def load_for_inference(
    ckpt_path: str | Path, overrides: list[str] = (), device: str = "cpu",
    posthoc_tau: float = 0.0,
) -> tuple[Segmentor, DictConfig]:  # fmt: skip
    """The plain (inference) model of a checkpoint and its config with ``overrides`` applied
    (e.g. ``data.root=/elsewhere``); the center-collapse branch is not built. A non-zero
    ``posthoc_tau`` adjusts the model's logits post hoc (``adjust_logits_posthoc``) and records
    ``posthoc: {tau, prior}`` in the returned config, ``prior`` saying where the class counts
    came from."""
    return inference_model(read_for_inference(ckpt_path), ckpt_path, overrides, device, posthoc_tau)


def read_for_inference(ckpt_path: str | Path) -> dict:
    """A checkpoint to run inference with: ceco3d's own (``load_checkpoint``), or published
    Res16UNet weights (``published_weights``) in the shape of one."""
    published = read_published(ckpt_path)  # None: a ceco3d checkpoint
    if published is None:
        return load_checkpoint(ckpt_path)
    log.info("published weights: %s", published.describe())
    return published.checkpoint()


def inference_model(
    ckpt: dict, ckpt_path: str | Path, overrides: list[str] = (), device: str = "cpu",
    posthoc_tau: float = 0.0,
) -> tuple[Segmentor, DictConfig]:  # fmt: skip
    """``load_for_inference`` of a checkpoint read already (``read_for_inference``)."""
    check_posthoc_tau(posthoc_tau)
    _check_inference_metadata(ckpt_path, ckpt)
    cfg = OmegaConf.create(ckpt["config"])
    cfg.merge_with_dotlist(list(overrides))
    check_data(cfg)
    check_weights_fit(ckpt["config"], cfg, Path(ckpt_path))
    model = build_model(cfg)
    weights = {k: v for k, v in ckpt["model"].items() if not k.startswith(CENTER_HEAD_PREFIX)}
    model.load_state_dict(weights)
    if posthoc_tau:
        counts, source = _training_voxel_counts(ckpt, cfg, Path(ckpt_path))
        adjust_logits_posthoc(model, counts, posthoc_tau)
        cfg.posthoc = {"tau": float(posthoc_tau), "prior": source}
    return model.to(device).eval(), cfg


def checkpoint_record(ckpt: dict, ckpt_path: str | Path) -> dict:
    """What a result records of the checkpoint it came from: path, checksum, training step."""
    return {"checkpoint": str(Path(ckpt_path).resolve()), "checkpoint_checksum":
            ckpt.get("checksum"), "checkpoint_step": ckpt.get("step")}  # fmt: skip


def posthoc_setting(cfg: DictConfig) -> dict:
    """What ``load_for_inference`` recorded of its post-hoc adjustment: ``{"tau", "prior"}``,
    or ``{"tau": 0.0}`` for none (the config it returned)."""
    return OmegaConf.to_container(cfg.posthoc) if "posthoc" in cfg else {"tau": 0.0}


def _training_voxel_counts(ckpt: dict, cfg: DictConfig, path: Path) -> tuple[np.ndarray, str]:
    """The training voxels per class: the checkpoint's own copy, or, for checkpoints written
    before they kept one, the prepared data's manifest at ``data.root``."""
    if TRAIN_VOXEL_COUNTS in ckpt:
        return np.asarray(ckpt[TRAIN_VOXEL_COUNTS]), "training voxel counts kept in the checkpoint"
    try:
        counts = build_dataset(cfg, "train", training=False).train_class_counts("voxel_counts")
    except InputError as e:
        raise InputError(
            f"{path}: post-hoc logit adjustment needs the training class counts, which this "
            f"checkpoint predates, and the prepared data does not give them ({e}); point "
            "data.root at the data it was trained on, or retrain"
        ) from None
    return counts, f"training voxel counts of the manifest in {cfg.data.root}"


def adjust_logits_posthoc(model: Segmentor, class_counts, tau: float) -> None:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021, "Long-Tail Learning via Logit
    Adjustment"): from now on ``model``'s logits are ``z - tau log pi``, ``pi`` the training
    voxel frequency (``ceco3d.losses.log_class_prior``), so every prediction is
    ``argmax_k (z_k - tau log pi_k)``; with test-time augmentation the views' sum is shifted by
    the number of views times as much, which gives the adjusted mean's argmax. The shift is
    folded into the bias of the classifier (the final 1x1 convolution)."""
    bias = model.backbone.final.bias
    with torch.no_grad():
        bias -= (float(tau) * log_class_prior(class_counts)).to(bias)


@torch.no_grad()
def forward_sample(model: Segmentor, sample: dict, device: torch.device) -> dict:
    """Model outputs (``logits`` (M, K), ``features`` (M, C)) for one dataset item."""
    batch = collate([sample])
    return model(sparse_input(batch["feats"], batch["coords"], device))


def view_datasets(cfg: DictConfig, split: str, views: list[TTAView]) -> list[ScanNetDataset]:
    """The plain evaluation dataset, then one re-voxelizing dataset per non-identity view."""
    plain = build_dataset(cfg, split, training=False)
    extra = [build_dataset(cfg, split, training=False, view=v) for v in views if v != TTAView()]
    return [plain, *extra]


@torch.no_grad()
def predict_scenes(
    model: Segmentor,
    datasets: list[ScanNetDataset],
    device: torch.device,
    indices=None,
) -> Iterator[tuple[dict, dict, np.ndarray]]:
    """Yields ``(plain sample, model outputs of the plain view + its voxel prediction "pred"
    (M,), vertex prediction (N,))``. With views, the vertex prediction is the argmax of every
    view's voxel logits gathered through its inverse map and averaged; without, it is the plain
    voxel prediction gathered through the inverse map (no (N, K) logits are formed)."""
    model.eval()
    plain = datasets[0]
    for index in indices if indices is not None else range(len(plain)):
        sample = plain[index]
        out = forward_sample(model, sample, device)
        out["pred"] = out["logits"].argmax(1).cpu().numpy()
        if len(datasets) == 1:
            yield sample, out, out["pred"][sample["inverse"]]
            continue
        vertex = out["logits"][torch.as_tensor(sample["inverse"], device=device)]
        for dataset in datasets[1:]:
            view = dataset[index]
            logits = forward_sample(model, view, device)["logits"]
            vertex = vertex + logits[torch.as_tensor(view["inverse"], device=device)]
        yield sample, out, vertex.argmax(1).cpu().numpy()


def predict_split(
    model: Segmentor, cfg: DictConfig, split: str, views: list[TTAView] | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(scene, per-vertex class indices (N,))`` in mesh vertex order."""
    device = next(model.parameters()).device
    datasets = view_datasets(cfg, split, views or [TTAView()])
    for sample, _, vertex_pred in predict_scenes(model, datasets, device):
        yield sample["scene"], vertex_pred


@torch.no_grad()
def _voxel_logits(
    model: Segmentor, points: dict, features: str, voxel_size: float, device: torch.device,
    source: object,
) -> tuple[torch.Tensor, np.ndarray]:  # fmt: skip
    """(M, K) logits of the voxels of ``points`` and the (N,) voxel of every point."""
    voxels = voxelize(points["coord"], voxel_size, source)
    feats = voxel_mean(point_features(points, features), voxels.inverse, voxels.num_voxels)
    coords = np.zeros((voxels.num_voxels, 4), dtype=np.int32)
    coords[:, 1:] = voxels.grid
    out = model(sparse_input(torch.from_numpy(feats), torch.from_numpy(coords), device))
    return out["logits"], voxels.inverse


@torch.no_grad()
def predict_points(
    model: Segmentor,
    points: dict,
    features: str,
    voxel_size: float,
    views: list[TTAView] | None = None,
    chunk: int = 1 << 20,
    source: object = "the points",
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int16 class index of every point, and (N,) the voxel of every point in the plain
    voxelization. The points are voxelized at ``voxel_size`` and fed as in training (voxel means
    of ``point_features``); each point takes its voxel's prediction. With ``views`` (the
    identity first, see ``tta_views``) every view is voxelized anew and each point takes the
    argmax of the sum of its voxels' logits over the views.

    ``points``: ``coord`` (N, 3) float32 metres, ``color`` (N, 3) 0..255, ``normal`` (N, 3) where
    ``features`` uses it. Without views no (N, K) array is formed; with them one (N, K) float32
    sum is, filled ``chunk`` points at a time. ``source`` (the scan's file) names the points in
    the message on coordinates beyond the voxel grid."""
    model.eval()
    device = next(model.parameters()).device
    views = views or [TTAView()]
    if views[0] != TTAView():
        raise ValueError("the first view must be the identity")
    logits, plain_inverse = _voxel_logits(model, points, features, voxel_size, device, source)
    if len(views) == 1:
        return logits.argmax(1).to(torch.int16).cpu().numpy()[plain_inverse], plain_inverse
    total = torch.zeros(len(plain_inverse), logits.shape[1])
    for index, view in enumerate(views):
        if index:
            logits, inverse = _voxel_logits(
                model, view(points), features, voxel_size, device, source
            )
        else:
            inverse = plain_inverse
        logits = logits.cpu()
        for start in range(0, len(inverse), chunk):
            total[start : start + chunk] += logits[torch.from_numpy(inverse[start : start + chunk])]
    return total.argmax(1).to(torch.int16).numpy(), plain_inverse
