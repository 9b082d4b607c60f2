"""The `cvpipe` console script."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator, TextIO

from . import __version__


@contextlib.contextmanager
def reserved_stdout() -> Iterator[TextIO]:
    """Keep stdout for the command's own result.

    Lambda handlers log with Powertools and jobs print metric lines, all to stdout; while the block
    runs, file descriptor 1 points at stderr (worker processes inherit that), and the command writes
    its one result to the stream this yields.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    result = os.fdopen(os.dup(saved), "w")
    try:
        yield result
    finally:
        result.flush()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        result.close()


def build_parser() -> argparse.ArgumentParser:
    from .commands import asl, models, run

    parser = argparse.ArgumentParser(prog="cvpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cvpipe {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in (run, models, asl):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("cvpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
