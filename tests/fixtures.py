"""A tiny synthetic ScanNet, prepared once per test session, and configs that train on it fast.

Import the fixture into a test module (``from tests.fixtures import synthetic_scannet``); every
module that does so shares the same folders (they are built once under pytest's base temp).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ceco3d.paths import CONF_DIR
from data_prep import prep
from data_prep.synth import generate

BIN = Path(sys.executable).parent  # the venv's console scripts (ceco3d-train, ...)
VOXEL_SIZE = 0.05  # prepared at this size; training and evaluation take it from the manifest

# A few CPU steps of the smallest network on a few thousand voxels; one thread so that runs repeat
# bit for bit.
TINY_TRAINING = (
    "model=minkunet14a",
    "data.batch_size=2",
    "data.max_voxels=3000",
    "data.num_workers=0",
    "trainer.device=cpu",
    "trainer.threads=1",
    "trainer.log_every=1",
    "trainer.val_every=0",
)


@dataclass(frozen=True)
class SyntheticScanNet:
    raw: Path  # ceco3d-synth output (scans/, scans_test/, split lists, label table)
    prepared: Path  # ceco3d-prep output (train/ val/ test/ + manifest.json)


def make_synthetic_scannet(folder: Path, seed: int = 0) -> SyntheticScanNet:
    """6 labelled scenes (5 train, 1 val) and 1 test scene of a few thousand vertices each."""
    data = SyntheticScanNet(folder / "raw", folder / "prepared")
    args = ["--scenes", "6", "--test-scenes", "1", "--seed", str(seed), "--vertex-spacing", "0.15"]
    assert generate.main([str(data.raw), *args]) == 0
    prep_args = [str(data.raw), str(data.prepared), "--voxel-size", str(VOXEL_SIZE), "-j", "1"]
    assert prep.main(prep_args) == 0
    return data


@pytest.fixture(scope="session")
def synthetic_scannet(tmp_path_factory: pytest.TempPathFactory) -> SyntheticScanNet:
    folder = tmp_path_factory.getbasetemp() / "synthetic_scannet"
    if (folder / "prepared" / "manifest.json").is_file():  # built by another module's import
        return SyntheticScanNet(folder / "raw", folder / "prepared")
    return make_synthetic_scannet(folder)


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config a command composes, with Hydra's own part registered as a running app has it
    (the paper experiments name their run after ``${hydra:runtime.choices.loss}``)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train_overrides(prepared: Path, runs_root: Path, run_name: str, *overrides: str) -> list[str]:
    """``ceco3d-train`` overrides for a tiny run on ``prepared`` in ``runs_root/run_name``."""
    base = [f"data.root={prepared}", f"runs_root={runs_root}", f"run_name={run_name}"]
    return [*base, *TINY_TRAINING, *overrides]


def tiny_train_config(
    prepared: Path, runs_root: Path, run_name: str, *overrides: str
) -> DictConfig:
    """The config ``ceco3d-train`` would run with ``train_overrides(...)``."""
    return compose_config("train", train_overrides(prepared, runs_root, run_name, *overrides))


def train_tiny(prepared: Path, runs_root: Path, run_name: str, *overrides: str) -> Path:
    """Train ``tiny_train_config(...)`` in this process; the run's ``last.pt``."""
    from ceco3d.engine.train import train

    train(tiny_train_config(prepared, runs_root, run_name, *overrides), runs_root / run_name)
    return runs_root / run_name / "checkpoints" / "last.pt"
