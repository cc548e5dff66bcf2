import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ceco3d.cli.submit import main
from ceco3d.data.label_sets import SCANNET20, SCANNET200
from ceco3d.io import write_mesh
from ceco3d.submission import check_submission, read_submission, write_submission

VERTICES = {"scene0707_00": 5, "scene0708_00": 7, "scene0709_01": 4}


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    """A raw ScanNet tree with three tiny test meshes and the test split list."""
    root = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for scene, n in VERTICES.items():
        xyz = rng.random((n, 3)).astype(np.float32)
        rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        faces = np.array([[0, 1, 2], [1, 2, 3]])
        write_mesh(root / "scans_test" / scene / f"{scene}_vh_clean_2.ply", xyz, rgb, faces)
    (root / "scannetv2_test.txt").write_text("\n".join(VERTICES) + "\n")
    return root


def _predictions(label_set, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s: rng.integers(0, label_set.num_classes, n) for s, n in VERTICES.items()}


def _ids_text(n: int, benchmark_id: int = 1) -> str:
    return f"{benchmark_id}\n" * n


def submit(monkeypatch, *args: str) -> int:
    """Run ``ceco3d-submit args`` in this process; its exit status."""
    monkeypatch.setattr(sys, "argv", ["ceco3d-submit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return path


def _valid_entries() -> dict[str, str]:
    return {f"{scene}.txt": _ids_text(n) for scene, n in VERTICES.items()}


@pytest.mark.parametrize("label_set", [SCANNET20, SCANNET200])
def test_round_trip(tmp_path, raw_root, label_set):
    predictions = _predictions(label_set)
    zip_path = tmp_path / "sub.zip"
    write_submission(zip_path, predictions, label_set)
    assert check_submission(zip_path, raw_root, label_set) == []
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(f"{s}.txt" for s in VERTICES)
    back = read_submission(zip_path)
    assert back.keys() == predictions.keys()
    for scene, pred in predictions.items():
        expected = np.array([label_set.ids[k] for k in pred])
        np.testing.assert_array_equal(back[scene], expected)


def test_scannet20_ids_are_nyu40_ids(tmp_path):
    # class index 12 of ScanNet20 is desk, NYU40 id 14; index 19 otherfurniture, id 39
    write_submission(tmp_path / "s.zip", {"scene0707_00": np.array([12, 19, 0])}, SCANNET20)
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert zf.read("scene0707_00.txt").decode() == "14\n39\n1\n"


def test_write_rejects_bad_predictions(tmp_path):
    with pytest.raises(ValueError, match="scene0707_00: class index out of range"):
        write_submission(tmp_path / "s.zip", {"scene0707_00": np.array([0, 200])}, SCANNET200)
    with pytest.raises(ValueError, match="not a ScanNet scene name"):
        write_submission(tmp_path / "s.zip", {"room1": np.array([0])}, SCANNET200)
    with pytest.raises(ValueError, match="1-D integer array"):
        write_submission(tmp_path / "s.zip", {"scene0707_00": np.array([0.5])}, SCANNET200)
    assert not (tmp_path / "s.zip").exists()  # nothing half-written left behind


def test_check_catches_missing_scene(tmp_path, raw_root):
    predictions = _predictions(SCANNET200)
    del predictions["scene0708_00"]
    write_submission(tmp_path / "s.zip", predictions, SCANNET200)
    assert check_submission(tmp_path / "s.zip", raw_root, SCANNET200) == [
        "scene0708_00: missing from the zip (expected scene0708_00.txt at the zip root)"
    ]


def test_check_catches_wrong_line_count(tmp_path, raw_root):
    predictions = _predictions(SCANNET200)
    predictions["scene0709_01"] = predictions["scene0709_01"][:-1]
    write_submission(tmp_path / "s.zip", predictions, SCANNET200)
    assert check_submission(tmp_path / "s.zip", raw_root, SCANNET200) == [
        "scene0709_01.txt: 3 lines but the mesh has 4 vertices"
    ]


def test_check_catches_invalid_ids(tmp_path, raw_root):
    entries = _valid_entries()
    entries["scene0707_00.txt"] = "1\n0\n2\n12\n1191\n"  # 0 and 12 are no ScanNet200 ids
    problems = check_submission(_zip(tmp_path / "s.zip", entries), raw_root, SCANNET200)
    assert problems == [
        "scene0707_00.txt: 2 lines hold ids that are not scannet200 benchmark ids "
        "(line 2: 0, line 4: 12)"
    ]
    # checked as ScanNet20, 12 (NYU40 counter) is valid and 1191 is not
    problems = check_submission(tmp_path / "s.zip", raw_root, SCANNET20)
    assert problems == [
        "scene0707_00.txt: 2 lines hold ids that are not scannet20 benchmark ids "
        "(line 2: 0, line 5: 1191)"
    ]


@pytest.mark.parametrize("bad_line", ["1.5", "chair", "", "1_0"])
def test_check_catches_non_integer_line(tmp_path, raw_root, bad_line):
    entries = _valid_entries()
    entries["scene0708_00.txt"] = f"1\n1\n{bad_line}\n1\n1\n1\n1\n"
    problems = check_submission(_zip(tmp_path / "s.zip", entries), raw_root, SCANNET200)
    assert problems == [f"scene0708_00.txt: line 3: {bad_line!r} is not an integer"]


def test_check_catches_nested_paths_and_directories(tmp_path, raw_root):
    entries = _valid_entries()
    entries["sub/scene0707_00.txt"] = entries.pop("scene0707_00.txt")
    entries["sub/"] = ""
    problems = check_submission(_zip(tmp_path / "s.zip", entries), raw_root, SCANNET200)
    assert problems == [
        "sub/scene0707_00.txt: nested path; files must sit at the zip root",
        "sub/: directory entry; files must sit at the zip root",
        "scene0707_00: missing from the zip (expected scene0707_00.txt at the zip root)",
    ]


def test_check_catches_stray_files(tmp_path, raw_root):
    entries = _valid_entries()
    entries["README.md"] = "hello"
    entries["scene0000_00.txt"] = _ids_text(3)
    problems = check_submission(_zip(tmp_path / "s.zip", entries), raw_root, SCANNET200)
    assert problems == [
        "README.md: stray file (not a .txt)",
        "scene0000_00.txt: stray file (no scene scene0000_00 in the test split)",
    ]


def test_check_names_missing_mesh_and_split_file(tmp_path, raw_root):
    zip_path = _zip(tmp_path / "s.zip", _valid_entries())
    mesh = raw_root / "scans_test" / "scene0707_00" / "scene0707_00_vh_clean_2.ply"
    mesh.unlink()
    assert check_submission(zip_path, raw_root, SCANNET200) == [f"{mesh}: file not found"]
    with pytest.raises(ValueError, match=r"scannetv2_val\.txt: split file not found"):
        check_submission(zip_path, raw_root, SCANNET200, split="val")


def test_check_uses_scans_and_split_file_for_val(tmp_path):
    root = tmp_path / "raw"
    xyz = np.zeros((3, 3), dtype=np.float32)
    write_mesh(root / "scans" / "scene0011_00" / "scene0011_00_vh_clean_2.ply", xyz, xyz)
    split_file = tmp_path / "mine.txt"
    split_file.write_text("scene0011_00\n")
    zip_path = _zip(tmp_path / "s.zip", {"scene0011_00.txt": _ids_text(3)})
    assert check_submission(zip_path, root, SCANNET200, "val", str(split_file)) == []


def test_cli_check_exit_codes(tmp_path, raw_root, capsys, monkeypatch):
    good = tmp_path / "good.zip"
    write_submission(good, _predictions(SCANNET200), SCANNET200)
    args = [f"raw={raw_root}", "benchmark=scannet200"]
    assert submit(monkeypatch, f"check={good}", *args) == 0
    assert capsys.readouterr().out.startswith("OK: ")

    entries = _valid_entries()
    del entries["scene0707_00.txt"]
    bad = _zip(tmp_path / "bad.zip", entries)
    assert submit(monkeypatch, f"check={bad}", *args) == 1
    out = capsys.readouterr().out
    assert "scene0707_00: missing from the zip" in out
    assert "1 problem(s)" in out

    (tmp_path / "junk.zip").write_text("not a zip")
    assert submit(monkeypatch, f"check={tmp_path / 'junk.zip'}", *args) == 1
    assert "not a zip file" in capsys.readouterr().out

    assert submit(monkeypatch, f"check={good}") == 2  # raw= and benchmark= missing
    assert "check=ZIP needs raw=RAW and benchmark=NAME" in capsys.readouterr().out
    # A mistyped key is refused, not taken as a config override (it wrote the test split).
    assert submit(monkeypatch, "ckpt=run/last.pt", "splt=val") == 2
    assert "Could not override 'splt'" in capsys.readouterr().err


def test_cli_help_needs_no_minkowski_engine():
    code = (
        "import sys\n"
        "from ceco3d.cli.submit import main\n"
        "sys.argv = ['ceco3d-submit', '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "heavy = [m for m in ('MinkowskiEngine', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "check: null" in result.stdout


def fake_predict(monkeypatch, calls: dict) -> None:
    """``ceco3d.engine.inference`` replaced by a stand-in that predicts ``_predictions``."""
    predictions = _predictions(SCANNET200, seed=3)

    def load_for_inference(ckpt_path, overrides):
        calls["load"] = (ckpt_path, overrides)
        cfg = types.SimpleNamespace(data=types.SimpleNamespace(label_set="scannet200"))
        return "model", cfg

    def predict_split(model, cfg, split):
        calls["split"] = split
        yield from predictions.items()

    fake = types.ModuleType("ceco3d.engine.inference")
    fake.load_for_inference = load_for_inference
    fake.predict_split = predict_split
    monkeypatch.setitem(sys.modules, "ceco3d.engine.inference", fake)


def test_cli_write_mode_calls_predict(tmp_path, raw_root, monkeypatch, capsys):
    calls = {}
    fake_predict(monkeypatch, calls)

    out = tmp_path / "out.zip"
    assert submit(monkeypatch, "ckpt=run/last.pt", "data.root=prep", f"out={out}") == 0
    assert calls == {"load": ("run/last.pt", ["data.root=prep"]), "split": "test"}
    assert check_submission(out, raw_root, SCANNET200) == []
    assert f"wrote {out}: 3 scenes" in capsys.readouterr().out
    assert submit(monkeypatch, "data.root=prep") == 2  # no ckpt=


def test_cli_write_mode_replaces_no_existing_file_without_overwrite(tmp_path, monkeypatch, capsys):
    fake_predict(monkeypatch, {})
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    assert submit(monkeypatch, f"ckpt={checkpoint}", f"out={checkpoint}") == 2
    assert checkpoint.read_bytes() == b"weights"
    assert "add overwrite=true to replace it" in capsys.readouterr().out
    assert submit(monkeypatch, f"ckpt={checkpoint}", f"out={tmp_path}") == 2  # a folder
    assert submit(monkeypatch, f"ckpt={checkpoint}", f"out={checkpoint}", "overwrite=true") == 0
    assert zipfile.is_zipfile(checkpoint)
