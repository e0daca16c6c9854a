"""Wikipedia cross-modal set (Rasiwasia et al. 2010) in its official distribution format.

Files under ``root``: ``raw_features.mat`` (``I_tr``/``I_te`` 128-d SIFT BoW, ``T_tr``/``T_te`` 10-d
LDA topics), ``trainset_txt_img_cat.list`` / ``testset_txt_img_cat.list`` (``text_id<TAB>image<TAB>
category 1..10``, same row order as the matrices) and optionally ``categories.list`` and an
``images/<category>/<image>.jpg`` folder. Pairs are the 2,173 training rows followed by the 693
test rows; the official split is ``train = database`` (first 2,173) and ``query`` (last 693).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.images import FileImageStore
from cmhash.errors import DataError, MissingFileError

MAT_VARIABLES = ("I_tr", "T_tr", "I_te", "T_te")
NUM_CLASSES = 10


def read_list(path: Path) -> list[tuple[str, str, int]]:
    """Parse a ``*_txt_img_cat.list`` file; errors name the file and line."""
    if not path.exists():
        raise MissingFileError(f"{path}: Wiki split list not found")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
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
            rows.append((fields[0], fields[1], cat))
    return rows


def read_mat(path: Path) -> dict[str, np.ndarray]:
    import scipy.io as sio

    if not path.exists():
        raise MissingFileError(f"{path}: Wiki feature file not found (expected the official raw_features.mat)")
    try:
        mat = sio.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: cannot read as a MATLAB file ({exc})") from exc
    missing = [v for v in MAT_VARIABLES if v not in mat]
    if missing:
        found = ", ".join(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: missing variable(s) {', '.join(missing)} (found: {found})")
    return {v: np.asarray(mat[v], dtype=np.float32) for v in MAT_VARIABLES}


@SOURCES.register("wiki")
def load_wiki(root, *, strict: bool = False, images_dir: str | None = None, **unused) -> PairedDataset:
    """Load the Wiki set with its official features and split (see module docstring)."""
    if unused:
        raise DataError(f"wiki: unknown option(s) {', '.join(sorted(unused))}")
    root = Path(root)
    mat = read_mat(root / "raw_features.mat")
    train = read_list(root / "trainset_txt_img_cat.list")
    test = read_list(root / "testset_txt_img_cat.list")
    for part, rows, img, txt in (("train", train, "I_tr", "T_tr"), ("test", test, "I_te", "T_te")):
        if not (len(rows) == mat[img].shape[0] == mat[txt].shape[0]):
            raise DataError(
                f"{root}: the {part} list has {len(rows)} lines but {img} has {mat[img].shape[0]} rows "
                f"and {txt} has {mat[txt].shape[0]}"
            )
    rows = train + test
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    labels[np.arange(len(rows)), [r[2] - 1 for r in rows]] = 1
    cat_file = root / "categories.list"
    names = [l.strip() for l in open(cat_file, encoding="utf-8") if l.strip()] if cat_file.exists() else None
    if names is not None and len(names) != NUM_CLASSES:
        raise DataError(f"{cat_file}: expected {NUM_CLASSES} category names, found {len(names)}")
    report = LoadReport("wiki", n_listed=len(rows), n_kept=len(rows))
    images = None
    img_root = Path(images_dir) if images_dir else root / "images"
    if img_root.is_dir():
        paths = [img_root / (names[r[2] - 1] if names else str(r[2])) / f"{r[1]}.jpg" for r in rows]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        if missing and strict:
            raise MissingFileError(f"wiki: image {paths[missing[0]]} (row {missing[0]}) is missing (--strict)")
        if missing:
            report.notes.append(f"{len(missing)} of {len(rows)} images missing under {img_root}; image files not used")
        else:
            images = FileImageStore(paths)
    n_tr = len(train)
    return PairedDataset(
        name="wiki",
        ids=[r[0] for r in rows],
        images=images,
        image_features=np.vstack([mat["I_tr"], mat["I_te"]]),
        text_kind="document",
        text_features=np.vstack([mat["T_tr"], mat["T_te"]]),
        labels=labels,
        label_names=names,
        official_splits={
            "train": np.arange(n_tr),
            "database": np.arange(n_tr),
            "query": np.arange(n_tr, len(rows)),
        },
        report=report,
        meta={"source": "wiki", "root": str(root), "image_features": "sift-bow-128", "text_features": "lda-10"},
    )
