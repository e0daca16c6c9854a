"""The one validation layer for user-given values (CLI flags, KEY=VALUE options): each rule once.

* :func:`parse_value` / :func:`parse_kv`: the one KEY=VALUE typing rule (``-o``, ``--set``,
  ``--split-param``, ``--param``, ``--source-option``... all type values the same way).
* :func:`positive_int` (and the argparse types :func:`positive_int_arg`, :func:`nonneg_int_arg`),
  :func:`seed_arg`, :func:`device_arg`, :func:`bits_list`.
* :func:`output_file`: an output path must not be a folder and its parent must not be a file,
  checked *before* any work is done (not after an hour of training).

Errors are :class:`cmhash.errors.UsageError` (one line naming the flag and the value; the CLI
exits 2). Inside argparse ``type=`` callables they surface as argparse errors, which
:class:`cmhash.cli.OneLineParser` also prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Iterable

from cmhash.errors import UsageError

#: Largest accepted seed: numpy's legacy RandomState and most tools take seeds below 2**32.
MAX_SEED = 2**32 - 1
#: Largest accepted code length. The papers use 16-128 bits; 100,000 bits made a 413 MB checkpoint.
MAX_BITS = 4096

_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")


# ----------------------------------------------------------------------------- KEY=VALUE
def parse_value(text: str) -> Any:
    """The one typing rule of KEY=VALUE values.

    ``600`` -> int, ``0.5`` / ``1e-3`` -> float, ``true``/``false`` -> bool, ``null``/``none`` ->
    None, ``[a, 1]`` -> a list (items typed by the same rule); anything else stays the literal
    string, including integers written with leading zeros (``007``: ids, not numbers) and the
    empty string.
    """
    v = text.strip()
    low = v.lower()
    if v == "":
        return ""
    if _INT.fullmatch(v):
        return int(v)
    if _FLOAT.fullmatch(v):
        return float(v)
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    if v.startswith("[") and v.endswith("]"):
        inner = v[1:-1].strip()
        return [parse_value(x) for x in inner.split(",")] if inner else []
    return v


def split_kv(item: str, flag: str, example: str = "KEY=VALUE") -> tuple[str, Any]:
    """``"key=value"`` -> ``("key", typed value)``; dashes in keys become underscores."""
    key, sep, value = str(item).partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UsageError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} {example}")
    return key, parse_value(value)


def parse_kv(items: Iterable[str] | None, flag: str, example: str = "KEY=VALUE") -> dict[str, Any]:
    """A repeatable KEY=VALUE option -> dict (later items win), typed by :func:`parse_value`."""
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, tuple):  # already split by kv_arg
            out[item[0]] = item[1]
            continue
        key, value = split_kv(item, flag, example)
        out[key] = value
    return out


def kv_arg(text: str) -> tuple[str, Any]:
    """argparse ``type=`` for a KEY=VALUE option (same rule as :func:`parse_kv`)."""
    try:
        return split_kv(text, "option")
    except UsageError:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}") from None


def int_params(params: dict[str, Any], flag: str) -> dict[str, int]:
    """Split-protocol parameters: every value must be a non-negative integer."""
    out = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{flag} {key}={value!r}: the value must be a non-negative integer")
        out[key] = value
    return out


# ----------------------------------------------------------------------------- integers
def positive_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None, error: type[Exception] = UsageError) -> int:
    """The one positive-integer check: ``value`` as an int in [minimum, maximum], or ``error`` naming ``name``.

    Accepts ints and integer strings (``"16"``, not ``"16.0"`` or ``True``). Library callers pass
    their own ``error`` class (e.g. DataError for a source option).
    """
    if isinstance(value, bool):
        raise error(f"{name} must be an integer, got {value!r}")
    try:
        out = int(str(value).strip()) if not isinstance(value, (int, np_integer())) else int(value)
    except ValueError:
        raise error(f"{name} must be an integer, got {value!r}") from None
    if out < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {what}, got {value!r}")
    if maximum is not None and out > maximum:
        raise error(f"{name} must be at most {maximum}, got {value!r}")
    return out


def np_integer():
    import numpy as np

    return np.integer


def _argtype(fn, *args, **kwargs):
    def parse(value: str):
        try:
            return fn(value, "the value", *args, **kwargs)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("the value ", "")) from None

    return parse


#: argparse types built on :func:`positive_int`.
positive_int_arg = _argtype(positive_int)
nonneg_int_arg = _argtype(positive_int, minimum=0)
seed_arg = _argtype(positive_int, minimum=0, maximum=MAX_SEED)
positive_int_arg.__name__ = "positive integer"
nonneg_int_arg.__name__ = "non-negative integer"
seed_arg.__name__ = "seed"


def bits_list(text: str, flag: str = "--bits") -> list[int]:
    """``"16,32"`` -> ``[16, 32]``: positive, at most :data:`MAX_BITS`, no repeats."""
    items = [b.strip() for b in str(text).split(",") if b.strip()]
    if not items:
        raise UsageError(f"{flag} must be a code length or a comma list of them, got {text!r}")
    bits = [positive_int(b, f"{flag} {b!r}", maximum=MAX_BITS) for b in items]
    dup = next((b for i, b in enumerate(bits) if b in bits[:i]), None)
    if dup is not None:
        raise UsageError(f"{flag} {text!r}: {dup} is listed twice (each code length trains once)")
    return bits


def seed_list(text: str, flag: str = "--seeds") -> list[int]:
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise UsageError(f"{flag} must be a comma list of seeds, got {text!r}")
    return [positive_int(s, f"{flag} {s!r}", minimum=0, maximum=MAX_SEED) for s in items]


# ----------------------------------------------------------------------------- devices
def check_device(value: str, flag: str = "--device") -> str:
    v = str(value).strip().lower()
    if not _DEVICE.fullmatch(v):
        raise UsageError(f"{flag} {value!r}: expected auto, cpu, cuda, cuda:N or mps")
    return v


def device_arg(value: str) -> str:
    try:
        return check_device(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


# ----------------------------------------------------------------------------- paths
def _creatable_under(p: Path, flag: str) -> Path:
    """``p`` itself, once its nearest existing ancestor is known to be a folder (so it can be created)."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {p}: {parent} is a file, not a folder")
            break
    return p


def output_file(path: str | os.PathLike | None, flag: str) -> Path | None:
    """Check an output *file* path before any work: not a folder, and its parent not a file."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a folder; give a file name (e.g. {p / 'out'})")
    return _creatable_under(p, flag)


def output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Check an output *folder* path: it must not be an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file; give a folder")
    return _creatable_under(p, flag)


def input_file(path: str | os.PathLike, flag: str) -> Path:
    """An existing input file (not a folder), or a one-line error naming the flag."""
    from cmhash.errors import MissingFileError

    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{flag} {p}: no such file")
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a folder; give a file")
    return p


__all__ = [
    "MAX_BITS",
    "MAX_SEED",
    "bits_list",
    "check_device",
    "device_arg",
    "input_file",
    "int_params",
    "kv_arg",
    "nonneg_int_arg",
    "output_dir",
    "output_file",
    "parse_kv",
    "parse_value",
    "positive_int",
    "positive_int_arg",
    "seed_arg",
    "seed_list",
    "split_kv",
]
