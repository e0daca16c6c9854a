"""MIRFlickr-25K, cleaned 20,015-pair set: the ``all_*.txt`` format or the DJSRH/DCMH ``.mat`` files.

``all_*.txt`` format, files under ``root``: ``all_imgs.txt`` (``mirflickr/imN.jpg`` per line),
``all_tags.txt`` (comma-separated raw tags), ``all_labels.txt`` (24 space-separated 0/1 flags),
optional ``label_names_24.txt``. Line i of each file is pair i. Images are matched on file name
inside ``images_dir`` (default: the first of ``images128/``, ``images/``, ``mirflickr/`` that
exists). Without ``all_imgs.txt`` the ``.mat`` layouts are read instead (see
:mod:`.mirflickr_mat`); ``format`` forces one (``txt`` or ``mat``).

Text: raw tags (``texts``, ``text_kind="tags"``) plus, by default, the binary tag bag-of-words
over tags present in at least ``min_count`` (15) of *all listed* lines, i.e. the standard 1,386-d
vector, built before any pair is dropped (``text_features``: bow, count, tfidf or none;
``vocabulary``: a saved vocabulary to use instead).

Policies: missing/unreadable images are dropped and reported (``strict`` fails on the first);
pairs without any label are dropped (``no_labels``; ``keep_unlabeled`` keeps them); pairs whose
tag line is empty are dropped (``no_text``).
"""

from __future__ import annotations

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
    first_duplicate,
    finish_report,
    read_lines,
)
from cmhash.errors import DataError, MissingFileError

IMAGE_DIR_CANDIDATES = ("images128", "images", "mirflickr")
TXT_FILES = ("all_imgs.txt", "all_tags.txt", "all_labels.txt")
LABEL_NAME_FILES = ("label_names_24.txt", "label_names.txt")


def read_labels_txt(path: Path) -> np.ndarray:
    """Space-separated 0/1 flags per line -> uint8 matrix; errors name the line."""
    rows = []
    width = None
    for lineno, line in enumerate(read_lines(path, "label file"), 1):
        fields = line.split()
        try:
            vals = [float(f) for f in fields]
        except ValueError:
            raise DataError(f"{path}, line {lineno}: labels must be numbers, got {line!r}") from None
        if width is None:
            width = len(vals)
            if width == 0:
                raise DataError(f"{path}, line 1: no label values")
        if len(vals) != width:
            raise DataError(f"{path}, line {lineno}: {len(vals)} label columns, expected {width} (as on line 1)")
        if any(v not in (0.0, 1.0) for v in vals):
            raise DataError(f"{path}, line {lineno}: labels must be 0/1, got {line!r}")
        rows.append(vals)
    if not rows:
        raise DataError(f"{path}: no label lines")
    return np.asarray(rows, dtype=np.uint8)


@SOURCES.register("mirflickr")
def load_mirflickr(root, *, strict: bool = False, format: str = "auto", **options) -> PairedDataset:
    """MIRFlickr-25K: all_imgs/all_tags/all_labels.txt + image folder, or the DJSRH/DCMH .mat files; 24 labels."""
    root = Path(root)
    fmt = choice(format, "format", ("auto", "txt", "mat"))
    if fmt == "auto":
        from cmhash.data.sources import mirflickr_mat

        if (root / "all_imgs.txt").is_file():
            fmt = "txt"
        elif mirflickr_mat.has_files(root):
            fmt = "mat"
        else:
            raise MissingFileError(
                f"{root}: no MIRFlickr files found: expected all_imgs.txt/all_tags.txt/all_labels.txt "
                "(+ an image folder) or the .mat files mirflickr25k-iall.mat/-yall.mat/-lall.mat or FLICKR-25K.mat"
            )
    if fmt == "mat":
        from cmhash.data.sources.mirflickr_mat import load_mirflickr_mat

        return load_mirflickr_mat(root, strict=strict, **options)
    return load_mirflickr_txt(root, strict=strict, **options)


@common_options(text_features="bow", min_count=15, vocabulary=None, check_images="open", keep_unlabeled=False)
def load_mirflickr_txt(
    root,
    *,
    strict: bool = False,
    images_dir: str | None = None,
    label_names: str | None = None,
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """Load MIRFlickr from the all_*.txt files; see the module docstring."""
    check_options("mirflickr (all_*.txt format)", load_mirflickr_txt, unused)
    root = Path(root)
    imgs, tags = (read_lines(root / f, f"MIRFlickr {f}") for f in TXT_FILES[:2])
    labels = read_labels_txt(root / "all_labels.txt")
    if not (len(imgs) == len(tags) == len(labels)):
        raise DataError(
            f"{root}: all_imgs.txt has {len(imgs)} lines, all_tags.txt {len(tags)}, all_labels.txt {len(labels)}; "
            "they must match (line i of each file is pair i)"
        )
    names_file = find_first(root, LABEL_NAME_FILES, "label-name file", label_names, required=False)
    names = [l.strip() for l in read_lines(names_file) if l.strip()] if names_file else None
    if names is not None and len(names) != labels.shape[1]:
        raise DataError(f"{names_file}: {len(names)} names for {labels.shape[1]} label columns in all_labels.txt")
    img_dir = find_first(root, IMAGE_DIR_CANDIDATES, "image folder", images_dir, kind="dir")

    report = LoadReport("mirflickr", n_listed=len(imgs))
    checker = ImageChecker("mirflickr", report, strict=strict, check=opts.check_images, total=len(imgs))
    keep, paths, ids = [], [], []
    try:
        for i, rel in enumerate(imgs):
            name = Path(rel.strip().replace("\\", "/")).name
            if not name:
                raise DataError(f"{root / 'all_imgs.txt'}, line {i + 1}: empty image name")
            pid = Path(name).stem
            if not opts.keep_unlabeled and labels[i].sum() == 0:
                report.drop(i, pid, "no_labels", f"all_labels.txt line {i + 1}")
                continue
            if not tags[i].strip():
                report.drop(i, pid, "no_text", f"all_tags.txt line {i + 1} is empty")
                continue
            path = img_dir / name
            if not checker(i, pid, path, f"line {i + 1} of all_imgs.txt"):
                continue
            keep.append(i)
            paths.append(path)
            ids.append(pid)
    finally:
        checker.close()
    kept = np.asarray(keep, dtype=np.int64)
    finish_report(report, len(kept))
    dup = first_duplicate(ids)
    if dup is not None:
        raise DataError(f"{root / 'all_imgs.txt'}: image {dup} is listed more than once")
    meta = {"source": "mirflickr", "root": str(root), "format": "all_txt", "image_dir": str(img_dir)}
    return assemble(
        "mirflickr", opts=opts, ids=ids, paths=paths, texts_all=tags, kept=kept, text_kind="tags", meta=meta, report=report,
        labels=labels[kept], label_names=names,
    )


def _options_from():
    from cmhash.data.sources.matlayout import load_mat_layout

    return (load_mirflickr, load_mirflickr_txt, load_mat_layout)


load_mirflickr.options_from = _options_from  # type: ignore[attr-defined]
