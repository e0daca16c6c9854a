"""The search service: a FastAPI app over one :class:`cmhash.index.search.Index` and its model.

Endpoints (JSON unless said otherwise):

* ``GET /search?q=TEXT&k=10[&target=image|text|both]``: text -> images. A text the model cannot
  read answers 422 with ``{"error", "kind": "unreadable_query", "suggestions"}``.
* ``POST /search/image`` (multipart ``image`` file, ``k``): image -> texts. The upload is limited
  in bytes and pixels and checked by decoding it (413 too big, 415 not an image).
* ``GET /items/{id}``: an item's text, image and labels (404 unknown id).
* ``GET /thumbnails/{id}``: a JPEG thumbnail of an item's image; only files the index names
  are served (the id is looked up, no path is taken from the request).
* ``GET /health``; ``GET /metrics`` (Prometheus text format, ``prometheus_client``).
* ``POST /items`` (multipart ``id``, ``text``, ``image``) and ``DELETE /items/{id}``: need the API
  key (``X-API-Key`` header or ``Authorization: Bearer``), compared in constant time; the index
  file is rewritten atomically before the answer, so an acknowledged change survives a kill.
* ``GET /``: the web page (static files, no build step).
"""


import hmac
import io
import json
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from cmhash.errors import CmhashError, DataError

MAX_UPLOAD_BYTES = 8 << 20
MAX_PIXELS = 40_000_000
MAX_K = 100
THUMB_PX = 320
THUMB_CACHE = 4096
ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}


class _Thumbnails:
    """JPEG thumbnails of the index's own image files, kept in a bounded LRU cache."""

    def __init__(self, roots: list[Path], size: int = THUMB_PX, capacity: int = THUMB_CACHE):
        self.roots, self.size, self.capacity = roots, size, capacity
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._where: dict[str, Path | None] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str | None) -> Path | None:
        """The file of an image reference, or None (remembered: results ask for it on every query)."""
        if not ref:
            return None
        if ref in self._where:
            return self._where[ref]
        p = Path(ref)
        candidates = [p] if p.is_absolute() else [p, *(r / p for r in self.roots)]
        found = next((c for c in candidates if c.is_file()), None)
        if len(self._where) < 1_000_000:
            self._where[ref] = found
        return found

    def warm(self, index, limit: int = 1_000_000) -> int:
        """Resolve, once at start-up, the image file of every item (up to ``limit`` distinct references).

        Every search result asks whether its picture exists; a first-time answer is a stat() on the
        event loop, which also hands the GIL to the batching thread (up to a switch interval's wait
        per call). Returns how many references were resolved."""
        from cmhash.index.base import LocalIndex

        seen = 0
        for ix in index.index.indexes.values():
            if not isinstance(ix, LocalIndex):  # a remote collection (Milvus): resolve lazily, per result
                continue
            ids = ix.ids()
            for start in range(0, len(ids), 50_000):
                for meta in ix.get_metadata(ids[start : start + 50_000]):
                    ref = meta.get("image") if meta else None
                    if ref and ref not in self._where:
                        if len(self._where) >= limit:
                            return seen
                        self.resolve(ref)
                        seen += 1
        return seen

    def get(self, ref: str) -> bytes | None:
        with self._lock:
            if ref in self._cache:
                self._cache.move_to_end(ref)
                return self._cache[ref]
        path = self.resolve(ref)
        if path is None:
            return None
        from cmhash.data.imageio import open_rgb

        im = open_rgb(path)
        im.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[ref] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = CollectorRegistry()
    return {
        "registry": reg,
        "requests": Counter("cmhash_requests", "HTTP requests by route and status", ["route", "method", "status"], registry=reg),
        "latency": Histogram(
            "cmhash_request_seconds", "Request latency by route", ["route"], registry=reg,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        ),
        "queries": Counter("cmhash_queries", "Search queries by kind and outcome", ["kind", "outcome"], registry=reg),
        "items": Gauge("cmhash_index_items", "Items in the index by modality", ["modality"], registry=reg),
    }


