"""Published Res16UNet34C / 34D weights as ceco3d models, for inference and as a training init.

Two layouts, read at the commits named, hold the same network under the same module names as
``ceco3d.models.minkunet.Res16UNet34C`` / ``34D`` (``conv0p1s1`` ... ``final``):

* ``lightning``: the ScanNet200 authors' PyTorch Lightning ``.ckpt``
  (RozDavid/LanguageGroundedSemseg@3af87e9330). The LightningModule
  (``lib/train_test/pl_BaselineTrainer.py``) holds the network as ``self.model``, so the file's
  ``state_dict`` keys are ``model.<backbone key>`` beside the trainer's ``epoch``,
  ``global_step``, ``pytorch-lightning_version``, ``optimizer_states``, ``hyper_parameters``.
* ``csc``: a Contrastive Scene Contexts ``.pth`` (facebookresearch/ContrastiveSceneContexts@
  83515bef47): ``{"state_dict", "optimizer", "iteration", "epoch", "arch", ...}`` from
  ``downstream/semseg/lib/utils.py::checkpoint`` (fine-tuned) or ``{"state_dict", "optimizer",
  "scheduler", "curr_iter"}`` from ``pretrain/.../lib/ddp_trainer.py`` (pretrained); both save the
  unwrapped network, and their loaders also strip ``module.`` (DDP) and ``encoder.`` prefixes.

A bare state dict (tensors only) with those keys is read too. What their models were fed, from
their code, and how ceco3d gives the same:

* colour only, ``color / 255 - 0.5`` (LG ``pl_BaselineTrainer.py``, CSC ``lib/test.py``, both
  with ``normalize_color`` on). ceco3d feeds ``color / 127.5 - 1``, exactly twice that, and the
  stem convolution is linear without bias, so its kernel is halved on loading;
* 2 cm voxels (LG ``Scannet200Voxelization2cmDataset``, CSC ``ScannetVoxelization2cmDataset``);
* grid ``floor(xyz / voxel size)`` (LG ``lib/voxelizer.py``), minus its per-scene minimum in CSC
  (``datasets/voxelizer.py``): ``grid_origin`` "zero" / "min_corner" of the backbone;
* output channel j is the j-th valid class id in ascending order (both ``label_map`` loops over
  ``range(NUM_LABELS)``), which is ceco3d's benchmark order for ScanNet20 and ScanNet200 alike
  (``tests/test_published_weights.py`` checks it), so the classifier is taken as it is.

They give each voxel one of its points' colour (``ME.utils.sparse_quantize``), ceco3d the mean
of its points: the one input difference left. Weights of MinkowskiEngine 0.4.x (CSC's release)
need no conversion: the kernel offset order is the same in 0.4.3 and 0.5.4 (docs/interop.md).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.engine.checkpoint import load_checkpoint
from ceco3d.errors import UsageError
from ceco3d.models.minkunet import MinkUNetBase, Res16UNet34C, Res16UNet34D
from ceco3d.models.segmentor import Segmentor

PUBLISHED_BACKBONES = (Res16UNet34C, Res16UNet34D)
PREFIXES = ("module.", "model.", "encoder.")
LIGHTNING_KEYS = ("pytorch-lightning_version", "global_step")
# What the published models were trained with (see the module docstring).
VOXEL_SIZE = 0.02
COLOR_SCALE = 0.5  # their colour feature / ceco3d's
BN_MOMENTUM = 0.02
STEM, CLASSIFIER = "conv0p1s1.", "final."
# BatchNorm's step counter: files written before torch 0.4.1 lack it, and nothing reads it.
OPTIONAL_SUFFIX = "num_batches_tracked"
CECO3D_MARK = b"checkpoint_version"  # a key of every ceco3d checkpoint (engine.checkpoint)
LISTED = 8


@dataclass
class PublishedWeights:
    """A published file's backbone weights, converted to what a ceco3d backbone expects."""

    path: Path
    layout: str  # "lightning", "csc" or "state dict"
    backbone: type[MinkUNetBase]
    in_channels: int
    num_classes: int
    state: dict[str, torch.Tensor]  # backbone keys
    grid_origin: str
    ignored: list[str] = field(default_factory=list)  # a Lightning module's non-network keys

    @property
    def target(self) -> str:
        return f"{self.backbone.__module__}.{self.backbone.__name__}"

    def label_set(self) -> str:
        """The ceco3d label set of the classifier; a usage error where it has no such count."""
        for name, label_set in LABEL_SETS.items():
            if label_set.num_classes == self.num_classes:
                return name
        counts = ", ".join(f"{s.num_classes} ({n})" for n, s in LABEL_SETS.items())
        raise UsageError(
            f"{self.path}: its classifier (final.kernel) has {self.num_classes} outputs, but "
            f"ceco3d evaluates {counts} classes; a pretraining checkpoint (as CSC's) is a start "
            f"for fine-tuning: ceco3d-train model.init={self.path}"
        )

    def checkpoint(self) -> dict:
        """A ceco3d-style ``{"config", "model"}`` to run inference with (``data.root`` is the
        user's to give)."""
        name = self.label_set()
        backbone = {"_target_": self.target, "bn_momentum": BN_MOMENTUM,
                    "grid_origin": self.grid_origin}  # fmt: skip
        data = {"label_set": name, "num_classes": self.num_classes, "features": "color",
                "voxel_size": VOXEL_SIZE, "revoxelize": False, "root": "???"}  # fmt: skip
        model = {f"backbone.{k}": v for k, v in self.state.items()}
        return {"config": {"seed": 0, "data": data, "model": {"backbone": backbone}},
                "model": model}  # fmt: skip

    def describe(self) -> str:
        ignored = f", {len(self.ignored)} trainer keys ignored" if self.ignored else ""
        return (f"{self.path} ({self.layout} layout, {self.backbone.__name__}, "
                f"{self.num_classes} classes, grid origin {self.grid_origin}"
                f"{ignored})")  # fmt: skip


