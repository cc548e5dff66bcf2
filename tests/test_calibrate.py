"""ceco3d-demo --calibrate: the validation curve read back from a run's TensorBoard events, the
last-quarter change that decides convergence, and the regime's conditions as the benchmark issue
states them (head >= 2 x common >= 1.5 x tail, tail <= 20; balanced tail >= 2/3 of its head)."""

from __future__ import annotations

import json
import math

import pytest
from torch.utils.tensorboard import SummaryWriter

from ceco3d.tools import calibrate


def _fake_run(folder, curve: dict[int, dict[str, float]]):
    """A run folder as ceco3d-train leaves it: val/<metric> scalars in tb/, the last validation's
    point metrics in val_summary.json."""
    writer = SummaryWriter(str(folder / "tb"))
    for step, values in curve.items():
        for key, value in values.items():
            writer.add_scalar(f"val/{key}", value, step)
        writer.add_scalar("train/loss", 1.0 / step, step)  # not part of the curve
    writer.close()
    last = curve[max(curve)]
    (folder / "val_summary.json").write_text(json.dumps({"step": max(curve), "point": last}))
    return folder


def _point(miou, head, common, tail):
    return {"mIoU": miou, "mIoU_head": head, "mIoU_common": common, "mIoU_tail": tail}


def test_the_curve_is_read_back_from_the_events(tmp_path):
    curve = {100: _point(10, 20, 5, 1), 200: _point(15.5, 30, 10, 2.25)}
    run = _fake_run(tmp_path, curve)
    assert calibrate.val_curve(run) == curve


def test_last_quarter_is_from_the_first_validation_at_three_quarters_to_the_end():
    values = [1, 2, 3, 4, 5, 20, 23, 21]
    curve = {s: {"mIoU": float(v)} for s, v in zip(range(100, 900, 100), values, strict=True)}
    # max_steps 800: the last quarter starts at step 600 (value 20); the end is 21.
    assert calibrate.last_quarter_change(curve, 800) == pytest.approx(1.0)
    assert calibrate.last_quarter_range(curve, 800) == pytest.approx(3.0)
    # max_steps 760: 3/4 is 570, the first validation from there is still step 600.
    assert calibrate.last_quarter_change(curve, 760) == pytest.approx(1.0)
    assert math.isnan(calibrate.last_quarter_change({}, 800))


@pytest.mark.parametrize(
    ("long_tail", "balanced", "change", "met"),
    [
        # ScanNet200's from-scratch CE shape, converged, a learnable tail: all five met.
        (_point(25, 48, 19, 8), _point(50, 60, 50, 40), 0.5, [True] * 5),
        # On the boundaries: 2 x common, 1.5 x tail, tail 20, balanced tail exactly 2/3.
        (_point(0, 80, 40, 20), _point(0, 60, 0, 40), -0.99, [True] * 5),
        # Just past each boundary.
        (
            _point(0, 79.9, 40, 26.7),
            _point(0, 60, 0, 39.9),
            1.0,
            [False, False, False, False, False],
        ),
        # A flat profile: converged, but not ScanNet200's shape.
        (_point(40, 50, 40, 30), _point(50, 50, 50, 50), 0.1, [True, False, False, False, True]),
    ],
)
def test_the_conditions(long_tail, balanced, change, met):
    verdicts = calibrate.checks(long_tail, balanced, change)
    assert [ok for _, ok, _ in verdicts] == met


def test_report_writes_table_curves_and_verdicts(tmp_path):
    steps = 800
    long_tail = {s: _point(10 + s / 100, 40 + s / 100, 15, 3) for s in range(100, 900, 100)}
    balanced = {s: _point(30 + s / 200, 50, 45, 40) for s in range(100, 900, 100)}
    (tmp_path / "lt").mkdir()
    (tmp_path / "bal").mkdir()
    runs = {"long-tailed draw": _fake_run(tmp_path / "lt", long_tail),
            "balanced draw": _fake_run(tmp_path / "bal", balanced)}  # fmt: skip
    imbalance = {
        "long-tailed draw": {"point_imbalance_factor": 4321.0, "center_imbalance_factor": 48.0},
        "balanced draw": {"point_imbalance_factor": 60.0, "center_imbalance_factor": 3.0},
    }
    text = calibrate.report(tmp_path / "out", runs, steps, imbalance, {"recipe": "R"})
    rows = {line.split(" | ")[0]: line for line in text.splitlines()}
    # long-tailed: end 18, at step 600 16 -> +2.00; spread 16..18 = 2.
    assert rows["| long-tailed draw"] == (
        "| long-tailed draw | 18.0 | 48.0 | 15.0 | 3.0 | 4321 | 48 | +2.00 / 2.00 |"
    )
    assert "| converged: val mIoU changes by < 1 point over the last quarter | **no** |" in text
    assert "| head >= 2 x common | yes | 48.0 vs 2 x 15.0 |" in text
    assert "| balanced draw: tail >= 2/3 x head | yes | 40.0 vs 2/3 x 50.0 |" in text
    assert "recipe: R." in text
    out = tmp_path / "out"
    assert (out / "calibration.md").read_text() == text
    assert (out / "calibration_curves.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "calibration.json").read_text())
    assert [c["met"] for c in record["checks"]] == [False, True, True, True, True]
    assert record["curves"]["balanced draw"]["800"]["mIoU"] == pytest.approx(34.0)
