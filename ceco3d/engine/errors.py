"""Expected failures of a run, reported to the user as one line (see ceco3d.cli.common)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
