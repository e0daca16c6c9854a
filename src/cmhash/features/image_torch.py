"""Shared machinery for image encoders backed by a torch model (EfficientNet-Lite, AlexNet, VGG).

Backends:

* ``"onnx"``: export once to ONNX (cached by weights sha256, see :mod:`cmhash.features.runtime`)
  and run with onnxruntime: several times faster on CPU;
* ``"torch"``: eager PyTorch under ``torch.inference_mode``;
* ``"auto"`` (default): ``onnx`` when the ``onnx`` and ``onnxruntime`` packages are installed,
  else ``torch``.

Both give the same features up to float rounding (the export is checked on a probe batch).
Inputs arrive as float32 NHWC batches from :class:`~cmhash.nets.preprocess.Preprocess`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.errors import DataError
from cmhash.features.base import ImageEncoder
from cmhash.nets.preprocess import Preprocess
from cmhash.features.runtime import (
    EXPORT_VERSION,
    default_streams,
    default_threads,
    export_onnx,
    models_cache_dir,
    onnx_available,
    onnx_session,
    set_torch_threads,
    weights_info,
)

BACKENDS = ("auto", "onnx", "torch")


class TorchImageEncoder(ImageEncoder):
    """Subclasses implement ``weights_path()``, ``build_module()`` (a torch module mapping an
    NCHW float batch to (B, dim) features) and set ``preprocess``/``dim``."""

    preprocess: Preprocess

    def __init__(self, backend: str = "auto", threads: int | None = None, streams: int | None = None, **options: Any):
        if backend not in BACKENDS:
            raise DataError(f"image encoder {self.name}: backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        # threads/backend change speed, not features: kept out of the spec options on purpose.
        super().__init__(**options)
        self.auto_backend = backend == "auto"
        self.backend = ("onnx" if onnx_available() else "torch") if backend == "auto" else backend
        self.threads = threads
        self.streams = streams
        self._module = None
        self._session = None
        self._pool = None

    runtime_options = ("backend", "threads", "streams")

    def set_runtime(self, **runtime: Any) -> "TorchImageEncoder":
        backend = runtime.pop("backend", None)
        if backend is not None:
            if backend not in BACKENDS:
                raise DataError(f"image encoder {self.name}: backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
            self.auto_backend = backend == "auto"
            self.backend = ("onnx" if onnx_available() else "torch") if backend == "auto" else backend
        super().set_runtime(**runtime)
        self._session = None  # rebuilt with the new threads on next use
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return self

    # -------------------------------------------------------------- subclass API
    def weights_path(self):  # pragma: no cover - interface
        raise NotImplementedError

    def build_module(self):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"weights": weights_info(self.weights_path()), "preprocess": self.preprocess.to_dict()}

    # -------------------------------------------------------------- running
    def prepare(self, image) -> np.ndarray:
        return self.preprocess(image)

    def module(self):
        if self._module is None:
            set_torch_threads(self.threads or default_threads())
            self._module = self.build_module().eval()
            for p in self._module.parameters():
                p.requires_grad_(False)
        return self._module

    def onnx_path(self):
        sha = weights_info(self.weights_path())["sha256"][:16]
        return models_cache_dir() / f"{self.name}-{sha}-{self.preprocess.size}px-v{EXPORT_VERSION}.onnx"

    def session(self):
        if self._session is None:
            path = self.onnx_path()
            if not path.exists():
                probe = np.random.default_rng(0).standard_normal((2, 3, self.preprocess.size, self.preprocess.size)).astype(np.float32)
                try:
                    export_onnx(self.module(), probe, path)
                except Exception as exc:
                    if not self.auto_backend:
                        raise
                    import warnings

                    warnings.warn(f"{self.name}: ONNX export failed ({exc}); running eager PyTorch instead (slower, same features)", stacklevel=2)
                    self.backend = "torch"
                    return None
            self._session = onnx_session(path, threads=self.threads or default_threads())
        return self._session

    def _run_onnx(self, nchw: np.ndarray) -> np.ndarray:
        """Run the session; with ``streams`` > 1 the batch is split and run in parallel threads
        (onnxruntime releases the GIL), which scales better than intra-op threads on few cores."""
        streams = int(self.streams or default_streams())
        sess = self.session()
        if streams <= 1 or len(nchw) < 2:
            return sess.run(None, {"images": nchw})[0]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="cmhash-ort")
        parts = np.array_split(nchw, min(streams, len(nchw)))
        return np.concatenate(list(self._pool.map(lambda p: sess.run(None, {"images": np.ascontiguousarray(p)})[0], parts)))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) float32 -> (B, dim) float32."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise DataError(f"image encoder {self.name}: expected a (B, H, W, 3) batch, got shape {batch.shape}")
        if self.backend == "onnx" and self.session() is not None:
            out = self._run_onnx(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        else:
            import torch

            set_torch_threads(self.threads or default_threads())
            with torch.inference_mode():
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
                out = self.module()(x).numpy()
        return np.asarray(out, dtype=np.float32).reshape(len(batch), -1)
