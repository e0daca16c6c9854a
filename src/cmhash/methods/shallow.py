"""Base class of the shallow (closed-form / alternating) methods: CMFH, and CVH, IMH, LSSH, SCM.

A shallow method works on feature matrices. :class:`ShallowHashMethod` does everything around
the maths once:

* ``fit(train, progress=None, threads=None)``: takes the feature matrices of both modalities
  from a :class:`PairedDataset` (or a ``{"image": X, "text": Y}`` mapping), checks them (2-D,
  same number of rows, at least 2 pairs, no NaN/inf, naming the modality and row), centres them
  when the ``center`` hyper-parameter is true (means kept as ``mean_image``/``mean_text``), hands
  the labels only to supervised methods (``uses_labels = True``), limits BLAS threads, then calls
  the subclass's :meth:`fit_features`;
* ``encode(inputs, modality)``: ``sign(project(x))`` with :meth:`project` = ``(x - mean) @ P``
  by default (``P_image``/``P_text``), checking the feature width;
* ``state()``/``from_state()``: ``bits``, ``hparams``, every array in ``self.arrays`` (stored
  flat under its name: CMFH's ``mean_image``, ``P_image``, ...) and ``history``; loading checks
  the names in ``STATE_ARRAYS`` are present.

A subclass states ``DEFAULTS`` and ``STATE_ARRAYS`` and implements :meth:`fit_features` (and
:meth:`project` when codes are not a linear projection of the centred features).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np

from cmhash.codes import sign
from cmhash.errors import CmhashError, DataError
from cmhash.methods.base import MODALITIES, HashMethod


#: Rows per block when centring float32 features into float64 products (about 64 MiB at d = 4096).
BLOCK_BYTES = 64 * 2**20


def block_rows(width: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows of a float64 block of ``width`` columns that fit in ``block_bytes`` (at least 1)."""
    return max(1, block_bytes // (8 * max(1, width)))


def centred_blocks(X: np.ndarray, mean: np.ndarray, rows: int | None = None):
    """``(start, X[start:start + rows] - mean)`` in float64, block by block, so a large float32
    ``X`` is never copied whole."""
    rows = block_rows(X.shape[1]) if rows is None else rows
    for s in range(0, X.shape[0], rows):
        yield s, X[s : s + rows].astype(np.float64) - mean


def blocked_projection(X: np.ndarray, mean: np.ndarray, P: np.ndarray, rows: int | None = None) -> np.ndarray:
    """``(X - mean) @ P`` (n x k) in float64, computed over :func:`centred_blocks`."""
    out = np.empty((X.shape[0], P.shape[1]))
    for s, b in centred_blocks(X, mean, rows):
        out[s : s + b.shape[0]] = b @ P
    return out


class ShallowHashMethod(HashMethod):
    deep: ClassVar[bool] = False
    #: Arrays that make up the fitted model (keys of ``self.arrays``), checked on load.
    STATE_ARRAYS: ClassVar[tuple[str, ...]] = ("mean_image", "mean_text", "P_image", "P_text")

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.arrays: dict[str, np.ndarray] = {}
        #: Objective (or any per-iteration figure) recorded while fitting.
        self.history: list[float] = []

    # ------------------------------------------------------------------ to implement
    def fit_features(self, feats: dict[str, np.ndarray], labels: np.ndarray | None = None, progress=None) -> None:
        """Learn from checked (and, with ``center``, centred) features; fill ``self.arrays``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ features
    def features(self, inputs, modality: str) -> np.ndarray:
        """Feature rows (n, d) from an array/tensor or a PairedDataset's ``<modality>_features``."""
        self.check_modality(modality)
        if hasattr(inputs, "image_features") and hasattr(inputs, "text_features"):
            feats = getattr(inputs, f"{modality}_features")
            if feats is None:
                raise DataError(
                    f"{getattr(inputs, 'name', 'dataset')}: no {modality} features; {self.name} works on feature vectors "
                    f"(extract them first with `cmhash features`)"
                )
            arr = np.asarray(feats)
        elif isinstance(inputs, Mapping):
            if modality not in inputs:
                raise DataError(f"{self.name}: no '{modality}' entry in the feature mapping")
            arr = np.asarray(inputs[modality])
        else:
            if hasattr(inputs, "detach"):
                inputs = inputs.detach().cpu().numpy()
            arr = np.asarray(inputs)
        if arr.ndim != 2:
            raise DataError(f"{self.name}: {modality} features must be a 2-D array (items x dims), got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{self.name}: {modality} features must be numbers, got dtype {arr.dtype}")
        return arr

    def check_finite(self, feats: np.ndarray, modality: str, where: str = "training") -> None:
        if feats.dtype.kind == "f" and not np.isfinite(feats).all():
            row = int(np.argwhere(~np.isfinite(feats))[0][0])
            raise DataError(f"{self.name}: {modality} features of {where} row {row} contain NaN/inf")

    def training_features(self, train) -> dict[str, np.ndarray]:
        """Both modalities' feature matrices, checked (pairs, >= 2 rows, finite)."""
        feats = {m: self.features(train, m) for m in MODALITIES}
        n = feats["image"].shape[0]
        if feats["text"].shape[0] != n:
            raise DataError(f"{self.name}: {n} image rows but {feats['text'].shape[0]} text rows; they must be pairs")
        if n < 2:
            raise DataError(f"{self.name}: needs at least 2 training pairs, got {n}")
        for m, f in feats.items():
            self.check_finite(f, m)
        return feats

    def training_labels(self, train, n: int) -> np.ndarray | None:
        if not self.uses_labels:
            return None
        labels = getattr(train, "labels", None) if not isinstance(train, Mapping) else train.get("labels")
        if labels is None:
            raise DataError(f"{self.name} is supervised and needs the training labels, which this dataset does not have")
        labels = np.asarray(labels)
        if labels.shape[0] != n:
            raise DataError(f"{self.name}: {labels.shape[0]} label rows for {n} training pairs")
        return labels

    # ------------------------------------------------------------------ centring
    def fit_means(self, feats: dict[str, np.ndarray]) -> None:
        """``mean_<modality>`` (float64) of the training features; zeros when ``center`` is false."""
        for m, f in feats.items():
            centre = bool(self.hparams.get("center", True))
            self.arrays[f"mean_{m}"] = f.mean(axis=0, dtype=np.float64) if centre else np.zeros(f.shape[1])

    def centred(self, x: np.ndarray, modality: str) -> np.ndarray:
        """``x - mean_<modality>`` in float64."""
        return np.asarray(x, dtype=np.float64) - self.arrays[f"mean_{modality}"]

    # ------------------------------------------------------------------ fit / encode
    def fit(self, train, progress=None, threads: int | None = None, **options: Any) -> "ShallowHashMethod":
        """Learn from the training pairs' feature matrices (``threads``: BLAS threads while fitting).

        ``progress``: optional callable ``progress(iteration, iterations, objective)``.
        """
        if options:
            raise CmhashError(f"{self.name}.fit: unknown option(s) {', '.join(sorted(options))}")
        from cmhash.threads import limit_threads

        feats = self.training_features(train)
        labels = self.training_labels(train, feats["image"].shape[0])
        with limit_threads(threads):
            self.arrays = {}
            self.history = []
            self.fit_means(feats)
            self.fit_features(feats, labels=labels, progress=progress)
        self._check_fitted()
        return self

    def _check_fitted(self) -> None:
        missing = [k for k in self.STATE_ARRAYS if k not in self.arrays]
        if missing:
            raise CmhashError(f"{self.name}: the method is not fitted; call fit() or load a checkpoint first")

    def query_features(self, inputs, modality: str, width_from: str | None = None) -> np.ndarray:
        """The feature rows to code, once the model is known to be fitted and their width to match
        the rows of ``self.arrays[width_from]`` (default ``P_<modality>``)."""
        self.check_modality(modality)
        self._check_fitted()
        feats = self.features(inputs, modality)
        d = self.arrays[width_from or f"P_{modality}"].shape[0]
        if feats.shape[1] != d:
            raise DataError(
                f"{self.name}: {modality} features have {feats.shape[1]} dimensions but the model was trained on {d}; "
                "use features from the same encoder"
            )
        return feats

    def project(self, inputs, modality: str) -> np.ndarray:
        """Real-valued projections ``(x - mean) P`` (n x bits), before the sign."""
        feats = self.query_features(inputs, modality)
        return self.centred(feats, modality) @ self.arrays[f"P_{modality}"]

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes ``sign(project(x))`` (0 maps to +1)."""
        return sign(self.project(inputs, modality))

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        self._check_fitted()
        out: dict[str, Any] = {"method": self.name, "bits": self.bits, "hparams": dict(self.hparams), "history": list(self.history)}
        for k, v in self.arrays.items():
            out[k] = np.asarray(v)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ShallowHashMethod":
        if state.get("method", cls.name) != cls.name:
            raise CmhashError(f"{cls.name}: this state belongs to method '{state.get('method')}'")
        if "bits" not in state:
            raise CmhashError(f"{cls.name}: saved state lacks 'bits'; it is not a {cls.name} checkpoint")
        obj = cls(int(state["bits"]), **dict(state.get("hparams", {})))
        reserved = {"method", "bits", "hparams", "history"}
        missing = [k for k in cls.STATE_ARRAYS if k not in state]
        if missing:
            raise CmhashError(f"{cls.name}: saved state lacks '{missing[0]}'; it is not a {cls.name} checkpoint")
        obj.arrays = {k: np.asarray(v) for k, v in state.items() if k not in reserved}
        obj.history = list(state.get("history", []))
        obj.check_state()
        return obj

    def check_state(self) -> None:
        """Shape checks after loading: ``P_<m>`` is (d, bits) and ``mean_<m>`` is (d,)."""
        for m in MODALITIES:
            P, mean = self.arrays.get(f"P_{m}"), self.arrays.get(f"mean_{m}")
            if P is None or mean is None:
                continue
            if P.ndim != 2 or P.shape[1] != self.bits or mean.shape != (P.shape[0],):
                raise CmhashError(
                    f"{self.name}: saved {m} projection has shape {P.shape} and mean {mean.shape}; expected (d, {self.bits}) and (d,)"
                )


__all__ = ["BLOCK_BYTES", "ShallowHashMethod", "block_rows", "blocked_projection", "centred_blocks"]
