"""Throughput of ``ceco3d-prep`` (raw meshes -> arrays + manifest) with 1 and 2 worker processes."""

from __future__ import annotations

from pathlib import Path

from ceco3d.data import layout
from ceco3d.io import read_json
from ceco3d.tools.bench.measure import interleaved, summary_ms
from ceco3d.tools.bench.workspace import run_cli
from data_prep import prep

PREP_JOBS = (1, 2)


def prepared_root(out: Path, jobs: int = 1) -> Path:
    """Where ``bench_prep`` leaves the data it prepared with ``jobs`` workers."""
    return out / f"j{jobs}"


def prepare(raw: Path, out: Path, voxel_size: float) -> None:
    """Prepare ``raw`` where ``bench_prep`` would leave it, untimed."""
    run_cli(prep.main, [str(raw), str(prepared_root(out)), "--voxel-size", str(voxel_size)])


def bench_prep(raw: Path, out: Path, voxel_size: float, repeats: int, warmup: int) -> dict:
    """Seconds of ``ceco3d-prep RAW OUT -j N --force`` (in this process, worker start-up
    included), alternating ``-j 1`` and ``-j 2``."""

    def run(jobs: int):
        dest = prepared_root(out, jobs)
        argv = [str(raw), str(dest), "-j", str(jobs), "--voxel-size", str(voxel_size), "--force"]
        return lambda: run_cli(prep.main, argv)

    times = interleaved({jobs: run(jobs) for jobs in PREP_JOBS}, repeats, warmup)
    manifest = read_json(prepared_root(out) / layout.MANIFEST)
    vertices = sum(manifest["num_vertices"].values())
    scenes = sum(len(names) for names in manifest["splits"].values())
    results = {"scenes": scenes, "vertices": vertices, "voxel_size": voxel_size}
    for jobs in PREP_JOBS:
        run_time = summary_ms(times[jobs])
        run_time["vertices_per_s"] = vertices * 1000 / run_time["median_ms"]
        run_time["scenes_per_s"] = scenes * 1000 / run_time["median_ms"]
        results[f"jobs_{jobs}"] = run_time
    results["speedup_j2"] = results["jobs_1"]["median_ms"] / results["jobs_2"]["median_ms"]
    return results
