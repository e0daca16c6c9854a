"""The encoder interface shared by every image and text encoder, and the two registries.

An encoder turns raw input (PIL images, strings) into one float32 vector per item. Every encoder
can describe itself as a JSON-able *spec* (``name``, ``version``, ``dim``, the options it was built
with and, for encoders that are fitted on data, the fitted state). :func:`encoder_from_spec`
rebuilds an identical encoder from a spec; a trained hashing model stores the specs of the
encoders its features came from, so that a raw query is turned into the same features at search
time, and a feature cache stores them so that it is reused only by the same encoder.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Sequence

import numpy as np

from cmhash.errors import DataError
from cmhash.nets.preprocess import to_rgb  # noqa: F401  (also re-exported: cmhash.features.base.to_rgb)
from cmhash.registry import Registry

SPEC_FORMAT = "cmhash-encoder"

IMAGE_ENCODERS: Registry = Registry(
    "image encoder",
    modules=[
        "cmhash.features.image_efficientnet",
        "cmhash.features.image_torchvision",
        "cmhash.features.image_onnx",
        "cmhash.features.image_tiny",
    ],
)
TEXT_ENCODERS: Registry = Registry(
    "text encoder",
    modules=[
        "cmhash.features.text_bow",
        "cmhash.features.text_lda",
        "cmhash.features.text_minilm",
        "cmhash.features.text_glove",
    ],
)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for fingerprints."""
    from cmhash.io import to_jsonable

    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def fingerprint(obj: Any, length: int = 16) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """An array as a JSON-able dict (base64 of the raw little-endian bytes); see :func:`decode_array`."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.str, "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    try:
        raw = base64.b64decode(obj["base64"])
        return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"encoder spec: malformed array state ({exc})") from exc


def texts_sha256(texts) -> str:
    """Content hash of a list of texts (order and boundaries included): cache keys and provenance."""
    h = hashlib.sha256()
    for t in texts:
        h.update((t or "").encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class Encoder:
    """Base class. Subclasses set ``kind``, ``name``, ``version``, ``dim`` and ``options``.

    ``options`` are the keyword arguments that rebuild the encoder through its registry factory;
    ``get_state``/``set_state`` carry fitted state (vocabularies, topic models) for encoders that
    need fitting.
    """

    kind: str = ""
    name: str = ""
    version: str = "1"
    dim: int = 0
    needs_fit: bool = False

    def __init__(self, **options: Any):
        self.options = dict(options)

    # ----------------------------------------------------------------- state
    @property
    def fitted(self) -> bool:
        return not self.needs_fit

    def get_state(self) -> dict[str, Any] | None:
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        raise DataError(f"{self.kind} encoder '{self.name}' has no fitted state, but the spec carries one")

    def describe(self) -> dict[str, Any]:
        """Extra facts for the manifest and `features info` (weights file, preprocessing...)."""
        return {}

    #: attributes that change speed, never features (threads, batch size...); see set_runtime
    runtime_options: tuple[str, ...] = ()

    def set_runtime(self, **runtime: Any) -> "Encoder":
        """Set speed-only options (e.g. ``threads``); options this encoder does not have are ignored."""
        for k, v in runtime.items():
            if k in self.runtime_options and v is not None:
                setattr(self, k, v)
        return self

    # ----------------------------------------------------------------- specs
    def spec(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`encoder_from_spec` rebuilds this encoder."""
        if self.needs_fit and not self.fitted:
            raise DataError(f"{self.kind} encoder '{self.name}' is not fitted yet; call fit(texts) before spec()")
        out: dict[str, Any] = {
            "format": SPEC_FORMAT,
            "kind": self.kind,
            "name": self.name,
            "version": str(self.version),
            "dim": int(self.dim),
            "options": dict(self.options),
        }
        state = self.get_state()
        if state is not None:
            out["state"] = state
        out.update({k: v for k, v in self.describe().items() if k not in out})
        return out

    def options_key(self) -> dict[str, Any]:
        """What identifies the encoder before fitting (name, version, options, weights, preprocessing).

        Part of the feature-cache key: a cache is reused only when this matches.
        """
        return {"kind": self.kind, "name": self.name, "version": str(self.version), "options": dict(self.options), **self.describe()}

    def fingerprint(self) -> str:
        spec = self.spec()
        return fingerprint({k: spec[k] for k in ("kind", "name", "version", "dim", "options", "state") if k in spec})

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"<{self.kind} encoder {self.name} v{self.version} dim={self.dim}{' ' + opts if opts else ''}>"


