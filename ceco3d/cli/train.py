"""ceco3d-train: a Hydra application; see ceco3d/conf/train.yaml for every setting."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ceco3d.cli.common import hydra_app
from ceco3d.errors import report_errors


class RunFolderGuard(Callback):
    """Before Hydra writes anything into the run folder (``.hydra/``, the log): checks the
    config's values, claims the folder, refuses a run that would replace another's outputs or
    resume with other settings, and keeps the configs of the segment a resumed run continues.
    ``train`` claims and checks again for callers that bypass Hydra."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        from ceco3d.engine.run_folder import keep_segment_config
        from ceco3d.engine.train import claim_and_check

        # Hydra registers its config only when the job starts; the run folder's name may use it
        # (the paper experiments: ${hydra:runtime.choices.loss}).
        HydraConfig.instance().set_config(config)
        run_dir = Path(config.hydra.run.dir)
        cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])

        def guard() -> None:
            if claim_and_check(cfg, run_dir)[0] is not None:
                keep_segment_config(run_dir)

        code = report_errors("ceco3d-train", guard)
        if code:
            sys.exit(code)


def run(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from ceco3d.engine.train import train

    return train(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_app("train", run)

if __name__ == "__main__":
    main()
