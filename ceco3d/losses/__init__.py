"""Losses return their named parts: ``{"loss": total, "ce": ..., "center": ...}``.

Per-voxel losses (one module each, the paper in its docstring): ``cross_entropy`` (plain and
class-weighted), ``focal``, ``class_balanced``, ``logit_adjusted`` (and balanced softmax),
``lovasz`` (alone and + CE), ``seesaw``; ``center`` adds CeCo's center term to any of them.
"""

from ceco3d.losses.center import CeCoLoss
from ceco3d.losses.class_balanced import ClassBalancedLoss, effective_number_weights
from ceco3d.losses.cross_entropy import CrossEntropyLoss, class_weights
from ceco3d.losses.focal import FocalLoss
from ceco3d.losses.logit_adjusted import LogitAdjustedLoss, log_class_prior
from ceco3d.losses.lovasz import LovaszSoftmaxLoss
from ceco3d.losses.seesaw import SeesawLoss

__all__ = [
    "CeCoLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LogitAdjustedLoss",
    "LovaszSoftmaxLoss",
    "SeesawLoss",
    "class_weights",
    "effective_number_weights",
    "log_class_prior",
]
