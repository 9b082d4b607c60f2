"""The one error type for a user's mistake: reported as one clear line with its exit code, never
a traceback."""

from __future__ import annotations

USAGE = 2
"""Exit code of a refused command line, input, dataset or setting: nothing was run."""


class UserError(Exception):
    """A mistake in what the user asked for; ``exit_code`` is what the command exits with."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