def is_ceco3d_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint ceco3d-train wrote (read from its pickle's bytes only:
    nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            return name is not None and CECO3D_MARK in archive.read(name)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def read_published(path: str | Path) -> PublishedWeights | None:
    """The published weights in ``path``; None where it is a ceco3d checkpoint (or no file). A
    file that is unreadable, of an unknown layout or of another network is a usage error that
    says which keys do not fit."""
    path = Path(path)
    if not path.is_file() or is_ceco3d_checkpoint(path):
        return None  # ceco3d's loader says what is wrong with a missing file
    layout, weights, ignored = unwrap(path, load_tensors(path))
    backbone, in_channels, num_classes, expected = identify(path, weights)
    if in_channels != 3:
        raise UsageError(
            f"{path}: its stem (conv0p1s1.kernel) takes {in_channels} input channels; the "
            "published ScanNet models take colour only (3), which is what ceco3d can feed them"
        )
    # A fresh BatchNorm's counter where the file has none (it changes no output).
    state = {k: torch.zeros((), dtype=torch.long) for k in expected if k.endswith(OPTIONAL_SUFFIX)}
    state.update(weights)
    stem = f"{STEM}kernel"
    state[stem] = weights[stem] * COLOR_SCALE
    origin = "min_corner" if layout == "csc" else "zero"
    return PublishedWeights(
        path, layout, backbone, in_channels, num_classes, state, origin, ignored
    )


def load_tensors(path: Path) -> object:
    """``torch.load`` that runs no code from the file: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[-1]
        raise UsageError(
            f"{path}: holds Python objects besides tensors and plain containers ({reason}); "
            "ceco3d loads published weights with torch.load(weights_only=True) only. Where you "
            "trust the file, save its weights alone in the code that wrote it: "
            "torch.save(torch.load(PATH)['state_dict'], 'weights.pth')"
        ) from None
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise UsageError(
            f"{path}: not a readable torch file ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "a truncated download? Fetch it again and compare its checksum"
        ) from None


def unwrap(path: Path, obj: object) -> tuple[str, dict[str, torch.Tensor], list[str]]:
    """``(layout, network weights without prefixes, ignored keys)`` of a loaded file."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        layout = "lightning" if any(k in obj for k in LIGHTNING_KEYS) else "csc"
        weights = obj["state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        layout, weights = "state dict", obj
    else:
        top = sorted(map(str, obj))[:LISTED] if isinstance(obj, dict) else type(obj).__name__
        raise UsageError(
            f"{path}: unknown checkpoint layout (top level: {top}); ceco3d reads a ceco3d-train "
            "checkpoint, the ScanNet200 authors' Lightning .ckpt ({'state_dict': {'model.…'}}), "
            "a CSC .pth ({'state_dict': …}) or a bare state dict of Res16UNet34C / 34D"
        )
    ignored = []
    if layout == "lightning":  # the trainer's own modules (losses, metrics) beside the network
        ignored = sorted(k for k in weights if not k.startswith("model."))
        weights = {k: v for k, v in weights.items() if k.startswith("model.")}
    for prefix in PREFIXES:
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k.removeprefix(prefix): v for k, v in weights.items()}
    return layout, weights, ignored


def expected_shapes(backbone: type[MinkUNetBase], in_channels: int, num_classes: int) -> dict:
    return {k: tuple(v.shape) for k, v in backbone(in_channels, num_classes).state_dict().items()}


def fit_problems(weights: dict[str, torch.Tensor], expected: dict[str, tuple]) -> list[str]:
    """What keeps ``weights`` from being exactly a backbone of ``expected`` shapes."""
    unknown = sorted(set(weights) - set(expected))
    missing = sorted(k for k in set(expected) - set(weights) if not k.endswith(OPTIONAL_SUFFIX))
    shapes = [
        f"{k} {tuple(weights[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in weights and tuple(weights[k].shape) != expected[k]
    ]
    problems = []
    for what, keys in (("unknown keys", unknown), ("missing keys", missing), ("shapes", shapes)):
        if keys:
            more = f" and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:LISTED])}{more}")
    return problems