class ImageEncoder(Encoder):
    """Image encoders: ``prepare`` (one PIL image -> array, runs in decode workers) then ``forward``.

    The split lets the extraction pipeline decode and resize the next batch in worker threads
    while the model runs on the current one.
    """

    kind = "image"

    def prepare(self, image) -> np.ndarray:  # pragma: no cover - interface
        """One RGB PIL image -> model input array (float32 HWC for the CNN encoders)."""
        raise NotImplementedError

    def forward(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """A stacked batch of prepared inputs -> (B, dim) float32 features."""
        raise NotImplementedError

    def encode(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Encode a list of PIL images (any mode; converted to RGB) -> (n, dim) float32."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = [to_rgb(im) for im in images[start : start + batch_size]]
            if chunk:
                out[start : start + len(chunk)] = self.forward(np.stack([self.prepare(im) for im in chunk]))
        return out

    def encode_store(self, store, indices: Sequence[int] | None = None, batch_size: int = 32, workers: int = 1, strict: bool = False):
        """Encode rows ``indices`` (default all) of an ImageStore or of a PairedDataset's images.

        Returns ``(features, failures)``: one row per index (zeros where the image could not be
        read) and the list of :class:`~cmhash.features.pipeline.ImageFailure`; ``strict`` raises
        on the first unreadable image instead. Decoding runs in ``workers`` threads.
        """
        from cmhash.features.pipeline import encode_image_store

        if hasattr(store, "images") and hasattr(store, "ids"):  # a PairedDataset
            if store.images is None:
                raise DataError(f"{store.name}: the dataset has no image files to encode")
            store = store.images
        return encode_image_store(self, store, indices, batch_size=batch_size, workers=workers, strict=strict)


class TextEncoder(Encoder):
    """Text encoders: ``encode(list of str) -> (n, dim) float32``; some need ``fit`` first."""

    kind = "text"

    def fit(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> "TextEncoder":
        """Fit on training texts (no-op for pretrained encoders). ``meta``: the dataset's meta."""
        return self

    def fit_key(self, texts: Sequence[str], text_kind: str | None = None, meta: dict | None = None) -> dict[str, Any]:
        """What ``fit`` on these texts would depend on, computed without fitting (for cache keys)."""
        if not self.needs_fit:
            return {}
        return {"texts_sha256": texts_sha256(texts), "n": len(texts), "text_kind": text_kind}

    def encode(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise DataError(f"text encoder '{self.name}' must be fitted on training texts first (call fit(texts))")


# --------------------------------------------------------------------- factories
def _build(registry: Registry, kind: str, name: str, options: dict[str, Any]):
    factory = registry.get(name)
    try:
        return factory(**options)
    except TypeError as exc:  # an option the encoder does not have: say which, not a traceback
        msg = str(exc)
        if "unexpected keyword argument" in msg or "multiple values" in msg:
            bad = msg.split("argument")[-1].strip(" '\"")
            raise DataError(f"{kind} encoder '{name}' has no option '{bad}' (its options: docs/features.md, `cmhash features encoders`)") from None
        raise


def create_image_encoder(name: str, **options: Any) -> ImageEncoder:
    """Build a registered image encoder, e.g. ``create_image_encoder("efficientnet-lite0")``."""
    return _build(IMAGE_ENCODERS, "image", name, options)


def create_text_encoder(name: str, **options: Any) -> TextEncoder:
    """Build a registered text encoder, e.g. ``create_text_encoder("minilm")``."""
    return _build(TEXT_ENCODERS, "text", name, options)


def encoder_from_spec(spec: dict[str, Any], **runtime: Any) -> Encoder:
    """Rebuild the encoder described by ``spec`` (from :meth:`Encoder.spec`), fitted state included.

    ``runtime`` options change speed, not features (``threads``, ``streams`` and ``backend`` of
    image models, ``batch_size`` of MiniLM); they go to :meth:`Encoder.set_runtime` and are
    ignored by encoders that have no such option.

    Raises a DataError when the installed encoder's version differs from the spec's, because
    its features would not match the ones a model was trained on.
    """
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise DataError("not a cmhash encoder spec (expected a dict with format 'cmhash-encoder')")
    kind = spec.get("kind")
    if kind not in ("image", "text"):
        raise DataError(f"encoder spec: kind must be 'image' or 'text', got {kind!r}")
    registry = IMAGE_ENCODERS if kind == "image" else TEXT_ENCODERS
    encoder = _build(registry, kind, spec["name"], dict(spec.get("options", {})))
    encoder.set_runtime(**runtime)
    if "state" in spec:
        encoder.set_state(spec["state"])
    if str(encoder.version) != str(spec.get("version")):
        raise DataError(
            f"encoder spec: {kind} encoder '{spec['name']}' is version {spec.get('version')} in the spec but "
            f"version {encoder.version} here; its features would differ. Re-extract the features with this version."
        )
    want, have = (spec.get("weights") or {}).get("sha256"), (encoder.describe().get("weights") or {}).get("sha256")
    if want and have and want != have:
        raise DataError(
            f"encoder spec: {kind} encoder '{spec['name']}' was built with weights {spec['weights'].get('file')} "
            f"(sha256 {want[:12]}...) but the weights found here differ (sha256 {have[:12]}...); pass the same weights file"
        )
    if int(spec.get("dim", encoder.dim)) != encoder.dim:
        raise DataError(f"encoder spec: '{spec['name']}' gives {encoder.dim}-d features here but the spec says {spec.get('dim')}")
    return encoder


def list_encoders() -> dict[str, list[str]]:
    return {"image": IMAGE_ENCODERS.names(), "text": TEXT_ENCODERS.names()}
