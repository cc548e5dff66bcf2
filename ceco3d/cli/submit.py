"""``ceco3d-submit``: write a ScanNet benchmark submission zip from a checkpoint, or check one.
A Hydra application like the other commands (unknown keys are refused); see
ceco3d/conf/submit.yaml."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ceco3d.cli.common import data_overrides, hydra_app
from ceco3d.data.label_sets import LABEL_SETS, get_label_set
from ceco3d.errors import InputError, UsageError

WRITE_KEYS = ("out", "overwrite", "data.root")
CHECK_KEYS = ("raw", "benchmark", "split_file")


def given(cfg: DictConfig, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if OmegaConf.select(cfg, k) not in (None, False)]


def check(cfg: DictConfig) -> None:
    from ceco3d.submission import check_submission

    missing = [k for k in ("raw", "benchmark") if cfg[k] is None]
    if missing or given(cfg, WRITE_KEYS):
        raise UsageError(
            "check=ZIP needs raw=RAW and benchmark=NAME (and takes no out=, overwrite= or "
            "data.root=)"
        )
    if cfg.benchmark not in LABEL_SETS:
        raise UsageError(f"benchmark={cfg.benchmark!r}: choose one of {sorted(LABEL_SETS)}")
    problems = check_submission(
        cfg.check, cfg.raw, get_label_set(cfg.benchmark), cfg.split, cfg.split_file
    )
    for problem in problems:
        print(problem)
    if problems:
        raise InputError(
            f"{cfg.check}: {len(problems)} problem(s); the benchmark would reject this zip"
        )
    print(f"OK: {cfg.check} is a valid {cfg.benchmark} {cfg.split} submission")


def write(cfg: DictConfig) -> None:
    from ceco3d.engine.inference import load_for_inference, predict_split
    from ceco3d.submission import write_submission

    if given(cfg, CHECK_KEYS):
        raise UsageError("raw=, benchmark= and split_file= go with check=ZIP, not with ckpt=")
    model, train_cfg = load_for_inference(cfg.ckpt, data_overrides(cfg))
    label_set = get_label_set(train_cfg.data.label_set)
    out = cfg.out or f"submission_{label_set.name}_{cfg.split}.zip"
    if Path(out).is_dir() or (Path(out).exists() and not cfg.overwrite):
        kind = "a folder" if Path(out).is_dir() else "a file"
        raise UsageError(
            f"out={out} is {kind} that exists already; nothing was written. Choose a new file "
            "for the submission zip"
            + ("" if Path(out).is_dir() else ", or add overwrite=true to replace it")
        )
    predictions = dict(predict_split(model, train_cfg, cfg.split))
    write_submission(out, predictions, label_set)
    print(f"wrote {out}: {len(predictions)} scenes of {label_set.name} {cfg.split}")
    print(f"check it with: ceco3d-submit check={out} raw=RAW benchmark={label_set.name}")


def run(cfg: DictConfig) -> None:
    if (cfg.ckpt is None) == (cfg.check is None):
        raise UsageError("give ckpt=PATH to write a submission, or check=ZIP to check one")
    (check if cfg.check is not None else write)(cfg)


main = hydra_app("submit", run)

if __name__ == "__main__":
    main()
