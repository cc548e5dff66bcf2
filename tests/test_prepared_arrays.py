"""A prepared array replaced by one of the same byte size but another shape or dtype is caught
wherever prepared scenes are read or skipped: the dataset refuses it (when built, and when it
loads the file later), and ``ceco3d-prep`` redoes the scene instead of skipping it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ceco3d.data.dataset import ScanNetDataset
from ceco3d.errors import InputError
from ceco3d.io import read_json
from data_prep import prep
from tests.fixtures import synthetic_scannet  # noqa: F401 (a fixture)


def same_size_other_layout(path, reshape: bool) -> None:
    """Replace the int32 array at ``path`` by its values as float32, or by its bytes read as an
    int16 array of twice the length: the file keeps its byte size."""
    array = np.load(path)
    size = path.stat().st_size
    np.save(path, array.view(np.int16) if reshape else array.astype(np.float32))
    assert path.stat().st_size == size


@pytest.fixture
def prepared(synthetic_scannet, tmp_path):  # noqa: F811
    copy = tmp_path / "prepared"
    shutil.copytree(synthetic_scannet.prepared, copy)
    return copy


def val_scene(prepared):
    """The folder of the (only) val scene."""
    (scene,) = read_json(prepared / "manifest.json")["splits"]["val"]
    return prepared / "val" / scene


@pytest.mark.parametrize("reshape", [False, True], ids=["dtype", "shape"])
def test_the_dataset_refuses_a_replaced_array(prepared, reshape):
    same_size_other_layout(val_scene(prepared) / "voxel_inverse.npy", reshape)
    with pytest.raises(InputError, match=r"voxel_inverse\.npy holds a .* meta\.json says <i4"):
        ScanNetDataset(prepared, "val", "scannet20")


def test_an_array_replaced_after_the_check_is_refused_when_loaded(prepared):
    dataset = ScanNetDataset(prepared, "val", "scannet20")
    same_size_other_layout(val_scene(prepared) / "voxel_inverse.npy", reshape=True)
    with pytest.raises(InputError, match=r"voxel_inverse\.npy holds a <i2 array"):
        dataset[0]


def test_prep_redoes_a_scene_whose_array_was_replaced(synthetic_scannet, prepared, capsys):  # noqa: F811
    path = val_scene(prepared) / "voxel_inverse.npy"
    original = path.read_bytes()
    same_size_other_layout(path, reshape=False)
    voxel_size = ScanNetDataset(prepared, "train", "scannet20").voxel_size
    argv = [str(synthetic_scannet.raw), str(prepared), "--voxel-size", str(voxel_size)]
    assert prep.main(argv) == 0
    assert ": 1 prepared, 6 skipped" in capsys.readouterr().out
    assert path.read_bytes() == original
