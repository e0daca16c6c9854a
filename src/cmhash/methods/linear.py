"""Shared pieces of the shallow (closed-form, numpy) methods: feature checks and linear hashing.

CVH, IMH and SCM all end in the same coder: per modality a training mean, a projection ``W``
(d x bits) and a per-bit threshold, with ``code = sign((x - mean) W - threshold)``.
:class:`LinearHashMethod` holds those arrays, encodes, and saves/restores them, so each method
file contains only its own learning equations. Inputs are checked once here (2-D, finite,
paired, known dimension) so every method fails with the same clear messages.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

import numpy as np

from cmhash.codes import sign
from cmhash.errors import CmhashError, DataError
from cmhash.methods.base import MODALITIES, HashMethod

#: Rows per block when projecting float32 features in float64 (about 64 MiB per block at d = 4096).
BLOCK_BYTES = 64 * 2**20


def features(inputs, modality: str, method: str) -> np.ndarray:
    """Feature rows from an array, a tensor or a PairedDataset's ``<modality>_features``."""
    if hasattr(inputs, "image_features") and hasattr(inputs, "text_features"):
        feats = getattr(inputs, f"{modality}_features")
        if feats is None:
            raise DataError(
                f"{getattr(inputs, 'name', 'dataset')}: no {modality} features; {method} works on feature "
                "vectors (extract them first with `cmhash features`)"
            )
        arr = np.asarray(feats)
    else:
        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        arr = np.asarray(inputs)
    if arr.ndim != 2:
        raise DataError(f"{method}: {modality} features must be a 2-D array (items x dims), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{method}: {modality} features must be numeric, got dtype {arr.dtype}")
    return arr


def check_finite(arr: np.ndarray, modality: str, method: str, what: str = "training row") -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"{method}: {modality} features of {what} {row} contain NaN/inf")


def training_pairs(train, method: str, min_pairs: int = 2) -> dict[str, np.ndarray]:
    """Both modalities' training features as float64, checked: paired rows, finite, enough of them."""
    feats = {m: features(train, m, method) for m in MODALITIES}
    n = feats["image"].shape[0]
    if feats["text"].shape[0] != n:
        raise DataError(f"{method}: {n} image rows but {feats['text'].shape[0]} text rows; they must be pairs")
    if n < min_pairs:
        raise DataError(f"{method}: needs at least {min_pairs} training pairs, got {n}")
    for m, f in feats.items():
        check_finite(f, m, method)
    return {m: np.asarray(f, dtype=np.float64) for m, f in feats.items()}


def check_hparams(method: str, extra: dict[str, Any], known: Iterable[str]) -> None:
    """Reject unknown hyper-parameters (keys starting with '_', such as a preset's `_source`, pass)."""
    unknown = sorted(k for k in extra if not k.startswith("_"))
    if unknown:
        raise CmhashError(f"{method}: unknown hyper-parameter(s) {', '.join(unknown)} (known: {', '.join(known)})")


