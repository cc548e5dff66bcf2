"""``ceco3d-prep``: raw ScanNet v2 -> per-scene arrays + ``manifest.json`` (Pointcept's layout).

    ceco3d-prep RAW OUT [--labels TSV] [--splits-dir DIR] [--voxel-size 0.02] [--align] [-j N]

RAW holds ``scans/`` and ``scans_test/`` as the ScanNet release lays them out; the label table
and the split lists default to files inside RAW. Scenes whose outputs are complete and newer than
their inputs are skipped (``--force`` redoes them). A scene with bad input fails alone, with a
message naming the file; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ceco3d.data.meta import LABEL_SETS
from ceco3d.io import InputError, save_json
from data_prep.labels import read_label_table
from data_prep.scene import FORMAT_VERSION, SceneSource, Settings, prepare_scene, up_to_date

SPLITS = ("train", "val", "test")
LABELLED_SPLITS = ("train", "val")
LABEL_TABLE = "scannetv2-labels.combined.tsv"


@dataclass(frozen=True)
class Outcome:
    source: SceneSource
    status: str  # "done", "skipped" or "failed"
    marker: dict | None = None
    error: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceco3d-prep", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("raw", type=Path, help="ScanNet folder with scans/ and scans_test/")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--labels", type=Path, help=f"label table (default: RAW/{LABEL_TABLE})")
    parser.add_argument(
        "--splits-dir", type=Path, help="folder with scannetv2_{train,val,test}.txt (default: RAW)"
    )
    parser.add_argument("--voxel-size", type=float, default=0.02, help="metres (default: 0.02)")
    parser.add_argument(
        "--align", action="store_true", help="apply each scan's axisAlignment (test scans: none)"
    )
    parser.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--force", action="store_true", help="redo scenes that are up to date")
    return parser


def find_scenes(raw: Path, splits_dir: Path) -> list[SceneSource]:
    """Every scene of the split lists, in list order; test scenes live in ``scans_test/``."""
    sources: list[SceneSource] = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        path = splits_dir / f"scannetv2_{split}.txt"
        try:
            names = path.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            raise InputError(f"{path}: split list not found (pass --splits-dir)") from None
        for name in names:
            if Path(name).name != name or name.startswith("."):
                raise InputError(f"{path}: {name!r} is not a scene name")
            if name in seen:
                raise InputError(f"{path}: {name} is already listed in the {seen[name]} split")
            seen[name] = split
            folder = raw / ("scans_test" if split == "test" else "scans") / name
            sources.append(SceneSource(name, split, folder, labelled=split != "test"))
    return sources


def run_one(
    source: SceneSource, out: Path, settings: Settings, lookups: dict, force: bool
) -> Outcome:
    """Prepare one scene unless it is up to date; bad input becomes a failed outcome."""
    folder = out / source.split / source.scene_id
    try:
        marker = None if force else up_to_date(source, folder, settings)
        if marker is not None:
            return Outcome(source, "skipped", marker)
        return Outcome(source, "done", prepare_scene(source, folder, settings, lookups))
    except InputError as e:
        return Outcome(source, "failed", error=str(e))
    except Exception:
        return Outcome(source, "failed", error="unexpected error\n" + traceback.format_exc())


def init_worker() -> None:
    """Worker processes share the cores among themselves, one thread each."""
    import torch

    torch.set_num_threads(1)


def run_all(
    sources: list[SceneSource], run: Callable[[SceneSource], Outcome], workers: int
) -> list[Outcome]:
    """``run(source)`` for every scene, in ``workers`` processes, with a progress bar."""
    outcomes = []
    with tqdm(total=len(sources), unit="scene", desc="ceco3d-prep") as bar:

        def collect(outcome: Outcome) -> None:
            if outcome.error:
                bar.write(f"FAILED {outcome.source.scene_id}: {outcome.error}", file=sys.stderr)
            outcomes.append(outcome)
            bar.update()

        if workers == 1:
            for source in sources:
                collect(run(source))
            return outcomes
        # Not plain fork: forking a process whose OpenMP pool already ran can deadlock. A fork
        # server that has imported MinkowskiEngine (and run nothing) starts workers in
        # milliseconds instead of seconds each.
        context = get_context("forkserver")
        context.set_forkserver_preload(["data_prep.worker_preload"])
        pool = ProcessPoolExecutor(workers, context, initializer=init_worker)
        try:
            for future in as_completed([pool.submit(run, source) for source in sources]):
                collect(future.result())
        finally:
            pool.shutdown(cancel_futures=True)  # on Ctrl-C, do not wait for queued scenes
    return outcomes


def build_manifest(prepared: list[Outcome], voxel_size: float, align: bool) -> dict:
    """The manifest, assembled from the scenes' markers so resumed runs get full totals."""
    by_split = {
        split: sorted(
            (o for o in prepared if o.source.split == split), key=lambda o: o.source.scene_id
        )
        for split in SPLITS
    }
    label_sets = {}
    for name, label_set in LABEL_SETS.items():
        label_sets[name] = {"ids": list(label_set.ids), "names": list(label_set.names)}
        if label_set.groups:
            label_sets[name]["groups"] = {g: list(n) for g, n in label_set.groups.items()}
    stats = {}
    for split in LABELLED_SPLITS:
        stats[split] = {}
        for name, label_set in LABEL_SETS.items():
            points = np.zeros(label_set.num_classes, np.int64)
            voxels = np.zeros(label_set.num_classes, np.int64)
            scenes = np.zeros(label_set.num_classes, np.int64)
            for outcome in by_split[split]:
                counts = outcome.marker["class_counts"][name]
                points += counts["point_counts"]
                voxels += counts["voxel_counts"]
                scenes += np.asarray(counts["voxel_counts"]) > 0
            stats[split][name] = {
                "point_counts": points.tolist(),
                "voxel_counts": voxels.tolist(),
                "scene_counts": scenes.tolist(),
            }
    return {
        "format_version": FORMAT_VERSION,
        "voxel_size": voxel_size,
        "aligned": align,
        "label_sets": label_sets,
        "splits": {s: [o.source.scene_id for o in by_split[s]] for s in SPLITS},
        "num_vertices": {s: sum(o.marker["num_vertices"] for o in by_split[s]) for s in SPLITS},
        "num_voxels": {s: sum(o.marker["num_voxels"] for o in by_split[s]) for s in SPLITS},
        "stats": stats,
    }


