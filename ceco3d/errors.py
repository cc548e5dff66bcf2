"""Expected failures and how every command reports them: one paragraph, one exit status.

A command's ``main`` runs its work through ``report_errors``; an expected failure (an exception
of a class below, or an ``OSError`` naming a file: unwritable folder, full disk) becomes its
message alone and an exit status, never a traceback. ``CECO3D_DEBUG=1`` shows the traceback.

Exit statuses: 1 bad data (a file's content), 2 bad usage (a command-line option or config key),
128 + N interrupted by signal N (130 for SIGINT / Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator

DEBUG_ENV = "CECO3D_DEBUG"


class ReportedError(Exception):
    """An expected failure whose message names the file or key and the fix."""

    exit_code = 1


class UsageError(ReportedError, ValueError):
    """A command-line option or config key the command cannot use."""

    exit_code = 2


class InputError(ReportedError, ValueError):
    """Bad input data; the message names the file and the problem (exit status 1)."""


class NonFiniteLossError(ReportedError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(ReportedError):
    """Stopped by a signal after saving what was done; the message says how to go on."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextlib.contextmanager
def signals_raise_interrupted(message: Callable[[int], str]) -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise ``Interrupted(signum, message(signum))`` in the
    main thread, so that ``finally`` blocks run (workers stopped, temporary files removed)."""

    def handler(signum: int, frame) -> None:
        raise Interrupted(signum, message(signum))

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def describe(error: BaseException) -> tuple[str, int] | None:
    """(message, exit status) of an expected failure; None for anything else (a bug)."""
    if isinstance(error, ReportedError):
        return str(error), error.exit_code
    if isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror or error}"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            message += ("; free space on that disk (or write elsewhere) and run again: the file "
                        "was not replaced, and files written before are complete")  # fmt: skip
        return message, 1
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)", 128 + signal.SIGINT
    return None


def report_errors(
    prog: str,
    work: Callable[[], int | None],
    say: Callable[[str], None] | None = None,
    debug: bool = False,
) -> int:
    """``work()``'s exit status (None: 0), or the status of the expected failure it raised after
    ``say``-ing its message (default: ``prog: error: ...`` on stderr). With ``debug`` (or
    ``CECO3D_DEBUG=1``) every failure keeps its traceback."""
    try:
        return work() or 0
    except (Exception, KeyboardInterrupt) as error:
        described = describe(error)
        if described is None or debug or os.environ.get(DEBUG_ENV) == "1":
            raise
        message, code = described
        if say is None:
            print(f"{prog}: error: {message}", file=sys.stderr)
        else:
            say(message)
        return code
