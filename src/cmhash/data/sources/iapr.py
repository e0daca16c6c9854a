"""IAPR TC-12 (Grubinger et al. 2006): images + one ``.eng`` annotation file per image + label lists.

Files under ``root``:

* annotations: ``annotations_complete_eng/**/<id>.eng`` (or ``annotations=DIR``), one SGML-like
  record per image::

      <DOC>
      <DOCNO>annotations/00/25.eng</DOCNO>
      <TITLE>Plaza de Armas</TITLE>
      <DESCRIPTION>a yellow building with white columns in the background; ...</DESCRIPTION>
      ...
      <IMAGE>images/00/25.jpg</IMAGE>
      </DOC>

  The files of the distribution are ISO-8859-1 and contain unescaped ``&``, so they are read
  with a tolerant tag reader (UTF-8 first, then Latin-1), not an XML parser.
* images: the ``<IMAGE>`` path relative to ``root`` (``images_dir`` replaces its folder part:
  ``images_dir/<sub>/<id>.jpg``).
* labels (optional, ``labels=FILE``, default ``labels.txt`` if present), one of two layouts
  (``labels_format``):

  * ``image`` (default): ``<image id> <label> [<label> ...]`` per line; labels are names, or
    numbers mapped through ``label_names`` (a ``wlist.txt``-style file, ``<number> <name>``);
  * ``regions``: the segmented SAIAPR TC-12 ``labels.txt``, ``<image id> <region> <label number>``
    per line; an image's labels are those of its regions.

  Without a labels file the dataset has no labels (pair identity only) and says so in its notes.

Text = ``DESCRIPTION`` (``text_field``: ``description``, ``title`` or ``title+description``),
``text_kind="sentence"``.

Policies: a ``.eng`` file without ``<DOC>``/``<DESCRIPTION>`` is dropped as ``malformed_row``;
an empty text is ``no_text``; a repeated image id is ``duplicate_id``; pairs without any label
(when labels are given) are ``no_labels`` (``keep_unlabeled`` keeps them); missing or
unreadable images are dropped and reported. ``strict`` fails on the first of these, naming the
file (and line for the label file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.sources._common import (
    ImageChecker,
    SourceOptions,
    assemble,
    check_options,
    choice,
    common_options,
    find_first,
    finish_report,
    read_lines,
    strict_row_error,
)
from cmhash.errors import DataError

ANNOTATION_DIRS = ("annotations_complete_eng", "annotations")
LABEL_FILES = ("labels.txt", "image_labels.txt")
LABEL_NAME_FILES = ("wlist.txt", "label_names.txt")
TEXT_FIELDS = ("description", "title", "title+description")
_TAG = {t: re.compile(rf"<{t}>(.*?)</{t}>", re.S | re.I) for t in ("DOC", "DOCNO", "TITLE", "DESCRIPTION", "IMAGE")}


def read_eng(path: Path) -> dict[str, str] | None:
    """Fields of one ``.eng`` record (lower-case keys), or None when it is not one."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    doc = _TAG["DOC"].search(text)
    if doc is None:
        return None
    body = doc.group(1)
    out = {}
    for tag in ("DOCNO", "TITLE", "DESCRIPTION", "IMAGE"):
        m = _TAG[tag].search(body)
        out[tag.lower()] = " ".join(m.group(1).split()) if m else None
    if out["description"] is None:
        return None
    return out


def _label_names(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    out = {}
    for lineno, line in enumerate(read_lines(path, "label-name file"), 1):
        fields = line.split(None, 1)
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}, line {lineno}: expected '<number> <name>', got {line!r}")
        out[fields[0]] = fields[1].strip()
    return out


def read_label_lists(path: Path, fmt: str, names: dict[str, str]) -> dict[str, set[str]]:
    """Image id -> set of label names, from an ``image`` or ``regions`` label file."""
    out: dict[str, set[str]] = {}
    for lineno, line in enumerate(read_lines(path, "label file"), 1):
        fields = line.split()
        if not fields:
            continue
        if fmt == "regions":
            if len(fields) != 3:
                raise DataError(f"{path}, line {lineno}: expected '<image id> <region> <label number>' (labels_format=regions), got {line!r}")
            image, labs = fields[0], [fields[2]]
        else:
            if len(fields) < 2:
                raise DataError(f"{path}, line {lineno}: expected '<image id> <label> [<label> ...]', got {line!r}")
            image, labs = fields[0], fields[1:]
        out.setdefault(image, set()).update(names.get(x, x) for x in labs)
    return out


