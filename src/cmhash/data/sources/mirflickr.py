"""MIRFlickr-25K, cleaned 20,015-pair set, in the widely circulated ``all_*.txt`` format.

Files under ``root``: ``all_imgs.txt`` (``mirflickr/imN.jpg`` per line), ``all_tags.txt``
(comma-separated raw tags), ``all_labels.txt`` (24 space-separated 0/1 flags), optional
``label_names_24.txt``; images are matched on file name inside ``images_dir`` (default: the first
of ``images128/``, ``images/``, ``mirflickr/`` that exists). Line i of each file is pair i.

Text features: by default the binary tag bag-of-words over tags present in at least ``min_count``
(15) of *all listed* lines, i.e. the standard 1,386-d vector, built before any pair is dropped.

Policy for rows without any label: dropped and reported (reason ``no_labels``), since such a
query can have no relevant item; ``keep_unlabeled=True`` keeps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.images import FileImageStore
from cmhash.data.text import Vocabulary
from cmhash.errors import DataError, MissingFileError

IMAGE_DIR_CANDIDATES = ("images128", "images", "mirflickr")
TXT_FILES = ("all_imgs.txt", "all_tags.txt", "all_labels.txt")


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise MissingFileError(f"{path}: not found")
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_labels_txt(path: Path) -> np.ndarray:
    """Space-separated 0/1 flags per line -> uint8 matrix; errors name the line."""
    rows = []
    width = None
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        try:
            vals = [int(float(f)) for f in fields]
        except ValueError:
            raise DataError(f"{path}, line {lineno}: labels must be numbers, got {line!r}") from None
        if width is None:
            width = len(vals)
        if len(vals) != width:
            raise DataError(f"{path}, line {lineno}: {len(vals)} label columns, expected {width}")
        if any(v not in (0, 1) for v in vals):
            raise DataError(f"{path}, line {lineno}: labels must be 0/1, got {line!r}")
        rows.append(vals)
    return np.asarray(rows, dtype=np.uint8)


def find_image_dir(root: Path, images_dir: str | None) -> Path | None:
    if images_dir:
        p = Path(images_dir)
        p = p if p.is_absolute() else root / p
        if not p.is_dir():
            raise MissingFileError(f"{p}: image folder not found")
        return p
    for cand in IMAGE_DIR_CANDIDATES:
        if (root / cand).is_dir():
            return root / cand
    return None


def text_features_for(texts_all: list[str], kept: np.ndarray, text_features: str | None, min_count: int, vocabulary: str | None, kind: str = "tags"):
    """Build (or load) the vocabulary over all listed texts and featurise the kept rows."""
    if text_features in (None, "none", "raw"):
        return None, None
    if text_features not in ("bow", "tfidf", "count"):
        raise DataError(f"unknown text_features '{text_features}' (use bow, tfidf, count or none)")
    vocab = Vocabulary.load(vocabulary) if vocabulary else Vocabulary.build(texts_all, min_count=min_count, kind=kind)
    weighting = {"bow": "binary", "tfidf": "tfidf", "count": "count"}[text_features]
    feats = vocab.transform([texts_all[i] for i in kept], weighting=weighting)
    return feats, vocab


def check_image(path: Path, check: str) -> str | None:
    """Return a drop reason for ``path`` or None. ``check``: exists | open | none."""
    if check == "none":
        return None
    if not path.exists():
        return "missing_image"
    if check == "open":
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.size  # header parsed
        except Exception:
            return "unreadable_image"
    return None


@SOURCES.register("mirflickr")
def load_mirflickr(
    root,
    *,
    strict: bool = False,
    images_dir: str | None = None,
    text_features: str | None = "bow",
    min_count: int = 15,
    vocabulary: str | None = None,
    check_images: str = "open",
    keep_unlabeled: bool = False,
    require_images: bool = True,
    **unused,
) -> PairedDataset:
    """Load MIRFlickr from the all_*.txt files; see the module docstring."""
    if unused:
        raise DataError(f"mirflickr: unknown option(s) {', '.join(sorted(unused))}")
    root = Path(root)
    if not (root / "all_imgs.txt").exists():
        from cmhash.data.sources import mirflickr_mat  # .mat layouts, if present

        return mirflickr_mat.load_mirflickr_mat(root, strict=strict, text_features=text_features, keep_unlabeled=keep_unlabeled)
    imgs, tags = (_read_lines(root / f) for f in TXT_FILES[:2])
    labels = read_labels_txt(root / "all_labels.txt")
    if not (len(imgs) == len(tags) == len(labels)):
        raise DataError(
            f"{root}: all_imgs.txt has {len(imgs)} lines, all_tags.txt {len(tags)}, all_labels.txt {len(labels)}; they must match"
        )
    names_file = root / "label_names_24.txt"
    label_names = [l.strip() for l in _read_lines(names_file)] if names_file.exists() else None
    if label_names is not None and len(label_names) != labels.shape[1]:
        raise DataError(f"{names_file}: {len(label_names)} names for {labels.shape[1]} label columns")

    report = LoadReport("mirflickr", n_listed=len(imgs))
    img_dir = find_image_dir(root, images_dir)
    if img_dir is None and require_images:
        raise MissingFileError(f"{root}: no image folder found (looked for {', '.join(IMAGE_DIR_CANDIDATES)}); pass images_dir")
    keep, paths = [], []
    for i, rel in enumerate(imgs):
        name = Path(rel.strip()).name
        if not keep_unlabeled and labels[i].sum() == 0:
            report.drop(i, name, "no_labels")
            continue
        if img_dir is not None:
            path = img_dir / name
            reason = check_image(path, check_images)
            if reason:
                if strict:
                    raise MissingFileError(f"mirflickr: image {path} (line {i + 1} of all_imgs.txt) is {reason.replace('_', ' ')} (--strict)")
                report.drop(i, name, reason, str(path))
                continue
            paths.append(path)
        keep.append(i)
    kept = np.asarray(keep, dtype=np.int64)
    report.n_kept = len(kept)
    if report.dropped:
        report.notes.append("; ".join(f"{v} dropped: {k}" for k, v in report.dropped_by_reason().items()))
    feats, vocab = text_features_for(tags, kept, text_features, min_count, vocabulary)
    meta = {"source": "mirflickr", "root": str(root), "format": "all_txt", "image_dir": str(img_dir) if img_dir else None}
    if vocab is not None:
        meta.update(text_features=f"tag-{text_features}-{len(vocab)}", vocabulary=vocab.to_dict(), rows=kept.tolist())
    return PairedDataset(
        name="mirflickr",
        ids=[Path(imgs[i].strip()).stem for i in kept],
        images=FileImageStore(paths) if img_dir is not None else None,
        texts=[tags[i] for i in kept],
        text_kind="tags",
        text_features=feats,
        labels=labels[kept],
        label_names=label_names,
        report=report,
        meta=meta,
    )
