"""ceco3d-predict: segment one's own scans (meshes or point clouds) with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ceco3d.cli.common import hydra_app


def run(cfg: DictConfig) -> Path:
    from ceco3d.device import resolve_device
    from ceco3d.engine.segment import segment_scans

    return segment_scans(cfg, resolve_device(cfg.device))


main = hydra_app("predict", run)

if __name__ == "__main__":
    main()