@SOURCES.register("iapr")
@common_options(check_images="open", keep_unlabeled=False, text_features=None, min_count=5, vocabulary=None)
def load_iapr(
    root,
    *,
    strict: bool = False,
    annotations: str | None = None,
    images_dir: str | None = None,
    labels: str | None = None,
    labels_format: str = "image",
    label_names: str | None = None,
    text_field: str = "description",
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """IAPR TC-12: .eng annotation files (sentence descriptions) + images + optional label lists."""
    check_options("iapr", load_iapr, unused)
    root = Path(root)
    field = choice(text_field, "text_field", TEXT_FIELDS)
    lfmt = choice(labels_format, "labels_format", ("image", "regions"))
    ann_dir = find_first(root, ANNOTATION_DIRS, "annotation folder (.eng files)", annotations, kind="dir")
    files = sorted(ann_dir.rglob("*.eng"), key=lambda p: p.relative_to(ann_dir).as_posix())
    if not files:
        raise DataError(f"{ann_dir}: no .eng annotation files found")
    label_path = find_first(root, LABEL_FILES, "label file", labels, required=False)
    names_path = find_first(root, LABEL_NAME_FILES, "label-name file", label_names, required=False)
    label_sets = read_label_lists(label_path, lfmt, _label_names(names_path)) if label_path else None
    img_dir = None if images_dir is None else find_first(root, (), "image folder", images_dir, kind="dir")

    report = LoadReport("iapr", n_listed=len(files))
    checker = ImageChecker("iapr", report, strict=strict, check=opts.check_images, total=len(files))
    keep_ids, texts, paths, seen = [], [], [], set()
    try:
        for row, path in enumerate(files):
            rel = path.relative_to(ann_dir).as_posix()
            pid = path.stem
            rec = read_eng(path)
            if rec is None:
                if strict:
                    raise strict_row_error("iapr", str(path), "not an IAPR record (expected <DOC> ... <DESCRIPTION> ... </DOC>)")
                report.drop(row, pid, "malformed_row", f"{rel}: no <DOC>/<DESCRIPTION>")
                continue
            if pid in seen:
                if strict:
                    raise strict_row_error("iapr", str(path), f"image id {pid} already listed")
                report.drop(row, pid, "duplicate_id", f"{rel}: image id {pid} already listed")
                continue
            seen.add(pid)
            title, desc = rec["title"] or "", rec["description"] or ""
            text = {"description": desc, "title": title, "title+description": f"{title}. {desc}".strip(". ")}[field]
            if not text.strip(" ;."):
                report.drop(row, pid, "no_text", f"{rel}: empty {field}")
                continue
            if label_sets is not None and not opts.keep_unlabeled and not label_sets.get(pid):
                report.drop(row, pid, "no_labels", f"{rel}: image {pid} has no label in {label_path.name}")
                continue
            sub = Path(path.relative_to(ann_dir)).parent
            if img_dir is not None:
                image = img_dir / sub / f"{pid}.jpg"
            elif rec["image"]:
                image = root / rec["image"]
            else:
                image = root / "images" / sub / f"{pid}.jpg"
            if checker(row, pid, image, rel):
                keep_ids.append(pid)
                texts.append(text)
                paths.append(os.fspath(image))
    finally:
        checker.close()
    finish_report(report, len(keep_ids))

    label_matrix, names = None, None
    if label_sets is not None:
        names = sorted({x for labs in label_sets.values() for x in labs}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
        col = {n: j for j, n in enumerate(names)}
        label_matrix = np.zeros((len(keep_ids), len(names)), dtype=np.uint8)
        for i, pid in enumerate(keep_ids):
            for x in label_sets.get(pid, ()):
                label_matrix[i, col[x]] = 1
        unknown = len(set(label_sets) - seen)
        if unknown:
            report.notes.append(f"{label_path.name}: {unknown} image ids have no .eng file")
    else:
        report.notes.append("no label file (labels.txt): no labels, pair identity only; pass labels=FILE")
    meta = {"source": "iapr", "root": str(root), "annotations": str(ann_dir), "labels": None if label_path is None else str(label_path), "text_field": field}
    # text features over the kept descriptions (texts_all = the kept ones), as this reader always did
    return assemble(
        "iapr", opts=opts, ids=keep_ids, paths=paths, texts_all=texts, kept=np.arange(len(texts)), text_kind="sentence", meta=meta,
        report=report, labels=label_matrix, label_names=names,
    )