def identify(
    path: Path, weights: dict[str, torch.Tensor]
) -> tuple[type[MinkUNetBase], int, int, dict[str, tuple]]:
    """``(backbone class, input channels, classes, its shapes)`` of the published backbone that
    ``weights`` are, key for key and shape for shape."""
    try:
        in_channels = weights[f"{STEM}kernel"].shape[1]
        num_classes = weights[f"{CLASSIFIER}kernel"].shape[1]
    except (KeyError, IndexError):
        in_channels = num_classes = None
    best = None
    if in_channels is not None:
        for backbone in PUBLISHED_BACKBONES:
            expected = expected_shapes(backbone, in_channels, num_classes)
            problems = fit_problems(weights, expected)
            if not problems:
                return backbone, in_channels, num_classes, expected
            if best is None or len(problems) < len(best[1]):
                best = (backbone, problems)
    names = " / ".join(b.__name__ for b in PUBLISHED_BACKBONES)
    found = (
        f"closest {best[0].__name__}: {'; '.join(best[1])}"
        if best
        else f"no {STEM}kernel / {CLASSIFIER}kernel; first keys: {sorted(weights)[:LISTED]}"
    )
    raise UsageError(f"{path}: these weights are not a {names} as ceco3d defines them ({found}); "
                     "nothing was loaded")  # fmt: skip


def init_weights(model: Segmentor, path: str | Path, backbone_only: bool = False) -> str:
    """Load the backbone weights of ``path`` (published, or a ceco3d checkpoint) into
    ``model.backbone``: every tensor, the classifier too unless ``backbone_only`` or its class
    count differs. Returns the report of what was loaded and what was left at its
    initialisation; any other key or shape that does not fit is a usage error, and then nothing
    is loaded."""
    source, what = init_source(Path(path))
    own = model.backbone.state_dict()
    body = {k: tuple(v.shape) for k, v in own.items() if not k.startswith(CLASSIFIER)}
    problems = fit_problems({k: v for k, v in source.items() if not k.startswith(CLASSIFIER)}, body)
    if problems:
        raise UsageError(
            f"model.init={path}: its weights do not fit model.backbone "
            f"({type(model.backbone).__name__}): {'; '.join(problems)}; nothing was loaded. "
            "Choose the model= the weights were trained as (e.g. model=res16unet34c)"
        )
    kernel = f"{CLASSIFIER}kernel"
    theirs = tuple(source[kernel].shape) if kernel in source else None
    mine = tuple(own[kernel].shape)
    skip = backbone_only or theirs != mine
    loaded = {k: v for k, v in source.items() if k in own and not (skip and k not in body)}
    model.backbone.load_state_dict({**own, **loaded})
    left = [k for k in own if k not in loaded]
    why = ("model.init_backbone_only=true" if backbone_only else
           f"the file's classifier is {theirs}, this model's {mine}")  # fmt: skip
    report = f"model.init: loaded {len(loaded)} of {len(own)} backbone tensors from {what}"
    report += f"; left at their initialisation: {', '.join(left)} ({why})" if left else ""
    if model.center_head is not None:
        report += "; the center-collapse head starts from its own initialisation"
    return report


def init_source(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone weights of a published file or of a ceco3d checkpoint, and their name."""
    published = read_published(path)
    if published is not None:
        return published.state, published.describe()
    prefix = "backbone."
    model = load_checkpoint(path)["model"]
    weights = {k.removeprefix(prefix): v for k, v in model.items() if k.startswith(prefix)}
    return weights, f"{path} (ceco3d checkpoint)"
