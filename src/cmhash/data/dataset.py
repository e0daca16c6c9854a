"""The one paired-dataset type that every source produces and every other module consumes.

A :class:`PairedDataset` holds ``n`` image-text pairs. Each side may be given as features, as raw
input, or both:

* image side: ``image_features`` (n, d) float32 and/or ``images`` (an :class:`ImageStore` of files
  or HDF5 arrays);
* text side: ``text_features`` (n, d) float32 (dense), ``text_tokens`` (padded token ids with
  lengths, :class:`~cmhash.data.tokens.TokenSequences`, for methods that read word sequences)
  and/or ``texts`` (raw strings; for tag data the tags joined by ``", "``, see ``text_kind``);
* ``labels``: (n, c) uint8 multi-hot, or ``None`` for pair-identity data;
* ``groups``: optional (n,) ids: pairs with the same group show the same image (Flickr8k has five
  captions per image), which defines relevance for Recall@K;
* ``official_splits``: index arrays that ship with the data (Wiki train/query, Flickr8k
  train/dev/test).

The :class:`LoadReport` says how many pairs were listed, kept and dropped, and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cmhash.data.images import ImageStore
from cmhash.data.tokens import TokenSequences
from cmhash.errors import DataError

TEXT_KINDS = ("tags", "sentence", "document")


@dataclass
class DroppedPair:
    """One pair removed while loading, with the reason and the offending file if any."""

    row: int
    id: str
    reason: str
    detail: str = ""


@dataclass
class LoadReport:
    """What a source did: pairs listed in the input, pairs kept, pairs dropped with reasons."""

    source: str
    n_listed: int = 0
    n_kept: int = 0
    dropped: list[DroppedPair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def drop(self, row: int, id: str, reason: str, detail: str = "") -> None:
        self.dropped.append(DroppedPair(int(row), str(id), reason, detail))

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dropped))

    def to_dict(self, max_examples: int = 5) -> dict[str, Any]:
        examples: dict[str, list[dict]] = {}
        for d in self.dropped:
            lst = examples.setdefault(d.reason, [])
            if len(lst) < max_examples:
                lst.append({"row": d.row, "id": d.id, "detail": d.detail})
        return {
            "source": self.source,
            "listed": self.n_listed,
            "kept": self.n_kept,
            "dropped": len(self.dropped),
            "dropped_by_reason": self.dropped_by_reason(),
            "dropped_examples": examples,
            "notes": list(self.notes),
        }


def _check_rows(name: str, what: str, n: int, m: int) -> None:
    if m != n:
        raise DataError(f"{name}: {what} has {m} rows but the dataset has {n} pairs")


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise a DataError naming the first row with NaN or inf."""
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{what}: row {row}, column {col} is {array[row, col]} (NaN/inf features are not allowed)")


