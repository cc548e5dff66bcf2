"""Exclusive claims on output folders: two commands never write into one folder at once.

A command claims its output folder (prepared data, a run, an evaluation or analysis output)
before it writes anything there: it creates ``CLAIM_FILE`` in the folder and holds an exclusive
``flock`` on it, with its pid, host and command line written inside. A second command that
finds the lock held is refused (``UsageError``, exit 2) with a message naming the holder. The
kernel drops the lock when its holder dies however it dies (``kill -9``, a requeued cluster
job), so a dead holder's claim is taken over without anyone cleaning up. A claim ends when its
command exits; a process may claim a folder it already holds again (a no-op).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ceco3d.errors import UsageError

CLAIM_FILE = ".ceco3d-claim"

# Folder (resolved) -> (claiming pid, open file descriptor of its locked claim file). A forked
# child (a data-loading worker) inherits the lock with the descriptor but does not release it.
_held: dict[Path, tuple[int, int]] = {}


def _holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return (f"pid {holder['pid']} on {holder['host']}, since {holder['since']}: "
                f"{holder['command']}")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return "a command that is just starting"


def claim(folder: str | os.PathLike, what: str, fix: str) -> Path:
    """Claim ``folder`` (created if needed) for this process until it exits; ``what`` names the
    folder in the refusal ("prepared-data folder"), ``fix`` says what to do instead."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if _held.get(key, (None,))[0] == os.getpid():
        return folder
    path = key / CLAIM_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"{folder}: this {what} is in use by another ceco3d command ({_describe(path)}); "
                f"nothing was changed. Wait for it to finish, or {fix}"
            ) from None
        # The file may have been released (unlinked) between our open and our lock: then the
        # lock is on a file nobody else will see; take the one in the folder instead.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder()).encode())
    _held[key] = (os.getpid(), fd)
    return folder


def release(folder: str | os.PathLike) -> None:
    """End this process's claim on ``folder`` (nothing when it holds none)."""
    key = Path(folder).resolve()
    pid, fd = _held.get(key, (None, None))
    if pid != os.getpid():
        return
    del _held[key]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(key / CLAIM_FILE)  # while locked: no other command holds it now
    os.close(fd)


@contextlib.contextmanager
def claimed(folder: str | os.PathLike, what: str, fix: str):
    """``claim`` for the ``with`` block; a claim this process held before stays held."""
    held_before = _held.get(Path(folder).resolve(), (None,))[0] == os.getpid()
    claim(folder, what, fix)
    try:
        yield Path(folder)
    finally:
        if not held_before:
            release(folder)


@atexit.register
def _release_all() -> None:
    for folder in list(_held):
        release(folder)
