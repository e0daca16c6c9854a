"""A user's own collection: an image folder plus a manifest (CSV or JSONL) with a text column.

``manifest``: a ``.csv`` / ``.tsv`` (header row) or ``.jsonl`` (one JSON object per line) file,
relative to ``root``; by default the only ``*.csv``/``*.tsv``/``*.jsonl`` file in ``root``.
Columns:

* ``image_column`` (default ``image``): the image path, relative to ``images_dir`` (default: the
  manifest's folder) or absolute;
* ``text_column`` (default ``text``, else ``caption``): the text of the pair;
* ``label_columns`` (optional, ``a,b``): each categorical column becomes a one-hot block; a column
  whose cells hold ``;``-separated tags (or JSON lists) becomes a multi-hot block;
* ``id_column`` (default ``id`` when present): unique pair ids; otherwise ids are the image path
  (with ``#k`` appended when an image has several rows).

An image listed on several rows (several captions) gives one pair per row, all in one group
(``groups`` = the image path), which Recall@K uses as relevance. ``text_kind`` is ``sentence``
(default), ``tags`` (comma-separated) or ``document``.

Policies: missing/unreadable images are dropped and reported (``strict`` fails on the first);
rows with an empty text are dropped (``no_text``); with label columns, rows without any label
are dropped (``no_labels``, ``keep_unlabeled`` keeps them); malformed rows are dropped
(``malformed_row``; ``strict`` fails); repeated ids are an error.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import TEXT_KINDS, LoadReport, PairedDataset
from cmhash.data.sources._common import (
    ImageChecker,
    SourceOptions,
    as_list,
    assemble,
    cell_text,
    check_options,
    choice,
    common_options,
    finish_report,
    first_duplicate,
    label_matrix,
    read_table,
    resolve,
    strict_row_error,
)
from cmhash.errors import DataError, MissingFileError

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
TEXT_COLUMN_DEFAULTS = ("text", "caption")


def find_manifest(root: Path, manifest: str | None) -> Path:
    if manifest is not None:
        path = resolve(root, manifest)
        if not path.is_file():
            raise MissingFileError(f"{path}: manifest not found (option manifest)")
        return path
    if root.is_file():
        return root
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise MissingFileError(f"{root}: no manifest (.csv/.tsv/.jsonl) found; pass manifest=PATH (CLI: --manifest)")
    raise DataError(f"{root}: several possible manifests ({', '.join(p.name for p in found)}); choose one with manifest=PATH (CLI: --manifest)")


@SOURCES.register("folder")
@common_options(check_images="open", keep_unlabeled=False, text_features=None, min_count=5, vocabulary=None)
def load_folder(
    root,
    *,
    strict: bool = False,
    manifest: str | None = None,
    images_dir: str | None = None,
    image_column: str = "image",
    text_column: str | None = None,
    label_columns=None,
    id_column: str | None = None,
    text_kind: str = "sentence",
    label_separator: str = ";",
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """Your own pairs: an image folder + a CSV/JSONL manifest with image, text and optional label columns."""
    check_options("folder", load_folder, unused)
    root = Path(root)
    kind = choice(text_kind, "text_kind", TEXT_KINDS)
    path = find_manifest(root, manifest)
    if text_column is None:
        probe = read_table(path)
        text_column = next((c for c in TEXT_COLUMN_DEFAULTS if c in probe.columns), None)
        if text_column is None:
            raise DataError(
                f"{path}: no text column (looked for {', '.join(TEXT_COLUMN_DEFAULTS)}); pass text_column "
                f"(CLI: --text-column); available columns: {', '.join(probe.columns)}"
            )
    table = read_table(path, free_text_column=text_column)
    if not table.rows and not table.malformed:
        raise DataError(f"{path}: the manifest has no rows")
    table.require(image_column, "image_column")
    table.require(text_column, "text_column")
    if id_column is None and "id" in table.columns:
        id_column = "id"
    if id_column is not None:
        table.require(id_column, "id_column")
    label_cols = as_list(label_columns)
    for col in label_cols:
        table.require(col, "label_columns")
        if col in (image_column, text_column):
            raise DataError(f"{path}: column '{col}' is the image or text column and cannot be a label column")
    if table.malformed and strict:
        line, what = table.malformed[0]
        raise strict_row_error("folder", f"{path}, line {line}", what)

    base = resolve(root, images_dir) if images_dir is not None else path.parent
    if not base.is_dir():
        raise MissingFileError(f"{base}: image folder not found (option images_dir)")
    base_s = os.fspath(base)
    labels, names, kinds = label_matrix(table.rows, label_cols, separator=label_separator) if label_cols else (None, None, [])

    report = LoadReport("folder", n_listed=len(table.rows) + len(table.malformed))
    for line, what in table.malformed:
        report.drop(-1, f"line {line}", "malformed_row", f"{path.name} line {line}: {what}")
    if table.repaired:
        report.notes.append(f"{table.repaired} rows had unquoted commas in {text_column}; the extra fields were joined back into the text")
    checker = ImageChecker("folder", report, strict=strict, check=opts.check_images, total=len(table.rows))
    keep, paths = [], []
    try:
        for i, row in enumerate(table.rows):
            where = f"{path.name} line {table.lines[i]}"
            rel = cell_text(row.get(image_column))
            rid = cell_text(row.get(id_column)) if id_column else rel
            if not rel:
                if strict:
                    raise strict_row_error("folder", where, f"empty {image_column}")
                report.drop(i, rid or where, "malformed_row", f"{where}: empty {image_column}")
                continue
            if not cell_text(row.get(text_column)):
                report.drop(i, rid, "no_text", f"{where}: empty {text_column}")
                continue
            if labels is not None and not opts.keep_unlabeled and labels[i].sum() == 0:
                report.drop(i, rid, "no_labels", f"{where}: empty {', '.join(label_cols)}")
                continue
            img = os.path.normpath(os.path.join(base_s, os.path.expanduser(rel)))
            if checker(i, rid, img, where):
                keep.append(i)
                paths.append(img)
    finally:
        checker.close()
    finish_report(report, len(keep))
    kept = np.asarray(keep, dtype=np.int64)

    groups = None
    if id_column:
        ids = [cell_text(table.rows[i].get(id_column)) for i in kept]
        empty = next((table.lines[i] for i, x in zip(kept, ids) if not x), None)
        if empty is not None:
            raise DataError(f"{path}, line {empty}: empty {id_column}")
        dup = first_duplicate(ids)
        if dup is not None:
            lines = [table.lines[i] for i, x in zip(kept, ids) if x == dup][:3]
            raise DataError(f"{path}: id '{dup}' appears on several rows (lines {', '.join(map(str, lines))}); ids must be unique")
    else:
        rels = [cell_text(table.rows[i].get(image_column)) for i in kept]
        totals, seen, ids = Counter(rels), Counter(), []
        for r in rels:
            ids.append(f"{r}#{seen[r]}" if totals[r] > 1 else r)
            seen[r] += 1
    if len(set(paths)) < len(paths):
        groups = np.asarray([os.path.relpath(p, base_s) for p in paths], dtype=str)
        report.notes.append(f"{len(paths)} pairs show {len(set(paths))} distinct images; pairs of one image share a group")

    texts_all = [cell_text(r.get(text_column)) for r in table.rows]
    meta = {
        "source": "folder",
        "root": str(root),
        "manifest": str(path),
        "image_dir": base_s,
        "text_column": text_column,
        "label_columns": dict(zip(label_cols, kinds)),
    }
    return assemble(
        "folder", opts=opts, ids=ids, paths=paths, texts_all=texts_all, kept=kept, text_kind=kind, meta=meta, report=report,
        labels=None if labels is None else labels[kept], label_names=names, groups=groups,
    )
