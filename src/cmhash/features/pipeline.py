"""Decode + preprocess images in worker threads while the model runs on the previous batch.

PIL releases the GIL while it decodes and resizes, and torch/onnxruntime release it during the
forward pass, so a small thread pool overlaps image loading with inference at no pickling cost
(a process pool would have to ship every float32 array back). Images that cannot be read are
reported (row, file, reason) and skipped; ``strict=True`` raises on the first one instead.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from cmhash.errors import DataError, MissingFileError


@dataclass
class ImageFailure:
    """One image that could not be encoded; its feature row is left as zeros and marked invalid."""

    row: int
    ref: str
    reason: str  # missing_image | unreadable_image
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _load_one(store, prepare: Callable, row: int):
    """Load and prepare one image; never raises (errors are returned for the caller to judge)."""
    try:
        return prepare(store.load(row)), None
    except FileNotFoundError as exc:
        return None, ImageFailure(row, _ref(store, row), "missing_image", str(exc))
    except MemoryError:
        raise
    except Exception as exc:  # UnreadableImageError, PIL DecompressionBombError, OSError...
        return None, ImageFailure(row, _ref(store, row), "unreadable_image", f"{type(exc).__name__}: {exc}")


def _ref(store, row: int) -> str:
    try:
        return store.ref(row)
    except Exception:  # pragma: no cover - a broken store still gets reported
        return f"row {row}"


def _raise_strict(failure: ImageFailure) -> None:
    what = "is missing" if failure.reason == "missing_image" else "cannot be decoded"
    cls = MissingFileError if failure.reason == "missing_image" else DataError
    raise cls(f"image {failure.ref} (row {failure.row}) {what}: {failure.detail} (strict mode; drop strict to skip and report it)")


def iter_prepared(store, rows: Sequence[int], prepare: Callable, workers: int = 1, prefetch: int = 64) -> Iterator[tuple[int, np.ndarray | None, ImageFailure | None]]:
    """Yield ``(row, prepared array or None, failure or None)`` for each of ``rows``, in order.

    ``workers`` threads run ahead of the consumer by at most ``prefetch`` images.
    """
    rows = [int(r) for r in rows]
    if workers <= 0:
        for r in rows:
            arr, fail = _load_one(store, prepare, r)
            yield r, arr, fail
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cmhash-decode") as pool:
        pending: collections.deque[tuple[int, Future]] = collections.deque()
        it = iter(rows)
        try:
            for r in it:
                pending.append((r, pool.submit(_load_one, store, prepare, r)))
                if len(pending) >= max(prefetch, 1):
                    break
            while pending:
                r, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_load_one, store, prepare, nxt)))
                arr, fail = fut.result()
                yield r, arr, fail
        finally:
            for _, fut in pending:
                fut.cancel()


def iter_image_batches(
    encoder, store, rows: Sequence[int], batch_size: int = 32, workers: int = 1, strict: bool = False
) -> Iterator[tuple[list[int], np.ndarray | None, list[ImageFailure]]]:
    """Yield ``(positions in rows, (B, dim) features, failures)`` batch by batch, in order."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    ok_rows: list[int] = []
    arrays: list[np.ndarray] = []
    failures: list[ImageFailure] = []
    for k, (r, arr, fail) in enumerate(iter_prepared(store, rows, encoder.prepare, workers=workers, prefetch=2 * batch_size)):
        if fail is not None:
            if strict:
                _raise_strict(fail)
            failures.append(fail)
        else:
            ok_rows.append(k)
            arrays.append(arr)
        if len(arrays) >= batch_size:
            yield ok_rows, encoder.forward(np.stack(arrays)), failures
            ok_rows, arrays, failures = [], [], []
    if arrays or failures:
        yield ok_rows, (encoder.forward(np.stack(arrays)) if arrays else None), failures


def encode_image_store(encoder, store, indices: Sequence[int] | None = None, batch_size: int = 32, workers: int = 1, strict: bool = False):
    """Encode rows ``indices`` (default: all) of ``store`` -> ``(features, failures)``.

    ``features`` has one row per requested index (zeros where the image failed).
    """
    rows = list(range(len(store))) if indices is None else [int(i) for i in indices]
    out = np.zeros((len(rows), encoder.dim), dtype=np.float32)
    failures: list[ImageFailure] = []
    for ok, feats, fails in iter_image_batches(encoder, store, rows, batch_size, workers, strict):
        if ok:
            out[ok] = feats
        failures.extend(fails)
    return out, failures
