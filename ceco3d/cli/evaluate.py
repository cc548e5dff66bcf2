"""ceco3d-eval: benchmark metrics of a checkpoint on a split, with optional TTA and exports."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ceco3d.cli.common import hydra_app


def eval_dir(ckpt: str, split: str) -> str:
    """The default output folder: ``RUN/eval_<split>_<checkpoint name>``, one per checkpoint."""
    path = Path(ckpt).resolve()
    return str(path.parent.parent / f"eval_{split}_{path.stem}")


OmegaConf.register_new_resolver("eval_dir", eval_dir, replace=True)


def run(cfg: DictConfig) -> dict:
    from ceco3d.engine.evaluate_checkpoint import evaluate_checkpoint

    return evaluate_checkpoint(cfg)


main = hydra_app("eval", run)

if __name__ == "__main__":
    main()
