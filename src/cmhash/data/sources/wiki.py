"""Wikipedia cross-modal set (Rasiwasia et al. 2010) in its official distribution format.

Files under ``root``: ``raw_features.mat`` (``I_tr``/``I_te`` 128-d SIFT BoW, ``T_tr``/``T_te`` 10-d
LDA topics; v5 or v7.3), ``trainset_txt_img_cat.list`` / ``testset_txt_img_cat.list``
(``text_id<TAB>image<TAB>category 1..10``, same row order as the matrices) and optionally
``categories.list`` and an image folder ``images/<category>/<image>.jpg`` (or
``images/<image>.jpg``). Pairs are the 2,173 training rows followed by the 693 test rows; the
official split is ``train = database`` (first 2,173) and ``query`` (last 693).

Image files are optional (the features are the official image side). When an image folder is
used (found as ``images/`` or given with ``images_dir``; ``images_dir=none`` ignores it), pairs
whose image file is missing or unreadable are dropped and reported like in every other source,
and the official split is remapped to the pairs that remain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.images import FileImageStore
from cmhash.data.sources import _mat
from cmhash.data.sources._common import ImageChecker, check_options, find_first, finish_report, first_duplicate, read_lines
from cmhash.errors import DataError, MissingFileError

MAT_VARIABLES = ("I_tr", "T_tr", "I_te", "T_te")
NUM_CLASSES = 10


def read_list(path: Path) -> list[tuple[str, str, int]]:
    """Parse a ``*_txt_img_cat.list`` file; errors name the file and line."""
    if not path.is_file():
        raise MissingFileError(f"{path}: Wiki split list not found (expected the official *_txt_img_cat.list files)")
    rows = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise DataError(f"{path}, line {lineno}: expected 'text_id<TAB>image<TAB>category', got {line!r}")
        try:
            cat = int(fields[-1])
        except ValueError:
            raise DataError(f"{path}, line {lineno}: category {fields[-1]!r} is not an integer") from None
        if not 1 <= cat <= NUM_CLASSES:
            raise DataError(f"{path}, line {lineno}: category {cat} is outside 1..{NUM_CLASSES}")
        rows.append((fields[0].strip(), fields[1].strip(), cat))
    return rows


def read_mat(path: Path, n_train: int | None = None, n_test: int | None = None) -> dict[str, np.ndarray]:
    """The four feature matrices, rows = pairs; errors name the file and variable."""
    if not path.is_file():
        raise MissingFileError(f"{path}: Wiki feature file not found (expected the official raw_features.mat)")
    found = _mat.mat_variables(path)
    missing = [v for v in MAT_VARIABLES if v not in found]
    if missing:
        raise DataError(f"{path}: missing variable(s) {', '.join(missing)} (the file holds: {', '.join(found)})")
    sizes = {"I_tr": n_train, "T_tr": n_train, "I_te": n_test, "T_te": n_test}
    mat = {v: _mat.read_matrix(path, v, n=sizes[v]) for v in MAT_VARIABLES}
    for a, b in (("I_tr", "I_te"), ("T_tr", "T_te")):
        if mat[a].shape[1] != mat[b].shape[1]:
            raise DataError(f"{path}: {a} has {mat[a].shape[1]} columns but {b} has {mat[b].shape[1]}")
    return mat


def _image_path(img_root: Path, names: list[str] | None, row: tuple[str, str, int]) -> Path:
    sub = img_root / (names[row[2] - 1] if names else str(row[2])) / f"{row[1]}.jpg"
    if sub.exists():
        return sub
    flat = img_root / f"{row[1]}.jpg"
    return flat if flat.exists() else sub


@SOURCES.register("wiki")
def load_wiki(root, *, strict: bool = False, images_dir: str | None = None, check_images: str = "open", **unused) -> PairedDataset:
    """Wikipedia (Rasiwasia 2010): official raw_features.mat (SIFT/LDA features) + list files; official 2,173/693 split."""
    check_options("wiki", load_wiki, unused)
    root = Path(root)
    train = read_list(root / "trainset_txt_img_cat.list")
    test = read_list(root / "testset_txt_img_cat.list")
    path = root / "raw_features.mat"
    try:
        mat = read_mat(path, len(train), len(test))
    except DataError as exc:
        if "neither side matches" in str(exc):
            raise DataError(f"{exc}; trainset_txt_img_cat.list has {len(train)} lines and testset_txt_img_cat.list {len(test)}") from None
        raise
    rows = train + test
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    labels[np.arange(len(rows)), [r[2] - 1 for r in rows]] = 1
    cat_file = root / "categories.list"
    names = [l.strip() for l in read_lines(cat_file) if l.strip()] if cat_file.is_file() else None
    if names is not None and len(names) != NUM_CLASSES:
        raise DataError(f"{cat_file}: expected {NUM_CLASSES} category names, found {len(names)}")
    dup = first_duplicate([r[0] for r in rows])
    if dup is not None:
        raise DataError(f"{root}: text id {dup} appears more than once in the two list files")

    report = LoadReport("wiki", n_listed=len(rows))
    n_tr = len(train)
    keep = np.arange(len(rows))
    images = None
    img_root = None
    if not (isinstance(images_dir, str) and images_dir.strip().lower() == "none"):
        img_root = find_first(root, ("images",), "image folder", images_dir, required=False, kind="dir")
    if img_root is not None:
        checker = ImageChecker("wiki", report, strict=strict, check=check_images, total=len(rows))
        paths, kept = [], []
        try:
            for i, r in enumerate(rows):
                p = _image_path(img_root, names, r)
                where = f"line {i + 1 if i < n_tr else i - n_tr + 1} of {'trainset' if i < n_tr else 'testset'}_txt_img_cat.list"
                if checker(i, r[0], p, where):
                    paths.append(p)
                    kept.append(i)
        finally:
            checker.close()
        keep = np.asarray(kept, dtype=np.int64)
        images = FileImageStore(paths)
    finish_report(report, len(keep))
    is_train = keep < n_tr
    return PairedDataset(
        name="wiki",
        ids=[rows[i][0] for i in keep],
        images=images,
        image_features=np.vstack([mat["I_tr"], mat["I_te"]])[keep],
        text_kind="document",
        text_features=np.vstack([mat["T_tr"], mat["T_te"]])[keep],
        labels=labels[keep],
        label_names=names,
        official_splits={
            "train": np.flatnonzero(is_train),
            "database": np.flatnonzero(is_train),
            "query": np.flatnonzero(~is_train),
        },
        report=report,
        meta={
            "source": "wiki",
            "root": str(root),
            "image_features": "sift-bow-128" if mat["I_tr"].shape[1] == 128 else f"image-features-{mat['I_tr'].shape[1]}",
            "text_features": "lda-10" if mat["T_tr"].shape[1] == 10 else f"text-features-{mat['T_tr'].shape[1]}",
            "image_dir": None if img_root is None else str(img_root),
        },
    )
