"""Convert a checkpoint you trust into one that loads safely (tensors and plain data only).

    python -m ceco3d.cli.convert_checkpoint OLD.pt NEW.pt

Every ceco3d command reads checkpoints with ``torch.load(weights_only=True)``, which refuses a
file holding arbitrary Python objects (checkpoints of ceco3d before version 2 hold numpy RNG
states). This reads OLD.pt with the unrestricted unpickler, which runs whatever code the file
carries: use it only on a file whose origin you trust. NEW.pt must not exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ceco3d.errors import report_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ceco3d-convert-checkpoint",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="the trusted checkpoint to convert")
    parser.add_argument("target", type=Path, help="the converted checkpoint (a new file)")
    args = parser.parse_args(argv)

    def convert() -> None:
        from ceco3d.engine.checkpoint import convert_checkpoint

        convert_checkpoint(args.source, args.target)
        print(f"wrote {args.target}: loads without running code, checksum of its tensors added")

    return report_errors("ceco3d-convert-checkpoint", convert)


if __name__ == "__main__":
    sys.exit(main())