def blocked_project(X: np.ndarray, mean: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``(X - mean) W`` in float64, in row blocks so a float32 X is never copied whole."""
    out = np.empty((X.shape[0], W.shape[1]))
    rows = max(1, BLOCK_BYTES // (8 * max(1, X.shape[1])))
    for s in range(0, X.shape[0], rows):
        out[s : s + rows] = (X[s : s + rows].astype(np.float64) - mean) @ W
    return out


class LinearHashMethod(HashMethod):
    """A method whose codes are ``sign((x - mean_m) W_m - threshold_m)`` per modality.

    Subclasses implement ``_fit(feats)`` (float64 training features per modality) and set
    ``means``, ``projections`` and ``thresholds``; they list their hyper-parameter names in
    ``KNOWN`` and may keep extra arrays in ``extra_state`` (saved and restored as they are).
    """

    deep: ClassVar[bool] = False
    KNOWN: ClassVar[tuple[str, ...]] = ()

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.means: dict[str, np.ndarray] = {}
        self.projections: dict[str, np.ndarray] = {}
        self.thresholds: dict[str, np.ndarray] = {}
        self.extra_state: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def fit(self, train, threads: int | None = None, **options: Any):
        """Learn both projections from the training pairs' feature matrices.

        ``threads``: BLAS threads while fitting (None: the library default).
        """
        if options:
            raise CmhashError(f"{self.name}.fit: unknown option(s) {', '.join(sorted(options))}")
        from cmhash.threads import limit_threads

        feats = training_pairs(train, self.name)
        with limit_threads(threads):
            self._fit(feats, train)
        return self

    def _fit(self, feats: dict[str, np.ndarray], train) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ coding
    def _check_fitted(self) -> None:
        if not self.projections:
            raise CmhashError(f"{self.name}: the method is not fitted; call fit() or load a checkpoint first")

    def project(self, inputs, modality: str) -> np.ndarray:
        """Real-valued projections ``(x - mean) W`` (n x bits), before the threshold and the sign."""
        self.check_modality(modality)
        self._check_fitted()
        feats = features(inputs, modality, self.name)
        W, mean = self.projections[modality], self.means[modality]
        if feats.shape[1] != W.shape[0]:
            raise DataError(
                f"{self.name}: {modality} features have {feats.shape[1]} dimensions but the model was trained on "
                f"{W.shape[0]}; use features from the same encoder"
            )
        check_finite(feats, modality, self.name, what="input row")
        return blocked_project(feats, mean, W)

    def encode(self, inputs, modality: str) -> np.ndarray:
        """+-1 int8 codes ``sign((x - mean) W - threshold)`` (0 maps to +1)."""
        return sign(self.project(inputs, modality) - self.thresholds[modality])

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        self._check_fitted()
        out: dict[str, Any] = {"method": self.name, "bits": self.bits, "hparams": dict(self.hparams)}
        for m in MODALITIES:
            out[f"mean_{m}"] = self.means[m]
            out[f"W_{m}"] = self.projections[m]
            out[f"threshold_{m}"] = self.thresholds[m]
        out["extra"] = dict(self.extra_state)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]):
        if state.get("method", cls.name) != cls.name:
            raise CmhashError(f"{cls.name}: this state belongs to method '{state.get('method')}'")
        try:
            obj = cls(int(state["bits"]), **dict(state.get("hparams", {})))
            for m in MODALITIES:
                obj.means[m] = np.asarray(state[f"mean_{m}"], dtype=np.float64)
                obj.projections[m] = np.asarray(state[f"W_{m}"], dtype=np.float64)
                obj.thresholds[m] = np.asarray(state[f"threshold_{m}"], dtype=np.float64)
        except KeyError as exc:
            raise CmhashError(f"{cls.name}: saved state lacks '{exc.args[0]}'; it is not a {cls.name} checkpoint") from None
        for m in MODALITIES:
            W, mean, thr = obj.projections[m], obj.means[m], obj.thresholds[m]
            if W.ndim != 2 or W.shape[1] != obj.bits or mean.shape != (W.shape[0],) or thr.shape != (obj.bits,):
                raise CmhashError(
                    f"{cls.name}: saved {m} projection {W.shape}, mean {mean.shape}, threshold {thr.shape}; "
                    f"expected (d, {obj.bits}), (d,), ({obj.bits},)"
                )
        obj.extra_state = dict(state.get("extra", {}))
        return obj


def regularised_cov(X: np.ndarray, reg: float, relative: bool) -> np.ndarray:
    """``X'X / n + r I`` with ``r = reg`` or ``reg * mean(diag(X'X / n))`` (scale-free)."""
    C = X.T @ X / X.shape[0]
    r = reg * max(float(np.trace(C)) / C.shape[0], np.finfo(float).tiny) if relative else reg
    C[np.diag_indices_from(C)] += r
    return C


def top_generalised_eig(M: np.ndarray, C: np.ndarray, k: int):
    """The ``k`` largest eigenpairs of ``M a = lam C a`` (M symmetric, C symmetric positive definite),
    largest first; eigenvectors are C-orthonormal (``A' C A = I``)."""
    from scipy.linalg import LinAlgError, eigh

    d = M.shape[0]
    M = (M + M.T) / 2
    try:
        vals, vecs = eigh(M, C, subset_by_index=[d - k, d - 1])
    except LinAlgError as exc:
        raise CmhashError(f"generalised eigenproblem failed ({exc}); increase the regularisation `reg`") from None
    return vals[::-1], vecs[:, ::-1]


__all__ = [
    "LinearHashMethod",
    "blocked_project",
    "check_finite",
    "check_hparams",
    "features",
    "regularised_cov",
    "top_generalised_eig",
    "training_pairs",
]
