"""The `cvpipe` console script."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    # The commands import the engine and its services: after started_early has begun the slow parts.
    from .commands import asl
    from .pipeline import aws_commands, models_command, run_command

    parser = argparse.ArgumentParser(prog="cvpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cvpipe {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in (run_command, aws_commands, models_command, asl):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None, *, fresh_process: bool = False) -> int:
    """Run the command; ``fresh_process``: this process was started for it (as ``started_early`` says)."""
    from .pipeline.project import started_early

    argv = sys.argv[1:] if argv is None else argv
    with started_early(argv, fresh_process=fresh_process):
        args = build_parser().parse_args(argv)
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print("cvpipe: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `cvpipe models list | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


_console_status: list[int] = []
"""The exit status of ``console``'s command, once it returned."""


def console() -> int:
    """``main`` as the console script runs it: once the command returned, and the interpreter has
    joined its threads and run the other exit handlers, the process exits without freeing every
    module and object one by one (the engine, botocore's service models, ...), which takes 0.1-0.2 s
    that the operating system's own clean-up does at once."""
    _console_status.append(main(fresh_process=True))
    return _console_status[0]


def _exit_now() -> None:
    if not _console_status:  # not the console script, or its command raised: exit as usual
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
            stream.flush()
    os._exit(_console_status[0])


# Registered as this module loads, before the modules that main imports register theirs: it runs last.
atexit.register(_exit_now)


if __name__ == "__main__":
    sys.exit(console())
