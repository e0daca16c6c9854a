"""End to end on real data: a trained checkpoint -> an index on each backend -> the same text and image queries.

Starts the embedded Milvus (``pip install "cmhash[milvus]"``), builds the numpy, faiss and Milvus
indexes of the checkpoint's database with `cmhash index build --checkpoint`, asks every index the
same `cmhash search` queries and prints whether the exact backends agree and what Milvus returns.

    python benchmarks/search_e2e.py --checkpoint runs/mir64 \
        --image ../shared/data/mirflickr25k/images128/im5333.jpg --text dog --text "sunset, beach, sea"
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

from cmhash.index.milvus_server import embedded_milvus

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--checkpoint", required=True)
ap.add_argument("--text", action="append", default=[])
ap.add_argument("--image", action="append", default=[])
ap.add_argument("--out", default=None, help="folder for the index files (default: a temporary one)")
opts = ap.parse_args()
CK = opts.checkpoint
QUERIES = [["--text", t] for t in opts.text or ["dog"]] + [["--image", p] for p in opts.image]
OUT = opts.out or tempfile.mkdtemp(prefix="cmhash-e2e-")

def cli(*args):
    r = subprocess.run([sys.executable, "-m", "cmhash", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return r.stdout

with embedded_milvus() as uri:
    print("milvus at", uri)
    results = {}
    for backend in ("numpy", "faiss", "milvus"):
        extra = ["--milvus-uri", uri, "--milvus-collection", "cmhash_e2e", "--milvus-drop"] if backend == "milvus" else []
        t0 = time.time()
        cli("index", "build", "--checkpoint", CK, "--backend", backend, "--out", f"{OUT}/{backend}.idx", *extra)
        print(f"{backend}: built in {time.time()-t0:.1f}s")
        for q in QUERIES:
            res = json.loads(cli("search", "--index", f"{OUT}/{backend}.idx", *q, "--k", "10", "--json"))
            results.setdefault(" ".join(q), {})[backend] = res
    for q, by in results.items():
        d = {b: [r["distance"] for r in res] for b, res in by.items()}
        same = len({tuple(v) for v in d.values()}) == 1
        lab = [", ".join(map(str, r.get("labels", []))) for r in by["milvus"][:3]]
        print(f"{q}: distances agree across backends: {same} {d['faiss']}; milvus top-3 labels: {lab}")
