"""The README's main job in its quick form: ceco3d-demo --quick end to end (about 3 minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ceco3d.data.meta import SCANNET200
from ceco3d.export import check_submission

pytestmark = pytest.mark.slow


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    demo = Path(sys.executable).parent / "ceco3d-demo"
    done = subprocess.run([str(demo), "--quick", "--out", str(out)], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "results.md").read_text()
    assert "| CE |" in table and "| CeCo |" in table
    results = json.loads((out / "results.json").read_text())
    for loss in ("ce", "ceco"):
        summary = results["per_seed"][loss][0]
        assert 0 <= summary["mIoU"] <= 100 and summary["mIoU_head"] is not None
    assert results["analysis"]["imbalance_train"]["point_imbalance_factor"] >= 100
    zip_path = out / "submission_scannet200_test.zip"
    assert check_submission(zip_path, out / "raw", SCANNET200, split="test") == []
    for png in ("accuracy_vs_frequency.png", "frequency_train.png", "collapse_curves.png"):
        assert (out / "analysis" / png).stat().st_size > 1000

    # Running it again reuses every finished step instead of training anew.
    again = subprocess.run([str(demo), "--quick", "--out", str(out)], capture_output=True,
                           text=True, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "trained and evaluated already" in again.stdout
    assert "already holds this data set" in again.stdout
