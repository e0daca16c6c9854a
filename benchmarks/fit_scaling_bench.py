"""Fit time and peak memory against training-set size, for every registered method.

Users choosing a method for their data size need to know how each one grows: the closed-form
shallow methods (CVH, SCM, CMFH) are linear in n, LSSH is linear with a large constant (one lasso
per sample per sweep), IMH builds dense n x n matrices (O(n^2) memory, O(n^3) time), and deep
methods are linear per epoch but build batch-level similarity matrices (and UDCMH a whole-set
one). This script measures it instead of asserting it.

Each (method, n) fit runs in a fresh process (``multiprocessing`` spawn) on the synthetic
benchmark (``load_dataset("synthetic", n=n, image_dim=D_I, vocab_size=D_T)``: labelled, so SCM
runs too), with the method's ``default`` preset, one thread, and one epoch for deep methods
(their cost per epoch is what scales with n). It prints, per n:

* ``fit s``: wall-clock seconds of ``fit`` alone (data generation excluded);
* ``traced MiB``: peak of Python/numpy allocations during ``fit`` (``tracemalloc``; exact for
  numpy; shallow methods only: it is blind to torch's allocator and slows Python-heavy loops);
* ``RSS MiB``: process peak resident set (``ru_maxrss``) after ``fit`` minus the resident set
  just before it, which covers torch and BLAS workspaces too.

Before the timed fit, one warm-up fit on 128 items (at least 4 x bits and one batch) pays for imports and
library start-up. A method's larger sizes are skipped when its last fit, extrapolated with the growth exponent seen
so far (at least 1), would exceed ``--budget`` seconds, or when ``--max-gib`` of memory would be
exceeded by an O(n^2) extrapolation of its traced peak.

    python benchmarks/fit_scaling_bench.py                               # all methods, n = 500..8000
    python benchmarks/fit_scaling_bench.py --methods imh,cvh --sizes 1000,2000,4000 --budget 60
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)


def _one(method: str, n: int, bits: int, image_dim: int, text_dim: int, queue) -> None:
    """Child process: build the data, fit once, report time and memory."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, SRC)
    import gc
    import resource
    import tracemalloc

    try:
        from cmhash.data import load_dataset
        from cmhash.methods import METHODS, create_method
        from cmhash.presets import load_preset
        from cmhash.threads import limit_threads

        ds = load_dataset("synthetic", n=n, image_dim=image_dim, vocab_size=text_dim, seed=0)
        try:
            hp = dict(load_preset(method).hparams)
        except Exception:  # a method without presets uses its DEFAULTS
            hp = {}
        cls = METHODS.get(method)
        deep = bool(getattr(cls, "deep", False))
        if deep:
            hp["epochs"] = 1

        def fit(data):
            model = create_method(method, bits, **hp)
            with limit_threads(1):
                if deep:
                    model.fit(data, progress=False, threads=1)
                else:
                    model.fit(data, threads=1)

        # warm-up (imports, BLAS/torch start-up) on 128 items, or enough for one batch (KDH, UCCH: 256) and 4 x bits
        warm = max(4 * bits, 128, int(hp.get("batch_size") or cls.DEFAULTS.get("batch_size") or 0))
        fit(ds.subset(list(range(min(n, warm)))))
        gc.collect()
        rss_before = _current_rss_mib()
        if not deep:  # tracemalloc slows Python-heavy training loops; deep methods get RSS only
            tracemalloc.start()
        t0 = time.perf_counter()
        fit(ds)
        secs = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if not deep else float("nan")
        tracemalloc.stop()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        queue.put({"ok": True, "seconds": secs, "traced_mib": traced, "rss_mib": max(0.0, peak - rss_before), "deep": deep})
    except Exception as exc:  # reported in the table, the benchmark goes on
        queue.put({"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})


def _current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(method: str, n: int, args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_one, args=(method, n, args.bits, args.image_dim, args.text_dim, q))
    p.start()
    p.join(args.timeout)
    if p.is_alive():
        p.terminate()
        p.join()
        return {"ok": False, "error": f"timeout after {args.timeout} s"}
    return q.get() if not q.empty() else {"ok": False, "error": f"child exited with {p.exitcode}"}


def main(argv=None) -> int:
    from cmhash.methods import list_methods

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="all", help="comma list or 'all' (every registered method)")
    ap.add_argument("--sizes", default="500,1000,2000,4000,8000", help="training-set sizes n")
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--image-dim", type=int, default=512)
    ap.add_argument("--text-dim", type=int, default=1000)
    ap.add_argument("--budget", type=float, default=90.0, help="skip a size whose extrapolated fit time exceeds this (s)")
    ap.add_argument("--max-gib", type=float, default=4.0, help="skip a size whose extrapolated O(n^2) memory exceeds this")
    ap.add_argument("--timeout", type=float, default=600.0, help="kill a single fit after this many seconds")
    args = ap.parse_args(argv)
    methods = list_methods() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"fit scaling: {args.bits} bits, synthetic {args.image_dim}-d image / {args.text_dim}-d text, one thread, deep methods 1 epoch")
    print(f"load average at start: {os.getloadavg()}")
    print(f"{'method':<10} {'n':>6} {'fit s':>9} {'traced MiB':>11} {'RSS MiB':>9}  note")
    for method in methods:
        done: list[tuple[int, float, float]] = []
        for n in sizes:
            if done:
                n0, t0, m0 = done[-1]
                exp = 1.0
                if len(done) >= 2:
                    n1, t1, _ = done[-2]
                    exp = max(1.0, math.log(max(t0, 1e-3) / max(t1, 1e-3)) / math.log(n0 / n1))
                pred_t = t0 * (n / n0) ** exp
                pred_m = m0 * (n / n0) ** 2 / 1024
                if pred_t > args.budget or pred_m > args.max_gib:
                    print(f"{method:<10} {n:>6} {'-':>9} {'-':>11} {'-':>9}  skipped: extrapolated {pred_t:.0f} s (n^{exp:.1f}), <= {pred_m:.1f} GiB")
                    continue
            r = run(method, n, args)
            if not r["ok"]:
                print(f"{method:<10} {n:>6} {'-':>9} {'-':>11} {'-':>9}  {r['error']}")
                break
            mem = r["traced_mib"] if r["traced_mib"] == r["traced_mib"] else r["rss_mib"]  # NaN for deep methods
            done.append((n, r["seconds"], mem))
            note = "1 epoch" if r.get("deep") else ""
            print(f"{method:<10} {n:>6} {r['seconds']:>9.2f} {r['traced_mib']:>11.1f} {r['rss_mib']:>9.1f}  {note}", flush=True)
        if len(done) >= 2:
            (na, ta, ma), (nb, tb, mb) = done[0], done[-1]
            et = math.log(max(tb, 1e-3) / max(ta, 1e-3)) / math.log(nb / na)
            em = math.log(max(mb, 1e-3) / max(ma, 1e-3)) / math.log(nb / na)
            print(f"{method:<10} growth n={na}..{nb}: time ~ n^{et:.2f}, memory ~ n^{em:.2f} (traced; RSS for deep methods)")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
