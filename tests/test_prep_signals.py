"""ceco3d-prep stopped by SIGTERM or Ctrl-C under ``-j 2``: no process outlives it (fork server and
workers included), the exit status is 128 + the signal, and finished scenes are kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from data_prep.synth import generate
from tests.fixtures import BIN


def session_processes(session: int) -> list[int]:
    """Live (not zombie) processes of a session, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    argv = [str(raw), "--scenes", "24", "--test-scenes", "0", "--vertex-spacing", "0.04"]
    assert generate.main(argv) == 0
    return raw


def signal_prep(raw: Path, out: Path, signum: int, stderr: Path) -> tuple[int, list[int]]:
    """Start ``ceco3d-prep -j 2``, send ``signum`` once a worker has finished a scene; its exit
    status and the processes of its session still alive 10 s after it ended."""
    with open(stderr, "w") as file:
        # A session of its own: the fork server and the workers are found by it, even orphaned.
        process = subprocess.Popen(
            [BIN / "ceco3d-prep", raw, out, "-j", "2"], stdout=subprocess.DEVNULL,
            stderr=file, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # The main process, the resource tracker, the fork server and two workers, which have
        # started (a worker stopped while it starts up may print a traceback before it ends).
        while len(session_processes(process.pid)) < 5 or not any(out.glob("*/*/meta.json")):
            assert process.poll() is None, stderr.read_text()[-2000:]
            assert time.monotonic() < deadline, "no workers after 120 s"
            time.sleep(0.1)
        os.kill(process.pid, signum)
        returncode = process.wait(timeout=60)
        deadline = time.monotonic() + 10
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return returncode, session_processes(process.pid)
    finally:
        for pid in session_processes(process.pid):  # only what this test started
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_prep_and_every_worker(signum, raw, tmp_path):
    out = tmp_path / "out"
    returncode, left = signal_prep(raw, out, signum, tmp_path / "stderr.txt")
    err = (tmp_path / "stderr.txt").read_text()
    assert returncode == 128 + signum, err[-2000:]
    assert left == []
    assert f"{signum.name}: stopped; finished scenes are kept, run again to go on" in err
    assert "Traceback" not in err, err[-3000:]
    assert not (out / "manifest.json").exists()  # written only after a complete run


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_kill_9_of_prep_leaves_no_worker_behind(raw, tmp_path):
    """SIGKILL gives the main process no chance to stop anything: the fork server, the workers
    and the resource tracker must notice on their own that it is gone."""
    returncode, left = signal_prep(raw, tmp_path / "out", signal.SIGKILL, tmp_path / "err.txt")
    assert returncode == -signal.SIGKILL
    assert left == []
