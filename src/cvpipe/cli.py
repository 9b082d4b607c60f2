"""The `cvpipe` console script."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .pipeline.project import started_early


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with started_early(argv):
        args = build_parser().parse_args(argv)
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print("cvpipe: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `cvpipe models list | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


if __name__ == "__main__":
    sys.exit(main())
