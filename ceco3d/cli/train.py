"""ceco3d-train: a Hydra application; see ceco3d/conf/train.yaml for every setting."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ceco3d.cli.common import hydra_app
from ceco3d.errors import report_errors


class RunFolderGuard(Callback):
    """Refuses bad config values, and a run that would replace another's outputs, before Hydra
    writes anything into its folder (``.hydra/``, the log); ``train`` checks again for callers
    that bypass Hydra."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        from ceco3d.engine.config_checks import check_training
        from ceco3d.engine.run_folder import resume_checkpoint

        # Hydra registers its config only when the job starts; the run folder's name may use it
        # (the paper experiments: ${hydra:runtime.choices.loss}).
        HydraConfig.instance().set_config(config)

        def check() -> None:
            check_training(config)
            resume_checkpoint(Path(config.hydra.run.dir), config.trainer.resume)

        code = report_errors("ceco3d-train", check)
        if code:
            sys.exit(code)


def run(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from ceco3d.engine.train import train

    return train(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_app("train", run)

if __name__ == "__main__":
    main()
