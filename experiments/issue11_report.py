"""Issue 11 tables from `cmhash train` runs: mean ± std over seeds, and paired differences vs CMFH.

    python experiments/issue11_report.py /work/runs/issue-11/final mirflickr kdh,dgcpn,ucch --baseline cmfh

Reads ROOT/<dataset>/<method>/seed<s>/<bits>bits/metrics.json (or .../seed<s>/metrics.json for one
length). Prints markdown: per method, per length and direction, mAP@50 and mAP@all (mean ± sample
std over the seeds found), then for each method the difference to the baseline paired by seed
(same split), with how many seeds it wins.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def collect(root: Path, dataset: str, method: str) -> dict:
    out: dict = {}
    for f in sorted((root / dataset / method).glob("seed*/**/metrics.json")):
        m = json.loads(f.read_text())
        out[(int(m["bits"]), int(m["seed"]))] = m
    return out


def fmt(vals) -> str:
    vals = np.asarray(vals, float)
    if len(vals) == 0:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("dataset")
    ap.add_argument("methods")
    ap.add_argument("--baseline", default="cmfh")
    args = ap.parse_args()
    root = Path(args.root)
    runs = {m: collect(root, args.dataset, m) for m in [args.baseline] + args.methods.split(",")}
    bits_all = sorted({b for r in runs.values() for b, _ in r})
    print(f"### {args.dataset}\n")
    print("| method | bits | seeds | I→T mAP@50 | T→I mAP@50 | I→T mAP@all | T→I mAP@all | s/epoch (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        for b in bits_all:
            cells = [r[k] for k in sorted(r) if k[0] == b]
            if not cells:
                continue
            seeds = ",".join(str(c["seed"]) for c in cells)
            spe = [c.get("seconds_per_epoch") for c in cells if c.get("seconds_per_epoch")]
            row = [fmt([c[t][k] for c in cells]) for k in ("map@50", "map@all") for t in ("i2t", "t2i")]
            print(f"| {name} | {b} | {seeds} | {' | '.join(row)} | {np.median(spe):.2f} |" if spe else f"| {name} | {b} | {seeds} | {' | '.join(row)} | - |")
    base = runs[args.baseline]
    for metric in ("map@50", "map@all"):
        print(f"\nPaired by seed (same split) against {args.baseline}, {metric}: mean difference ± std (seeds won / seeds)\n")
        print("| method | bits | Δ I→T | Δ T→I | both directions won on the mean |")
        print("|---|---|---|---|---|")
        for name, r in runs.items():
            if name == args.baseline:
                continue
            for b in bits_all:
                keys = [k for k in sorted(r) if k[0] == b and k in base]
                if not keys:
                    continue
                cells, means = [], []
                for t in ("i2t", "t2i"):
                    d = np.array([r[k][t][metric] - base[k][t][metric] for k in keys])
                    means.append(d.mean())
                    sd = f" ± {d.std(ddof=1):.3f}" if len(d) > 1 else ""
                    cells.append(f"{d.mean():+.3f}{sd} ({int((d > 0).sum())}/{len(d)})")
                print(f"| {name} | {b} | {cells[0]} | {cells[1]} | {'yes' if min(means) > 0 else 'no'} |")

if __name__ == "__main__":
    main()
