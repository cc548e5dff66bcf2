"""``ceco3d-prep``: raw ScanNet v2 -> per-scene arrays + ``manifest.json`` (Pointcept's layout).

    ceco3d-prep RAW OUT [--labels TSV] [--splits-dir DIR] [--voxel-size 0.02] [--align] [-j N]

RAW holds ``scans/`` and ``scans_test/`` as the ScanNet release lays them out; the label table
and the split lists default to files inside RAW. A scene is skipped when its outputs are complete
and were made with the same settings and label table from inputs with the same content
(``--force`` redoes them). A scene with bad or missing input fails alone, with a message naming
the file; the exit status is then 1, and the scene keeps its earlier arrays where they were made
with the same settings. The manifest is assembled from the scenes' own meta.json files; a run with
failures never replaces a manifest that lists scenes this run could not prepare.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path

from tqdm import tqdm

from ceco3d.claims import claimed
from ceco3d.data import raw_layout
from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.data.layout import MANIFEST, SPLITS, read_scene_meta, remove_leftovers, scene_problem
from ceco3d.errors import (
    InputError,
    report_errors,
    signal_name,
    signals_raise_interrupted,
)
from ceco3d.io import check_writable, save_json
from data_prep.fingerprint import sha256_of
from data_prep.labels import read_label_table
from data_prep.manifest import build_manifest, scenes_dropped
from data_prep.scene import SceneSource, Settings, prepare_scene, up_to_date


@dataclass(frozen=True)
class Outcome:
    """What became of one scene. ``meta`` is its meta.json: new, up to date, or (for a failed
    scene) the one of its earlier arrays where those were made with the same settings."""

    source: SceneSource
    status: str  # "done", "skipped" or "failed"
    meta: dict | None = None
    error: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceco3d-prep", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    scans = f"{raw_layout.LABELLED_SCANS}/ and {raw_layout.TEST_SCANS}/"
    parser.add_argument("raw", type=Path, help=f"ScanNet folder with {scans}")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--labels", type=Path, help=f"label table (default: RAW/{raw_layout.LABEL_TABLE})"
    )
    parser.add_argument(
        "--splits-dir",
        type=Path,
        help=f"folder with {raw_layout.split_list('', '{train,val,test}')} (default: RAW)",
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
        path = raw_layout.split_list(splits_dir, split)
        try:
            names = path.read_text(encoding="utf-8-sig").split()  # -sig: a BOM is no scene name
        except FileNotFoundError:
            raise InputError(f"{path}: split list not found (pass --splits-dir)") from None
        for name in names:
            if Path(name).name != name or name.startswith("."):
                raise InputError(f"{path}: {name!r} is not a scene name")
            if name in seen:
                raise InputError(f"{path}: {name} is already listed in the {seen[name]} split")
            seen[name] = split
            folder = raw_layout.scene_folder(raw, split, name)
            sources.append(SceneSource(name, split, folder, labelled=split != "test"))
    return sources


def run_one(
    source: SceneSource, out: Path, settings: Settings, lookups: dict, force: bool
) -> Outcome:
    """Prepare one scene unless it is up to date; bad input becomes a failed outcome."""
    folder = out / source.split / source.scene_id
    try:
        meta = None if force else up_to_date(source, folder, settings)
        if meta is not None:
            return Outcome(source, "skipped", meta)
        return Outcome(source, "done", prepare_scene(source, folder, settings, lookups))
    except InputError as e:
        error = str(e)
    except OSError as e:  # an unwritable or full output folder: the file and the reason suffice
        error = f"{e.filename or folder}: {e.strerror or e}"
    except Exception:
        error = "unexpected error\n" + traceback.format_exc()
    kept = read_scene_meta(folder) if scene_problem(folder, settings.record()) is None else None
    return Outcome(source, "failed", kept, error)


def init_worker(main: Connection) -> None:
    """Ctrl-C reaches the whole process group, and only the main process acts on it (it stops
    the workers). A worker also ends as soon as the main process is gone, however it went (a
    ``kill -9`` runs no cleanup): its end of the pipe ``main`` then closes. The workers' end
    brings down the fork server and the resource tracker, which live as long as a worker does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_main, args=(main,), daemon=True).start()


