"""ceco3d-demo --readme: only the generated block between its two comments changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceco3d.errors import UsageError
from ceco3d.tools.readme_blocks import FIGURES, check, markers, publish, replace_block


def test_only_the_block_between_its_comments_changes(tmp_path):
    begin, end = markers("demo")
    other_begin, other_end = markers("benchmark")
    text = f"# Title\n\nprose\n{begin}\nold table\n{end}\nmore\n{other_begin}\nkept\n{other_end}\n"
    readme = tmp_path / "README.md"
    readme.write_text(text)
    figure = tmp_path / "fig.png"
    figure.write_bytes(b"\x89PNG not really")
    publish(readme, "demo", "# ceco3d demo\n\n| a |\n|---|\n| 1 |\n", {"demo_fig.png": figure})
    new = readme.read_text()
    assert new == (
        f"# Title\n\nprose\n{begin}\n| a |\n|---|\n| 1 |\n{end}\nmore\n"
        f"{other_begin}\nkept\n{other_end}\n"
    )
    assert (tmp_path / FIGURES / "demo_fig.png").read_bytes() == figure.read_bytes()
    # Publishing again gives the same file.
    publish(readme, "demo", "# ceco3d demo\n\n| a |\n|---|\n| 1 |\n", {})
    assert readme.read_text() == new


@pytest.mark.parametrize(
    "text",
    ["no comments at all\n", "<!-- END ceco3d-demo -->\n<!-- BEGIN ceco3d-demo -->\n",
     "<!-- BEGIN ceco3d-demo -->\n<!-- BEGIN ceco3d-demo -->\n<!-- END ceco3d-demo -->\n"],
)  # fmt: skip
def test_a_file_without_one_pair_of_comments_is_left_alone(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(UsageError, match="BEGIN ceco3d-demo"):
        publish(readme, "demo", "table", {})
    assert readme.read_text() == text
    with pytest.raises(UsageError, match="BEGIN ceco3d-demo"):
        replace_block(text, "demo", "table")
    with pytest.raises(UsageError, match=f"--readme {readme}: .*BEGIN ceco3d-demo"):
        check(readme, "demo")


def test_the_projects_readme_holds_every_block():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    for block in ("demo", "calibration", "benchmark"):
        check(readme, block)