def summarize(outcomes: list[Outcome], seconds: float, manifest_path: Path) -> str:
    count = Counter(o.status for o in outcomes)
    seconds = max(seconds, 1e-9)
    done = [o for o in outcomes if o.status == "done"]
    vertices = sum(o.marker["num_vertices"] for o in done)
    lines = [
        f"ceco3d-prep: {len(outcomes)} scenes: {count['done']} prepared, "
        f"{count['skipped']} skipped (up to date), {count['failed']} failed; "
        f"{seconds:.1f} s, {vertices} vertices prepared, "
        f"{vertices / seconds:,.0f} vertices/s, {len(done) / seconds:.2f} scenes/s"
    ]
    prepared = [o for o in outcomes if o.marker is not None]
    unknown_groups: Counter = Counter()
    unknown_scenes: Counter = Counter()
    for outcome in prepared:
        unknown_groups.update(outcome.marker["unknown_labels"])
        unknown_scenes.update(outcome.marker["unknown_labels"].keys())
    if unknown_groups:
        listed = ", ".join(
            f"{raw!r} ({n} groups in {unknown_scenes[raw]} scenes)"
            for raw, n in sorted(unknown_groups.items())
        )
        lines.append(
            f"warning: {len(unknown_groups)} aggregation labels are not a raw_category of the "
            f"label table; their vertices are ignored: {listed}"
        )
    unaligned = [o for o in prepared if o.marker["align"] and not o.marker["aligned"]]
    if unaligned:
        lines.append(
            f"note: {len(unaligned)} scenes have no axisAlignment and stay unaligned: "
            + " ".join(sorted(o.source.scene_id for o in unaligned))
        )
    failed = sorted(o.source.scene_id for o in outcomes if o.status == "failed")
    if failed:
        lines.append(f"failed scenes (messages above): {' '.join(failed)}")
    lines.append(f"manifest: {manifest_path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    if not args.voxel_size > 0:
        parser.error("--voxel-size must be positive")
    if not args.raw.is_dir():
        parser.error(f"{args.raw}: not a folder")
    labels = args.labels or args.raw / LABEL_TABLE
    try:
        lookups = read_label_table(labels)
        sources = find_scenes(args.raw, args.splits_dir or args.raw)
    except InputError as e:
        parser.error(str(e))

    start = time.perf_counter()
    settings = Settings(args.voxel_size, args.align, labels)
    run = partial(run_one, out=args.out, settings=settings, lookups=lookups, force=args.force)
    try:
        with warnings.catch_warnings():
            # Preparation voxelizes on the CPU: MinkowskiEngine's CPU-only build warning is noise.
            warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")
            outcomes = run_all(sources, run, min(args.jobs, max(len(sources), 1)))
    except KeyboardInterrupt:
        print(
            "ceco3d-prep: interrupted; finished scenes are kept, run again to go on",
            file=sys.stderr,
        )
        return 130
    prepared = [o for o in outcomes if o.marker is not None]
    manifest_path = args.out / "manifest.json"
    save_json(manifest_path, build_manifest(prepared, args.voxel_size, args.align))
    print(summarize(outcomes, time.perf_counter() - start, manifest_path))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
