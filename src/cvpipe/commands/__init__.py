"""Sub-commands of the `cvpipe` console script; each module has add_parser(subparsers)."""
