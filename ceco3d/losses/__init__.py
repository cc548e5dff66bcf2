"""Losses return their named parts: ``{"loss": total, "ce": ..., "center": ...}``."""

from ceco3d.losses.center import CeCoLoss
from ceco3d.losses.cross_entropy import CrossEntropyLoss, class_weights

__all__ = ["CeCoLoss", "CrossEntropyLoss", "class_weights"]
