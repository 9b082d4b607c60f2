"""Keeping stdout for a command's own result.

Lambda handlers log with Powertools and print metrics (EMF) to stdout, and jobs print metric lines:
all of it goes where file descriptor 1 points. These helpers point it elsewhere for a while, at the
descriptor level, so that worker processes started meanwhile inherit the redirection too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def stdout_to(fd: int) -> Iterator[None]:
    """Send whatever is written to stdout to ``fd`` until the block ends."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def reserved_stdout() -> Iterator[TextIO]:
    """Yield a stream to the real stdout for the command's one result; anything else written to
    stdout meanwhile goes to stderr."""
    result = os.fdopen(os.dup(1), "w")
    try:
        with stdout_to(2):
            yield result
    finally:
        result.close()
