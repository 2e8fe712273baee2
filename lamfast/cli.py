"""`lamfast` command line. Each sub-command lives beside the code it drives and
registers itself here with `add_parser(subparsers)`; `main` dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

# module -> provides add_parser(subparsers) which sets `func` on its parser.
COMMAND_MODULES = [
    "lamfast.demo",
    "lamfast.data.cli",
    "lamfast.train",
    "lamfast.average",
    "lamfast.xmatch_cli",
    "lamfast.label.cli",
    "lamfast.tasks.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lamfast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:  # user errors: one clear line
        print(f"lamfast {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