class _MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): count and time every request by route."""

    def __init__(self, app, metrics):
        self.app, self.m = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def _send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.m["requests"].labels(name, scope.get("method", ""), str(status["code"])).inc()
            self.m["latency"].labels(name).observe(time.perf_counter() - t0)


def create_app(index, *, api_key: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS, files_dir: str | Path | None = None):
    """The FastAPI app serving ``index`` (a :class:`cmhash.index.search.Index`); ``api_key`` enables POST/DELETE /items."""
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from cmhash.inference.model import load_image
    from cmhash.data.imageio import UnreadableImageError
    from cmhash.inference.queries import UnreadableQueryError

    metrics = _metrics()
    app = FastAPI(title="cmhash search", version="1", docs_url="/docs", redoc_url=None)
    info = index.info
    roots = [Path(info["data_root"])] if info.get("data_root") else []
    thumbs = _Thumbnails(roots)
    files_dir = Path(files_dir) if files_dir else (Path(str(index.path) + ".files") if index.path else None)
    key_bytes = api_key.encode("utf-8") if api_key else None
    static = resources.files("cmhash.serve") / "static"

    def update_gauge():
        for m, n in index.describe().get("counts", {}).items():
            metrics["items"].labels(m).set(n)

    update_gauge()

    def error(status: int, message: str, kind: str, **extra) -> JSONResponse:
        return JSONResponse({"error": message, "kind": kind, **extra}, status_code=status)

    def parse_id(raw: str):
        kind = getattr(index.index.primary, "id_kind", None)
        if kind == "int":
            try:
                return int(raw)
            except ValueError:
                return None
        return raw

    def hit_json(h) -> dict[str, Any]:
        d = h.to_dict()
        d["thumbnail"] = f"/thumbnails/{_quote(h.id)}" if h.image and thumbs.resolve(h.image) is not None else None
        return d

    def model_info() -> dict[str, Any]:
        try:
            m = index.model
        except CmhashError as exc:
            return {"error": str(exc)}
        return {"method": m.method, "bits": m.bits, "checkpoint": str(m.path), "sha256": m.sha256, "text_input": m.describe_text_input()}

    @app.exception_handler(CmhashError)
    async def _cmhash_error(request: Request, exc: CmhashError):
        return error(400, str(exc), type(exc).__name__)

    @app.get("/health")
    def health():
        d = index.describe()
        b = app.state.batcher
        return {"status": "ok", "items": d["count"], "text_batches": {"batches": b.batches, "queries": b.items}, "counts": d.get("counts"), "bits": d["bits"], "backend": d["backend"],
                "per_modality_items": index.index.per_modality_items, "model": model_info(), "dataset": info.get("dataset")}

    @app.get("/metrics")
    def prom_metrics():
        update_gauge()
        return Response(generate_latest(metrics["registry"]), media_type=CONTENT_TYPE_LATEST)

    def run_text_batch(batch: list) -> list:
        """[(read_as text, k, target)] -> per query its hits; one forward pass and one scan per target."""
        model = index.model
        codes = model.encode_read_texts([b[0] for b in batch])  # each was read on arrival
        out: list = [None] * len(batch)
        by_target: dict[str, list[int]] = {}
        for i, (_, _, target) in enumerate(batch):
            by_target.setdefault(target, []).append(i)
        for target, rows in by_target.items():
            kmax = max(batch[i][1] for i in rows)
            hits = index.search_codes(codes[rows], kmax, target)
            for i, h in zip(rows, hits):
                out[i] = h[: batch[i][1]]
        return out

    from cmhash.serve.batcher import QueryBatcher

    batcher = QueryBatcher(run_text_batch)
    app.state.batcher = batcher
    app.state.thumbnails = thumbs

    @app.get("/search")
    async def search(q: str = Query("", max_length=2000), k: int = Query(10, ge=1, le=MAX_K), target: str = Query("image", pattern="^(image|text|both)$")):
        t0 = time.perf_counter()
        try:
            read_as = index.read_text(q)  # no file check on the event loop: the batch's encode checks the model
        except UnreadableQueryError as exc:
            metrics["queries"].labels("text", "unreadable").inc()
            return error(422, str(exc), "unreadable_query", suggestions=exc.suggestions, reads=exc.reads)
        hits = await batcher.submit((read_as, k, target))
        metrics["queries"].labels("text", "ok").inc()
        return JSONResponse({"query": q, "read_as": read_as, "modality": "text", "target": target, "k": k,
                             "took_ms": round((time.perf_counter() - t0) * 1000, 2), "results": [hit_json(h) for h in hits]})

    async def read_upload(upload: UploadFile | None):
        if upload is None:
            return None, error(400, "no image uploaded: send a multipart form with an 'image' file", "missing_image")
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return None, error(413, f"the image is larger than {max_upload_bytes // (1 << 20)} MB", "too_large")
        if not data:
            return None, error(400, "the uploaded file is empty", "empty_upload")
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt, (w, h) = probe.format, probe.size
        except Exception:
            return None, error(415, f"{upload.filename or 'upload'} is not an image cmhash can decode (JPEG, PNG, WebP, GIF, BMP, TIFF)", "not_an_image")
        if fmt not in ALLOWED_FORMATS:
            return None, error(415, f"image format {fmt} is not accepted (use {', '.join(sorted(ALLOWED_FORMATS))})", "not_an_image")
        if w * h > max_pixels:
            return None, error(413, f"the image has {w}x{h} pixels, more than the {max_pixels:,} accepted", "too_large")
        try:
            return (load_image(data), data, fmt), None
        except UnreadableImageError as exc:
            return None, error(415, f"{upload.filename or 'upload'}: cannot decode the image ({exc})", "not_an_image")

    @app.post("/search/image")
    async def search_image(image: UploadFile | None = File(None), k: int = Form(10, ge=1, le=MAX_K), target: str = Form("text", pattern="^(image|text|both)$")):
        got, err = await read_upload(image)
        if err is not None:
            metrics["queries"].labels("image", "rejected").inc()
            return err
        pil, _, _ = got
        t0 = time.perf_counter()
        from starlette.concurrency import run_in_threadpool

        codes = await run_in_threadpool(index.model.encode_image, pil)
        hits = index.search_codes(codes, k, target)[0]
        metrics["queries"].labels("image", "ok").inc()
        return {"query": image.filename, "modality": "image", "target": target, "k": k,
                "took_ms": round((time.perf_counter() - t0) * 1000, 2), "results": [hit_json(h) for h in hits]}

    @app.get("/items/{item_id:path}")
    def get_item(item_id: str):
        item = parse_id(item_id)
        try:
            if item is None:
                raise KeyError(item_id)
            d = index.get(item)
        except KeyError:
            return error(404, f"no item {item_id!r} in the index", "unknown_id")
        if d.get("image") and thumbs.resolve(d["image"]) is not None:
            d["thumbnail"] = f"/thumbnails/{_quote(item)}"
        return d

    @app.get("/thumbnails/{item_id:path}")
    def thumbnail(item_id: str):
        item = parse_id(item_id)
        try:
            if item is None:
                raise KeyError(item_id)
            ref = index.get(item).get("image")
        except KeyError:
            return error(404, f"no item {item_id!r} in the index", "unknown_id")
        data = thumbs.get(ref) if ref else None
        if data is None:
            return error(404, f"item {item_id!r} has no image file to show", "no_image")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    def authorised(request: Request) -> JSONResponse | None:
        if key_bytes is None:
            return error(403, "adding and deleting items is disabled: start `cmhash serve` with an API key (CMHASH_API_KEY)", "writes_disabled")
        given = request.headers.get("x-api-key")
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode("utf-8"), key_bytes):
            return error(401, "missing or wrong API key (X-API-Key header)", "unauthorised")
        return None

    @app.post("/items", status_code=201)
    async def add_item(request: Request, id: str = Form(...), text: str | None = Form(None), image: UploadFile | None = File(None), metadata: str | None = Form(None)):
        denied = authorised(request)
        if denied is not None:
            return denied
        item = parse_id(id)
        if item is None or not str(id).strip():
            return error(400, f"id {id!r} is not valid for this index (it uses {index.index.primary.id_kind} ids)", "bad_id")
        extra: dict[str, Any] = {}
        if metadata:
            try:
                extra = json.loads(metadata)
                assert isinstance(extra, dict)
            except Exception:
                return error(400, "metadata must be a JSON object", "bad_metadata")
        pil = None
        if image is not None:
            got, err = await read_upload(image)
            if err is not None:
                return err
            pil, raw, fmt = got
            if files_dir is not None:  # keep the file so the page can show it (written atomically)
                from cmhash.io import atomic_open

                dest = files_dir / f"{_safe_name(str(item))}.{fmt.lower()}"
                with atomic_open(dest, "wb") as fh:
                    fh.write(raw)
                extra["image"] = str(dest.resolve())
        if text is not None and not text.strip():
            text = None
        from starlette.concurrency import run_in_threadpool

        try:
            added = await run_in_threadpool(index.add, item, text=text, image=pil, metadata=extra)
        except UnreadableQueryError as exc:
            return error(422, str(exc), "unreadable_text", suggestions=exc.suggestions)
        except DataError as exc:
            status = 409 if "already in the index" in str(exc) else 400
            return error(status, str(exc), "conflict" if status == 409 else "bad_item")
        update_gauge()
        return {"added": added, "items": len(index)}

    @app.delete("/items/{item_id:path}")
    def delete_item(item_id: str, request: Request):
        denied = authorised(request)
        if denied is not None:
            return denied
        item = parse_id(item_id)
        try:
            if item is None:
                raise KeyError(item_id)
            index.remove(item)
        except KeyError:
            return error(404, f"no item {item_id!r} in the index", "unknown_id")
        update_gauge()
        return {"deleted": item, "items": len(index)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    app.state.index = index
    return app


@lru_cache(maxsize=1 << 16)
def _quote(item) -> str:
    """The id as one URL path segment (cached: every result of every query quotes its id, 15 us each)."""
    from urllib.parse import quote

    return quote(str(item), safe="")


def _safe_name(text: str) -> str:
    import hashlib
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("._") or "item"
    return f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


__all__ = ["create_app", "MAX_UPLOAD_BYTES", "MAX_PIXELS"]