@dataclass
class PairedDataset:
    """n image-text pairs with optional labels; see the module docstring."""

    name: str
    ids: np.ndarray
    images: ImageStore | None = None
    image_features: np.ndarray | None = None
    texts: list[str] | None = None
    text_kind: str | None = None
    text_features: np.ndarray | None = None
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    groups: np.ndarray | None = None
    official_splits: dict[str, np.ndarray] = field(default_factory=dict)
    report: LoadReport | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    text_tokens: TokenSequences | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        for side in ("image_features", "text_features"):
            arr = getattr(self, side)
            if arr is None:
                continue
            if np.iscomplexobj(arr):  # float32 conversion would drop the imaginary part without a word
                raise DataError(f"{self.name}: {side} are complex numbers ({np.asarray(arr).dtype}); features must be real")
            if np.asarray(arr).dtype.kind not in "biuf":
                raise DataError(f"{self.name}: {side} have dtype {np.asarray(arr).dtype}; features must be real numbers")
            setattr(self, side, np.asarray(arr, dtype=np.float32))
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
        self.official_splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.official_splits.items()}
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check shapes, finiteness and label values; raise DataError naming the field."""
        n = len(self.ids)
        nm = self.name
        if self.images is not None:
            _check_rows(nm, "images", n, len(self.images))
        if self.texts is not None:
            _check_rows(nm, "texts", n, len(self.texts))
        if self.text_kind is not None and self.text_kind not in TEXT_KINDS:
            raise DataError(f"{nm}: text_kind must be one of {TEXT_KINDS}, got '{self.text_kind}'")
        for what, feats in (("image_features", self.image_features), ("text_features", self.text_features)):
            if feats is not None:
                if feats.ndim != 2:
                    raise DataError(f"{nm}: {what} must be 2-D (pairs x dims), got shape {feats.shape}")
                _check_rows(nm, what, n, feats.shape[0])
                check_finite(feats, f"{nm}: {what}")
        if self.labels is not None:
            if self.labels.ndim != 2:
                raise DataError(f"{nm}: labels must be a 2-D multi-hot matrix, got shape {self.labels.shape}")
            _check_rows(nm, "labels", n, self.labels.shape[0])
            if self.labels.size and not np.isin(self.labels, (0, 1)).all():
                row = int(np.argwhere(~np.isin(self.labels, (0, 1)))[0][0])
                raise DataError(f"{nm}: labels must be 0/1 multi-hot; row {row} is {self.labels[row].tolist()}")
            self.labels = self.labels.astype(np.uint8, copy=False)
            if self.label_names is not None and len(self.label_names) != self.labels.shape[1]:
                raise DataError(f"{nm}: {len(self.label_names)} label names for {self.labels.shape[1]} label columns")
        if self.groups is not None:
            _check_rows(nm, "groups", n, len(self.groups))
        if self.text_tokens is not None:
            if not isinstance(self.text_tokens, TokenSequences):
                raise DataError(f"{nm}: text_tokens must be a TokenSequences (padded ids + lengths), got {type(self.text_tokens).__name__}")
            _check_rows(nm, "text_tokens", n, len(self.text_tokens))
        for split, idx in self.official_splits.items():
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataError(f"{nm}: official split '{split}' has indices outside 0..{n - 1}")
        if self.images is None and self.image_features is None:
            raise DataError(f"{nm}: the image side is empty (no image files and no image features)")
        if self.texts is None and self.text_features is None and self.text_tokens is None:
            raise DataError(f"{nm}: the text side is empty (no texts and no text features)")

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_labels(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[1])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "PairedDataset":
        """A new dataset of the given rows (in the given order); official splits are remapped."""
        idx = np.asarray(indices, dtype=np.int64)
        pos = {int(j): k for k, j in enumerate(idx)}
        splits = {}
        for split, sidx in self.official_splits.items():
            kept = [pos[int(j)] for j in sidx if int(j) in pos]
            splits[split] = np.asarray(kept, dtype=np.int64)
        return PairedDataset(
            name=name or self.name,
            ids=self.ids[idx],
            images=None if self.images is None else self.images.subset(idx),
            image_features=None if self.image_features is None else self.image_features[idx],
            texts=None if self.texts is None else [self.texts[int(j)] for j in idx],
            text_kind=self.text_kind,
            text_features=None if self.text_features is None else self.text_features[idx],
            labels=None if self.labels is None else self.labels[idx],
            label_names=self.label_names,
            groups=None if self.groups is None else self.groups[idx],
            official_splits=splits,
            report=self.report,
            meta=dict(self.meta),
            text_tokens=None if self.text_tokens is None else self.text_tokens.subset(idx),
        )

    def with_features(self, image_features: np.ndarray | None = None, text_features: np.ndarray | None = None, **meta) -> "PairedDataset":
        """A copy with image and/or text features replaced (e.g. after feature extraction)."""
        import dataclasses

        new_meta = dict(self.meta)
        new_meta.update(meta)
        return dataclasses.replace(
            self,
            image_features=self.image_features if image_features is None else image_features,
            text_features=self.text_features if text_features is None else text_features,
            meta=new_meta,
        )

    def summary(self) -> dict[str, Any]:
        """Counts and label statistics, as printed by ``cmhash data info``."""
        out: dict[str, Any] = {
            "name": self.name,
            "pairs": len(self),
            "image_side": {
                "files": None if self.images is None else len(self.images),
                "features": None if self.image_features is None else list(self.image_features.shape),
            },
            "text_side": {
                "texts": None if self.texts is None else len(self.texts),
                "text_kind": self.text_kind,
                "features": None if self.text_features is None else list(self.text_features.shape),
            },
            "official_splits": {k: int(len(v)) for k, v in self.official_splits.items()},
        }
        if self.groups is not None:
            out["groups"] = int(len(np.unique(self.groups)))
        if self.labels is not None:
            per_label = self.labels.sum(axis=0).astype(int)
            per_pair = self.labels.sum(axis=1).astype(int)
            names = self.label_names or [str(i) for i in range(self.labels.shape[1])]
            out["labels"] = {
                "num_labels": int(self.labels.shape[1]),
                "pairs_per_label": {names[i]: int(per_label[i]) for i in range(len(names))},
                "labels_per_pair": {
                    "mean": float(per_pair.mean()) if len(per_pair) else 0.0,
                    "min": int(per_pair.min()) if len(per_pair) else 0,
                    "max": int(per_pair.max()) if len(per_pair) else 0,
                },
                "pairs_without_label": int((per_pair == 0).sum()),
                "labels_without_pairs": int((per_label == 0).sum()),
            }
        if self.report is not None:
            out["load_report"] = self.report.to_dict()
        return out


def supervision_labels(labels: np.ndarray | None, groups: np.ndarray | None, what: str = "dataset") -> np.ndarray:
    """The multi-hot matrix a supervised method learns from: the labels, else pair identity.

    Without labels (Flickr8k), items showing the same image (same ``groups`` value: the five
    captions of one image) are the similar ones: one column per group, so "share a label" means
    "describe the same image".
    """
    if labels is not None:
        return np.asarray(labels, dtype=np.uint8)
    if groups is None:
        raise DataError(f"{what}: a supervised method needs labels or pair groups (captions of the same image); this data has neither")
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    out = np.zeros((len(inverse), int(inverse.max()) + 1 if len(inverse) else 0), dtype=np.uint8)
    out[np.arange(len(inverse)), inverse] = 1
    return out
