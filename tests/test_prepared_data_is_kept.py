"""Nothing good is lost: missing raw scenes, a full disk or an unwritable folder never shrink a
good manifest; staleness goes by content; the dataset refuses folders that mix preparations."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ceco3d.data import layout
from ceco3d.data.dataset import ScanNetDataset
from ceco3d.errors import InputError
from ceco3d.io import read_json
from data_prep import prep
from tests.test_prep import (
    TABLE_ROWS,
    raw,
    strip_scene,
    write_raw_scene,
    write_splits,
    write_table,
)

_ = raw  # a fixture
NAMES = ["scene0000_00", "scene0001_00", "scene0002_00"]


def prepared(raw: Path, out: Path, *options: str) -> Path:
    """Three strip scenes (two train, one val) prepared into ``out``."""
    for name in NAMES:
        strip_scene(raw, name)
    write_splits(raw, train=NAMES[:2], val=NAMES[2:])
    assert prep.main([str(raw), str(out), *options]) == 0
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_missing_raw_scenes_are_errors_and_the_manifest_keeps_them(raw, tmp_path, capsys):
    out = prepared(raw, tmp_path / "out")
    manifest = read_json(out / layout.MANIFEST)
    capsys.readouterr()

    shutil.rmtree(raw / "scans" / NAMES[1])  # one scene folder gone
    assert prep.main([str(raw), str(out)]) == 1
    captured = capsys.readouterr()
    assert f"{NAMES[1]}: scene folder not found (the train split list names it)" in captured.err
    assert f"keep their earlier arrays (same settings) and stay in the manifest: {NAMES[1]}" in (
        captured.out
    )
    assert read_json(out / layout.MANIFEST) == manifest

    shutil.rmtree(raw / "scans")  # split lists present, every scene folder gone
    assert prep.main([str(raw), str(out)]) == 1
    assert "3 failed" in capsys.readouterr().out
    assert read_json(out / layout.MANIFEST) == manifest


def test_failures_at_other_settings_leave_the_manifest_as_it_was(raw, tmp_path, capsys):
    out = prepared(raw, tmp_path / "out")
    before = tree(out)
    shutil.rmtree(raw / "scans" / NAMES[0])
    capsys.readouterr()
    assert prep.main([str(raw), str(out), "--voxel-size", "0.05"]) == 1
    summary = capsys.readouterr().out
    assert (
        f"left as it was: it lists 1 scenes that this run could not prepare (first: {NAMES[0]})"
        in (summary)
    )
    assert "fix the failures above and run again" in summary
    assert read_json(out / layout.MANIFEST) == json.loads(before[layout.MANIFEST])
    # The other scenes are now at 0.05 m: the dataset sees the mixed folder (next test).
    with pytest.raises(InputError, match=f"{NAMES[0]}|{NAMES[1]}"):
        ScanNetDataset(out, "train", "scannet20", voxel_size=0.02)


def test_a_full_disk_keeps_every_prepared_scene(raw, tmp_path, capsys, monkeypatch):
    out = prepared(raw, tmp_path / "out")
    before = tree(out)

    def full(path, array):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(layout, "save_npy", full)
    assert prep.main([str(raw), str(out), "--force"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.count("No space left on device") == 3  # one line per scene
    assert tree(out) == before  # every scene and the manifest as they were


def test_an_unwritable_output_folder_fails_before_any_work(raw, tmp_path, capsys):
    write_splits(raw, train=["scene0000_00"])
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "out"
    assert prep.main([str(raw), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write the output folder" in err
    assert "Traceback" not in err and "FAILED" not in err


def test_a_truncated_array_is_redone_by_prep_and_refused_by_the_dataset(raw, tmp_path, capsys):
    out = prepared(raw, tmp_path / "out")
    coord = out / "val" / NAMES[2] / "coord.npy"
    good = coord.read_bytes()
    coord.write_bytes(good[:-8])
    with pytest.raises(InputError, match=r"coord\.npy has \d+ bytes, meta\.json says \d+") as error:
        ScanNetDataset(out, "val", "scannet20")
    assert NAMES[2] in str(error.value) and f"ceco3d-prep RAW_SCANNET {out}" in str(error.value)
    capsys.readouterr()
    assert prep.main([str(raw), str(out)]) == 0
    assert "1 prepared, 2 skipped" in capsys.readouterr().out
    assert coord.read_bytes() == good
    assert len(ScanNetDataset(out, "val", "scannet20")) == 1


def test_another_label_table_with_an_older_time_redoes_every_scene(raw, tmp_path, capsys):
    out = prepared(raw, tmp_path / "out")
    table = raw / "scannetv2-labels.combined.tsv"
    old_time = table.stat().st_mtime_ns - 10**10
    rows = [(1, "wall", "wall", 1), *[r for r in TABLE_ROWS if r[1] != "wall"]]
    rows[1] = (2, "chair", "chair", 1)  # chairs become walls in scannet20
    write_table(table, rows)
    os.utime(table, ns=(old_time, old_time))
    capsys.readouterr()
    assert prep.main([str(raw), str(out)]) == 0
    assert "3 prepared, 0 skipped" in capsys.readouterr().out
    chair_vertices = np.load(out / "train" / NAMES[0] / "segment20.npy")[:2]
    assert chair_vertices.tolist() == [0, 0]  # wall


def test_the_dataset_refuses_a_folder_that_mixes_preparations(raw, tmp_path):
    out = prepared(raw, tmp_path / "out", "--voxel-size", "0.05")
    other = tmp_path / "other"
    assert prep.main([str(raw), str(other), "--voxel-size", "0.02"]) == 0
    # An interrupted re-prep at 0.02 m: one val scene was redone, the manifest still says 0.05.
    shutil.rmtree(out / "val" / NAMES[2])
    shutil.copytree(other / "val" / NAMES[2], out / "val" / NAMES[2])
    with pytest.raises(InputError) as error:
        ScanNetDataset(out, "val", "scannet20", voxel_size=0.05)
    message = str(error.value)
    assert f"1 val scenes do not match it ({NAMES[2]}: prepared with voxel_size=0.02)" in message
    assert f"ceco3d-prep RAW_SCANNET {out} --voxel-size 0.05`" in message

    (out / "val" / NAMES[2] / layout.SCENE_META).unlink()  # interrupted before meta.json
    with pytest.raises(InputError, match=f"{NAMES[2]}: no meta.json"):
        ScanNetDataset(out, "val", "scannet20", voxel_size=0.05)


def test_empty_and_unlabelled_scenes_are_named_and_never_reach_training(
    raw, tmp_path, capsys, caplog
):
    for name in NAMES:
        strip_scene(raw, name)
    empty, unlabelled = "scene0010_00", "scene0011_00"
    write_raw_scene(raw, empty, np.zeros((0, 3)), np.zeros((0, 3), int), [], [])
    strip_scene(raw, unlabelled)
    agg = raw / "scans" / unlabelled / f"{unlabelled}.aggregation.json"
    agg.write_text(json.dumps({"segGroups": []}))  # every vertex ignored
    write_splits(raw, train=[*NAMES[:2], empty, unlabelled], val=NAMES[2:])
    out = tmp_path / "out"
    assert prep.main([str(raw), str(out)]) == 0
    summary = capsys.readouterr().out
    assert f"1 scenes have no vertices and are left out of the manifest: {empty}" in summary
    assert f"no labelled vertex in scannet20; training on scannet20 skips them: {unlabelled}" in (
        summary
    )
    manifest = read_json(out / layout.MANIFEST)
    assert manifest["excluded"] == {empty: "no vertices"}
    assert manifest["splits"]["train"] == sorted([*NAMES[:2], unlabelled])

    with caplog.at_level("WARNING", logger="ceco3d.data"):
        train_set = ScanNetDataset(out, "train", "scannet20", labelled_only=True)
    assert train_set.scenes == NAMES[:2]
    assert f"1 train scenes have no labelled voxel in scannet20 and are skipped: {unlabelled}" in (
        caplog.text
    )
    assert ScanNetDataset(out, "train", "scannet20").scenes == sorted([*NAMES[:2], unlabelled])


def test_data_root_at_raw_scannet_says_to_prepare_into_another_folder(raw):
    (raw / "scans").mkdir()
    with pytest.raises(InputError) as error:
        ScanNetDataset(raw, "train", "scannet20")
    assert f"`ceco3d-prep {raw} PREPARED` and set data.root=PREPARED" in str(error.value)
    assert f"ceco3d-prep RAW_SCANNET {raw}" not in str(error.value)  # not into RAW itself
