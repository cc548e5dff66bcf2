"""ceco3d-prep from a Pointcept-layout folder: the same arrays as from raw ScanNet, the same
staleness and per-scene isolation, and clear messages on bad arrays.

The Pointcept folder is written here the way Pointcept's ``preprocess_scannet.py`` writes it
(Pointcept/Pointcept@d74c646bea): labels from the label table by raw category, as an index into
the benchmark's id list (int64, -1 ignored), instance = the group's ``id`` (int64), area-weighted
normals (float32), coordinates float32, colours uint8; test scenes without labels.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ceco3d.data.label_sets import SCANNET20, SCANNET200
from ceco3d.data.layout import ARRAYS, MANIFEST, SCENE_META
from ceco3d.io import read_json, read_mesh
from data_prep import prep
from data_prep.synth import generate

VOXEL = "0.05"


def pointcept_normals(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Pointcept's vertex normals: each face's unit normal times its area, summed per vertex,
    divided by the length + 1e-8."""
    corners = xyz.astype(np.float64)[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(cross, axis=1, keepdims=True) + 1e-8
    weighted = cross / length * (length * 0.5)
    normals = np.zeros_like(xyz, dtype=np.float64)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], weighted)
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-8)


def write_pointcept(raw: Path, out: Path) -> None:
    """Pointcept's preprocessing of every scene of ``raw`` into ``out/{train,val,test}``."""
    with open(raw / "scannetv2-labels.combined.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_category = {row["raw_category"]: row for row in rows}
    splits = {s: (raw / f"scannetv2_{s}.txt").read_text().split() for s in ("train", "val")}
    for scene_path in sorted(raw.glob("scans*/scene*")):
        name = scene_path.name
        split = next((s for s, names in splits.items() if name in names), "test")
        xyz, rgb, faces = read_mesh(scene_path / f"{name}_vh_clean_2.ply")
        arrays = {
            "coord": xyz.astype(np.float32),
            "color": rgb.astype(np.uint8),
            "normal": pointcept_normals(xyz, faces).astype(np.float32),
        }
        if split != "test":
            segs = json.loads((scene_path / f"{name}_vh_clean_2.0.010000.segs.json").read_text())
            seg = np.array(segs["segIndices"])
            groups = json.loads((scene_path / f"{name}.aggregation.json").read_text())["segGroups"]
            gt20, gt200, instance = (np.full(len(xyz), -1, np.int16) for _ in range(3))
            for group in groups:
                row = by_category.get(group["label"])
                id20 = int(row["nyu40id"]) if row else 0
                id200 = int(row["id"]) if row else 0
                points = np.where(np.isin(seg, np.array(group["segments"])))[0]
                gt20[points] = SCANNET20.ids.index(id20) if id20 in SCANNET20.ids else -1
                gt200[points] = SCANNET200.ids.index(id200) if id200 in SCANNET200.ids else -1
                instance[points] = group["id"]
            arrays |= {"segment20": gt20.astype(int), "segment200": gt200.astype(int),
                       "instance": instance.astype(int)}  # fmt: skip
        folder = out / split / name
        folder.mkdir(parents=True)
        for key, array in arrays.items():
            np.save(folder / f"{key}.npy", array)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(raw, pointcept, prepared from raw): 3 labelled scenes, 1 test scene."""
    base = tmp_path_factory.mktemp("pointcept")
    raw, pointcept, from_raw = base / "raw", base / "pointcept", base / "from_raw"
    args = ["--scenes", "3", "--test-scenes", "1", "--seed", "3", "--vertex-spacing", "0.15"]
    assert generate.main([str(raw), *args]) == 0
    assert prep.main([str(raw), str(from_raw), "--voxel-size", VOXEL]) == 0
    write_pointcept(raw, pointcept)
    return raw, pointcept, from_raw


def arrays(root: Path, split: str, scene: str) -> dict[str, np.ndarray]:
    return {key: np.load(root / split / scene / f"{key}.npy") for key in ARRAYS}


def test_pointcept_folder_gives_the_raw_paths_arrays(both, tmp_path, capsys):
    _, pointcept, from_raw = both
    out = tmp_path / "out"
    assert prep.main([str(pointcept), str(out), "--voxel-size", VOXEL]) == 0  # detected
    assert "Pointcept's arrays" in capsys.readouterr().out
    manifest, raw_manifest = read_json(out / MANIFEST), read_json(from_raw / MANIFEST)
    assert manifest["splits"] == raw_manifest["splits"]
    assert manifest["stats"] == raw_manifest["stats"]
    for split, scenes in manifest["splits"].items():
        for scene in scenes:
            a, b = arrays(out, split, scene), arrays(from_raw, split, scene)
            for key in ARRAYS:
                assert a[key].dtype == b[key].dtype, key
                if key == "normal":
                    # Taken over as Pointcept wrote them; its formula adds 1e-8 to each face's
                    # length, which moves the normals of this scene's small faces by ~1e-4.
                    assert np.array_equal(a[key], np.load(pointcept / split / scene / "normal.npy"))
                    np.testing.assert_allclose(a[key], b[key], atol=2e-4)
                else:
                    assert np.array_equal(a[key], b[key]), (scene, key)
            meta = read_json(out / split / scene / SCENE_META)
            assert meta["source"] == "pointcept" and meta["label_table_sha256"] is None
    assert prep.main([str(pointcept), str(tmp_path / "explicit"), "--from", "pointcept"]) == 0


def test_staleness_isolation_and_bad_arrays(both, tmp_path, capsys):
    _, source, _ = both
    pointcept, out = tmp_path / "pc", tmp_path / "out"
    shutil.copytree(source, pointcept)
    assert prep.main([str(pointcept), str(out)]) == 0
    assert "0 skipped" in capsys.readouterr().out
    assert prep.main([str(pointcept), str(out)]) == 0
    assert "0 prepared, 4 skipped" in capsys.readouterr().out

    train = sorted((pointcept / "train").iterdir())
    edited, broken = train[0], train[1]
    color = np.load(edited / "color.npy")
    color[0] = 255 - color[0]
    np.save(edited / "color.npy", color)  # new content: this scene is redone
    os.utime(edited / "color.npy", ns=(1, 1))
    np.save(broken / "segment200.npy", np.full(3, 7))  # wrong length: this scene fails alone
    kept = (out / "train" / broken.name / "coord.npy").read_bytes()
    assert prep.main([str(pointcept), str(out)]) == 1
    captured = capsys.readouterr()
    assert "1 prepared, 2 skipped (up to date), 1 failed" in captured.out
    assert f"{broken / 'segment200.npy'}: 3 rows but coord.npy has" in captured.err
    assert (out / "train" / broken.name / "coord.npy").read_bytes() == kept
    assert np.array_equal(np.load(out / "train" / edited.name / "color.npy"), color)

    np.save(broken / "segment200.npy", np.full(len(np.load(broken / "coord.npy")), 200))
    assert prep.main([str(pointcept), str(out)]) == 1
    assert "class indices must be whole numbers in -1..199" in capsys.readouterr().err
    np.save(broken / "segment200.npy", np.zeros((2, 2), object), allow_pickle=True)
    assert prep.main([str(pointcept), str(out)]) == 1
    assert "not a readable .npy array" in capsys.readouterr().err
    (broken / "segment200.npy").unlink()
    (broken / "normal.npy").unlink()
    assert prep.main([str(pointcept), str(out)]) == 1
    assert "normal.npy: file not found (Pointcept writes it with --parse_normals" in (
        capsys.readouterr().err
    )


def test_pointcept_usage_errors_exit_2(both, tmp_path, capsys):
    _, pointcept, _ = both
    with pytest.raises(SystemExit) as e:
        prep.main([str(pointcept), str(tmp_path / "o"), "--align"])
    assert e.value.code == 2
    assert "Pointcept's arrays are unaligned" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        prep.main([str(tmp_path / "empty"), str(tmp_path / "o"), "--from", "pointcept"])
    assert e.value.code == 2
    assert "no scene folders under train/, val/, test/" in capsys.readouterr().err
    (tmp_path / "old" / "train").mkdir(parents=True)
    torch_file = tmp_path / "old" / "train" / "scene0000_00.pth"
    torch_file.write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        prep.main([str(tmp_path / "old"), str(tmp_path / "o"), "--from", "pointcept"])
    assert e.value.code == 2
    assert "layout of Pointcept before v1.5.2" in capsys.readouterr().err
