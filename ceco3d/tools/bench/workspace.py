"""What every measurement runs on: the preset sizes, synthetic ScanNet scenes, configs, batches."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ceco3d.data.collate import collate
from ceco3d.device import CHILD_WARNINGS
from ceco3d.engine.build import build_dataset
from ceco3d.paths import CONF_DIR
from data_prep.synth import generate


@dataclass(frozen=True)
class Preset:
    models: tuple[str, ...]  # the training-step and memory benchmarks run each; the first is
    # also the model of the inference benchmark
    scenes: int  # synthetic train + val scenes; all of them go through the prep benchmark
    # metres between synthetic mesh vertices; 0.035 gives 140k-220k vertices per scene (real
    # ScanNet scenes have about 150k), 0.025 would give 270k-420k
    vertex_spacing: float
    voxel_size: float
    train_voxels: int  # the training batch: augmented scenes, each cropped to this many voxels
    batch_scenes: int  # train scenes in the training batch (the memory benchmark's too)
    memory_voxels: tuple[int, ...]  # crops of the memory benchmark
    memory_losses: tuple[str, ...]  # one fresh process per crop and loss
    loader_batches: int  # batches per loader round
    predict_points: tuple[int, ...]  # point clouds of the ceco3d-predict benchmark
    repeats: int
    warmup: int
    # CPU speed of whole processes (section 8): (voxels, timed steps per process) of the first
    # model, the demo recipe's timed steps (0: not measured), fresh processes per environment
    cpu_cases: tuple[tuple[int, int], ...] = ()
    cpu_demo_steps: int = 0
    cpu_rounds: int = 0
    long_tail_voxels: int = 20_000  # the crop of the long-tail methods' cost (--only long_tail)
    long_tail_model: str = ""  # their model (default: the first of ``models``)

    @property
    def long_tail_backbone(self) -> str:
        """The model the long-tail methods are timed on."""
        return self.long_tail_model or self.models[0]


PRESETS = {
    "full": Preset(
        models=("minkunet34c", "res16unet34c"), scenes=4, vertex_spacing=0.035, voxel_size=0.02,
        train_voxels=100_000, batch_scenes=1, memory_voxels=(25_000, 50_000, 100_000),
        memory_losses=("ce", "ceco"), loader_batches=4, predict_points=(1_000_000, 5_000_000),
        repeats=7, warmup=1, cpu_cases=((25_000, 4), (100_000, 2)), cpu_demo_steps=8,
        cpu_rounds=3,
    ),
    # A ScanNet-size GPU batch, 4 scenes x ~100k voxels, and the long-tail methods on the paper's
    # Res16UNet34C at that size; gpu_check.sh gives it (--only gpu) 300 seconds. ceco3d-predict
    # (a whole run) on a ScanNet-size mesh (a _vh_clean_2.ply has ~150k vertices) and 1M points.
    "gpu": Preset(
        models=("minkunet34c", "res16unet34c"), scenes=5, vertex_spacing=0.035, voxel_size=0.02,
        train_voxels=100_000, batch_scenes=4, memory_voxels=(50_000, 100_000),
        memory_losses=("ce", "ceco"), loader_batches=4, predict_points=(150_000, 1_000_000),
        repeats=3, warmup=1, long_tail_voxels=100_000, long_tail_model="res16unet34c",
    ),
    "quick": Preset(
        models=("minkunet14a",), scenes=2, vertex_spacing=0.08, voxel_size=0.02,
        train_voxels=8_000, batch_scenes=1, memory_voxels=(2_000, 4_000, 8_000),
        memory_losses=("ce",), loader_batches=2, predict_points=(20_000,), repeats=2, warmup=1,
        cpu_cases=((8_000, 1),), cpu_rounds=1, long_tail_voxels=4_000,
    ),
}  # fmt: skip
SYNTH_CLASSES = 40


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow a CLI's console output (its progress bars, its summary line), and the CPU build's
    MinkowskiEngine notice in the processes it spawns."""
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = CHILD_WARNINGS
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if previous is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = previous


def run_cli(main: Callable[[list[str]], int], argv: list[str]) -> None:
    with quiet():
        status = main(argv)
    if status != 0:
        raise RuntimeError(f"{main.__module__} {' '.join(argv)} exited with {status}")


def synthesize(raw: Path, preset: Preset, seed: int = 0) -> None:
    """A raw ScanNet release of ``preset.scenes`` labelled scenes (no test scenes)."""
    run_cli(generate.main, [
        str(raw), "--scenes", str(preset.scenes), "--test-scenes", "0", "--seed", str(seed),
        "--classes", str(SYNTH_CLASSES), "--vertex-spacing", str(preset.vertex_spacing),
    ])  # fmt: skip


def config_overrides(
    root: Path, preset: Preset, model: str, loss: str = "ce", max_voxels: int | None = None
) -> list[str]:
    """Overrides of the training config (ScanNet200 by default): ``model``, one scene per batch,
    the prepared data at ``root``."""
    return [
        f"data.root={root}",
        f"data.voxel_size={preset.voxel_size}",
        f"data.max_voxels={max_voxels or preset.train_voxels}",
        "data.batch_size=1",
        f"model={model}",
        f"loss={loss}",
    ]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def training_batch(cfg: DictConfig, scenes: int = 1) -> dict:
    """The first ``scenes`` training scenes as training sees them: augmented, voxelized,
    cropped, collated into one batch."""
    dataset = build_dataset(cfg, "train", training=True)
    if len(dataset) < scenes:
        raise ValueError(f"a batch of {scenes} scenes, but {len(dataset)} train scene(s)")
    return collate([dataset[i] for i in range(scenes)])


def save_batch(batch: dict, path: Path) -> None:
    torch.save({k: batch[k] for k in ("coords", "feats", "labels")}, path)
