"""What every entrypoint shares: user errors, the failure file, exit codes and atomic outputs."""

from __future__ import annotations

import json
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

# SageMaker keeps at most this much of output/failure as the job's FailureReason.
FAILURE_LIMIT = 1024

Content = bytes | Callable[[BinaryIO], object]


class UserError(Exception):
    """A problem with the job's input or configuration, explained so the user can fix it."""


def log(name: str, message: str) -> None:
    # Looked up at call time: a local worker redirects sys.stderr to the job's log per job.
    print(f"{name}: {message}", file=sys.stderr, flush=True)


def run_job(name: str, ml_root: Path, work: Callable[[], None]) -> int:
    """Run ``work`` and turn its outcome into the exit code SageMaker expects.

    0 on success; 1 for a ``UserError`` (message only, no traceback); 2 for anything else.
    Either failure also writes ``ml_root/output/failure``, which becomes the job's FailureReason.
    """
    try:
        work()
    except UserError as exc:
        return _fail(name, ml_root, str(exc), 1)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return _fail(name, ml_root, f"{type(exc).__name__}: {exc}", 2)
    return 0


def _fail(name: str, ml_root: Path, message: str, code: int) -> int:
    log(name, "error: " + " ".join(message.split()))
    text = message if len(message) <= FAILURE_LIMIT else message[: FAILURE_LIMIT - 3] + "..."
    try:
        publish(ml_root / "output", {"failure": text.encode()})
    except OSError as exc:
        log(name, f"could not write the failure file: {exc}")
    return code


def publish(directory: Path, files: Mapping[str, Content]) -> None:
    """Write ``files`` (name -> bytes or a writer of a binary file) into ``directory`` atomically.

    Every file is written under a hidden temporary name first; only when all are complete are they
    renamed into place, in the order given. A failure while writing removes the temporaries, so a
    reader never sees a half-written file, and the last file appearing means the others are there.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, content in files.items():
            temporary = directory / f".{name}.{uuid.uuid4().hex}.tmp"
            staged.append((temporary, directory / name))
            with temporary.open("xb") as stream:
                if isinstance(content, bytes):
                    stream.write(content)
                else:
                    content(stream)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        os.replace(temporary, final)


def json_bytes(document: object, *, indent: int | None = 2) -> bytes:
    """Strict JSON (no NaN): whatever reads these files next may not be Python."""
    separators = None if indent else (",", ":")
    return json.dumps(document, indent=indent, separators=separators, allow_nan=False).encode()


def quote_names(names: list[str], limit: int = 20) -> str:
    """``'a', 'b', 'c'``, shortened past ``limit`` names so messages stay readable."""
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
