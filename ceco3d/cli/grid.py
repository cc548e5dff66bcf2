"""ceco3d-grid: methods x training seeds as one Hydra multirun on a prepared data set, and one
table (mean ± std over seeds, paired per-seed differences to CE) with the per-class IoU figure.

    ceco3d-grid --data PREPARED --out grid_out --seeds 0 1 2 experiment=demo
    ceco3d-grid --data PREPARED --out grid_out --methods ce ceco --seeds 0 1 experiment=demo_quick

Methods are the entries of conf/grid/methods.yaml (--methods-file for another). Running the
same command again reuses finished runs and continues unfinished ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ceco3d.errors import report_errors


def main(argv: list[str] | None = None) -> int:
    from ceco3d.tools.grid import METHODS_FILE, run_grid  # after --help: it imports torch

    parser = argparse.ArgumentParser(
        prog="ceco3d-grid", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a ceco3d-prep output folder")
    parser.add_argument("--out", type=Path, required=True, help="runs, table and figure")
    parser.add_argument("--methods", nargs="+", help="method names (default: all in the file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--methods-file", type=Path, default=METHODS_FILE)
    parser.add_argument("--baseline", default="ce", help="the method the differences refer to")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, sharing the cores "
                        "(each logs to OUT/multirun_K.log)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="ceco3d-train overrides (KEY=VALUE) for "
                        "every run, anywhere on the line")  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    # KEY=VALUE words are the overrides wherever they stand (after --seeds 0 1 too).
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in argv if a not in overrides])
    return report_errors("ceco3d-grid", lambda: run_grid(
        args.data.resolve(), args.out.resolve(), args.methods, args.seeds, overrides,
        args.methods_file, args.baseline, max(1, args.jobs)) and 0)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
