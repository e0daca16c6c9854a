"""Print the DVSH result tables (markdown) from finished runs: labelled sets beside other methods, Flickr8k Recall@K.

    python benchmarks/dvsh_report.py --runs /work/runs/table1,/work/runs/scm

Reads ``RUNS/<dataset>/<method>/<variant>/<bits>bits/seed<k>/metrics.json`` (the layout of
``cmhash reproduce table1``) for DVSH and whatever other methods are there, on Fashion and
MIRFlickr (mAP@50, mean ± sample std over the seeds present, and DVSH's precision@top-R) and
Flickr8k (Recall@1/5/10 by Hamming ranking and by cosine of the real-valued outputs).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def cells(roots, dataset: str):
    out = defaultdict(list)  # (method, bits) -> [metrics]
    files = [f for root in roots for f in sorted((Path(root) / dataset).glob("*/*/*bits/seed*/metrics.json"))]
    for f in files:
        m = json.loads(f.read_text())
        variant = f.parts[-4]
        if variant != m["method"]:  # e.g. shortened-epoch variants: not the preset
            continue
        out[(m["method"], int(m["bits"]))].append(m)
    return out


def fmt(values):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def labelled_table(root, dataset: str) -> str:
    c = cells(root, dataset)
    if not c:
        return f"(no runs for {dataset})\n"
    methods = ["dvsh"] + sorted({m for m, _ in c} - {"dvsh"})
    bits = sorted({b for _, b in c})
    lines = []
    for task, label in (("i2t", "I→T"), ("t2i", "T→I")):
        lines.append(f"\n{label}, mAP@50 (mean ± std over seeds; seeds per cell in brackets when fewer than 3):\n")
        lines.append("| bits | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        for b in bits:
            row = []
            for m in methods:
                vals = [x[task]["map@50"] for x in c.get((m, b), [])]
                row.append(fmt(vals) + (f" [{len(vals)}]" if 1 < len(vals) < 3 else ""))
            lines.append(f"| {b} | " + " | ".join(row) + " |")
    dv = {b: c[("dvsh", b)] for b in bits if ("dvsh", b) in c}
    if dv:
        lines.append("\nDVSH precision@top-R (mean over seeds):\n")
        ranks = [1, 50, 100, 500, 1000]
        lines.append("| bits | task | " + " | ".join(f"P@{r}" for r in ranks) + " |")
        lines.append("|---|---|" + "---|" * len(ranks))
        for b, runs in dv.items():
            for task in ("i2t", "t2i"):
                cur = [dict(zip(x["curves"]["ranks"], x["curves"][f"{task}_precision"])) for x in runs if x.get("curves")]
                lines.append(f"| {b} | {task} | " + " | ".join(f"{np.mean([d[r] for d in cur]):.3f}" if cur and r in cur[0] else "–" for r in ranks) + " |")
        secs = [x["seconds_per_epoch"] for runs in dv.values() for x in runs if x.get("seconds_per_epoch")]
        if secs:
            lines.append(f"\nDVSH training: {np.median(secs):.1f} s/epoch (median over {len(secs)} runs; one thread, shared machine), {runs[0].get('epochs')} epochs.")
    return "\n".join(lines) + "\n"


def recall_table(root) -> str:
    c = cells(root, "flickr8k")
    if not c:
        return "(no Flickr8k runs)\n"
    lines = ["| method | bits | seeds | codes I→T R@1/5/10 | codes T→I R@1/5/10 | real-valued I→T R@1/5/10 | real-valued T→I R@1/5/10 |", "|---|---|---|---|---|---|---|"]
    for (m, b), runs in sorted(c.items()):
        def r(key, task, src="codes"):
            vals = []
            for x in runs:
                d = x[task] if src == "codes" else (x.get("real_valued") or {}).get(task)
                if d and key in d:
                    vals.append(d[key])
            return f"{np.mean(vals):.3f}" if vals else "–"
        cols = []
        for src in ("codes", "real"):
            for task in ("i2t", "t2i"):
                cols.append(" / ".join(r(f"recall@{k}", task, src) for k in (1, 5, 10)))
        lines.append(f"| {m} | {b} | {len(runs)} | " + " | ".join(cols) + " |")
    q = next(iter(c.values()))[0]
    rv = q.get("real_valued") or {}
    n_db = lambda t: (rv.get(t) or {}).get("n_database", q[t].get("n_database"))  # noqa: E731
    lines.append(f"\nQueries: {q['i2t'].get('n_queries')} images (I→T) against {n_db('i2t')} captions; "
                 f"{q['t2i'].get('n_queries')} captions (T→I) against {n_db('t2i')} images.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="/work/runs/table1", help="comma list of run roots")
    args = ap.parse_args()
    root = [Path(r) for r in args.runs.split(",")]
    for ds in ("mirflickr", "fashion"):
        print(f"## {ds}\n")
        print(labelled_table(root, ds))
    print("## flickr8k\n")
    print(recall_table(root))


if __name__ == "__main__":
    main()