def _exit_with_main(main: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        main.recv()  # nothing is ever sent: this returns (raises) when the main process is gone
    os._exit(1)


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
        # Not plain fork: forking a process whose thread pools (numpy's BLAS) already ran can
        # deadlock. A fork server that has imported the scene pipeline (and run nothing) starts
        # workers without importing it again.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["data_prep.worker_preload"])
        # The main process holds the only writing end; its end, however it comes, ends the
        # workers (see init_worker).
        from_main, to_workers = context.Pipe(duplex=False)
        pool = ProcessPoolExecutor(workers, context, initializer=init_worker, initargs=(from_main,))
        try:
            for future in as_completed([pool.submit(run, source) for source in sources]):
                collect(future.result())
            pool.shutdown()
        except BaseException:
            # Interrupted (or broken): stop the workers now instead of letting them finish
            # their scenes; a half-written scene stays in its staging folder, the earlier one
            # in place.
            pool.shutdown(wait=False, cancel_futures=True)
            for process in multiprocessing.active_children():
                process.terminate()
                process.join()
            raise
        finally:
            to_workers.close()
    return outcomes


def summarize(
    outcomes: list[Outcome], seconds: float, manifest_path: Path, dropped: list[str]
) -> str:
    count = Counter(o.status for o in outcomes)
    seconds = max(seconds, 1e-9)
    done = [o for o in outcomes if o.status == "done"]
    vertices = sum(o.meta["num_vertices"] for o in done)
    lines = [
        f"ceco3d-prep: {len(outcomes)} scenes: {count['done']} prepared, "
        f"{count['skipped']} skipped (up to date), {count['failed']} failed; "
        f"{seconds:.1f} s, {vertices} vertices prepared, "
        f"{vertices / seconds:,.0f} vertices/s, {len(done) / seconds:.2f} scenes/s"
    ]
    prepared = [o for o in outcomes if o.meta is not None]
    unknown_groups: Counter = Counter()
    unknown_scenes: Counter = Counter()
    for outcome in prepared:
        unknown_groups.update(outcome.meta["unknown_labels"])
        unknown_scenes.update(outcome.meta["unknown_labels"].keys())
    if unknown_groups:
        listed = ", ".join(
            f"{raw!r} ({n} groups in {unknown_scenes[raw]} scenes)"
            for raw, n in sorted(unknown_groups.items())
        )
        lines.append(
            f"warning: {len(unknown_groups)} aggregation labels are not a raw_category of the "
            f"label table; their vertices are ignored: {listed}"
        )
    empty = [o.source.scene_id for o in prepared if o.meta["num_vertices"] == 0]
    if empty:
        lines.append(f"warning: {len(empty)} scenes have no vertices and are left out of the "
                     f"manifest: {' '.join(sorted(empty))}")  # fmt: skip
    for name in LABEL_SETS:
        unlabelled = sorted(
            o.source.scene_id
            for o in prepared
            if o.source.labelled
            and o.meta["num_vertices"]
            and not sum(o.meta["class_counts"][name]["voxel_counts"])
        )
        if unlabelled:
            lines.append(f"warning: {len(unlabelled)} scenes have no labelled vertex in {name}; "
                         f"training on {name} skips them: {' '.join(unlabelled)}")  # fmt: skip
    unaligned = [o for o in prepared if o.meta["align"] and not o.meta["aligned"]]
    if unaligned:
        lines.append(
            f"note: {len(unaligned)} scenes have no axisAlignment and stay unaligned: "
            + " ".join(sorted(o.source.scene_id for o in unaligned))
        )
    failed = sorted(o.source.scene_id for o in outcomes if o.status == "failed")
    if failed:
        lines.append(f"failed scenes (messages above): {' '.join(failed)}")
    kept = sorted(o.source.scene_id for o in outcomes if o.status == "failed" and o.meta)
    if kept:
        lines.append(f"{len(kept)} failed scenes keep their earlier arrays (same settings) and "
                     f"stay in the manifest: {' '.join(kept)}")  # fmt: skip
    if dropped:
        lines.append(
            f"manifest: {manifest_path} left as it was: it lists {len(dropped)} scenes that this "
            f"run could not prepare (first: {dropped[0]}); fix the failures above and run again"
        )
    else:
        lines.append(f"manifest: {manifest_path}")
    return "\n".join(lines)


def prepare(args: argparse.Namespace, labels: Path, lookups: dict, sources: list) -> int:
    """Prepare every scene, then the manifest; the exit status (1 when a scene failed)."""
    check_writable(args.out, "OUT")
    with claimed(args.out, "prepared-data folder", "prepare into another OUT"):
        # Under the claim no other command writes here, so what atomic writes left is stale.
        left = remove_leftovers(args.out)
        if left:
            names = " ".join(str(p.relative_to(args.out)) for p in left)
            print(f"ceco3d-prep: removed {len(left)} leftovers of an interrupted run: {names}",
                  file=sys.stderr)  # fmt: skip
        start = time.perf_counter()
        settings = Settings(args.voxel_size, args.align, sha256_of(labels))
        run = partial(run_one, out=args.out, settings=settings, lookups=lookups, force=args.force)

        def stopped(signum: int) -> str:
            return f"{signal_name(signum)}: stopped; finished scenes are kept, run again to go on"

        with signals_raise_interrupted(stopped):
            outcomes = run_all(sources, run, min(args.jobs, max(len(sources), 1)))
        manifest_path = args.out / MANIFEST
        manifest = build_manifest([o.meta for o in outcomes if o.meta], settings.record())
        failed = any(o.status == "failed" for o in outcomes)
        dropped = scenes_dropped(manifest_path, manifest) if failed else []
        if not dropped:
            save_json(manifest_path, manifest)
        print(summarize(outcomes, time.perf_counter() - start, manifest_path, dropped))
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    if not args.voxel_size > 0:
        parser.error("--voxel-size must be positive")
    if not args.raw.is_dir():
        parser.error(f"{args.raw}: not a folder")
    labels = args.labels or args.raw / raw_layout.LABEL_TABLE
    try:
        lookups = read_label_table(labels)
        sources = find_scenes(args.raw, args.splits_dir or args.raw)
    except InputError as e:
        parser.error(str(e))
    return report_errors("ceco3d-prep", lambda: prepare(args, labels, lookups, sources))


if __name__ == "__main__":
    sys.exit(main())
