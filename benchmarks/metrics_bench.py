"""Benchmark: mAP@50 of cmhash.metrics against the per-query argsort loop of the DJSRH code.

Default size is NUS-WIDE TC-10 as DJSRH splits it: 2,000 queries against a 184,577-item
database, 64-bit codes, 10 labels. Codes are synthetic but structured (each item's code is the
sign of its labels' prototype vectors plus noise), so mAP is neither 0 nor 1 and ties occur.

The data are generated in one subprocess and saved to temporary .npy files; each implementation
then runs in its own fresh subprocess on them and reports: wall time, the peak of numpy
allocations during the run (tracemalloc; numpy reports its buffers to it), and the process's
peak resident memory (VmHWM of /proc/self/status: interpreter + loaded data + the run; unlike
ru_maxrss it is not inherited from the parent across fork/exec). CPU time (all threads) is
printed beside wall time: on a shared machine it varies less with the load. Values are compared
under the same tie rule:

* cmhash (stable_index)    vs the loop with np.argsort(kind="stable")
* cmhash (legacy_unstable) vs the loop with np.argsort() default kind, exactly as DJSRH

Run:  python benchmarks/metrics_bench.py               (full size; the loops take minutes)
      python benchmarks/metrics_bench.py --queries 200  (quick look)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

NOISE = 3.0  # code noise against the label signal: mAP@50 near 0.79 at 64 bits, like trained codes
IMPLS = {
    "cmhash": "cmhash.metrics, tie_break=stable_index",
    "cmhash-legacy": "cmhash.metrics, tie_break=legacy_unstable",
    "loop-stable": "DJSRH-style loop, np.argsort(kind='stable')",
    "loop-djsrh": "DJSRH-style loop, np.argsort() default kind",
}


def make_data(nq: int, nd: int, bits: int, n_labels: int, seed: int, noise: float = NOISE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = nq + nd
    freq = np.linspace(0.05, 0.35, n_labels)
    labels = (rng.random((n, n_labels)) < freq).astype(np.uint8)
    empty = labels.sum(1) == 0
    labels[empty, rng.integers(0, n_labels, int(empty.sum()))] = 1
    protos = rng.standard_normal((n_labels, bits)).astype(np.float32)
    base = labels.astype(np.float32) @ protos
    img = np.where(base + noise * rng.standard_normal((n, bits), dtype=np.float32) >= 0, 1, -1).astype(np.int8)
    txt = np.where(base + noise * rng.standard_normal((n, bits), dtype=np.float32) >= 0, 1, -1).astype(np.int8)
    return {"qB": img[:nq], "rB": txt[nq:], "qL": labels[:nq], "rL": labels[nq:]}


def djsrh_loop(qB, rB, qL, rL, topk, kind=None):
    """The per-query loop of DJSRH's calculate_top_map (float32 codes as from torch)."""
    num_query = qL.shape[0]
    total = 0.0
    for it in range(num_query):
        gnd = (np.dot(qL[it, :], rL.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (rB.shape[1] - np.dot(qB[it, :], rB.transpose()))
        ind = np.argsort(hamm) if kind is None else np.argsort(hamm, kind=kind)
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        total += np.mean(count / tindex)
    return total / num_query


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(impl: str, data_dir: Path, topk: int, memory_mb: float) -> dict:
    d = {k: np.load(data_dir / f"{k}.npy") for k in ("qB", "rB", "qL", "rL")}
    if impl.startswith("loop"):
        # DJSRH's inputs: float32 codes from torch, float labels
        d = {"qB": d["qB"].astype(np.float32), "rB": d["rB"].astype(np.float32), "qL": d["qL"].astype(np.float32), "rL": d["rL"].astype(np.float32)}
    from cmhash import metrics as M

    rss_before = _status_mb("VmRSS")
    tracemalloc.start()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if impl == "cmhash":
        value = M.mean_average_precision(d["qB"], d["rB"], d["qL"], d["rL"], topk, memory_mb=memory_mb)
    elif impl == "cmhash-legacy":
        value = M.mean_average_precision(d["qB"], d["rB"], d["qL"], d["rL"], topk, tie_break="legacy_unstable", memory_mb=memory_mb)
    elif impl == "loop-stable":
        value = djsrh_loop(d["qB"], d["rB"], d["qL"], d["rL"], topk, kind="stable")
    elif impl == "loop-djsrh":
        value = djsrh_loop(d["qB"], d["rB"], d["qL"], d["rL"], topk)
    else:
        raise SystemExit(f"unknown implementation {impl}")
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mb = _status_mb("VmHWM")
    return {"impl": impl, "seconds": seconds, "cpu_seconds": cpu_seconds, "value": value, "tracemalloc_peak_mb": peak / 2**20, "maxrss_mb": maxrss_mb, "rss_before_mb": rss_before}


def distance_kernels(data_dir: Path, chunk: int = 256) -> dict[str, float]:
    """Time of all query-database Hamming distances: popcount on uint64 words vs float32 BLAS."""
    from cmhash import codes as C

    qB, rB = np.load(data_dir / "qB.npy"), np.load(data_dir / "rB.npy")
    qw, rw = C.as_words(C.pack(qB)), C.as_words(C.pack(rB))
    out = np.empty((chunk, len(rB)), dtype=np.uint8)
    t0 = time.perf_counter()
    for s in range(0, len(qB), chunk):
        C.hamming_from_words(qw[s : s + chunk], rw, out=out[: len(qw[s : s + chunk])])
    t_pop = time.perf_counter() - t0
    qf, rf = qB.astype(np.float32), rB.astype(np.float32)
    bits = qB.shape[1]
    t0 = time.perf_counter()
    for s in range(0, len(qB), chunk):
        np.rint((bits - qf[s : s + chunk] @ rf.T) * 0.5).astype(np.uint8)
    t_mm = time.perf_counter() - t0
    return {"popcount_uint64": t_pop, "float32_matmul": t_mm}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--database", type=int, default=184_577)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--labels", type=int, default=10)
    p.add_argument("--topk", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-mb", type=float, default=256)
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    p.add_argument("--no-kernels", action="store_true", help="skip the distance-kernel comparison")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--make-data", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kernels-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.data_dir, args.topk, args.memory_mb)))
        return 0
    if args.make_data:
        for key, arr in make_data(args.queries, args.database, args.bits, args.labels, args.seed).items():
            np.save(args.data_dir / f"{key}.npy", arr)
        return 0
    if args.kernels_only:
        print(json.dumps(distance_kernels(args.data_dir)))
        return 0

    print(f"mAP@{args.topk}: {args.queries} queries x {args.database} database items, {args.bits} bits, {args.labels} labels")
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} ({os.cpu_count()} cores)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="cmhash-bench-") as tmp:
        data_dir = Path(tmp)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        size = ["--queries", str(args.queries), "--database", str(args.database), "--bits", str(args.bits), "--labels", str(args.labels), "--seed", str(args.seed)]

        def child(*extra: str) -> str:
            proc = subprocess.run([sys.executable, __file__, "--data-dir", str(data_dir), *size, *extra], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(proc.returncode)
            return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""

        child("--make-data")
        if not args.no_kernels:
            k = json.loads(child("--kernels-only"))
            print(f"all-pairs Hamming distances: popcount on uint64 words {k['popcount_uint64']:.2f} s, float32 BLAS matmul {k['float32_matmul']:.2f} s")
            results["distance_kernels_s"] = k
        for impl in args.impls:
            r = json.loads(child("--worker", impl, "--topk", str(args.topk), "--memory-mb", str(args.memory_mb)))
            results[impl] = r
            print(
                f"  {IMPLS[impl]:<45s} {r['seconds']:8.2f} s (CPU {r['cpu_seconds']:7.2f} s)   mAP={r['value']:.6f}   "
                f"numpy peak {r['tracemalloc_peak_mb']:7.1f} MB   process peak RSS {r['maxrss_mb']:7.1f} MB "
                f"(RSS before run {r['rss_before_mb']:.0f} MB)"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for fast, slow in (("cmhash", "loop-stable"), ("cmhash-legacy", "loop-djsrh"), ("cmhash", "loop-djsrh")):
        if fast in results and slow in results:
            a, b = results[fast], results[slow]
            print(
                f"{fast} vs {slow}: {b['seconds'] / a['seconds']:.1f}x faster wall-clock, {b['cpu_seconds'] / a['cpu_seconds']:.1f}x less CPU time, "
                f"|mAP difference| = {abs(a['value'] - b['value']):.2e}"
            )
    if args.json:
        from cmhash.io import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
