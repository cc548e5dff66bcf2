"""ceco3d-synth: determinism, class coverage of train and val, long tail, odd cases, layout."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ceco3d.data.label_sets import SCANNET200
from ceco3d.io import read_json, read_mesh
from data_prep.labels import read_label_table
from data_prep.synth import generate as synth
from data_prep.synth.classes import (
    CATALOGUE,
    FINE_GRAINED,
    MAX_CLASSES,
    balanced,
    select_classes,
)
from data_prep.synth.mesh import SHAPES, box, cylinder
from data_prep.synth.scene import UNKNOWN_LABEL

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "scannet"
SMALL = ["--scenes", "5", "--test-scenes", "1", "--vertex-spacing", "0.15"]


def generate(folder: Path, *args: str) -> Path:
    assert synth.main([str(folder), *SMALL, *args]) == 0
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def split_list(raw: Path, split: str) -> list[str]:
    return (raw / f"scannetv2_{split}.txt").read_text().split()


def point_counts(raw: Path, split: str) -> np.ndarray:
    """ScanNet200 vertices per class over a split, read from the raw files."""
    lookup = read_label_table(raw / "scannetv2-labels.combined.tsv")["scannet200"]
    counts = np.zeros(200, np.int64)
    for name in split_list(raw, split):
        folder = raw / "scans" / name
        segments = read_json(folder / f"{name}_vh_clean_2.0.010000.segs.json")["segIndices"]
        size = Counter(segments)
        for group in read_json(folder / f"{name}.aggregation.json")["segGroups"]:
            index = lookup.get(group["label"], -1)
            if index >= 0:
                counts[index] += sum(size[s] for s in group["segments"])
    return counts


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), "--seed", "7")


def test_same_seed_same_bytes_other_seed_differs(raw, tmp_path):
    again = files(generate(tmp_path / "again", "--seed", "7"))
    assert again == files(raw)
    other = files(generate(tmp_path / "other", "--seed", "8"))
    assert other.keys() == again.keys()
    meshes = [k for k in other if k.endswith(".ply")]
    assert all(other[k] != again[k] for k in meshes)


def test_layout_like_the_scannet_release(raw):
    train, val, test = (split_list(raw, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (4, 1, 1)
    assert not set(train) & set(val)
    for name in train + val:
        folder = raw / "scans" / name
        xyz, _, faces = read_mesh(folder / f"{name}_vh_clean_2.ply")
        assert len(faces) > len(xyz) > 1000
        segs = read_json(folder / f"{name}_vh_clean_2.0.010000.segs.json")
        assert segs["sceneId"] == name and len(segs["segIndices"]) == len(xyz)
        agg = read_json(folder / f"{name}.aggregation.json")
        assert agg["sceneId"] == f"scannet.{name}" and agg["segmentsFile"].endswith(".segs.json")
        known = set(segs["segIndices"])
        for group in agg["segGroups"]:
            assert group["id"] == group["objectId"] and set(group["segments"]) <= known
        # Objects are over-segmented: some group has several segments.
        assert max(len(g["segments"]) for g in agg["segGroups"]) > 3
        info = (folder / f"{name}.txt").read_text()
        matrix = np.array(info.split("axisAlignment =")[1].splitlines()[0].split(), float)
        rotation = matrix.reshape(4, 4)[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
    folder = raw / "scans_test" / test[0]
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{test[0]}.txt",
        f"{test[0]}_vh_clean_2.ply",
    ]
    assert "axisAlignment" not in (folder / f"{test[0]}.txt").read_text()


def test_every_used_class_in_train_and_val_with_a_long_tail(raw):
    used = select_classes(40)
    used_index = sorted(SCANNET200.names.index(c.name) for c in used)
    train, val = point_counts(raw, "train"), point_counts(raw, "val")
    assert np.flatnonzero(train).tolist() == used_index
    assert np.flatnonzero(val).tolist() == used_index
    for group in ("head", "common", "tail"):
        assert (SCANNET200.group_mask(group) & (train > 0)).any()
    present = train[train > 0]
    assert present.max() / present.min() >= 200
    # Walls are the biggest class, floor among the top three; the smallest is a tail class.
    order = np.argsort(-train)
    assert SCANNET200.names[order[0]] == "wall"
    assert "floor" in [SCANNET200.names[i] for i in order[:3]]
    assert SCANNET200.group_of_class[order[len(present) - 1]] == "tail"


def test_class_selection_takes_thirds_of_the_groups():
    for count in (5, 15, 40, MAX_CLASSES):
        chosen = select_classes(count)
        groups = Counter(c.group for c in chosen)
        assert len(chosen) == count and groups["common"] == groups["tail"] == count // 3
        assert {"wall", "floor"} <= {c.name for c in chosen}
    assert Counter(c.group for c in select_classes(40)) == {"head": 14, "common": 13, "tail": 13}
    for count in (4, MAX_CLASSES + 1):
        with pytest.raises(ValueError, match="--classes must be between"):
            select_classes(count)


def test_label_table(raw):
    text = (raw / "scannetv2-labels.combined.tsv").read_bytes()
    assert text.count(b"\r\n") == text.count(b"\n")  # CRLF, like the real one
    lookups = read_label_table(raw / "scannetv2-labels.combined.tsv")
    for cls in CATALOGUE:
        assert lookups["scannet200"][cls.name] == SCANNET200.names.index(cls.name)
    assert lookups["scannet200"]["wardrobe closet"] == lookups["scannet200"]["wardrobe"]


@pytest.mark.skipif(
    not (SHARED / "scannetv2-labels.combined.tsv").is_file(),
    reason=f"real label table not found in {SHARED}",
)
def test_label_table_agrees_with_the_real_one(raw):
    def rows(path):
        with open(path, newline="", encoding="utf-8") as f:
            return {r["raw_category"]: r for r in csv.DictReader(f, delimiter="\t")}

    real = rows(SHARED / "scannetv2-labels.combined.tsv")
    ours = rows(raw / "scannetv2-labels.combined.tsv")
    assert list(next(iter(ours.values()))) == list(next(iter(real.values())))  # same columns
    for raw_category, row in ours.items():
        for column in ("id", "category", "nyu40id", "nyu40class"):
            assert row[column] == real[raw_category][column], (raw_category, column)


def test_odd_cases(tmp_path, capsys):
    raw = generate(tmp_path / "odd", "--seed", "1", "--empty-room", "--unknown-label")
    train = split_list(raw, "train")
    assert len(train) == 5  # 4 + the empty room, which is the last scene
    empty = read_json(raw / "scans" / train[-1] / f"{train[-1]}.aggregation.json")["segGroups"]
    assert {g["label"] for g in empty} <= {"wall", "floor", "ceiling"}
    assert [g["label"] for g in empty].count("wall") == 4
    labels = Counter()
    for name in train:
        agg = read_json(raw / "scans" / name / f"{name}.aggregation.json")
        labels.update(g["label"] for g in agg["segGroups"])
    assert labels[UNKNOWN_LABEL] == 1
    assert UNKNOWN_LABEL not in read_label_table(raw / "scannetv2-labels.combined.tsv")["scannet20"]
    # Rare classes still reach train: the empty room takes none of them.
    assert np.count_nonzero(point_counts(raw, "train")) == 40


def test_density_option_scales_vertex_count(tmp_path):
    coarse = generate(tmp_path / "coarse", "--seed", "2", "--classes", "10")
    fine = tmp_path / "fine"
    assert (
        synth.main(
            [
                str(fine),
                "--scenes",
                "2",
                "--test-scenes",
                "0",
                "--seed",
                "2",
                "--classes",
                "10",
                "--vertex-spacing",
                "0.05",
            ]
        )
        == 0
    )
    name = split_list(fine, "train")[0]
    n_fine = len(read_mesh(fine / "scans" / name / f"{name}_vh_clean_2.ply")[0])
    n_coarse = len(read_mesh(coarse / "scans" / name / f"{name}_vh_clean_2.ply")[0])
    assert n_fine > 4 * n_coarse


@pytest.mark.parametrize(
    "argv",
    [["--scenes", "1"], ["--classes", "3"], ["--vertex-spacing", "0"], ["--test-scenes", "-1"]],
)
def test_usage_errors_exit_2(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth.main([str(tmp_path), *argv])
    assert exit_info.value.code == 2


def signed_volume(parts) -> float:
    total = 0.0
    for part in parts:
        c = part.vertices[part.faces]
        total += np.einsum("ij,ij->i", c[:, 0], np.cross(c[:, 1], c[:, 2])).sum() / 6
    return total


def test_meshes_face_outwards_and_respect_the_spacing():
    # Closed solids: the signed volume is the volume exactly when every face points out.
    assert signed_volume(box((0, 0, 0), (0.5, 0.4, 0.6), 0.05, bottom=True)) == pytest.approx(0.12)
    r, h = 0.3, 0.5
    # A 32-gon prism of radius r has area 16 r^2 sin(2 pi / 32).
    prism = signed_volume([cylinder(r, 0, h, 0.06)])
    assert prism == pytest.approx(16 * r**2 * np.sin(2 * np.pi / 32) * h)
    for name, build in SHAPES.items():
        parts = build(0.5, 0.4, 0.8, 0.05)
        assert signed_volume(parts) > 0, name  # open bottoms (z = 0) add nothing
        for part in parts:
            edges = part.vertices[part.faces] - part.vertices[np.roll(part.faces, 1, axis=1)]
            assert np.linalg.norm(edges, axis=2).max() < 0.05 * 1.5, name  # grid diagonals


def test_fine_grained_classes_are_relatives_of_frequent_ones():
    chosen = select_classes(45, FINE_GRAINED)
    assert Counter(c.group for c in chosen) == {"head": 15, "common": 15, "tail": 15}
    by_name = {c.name: c for c in chosen}
    rare = [c for c in chosen if c.group != "head"]
    kin = [c for c in rare if c.parent]
    assert len(kin) >= 2 * len(rare) / 3 and len(rare) - len(kin) >= 3  # some keep a signature
    for c in kin:
        parent = by_name[c.parent]
        assert parent.group in ("head", "common"), c.name
        # Same colour family: within a few of the parent's colour deviations, yet not the same.
        distance = np.linalg.norm(np.subtract(c.color, parent.color))
        assert 0 < distance <= 3.5 * parent.color_std * np.sqrt(3), c.name
        assert c.color_std == parent.color_std
    for c in rare:
        if not c.parent:  # a signature: no other class's colour near it
            others = [o for o in chosen if o is not c and o.name not in ("wall", "floor")]
            nearest = min(np.linalg.norm(np.subtract(c.color, o.color)) for o in others)
            assert nearest > 2 * c.color_std, c.name


def test_balanced_draw_makes_object_classes_equally_frequent():
    chosen = select_classes(45, FINE_GRAINED)
    even = balanced(chosen)
    rates = {c.rate for c in even if c.name not in ("wall", "floor")}
    assert len(rates) == 1
    objects = [c for c in chosen if c.name not in ("wall", "floor")]
    assert rates.pop() * len(objects) == pytest.approx(sum(c.rate for c in objects))
    assert [(c.name, c.color, c.size) for c in even] == [(c.name, c.color, c.size) for c in chosen]
