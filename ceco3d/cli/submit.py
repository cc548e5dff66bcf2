"""``ceco3d-submit``: write a ScanNet benchmark submission zip from a checkpoint, or check one.

Write:  ceco3d-submit ckpt=runs/x/last.pt data.root=data/scannet200 [split=test] [out=sub.zip]
Check:  ceco3d-submit --check sub.zip --raw /path/to/scannet --benchmark scannet200 [--split test]

Any other ``key=value`` is passed on as a config override to the loaded run.
"""

from __future__ import annotations

import argparse
import sys

from ceco3d.data.meta import LABEL_SETS, get_label_set
from ceco3d.io import InputError

SUBMIT_KEYS = ("ckpt", "split", "out")  # consumed here; every other key=value goes to the config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceco3d-submit",
        description=__doc__.split("\n\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="ckpt=, split=, out= and config overrides"
    )
    parser.add_argument("--check", metavar="ZIP", help="check this submission zip and exit")
    parser.add_argument("--raw", help="raw ScanNet root holding scans_test/ and the split lists")
    parser.add_argument("--benchmark", choices=sorted(LABEL_SETS), help="label set of the zip")
    parser.add_argument("--split", default="test", help="split the zip covers (default: test)")
    parser.add_argument("--split-file", help="scene list to use instead of RAW/scannetv2_SPLIT.txt")
    return parser


def _check(args: argparse.Namespace) -> int:
    from ceco3d.export import check_submission

    problems = check_submission(
        args.check, args.raw, get_label_set(args.benchmark), args.split, args.split_file
    )
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.check}: {len(problems)} problem(s); the benchmark would reject this zip")
        return 1
    print(f"OK: {args.check} is a valid {args.benchmark} {args.split} submission")
    return 0


def _write(overrides: list[str]) -> int:
    from ceco3d.engine.predict import load_for_inference, predict_split
    from ceco3d.export import write_submission

    options = {}
    config_overrides = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{item!r}: expected key=value")
        if key in SUBMIT_KEYS:
            options[key] = value
        else:
            config_overrides.append(item)
    if "ckpt" not in options:
        raise InputError("ckpt=PATH is required to write a submission")
    split = options.get("split", "test")
    model, cfg = load_for_inference(options["ckpt"], config_overrides)
    label_set = get_label_set(cfg.data.label_set)
    out = options.get("out", f"submission_{label_set.name}_{split}.zip")
    predictions = dict(predict_split(model, cfg, split))
    write_submission(out, predictions, label_set)
    print(f"wrote {out}: {len(predictions)} scenes of {label_set.name} {split}")
    print(f"check it with: ceco3d-submit --check {out} --raw RAW --benchmark {label_set.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check and args.overrides:
        parser.error("--check takes no key=value overrides")
    if args.check and not (args.raw and args.benchmark):
        parser.error("--check needs --raw and --benchmark")
    if not args.check and not args.overrides:
        parser.error("give ckpt=PATH (write a submission) or --check ZIP (check one)")
    if not args.check and (args.raw or args.benchmark or args.split_file or args.split != "test"):
        parser.error(
            "--raw, --benchmark, --split and --split-file go with --check; write with split="
        )
    try:
        return _check(args) if args.check else _write(args.overrides)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
