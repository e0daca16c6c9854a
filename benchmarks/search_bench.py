"""Search benchmark of the index backends: throughput, memory, and recall of the approximate ones.

Figures (each measured in a fresh subprocess, so memory is per backend):

* **throughput**: 1M and 10M random 64- and 128-bit codes, 1,000 queries, top-50: queries/s and
  codes scanned/s (n * queries / time) for raw faiss IndexBinaryFlat called directly, the faiss
  backend (1 and 2 threads), the numpy backend and Milvus (BIN_FLAT, embedded server); CPU time
  is reported beside wall time, since other work may share the cores.
* **memory**: RSS growth of the process that built the index (Milvus: of the server process),
  in bytes per code, against the floor bits/8 + 8 (the codes plus an int64 id).
* **overhead** (``--overhead``): the faiss backend against raw faiss on the very same index,
  calls alternated, best of 5 (separate processes on a shared machine differ more than that).
* **recall@50** of faiss IVF / HNSW and Milvus BIN_IVF_FLAT on clustered codes (1,000 centres,
  each bit flipped with probability 0.1), against the exact top-50: ``recall`` counts returned
  items whose true distance is within the exact 50th distance (ties at that distance are
  interchangeable), ``id_recall`` the plain overlap of id sets.

Usage::

    python benchmarks/search_bench.py                         # everything (long: ~30 min on 2 cores)
    python benchmarks/search_bench.py --quick                 # 1M codes, 200 queries, no Milvus
    python benchmarks/search_bench.py --sizes 1000000 --bits 64 --backends faiss raw-faiss
    python benchmarks/search_bench.py --recall-only --out results.json
    python benchmarks/search_bench.py --overhead-only          # faiss backend vs raw faiss, same index
    python benchmarks/search_bench.py --omp-passive            # OMP_WAIT_POLICY=PASSIVE, as the CLI runs

On a machine whose cores are busy with other work, faiss's spinning OpenMP threads make 2 threads
slower than 1; ``--omp-passive`` shows what sleeping waiters (the CLI's setting) give instead.

Every figure is printed with the 1-minute load average at the time it was taken.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

THROUGHPUT_BACKENDS = ["raw-faiss", "faiss", "numpy", "milvus"]


# ----------------------------------------------------------------------------- helpers
def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def random_codes(n: int, bits: int, seed: int) -> np.ndarray:
    """Packed uniform random codes, generated in blocks to keep the peak memory low."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, bits // 8), dtype=np.uint8)
    for start in range(0, n, 1_000_000):
        stop = min(start + 1_000_000, n)
        out[start:stop] = rng.integers(0, 256, (stop - start, bits // 8), dtype=np.uint8)
    return out


def clustered_codes(n: int, nq: int, bits: int, seed: int, centres: int = 1000, flip: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cbits = rng.integers(0, 2, (centres, bits), dtype=np.uint8)
    out = np.empty((n, bits // 8), dtype=np.uint8)
    for start in range(0, n, 250_000):
        stop = min(start + 250_000, n)
        b = cbits[rng.integers(0, centres, stop - start)] ^ (rng.random((stop - start, bits)) < flip).astype(np.uint8)
        out[start:stop] = np.packbits(b, axis=1)
    qb = cbits[rng.integers(0, centres, nq)] ^ (rng.random((nq, bits)) < flip).astype(np.uint8)
    return out, np.packbits(qb, axis=1)


def timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


# ----------------------------------------------------------------------------- workers
def worker_throughput(cfg: dict) -> dict:
    """Build one backend over random codes and time ``queries`` searches of top-k."""
    n, bits, nq, k, backend, threads = cfg["n"], cfg["bits"], cfg["queries"], cfg["k"], cfg["backend"], cfg.get("threads")
    db = random_codes(n, bits, seed=1)
    q = random_codes(nq, bits, seed=2)
    ids = np.arange(n, dtype=np.int64)
    import faiss  # noqa: F401  (libraries are loaded before the memory baseline)

    import cmhash.index.faiss_backend  # noqa: F401
    import cmhash.index.numpy_backend  # noqa: F401

    gc.collect()
    res = {**cfg, "load_before": load1()}
    server = None
    if backend == "milvus":
        from cmhash.index import create_index
        from cmhash.index.milvus_server import EmbeddedMilvus

        server = EmbeddedMilvus()
        uri = server.start()
        server_pid = server._server.server_proc.pid
        rss0 = rss_bytes(server_pid)
        index = create_index("milvus", bits=bits, uri=uri, collection="bench")
        _, res["build_s"], _ = timed(index.add, ids, db)
        t0 = time.perf_counter()
        index.flush()
        res["flush_s"] = time.perf_counter() - t0
        index.search(q[:5], k)
        res["index_bytes"] = rss_bytes(server_pid) - rss0

        def search():  # the server's CPU time counts too
            c0 = cpu_seconds(server_pid)
            out = index.search(q, k)
            res["server_cpu_s"] = cpu_seconds(server_pid) - c0
            return out

    else:
        import tracemalloc

        rss0 = rss_bytes()
        tracemalloc.start()  # numpy arrays are traced; freed heap reused by them hides from RSS
        if backend == "raw-faiss":
            import faiss

            faiss.omp_set_num_threads(threads)
            index = faiss.IndexBinaryFlat(bits)
            _, res["build_s"], _ = timed(index.add, db)
            search = lambda: index.search(q, k)  # noqa: E731
        else:
            from cmhash.index import create_index

            opts = {"threads": threads} if backend == "faiss" else {}
            index = create_index(backend, bits=bits, **opts)
            _, res["build_s"], _ = timed(index.add, ids, db)
            search = lambda: index.search(q, k)  # noqa: E731
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        # RSS growth catches faiss's C++ memory; traced numpy memory catches arrays placed in
        # heap pages freed earlier (which RSS does not see grow). Raw faiss keeps no ids.
        res["rss_bytes"], res["traced_bytes"] = rss_bytes() - rss0, traced
        res["index_bytes"] = max(res["rss_bytes"], traced)
        index.search(q[:10], k)  # warm-up (thread pool, first-touch)
    try:
        out, wall, cpu = timed(search)
        cpu += res.get("server_cpu_s", 0.0)
        if backend == "raw-faiss":
            out = (out[1], out[0])
        res.update(
            wall_s=wall,
            cpu_s=cpu,
            qps=nq / wall,
            codes_per_s=n * nq / wall,
            codes_per_cpu_s=n * nq / cpu if cpu > 0 else None,
            bytes_per_code=res["index_bytes"] / n,
            floor_bytes_per_code=bits / 8 + (0 if backend == "raw-faiss" else 8),
            load_after=load1(),
            checksum=int(np.asarray(out[1], dtype=np.int64).sum()),  # distances: must agree across backends
        )
    finally:
        if server is not None:
            index.drop()
            index.close()
            server.stop()
    return res


def worker_overhead(cfg: dict) -> dict:
    """The faiss backend vs raw faiss on the very same IndexBinaryFlat, alternated (min of repeats).

    Separate processes see different neighbours on a shared machine; alternating calls in one
    process isolates what the backend adds (query validation, id mapping).
    """
    from cmhash.index import create_index

    n, bits, nq, k, threads, repeats = cfg["n"], cfg["bits"], cfg["queries"], cfg["k"], cfg["threads"], cfg.get("repeats", 5)
    db, q = random_codes(n, bits, seed=1), random_codes(nq, bits, seed=2)
    index = create_index("faiss", bits=bits, threads=threads)
    index.add(np.arange(n, dtype=np.int64), db)
    raw = index._index
    index.search(q[:10], k)
    times = {"raw": [], "backend": []}
    for _ in range(repeats):
        for name, fn in (("raw", lambda: raw.search(q, k)), ("backend", lambda: index.search(q, k))):
            _, wall, cpu = timed(fn)
            times[name].append((wall, cpu))
    best = {name: (min(w for w, _ in t), min(c for _, c in t)) for name, t in times.items()}
    return {
        **cfg,
        "raw_wall_s": best["raw"][0],
        "backend_wall_s": best["backend"][0],
        "raw_cpu_s": best["raw"][1],
        "backend_cpu_s": best["backend"][1],
        "overhead_wall": best["backend"][0] / best["raw"][0] - 1,
        "overhead_cpu": best["backend"][1] / best["raw"][1] - 1,
        "raw_codes_per_s": n * nq / best["raw"][0],
        "load": load1(),
    }


def recall_at(approx_ids, approx_d, exact_ids, exact_d, k):
    kth = exact_d[:, k - 1 : k]
    within = np.minimum((approx_d[:, :k] <= kth).sum(1), k) / k
    id_overlap = np.mean([len(set(a[:k].tolist()) & set(e[:k].tolist())) / k for a, e in zip(approx_ids, exact_ids)])
    return float(within.mean()), float(id_overlap)


def worker_recall(cfg: dict) -> dict:
    """Recall@k and speed of the approximate options on clustered codes."""
    from cmhash.index import create_index

    n, bits, nq, k, threads = cfg["n"], cfg["bits"], cfg["queries"], cfg["k"], cfg.get("threads", 1)
    db, q = clustered_codes(n, nq, bits, seed=3)
    ids = np.arange(n, dtype=np.int64)
    exact = create_index("faiss", bits=bits, threads=threads)
    exact.add(ids, db)
    exact.search(q[:10], k)
    (e_ids, e_d), e_wall, _ = timed(exact.search, q, k)
    rows = [{"option": "faiss flat (exact)", "build_s": 0.0, "qps": nq / e_wall, "recall": 1.0, "id_recall": 1.0, "load": load1()}]
    del exact
    gc.collect()

    def measure(label, index, build_s, set_param=None, values=(None,)):
        for v in values:
            if set_param is not None:
                set_param(index, v)
            index.search(q[:10], k)  # warm-up
            (a_ids, a_d), wall, _ = timed(index.search, q, k)
            rec, idrec = recall_at(a_ids, a_d, e_ids, e_d, k)
            rows.append({"option": label.format(v), "build_s": build_s, "qps": nq / wall, "recall": rec, "id_recall": idrec, "load": load1()})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    def section(label, fn):
        """One failing option (a missing package, a server that will not start) must not lose the others."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - reported in the table
            rows.append({"option": f"{label}: error {type(exc).__name__}: {exc}", "build_s": None, "qps": None, "recall": float("nan"), "id_recall": float("nan"), "load": load1()})

    def faiss_options():
        nlist = int(4 * np.sqrt(n))
        ivf = create_index("faiss", bits=bits, kind="ivf", nlist=nlist, threads=threads)
        _, build, _ = timed(ivf.add, ids, db)
        measure(f"faiss ivf nlist={nlist} nprobe={{}}", ivf, build, lambda ix, v: setattr(ix, "nprobe", v), (1, 4, 16, 64))
        del ivf
        hnsw = create_index("faiss", bits=bits, kind="hnsw", M=16, threads=threads)
        _, build, _ = timed(hnsw.add, ids, db)
        measure("faiss hnsw M=16 ef_search={}", hnsw, build, lambda ix, v: setattr(ix, "ef_search", v), (64, 128, 256))
        del hnsw
        gc.collect()

    def milvus_options():
        from cmhash.index.milvus_server import EmbeddedMilvus

        with EmbeddedMilvus() as uri:
            nlist = 1024
            mv = create_index("milvus", bits=bits, uri=uri, collection="recall", index_type="BIN_IVF_FLAT", nlist=nlist)
            t0 = time.perf_counter()
            mv.add(ids, db)
            mv.flush()  # seal and wait for the IVF index
            build = time.perf_counter() - t0
            measure(f"milvus BIN_IVF_FLAT nlist={nlist} nprobe={{}}", mv, build, lambda ix, v: setattr(ix, "nprobe", v), (4, 16, 64))
            mv.drop()
            mv.close()

    if "faiss" in cfg["backends"]:
        section("faiss", faiss_options)
    if "milvus" in cfg["backends"]:
        section("milvus", milvus_options)
    return {**cfg, "rows": rows}


# ----------------------------------------------------------------------------- driver
def run_worker(kind: str, cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {**cfg, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout) else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def print_throughput(rows: list[dict]) -> None:
    print("\n## Throughput (top-%d, %d queries)\n" % (rows[0]["k"], rows[0]["queries"]))
    print("| codes | bits | backend | threads | build s | queries/s | codes/s (wall) | codes/s per CPU-s | bytes/code (floor) | load 1m |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['n']:,} | {r['bits']} | {r['backend']} | {r.get('threads') or '-'} | error: {r['error']} |||||| ")
            continue
        print(
            f"| {r['n']:,} | {r['bits']} | {r['backend']} | {r.get('threads') or '-'} | {fmt(r['build_s'])} | {fmt(r['qps'])} | "
            f"{r['codes_per_s']:.3e} | {fmt(r['codes_per_cpu_s'])} | {r['bytes_per_code']:.1f} ({r['floor_bytes_per_code']:.0f}) | "
            f"{r['load_before']}-{r['load_after']} |"
        )


def print_recall(res: dict) -> None:
    if "error" in res:
        print(f"\nrecall run failed: {res['error']}")
        return
    print(f"\n## Recall@{res['k']} on clustered codes ({res['n']:,} x {res['bits']} bits, {res['queries']} queries)\n")
    print("| option | build s | queries/s | recall@k (distance) | recall@k (ids) | load 1m |")
    print("|---|---|---|---|---|---|")
    for r in res["rows"]:
        rec = lambda x: "-" if x is None or x != x else f"{x:.3f}"  # noqa: E731
        print(f"| {r['option']} | {fmt(r['build_s'])} | {fmt(r['qps'])} | {rec(r['recall'])} | {rec(r['id_recall'])} | {r['load']} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--backends", nargs="+", default=THROUGHPUT_BACKENDS, choices=THROUGHPUT_BACKENDS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="faiss thread counts")
    p.add_argument("--milvus-max", type=int, default=1_000_000, help="largest collection inserted into Milvus")
    p.add_argument("--recall-n", type=int, default=1_000_000)
    p.add_argument("--recall-bits", type=int, default=64)
    p.add_argument("--recall-threads", type=int, default=1, help="faiss threads for the recall runs (builds crawl with OpenMP on busy cores)")
    p.add_argument("--no-recall", action="store_true")
    p.add_argument("--overhead", action="store_true", help="also time the faiss backend against raw faiss on the same index")
    p.add_argument("--recall-only", action="store_true")
    p.add_argument("--overhead-only", action="store_true", help="only the faiss-backend-vs-raw comparison")
    p.add_argument("--quick", action="store_true", help="1M codes, 200 queries, no Milvus")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--omp-passive", action="store_true", help="run workers with OMP_WAIT_POLICY=PASSIVE (what the cmhash CLI sets)")
    p.add_argument("--out", help="write every figure as JSON")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        workers = {"throughput": worker_throughput, "recall": worker_recall, "overhead": worker_overhead}
        print(json.dumps(workers[kind](cfg)))
        return 0

    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by the worker processes
    if args.quick:
        args.sizes, args.queries, args.backends = [1_000_000], 200, [b for b in args.backends if b != "milvus"]
    print(
        f"# cmhash search benchmark  ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load {os.getloadavg()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')})"
    )
    results: dict = {"throughput": [], "recall": None}
    if not args.recall_only and not args.overhead_only:
        for n in args.sizes:
            for bits in args.bits:
                for backend in args.backends:
                    if backend == "milvus" and n > args.milvus_max:
                        continue
                    for threads in args.threads if backend in ("faiss", "raw-faiss") else [None]:
                        cfg = {"n": n, "bits": bits, "queries": args.queries, "k": args.k, "backend": backend, "threads": threads}
                        r = run_worker("throughput", cfg, args.timeout)
                        results["throughput"].append(r)
                        print(json.dumps(r), file=sys.stderr, flush=True)
        print_throughput(results["throughput"])
    if args.overhead or args.overhead_only:
        rows = []
        for n in args.sizes:
            for bits in args.bits:
                for threads in args.threads:
                    cfg = {"n": n, "bits": bits, "queries": args.queries, "k": args.k, "threads": threads}
                    rows.append(run_worker("overhead", cfg, args.timeout))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        results["overhead"] = rows
        print("\n## faiss backend vs raw faiss IndexBinaryFlat (same index, alternated, best of 5)\n")
        print("| codes | bits | threads | raw s | backend s | overhead (wall) | overhead (CPU) | raw codes/s | load 1m |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "error" in r:
                print(f"| {r['n']:,} | {r['bits']} | {r['threads']} | error: {r['error']} |||||| ")
                continue
            print(
                f"| {r['n']:,} | {r['bits']} | {r['threads']} | {r['raw_wall_s']:.3f} | {r['backend_wall_s']:.3f} | "
                f"{100 * r['overhead_wall']:+.1f}% | {100 * r['overhead_cpu']:+.1f}% | {r['raw_codes_per_s']:.3e} | {r['load']} |"
            )
    if not args.no_recall and not args.overhead_only:
        backends = ["faiss"] + (["milvus"] if "milvus" in args.backends and args.recall_n <= args.milvus_max else [])
        cfg = {"n": args.recall_n, "bits": args.recall_bits, "queries": args.queries, "k": args.k, "backends": backends, "threads": args.recall_threads}
        results["recall"] = run_worker("recall", cfg, args.timeout * 2)
        print_recall(results["recall"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
