"""The on-disk feature cache: extract once, resume after an interruption, reuse only when it matches.

A cache is a folder::

    manifest.json                 what is inside, how it was made, which chunks are done
    ids.npy                       the dataset's pair ids, in row order
    image_features.npy            (n, d) float32, readable with np.load(mmap_mode="r")
    text_features.npy             (n, d) float32
    text_features.<name>.npy      extra text feature sets (e.g. Fashion: MiniLM and BoW)
    encoders/<entry>.json         the full encoder spec (fitted state included) per entry

Each *entry* (``image``, ``text``, ``text.<name>``) is written chunk by chunk into
``<file>.partial.npy`` (a memory-mapped .npy), and the manifest is rewritten atomically after
every chunk with the list of finished chunks; an interrupted run resumes at the first unfinished
chunk, and the file is renamed to its final name when the last chunk is done. Batches never
span chunks, so a resumed run computes exactly the batches an uninterrupted run would.

An entry is reused only when its *key* matches: encoder name, version, options, weights sha256
and preprocessing; for fitted text encoders what they are fitted on; and a checksum of the
inputs (image file names + sizes + modification times, or their contents with
``checksum="content"``; the texts' sha256) and the row ids. Anything else rebuilds that entry
(the other entries are kept). Images that cannot be read are recorded in the manifest, their
rows are zeros, and :meth:`FeatureCache.apply` drops them from the dataset and reports them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cmhash.errors import CmhashError, DataError, MissingFileError
from cmhash.features.base import Encoder, ImageEncoder, TextEncoder, create_image_encoder, create_text_encoder, encoder_from_spec, fingerprint
from cmhash.io import read_json, save_npy, write_json

FORMAT = "cmhash-feature-cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKSUM_MODES = ("stat", "content", "none")
TEXT_SLICE = 512  # texts per encode() call inside a chunk


# ----------------------------------------------------------------------------- helpers
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def ids_sha256(ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def image_inputs_checksum(store, mode: str = "stat") -> dict[str, Any]:
    """Checksum of the image inputs: resolved paths (or refs) plus size+mtime (``stat``) or bytes (``content``) of each file."""
    if mode not in CHECKSUM_MODES:
        raise DataError(f"checksum must be one of {', '.join(CHECKSUM_MODES)}, got '{mode}'")
    h = hashlib.sha256()
    n = len(store)
    paths = getattr(store, "paths", None)
    single = getattr(store, "path", None)
    missing = 0
    for i in range(n):
        # Files are named by their resolved path, so ../data and /abs/data give the same key.
        ref = os.path.realpath(paths[i]) if paths is not None else store.ref(i)
        h.update(ref.encode("utf-8"))
        h.update(b"\x00")
        if paths is not None and mode != "none":
            p = paths[i]
            try:
                if mode == "content":
                    with open(p, "rb") as fh:
                        h.update(hashlib.sha256(fh.read()).digest())
                else:
                    st = os.stat(p)
                    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                missing += 1
                h.update(b"<missing>")
    if single is not None and mode != "none":
        st = os.stat(single)
        h.update(f"{single}:{st.st_size}:{st.st_mtime_ns}".encode())
    return {"checksum": mode, "sha256": h.hexdigest(), "count": n, "missing_at_check": missing}


def texts_checksum(texts: Sequence[str]) -> dict[str, Any]:
    from cmhash.features.text_bow import texts_sha256

    return {"checksum": "content", "sha256": texts_sha256(texts), "count": len(texts)}


@contextlib.contextmanager
def _dir_lock(path: Path):
    """Exclusive lock on the cache folder (a second extraction fails at once, naming the holder's PID);
    temporary files of an extraction killed mid-write are removed once the lock is held."""
    from cmhash.io import clean_stale_temps, write_lock

    with write_lock(path, "feature cache", is_dir=True):
        clean_stale_temps(path, is_dir=True)
        with contextlib.suppress(FileNotFoundError):
            (path / ".lock").unlink()  # the lock file of cmhash <= 0.x, no longer used
        yield


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def npy_problem(path: Path, shape: tuple[int, ...], nbytes: int | None = None, sha256: str | None = None) -> str | None:
    """Why the .npy file at ``path`` cannot be the array ``shape`` float32, or None when it can.

    Cheap checks always (the file exists, its header says this shape and dtype, its size is the
    header's size plus the data, the recorded byte count); the sha256 only when given.
    """
    if not path.is_file():
        return "the file is missing"
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            hdr_shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except Exception as exc:  # noqa: BLE001 - any header problem is damage
        return f"not a readable .npy file ({exc})"
    if tuple(hdr_shape) != tuple(shape) or dtype != np.float32 or fortran:
        return f"holds a {'x'.join(map(str, hdr_shape))} {dtype} array, the manifest says {'x'.join(map(str, shape))} float32"
    expect = offset + int(np.prod(shape)) * 4
    if size != expect:
        return f"{size} bytes, expected {expect} (truncated or overwritten)"
    if nbytes is not None and size != int(nbytes):
        return f"{size} bytes, the manifest recorded {nbytes}"
    if sha256 is not None and file_sha256(path) != sha256:
        return "its sha256 differs from the one recorded when it was written"
    return None


def entry_file(name: str) -> str:
    if name == "image":
        return "image_features.npy"
    if name == "text":
        return "text_features.npy"
    if name.startswith("text."):
        return f"text_features.{name[5:]}.npy"
    raise DataError(f"feature cache: unknown entry name '{name}' (image, text or text.<name>)")


def _partial(file: str) -> str:
    return file[: -len(".npy")] + ".partial.npy"


def _spec_without_state(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "state"}


# ----------------------------------------------------------------------------- the cache
class FeatureCache:
    """A feature-cache folder (see the module docstring). Arrays are memory-mapped, read-only."""

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any], mmap: bool = True):
        self.path = Path(path)
        self.manifest = manifest
        self.mmap = mmap
        self._arrays: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "FeatureCache":
        path = Path(path)
        mf = path / MANIFEST
        if not mf.exists():
            raise MissingFileError(f"{path}: not a feature cache (no {MANIFEST}); create one with `cmhash features extract`")
        manifest = read_json(mf)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DataError(f"{mf}: not a cmhash feature-cache manifest")
        if int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise DataError(f"{mf}: feature-cache format version {manifest.get('version')} is newer than this cmhash understands ({FORMAT_VERSION}); upgrade cmhash")
        return cls(path, manifest, mmap=mmap)

    # ------------------------------------------------------------------ contents
    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("entries", {})

    def problem(self, name: str, full: bool = False) -> str | None:
        """Why entry ``name``'s array file is damaged, or None. ``full`` also compares its sha256 (reads it all)."""
        e = self.entries.get(name) or {}
        return npy_problem(
            self.path / e.get("file", entry_file(name)),
            (len(self), int(e.get("dim", 0))),
            e.get("bytes"),
            e.get("sha256") if full else None,
        )

    def complete(self, name: str) -> bool:
        e = self.entries.get(name)
        return (
            bool(e)
            and e.get("status") == "complete"
            and e.get("key", {}).get("ids_sha256") == self.manifest["dataset"].get("ids_sha256")
            and (self.path / e["file"]).exists()
        )

    @property
    def ids(self) -> np.ndarray:
        return np.load(self.path / "ids.npy", allow_pickle=False)

    def __len__(self) -> int:
        return int(self.manifest["dataset"]["n"])

    def features(self, name: str = "image") -> np.ndarray:
        """The (n, d) float32 array of entry ``name`` (memory-mapped unless ``mmap=False``)."""
        if name not in self.entries:
            raise DataError(f"{self.path}: the cache has no '{name}' features (it has: {', '.join(self.entries) or 'none'})")
        if not self.complete(name):
            raise DataError(f"{self.path}: the '{name}' features are incomplete; run the same extract command again to finish them")
        if name not in self._arrays:
            bad = self.problem(name)
            if bad:
                raise DataError(
                    f"{self.path / self.entries[name]['file']}: damaged feature file ({bad}); "
                    "run the `cmhash features extract` (or `features prepare`) command that made it again to rebuild it"
                )
            arr = np.load(self.path / self.entries[name]["file"], mmap_mode="r" if self.mmap else None, allow_pickle=False)
            if arr.shape != (len(self), int(self.entries[name]["dim"])):
                raise DataError(f"{self.path / self.entries[name]['file']}: shape {arr.shape}, manifest says ({len(self)}, {self.entries[name]['dim']})")
            self._arrays[name] = arr
        return self._arrays[name]

    @property
    def image_features(self) -> np.ndarray:
        return self.features("image")

    @property
    def text_features(self) -> np.ndarray:
        return self.features("text")

    def failures(self, name: str = "image") -> list[dict[str, Any]]:
        return list(self.entries.get(name, {}).get("failures", []))

    def valid_mask(self, names: Iterable[str] | None = None) -> np.ndarray:
        """True for rows whose features are valid in every entry of ``names`` (default: all)."""
        mask = np.ones(len(self), dtype=bool)
        for name in names if names is not None else self.entries:
            for f in self.failures(name):
                mask[int(f["row"])] = False
        return mask

    def encoder_spec(self, name: str) -> dict[str, Any]:
        """The full spec (fitted state included) of the encoder that made entry ``name``."""
        e = self.entries.get(name)
        if not e:
            raise DataError(f"{self.path}: the cache has no '{name}' features")
        return read_json(self.path / e["spec_file"])

    def encoder(self, name: str, **runtime: Any) -> Encoder:
        """Rebuild the encoder of entry ``name`` (to encode new queries the same way)."""
        return encoder_from_spec(self.encoder_spec(name), **runtime)

    # ------------------------------------------------------------------ use
    def apply(self, dataset, text: str | None = "text", image: str | None = "image", drop_failed: bool = True):
        """``dataset`` with this cache's features attached (``dataset.with_features``).

        The dataset's ids must be the cache's ids (same rows, same order) or a subset of them
        (matched by id). Rows whose image failed are dropped and added to ``dataset.report``
        (``drop_failed=False`` keeps them as zero rows). ``dataset.meta["encoders"]`` receives
        the encoder specs so a trained model can store them.
        """
        ids = self.ids
        if len(dataset) == len(ids) and np.array_equal(np.asarray(dataset.ids), ids):
            rows = np.arange(len(ids))
        else:
            pos = {s: k for k, s in enumerate(ids.tolist())}
            missing = [s for s in dataset.ids.tolist() if s not in pos]
            if missing:
                raise DataError(
                    f"{self.path}: {len(missing)} of the dataset's {len(dataset)} ids are not in the feature cache "
                    f"(e.g. '{missing[0]}'); the cache was made from another dataset. Re-run `cmhash features extract`."
                )
            rows = np.asarray([pos[s] for s in dataset.ids.tolist()], dtype=np.int64)
        names = [n for n in (image, text) if n]
        img = self.features(image) if image else None
        txt = self.features(text) if text else None
        identity = np.array_equal(rows, np.arange(len(ids)))
        specs = {("image" if n == image else "text"): self.encoder_spec(n) for n in names}
        out = dataset.with_features(
            image_features=None if img is None else (img if identity else img[rows]),
            text_features=None if txt is None else (txt if identity else txt[rows]),
            encoders=specs,
            feature_cache=str(self.path),
        )
        if drop_failed:
            valid = self.valid_mask(names)[rows]
            if not valid.all():
                bad = np.flatnonzero(~valid)
                fails = {int(f["row"]): f for n in names for f in self.failures(n)}
                if out.report is not None:
                    import copy

                    report = copy.deepcopy(out.report)
                    for k in bad:
                        f = fails.get(int(rows[k]), {})
                        report.drop(int(k), str(out.ids[k]), f.get("reason", "unreadable_image"), f.get("ref", ""))
                    report.n_kept = int(valid.sum())
                    out.report = report
                out = out.subset(np.flatnonzero(valid))
        return out

    def info(self) -> dict[str, Any]:
        """A summary for `cmhash features info`."""
        out: dict[str, Any] = {"path": str(self.path), "dataset": self.manifest.get("dataset"), "entries": {}}
        for name, e in self.entries.items():
            spec = e.get("encoder", {})
            status = e.get("status")
            bad = self.problem(name, full=True) if status == "complete" else None
            out["entries"][name] = {
                "file": e.get("file"),
                "status": f"damaged: {bad}" if bad else status,
                "encoder": f"{spec.get('name')} v{spec.get('version')}",
                "dim": e.get("dim"),
                "rows": e.get("rows"),
                "chunks_done": f"{len(e.get('done_chunks', []))}/{e.get('num_chunks')}",
                "failures": len(e.get("failures", [])),
                "failures_by_reason": _count_reasons(e.get("failures", [])),
                "options": spec.get("options"),
                "preprocess": spec.get("preprocess"),
                "weights": spec.get("weights"),
                "input": e.get("input"),
                "timing": e.get("timing"),
                "created": e.get("created"),
                "completed": e.get("completed"),
            }
        return out


def _count_reasons(failures: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in failures:
        out[f.get("reason", "?")] = out.get(f.get("reason", "?"), 0) + 1
    return out


# ----------------------------------------------------------------------------- extraction
class _Writer:
    """Runs one entry chunk by chunk into a memory-mapped partial file, recording progress."""

    def __init__(self, root: Path, manifest: dict, name: str, key: dict, spec: dict, n: int, chunk_size: int, force: bool):
        self.root, self.manifest, self.name = root, manifest, name
        self.file = entry_file(name)
        self.key_sha = fingerprint(key, 32)
        self.n, self.dim, self.chunk_size = n, int(spec["dim"]), int(chunk_size)
        self.num_chunks = max(1, -(-n // self.chunk_size))
        old = manifest["entries"].get(name)
        final, partial = root / self.file, root / _partial(self.file)
        self.reused = False
        resumable = (
            not force
            and old is not None
            and old.get("key_sha") == self.key_sha
            and int(old.get("chunk_size", -1)) == self.chunk_size
            and int(old.get("dim", -1)) == self.dim
        )
        if resumable and old.get("status") == "complete" and final.exists():
            bad = npy_problem(final, (n, self.dim), old.get("bytes"), old.get("sha256"))
            if bad is None:
                self.reused = True
                self.entry = old
                return
            import sys

            print(f"cmhash: {final} is damaged ({bad}); rebuilding the '{name}' features", file=sys.stderr)
        if resumable and old.get("status") == "partial" and partial.exists():
            try:
                self.array = np.lib.format.open_memmap(partial, mode="r+")
                ok = self.array.shape == (n, self.dim) and self.array.dtype == np.float32
            except (ValueError, OSError):
                ok = False
            if ok:
                self.entry = old
                self.entry["resumed"] = int(self.entry.get("resumed", 0)) + 1
                return
        # Fresh start: drop stale files of this entry.
        for p in (final, partial):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        spec_file = f"encoders/{name}.json"
        write_json(root / spec_file, spec)
        self.array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, self.dim))
        self.entry = {
            "file": self.file,
            "status": "partial",
            "key_sha": self.key_sha,
            "key": key,
            "encoder": _spec_without_state(spec),
            "spec_file": spec_file,
            "dim": self.dim,
            "rows": n,
            "chunk_size": self.chunk_size,
            "num_chunks": self.num_chunks,
            "done_chunks": [],
            "failures": [],
            "timing": {"seconds": 0.0, "rows_computed": 0},
            "created": _now(),
        }
        manifest["entries"][name] = self.entry
        self.save()

    def save(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    def todo(self) -> list[int]:
        done = set(self.entry["done_chunks"])
        return [c for c in range(self.num_chunks) if c not in done]

    def rows_done(self) -> int:
        return sum(min(self.n, (c + 1) * self.chunk_size) - c * self.chunk_size for c in self.entry["done_chunks"])

    def chunk_rows(self, c: int) -> tuple[int, int]:
        return c * self.chunk_size, min(self.n, (c + 1) * self.chunk_size)

    def finish_chunk(self, c: int, failures: list[dict], seconds: float, rows: int) -> None:
        self.array.flush()
        self.entry["done_chunks"] = sorted(set(self.entry["done_chunks"]) | {c})
        self.entry["failures"] = [f for f in self.entry["failures"] if not (self.chunk_rows(c)[0] <= f["row"] < self.chunk_rows(c)[1])] + failures
        t = self.entry["timing"]
        t["seconds"] = round(float(t["seconds"]) + seconds, 3)
        t["rows_computed"] = int(t["rows_computed"]) + rows  # images/texts actually encoded
        t["rows_per_s"] = round(t["rows_computed"] / t["seconds"], 2) if t["seconds"] > 0 else None
        self.save()

    def finalize(self) -> None:
        self.array.flush()
        del self.array
        final = self.root / self.file
        os.replace(self.root / _partial(self.file), final)
        self.entry["bytes"] = final.stat().st_size
        self.entry["sha256"] = file_sha256(final)  # checked on reuse and by `features info`; size on every load
        self.entry["status"] = "complete"
        self.entry["completed"] = _now()
        self.entry["failures"].sort(key=lambda f: f["row"])
        self.save()


def _as_encoder(enc, kind: str) -> Encoder | None:
    if enc is None or enc == "none":
        return None
    if isinstance(enc, str):
        return create_image_encoder(enc) if kind == "image" else create_text_encoder(enc)
    want = ImageEncoder if kind == "image" else TextEncoder
    if not isinstance(enc, want):
        raise DataError(f"expected a {kind} encoder (or its registered name), got {type(enc).__name__}")
    return enc


def _progress(total: int, initial: int, desc: str, unit: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True)


def extract_features(
    dataset,
    image_encoder: ImageEncoder | str | None = None,
    text_encoder: TextEncoder | str | None = None,
    out_dir: str | os.PathLike = None,
    *,
    extra_text_encoders: dict[str, TextEncoder | str] | None = None,
    batch_size: int = 32,
    workers: int = 1,
    chunk_size: int | None = None,
    text_chunk_size: int = 4096,
    strict: bool = False,
    checksum: str = "stat",
    fit_indices: Sequence[int] | None = None,
    force: bool = False,
    progress: bool = True,
    on_chunk: Callable[[str, int], None] | None = None,
) -> FeatureCache:
    """Encode ``dataset`` into the feature cache ``out_dir`` and return it (see the module docstring).

    ``image_encoder`` / ``text_encoder``: encoders or registered names (``None`` skips that side).
    ``extra_text_encoders``: more text feature sets, stored as entries ``text.<name>``.
    Text encoders that need fitting are fitted on ``dataset.texts[fit_indices]`` (default: all
    texts), or reuse ``dataset.meta["vocabulary"]`` (MIRFlickr's standard tag vocabulary).
    ``chunk_size`` (default ``16 * batch_size``) is the resume granularity for images.
    ``on_chunk(entry, chunk)`` is called after each finished chunk (progress hooks, tests).
    Entries whose key matches an existing complete entry are reused; ``force`` rebuilds them.
    """
    if out_dir is None:
        raise DataError("extract_features: out_dir is required")
    if checksum not in CHECKSUM_MODES:
        raise DataError(f"checksum must be one of {', '.join(CHECKSUM_MODES)}, got '{checksum}'")
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    chunk_size = int(chunk_size or 16 * batch_size)
    if chunk_size < 1 or text_chunk_size < 1:
        raise DataError(f"chunk sizes must be at least 1, got {chunk_size} and {text_chunk_size}")
    image_encoder = _as_encoder(image_encoder, "image")
    texts_wanted: dict[str, TextEncoder] = {}
    if text_encoder is not None and text_encoder != "none":
        texts_wanted["text"] = _as_encoder(text_encoder, "text")
    for nm, enc in (extra_text_encoders or {}).items():
        texts_wanted[f"text.{nm}"] = _as_encoder(enc, "text")
    if image_encoder is None and not texts_wanted:
        raise DataError("extract_features: give an image encoder, a text encoder or both")
    if image_encoder is not None and dataset.images is None:
        raise DataError(f"{dataset.name}: the dataset has no image files (only precomputed features), so there is nothing for an image encoder to read")
    if texts_wanted and dataset.texts is None:
        raise DataError(f"{dataset.name}: the dataset has no raw texts (only precomputed features), so there is nothing for a text encoder to read")

    root = Path(out_dir)
    n = len(dataset)
    if n == 0:
        raise DataError(f"{dataset.name}: the dataset has no pairs; nothing to extract")
    ids = [str(i) for i in dataset.ids]
    ds_info = {
        "name": dataset.name,
        "n": n,
        "ids_sha256": ids_sha256(ids),
        "source": dataset.meta.get("source"),
        "root": dataset.meta.get("root"),
        "text_kind": dataset.text_kind,
    }
    with _dir_lock(root):
        manifest = _read_or_new_manifest(root, ds_info)
        if not (root / "ids.npy").exists() or manifest["dataset"].get("ids_sha256") != ds_info["ids_sha256"]:
            save_npy(root / "ids.npy", np.asarray(ids, dtype=str))
            # Entries of other rows must not survive next to the new ids (even those not requested now).
            for name in [k for k, e in manifest["entries"].items() if e.get("key", {}).get("ids_sha256") != ds_info["ids_sha256"]]:
                e = manifest["entries"].pop(name)
                for f in (e.get("file"), _partial(e["file"]) if e.get("file") else None):
                    if f:
                        with contextlib.suppress(FileNotFoundError):
                            (root / f).unlink()
        manifest["dataset"] = ds_info
        manifest["updated"] = _now()
        write_json(root / MANIFEST, manifest)

        for name, enc in texts_wanted.items():
            _extract_text_entry(root, manifest, name, enc, dataset, fit_indices, text_chunk_size, force, progress, on_chunk)
        if image_encoder is not None:
            _extract_image_entry(root, manifest, image_encoder, dataset, checksum, chunk_size, batch_size, workers, strict, force, progress, on_chunk)
    return FeatureCache.load(root)


def _read_or_new_manifest(root: Path, ds_info: dict) -> dict:
    mf = root / MANIFEST
    if mf.exists():
        try:
            m = read_json(mf)
            if isinstance(m, dict) and m.get("format") == FORMAT and int(m.get("version", 0)) == FORMAT_VERSION:
                m.setdefault("entries", {})
                return m
        except CmhashError:
            pass  # a corrupt manifest: start over (the arrays are rebuilt)
    from cmhash import __version__

    return {"format": FORMAT, "version": FORMAT_VERSION, "cmhash_version": __version__, "created": _now(), "dataset": ds_info, "entries": {}}


def _extract_image_entry(root, manifest, encoder, dataset, checksum, chunk_size, batch_size, workers, strict, force, progress, on_chunk):
    from cmhash.features.pipeline import iter_image_batches

    key = {
        "encoder": encoder.options_key(),
        "input": image_inputs_checksum(dataset.images, checksum),
        "ids_sha256": manifest["dataset"]["ids_sha256"],
    }
    key["input"].pop("missing_at_check", None)
    w = _Writer(root, manifest, "image", key, encoder.spec(), len(dataset), chunk_size, force)
    if w.reused:
        return
    w.entry["input"] = key["input"]
    w.entry["batch_size"] = int(batch_size)
    # Pairs that share an image file (Flickr8k/COCO: 5 captions per image) are encoded once: only
    # the first row of each file is computed, later rows copy it (always from an earlier or the
    # same chunk, so resuming keeps this exact).
    store = dataset.images
    first: dict[str, int] = {}
    first_row = np.fromiter((first.setdefault(store.ref(i), i) for i in range(w.n)), dtype=np.int64, count=w.n)
    failed = {int(f["row"]): f for f in w.entry["failures"]}
    bar = _progress(w.n, w.rows_done(), f"image features ({encoder.name})", "img", progress)
    try:
        for c in w.todo():
            start, stop = w.chunk_rows(c)
            t0 = time.perf_counter()
            failures: list[dict] = []
            rows = [i for i in range(start, stop) if first_row[i] == i]
            for pos, feats, fails in iter_image_batches(encoder, store, rows, batch_size, workers, strict):
                if pos:
                    w.array[np.asarray(rows)[pos]] = feats
                for f in fails:
                    d = f.to_dict()
                    d["id"] = str(dataset.ids[f.row])
                    failures.append(d)
                    failed[f.row] = d
                if bar is not None:
                    bar.update(len(pos) + len(fails))
            dups = [i for i in range(start, stop) if first_row[i] != i]
            if dups:
                w.array[dups] = w.array[first_row[dups]]
                for i in dups:
                    if int(first_row[i]) in failed:
                        d = {**failed[int(first_row[i])], "row": i, "id": str(dataset.ids[i])}
                        failures.append(d)
                        failed[i] = d
                if bar is not None:
                    bar.update(len(dups))
            failures.sort(key=lambda f: f["row"])
            w.finish_chunk(c, failures, time.perf_counter() - t0, len(rows))
            if on_chunk is not None:
                on_chunk("image", c)
        w.finalize()
    finally:
        if bar is not None:
            bar.close()
    if w.entry["failures"] and progress:
        import sys

        print(f"cmhash: {len(w.entry['failures'])} image(s) could not be read and were skipped: {_count_reasons(w.entry['failures'])} "
              f"(listed in {root / MANIFEST})", file=sys.stderr)


def _extract_text_entry(root, manifest, name, encoder, dataset, fit_indices, chunk_size, force, progress, on_chunk):
    texts = list(dataset.texts)
    fit_rows = np.arange(len(texts)) if fit_indices is None else np.asarray(fit_indices, dtype=np.int64)
    fit_texts = [texts[int(i)] for i in fit_rows]
    if encoder.needs_fit and encoder.fitted:
        fit_key = {"prefitted": fingerprint(encoder.get_state())}
    else:
        fit_key = encoder.fit_key(fit_texts, dataset.text_kind, dataset.meta)
    key = {
        "encoder": encoder.options_key(),
        "fit": fit_key,
        "input": texts_checksum(texts),
        "ids_sha256": manifest["dataset"]["ids_sha256"],
    }
    old = manifest["entries"].get(name)
    if (
        not force
        and old is not None
        and old.get("key_sha") == fingerprint(key, 32)
        and encoder.needs_fit
        and not encoder.fitted
        and (root / old.get("spec_file", "-")).exists()
    ):
        encoder.set_state(read_json(root / old["spec_file"])["state"])  # same fit inputs: reuse, don't refit
    if encoder.needs_fit and not encoder.fitted:
        encoder.fit(fit_texts, dataset.text_kind, dataset.meta)
    w = _Writer(root, manifest, name, key, encoder.spec(), len(texts), chunk_size, force)
    if w.reused:
        return
    w.entry["input"] = key["input"]
    bar = _progress(w.n, w.rows_done(), f"text features ({encoder.name})", "text", progress)
    try:
        for c in w.todo():
            start, stop = w.chunk_rows(c)
            t0 = time.perf_counter()
            for s in range(start, stop, TEXT_SLICE):  # fixed slices: the progress bar moves, results stay exact on resume
                e = min(stop, s + TEXT_SLICE)
                feats = encoder.encode(texts[s:e])
                if feats.shape != (e - s, w.dim) or not np.isfinite(feats).all():
                    raise DataError(f"text encoder {encoder.name} produced {feats.shape} features with NaN/inf or the wrong shape for rows {s}..{e - 1}")
                w.array[s:e] = feats
                if bar is not None:
                    bar.update(e - s)
            w.finish_chunk(c, [], time.perf_counter() - t0, stop - start)
            if on_chunk is not None:
                on_chunk(name, c)
        w.finalize()
    finally:
        if bar is not None:
            bar.close()
