"""``ceco3d-submit``: write a ScanNet benchmark submission zip from a checkpoint, or check one.
A Hydra application like the other commands (unknown keys are refused); see
ceco3d/conf/submit.yaml."""

from __future__ import annotations

from omegaconf import DictConfig

from ceco3d.cli.common import hydra_app


def run(cfg: DictConfig) -> None:
    from ceco3d.engine.submit import submit

    submit(cfg)


main = hydra_app("submit", run)

if __name__ == "__main__":
    main()
