"""Two commands on one folder: a prepared-data folder, a run folder, an evaluation or analysis
output is claimed before anything is written; the second command is refused naming the holder
(exit 2, nothing written), and a dead holder's claim is taken over. Default names do not collide.
A held claim stands in for the concurrent command (another process holding it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ceco3d.analysis.report import model_names
from ceco3d.claims import CLAIM_FILE, claim, release
from ceco3d.cli.evaluate import run as run_eval
from ceco3d.engine.train import train
from ceco3d.errors import UsageError
from data_prep import prep
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    compose_config,
    synthetic_scannet,
    tiny_train_config,
    train_overrides,
)
from tests.test_cli import run_script

HOLD = (
    "import sys, time; from ceco3d.claims import claim; claim(sys.argv[1], 'folder', 'wait'); "
    "print('held', flush=True); time.sleep(120)"
)


@contextlib.contextmanager
def held_by_another_command(folder: Path):
    """Another process holds the claim on ``folder`` inside the block."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_claim_names_its_holder_and_a_dead_holders_claim_is_taken_over(tmp_path):
    folder = tmp_path / "out"
    with held_by_another_command(folder) as holder:
        with pytest.raises(
            UsageError, match=rf"in use by another ceco3d command \(pid {holder.pid}"
        ):
            claim(folder, "output folder", "choose another")
        os.kill(holder.pid, signal.SIGKILL)  # dies without releasing anything
        holder.wait()
        claim(folder, "output folder", "choose another")  # the kernel dropped the dead lock
    assert json.loads((folder / CLAIM_FILE).read_text())["pid"] == os.getpid()
    claim(folder, "output folder", "choose another")  # again by its holder: a no-op
    release(folder)
    assert not (folder / CLAIM_FILE).exists()


def test_prep_into_a_folder_in_use_is_refused_and_writes_nothing(synthetic_scannet, tmp_path):  # noqa: F811
    out = tmp_path / "prepared"
    with held_by_another_command(out):
        assert prep.main([str(synthetic_scannet.raw), str(out), "--voxel-size", "0.1"]) == 2
        assert files_in(out) == [CLAIM_FILE]


def test_train_into_a_run_folder_in_use_is_refused_before_anything_is_written(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    with held_by_another_command(tmp_path / "base") as holder:
        overrides = train_overrides(synthetic_scannet.prepared, tmp_path, "base",
                                    "trainer.max_steps=1")  # fmt: skip
        done = run_script("ceco3d-train", *overrides, cwd=tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"pid {holder.pid}" in done.stderr and "run_name" in done.stderr
        assert files_in(tmp_path / "base") == [CLAIM_FILE]  # no .hydra/, no log
        with pytest.raises(UsageError, match="run folder is in use"):  # the engine, too
            train(
                tiny_train_config(synthetic_scannet.prepared, tmp_path, "base"), tmp_path / "base"
            )


def test_default_run_names_of_commands_started_together_differ():
    show = "from ceco3d.paths import run_id; print(run_id())"
    procs = [subprocess.Popen([sys.executable, "-c", show], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    names = [p.communicate()[0].strip() for p in procs]
    assert names[0] != names[1] and all(names)
    cfg = compose_config("train", ["data.root=/p"])
    assert cfg.run_name.endswith(f"_{os.getpid()}")


def test_evaluation_outputs_are_per_checkpoint():
    import ceco3d.cli.evaluate  # noqa: F401 (registers the eval_dir resolver)

    outs = {name: compose_config("eval", [f"ckpt=/runs/x/checkpoints/{name}.pt"]).out
            for name in ("best", "last")}  # fmt: skip
    assert outs == {"best": "/runs/x/eval_val_best", "last": "/runs/x/eval_val_last"}


@pytest.mark.slow
def test_evaluation_records_its_checkpoint_and_refuses_an_output_in_use(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    cfg = tiny_train_config(synthetic_scannet.prepared, tmp_path, "run", "loss=ce",
                            "trainer.max_steps=1")  # fmt: skip
    train(cfg, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    run_eval(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'eval'}", "device=cpu"]))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["checkpoint"] == str(ckpt.resolve()) and summary["checkpoint_step"] == 1
    assert len(summary["checkpoint_checksum"]) == 64

    out = tmp_path / "eval_in_use"
    with held_by_another_command(out) as holder:
        done = run_script("ceco3d-eval", f"ckpt={ckpt}", f"out={out}", cwd=tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"pid {holder.pid}" in done.stderr and "out=" in done.stderr
        assert files_in(out) == [CLAIM_FILE]


def test_analysis_names_are_unique_and_stay_inside_out():
    ckpts = ["runs/a/checkpoints/best.pt", "runs/a/checkpoints/last.pt", "runs/b/checkpoints/b.pt"]
    assert model_names(ckpts, None) == ["a_best", "a_last", "b"]
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(UsageError, match="not a plain file name"):
            model_names(ckpts[:1], [bad])
    with pytest.raises(UsageError, match="names two checkpoints"):
        model_names(ckpts[:2], ["same", "same"])
