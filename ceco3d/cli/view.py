"""ceco3d-view: a scan with its predicted and ground-truth labels in an open3d window.

    ceco3d-view scan.ply --pred out/scan_labels.npy [--gt scan_gt.txt]

Keys 1, 2, 3 switch between the input's colours, the prediction and the ground truth; the
legend is printed here. Without a display it writes one PNG per layer instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.data.scan import UNITS, UP_AXES
from ceco3d.errors import ReportedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ceco3d-view", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("path", type=Path, help="the scan (mesh or point cloud)")
    parser.add_argument("--pred", type=Path, help="predicted benchmark ids, one per point")
    parser.add_argument("--gt", type=Path, help="ground-truth benchmark ids, one per point")
    parser.add_argument(
        "--label-set",
        choices=sorted(LABEL_SETS),
        help="of the ids (default: from ceco3d-predict's _classes.json)",
    )
    parser.add_argument("--units", choices=list(UNITS), default="m")
    parser.add_argument("--up", choices=UP_AXES, default="z")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="folder of the PNG views written without a display (default: .)",
    )
    args = parser.parse_args(argv)
    from ceco3d import viewer

    try:
        labelled = args.pred is not None or args.gt is not None
        label_set = viewer.label_set_for(args.pred, args.label_set) if labelled else None
        layers = viewer.load_layers(args.path, args.pred, args.gt, label_set, args.units, args.up)
        print(viewer.legend(layers, label_set))
        if viewer.has_display() and viewer.show_window(layers):
            return 0
        print("no display (DISPLAY and WAYLAND_DISPLAY are unset, or no window opens): "
              f"writing the views as PNG files to {args.out}")  # fmt: skip
        for path in viewer.write_png_views(layers, label_set, args.out):
            print(f"  {path}")
    except ReportedError as e:
        print(f"ceco3d-view: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
