"""Generated blocks of a Markdown file: ``ceco3d-demo --readme README.md`` rewrites its table
between ``<!-- BEGIN ceco3d-demo -->`` and ``<!-- END ceco3d-demo -->`` (``--benchmark``: the
``ceco3d-benchmark`` block) and copies its figures into ``docs/figures/`` beside the file.

Only the text between the two comments changes; a file without them is left as it is and the
command says where to put them. The file is replaced atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ceco3d.errors import UsageError
from ceco3d.io import save_text

FIGURES = Path("docs") / "figures"


def markers(block: str) -> tuple[str, str]:
    return f"<!-- BEGIN ceco3d-{block} -->", f"<!-- END ceco3d-{block} -->"


def replace_block(text: str, block: str, body: str) -> str:
    """``text`` with what lies between ``block``'s two comments replaced by ``body``."""
    begin, end = markers(block)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise UsageError(
            f"the file needs one '{begin}' line followed by one '{end}' line where the "
            "generated text goes"
        )
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body.strip()}\n{end}{tail}"


def check(readme: Path, block: str) -> None:
    """Fail now, not after the training, if ``readme`` cannot take ``block``."""
    try:
        replace_block(readme.read_text(), block, "")
    except OSError as e:
        raise UsageError(f"--readme {readme}: cannot read it ({e})") from None
    except UsageError as e:
        raise UsageError(f"--readme {readme}: {e}") from None


def publish(readme: Path, block: str, body: str, figures: dict[str, Path]) -> None:
    """Write ``body`` into ``readme``'s ``block`` and copy ``figures`` ({name: source}) into
    ``docs/figures/`` beside it; a heading of ``body`` (its ``#`` lines) is left out."""
    try:
        text = readme.read_text()
    except OSError as e:
        raise UsageError(f"--readme {readme}: cannot read it ({e})") from None
    lines = [line for line in body.splitlines() if not line.startswith("# ")]
    save_text(readme, replace_block(text, block, "\n".join(lines)))
    folder = readme.parent / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in figures.items():
        tmp = folder / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(folder / name)
    print(f"[demo] {readme}: the {block} block rewritten; figures in {folder}")
