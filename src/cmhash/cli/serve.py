"""`cmhash serve`: the search service and its web page over an index (FastAPI + uvicorn).

Binds to 127.0.0.1 unless --host says otherwise. Adding and deleting items (POST/DELETE /items)
is enabled only with an API key, read from the environment variable named by --api-key-env (not
from the command line, where other users could read it in the process list).
"""

from __future__ import annotations

from cmhash.cli._common import add_parser

EPILOG = """\
examples:
  cmhash serve --index f8k64.index                        # http://127.0.0.1:8000
  CMHASH_API_KEY=$(openssl rand -hex 16) cmhash serve --index f8k64.index --port 8080
  cmhash serve --demo                                     # build a small demo index (Flickr8k, or synthetic) and serve it
  cmhash serve --index mil.index --milvus-uri http://milvus:19530

endpoints: GET / (page), GET /search?q=&k=, POST /search/image, GET /items/{id}, GET /thumbnails/{id},
GET /health, GET /metrics, POST /items and DELETE /items/{id} (API key). See docs/serve.md.
"""


def register(sub) -> None:
    p = add_parser(sub, "serve", help="serve an index: HTTP search API and web page", description=__doc__, epilog=EPILOG)
    p.add_argument("--index", help="index file from `cmhash index build` (not needed with --demo)")
    p.add_argument("--checkpoint", help="query model (default: the checkpoint recorded in the index; its content hash is checked)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes the service to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--api-key-env", default="CMHASH_API_KEY", help="environment variable holding the API key for POST/DELETE /items")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest accepted image upload")
    p.add_argument("--milvus-uri", help="milvus: reach the collection at this URI instead of the saved one")
    p.add_argument("--threads", type=int, default=1, help="torch/faiss threads per query")
    p.add_argument("--demo", action="store_true", help="build (once) a small demo index from the shared data, or the synthetic set, and serve it")
    p.add_argument("--demo-dir", default=None, help="where --demo keeps its model and index (default: $CMHASH_CACHE/search-demo)")
    p.add_argument("--data-root", default=None, help="--demo: the Flickr8k folder (default: ../shared/data/flickr8k when it exists)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from cmhash.errors import DataError

    if bool(args.index) == bool(args.demo):
        raise DataError("give --index INDEX, or --demo to build and serve the demo index")
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError:
        raise DataError('cmhash serve needs the serve extra: pip install -e ".[serve]"') from None
    from cmhash.cli.index import use_passive_openmp

    use_passive_openmp()
    if args.demo:
        from cmhash.cli.serve_demo import build_demo

        index_path, checkpoint = build_demo(args.demo_dir, args.data_root)
    else:
        index_path, checkpoint = args.index, args.checkpoint
    overrides = {}
    if args.milvus_uri:
        overrides["uri"] = args.milvus_uri
    from cmhash.index.container import read_manifest

    if read_manifest(index_path).get("backend") == "faiss":
        overrides["threads"] = args.threads
    key = os.environ.get(args.api_key_env) or None
    config = {"index": str(index_path), "checkpoint": None if checkpoint is None else str(checkpoint), "overrides": overrides,
              "threads": args.threads, "max_upload_bytes": int(args.max_upload_mb * (1 << 20)), "api_key": key}
    from cmhash.serve.factory import load_service

    index, app = load_service(config)
    model = index.model
    print(
        f"serving {index_path} ({_items(index)}, {index.index.bits} bits, {index.index.backend}; model {model.method} "
        f"reads {model.describe_text_input()}) at http://{args.host}:{args.port}/ ; "
        f"writes {'enabled (API key from $' + args.api_key_env + ')' if key else 'disabled (no $' + args.api_key_env + ')'}",
        flush=True,
    )
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _items(index) -> str:
    counts = index.describe().get("counts") or {}
    if index.index.per_modality_items:
        return f"{counts.get('image', 0)} images, {counts.get('text', 0)} texts"
    return f"{len(index)} items"
