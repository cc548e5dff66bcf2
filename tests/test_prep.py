"""ceco3d-prep: hand-built raw scenes with known labels, normals, bad inputs, resume, and a
round trip from ceco3d-synth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ceco3d.data.label_sets import LABEL_SETS, SCANNET20, SCANNET200
from ceco3d.data.layout import ARRAYS, MANIFEST, SCENE_META
from ceco3d.data.voxelize import majority_labels
from ceco3d.io import count_ply_vertices, read_json, write_mesh
from data_prep import prep
from data_prep.labels import read_label_table
from data_prep.scene import vertex_normals
from data_prep.synth import generate
from data_prep.synth.scene import UNKNOWN_LABEL

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "scannet"
S20, S200 = SCANNET20.id_to_index, SCANNET200.id_to_index

# A small label table with the real one's quirks: shared ids, a dirty `category` cell.
TABLE_ROWS = [  # id, raw_category, category, nyu40id
    (1, "wall", "wall", 1),
    (2, "chair", "chair", 5),
    (2, "stack of chairs", "chair", 5),
    (1163, "object", "object", 40),
    (1163, "stick", "stick", 40),
    (99, "wardrobe closet", "wardrobe", 39),
    (1177, "wardrobe cabinet", "wardrobe ", 39),
]


def write_table(path: Path, rows=TABLE_ROWS) -> None:
    lines = ["id\traw_category\tcategory\tcount\tnyu40id\tmpcat40"]
    lines += [f"{i}\t{raw}\t{cat}\t1\t{nyu}\tmisc" for i, raw, cat, nyu in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def write_raw_scene(raw: Path, name: str, xyz, faces, segments, groups, test=False) -> Path:
    folder = raw / ("scans_test" if test else "scans") / name
    folder.mkdir(parents=True, exist_ok=True)
    xyz = np.asarray(xyz, dtype=np.float32)
    rgb = (np.arange(len(xyz) * 3).reshape(-1, 3) % 256).astype(np.uint8)
    write_mesh(folder / f"{name}_vh_clean_2.ply", xyz, rgb, np.asarray(faces))
    (folder / f"{name}.txt").write_text("sceneType = Office\n")
    if not test:
        segs = {"sceneId": name, "segIndices": list(segments)}
        (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
        agg = {"sceneId": f"scannet.{name}", "appId": "test", "segGroups": groups}
        (folder / f"{name}.aggregation.json").write_text(json.dumps(agg))
    return folder


def write_splits(raw: Path, train=(), val=(), test=()) -> None:
    for split, names in (("train", train), ("val", val), ("test", test)):
        (raw / f"scannetv2_{split}.txt").write_text("".join(f"{n}\n" for n in names))


def strip_scene(raw: Path, name: str) -> Path:
    """Nine vertices in the z = 0 plane, two triangles. Vertex k < 6 sits at x = k / 10 in its
    own 2 cm voxel; vertex 6 shares vertex 0's voxel, vertices 7 and 8 share vertex 4's."""
    xyz = [[k / 10, 0, 0] for k in range(6)] + [[0.005, 0.005, 0], [0.405, 0, 0], [0.41, 0, 0]]
    faces = [[0, 1, 6], [1, 2, 6]]
    segments = [10, 10, 20, 20, 30, 40, 50, 10, 10]
    groups = [
        {"id": 0, "objectId": 7, "segments": [10], "label": "chair"},
        {"id": 1, "segments": [20, 40], "label": "wall"},  # no objectId: the id is the instance
        {"id": 2, "objectId": 9, "segments": [30], "label": "stick"},
        {"id": 3, "objectId": 3, "segments": [40], "label": "wardrobe cabinet"},  # overrides
    ]
    return write_raw_scene(raw, name, xyz, faces, segments, groups)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_table(raw / "scannetv2-labels.combined.tsv")
    return raw


def load(out: Path, split: str, name: str) -> dict[str, np.ndarray]:
    return {key: np.load(out / split / name / f"{key}.npy") for key in ARRAYS}


# --------------------------------------------------------------------------- exact labelling
def test_labels_instances_and_voxels_of_a_hand_built_scene(raw, tmp_path, capsys):
    strip_scene(raw, "scene0000_00")
    write_raw_scene(
        raw, "scene0100_00", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], [], [], test=True
    )
    write_splits(raw, train=["scene0000_00"], test=["scene0100_00"])
    out = tmp_path / "out"
    assert prep.main([str(raw), str(out)]) == 0

    a = load(out, "train", "scene0000_00")
    assert a["coord"].dtype == np.float32 and a["coord"].shape == (9, 3)
    x = np.float32([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.005, 0.405, 0.41])
    assert np.array_equal(a["coord"][:, 0], x)
    assert a["color"].dtype == np.uint8 and a["color"][1].tolist() == [3, 4, 5]
    # chair x2, wall x2, stick (ScanNet20: otherprop, ignored), wardrobe cabinet (the last group
    # wins; not a ScanNet200 class), no group, chair x2
    chair20, chair200 = S20[5], S200[2]
    assert a["segment20"].dtype == np.int16 and a["segment200"].dtype == np.int16
    assert (
        a["segment20"].tolist() == [chair20] * 2 + [S20[1]] * 2 + [-1, S20[39], -1] + [chair20] * 2
    )
    assert (
        a["segment200"].tolist()
        == [chair200] * 2 + [S200[1]] * 2 + [S200[1163], -1, -1] + [chair200] * 2
    )
    assert a["instance"].dtype == np.int32
    assert a["instance"].tolist() == [7, 7, 1, 1, 9, 3, -1, 7, 7]

    grid = np.floor(a["coord"].astype(np.float64) / 0.02).astype(np.int32)
    assert a["voxel_coord"].dtype == np.int32 and a["voxel_inverse"].dtype == np.int32
    assert np.array_equal(a["voxel_coord"][a["voxel_inverse"]], grid)
    assert len(a["voxel_coord"]) == 6
    voxel = a["voxel_inverse"]
    assert voxel[6] == voxel[0] and voxel[7] == voxel[8] == voxel[4]
    # Vertex 0's voxel: chair (vertex 6 is ignored and does not vote); vertex 4's: two chair
    # vertices outvote the stick.
    expected = [chair200, chair200, S200[1], S200[1], chair200, -1]
    assert a["voxel_segment200"][voxel[:6]].tolist() == expected

    t = load(out, "test", "scene0100_00")
    assert (t["segment20"] == -1).all() and (t["segment200"] == -1).all()
    assert (t["instance"] == -1).all() and (t["voxel_segment200"] == -1).all()

    manifest = read_json(out / "manifest.json")
    assert list(manifest) == [
        "format_version",
        "voxel_size",
        "align",
        "label_table_sha256",
        "label_sets",
        "splits",
        "excluded",
        "num_vertices",
        "num_voxels",
        "stats",
    ]
    assert manifest["splits"] == {"train": ["scene0000_00"], "val": [], "test": ["scene0100_00"]}
    assert manifest["num_vertices"] == {"train": 9, "val": 0, "test": 3}
    assert manifest["num_voxels"]["train"] == 6
    assert manifest["label_sets"]["scannet200"]["groups"]["tail"] == list(SCANNET200.groups["tail"])
    assert "groups" not in manifest["label_sets"]["scannet20"]
    assert set(manifest["stats"]) == {"train", "val"}
    stats = manifest["stats"]["train"]["scannet200"]
    expected = np.zeros(200, int)
    expected[[chair200, S200[1], S200[1163]]] = [4, 2, 1]
    assert stats["point_counts"] == expected.tolist()
    expected[[chair200, S200[1], S200[1163]]] = [3, 2, 0]
    assert stats["voxel_counts"] == expected.tolist()
    assert stats["scene_counts"] == (expected > 0).astype(int).tolist()
    assert "2 scenes: 2 prepared, 0 skipped (up to date), 0 failed" in capsys.readouterr().out


def test_majority_vote():
    inverse = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    labels = np.array([4, 4, 1, 2, 3, -1, 5, -1])
    # voxel 0: 4 beats 1; voxel 1: a tie goes to the smaller class; voxel 2: -1 does not vote;
    # voxel 3: nothing but ignored points
    assert majority_labels(inverse, labels, 4).tolist() == [4, 2, 5, -1]
    assert majority_labels(inverse, np.full(8, -1), 4).tolist() == [-1] * 4


# ------------------------------------------------------------------------------------ normals
def test_normals_of_a_flat_square_point_up_or_down():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    normals = vertex_normals(xyz, faces)
    assert normals.dtype == np.float32
    np.testing.assert_allclose(normals[:4], [[0, 0, 1]] * 4, atol=1e-7)
    np.testing.assert_allclose(vertex_normals(xyz, faces[:, ::-1])[:4], [[0, 0, -1]] * 4)
    assert normals[4].tolist() == [0, 0, 1]  # on no face: the fallback


def test_normals_of_a_cube_corner_and_area_weighting():
    # Three unit squares meeting at the origin, facing +x, +y and +z, each split along the
    # diagonal through the origin so that both triangles touch it.
    o, x, y, z = [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]
    xyz = np.array([o, x, y, z, [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 1, 4], [0, 4, 2], [0, 2, 5], [0, 5, 3], [0, 3, 6], [0, 6, 1]])
    normals = vertex_normals(xyz, faces)
    np.testing.assert_allclose(normals[0], np.ones(3) / np.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(normals[4], [0, 0, 1], atol=1e-7)  # only on the +z square
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, rtol=1e-6)
    # A vertex on a big +z triangle (area 2) and a small +x triangle (area 0.5): 4:1 weights.
    xyz = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    normal = vertex_normals(xyz, np.array([[0, 1, 2], [0, 3, 4]]))[0]
    np.testing.assert_allclose(normal, np.array([0.5 * 2, 0, 2 * 2]) / np.hypot(1, 4), rtol=1e-6)
    # Zero-area faces give the fallback, not NaN.
    degenerate = vertex_normals(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert degenerate.tolist() == [[0, 0, 1]] * 3


# -------------------------------------------------------------------------- the real label table
@pytest.mark.skipif(
    not (SHARED / "scannetv2-labels.combined.tsv").is_file(),
    reason=f"real label table not found in {SHARED}",
)
def test_real_label_table_quirks():
    lookups = read_label_table(SHARED / "scannetv2-labels.combined.tsv")
    s20, s200 = lookups["scannet20"], lookups["scannet200"]
    assert len(s200) == 607
    assert s200["stick"] == s200["object"] == S200[1163]
    assert s200["wardrobe"] == s200["wardrobe closet"] == s200["closet wardrobe"] == S200[99]
    assert s200["wardrobe cabinet"] == -1  # id 1177, category "wardrobe " (trailing space)
    assert s20["wardrobe cabinet"] == s20["wardrobe"] == S20[39]  # NYU40 otherfurniture
    assert s200["books"] == s200["book"] == S200[22]
    assert s20["books"] == -1  # NYU40 23 (books) is not a ScanNet20 class
    assert s20["chair"] == S20[5] and s200["chair"] == S200[2]
    assert sorted(set(s200.values()) - {-1}) == list(range(200))  # every class is reachable
    assert sorted(set(s20.values()) - {-1}) == list(range(20))


def test_label_table_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id,raw_category,nyu40id\n1,wall,1\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: label table lacks columns"):
        read_label_table(bad)
    write_table(bad, [*TABLE_ROWS, (5, "wall", "wall", 1)])
    with pytest.raises(ValueError, match="raw_category 'wall' appears twice"):
        read_label_table(bad)
    # A row cut short: its class used to be ignored without a word.
    write_table(bad)
    bad.write_bytes(bad.read_bytes() + b"2\tdesk\tdesk\r\n")
    with pytest.raises(
        ValueError, match=r"bad\.tsv:9: no value in column\(s\) \['nyu40id'\] \(3 cells"
    ):
        read_label_table(bad)
    write_table(bad, [])
    with pytest.raises(ValueError, match=r"bad\.tsv: label table has a header but no rows"):
        read_label_table(bad)


# ------------------------------------------------------------------------------- bad input
def test_bad_scenes_fail_alone_with_clear_messages(raw, tmp_path, capsys):
    good = ["scene0000_00", "scene0001_00", "scene0002_00"]
    for name in good:
        strip_scene(raw, name)
    for name in good[1:]:  # an unknown label: a warning, not a failure
        path = raw / "scans" / name / f"{name}.aggregation.json"
        agg = json.loads(path.read_text())
        agg["segGroups"][0]["label"] = "flux capacitor"
        path.write_text(json.dumps(agg))

    strip_scene(raw, "scene0010_00")
    (raw / "scans/scene0010_00/scene0010_00.aggregation.json").unlink()
    strip_scene(raw, "scene0011_00")
    (raw / "scans/scene0011_00/scene0011_00_vh_clean_2.ply").write_bytes(b"ply\nformat nonsense\n")
    strip_scene(raw, "scene0012_00")
    segs = raw / "scans/scene0012_00/scene0012_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [10, 10, 20]}))
    strip_scene(raw, "scene0013_00")
    agg = raw / "scans/scene0013_00/scene0013_00.aggregation.json"
    agg.write_text(json.dumps({"segGroups": [{"id": 0, "segments": [10, 999], "label": "wall"}]}))
    write_splits(
        raw,
        train=[*good, "scene0010_00", "scene0011_00", "scene0012_00"],
        val=["scene0013_00", "scene0014_00"],
    )  # scene0014_00 has no folder at all

    out = tmp_path / "out"
    assert prep.main([str(raw), str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "scene0010_00.aggregation.json: file not found" in err
    assert "scene0011_00_vh_clean_2.ply: unreadable PLY" in err
    assert "scene0012_00_vh_clean_2.0.010000.segs.json: 3 segIndices but" in err
    assert "scene0012_00_vh_clean_2.ply has 9 vertices" in err
    assert "scene0013_00.aggregation.json: segGroups[0] ('wall') refers to segments [999]" in err
    assert "scene0014_00: scene folder not found (the val split list names it)" in err
    summary = captured.out
    assert "8 scenes: 3 prepared, 0 skipped (up to date), 5 failed" in summary
    # Reported once for the whole run, with its counts.
    assert summary.count("flux capacitor") == 1
    assert "'flux capacitor' (2 groups in 2 scenes)" in summary

    manifest = read_json(out / "manifest.json")
    assert manifest["splits"] == {"train": good, "val": [], "test": []}
    for name in good:
        assert (out / "train" / name / SCENE_META).is_file()
    for name in ("scene0010_00", "scene0011_00", "scene0012_00"):
        assert not (out / "train" / name / SCENE_META).exists()
    chair_vertices = load(out, "train", "scene0001_00")["segment200"][:2]
    assert chair_vertices.tolist() == [-1, -1]  # the unknown label's vertices are ignored


def test_usage_errors_exit_2(raw, tmp_path, capsys):
    write_splits(raw)
    out = str(tmp_path / "out")
    for argv, message in [
        ([str(tmp_path / "nowhere"), out], "not a folder"),
        ([str(raw), out, "--labels", str(tmp_path / "none.tsv")], "label table not found"),
        ([str(raw), out, "--splits-dir", str(tmp_path)], "scannetv2_train.txt: split list"),
        ([str(raw), out, "-j", "0"], "-j must be at least 1"),
        ([str(raw), out, "--voxel-size", "0"], "--voxel-size must be positive"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            prep.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------ resume
def marker_times(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted(out.glob(f"*/*/{SCENE_META}"))}


def test_resume_skips_complete_scenes_and_redoes_the_rest(raw, tmp_path, capsys):
    names = [f"scene000{i}_00" for i in range(4)]
    for name in names:
        strip_scene(raw, name)
    write_splits(raw, train=names[:3], val=names[3:])
    out = tmp_path / "out"
    assert prep.main([str(raw), str(out)]) == 0
    first_manifest = read_json(out / "manifest.json")
    first = marker_times(out)
    capsys.readouterr()

    # An interrupted run: scene 0 has data but no marker, scene 1 only one array.
    (out / "train" / names[0] / SCENE_META).unlink()
    for key in ARRAYS[1:]:
        (out / "train" / names[1] / f"{key}.npy").unlink()
    # Scene 2's aggregation changed after it was prepared, but carries an older time (copied
    # with its times kept): its content decides. Scene 3's mesh was only touched.
    agg = raw / "scans" / names[2] / f"{names[2]}.aggregation.json"
    groups = json.loads(agg.read_text())
    groups["segGroups"][0]["label"] = "wall"
    agg.write_text(json.dumps(groups))
    os.utime(agg, ns=(first[names[2]] - 10**9, first[names[2]] - 10**9))
    mesh = raw / "scans" / names[3] / f"{names[3]}_vh_clean_2.ply"
    os.utime(mesh, ns=(first[names[3]] + 10**9, first[names[3]] + 10**9))

    assert prep.main([str(raw), str(out)]) == 0
    assert "4 scenes: 3 prepared, 1 skipped (up to date), 0 failed" in capsys.readouterr().out
    second = marker_times(out)
    assert second[names[3]] == first[names[3]]
    assert all(second[n] > first.get(n, 0) for n in names[:3])
    relabelled = read_json(out / "manifest.json")
    assert relabelled["stats"] != first_manifest["stats"]  # the chair became a wall
    assert relabelled["splits"] == first_manifest["splits"]
    assert relabelled["num_vertices"] == first_manifest["num_vertices"]  # skipped ones count
    assert load(out, "train", names[2])["segment200"][0] == S200[1]  # wall

    assert prep.main([str(raw), str(out), "--force"]) == 0
    assert "4 scenes: 4 prepared, 0 skipped" in capsys.readouterr().out
    # Another voxel size is not "up to date" either.
    assert prep.main([str(raw), str(out), "--voxel-size", "0.05"]) == 0
    assert "4 prepared" in capsys.readouterr().out
    assert read_json(out / "manifest.json")["voxel_size"] == 0.05


# -------------------------------------------------------------------- round trip from synth
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    raw = tmp_path_factory.mktemp("synth")
    out = tmp_path_factory.mktemp("prepared")
    argv = [
        str(raw),
        "--scenes",
        "4",
        "--test-scenes",
        "1",
        "--seed",
        "3",
        "--classes",
        "20",
        "--vertex-spacing",
        "0.12",
        "--unknown-label",
        "--empty-room",
    ]
    assert generate.main(argv) == 0
    assert prep.main([str(raw), str(out)]) == 0
    return raw, out


def reference_labels(raw: Path, name: str, lookups: dict) -> tuple[dict, np.ndarray]:
    """Per-vertex labels the slow, obvious way: every group, every segment, every vertex."""
    folder = raw / "scans" / name
    segments = read_json(folder / f"{name}_vh_clean_2.0.010000.segs.json")["segIndices"]
    groups = read_json(folder / f"{name}.aggregation.json")["segGroups"]
    labels = {k: np.full(len(segments), -1) for k in lookups}
    instance = np.full(len(segments), -1)
    for group in groups:
        members = set(group["segments"])
        for v, segment in enumerate(segments):
            if segment in members:
                for k in lookups:
                    labels[k][v] = lookups[k].get(group["label"], -1)
                instance[v] = group["objectId"]
    return labels, instance


def test_round_trip_from_synth(synthetic, capsys):
    raw, out = synthetic
    lookups = read_label_table(raw / "scannetv2-labels.combined.tsv")
    manifest = read_json(out / "manifest.json")
    for split in ("train", "val", "test"):
        listed = (raw / f"scannetv2_{split}.txt").read_text().split()
        assert manifest["splits"][split] == sorted(listed)
        total = 0
        for name in listed:
            a = load(out, split, name)
            folder = raw / ("scans_test" if split == "test" else "scans") / name
            n = count_ply_vertices(folder / f"{name}_vh_clean_2.ply")
            per_vertex = [k for k in ARRAYS if not k.startswith("voxel_")] + ["voxel_inverse"]
            assert all(len(a[k]) == n for k in per_vertex)
            assert all(len(a[k]) == len(a["voxel_coord"]) for k in ARRAYS if "voxel_seg" in k)
            total += n
            if split != "test":
                labels, instance = reference_labels(raw, name, lookups)
                assert np.array_equal(a["segment20"], labels["scannet20"])
                assert np.array_equal(a["segment200"], labels["scannet200"])
                assert np.array_equal(a["instance"], instance)
            np.testing.assert_allclose(np.linalg.norm(a["normal"], axis=1), 1, rtol=1e-5)
        assert manifest["num_vertices"][split] == total
    # The manifest's statistics are the arrays' own.
    for split in ("train", "val"):
        for name, key in (("scannet20", "segment20"), ("scannet200", "segment200")):
            labels = np.concatenate([load(out, split, s)[key] for s in manifest["splits"][split]])
            points = np.bincount(labels[labels >= 0], minlength=len(LABEL_SETS[name].ids))
            assert manifest["stats"][split][name]["point_counts"] == points.tolist()


def test_prep_needs_neither_torch_nor_minkowski_engine(synthetic, tmp_path):
    """Preparing data needs numpy and plyfile only: the CLI's import path, the module its
    worker processes preload, and a whole run (the scenes prepared in this process)."""
    raw, _ = synthetic
    code = (
        "import sys\n"
        "import data_prep.prep, data_prep.worker_preload\n"
        f"assert data_prep.prep.main([{str(raw)!r}, {str(tmp_path / 'out')!r}]) == 0\n"
        "heavy = [m for m in ('torch', 'MinkowskiEngine') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / MANIFEST).is_file()


def test_parallel_run_gives_identical_files(synthetic, tmp_path):
    raw, out = synthetic
    out2 = tmp_path / "out2"
    assert prep.main([str(raw), str(out2), "-j", "2"]) == 0
    assert read_json(out2 / "manifest.json") == read_json(out / "manifest.json")
    for path in out.glob("*/*/*.npy"):
        assert path.read_bytes() == (out2 / path.relative_to(out)).read_bytes(), path


def test_align_applies_the_matrix_and_leaves_test_scans(synthetic, tmp_path, capsys):
    raw, out = synthetic
    aligned = tmp_path / "aligned"
    assert prep.main([str(raw), str(aligned), "--align"]) == 0
    assert "note: 1 scenes have no axisAlignment and stay unaligned" in capsys.readouterr().out
    manifest = read_json(aligned / "manifest.json")
    assert manifest["align"] is True
    name = manifest["splits"]["train"][0]
    text = (raw / "scans" / name / f"{name}.txt").read_text()
    numbers = text.split("axisAlignment =")[1].splitlines()[0].split()
    matrix = np.array(numbers, dtype=np.float64).reshape(4, 4)
    before = np.load(out / "train" / name / "coord.npy").astype(np.float64)
    after = np.load(aligned / "train" / name / "coord.npy")
    np.testing.assert_allclose(after, before @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-4)
    # The synthetic rooms are built axis-aligned with the floor at z = 0 from x, y = 0.
    assert np.abs(after.min(0)).max() < 0.05
    test_name = manifest["splits"]["test"][0]
    assert read_json(aligned / "test" / test_name / SCENE_META)["aligned"] is False
    assert np.array_equal(
        np.load(aligned / "test" / test_name / "coord.npy"),
        np.load(out / "test" / test_name / "coord.npy"),
    )


def test_unknown_label_and_empty_room_from_synth(synthetic, capsys):
    raw, out = synthetic
    manifest = read_json(out / "manifest.json")
    empty = manifest["splits"]["train"][-1]
    labels = set(np.unique(load(out, "train", empty)["segment200"]).tolist())
    assert labels <= {-1, S200[1], S200[3], S200[41]}  # wall, floor, maybe ceiling
    assert prep.main([str(raw), str(out)]) == 0  # everything up to date now
    summary = capsys.readouterr().out
    assert f"0 prepared, {sum(map(len, manifest['splits'].values()))} skipped" in summary
    assert summary.count(UNKNOWN_LABEL) == 1
