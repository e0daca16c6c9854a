"""Flickr8k (Hodosh, Young & Hockenmaier 2013): 8,091 images with 5 English captions each.

Files under ``root``:

* captions, either the CSV ``captions.txt`` (header ``image,caption``; one row per caption) or
  the official ``Flickr8k.token.txt`` (``image.jpg#k<TAB>caption``), also looked for in
  ``Flickr8k_text/``; or pass ``captions=PATH``;
* the official split lists ``Flickr_8k.trainImages.txt``, ``Flickr_8k.devImages.txt``,
  ``Flickr_8k.testImages.txt`` (6,000/1,000/1,000 file names) in ``splits/``, ``Flickr8k_text/``
  or ``root`` (or ``splits_dir=PATH``);
* the images, matched on file name in ``images_dir`` (default: the first of ``images224/``,
  ``Images/``, ``images/``, ``Flicker8k_Dataset/``, ``Flickr8k_Dataset/`` that exists).

One record per (image, caption) pair: ``ids`` are ``image#k``, ``groups`` the image file name
(the five captions of an image are relevant to it and to each other for Recall@K), no labels,
``text_kind="sentence"``. ``first_caption_only=True`` keeps one record per image.

Official splits: ``train``, ``dev``, ``test`` (all records of the listed images) and, for
``--protocol official``, ``query = database = test`` and ``train = train`` (the usual 1k-image
test protocol). Images missing from the folder are dropped and reported (``strict`` fails);
so are empty captions (``no_text``) and malformed caption lines (``malformed_row``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.sources._common import (
    ImageChecker,
    SourceOptions,
    as_bool,
    assemble,
    check_options,
    common_options,
    find_first,
    finish_report,
    read_lines,
    strict_row_error,
)
from cmhash.errors import DataError

CAPTION_FILES = ("captions.txt", "Flickr8k.token.txt", "Flickr8k_text/Flickr8k.token.txt", "captions.csv")
IMAGE_DIRS = ("images224", "Images", "images", "Flicker8k_Dataset", "Flickr8k_Dataset")
SPLIT_DIRS = ("splits", "Flickr8k_text", ".")
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
IMAGE_COLUMNS = ("image", "image_name", "filename", "file_name")
CAPTION_COLUMNS = ("caption", "comment", "sentence", "text")


def read_captions(path: Path) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, str]]]:
    """(records, malformed): records are (line, image name, caption number, caption).

    Accepts the official token format (``name#k<TAB>caption``) and CSV/``|``-separated files with
    a header naming an image and a caption column. Malformed lines are returned, not dropped
    silently.
    """
    lines = read_lines(path, "caption file")
    if not lines:
        raise DataError(f"{path}: the caption file is empty")
    first = lines[0].split("\t")[0]
    if "\t" in lines[0] and "#" in first:
        return _read_token_file(lines)
    return _read_caption_table(path, lines)


def _read_token_file(lines: list[str]):
    records, malformed = [], []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        name, hash_, k = key.strip().rpartition("#")
        if not sep or not hash_ or not name:
            malformed.append((lineno, "expected 'image.jpg#k<TAB>caption'"))
            continue
        records.append((lineno, name, k, caption.strip()))
    return records, malformed


def _read_caption_table(path: Path, lines: list[str]):
    delimiter = "|" if "|" in lines[0] and "," not in lines[0] else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    img_col = next((header.index(c) for c in IMAGE_COLUMNS if c in header), None)
    cap_col = next((header.index(c) for c in CAPTION_COLUMNS if c in header), None)
    if img_col is None or cap_col is None:
        raise DataError(
            f"{path}: the header {lines[0]!r} names no image column ({', '.join(IMAGE_COLUMNS)}) and caption "
            f"column ({', '.join(CAPTION_COLUMNS)}); expected 'image,caption' or the official Flickr8k.token.txt"
        )
    width = len(header)
    records, malformed, counter = [], [], {}
    for fields in reader:
        lineno = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) > width and cap_col == width - 1:  # unquoted commas in the caption
            fields = fields[: width - 1] + [delimiter.join(fields[width - 1 :])]
        if len(fields) != width:
            malformed.append((lineno, f"{len(fields)} fields, the header has {width}"))
            continue
        name = fields[img_col].strip()
        if not name:
            malformed.append((lineno, "empty image name"))
            continue
        k = counter.get(name, 0)
        counter[name] = k + 1
        records.append((lineno, name, str(k), fields[cap_col].strip()))
    return records, malformed


def read_split_lists(split_dir: Path | None) -> dict[str, set[str]]:
    """Image names per official split found in ``split_dir`` (missing files are skipped)."""
    out: dict[str, set[str]] = {}
    if split_dir is None:
        return out
    owner: dict[str, str] = {}
    for split, fname in SPLIT_FILES.items():
        path = split_dir / fname
        if not path.is_file():
            continue
        names = {l.strip() for l in read_lines(path) if l.strip()}
        for n in names:
            if n in owner:
                raise DataError(f"{path}: image {n} is also in the {owner[n]} list; official splits must be disjoint")
            owner[n] = split
        out[split] = names
    return out


@SOURCES.register("flickr8k")
@common_options(check_images="open", text_features=None, min_count=5, vocabulary=None)
def load_flickr8k(
    root,
    *,
    strict: bool = False,
    captions: str | None = None,
    images_dir: str | None = None,
    splits_dir: str | None = None,
    first_caption_only=False,
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """Flickr8k: captions.txt or Flickr8k.token.txt + image folder + official train/dev/test lists; no labels."""
    check_options("flickr8k", load_flickr8k, unused)
    root = Path(root)
    first_only = as_bool(first_caption_only, "first_caption_only")
    cap_path = find_first(root, CAPTION_FILES, "caption file", captions)
    img_dir = find_first(root, IMAGE_DIRS, "image folder", images_dir, kind="dir")
    split_dir = find_first(root, SPLIT_DIRS, "split folder", splits_dir, required=False, kind="dir")
    if split_dir is not None and splits_dir is None and not any((split_dir / f).is_file() for f in SPLIT_FILES.values()):
        split_dir = next((root / d for d in SPLIT_DIRS if any((root / d / f).is_file() for f in SPLIT_FILES.values())), None)
    splits = read_split_lists(split_dir)

    records, malformed = read_captions(cap_path)
    if malformed and strict:
        line, what = malformed[0]
        raise strict_row_error("flickr8k", f"{cap_path}, line {line}", what)
    if first_only:
        seen: set[str] = set()
        firsts = []
        for rec in records:
            if rec[1] not in seen:
                seen.add(rec[1])
                firsts.append(rec)
        records = firsts

    report = LoadReport("flickr8k", n_listed=len(records) + len(malformed))
    for line, what in malformed:
        report.drop(-1, f"line {line}", "malformed_row", f"{cap_path.name} line {line}: {what}")
    checker = ImageChecker("flickr8k", report, strict=strict, check=opts.check_images, total=len({r[1] for r in records}))
    keep, paths = [], []
    try:
        for pos, (line, name, k, caption) in enumerate(records):
            rid = f"{name}#{k}"
            if not caption:
                report.drop(pos, rid, "no_text", f"{cap_path.name} line {line}: empty caption")
                continue
            if checker(pos, rid, img_dir / name, f"{cap_path.name} line {line}"):
                keep.append(pos)
                paths.append(img_dir / name)
    finally:
        checker.close()
    finish_report(report, len(keep))

    kept = np.asarray(keep, dtype=np.int64)
    names = [records[i][1] for i in kept]
    listed_images = {r[1] for r in records}
    report.notes.append(f"images: {len(set(names))} of the {len(listed_images)} captioned images are usable")
    official: dict[str, np.ndarray] = {}
    if splits:
        for split, members in splits.items():
            official[split] = np.asarray([j for j, n in enumerate(names) if n in members], dtype=np.int64)
            absent = len(members - listed_images)
            present = len(members & set(names))
            report.notes.append(f"official {split}: {present} of {len(members)} images present" + (f" ({absent} have no caption)" if absent else ""))
        if "test" in official:
            official["query"] = official["test"]
            official["database"] = official["test"]
    else:
        report.notes.append("no official split lists found (Flickr_8k.{train,dev,test}Images.txt); use --protocol random")

    meta = {"source": "flickr8k", "root": str(root), "captions": str(cap_path), "image_dir": str(img_dir), "first_caption_only": first_only}
    return assemble(
        "flickr8k", opts=opts, ids=[f"{records[i][1]}#{records[i][2]}" for i in kept], paths=paths, texts_all=[r[3] for r in records],
        kept=kept, text_kind="sentence", meta=meta, report=report, groups=np.asarray(names, dtype=str), official_splits=official,
    )
