"""Expected failures of a run, reported to the user as one paragraph (see ceco3d.errors)."""

from ceco3d.errors import ReportedError


class NonFiniteLossError(ReportedError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
