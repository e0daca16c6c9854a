"""Fashion Product Images (Myntra catalogue, Kaggle; full or "small" version).

Files under ``root``: ``styles.csv`` (or ``styles=PATH``) with at least ``id``,
``productDisplayName`` and the label column, and the images either named by an ``image_file``
column (relative to ``root``) or as ``<id>.jpg`` in ``images_dir`` (default: the first of
``images/``, ``images_60x80/`` that exists). Both the Kaggle columns (``id, gender,
masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName``) and the repackaged ones (``id, image_file, ...``) are read.

* text = ``productDisplayName`` (``text_column``), ``text_kind="sentence"``;
* labels = one-hot of ``label_column`` (default ``subCategory``; any other column such as
  ``masterCategory``, ``gender``, ``articleType``, ``baseColour``, ``season``, ``usage``;
  several columns separated by commas give concatenated one-hot blocks named ``column=value``).
  The label set is every value seen in the listed rows, sorted, so it does not depend on which
  images a copy has.

Policies: rows with extra fields (unquoted commas in ``productDisplayName``, as in Kaggle's
styles.csv) are repaired by joining the extra fields back into the title and counted; rows that
still do not fit are dropped as ``malformed_row``; rows with an empty title are dropped
(``no_text``); rows with an empty label are dropped (``no_labels``, ``keep_unlabeled`` keeps
them); repeated ids are dropped (``duplicate_id``); missing/unreadable images are dropped and
reported. ``strict`` fails on the first malformed row or missing/unreadable image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.sources._common import (
    ImageChecker,
    SourceOptions,
    as_list,
    assemble,
    cell_text,
    check_options,
    common_options,
    find_first,
    finish_report,
    label_matrix,
    read_table,
    strict_row_error,
)
from cmhash.errors import DataError

IMAGE_DIRS = ("images", "images_60x80")
LABEL_COLUMNS = ("masterCategory", "subCategory", "articleType", "gender", "baseColour", "season", "usage", "year")


@SOURCES.register("fashion")
@common_options(check_images="open", keep_unlabeled=False, text_features=None, min_count=5, vocabulary=None)
def load_fashion(
    root,
    *,
    strict: bool = False,
    styles: str = "styles.csv",
    images_dir: str | None = None,
    label_column: str = "subCategory",
    text_column: str = "productDisplayName",
    id_column: str = "id",
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """Fashion Product Images: styles.csv + images; product titles, one-hot labels from a chosen column."""
    check_options("fashion", load_fashion, unused)
    root = Path(root)
    styles_path = find_first(root, (), "styles file", styles)
    table = read_table(styles_path, free_text_column=text_column)
    table.require(id_column, "id_column")
    table.require(text_column, "text_column")
    label_cols = as_list(label_column)
    if not label_cols:
        raise DataError("fashion: option label_column is empty; name a column such as subCategory")
    for col in label_cols:
        if col in (id_column, text_column, "image_file"):
            raise DataError(f"fashion: '{col}' cannot be a label column; choose one of: {', '.join(c for c in table.columns if c not in (id_column, text_column, 'image_file'))}")
        table.require(col, "label_column")
    if table.malformed and strict:
        line, what = table.malformed[0]
        raise strict_row_error("fashion", f"{styles_path}, line {line}", what)

    use_column = "image_file" in table.columns and images_dir is None
    img_dir = None if use_column else find_first(root, IMAGE_DIRS, "image folder", images_dir, kind="dir")

    labels, names, _kinds = label_matrix(table.rows, label_cols, allow_tags=False)
    n_rows = len(table.rows)
    report = LoadReport("fashion", n_listed=n_rows + len(table.malformed))
    for line, what in table.malformed:
        report.drop(-1, f"line {line}", "malformed_row", f"{styles_path.name} line {line}: {what}")
    if table.repaired:
        report.notes.append(f"{table.repaired} rows had unquoted commas in {text_column}; the extra fields were joined back into the title")

    checker = ImageChecker("fashion", report, strict=strict, check=opts.check_images, total=n_rows)
    root_s = os.fspath(root)
    keep, paths, ids, seen = [], [], [], set()
    try:
        for i, row in enumerate(table.rows):
            pid = cell_text(row.get(id_column))
            where = f"{styles_path.name} line {table.lines[i]}"
            if not pid:
                report.drop(i, where, "malformed_row", f"{where}: empty {id_column}")
                continue
            if pid in seen:
                report.drop(i, pid, "duplicate_id", f"{where}: id {pid} already listed")
                continue
            seen.add(pid)
            if not cell_text(row.get(text_column)):
                report.drop(i, pid, "no_text", f"{where}: empty {text_column}")
                continue
            if not opts.keep_unlabeled and labels[i].sum() == 0:
                report.drop(i, pid, "no_labels", f"{where}: empty {', '.join(label_cols)}")
                continue
            rel = cell_text(row.get("image_file")) if use_column else ""
            if rel:
                path = os.path.normpath(os.path.join(root_s, rel))
            else:
                if img_dir is None:  # an empty image_file cell: fall back to <images_dir>/<id>.jpg
                    img_dir = find_first(root, IMAGE_DIRS, "image folder", None, kind="dir")
                path = os.path.join(img_dir, f"{pid}.jpg")
            if checker(i, pid, path, where):
                keep.append(i)
                paths.append(path)
                ids.append(pid)
    finally:
        checker.close()
    finish_report(report, len(keep))
    kept = np.asarray(keep, dtype=np.int64)
    texts_all = [cell_text(r.get(text_column)) for r in table.rows]
    meta = {
        "source": "fashion",
        "root": str(root),
        "styles": str(styles_path),
        "label_column": ",".join(label_cols),
        "image_dir": None if img_dir is None else str(img_dir),
    }
    return assemble(
        "fashion", opts=opts, ids=ids, paths=paths, texts_all=texts_all, kept=kept, text_kind="sentence",
        meta=meta, report=report, labels=labels[kept], label_names=names,
    )
