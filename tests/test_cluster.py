"""Training on a cluster: ranks and rendezvous from the scheduler's variables, the sbatch script
that ``hydra/launcher=slurm`` submits, submitit's local executor against torchrun, a pre-empted
job requeued and resumed to the uninterrupted weights, the requeue bound, a finished run never
requeued, and scripts/slurm_train.sh."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ceco3d.engine import cluster
from ceco3d.engine.checkpoint import load_checkpoint
from ceco3d.engine.cluster import PORT_BASE, Rendezvous, scheduler_rendezvous
from ceco3d.io import read_json
from hydra_plugins.ceco3d_launcher.launchers import RequeueingLocalLauncher
from tests.conftest import REPO_ROOT
from tests.fixtures import BIN, synthetic_scannet, train_overrides  # noqa: F401 (a fixture)

RENDEZVOUS_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Two DDP ranks of batch 1 each for 8 steps, last.pt every 2; the center head (with its dropout)
# and the default augmentation draw random numbers, so a resume must restore every rank's.
DDP_SETTINGS = ("loss=ceco", "data.batch_size=1", "trainer.max_steps=8", "trainer.ckpt_every=2")
LOCAL_TWO_TASKS = ("hydra/launcher=local", "hydra.launcher.tasks_per_node=2")


def fake_command(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def scheduler_env(monkeypatch):
    """No torchrun, submitit or SLURM variables from the process running the tests."""
    for name in RENDEZVOUS_VARIABLES:  # recorded, so that what the test exports is undone
        monkeypatch.setenv(name, "")
    for name in list(os.environ):
        if name in RENDEZVOUS_VARIABLES or name.startswith(("SLURM_", "SUBMITIT_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_ranks_and_rendezvous_come_from_slurm_variables_in_an_srun_task(scheduler_env):
    slurm = {
        "SLURM_JOB_ID": "1234567", "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16",
        "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[007-008]",
    }  # fmt: skip
    for name, value in slurm.items():
        scheduler_env.setenv(name, value)
    assert scheduler_rendezvous() == Rendezvous(9, 16, 1, "gpu007", PORT_BASE + 4567)
    # Another job on the same node rendezvous elsewhere.
    scheduler_env.setenv("SLURM_JOB_ID", "1234568")
    assert scheduler_rendezvous().master_port == PORT_BASE + 4568
    scheduler_env.setenv("MASTER_PORT", "29400")  # the user's choice is kept
    assert scheduler_rendezvous().master_port == 29400
    cluster.export_rendezvous()
    assert [os.environ[n] for n in RENDEZVOUS_VARIABLES] == ["9", "16", "1", "gpu007", "29400"]
    # torchrun's own variables (set just above) win over the scheduler's from now on.
    assert scheduler_rendezvous() is None


def test_submitit_local_tasks_and_plain_runs(scheduler_env):
    assert scheduler_rendezvous() is None  # alone
    scheduler_env.setenv("SLURM_JOB_ID", "77")  # the batch script itself (no srun): alone
    scheduler_env.setenv("SLURM_NTASKS", "8")
    assert scheduler_rendezvous() is None
    local = {
        "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4321", "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1",
    }  # fmt: skip
    for name, value in local.items():
        scheduler_env.setenv(name, value)
    assert scheduler_rendezvous() == Rendezvous(1, 2, 1, socket.gethostname(), PORT_BASE + 4321)
    scheduler_env.setenv("SUBMITIT_LOCAL_NTASKS", "1")
    assert scheduler_rendezvous() is None  # a single task needs no process group


def test_requeues_are_bounded_and_logged(caplog):
    launcher = RequeueingLocalLauncher(max_requeues=2, submitit_folder="unused")
    call = (["seed=0"], "hydra.sweep.dir", 0, "job_id_for_0", {})
    with caplog.at_level(logging.INFO, logger="ceco3d.cluster"):
        requeued = [launcher.checkpoint(*call) for _ in range(3)]
    assert [r is not None for r in requeued] == [True, True, False]
    assert requeued[0].function is launcher and requeued[0].args == call  # the same job again
    assert launcher.requeues == 2  # travels in the pickle submitit requeues
    assert "requeued (1 of at most 2)" in caplog.text
    assert "not requeued: the job was requeued 2 times already" in caplog.text


def test_a_finished_run_is_never_requeued():
    signum, calls = cluster.preemption_signal(), []
    previous = signal.signal(signum, lambda s, frame: calls.append(s))  # stands in for submitit's
    try:
        cluster.guard_requeue()
        cluster.pass_on_preemption(signum)  # what training does after saving last.pt
        assert calls == [signum]
        cluster.mark_training_finished()
        signal.raise_signal(signum)
        assert calls == [signum]
    finally:
        signal.signal(signum, previous)


def test_the_slurm_launcher_submits_one_array_job_with_the_requested_resources(tmp_path):
    fakes = tmp_path / "bin"
    fakes.mkdir()
    submitted = tmp_path / "submitted.sh"
    fake_command(fakes, "sbatch", f'cp "$1" {submitted}\necho "Submitted batch job 4242"')
    fake_command(fakes, "srun", "exit 1")  # submitit checks that srun exists
    command = [
        BIN / "ceco3d-train", "-m", "hydra/launcher=slurm", "experiment=scannet200", "loss=ceco",
        "seed=0,1,2", "loss.lambda_=0.2,0.4,0.8", "data.root=/data/scannet_prep",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.nodes=2",
        "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=600",
        "hydra.launcher.partition=gpu", "hydra.launcher.account=proj42",
        "hydra.launcher.constraint=a100",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}"}
    with open(tmp_path / "output.txt", "w") as output:
        # After submitting, the launcher waits for the jobs, as on a cluster: stopped below.
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + 60
            while not submitted.is_file():
                assert process.poll() is None, (tmp_path / "output.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "nothing submitted after 60 s"
                time.sleep(0.1)
        finally:
            process.kill()
            process.wait()
    script = submitted.read_text()
    for line in (
        "#SBATCH --array=0-8%9",  # 3 seeds x 3 lambdas, one job each
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",  # one task per GPU
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=600",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --constraint=a100",
    ):
        assert line in script.splitlines(), script
    assert "srun --unbuffered" in script and "-m submitit.core._submit" in script


def slurm_script(tmp_path: Path, status: int, restarts: int) -> tuple[int, str, str]:
    """scripts/slurm_train.sh with a stand-in srun (exits ``status``) and scontrol."""
    fakes = tmp_path / "bin"
    fakes.mkdir(exist_ok=True)
    fake_command(fakes, "srun", f'echo "$@" > {tmp_path / "srun.txt"}\nexit {status}')
    fake_command(fakes, "scontrol", f'echo "$@" >> {tmp_path / "scontrol.txt"}')
    env = {
        **os.environ, "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": str(restarts), "CECO3D_MAX_REQUEUES": "2",
    }  # fmt: skip
    script = REPO_ROOT / "scripts" / "slurm_train.sh"
    done = subprocess.run(
        ["bash", script, "experiment=scannet200", "loss=ceco"],
        env=env,
        capture_output=True,
        text=True,
    )
    scontrol = tmp_path / "scontrol.txt"
    return done.returncode, done.stdout, scontrol.read_text() if scontrol.is_file() else ""


def test_the_sbatch_script_requeues_after_the_signal_at_most_max_times(tmp_path):
    code, out, scontrol = slurm_script(tmp_path, 140, restarts=1)
    assert code == 140 and scontrol == "requeue 4242\n", out
    assert "requeueing job 4242 (2 of at most 2)" in out
    srun = (tmp_path / "srun.txt").read_text().split()
    assert srun[-5:] == [
        "ceco3d-train", "run_name=slurm-4242", "trainer.resume=auto",
        "experiment=scannet200", "loss=ceco",
    ]  # fmt: skip

    (tmp_path / "scontrol.txt").unlink()
    code, out, scontrol = slurm_script(tmp_path, 140, restarts=2)
    assert code == 140 and scontrol == "" and "not requeued: requeued 2 times already" in out
    code, out, scontrol = slurm_script(tmp_path, 0, restarts=0)  # finished: never requeued
    assert code == 0 and scontrol == ""


# --- distributed runs (slow: each starts two training processes) -------------------------------


@pytest.fixture(scope="module")
def torchrun_reference(synthetic_scannet, tmp_path_factory) -> dict:  # noqa: F811
    """last.pt of the torchrun two-process run that the submitit jobs must repeat."""
    folder = tmp_path_factory.mktemp("torchrun")
    overrides = train_overrides(synthetic_scannet.prepared, folder, "ddp", *DDP_SETTINGS)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, "-m", "ceco3d.cli.train", *overrides],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return load_checkpoint(folder / "ddp" / "checkpoints" / "last.pt")


def start_sweep(prepared: Path, sweep: Path, *overrides: str) -> subprocess.Popen:
    settings = train_overrides(prepared, sweep.parent, "unused", *DDP_SETTINGS, *overrides)
    command = [BIN / "ceco3d-train", "-m", *LOCAL_TWO_TASKS, f"hydra.sweep.dir={sweep}", *settings]
    with open(sweep.parent / "output.txt", "w") as output:
        return subprocess.Popen(command, cwd=sweep.parent, stdout=output, stderr=output)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"{len(different)} of {len(a['model'])} tensors differ: {different[:3]}"


@pytest.mark.slow
def test_a_sweep_of_two_task_submitit_jobs_repeats_torchrun(
    torchrun_reference,
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    sweep = tmp_path / "sweep"
    # Two jobs that train alike (the log interval changes no weight).
    process = start_sweep(synthetic_scannet.prepared, sweep, "trainer.log_every=1,2")
    assert process.wait(timeout=300) == 0, (tmp_path / "output.txt").read_text()[-3000:]
    for job in ("0", "1"):
        assert_same_weights(load_checkpoint(sweep / job / "checkpoints" / "last.pt"),
                            torchrun_reference)  # fmt: skip
    summary = read_json(sweep / "sweep_summary.json")["jobs"]
    assert [(j["folder"], j["step"], j["finished"]) for j in summary] == [
        ("0", 8, True), ("1", 8, True)
    ]  # fmt: skip
    assert "trainer.log_every=2" in summary[1]["overrides"]


def job_tasks(sweep: Path) -> list[int]:
    """The task processes of the sweep's one job: children of submitit's local controller,
    whose pid names the job's folder in .submitit/."""
    (controller,) = [int(p.name) for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_weights(
    torchrun_reference,
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    sweep = tmp_path / "sweep"
    last = sweep / "0" / "checkpoints" / "last.pt"
    process = start_sweep(synthetic_scannet.prepared, sweep)
    try:
        deadline = time.monotonic() + 120
        while not last.is_file():  # step 2 of 8 is saved
            assert process.poll() is None, (tmp_path / "output.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        for task in job_tasks(sweep):  # what SLURM and submitit's controller do before the limit
            os.kill(task, cluster.preemption_signal())
        assert process.wait(timeout=300) == 0, (tmp_path / "output.txt").read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    log = (sweep / "0" / "train.log").read_text()
    assert "requeued (1 of at most 5): the job continues from its last checkpoint" in log
    resumed_at = int(log.split(f"resumed from {last} at step ")[1].split()[0])
    assert 2 <= resumed_at < 8
    assert_same_weights(load_checkpoint(last), torchrun_reference)
    assert read_json(sweep / "sweep_summary.json")["jobs"][0]["finished"]
