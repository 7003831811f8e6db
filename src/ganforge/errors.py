"""User-facing errors.

`GanforgeError` carries a one-line message that names the file/key at fault and what was expected. The CLI prints
it without a traceback (the full trace is shown with `--debug`). Library code raises it where bad input enters.
"""


class GanforgeError(ValueError):
    """A user-facing error with a one-line message; the CLI prints it without a traceback."""


class DivergenceError(GanforgeError):
    """Training produced a non-finite loss; the last good checkpoint is kept intact."""
