"""ceco3d-train: a Hydra application; see conf/train.yaml for every setting."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ceco3d.cli.common import hydra_app


def run(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from ceco3d.engine.train import train

    return train(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_app("train", run)

if __name__ == "__main__":
    main()
