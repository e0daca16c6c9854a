"""How long loading takes: every real set in ../shared/data, and a NUS-WIDE-sized .mat layout.

Usage:
    python benchmarks/data_load_bench.py                   # real sets found under ../shared/data
    python benchmarks/data_load_bench.py --nuswide-rows 186577   # also a full-size NUS-WIDE layout (tmp)

Prints one line per case: pairs kept, dropped, seconds, and the process's peak RSS so far. The
NUS-WIDE case writes v7.3 ``YAll`` (1,000 x N as h5py sees it, uint8 to keep the temp file
small), v5 ``LAll`` and a v7.3 ``IAll`` of 4x4 images into a temporary folder, then loads it.
Run it on a quiet machine (and note `uptime`) before quoting the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cmhash.data import load_dataset  # noqa: E402

REAL = [
    ("wiki", "wikipedia", {}),
    ("mirflickr", "mirflickr25k", {}),
    ("mirflickr", "mirflickr25k", {"check_images": "exists"}),
    ("flickr8k", "flickr8k", {}),
    ("fashion", "fashion-small", {}),
    ("fashion", "fashion-small", {"check_images": "exists"}),
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(name, root, **opts):
    t0 = time.perf_counter()
    ds = load_dataset(name, root, **opts)
    dt = time.perf_counter() - t0
    opt = ",".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
    print(f"{name:10s} {opt:28s} kept {len(ds):>7,d}  dropped {len(ds.report.dropped):>7,d}  {dt:6.2f} s  peak RSS {peak_rss_mb():7.0f} MB")
    return ds


def nuswide_case(rows: int) -> None:
    import h5py
    import scipy.io as sio

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = (rng.random((rows, 10)) < 0.2).astype(np.uint8)
        labels[:, 0] |= labels.sum(1) == 0
        sio.savemat(tmp / "nus-wide-tc10-lall.mat", {"LAll": labels})
        with h5py.File(tmp / "nus-wide-tc10-yall.mat", "w") as fh:
            ds = fh.create_dataset("YAll", shape=(1000, rows), dtype=np.uint8, chunks=(1000, 4096))
            for start in range(0, rows, 65536):
                stop = min(rows, start + 65536)
                ds[:, start:stop] = (rng.random((1000, stop - start)) < 0.01).astype(np.uint8)
        with h5py.File(tmp / "nus-wide-tc10-iall.mat", "w") as fh:
            fh.create_dataset("IAll", data=rng.integers(0, 255, size=(rows, 3, 4, 4), dtype=np.uint8))
        size = sum(f.stat().st_size for f in tmp.iterdir()) / 2**20
        print(f"nuswide-like fixture: {rows:,} pairs, {size:.0f} MB on disk")
        timed("nuswide", tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("CMHASH_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--nuswide-rows", type=int, default=0, help="also time a NUS-WIDE-sized layout with this many pairs")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    data = Path(args.data)
    for name, sub, opts in REAL:
        if (data / sub).is_dir():
            timed(name, data / sub, **opts)
        else:
            print(f"{name:10s} skipped: {data / sub} not found")
    if args.nuswide_rows:
        nuswide_case(args.nuswide_rows)


if __name__ == "__main__":
    main()
