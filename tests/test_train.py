"""The training loop on a tiny synthetic ScanNet: each loss, self-describing checkpoints, exact
resume, divergence, SIGTERM, and two DDP processes against one process."""

from __future__ import annotations

import itertools
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ceco3d.analysis.tb_logs import read_scalars
from ceco3d.engine.build import build_dataset
from ceco3d.engine.checkpoint import LOSS_STATE, TRAIN_VOXEL_COUNTS, load_checkpoint
from ceco3d.engine.inference import load_for_inference
from ceco3d.engine.train import train
from ceco3d.errors import NonFiniteLossError
from ceco3d.io import read_json, save_json
from ceco3d.losses import CeCoLoss
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    BIN,
    VOXEL_SIZE,
    synthetic_scannet,
    tiny_train_config,
    train_overrides,
)

CHECKPOINT_KEYS = {
    "model", "optimizer", "scheduler", "step", "rng_states", "config", "git_revision",
    "package_versions",
}  # fmt: skip


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """``trainer.threads=1`` sets torch's thread count for the whole test process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(cfg) -> dict:
    return train(cfg, Path(cfg.runs_root) / cfg.run_name)


def checkpoint_of(runs_root: Path, run_name: str, name: str = "last.pt") -> dict:
    return load_checkpoint(runs_root / run_name / "checkpoints" / name)


def losses_logged(runs_root: Path, run_name: str, tag: str = "train/loss") -> list[tuple]:
    return read_scalars(runs_root / run_name / "tb", [tag])[tag]


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, first: {different[:3]}"


def patch_loss(monkeypatch, on_call: int, action) -> None:
    """Let ``CeCoLoss`` run ``action(parts)`` on its ``on_call``-th call (one call per step)."""
    original, calls = CeCoLoss.forward, itertools.count(1)

    def forward(self, outputs, labels):
        parts = original(self, outputs, labels)
        return action(parts) if next(calls) == on_call else parts

    monkeypatch.setattr(CeCoLoss, "forward", forward)


@pytest.mark.parametrize("loss", ["ce", "ce_weighted", "ceco"])
def test_a_few_steps_with_each_loss(loss, synthetic_scannet, tmp_path):  # noqa: F811
    cfg = tiny_train_config(
        synthetic_scannet.prepared, tmp_path, loss, f"loss={loss}", "trainer.max_steps=2",
        "trainer.ckpt_every=1", "trainer.val_every=2", "trainer.val_max_scenes=1",
    )  # fmt: skip
    assert cfg.data.voxel_size is None  # the default: the voxel size of the prepared data
    results = run(cfg)
    run_dir = tmp_path / loss

    tags = ["train/loss", "train/ce", "train/center", "train/lr"]
    logged = read_scalars(run_dir / "tb", tags)
    assert [step for step, _ in logged["train/loss"]] == [1, 2]
    assert all(math.isfinite(value) for tag in tags for _, value in logged[tag])
    assert bool(logged["train/center"]) == (loss == "ceco")
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    ckpt = checkpoint_of(tmp_path, loss)
    assert CHECKPOINT_KEYS <= ckpt.keys()
    assert ckpt["step"] == 2
    assert all_finite(ckpt["model"])
    assert ckpt["config"]["loss"]["_target_"] == cfg.loss._target_
    assert ckpt["config"]["data"]["root"] == str(synthetic_scannet.prepared)  # resolved
    assert ckpt["config"]["data"]["voxel_size"] == VOXEL_SIZE  # the prepared data's, recorded
    assert ckpt["config"]["run_name"] == loss
    assert ckpt["scheduler"]["last_epoch"] == 2
    assert len(ckpt["optimizer"]["state"]) > 0  # momentum buffers
    assert {"python", "numpy", "torch"} <= ckpt["rng_states"].keys()
    assert ckpt["package_versions"]["torch"] == torch.__version__
    assert isinstance(ckpt["git_revision"], str) and ckpt["git_revision"]
    assert any(k.startswith("center_head.") for k in ckpt["model"]) == (loss == "ceco")
    counts = build_dataset(cfg, "train", training=True).train_class_counts("voxel_counts")
    assert ckpt[TRAIN_VOXEL_COUNTS] == counts.tolist()  # the post-hoc adjustment's prior
    assert list(ckpt[LOSS_STATE]) == {"ce_weighted": ["weight"]}.get(loss, [])

    assert results["point"]["mIoU"] is not None  # validated at step 2
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "val_summary.json").is_file()
    model, _ = load_for_inference(run_dir / "checkpoints" / "last.pt")
    assert model.center_head is None and not model.training


def optimizer_buffers(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's optimiser state, keyed ``parameter/buffer``."""
    state = checkpoint["optimizer"]["state"]
    return {f"{k}/{name}": v for k, s in state.items() for name, v in s.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("voxel", "sampling"),
    [
        ("ce", ()),
        ("seesaw", ()),  # class counts kept in the loss
        ("ce", ("sampler=repeat_factor", "sampler.repeat_threshold=0.5", "paste=tail")),
        ("ce", ("optim=adamw",)),  # the fine-grained benchmark's optimiser: two moments, a step
    ],
    ids=["uniform", "seesaw", "repeat_factor_and_paste", "adamw"],
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(
    voxel,
    sampling,
    synthetic_scannet,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    # 5 train scenes in batches of 2 make 2 steps per epoch, so step 3 is mid-epoch (with repeat
    # factors, epochs of varying length); the default augmentation, the crop to max_voxels, the
    # pasted instances and the center head's dropout all draw random numbers.
    n = 3
    settings = ("loss=ceco", f"loss@loss.voxel={voxel}", f"trainer.max_steps={2 * n}",
                f"trainer.ckpt_every={n}", *sampling)  # fmt: skip
    run(tiny_train_config(synthetic_scannet.prepared, tmp_path, "uninterrupted", *settings))

    class Crash(Exception):
        pass

    def crash(parts):
        raise Crash

    with monkeypatch.context() as patched:
        patch_loss(patched, n + 1, crash)  # dies in step n + 1, after the step-n checkpoint
        with pytest.raises(Crash):
            run(tiny_train_config(synthetic_scannet.prepared, tmp_path, "resumed", *settings))
    assert checkpoint_of(tmp_path, "resumed")["step"] == n
    run(
        tiny_train_config(
            synthetic_scannet.prepared, tmp_path, "resumed", *settings, "trainer.resume=auto"
        )
    )

    expected, resumed = checkpoint_of(tmp_path, "uninterrupted"), checkpoint_of(tmp_path, "resumed")
    assert resumed["step"] == expected["step"] == 2 * n
    assert_bit_identical(expected["model"], resumed["model"])
    buffers = optimizer_buffers(expected)  # SGD's momentum; AdamW's moments and step counts
    assert buffers and optimizer_buffers(resumed).keys() == buffers.keys()
    assert_bit_identical(buffers, optimizer_buffers(resumed))
    assert losses_logged(tmp_path, "resumed") == losses_logged(tmp_path, "uninterrupted")
    assert_bit_identical(expected[LOSS_STATE], resumed[LOSS_STATE])


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(
    synthetic_scannet,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    patch_loss(monkeypatch, 4, lambda parts: {**parts, "loss": parts["loss"] * math.nan})
    cfg = tiny_train_config(
        synthetic_scannet.prepared, tmp_path, "nan_loss", "loss=ceco", "trainer.max_steps=6",
        "trainer.ckpt_every=2",
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 \(loss=nan") as error:
        run(cfg)
    ckpt_dir = tmp_path / "nan_loss" / "checkpoints"
    assert str(ckpt_dir) in str(error.value)

    ckpt = load_checkpoint(ckpt_dir / "last.pt")
    assert ckpt["step"] == 2 and all_finite(ckpt["model"])
    model, _ = load_for_inference(ckpt_dir / "last.pt")
    assert all_finite(model.state_dict())
    assert [step for step, _ in losses_logged(tmp_path, "nan_loss")] == [1, 2, 3]


def test_a_diverging_learning_rate_stops_at_a_non_finite_loss(synthetic_scannet, tmp_path):  # noqa: F811
    cfg = tiny_train_config(
        synthetic_scannet.prepared, tmp_path, "diverged", "loss=ce", "optim.lr=1e30",
        "trainer.max_steps=5", "trainer.ckpt_every=1",
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step \d+") as error:
        run(cfg)
    failed_at = int(error.value.args[0].split("step ")[1].split()[0])
    assert 1 <= failed_at < 5  # the first step starts from sane weights
    ckpt = checkpoint_of(tmp_path, "diverged")
    assert ckpt["step"] == failed_at and all_finite(ckpt["model"])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_last_checkpoint_exits_128_plus_signal_and_resumes(
    signum,
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    overrides = train_overrides(
        synthetic_scannet.prepared, tmp_path, "stopped", "loss=ceco", "trainer.max_steps=1000",
        "trainer.ckpt_every=2",
    )  # fmt: skip
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    with open(tmp_path / "output.txt", "w") as output:
        process = subprocess.Popen(
            [BIN / "ceco3d-train", *overrides], cwd=tmp_path, stdout=output, stderr=output
        )
        try:
            deadline = time.monotonic() + 120
            while not last.is_file():  # written atomically: once there, it is whole
                assert process.poll() is None, (tmp_path / "output.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint after 120 s"
                time.sleep(0.05)
            process.send_signal(signum)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    output = (tmp_path / "output.txt").read_text()
    assert returncode == 128 + signum, output[-3000:]  # a stopped run is not a finished one
    assert "Traceback" not in output
    step = load_checkpoint(last)["step"]
    assert 2 <= step < 1000
    log = (tmp_path / "stopped" / "train.log").read_text()
    assert f"{signum.name}: saved {last} at step {step}; continue with trainer.resume=auto" in log

    more = (f"trainer.max_steps={step + 2}", "trainer.resume=auto")
    run(tiny_train_config(synthetic_scannet.prepared, tmp_path, "stopped", "loss=ceco", *more))
    assert load_checkpoint(last)["step"] == step + 2
    assert [s for s, _ in losses_logged(tmp_path, "stopped")][-2:] == [step + 1, step + 2]


def twin_scene_root(prepared: Path, folder: Path) -> Path:
    """A copy of ``prepared`` whose train split is one scene and its twin: the same points and
    colours, the labels renamed by a fixed permutation of the classes. The manifest's class
    statistics stay those of the original split (only the loss weights and the center prior read
    them, the same way in every run that uses this root)."""
    root = folder / "twins"
    shutil.copytree(prepared, root)
    manifest = read_json(root / "manifest.json")
    train_dir = root / "train"
    scene = min(
        manifest["splits"]["train"], key=lambda s: len(np.load(train_dir / s / "voxel_coord.npy"))
    )
    twin = "scene0999_00"
    shutil.copytree(train_dir / scene, train_dir / twin)
    permutation = np.random.default_rng(0).permutation(200)
    for name in ("segment200", "voxel_segment200"):
        labels = np.load(train_dir / twin / f"{name}.npy")
        renamed = np.where(labels >= 0, permutation[labels.clip(0)], labels).astype(labels.dtype)
        assert (renamed != labels).any()
        np.save(train_dir / twin / f"{name}.npy", renamed)
    manifest["splits"]["train"] = [scene, twin]
    save_json(root / "manifest.json", manifest)
    return root


@pytest.mark.slow
def test_two_ddp_processes_match_one_process_with_the_same_global_batch(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    # With two different scenes, DDP (batch 1 per rank) and one process (batch 2) are not
    # bit-identical, and not even close: each rank's BatchNorm normalises with its own scene's
    # statistics, and the loss is the mean of per-rank voxel means instead of one voxel mean.
    # On this data those two effects move the weights about as far as training on the wrong
    # scenes does, so no tolerance could tell a working DDP from a broken one. The twins remove
    # both effects: identical points and colours give every rank the joint batch's BatchNorm
    # statistics and the same number of labelled voxels, while the renamed labels keep the
    # ranks' gradients different, so averaging them is what is tested. What is left is summation
    # order (a gradient all-reduce of two halves against one backward pass over both, the
    # all-reduced class sums of the center head) and BatchNorm's unbiased running variance
    # (n/(n-1) per rank against 2n/(2n-1)). BatchNorm's backward pass is a nearly cancelling sum,
    # so its float error grows fast with each SGD step: measured 5e-5 after one step, 2e-3 after
    # two; one process on batch 1 (what a rank without gradient averaging would do) ends 4e-2
    # away. The center branch computes over the global batch here (sync_centers); by default
    # each rank keeps its own centers, as the authors' release does, and DDP is not one process.
    root = twin_scene_root(synthetic_scannet.prepared, tmp_path)
    # Coarser voxels than prepared (re-voxelized) and no crop or augmentation: a random crop or
    # augmentation would differ between the twins.
    settings = (
        "data.voxel_size=0.1", "data.revoxelize=true", "data.max_voxels=null", "aug=none",
        "loss=ceco", "model.center_head.sync_centers=true", "trainer.max_steps=2",
        "trainer.ckpt_every=2",
    )  # fmt: skip
    # Each rank gets its own run folder, so that what rank 1 writes can be seen apart.
    overrides = train_overrides(root, tmp_path, "ddp_rank${oc.env:RANK}", *settings)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launch, "-m", "ceco3d.cli.train", *overrides, "data.batch_size=1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    assert (tmp_path / "ddp_rank1" / "train.log").is_file()  # rank 1 did run ...
    assert not (tmp_path / "ddp_rank1" / "checkpoints").exists()  # ... but wrote no checkpoint
    assert not (tmp_path / "ddp_rank1" / "tb").exists()
    ddp = checkpoint_of(tmp_path, "ddp_rank0")
    assert ddp["step"] == 2

    run(tiny_train_config(root, tmp_path, "single", *settings, "data.batch_size=2"))
    run(tiny_train_config(root, tmp_path, "one_rank", *settings, "data.batch_size=1"))
    single, one_rank = checkpoint_of(tmp_path, "single"), checkpoint_of(tmp_path, "one_rank")

    first_ddp, first_single = (losses_logged(tmp_path, r)[0] for r in ("ddp_rank0", "single"))
    assert first_ddp[0] == first_single[0] == 1
    assert first_ddp[1] == pytest.approx(first_single[1], rel=1e-5)

    tolerance = 5e-3  # on |a - b| / (1 + |b|), every weight and BatchNorm buffer

    def max_difference(a: dict, b: dict) -> float:
        return max(
            ((a[k] - b[k]).abs() / (1 + b[k].abs())).max().item()
            for k in b
            if b[k].is_floating_point()
        )

    assert max_difference(ddp["model"], single["model"]) < tolerance
    assert max_difference(one_rank["model"], single["model"]) > 3 * tolerance
