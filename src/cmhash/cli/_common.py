"""Helpers shared by CLI modules: formatter, printing tables and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps hand-written examples in descriptions and shows defaults for every option."""


def add_parser(sub, name: str, help: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=HelpFormatter)


def print_json(obj: Any, file=None) -> None:
    from cmhash.io import to_jsonable

    json.dump(to_jsonable(obj), file or sys.stdout, indent=2)
    (file or sys.stdout).write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain markdown table (readable in a terminal and pasteable into docs)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])
