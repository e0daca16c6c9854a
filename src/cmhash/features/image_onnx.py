"""Any ONNX image model given by path, run with onnxruntime; its output is taken as the features.

Options say how to feed it (defaults: torchvision's ImageNet recipe, resize shorter side to 256,
centre-crop 224, ImageNet mean/std):

* ``image_size``, ``resize`` (``shorter-crop`` | ``stretch``), ``resize_to``, ``interpolation``;
* ``normalize`` (``imagenet`` | ``pm1`` | ``tf-lite`` | ``none`` | ``custom`` with ``mean``/``std``
  in 0..1 units);
* ``layout``: ``auto`` (from the input's shape: channels first when dim 1 is 3), ``NCHW``, ``NHWC``;
* ``input`` / ``output``: names (default: the model's first input / first output);
* a 4-D output is global-average-pooled over space (``pool="mean"``; ``"max"`` also works);
  anything else is flattened per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.errors import DataError, MissingFileError
from cmhash.features.base import IMAGE_ENCODERS, ImageEncoder
from cmhash.nets.preprocess import Preprocess
from cmhash.features.runtime import default_threads, onnx_session, weights_info


class OnnxImageEncoder(ImageEncoder):
    """An ONNX image model by path; see the module docstring for the options."""

    name = "onnx"
    version = "1"

    def set_runtime(self, **runtime: Any) -> "OnnxImageEncoder":
        threads = runtime.get("threads")
        if threads and threads != self.threads:
            self.threads = int(threads)
            self.session = onnx_session(self.path, threads=self.threads)
        return self

    def __init__(
        self,
        path: str | None = None,
        image_size: int = 224,
        resize: str = "shorter-crop",
        resize_to: int | None = 256,
        interpolation: str = "bilinear",
        normalize: str = "imagenet",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        layout: str = "auto",
        input: str | None = None,
        output: str | None = None,
        pool: str = "mean",
        threads: int | None = None,
    ):
        if not path:
            raise DataError("the onnx image encoder needs the model file: path=PATH (CLI: --image-option path=PATH)")
        p = Path(path).expanduser()
        if not p.exists():
            raise MissingFileError(f"{p}: ONNX image model not found")
        if layout not in ("auto", "NCHW", "NHWC"):
            raise DataError(f"onnx image encoder: layout must be auto, NCHW or NHWC, got '{layout}'")
        if pool not in ("mean", "max"):
            raise DataError(f"onnx image encoder: pool must be mean or max, got '{pool}'")
        opts: dict[str, Any] = dict(
            path=str(p), image_size=int(image_size), resize=resize, resize_to=resize_to, interpolation=interpolation,
            normalize=normalize, layout=layout, pool=pool,
        )
        norm_kw: dict[str, Any] = {}
        if mean is not None or std is not None:
            if normalize not in ("custom", "imagenet"):
                raise DataError("onnx image encoder: mean/std are used with normalize='custom'")
            normalize = "custom"
            opts["normalize"] = "custom"
            norm_kw = {"mean": tuple(mean if mean is not None else (0.0, 0.0, 0.0)), "std": tuple(std if std is not None else (1.0, 1.0, 1.0))}
            opts.update(mean=list(norm_kw["mean"]), std=list(norm_kw["std"]))
        if input:
            opts["input"] = input
        if output:
            opts["output"] = output
        super().__init__(**opts)
        self.path = p
        self.threads = threads
        self.preprocess = Preprocess.named(normalize, size=int(image_size), resize=resize, resize_to=resize_to, interpolation=interpolation, **norm_kw)
        self.session = onnx_session(p, threads=threads or default_threads())
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = input or next(iter(inputs))
        if self.input_name not in inputs:
            raise DataError(f"{p}: no input named '{self.input_name}' (inputs: {', '.join(inputs)})")
        self.output_name = output or outputs[0]
        if self.output_name not in outputs:
            raise DataError(f"{p}: no output named '{self.output_name}' (outputs: {', '.join(outputs)})")
        shape = list(inputs[self.input_name].shape)
        if len(shape) != 4:
            raise DataError(f"{p}: input '{self.input_name}' has shape {shape}; an image model takes a 4-D batch")
        if layout == "auto":
            layout = "NCHW" if shape[1] == 3 else "NHWC" if shape[3] == 3 else "NCHW"
        self.layout = layout
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_type = inputs[self.input_name].type
        probe = np.zeros((1, int(image_size), int(image_size), 3), dtype=np.float32)
        self.dim = int(self._run(probe).shape[1])

    def describe(self) -> dict[str, Any]:
        return {"weights": weights_info(self.path), "preprocess": self.preprocess.to_dict()}

    def prepare(self, image) -> np.ndarray:
        return self.preprocess(image)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = batch if self.layout == "NHWC" else batch.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, dtype=np.float16 if "float16" in self.input_type else np.float32)
        if self.fixed_batch == 1 and len(x) != 1:
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        try:
            out = np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)
        except Exception as exc:
            raise DataError(f"{self.path}: inference failed on a {list(x.shape)} batch ({exc}); check image_size/layout") from exc
        if out.ndim == 4:
            # Pool over the spatial axes of the output's layout (channels where the input had them).
            axes = (2, 3) if self.layout == "NCHW" else (1, 2)
            out = out.mean(axis=axes) if self.options["pool"] == "mean" else out.max(axis=axes)
        return out.reshape(len(batch), -1)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self._run(np.asarray(batch, dtype=np.float32))


@IMAGE_ENCODERS.register("onnx")
def make_onnx(**options: Any) -> OnnxImageEncoder:
    """Any ONNX image model: path=PATH; output pooled if 4-D (see cmhash.features.image_onnx)."""
    return OnnxImageEncoder(**options)
