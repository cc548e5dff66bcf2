"""``ceco3d-synth``: a synthetic raw ScanNet release, laid out like the real one.

    ceco3d-synth OUT --scenes N --test-scenes M --seed S [--classes C] [--vertex-spacing M]
                 [--class-set catalogue|fine_grained] [--balanced]

writes ``OUT/scans/sceneXXXX_00/`` (mesh, segments, aggregation, ``.txt`` with
``axisAlignment``), ``OUT/scans_test/`` (mesh and ``.txt`` without it, as in the real test set),
``OUT/scannetv2-labels.combined.tsv`` and ``OUT/scannetv2_{train,val,test}.txt``, ready for
``ceco3d-prep OUT ...``. Rooms hold objects of C ScanNet200 classes, a third each from head,
common and tail (head takes the remainder), with a long-tailed frequency that keeps that order
(data_prep/synth/classes.py); every class is placed in at least one train and one val scene.
``--class-set fine_grained`` takes the fine-grained set instead (most common and tail classes
close relatives of a head class) and ``--balanced`` makes every object class equally frequent.
The same arguments give byte-identical files.

Density: ``--vertex-spacing 0.05`` (default) gives roughly 30k-80k vertices per scene (vertex
count goes with 1 / spacing^2: ``0.033`` about twice that, nearer a real ScanNet ``vh_clean_2``
mesh's 150k; ``0.15`` about a ninth).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ceco3d.data import raw_layout
from ceco3d.io import atomic_write, save_text, write_mesh
from data_prep.synth.classes import (
    CLASS_SETS,
    MAX_CLASSES,
    balanced,
    label_table_text,
    max_classes,
    select_classes,
)
from data_prep.synth.scene import RawScene, generate_scene

SCENE_TYPES = ("Bedroom / Hotel", "Living room / Lounge", "Office", "Kitchen", "Conference Room")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceco3d-synth", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("out", type=Path, help="output folder (the RAW of ceco3d-prep)")
    parser.add_argument("--scenes", type=int, default=10, help="train + val scenes (default 10)")
    parser.add_argument("--test-scenes", type=int, default=2, help="unlabelled test scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--class-set",
        choices=sorted(CLASS_SETS),
        default="catalogue",
        help="catalogue: classes with a look of their own; fine_grained: 45 classes, most common "
        "and tail ones close relatives of a head class (data_prep/synth/classes.py)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        help=f"ScanNet200 classes used, 5..{MAX_CLASSES} (default 40; fine_grained: all 45)",
    )
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="every object class equally frequent (the class-balanced draw of the same rooms)",
    )
    parser.add_argument(
        "--vertex-spacing", type=float, default=0.05, help="metres between mesh vertices"
    )
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument(
        "--empty-room", action="store_true", help="add a train scene with no objects"
    )
    parser.add_argument(
        "--unknown-label",
        action="store_true",
        help="give the first train scene a group whose label is not in the label table",
    )
    return parser


def split_scenes(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """Indices of the train and val scenes (both sorted, neither empty)."""
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = rng.permutation(n)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def axis_alignment(rng: np.random.Generator) -> np.ndarray:
    """A raw -> aligned transform: z rotation plus translation, rounded as ScanNet prints it."""
    angle = rng.uniform(0, 2 * np.pi)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:2, 3] = rng.uniform(-3, 3, 2)
    return np.round(matrix, 6)


def write_scene(
    folder: Path,
    name: str,
    scene: RawScene,
    alignment: np.ndarray,
    labelled: bool,
    rng: np.random.Generator,
) -> None:
    """Write one scan in ScanNet's file layout; the mesh is stored in the raw (unaligned) frame."""
    homogeneous = np.c_[scene.xyz, np.ones(len(scene.xyz))]
    raw = (homogeneous @ np.linalg.inv(alignment).T)[:, :3]
    write_mesh(raw_layout.mesh_file(folder, name), raw.astype(np.float32), scene.rgb, scene.faces)
    frames = int(rng.integers(800, 5000))
    info = [
        "colorHeight = 968\ncolorWidth = 1296\ndepthHeight = 480\ndepthWidth = 640",
        f"numColorFrames = {frames}\nnumDepthFrames = {frames}",
        f"sceneType = {SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]}",
    ]
    if labelled:
        numbers = " ".join(f"{x:.6f}" for x in alignment.reshape(-1))
        info.insert(0, f"axisAlignment = {numbers}")
        segments_file = raw_layout.segments_file(folder, name).name
        segments = {
            "params": {"kThresh": "0.0001", "segMinVerts": "20"},
            "sceneId": name,
            "segIndices": scene.segments.tolist(),
        }
        aggregation = {
            "sceneId": f"scannet.{name}",
            "appId": "Aggregator.v2",
            "segGroups": scene.groups,
            "segmentsFile": f"scannet.{segments_file}",
        }
        aggregation_file = raw_layout.aggregation_file(folder, name).name
        for path, obj in ((segments_file, segments), (aggregation_file, aggregation)):
            with atomic_write(folder / path, "w") as f:
                json.dump(obj, f)
    save_text(raw_layout.info_file(folder, name), "\n".join(info) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scenes < 2:
        parser.error("--scenes must be at least 2 (one train and one val scene)")
    if args.test_scenes < 0:
        parser.error("--test-scenes must not be negative")
    if not 0.005 <= args.vertex_spacing <= 1.0:
        parser.error("--vertex-spacing must be between 0.005 and 1 metre")
    if not 0 < args.val_fraction < 1:
        parser.error("--val-fraction must be between 0 and 1")
    class_set = CLASS_SETS[args.class_set]
    count = args.classes or (40 if args.class_set == "catalogue" else max_classes(class_set))
    try:
        used = select_classes(count, class_set)
    except ValueError as e:
        parser.error(str(e))
    if args.balanced:
        used = balanced(used)

    names = [f"scene{i:04d}_00" for i in range(args.scenes + args.empty_room + args.test_scenes)]
    train, val = split_scenes(args.scenes, args.val_fraction, np.random.default_rng([args.seed, 0]))
    empty = args.scenes if args.empty_room else None
    test = list(range(args.scenes + args.empty_room, len(names)))

    # Every class goes into one train and one val scene by rule, so rare ones are never missed
    # (every room has walls and a floor anyway).
    required: dict[int, list] = {i: [] for i in range(len(names))}
    for k, cls in enumerate(c for c in used if c.name not in ("wall", "floor")):
        required[train[k % len(train)]].append(cls)
        required[val[k % len(val)]].append(cls)
    if empty is not None:
        train.append(empty)

    total = 0
    for i, name in enumerate(names):
        rng = np.random.default_rng([args.seed, 1, i])
        split = "test" if i in test else "val" if i in val else "train"
        labelled = split != "test"
        scene = generate_scene(
            rng,
            used,
            required[i],
            args.vertex_spacing,
            objects=i != empty,
            unknown_label=args.unknown_label and i == train[0],
        )
        folder = raw_layout.scene_folder(args.out, split, name)
        write_scene(folder, name, scene, axis_alignment(rng), labelled, rng)
        total += len(scene.xyz)
        print(f"{name}: {len(scene.xyz)} vertices, {len(scene.groups)} objects", file=sys.stderr)

    save_text(args.out / raw_layout.LABEL_TABLE, label_table_text())
    for split, indices in (("train", train), ("val", val), ("test", test)):
        save_text(raw_layout.split_list(args.out, split), "".join(f"{names[i]}\n" for i in indices))
    print(
        f"ceco3d-synth: {len(train)} train, {len(val)} val, {len(test)} test scenes, "
        f"{total} vertices, {len(used)} classes -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
