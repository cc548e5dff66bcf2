"""Tools above the library: the benchmarks (``bench``) and the demo pipeline (``demo``). They
use every layer of ceco3d and ``data_prep``; nothing in ceco3d but ``cli`` imports them."""

from omegaconf import DictConfig

# What the bench compares: the baseline and the method (ceco3d/conf/loss/<name>.yaml).
COMPARED_LOSSES = ("ce", "ceco")


def backbone_name(cfg: DictConfig) -> str:
    """The backbone's class name, for reports (ceco3d/conf/model/ gives ``backbone._target_``)."""
    return cfg.model.backbone._target_.rpartition(".")[2]
