"""ceco3d-train: a Hydra application; see conf/train.yaml for every setting."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ceco3d.cli.common import exit_cleanly_on, quiet_minkowski_warnings
from ceco3d.paths import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    quiet_minkowski_warnings()
    from hydra.core.hydra_config import HydraConfig

    from ceco3d.engine.train import NonFiniteLossError, train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    exit_cleanly_on(NonFiniteLossError)(train)(cfg, run_dir)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
