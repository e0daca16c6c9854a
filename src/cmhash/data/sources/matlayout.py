"""The DJSRH/DCMH ``.mat`` layouts shared by MIRFlickr and NUS-WIDE.

DJSRH (and JDSH, DGCPN, UCCH...) read three or four files per dataset, named
``<prefix>-iall.mat`` (``IAll``: raw uint8 images, MATLAB v7.3/HDF5), ``<prefix>-yall.mat``
(``YAll``: tag bag-of-words), ``<prefix>-lall.mat`` (``LAll``: 0/1 labels) and optionally
``<prefix>-xall-vgg.mat`` (``XAll``: precomputed image features). Copies in the wild keep them
either side by side or in ``IAll/``, ``YAll/``, ``LAll/`` sub-folders (the "Cleared-Set"
archive). DCMH ships one v7.3 file instead (``FLICKR-25K.mat`` with ``images``, ``YAll``, ``LAll``).
Each variable may be v5 or v7.3 and is oriented to rows = pairs (see :mod:`._mat`).

Row i of every file is pair i; pair ids are the row numbers. The tag matrix becomes
``text_features`` (there are no raw tags in these files); ``text_features="tfidf"`` reweights it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.sources import _mat
from cmhash.data.sources._common import as_bool, check_options, choice, finish_report, read_lines, resolve
from cmhash.errors import DataError, MissingFileError


@dataclass(frozen=True)
class MatLayout:
    """What differs between datasets stored in the DJSRH layout."""

    source: str
    prefix: str
    single_files: tuple[str, ...] = ()
    label_name_files: tuple[str, ...] = ()


# kind -> (file suffixes after "<prefix>-", sub-folder, default variable names in order)
KINDS = {
    "images": (("iall.mat",), "IAll", ("IAll", "images")),
    "tags": (("yall.mat",), "YAll", ("YAll",)),
    "labels": (("lall.mat",), "LAll", ("LAll",)),
    "image_features": (("xall-vgg.mat", "xall.mat"), "XAll", ("XAll",)),
}


def candidate_files(layout: MatLayout, kind: str) -> list[str]:
    suffixes, sub, _ = KINDS[kind]
    names = [f"{layout.prefix}-{s}" for s in suffixes]
    return names + [f"{sub}/{n}" for n in names]


def _none(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("none", "off", "")


def has_mat_files(layout: MatLayout, root: Path) -> bool:
    """True when ``root`` holds a label file of this layout (split files or a single file)."""
    return any((root / c).is_file() for c in candidate_files(layout, "labels") + list(layout.single_files))


def _locate(layout: MatLayout, root: Path, kind: str, given, var_given, single: Path | None, required: bool):
    """(file, variable) for one kind, or None when optional and absent."""
    option = f"{kind}_file"
    var_option = f"{kind}_var"
    defaults = list(KINDS[kind][2])
    if given is not None:
        if _none(given):
            return None
        path = resolve(root, given)
        if not path.is_file():
            raise MissingFileError(f"{path}: {kind} .mat file not found (option {option})")
        return path, var_given or _mat.pick_variable(path, defaults, var_option)
    for cand in candidate_files(layout, kind):
        if (root / cand).is_file():
            path = root / cand
            return path, var_given or _mat.pick_variable(path, defaults, var_option)
    if single is not None:
        found = _mat.mat_variables(single)
        names = [var_given] if var_given else defaults
        for v in names:
            if v in found:
                return single, v
        if required:
            raise DataError(f"{single}: no variable {' or '.join(names)} for the {kind} (the file holds: {', '.join(found)}); pass option {var_option}")
        return None
    if required:
        looked = candidate_files(layout, kind) + list(layout.single_files)
        raise MissingFileError(f"{root}: no {kind} file found for {layout.source} (looked for {', '.join(looked)}); pass option {option}")
    return None


def load_mat_layout(
    layout: MatLayout,
    root: Path,
    *,
    strict: bool = False,
    mat_file=None,
    images_file=None,
    tags_file=None,
    labels_file=None,
    image_features_file=None,
    images_var: str | None = None,
    tags_var: str | None = None,
    labels_var: str | None = None,
    image_features_var: str | None = None,
    image_layout: str = "auto",
    text_features: str | None = "bow",
    keep_unlabeled=False,
    label_names=None,
    **unused,
) -> PairedDataset:
    """Load a dataset stored in the DJSRH/DCMH ``.mat`` layout (see the module docstring).

    Options: ``mat_file`` (one file holding every variable), ``images_file``, ``tags_file``,
    ``labels_file``, ``image_features_file`` (paths relative to ``root``; ``none`` turns images
    or image features off) and ``*_var`` for the variable names; ``image_layout`` (``auto``,
    ``CWH`` as DJSRH, ``HWC``...); ``text_features`` (``bow``: the tag matrix as stored,
    ``tfidf``); ``keep_unlabeled``; ``label_names`` (a file with one name per line).
    """
    check_options(f"{layout.source} (.mat layout)", load_mat_layout, unused)
    root = Path(root)
    keep_unlabeled = as_bool(keep_unlabeled, "keep_unlabeled")
    mode = choice(text_features or "bow", "text_features", ("bow", "count", "tfidf"))
    single = None
    if mat_file is not None:
        single = resolve(root, mat_file)
        if not single.is_file():
            raise MissingFileError(f"{single}: .mat file not found (option mat_file)")
    else:
        single = next((root / s for s in layout.single_files if (root / s).is_file()), None)

    lab_loc = _locate(layout, root, "labels", labels_file, labels_var, single, required=True)
    tag_loc = _locate(layout, root, "tags", tags_file, tags_var, single, required=True)
    img_loc = _locate(layout, root, "images", images_file, images_var, single, required=False)
    feat_loc = _locate(layout, root, "image_features", image_features_file, image_features_var, single, required=False)
    if img_loc is None and feat_loc is None:
        raise MissingFileError(
            f"{root}: {layout.source} has no image side: no image file ({', '.join(candidate_files(layout, 'images'))}"
            f"{', ' + ', '.join(layout.single_files) if layout.single_files else ''}) and no image-feature file "
            f"({', '.join(candidate_files(layout, 'image_features'))}); pass images_file or image_features_file"
        )

    # The image stack's pair axis is unambiguous (first in h5py, last in v5): use it to orient the
    # label matrix; without images, labels are taken as (pairs x classes) with pairs > classes.
    n_hint = _mat.count_rows(img_loc[0], img_loc[1], option="images_var") if img_loc else None
    labels = _mat.read_labels(lab_loc[0], lab_loc[1], n=n_hint, option="labels_var")
    if n_hint is None and labels.shape[0] < labels.shape[1]:
        labels = np.ascontiguousarray(labels.T)
    n = labels.shape[0]
    tags = _mat.read_matrix(tag_loc[0], tag_loc[1], n=n, option="tags_var")
    if (tags < 0).any():
        row, col = np.argwhere(tags < 0)[0]
        raise DataError(f"{tag_loc[0]}: variable '{tag_loc[1]}', row {row}, column {col} is negative; a tag bag-of-words must be >= 0")
    images = _mat.open_images(img_loc[0], img_loc[1], n=n, layout=image_layout, option="images_var") if img_loc else None
    feats = _mat.read_matrix(feat_loc[0], feat_loc[1], n=n, option="image_features_var") if feat_loc else None

    names = _label_names(layout, root, label_names, labels.shape[1])
    report = LoadReport(layout.source, n_listed=n)
    if keep_unlabeled:
        kept = np.arange(n)
    else:
        empty = labels.sum(axis=1) == 0
        for i in np.flatnonzero(empty):
            report.drop(int(i), str(i), "no_labels", f"{lab_loc[0].name}:{lab_loc[1]} row {i}")
        kept = np.flatnonzero(~empty)
    finish_report(report, len(kept))
    files = {k: f"{loc[0]}:{loc[1]}" for k, loc in (("labels", lab_loc), ("tags", tag_loc), ("images", img_loc), ("image_features", feat_loc)) if loc}
    report.notes.append("read " + "; ".join(f"{k} from {v}" for k, v in files.items()))
    if mode == "tfidf":
        from cmhash.data.text import tfidf_matrix

        text = tfidf_matrix(tags)
    else:
        text = tags
    full = len(kept) == n
    return PairedDataset(
        name=layout.source,
        ids=[str(i) for i in kept],
        images=None if images is None else (images if full else images.subset(kept)),
        image_features=None if feats is None else (feats if full else feats[kept]),
        text_kind="tags",
        text_features=text if full else text[kept],
        labels=labels if full else labels[kept],
        label_names=names,
        report=report,
        meta={
            "source": layout.source,
            "root": str(root),
            "format": "dcmh-mat" if single is not None and lab_loc[0] == single else "djsrh-mat",
            "files": files,
            "text_features": f"tag-{mode}-{tags.shape[1]}",
        },
    )


def _label_names(layout: MatLayout, root: Path, given, num: int) -> list[str] | None:
    if given is None:
        path = next((root / f for f in layout.label_name_files if (root / f).is_file()), None)
        if path is None:
            return None
    elif isinstance(given, (list, tuple)):
        names = [str(x) for x in given]
        path = None
    else:
        path = resolve(root, given)
    if path is not None:
        names = [l.strip() for l in read_lines(path, "label-name file") if l.strip()]
    if len(names) != num:
        where = path if path is not None else "option label_names"
        raise DataError(f"{where}: {len(names)} label names for {num} label columns")
    return names
