"""Throughput and peak memory of ``ceco3d-predict`` on large point clouds, each size in a fresh
process.

    python -m ceco3d.tools.bench.predict CKPT SCAN OUT [--device cuda]

runs ``ceco3d-predict``'s stages on one scan (read, predict, write every output) and prints one
JSON line: each stage's seconds, points per second over all of them, and the peak resident
memory (``VmHWM``) after loading the model and after the scan.

The clouds are sampled uniformly, with colours, from one synthetic room: more points then means
denser points on the same surfaces, as a finer scanner would give, so the voxel count stays
about the same and what grows is the per-point work (reading, voxelizing, mapping back, writing).
The model has random weights: its cost does not depend on what it has learnt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ceco3d.device import quiet_minkowski_warnings
from ceco3d.tools.bench.measure import child_result, peak_rss_mib
from ceco3d.tools.bench.workspace import Preset, compose_config

ROOM_SEED = 0


def write_checkpoint(path: Path, preset: Preset) -> None:
    """A randomly initialised ``preset.models[0]`` for ScanNet200 colour input at the preset's voxel
    size, saved as ``ceco3d-train`` saves checkpoints."""
    from ceco3d.engine.build import build_model
    from ceco3d.engine.checkpoint import save_checkpoint

    cfg = compose_config(["data.root=-", f"model={preset.models[0]}",
                          f"data.voxel_size={preset.voxel_size}"])  # fmt: skip
    save_checkpoint(path, model=build_model(cfg).state_dict(),
                    config=OmegaConf.to_container(cfg, resolve=True))  # fmt: skip


def write_clouds(folder: Path, sizes: tuple[int, ...], spacing: float) -> list[Path]:
    """One binary PLY point cloud (xyz, colour) per size, sampled from one synthetic room."""
    from ceco3d.data.scan import open3d
    from data_prep.synth.classes import select_classes
    from data_prep.synth.scene import generate_scene

    o3d = open3d()
    room = generate_scene(np.random.default_rng(ROOM_SEED), select_classes(40), (), spacing)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(room.xyz.astype(np.float64)),
                                     o3d.utility.Vector3iVector(room.faces))  # fmt: skip
    mesh.vertex_colors = o3d.utility.Vector3dVector(room.rgb / 255.0)
    paths = []
    for size in sizes:
        cloud = mesh.sample_points_uniformly(size)
        path = folder / f"cloud_{size}.ply"
        o3d.io.write_point_cloud(str(path), cloud)
        paths.append(path)
    return paths


def measure_predict(ckpt: Path, scan_path: Path, out: Path, device: str = "cpu") -> dict:
    """Seconds of each stage of ``ceco3d-predict`` on one scan with the model on ``device``, and
    peak memory (MiB; on a GPU also the GPU's peak allocation)."""
    from ceco3d.data.scan import read_scan
    from ceco3d.engine.segment import load_predictor
    from ceco3d.scan_export import write_scan_outputs

    cfg = compose_predict_config(ckpt, scan_path, out)
    predictor = load_predictor(cfg, device)
    result = {"model_mib": peak_rss_mib()}
    seconds = {}
    start = time.perf_counter()
    scan = read_scan(scan_path)
    seconds["read"] = time.perf_counter() - start
    start = time.perf_counter()
    classes, voxel = predictor(scan)
    seconds["predict"] = time.perf_counter() - start
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    write_scan_outputs(out, scan, classes, voxel, predictor.label_set, predictor.voxel_size,
                       {"units": "m", "up": "z"})  # fmt: skip
    seconds["write"] = time.perf_counter() - start
    total = sum(seconds.values())
    result.update(points=len(scan.kept), voxels=int(voxel.max()) + 1, seconds=seconds,
                  total_s=total, points_per_s=len(scan.kept) / total,
                  peak_mib=peak_rss_mib())  # fmt: skip
    if device == "cuda":
        import torch

        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def compose_predict_config(ckpt: Path, scan: Path, out: Path):
    from hydra import compose, initialize_config_dir

    from ceco3d.paths import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("predict", overrides=[f"ckpt={ckpt}", f"input={scan}", f"out={out}"])


def bench_predict(work: Path, preset: Preset, device: str = "cpu") -> dict:
    """One fresh process per cloud size of the preset, in increasing size, the model on
    ``device`` ("cpu" or "cuda")."""
    ckpt = work / "predict_model.pt"
    write_checkpoint(ckpt, preset)
    clouds = write_clouds(work, preset.predict_points, preset.vertex_spacing)
    results = {"model": preset.models[0], "voxel_size": preset.voxel_size, "device": device,
               "sizes": []}  # fmt: skip
    for cloud in clouds:
        cmd = [sys.executable, "-m", "ceco3d.tools.bench.predict", str(ckpt), str(cloud),
               str(work / f"{cloud.stem}_out"), "--device", device]  # fmt: skip
        results["sizes"].append(child_result(cmd))
        cloud.unlink()  # a 5M-point cloud is 130 MB
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ceco3d.tools.bench.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("scan", type=Path)
    parser.add_argument("out", type=Path, help="folder for the outputs")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    quiet_minkowski_warnings()
    print(json.dumps(measure_predict(args.ckpt, args.scan, args.out, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
