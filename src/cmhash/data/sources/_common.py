"""Pieces every source loader shares, so each policy is written (and tested) once.

* :func:`check_options`: unknown options are an error that lists the options the source takes.
* :class:`ImageChecker`: the missing/unreadable-image policy (drop and report, or fail under
  ``strict`` naming the file and its row).
* :func:`label_matrix` / :data:`UNLABELED_POLICY`: categorical or tag columns -> multi-hot, and
  the one policy for pairs without any label.
* :func:`read_table`: CSV (with repair of unquoted commas in one free-text column) and JSONL.
* :func:`featurize_texts`: optional bag-of-words / TF-IDF text features over raw texts.

Row numbers in reports (``DroppedPair.row``) are 0-based positions in the listing (line i of
``all_imgs.txt`` is row i-1); messages meant for people name the file and its 1-based line.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cmhash.data.dataset import LoadReport
from cmhash.errors import DataError, MissingFileError

IMAGE_CHECKS = ("open", "exists", "none")
TEXT_FEATURES = ("none", "bow", "count", "tfidf")

# The one policy for labeled sources (also stated in docs/data.md).
UNLABELED_POLICY = (
    "pairs without any label are dropped and reported as 'no_labels' (such a query has no relevant "
    "item under label relevance, and such a database item can never be relevant); keep_unlabeled=True "
    "keeps them with an all-zero label row"
)
EMPTY_TEXT_POLICY = "pairs whose text is empty are dropped and reported as 'no_text' (a pair needs both sides)"


# ----------------------------------------------------------------------------- options
#: Options every file-based source with raw texts takes (name -> default); a loader declares the
#: ones it takes, with its own defaults, through :func:`common_options` (``loader.common_options``).
COMMON_OPTIONS: dict[str, Any] = {
    "check_images": "open",
    "keep_unlabeled": False,
    "text_features": None,
    "min_count": 5,
    "vocabulary": None,
}


def loader_options(loader: Callable) -> list[str]:
    """The option names ``loader`` takes: its keyword-only parameters (``strict`` aside) and its common options."""
    own = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "strict"]
    return own + [k for k in getattr(loader, "common_options", {}) if k not in own]


def check_options(source: str, loader: Callable, unused: dict[str, Any]) -> None:
    """Raise a DataError naming the options ``loader`` does not take and listing those it does."""
    if not unused:
        return
    raise DataError(
        f"{source}: unknown option(s) {', '.join(sorted(unused))}; this source takes: {', '.join(loader_options(loader))}"
    )


@dataclass
class SourceOptions:
    """The common options of one load, parsed and checked once (see :data:`COMMON_OPTIONS`)."""

    check_images: str = "open"
    keep_unlabeled: bool = False
    text_features: str | None = None
    min_count: int = 5
    vocabulary: str | None = None


def common_options(**defaults: Any) -> Callable:
    """Decorator: ``loader`` takes the common options named in ``defaults`` (with these defaults).

    The wrapped loader receives them parsed, as ``opts=SourceOptions(...)``; any other unknown
    option is an error listing what the source takes.
    """
    bad = set(defaults) - set(COMMON_OPTIONS)
    if bad:
        raise TypeError(f"not common options: {', '.join(sorted(bad))}")

    def wrap(loader: Callable) -> Callable:
        import functools

        @functools.wraps(loader)
        def load(root, *, strict: bool = False, **options: Any):
            given = {k: options.pop(k) for k in list(options) if k in defaults}
            values = {**defaults, **given}
            opts = SourceOptions(
                check_images=choice(values.get("check_images", "open"), "check_images", IMAGE_CHECKS),
                keep_unlabeled=as_bool(values.get("keep_unlabeled", False), "keep_unlabeled"),
                text_features=values.get("text_features"),
                min_count=as_int(values.get("min_count", 5), "min_count", 1),
                vocabulary=values.get("vocabulary"),
            )
            return loader(root, strict=strict, opts=opts, **options)

        load.common_options = dict(defaults)  # type: ignore[attr-defined]
        sig = inspect.signature(loader)
        params = [p for p in sig.parameters.values() if p.name != "opts"]
        kw = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
        var = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
        load.__signature__ = sig.replace(parameters=[p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD] + kw + var)  # type: ignore[attr-defined]
        return load

    return wrap


def assemble(
    name: str,
    *,
    opts: SourceOptions,
    ids: Sequence[str],
    paths: Sequence,
    texts_all: Sequence[str],
    kept: np.ndarray,
    text_kind: str,
    meta: dict[str, Any],
    report: LoadReport,
    labels: np.ndarray | None = None,
    label_names: list[str] | None = None,
    groups: np.ndarray | None = None,
    official_splits: dict[str, np.ndarray] | None = None,
):
    """The final step every file-based source shares: text features over the listed texts, their
    recipe in ``meta``, and the :class:`PairedDataset` of the kept rows (images from ``paths``)."""
    from cmhash.data.dataset import PairedDataset
    from cmhash.data.images import FileImageStore

    feats, vocab = featurize_texts(texts_all, kept, opts.text_features, min_count=opts.min_count, vocabulary=opts.vocabulary, kind=text_kind)
    return PairedDataset(
        name=name,
        ids=list(ids),
        images=FileImageStore(list(paths)),
        texts=[texts_all[int(i)] for i in kept],
        text_kind=text_kind,
        text_features=feats,
        labels=labels,
        label_names=label_names,
        groups=groups,
        official_splits=official_splits or {},
        report=report,
        meta=text_meta(meta, opts.text_features, vocab),
    )


def as_bool(value: Any, name: str) -> bool:
    """Accept real booleans and the strings a CLI or YAML may give (true/false/yes/no/1/0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise DataError(f"option {name} must be true or false, got {value!r}")


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    """A source option as an int (the one integer check of cmhash.validation, raising DataError)."""
    from cmhash.validation import positive_int

    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return positive_int(value, f"option {name}", minimum=-(2**63) if minimum is None else minimum, error=DataError)


def as_list(value: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (empty items removed)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    v = str(value).strip().lower()
    if v not in allowed:
        raise DataError(f"option {name} must be one of {', '.join(allowed)}, got {value!r}")
    return v


def first_duplicate(items: Iterable[Any]) -> Any | None:
    """The first item seen twice, or None."""
    seen: set = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None


# ----------------------------------------------------------------------------- paths
def resolve(root: Path, path: str | os.PathLike) -> Path:
    """A path relative to the data root (absolute paths are kept)."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else root / p


def find_first(root: Path, candidates: Iterable[str], what: str, given: str | os.PathLike | None = None, required: bool = True, kind: str = "file") -> Path | None:
    """The given path (which must exist) or the first existing candidate under ``root``."""
    test = Path.is_dir if kind == "dir" else Path.is_file
    if given is not None:
        p = resolve(root, given)
        if not test(p):
            raise MissingFileError(f"{p}: {what} not found")
        return p
    cands = list(candidates)
    for c in cands:
        p = root / c
        if test(p):
            return p
    if required:
        raise MissingFileError(f"{root}: no {what} found (looked for {', '.join(cands)}); pass its path as an option")
    return None


def read_lines(path: Path, what: str = "file") -> list[str]:
    """Lines of a UTF-8 text file without line ends; trailing blank lines removed."""
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc}); re-save it as UTF-8") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


# ----------------------------------------------------------------------------- images
def image_problem(path: str | os.PathLike, check: str) -> str | None:
    """Drop reason for ``path`` (``missing_image`` / ``unreadable_image``) or None.

    ``check``: ``open`` parses the header (fast: no pixel decoding), ``exists`` only stats the
    file, ``none`` trusts the listing. A JPEG truncated after its header passes; it is decoded
    as far as the data goes when loaded (see :func:`cmhash.data.imageio.open_rgb`).
    """
    if check == "none":
        return None
    if not os.path.isfile(path):
        return "missing_image"
    if check == "open":
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.size  # noqa: B018 - the header is parsed by open()
        except Exception:
            return "unreadable_image"
    return None


class ImageChecker:
    """Applies the image policy row by row: keep, drop and report, or raise under ``strict``.

    Results are cached per path, so five captions of one image cost one check, and each folder
    is listed once, so a missing file costs a set lookup instead of a ``stat`` (44k rows with
    36k missing images check in about a second).
    """

    def __init__(self, source: str, report: LoadReport, strict: bool = False, check: str = "open", total: int | None = None):
        self.source = source
        self.report = report
        self.strict = strict
        self.check = choice(check, "check_images", IMAGE_CHECKS)
        self._cache: dict[str, str | None] = {}
        self._listings: dict[str, frozenset[str] | None] = {}
        self._bar = None
        if total and total > 5000 and self.check != "none":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"{source}: checking images", unit="img", disable=None, leave=False)

    def _listed(self, path: str) -> bool:
        """False when ``path``'s folder listing proves it absent (cheap); True means "maybe there"."""
        folder, name = os.path.split(path)
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(folder or "."))
            except OSError:
                self._listings[folder] = frozenset()
        return name in self._listings[folder]

    def __call__(self, row: int, id: str, path: str | os.PathLike, where: str) -> bool:
        """True when the image of this row is usable; otherwise drop (or raise) and return False."""
        key = os.fspath(path)
        if key in self._cache:
            reason = self._cache[key]
        else:
            if self.check != "none" and not self._listed(key):
                reason = "missing_image"
            else:
                reason = image_problem(key, self.check)
            self._cache[key] = reason
            if self._bar is not None:
                self._bar.update(1)
        if reason is None:
            return True
        if self.strict:
            from cmhash.data.imageio import UnreadableImageError

            if reason == "missing_image":
                raise MissingFileError(
                    f"{self.source}: image {path} ({where}) does not exist (--strict). "
                    "Run without --strict to drop such pairs and see how many there are."
                )
            raise UnreadableImageError(
                f"{self.source}: image {path} ({where}) cannot be read as an image (--strict). "
                "Run without --strict to drop such pairs and see how many there are."
            )
        self.report.drop(row, id, reason, str(path))
        return False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def finish_report(report: LoadReport, n_kept: int) -> LoadReport:
    """Set the kept count and check that every listed pair is accounted for."""
    report.n_kept = int(n_kept)
    if report.n_listed != report.n_kept + len(report.dropped):
        raise AssertionError(
            f"{report.source}: {report.n_listed} listed != {report.n_kept} kept + {len(report.dropped)} dropped"
        )
    return report


def strict_row_error(source: str, where: str, problem: str) -> DataError:
    return DataError(f"{source}: {where}: {problem} (--strict). Run without --strict to drop such rows and see how many there are.")


# ----------------------------------------------------------------------------- tables
@dataclass
class Table:
    """Rows of a CSV or JSONL file as dicts, with the 1-based line of each row."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)
    repaired: int = 0

    def require(self, column: str, option: str) -> str:
        """Return ``column`` if present; otherwise an error listing the available columns."""
        if column not in self.columns:
            raise DataError(
                f"{self.path}: no column '{column}' (option {option}); available columns: {', '.join(self.columns)}"
            )
        return column


def read_table(path: Path, free_text_column: str | None = None) -> Table:
    """Read a ``.csv``/``.tsv`` (header row) or ``.jsonl``/``.json`` (one object per line) file.

    CSV rows with more fields than the header are repaired when ``free_text_column`` is given:
    the extra fields are unquoted commas inside that column and are joined back (counted in
    ``repaired``). Rows that still do not fit are listed in ``malformed``, never silently shifted.
    """
    if not path.is_file():
        raise MissingFileError(f"{path}: table not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            return _read_jsonl(path)
        return _read_csv(path, free_text_column, delimiter="\t" if suffix == ".tsv" else ",")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc}); re-save it as UTF-8") from exc


def _read_csv(path: Path, free_text_column: str | None, delimiter: str) -> Table:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty (expected a header row)")
        columns = [h.strip() for h in header]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise DataError(f"{path}: duplicate column name(s) in the header: {', '.join(dupes)}")
        table = Table(path, columns)
        width = len(columns)
        j = columns.index(free_text_column) if free_text_column in columns else None
        end = reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num
            if end > start and any("\n" in f or "\r" in f for f in fields):
                _check_closed_quotes(path, start, delimiter)
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) > width and j is not None:
                extra = len(fields) - width
                fields = fields[:j] + [delimiter.join(fields[j : j + extra + 1])] + fields[j + extra + 1 :]
                table.repaired += 1
            if len(fields) != width:
                table.malformed.append((line, f"{len(fields)} fields, the header has {width}"))
                continue
            table.rows.append(dict(zip(columns, fields)))
            table.lines.append(line)
    return table


def _check_closed_quotes(path: Path, start: int, delimiter: str) -> None:
    """A row that spans lines is fine when its quotes close; an unterminated quote (which would
    swallow every following row into one field) is an error naming the line where it opens."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        tail = fh.read().splitlines(keepends=True)[start - 1 :]
    reader = csv.reader(tail, delimiter=delimiter, strict=True)
    try:
        next(reader, None)
    except csv.Error:
        raise DataError(
            f"{path}, line {start}: a quoted field opens here and is never closed, so the rows after it would be "
            "read as part of it; close the quote (or double it, \"\", inside a quoted field)"
        ) from None


def _read_jsonl(path: Path) -> Table:
    table = Table(path, [])
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                table.malformed.append((line_no, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                table.malformed.append((line_no, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            for k in obj:
                seen.setdefault(str(k), None)
            table.rows.append({str(k): v for k, v in obj.items()})
            table.lines.append(line_no)
    table.columns = list(seen)
    return table


def cell_text(value: Any) -> str:
    """A table cell as stripped text (None and NaN-like empties become '')."""
    if value is None:
        return ""
    if isinstance(value, float) and not np.isfinite(value):
        return ""
    return str(value).strip()


# ----------------------------------------------------------------------------- labels
def _cell_tags(value: Any, separator: str) -> list[str] | None:
    """Tags of one cell when it is a list or a separated string; None for a plain category."""
    if isinstance(value, (list, tuple)):
        return [cell_text(v) for v in value if cell_text(v)]
    text = cell_text(value)
    if separator in text:
        return [t.strip() for t in text.split(separator) if t.strip()]
    return None


def label_matrix(rows: Sequence[dict[str, Any]], columns: Sequence[str], separator: str = ";", allow_tags: bool = True) -> tuple[np.ndarray, list[str], list[str]]:
    """Label columns -> (multi-hot uint8 matrix, label names, kind per column).

    A column whose cells hold lists or ``separator``-separated tags is a multi-hot tag column;
    any other column is categorical (one-hot block over its distinct values). Values are sorted
    within each block so the label order is deterministic. With several columns, names are
    ``column=value``. Empty cells give no label in that block. ``allow_tags=False`` treats every
    column as categorical (a value containing the separator is then one category).
    """
    blocks, names, kinds = [], [], []
    for col in columns:
        cells = [r.get(col) for r in rows]
        tagged = allow_tags and any(_cell_tags(c, separator) is not None for c in cells)
        per_row: list[list[str]] = []
        for c in cells:
            if tagged:
                tags = _cell_tags(c, separator)
                per_row.append(tags if tags is not None else ([cell_text(c)] if cell_text(c) else []))
            else:
                per_row.append([cell_text(c)] if cell_text(c) else [])
        values = sorted({v for vs in per_row for v in vs})
        index = {v: k for k, v in enumerate(values)}
        block = np.zeros((len(rows), len(values)), dtype=np.uint8)
        for i, vs in enumerate(per_row):
            for v in vs:
                block[i, index[v]] = 1
        blocks.append(block)
        names.extend(values if len(columns) == 1 else [f"{col}={v}" for v in values])
        kinds.append("tags" if tagged else "categorical")
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.uint8)
    return matrix, names, kinds


# ----------------------------------------------------------------------------- text features
def featurize_texts(
    texts_all: Sequence[str],
    kept: np.ndarray,
    text_features: str | None,
    *,
    min_count: int,
    vocabulary: str | os.PathLike | None,
    kind: str,
    max_vocab: int | None = None,
):
    """Optional model-free text features for the kept rows: returns (features or None, Vocabulary or None).

    The vocabulary is built over *every listed* text (before pairs are dropped for missing
    images), so it does not depend on which images a copy happens to have; on MIRFlickr this
    gives the standard 1,386-d tag vector. ``vocabulary`` loads a saved one instead.
    """
    from cmhash.data.text import Vocabulary

    mode = choice("none" if text_features is None else text_features, "text_features", TEXT_FEATURES + ("raw",))
    if mode in ("none", "raw"):
        if vocabulary is not None:
            raise DataError("option vocabulary needs text_features=bow, count or tfidf")
        return None, None
    if vocabulary is not None:
        vocab = Vocabulary.load(vocabulary)
        if vocab.kind != kind:
            raise DataError(f"{vocabulary}: a '{vocab.kind}' vocabulary cannot featurise '{kind}' texts")
    else:
        vocab = Vocabulary.build(texts_all, min_count=as_int(min_count, "min_count", 1), kind=kind, max_size=max_vocab)
    weighting = {"bow": "binary", "count": "count", "tfidf": "tfidf"}[mode]
    feats = vocab.transform([texts_all[int(i)] for i in kept], weighting=weighting)
    return feats, vocab


def text_meta(meta: dict[str, Any], text_features: str | None, vocab) -> dict[str, Any]:
    """Record the text-feature recipe (and the vocabulary itself) in the dataset's meta."""
    if vocab is not None:
        meta["text_features"] = f"{vocab.kind}-{text_features}-{len(vocab)}"
        meta["vocabulary"] = vocab.to_dict()
    return meta
