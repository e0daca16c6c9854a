"""Thin command-line layer over the library: ``cmhash <command> ...``.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its sub-parser(s) and sets ``func`` (called with the parsed
args, returns an exit status). Modules must import heavy libraries (torch, faiss) inside ``func``,
so that ``cmhash --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order = order in `cmhash --help`.
COMMAND_MODULES = [
    "cmhash.cli.demo",
    "cmhash.cli.data",
    "cmhash.cli.features",
    "cmhash.cli.train",
    "cmhash.cli.encode",
    "cmhash.cli.eval",
    "cmhash.cli.reproduce",
    "cmhash.cli.index",
    "cmhash.cli.search",
    "cmhash.cli.serve",
]

EPILOG = """\
examples:
  cmhash demo                                        train + evaluate on the built-in synthetic benchmark
  cmhash data info mirflickr --root ../shared/data/mirflickr25k
  cmhash data split mirflickr --root DATA --protocol djsrh --seed 0 --out split.json
  cmhash eval --codes codes.npz                      mAP@50 etc. of saved codes

Run `cmhash <command> --help` for the options of each command.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the full usage is one `--help` away), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cmhash",
        description="Deep cross-modal hashing: learn binary codes for images and texts, evaluate them, search them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from cmhash import __version__

    parser.add_argument("--version", action="version", version=f"cmhash {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cmhash.errors import CmhashError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except CmhashError as exc:
        print(f"cmhash {args.command}: error: {exc}", file=sys.stderr)
        if os.environ.get("CMHASH_DEBUG"):
            raise
        return 2
    except KeyboardInterrupt:
        print(f"cmhash {args.command}: interrupted; run the same command again to resume where supported", file=sys.stderr)
        return 130
