"""Checkpoints from others: loading one never runs code it carries, a damaged one is caught by
the checksum of its tensors, and a trusted older checkpoint converts into one that loads."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
import pytest
import torch

from ceco3d.cli.convert_checkpoint import main as convert_main
from ceco3d.engine.checkpoint import CONVERT_COMMAND, load_checkpoint
from ceco3d.engine.inference import load_for_inference
from ceco3d.errors import InputError
from tests.fixtures import synthetic_scannet, tiny_train_config, train_tiny  # noqa: F401
from tests.test_cli import run_script


class TouchOnLoad:
    """Unpickling this creates ``path``: a stand-in for ``os.system`` in a malicious file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture(scope="module")
def checkpoint(synthetic_scannet, tmp_path_factory):  # noqa: F811
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny(synthetic_scannet.prepared, runs, "one", "loss=ce",
                      "trainer.max_steps=1", "trainer.ckpt_every=1")  # fmt: skip


def test_own_checkpoints_hold_tensors_and_plain_data_only(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)  # raises on any other object
    assert {"python", "numpy", "torch"} <= ckpt["rng_states"].keys()
    assert isinstance(ckpt["checksum"], str)


def test_a_checkpoint_carrying_code_is_refused_and_the_code_does_not_run(checkpoint, tmp_path):
    marker = tmp_path / "code_ran"
    ckpt = torch.load(checkpoint, weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**ckpt, "extra": TouchOnLoad(marker)}, evil)
    with pytest.raises(InputError, match=r"holds Python objects.*could run code") as error:
        load_checkpoint(evil)
    assert CONVERT_COMMAND in str(error.value)
    assert not marker.exists()

    done = run_script("ceco3d-eval", f"ckpt={evil}", f"out={tmp_path / 'eval'}", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "could run code" in said and "Traceback" not in said
    assert not marker.exists()
    assert not (tmp_path / "eval" / "summary.json").exists()


def largest_entry_offset(path: pathlib.Path) -> tuple[int, int]:
    """(file offset, size) of the data of the largest stored entry of a torch zip file."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_a_flipped_byte_in_the_weights_is_caught(checkpoint, tmp_path):
    damaged = tmp_path / "damaged.pt"
    data = bytearray(checkpoint.read_bytes())
    offset, size = largest_entry_offset(checkpoint)
    data[offset + size // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match="do not match the checksum"):
        load_for_inference(damaged)


def test_a_version_1_checkpoint_is_refused_then_converts_when_trusted(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt.pop("checksum")
    np.random.seed(3)  # noqa: NPY002 (a version 1 file held the global state as numpy saves it)
    old = {**ckpt, "checkpoint_version": 1,
           "rng_states": {**ckpt["rng_states"], "numpy": np.random.get_state()}}  # noqa: NPY002 # fmt: skip
    v1, new = tmp_path / "v1.pt", tmp_path / "new.pt"
    torch.save(old, v1)
    with pytest.raises(InputError, match=f"convert it once with {CONVERT_COMMAND} {v1} NEW.pt"):
        load_checkpoint(v1)

    assert convert_main([str(v1), str(new)]) == 0
    converted = load_checkpoint(new)
    assert converted["checkpoint_version"] == 2
    assert converted["rng_states"]["numpy"][1].tolist() == old["rng_states"]["numpy"][1].tolist()
    for key, value in ckpt["model"].items():
        assert torch.equal(converted["model"][key], value)
    before = new.read_bytes()
    assert convert_main([str(v1), str(new)]) == 2  # never replaces a file
    assert new.read_bytes() == before
