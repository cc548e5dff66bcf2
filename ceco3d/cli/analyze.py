"""ceco3d-analyze: neural-collapse and imbalance statistics of checkpoints (JSON + plots)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from ceco3d.cli.common import data_overrides, hydra_app

log = logging.getLogger("ceco3d.analyze")


def run(cfg: DictConfig) -> dict:
    import torch

    from ceco3d.analysis.report import analyze
    from ceco3d.device import resolve_device
    from ceco3d.engine.config_checks import check_count

    check_count(cfg, "max_scenes", 1, nullable=True)
    ckpts = list(cfg.ckpt) if isinstance(cfg.ckpt, ListConfig) else [cfg.ckpt]
    names = list(cfg.names) if cfg.names is not None else None
    overrides = data_overrides(cfg)
    device = torch.device(resolve_device(cfg.device))
    report = analyze(ckpts, names, cfg.split, Path(cfg.out), device, overrides, cfg.max_scenes)
    log.info("analysis of %s:\n%s", cfg.split, json.dumps(report["models"], indent=1, default=str))
    log.info("wrote %s", Path(cfg.out).resolve())
    return report


main = hydra_app("analyze", run)

if __name__ == "__main__":
    main()
