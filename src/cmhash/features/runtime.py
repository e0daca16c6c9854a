"""Where models run: cache folders, weight checksums, ONNX export and ONNX Runtime sessions.

On a small CPU machine ONNX Runtime runs EfficientNet-Lite several times faster than eager
PyTorch (see docs/features.md for the measured figures), so torch models are exported once to
ONNX, cached under :func:`models_cache_dir` keyed by the weights' sha256, checked against the
torch model on a probe batch, and then run with onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import DataError, MissingFileError, require

EXPORT_VERSION = 1
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    """``$CMHASH_CACHE`` or ``~/.cache/cmhash``: outside any repository, shared by all projects."""
    env = os.environ.get("CMHASH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cmhash"


def models_cache_dir() -> Path:
    return cache_root() / "models"


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised per (path, size, mtime) for the life of the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def weights_info(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    return {"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}


_DEFAULTS: dict[str, int] = {}


def set_default_threads(threads: int | None = None, streams: int | None = None) -> None:
    """Process-wide defaults for encoders built without ``threads``/``streams`` (the CLI's --threads)."""
    if threads:
        _DEFAULTS["threads"] = int(threads)
    if streams:
        _DEFAULTS["streams"] = int(streams)


def default_threads() -> int:
    """Intra-op threads per model run: ``$CMHASH_THREADS``, else 1 (measured cheapest on 2 cores)."""
    return int(_DEFAULTS.get("threads") or os.environ.get("CMHASH_THREADS") or 1)


def default_streams() -> int:
    """Parts of a batch run concurrently by ONNX image models: ``$CMHASH_STREAMS``, else 2 (1 on one core).

    Two single-threaded streams cost the same CPU time per image as one (measured: 12.5 vs
    12.7 ms on this machine) but can use both cores, whereas 2 intra-op threads cost 40 % more
    CPU per image on 2 shared cores (benchmarks/features_bench.py, docs/features.md).
    """
    return int(_DEFAULTS.get("streams") or os.environ.get("CMHASH_STREAMS") or min(2, os.cpu_count() or 1))


def set_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when given (small models are slower with many threads)."""
    if threads:
        import torch

        if torch.get_num_threads() != int(threads):
            torch.set_num_threads(int(threads))


def onnx_session(path: str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads and full graph optimisation."""
    ort = require("onnxruntime", "running ONNX models", extra="features")
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{p}: ONNX model not found")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise DataError(f"{p}: onnxruntime cannot load this model ({exc})") from exc


def export_onnx(module, example: np.ndarray, dest: Path, check_atol: float = 1e-3) -> Path:
    """Export a torch module (one image batch in, one array out) to ``dest`` once, atomically.

    The export is checked against the torch module on ``example``: a max abs difference above
    ``check_atol`` raises instead of silently caching a wrong model.
    """
    import torch

    from cmhash.io import atomic_path

    require("onnx", "exporting a torch model to ONNX (backend='onnx')", extra="features")
    dest = Path(dest)
    if dest.exists():
        return dest
    module = module.eval()
    x = torch.from_numpy(np.ascontiguousarray(example))
    import warnings

    with atomic_path(dest, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(tmp),
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        with torch.inference_mode():
            want = module(x).numpy()
        got = onnx_session(tmp).run(None, {"images": example.astype(np.float32)})[0]
        diff = float(np.abs(got.reshape(want.shape) - want).max())
        if diff > check_atol:
            raise DataError(f"ONNX export of {dest.name} differs from the torch model by {diff:.2e} (> {check_atol}); use backend='torch'")
    return dest


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
