"""ceco3d-bench: what training, inference, data and preprocessing cost on this machine.

Every comparison (CE against CeCo, 0 against 2 loader workers, -j 1 against -j 2) is a ratio of
times measured in the same run, the variants alternating so that drift in the machine's load
hits both alike. Writes OUT/bench.json and OUT/bench.md and prints the Markdown.

    ceco3d-bench                  # MinkUNet34C, 100k-voxel scene: about 8 minutes on 2 cores
    ceco3d-bench --quick          # tiny sizes, under a minute: a first look (and the test)
    ceco3d-bench --device cuda    # the model measurements on the GPU
    ceco3d-bench --only predict   # ceco3d-predict on 1M and 5M points alone: about a minute
    ceco3d-bench --only ceco      # CeCo's cost alone: training step and memory, both models
    ceco3d-bench --only cpu       # CPU training speed, old threading vs this build: ~8 minutes
    ceco3d-bench --only long_tail # each long-tail loss's step time and memory against CE
    ceco3d-bench --only cpu --before OLD_ENV/bin/python   # ... vs another environment
    ceco3d-bench --device cuda --preset gpu   # a batch of 4 scenes x ~100k voxels
    ceco3d-bench --device cuda --preset gpu --only gpu   # scripts/gpu_check.sh's sections
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ceco3d.device import quiet_minkowski_warnings
from ceco3d.tools.bench import SECTION_GROUPS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ceco3d-bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, under a minute")
    parser.add_argument(
        "--preset", choices=("full", "gpu", "quick"), default="full",
        help="sizes (default: full; gpu: 4-scene batches; --quick is --preset quick)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="output folder")
    parser.add_argument("--repeats", type=int, help="timed repeats per variant (preset default)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument(
        "--only",
        choices=sorted(SECTION_GROUPS),
        help="these sections alone: predict; ceco (training step and "
        "memory); model (those and inference); cpu (CPU training speed); long_tail (every "
        "long-tail loss against CE, not part of a whole run); gpu (training step, inference "
        "and long_tail: scripts/gpu_check.sh's)",
    )
    parser.add_argument("--before", metavar="PYTHON",
                        help="CPU speed: run the 'before' processes with this interpreter (of "
                             "an environment with another build) instead of this build with "
                             "the old threading")  # fmt: skip
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    quiet_minkowski_warnings()  # before MinkowskiEngine is first imported
    import torch

    from ceco3d.device import resolve_device
    from ceco3d.errors import UsageError
    from ceco3d.io import check_writable, json_safe, save_json, save_text
    from ceco3d.tools.bench.report import to_markdown
    from ceco3d.tools.bench.run import run_all
    from ceco3d.tools.bench.workspace import PRESETS

    preset_name = "quick" if args.quick else args.preset
    preset = PRESETS[preset_name]
    if args.repeats is not None:
        preset = dataclasses.replace(preset, repeats=args.repeats)
    try:
        device = torch.device(resolve_device(args.device, "--device"))
        check_writable(args.out, "--out")  # before the run, not after it
    except UsageError as e:
        parser.error(str(e))
    results = {"settings": {"preset": preset_name, **dataclasses.asdict(preset)}}
    results.update(run_all(preset, device, SECTION_GROUPS.get(args.only), args.before))
    markdown = to_markdown(results)
    save_json(args.out / "bench.json", json_safe(results))
    save_text(args.out / "bench.md", markdown)
    print(markdown)
    print(f"[bench] wrote {args.out}/bench.json and bench.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
