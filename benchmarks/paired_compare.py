"""Paired comparison of two methods run on the same splits and seeds (e.g. JDSH against DJSRH).

Reads ``ROOT/<dataset>/<method>/<tag>/<bits>bits/seed<k>/metrics.json`` for both methods, pairs the
runs by (bits, seed) (same seed = same split, initialisation seed and batch order) and prints a
Markdown table per direction: each method's mean +- sample std, the per-seed differences A - B,
their mean, and how many seeds A wins. Also prints each method's mean seconds per epoch.

    python benchmarks/paired_compare.py --root /work/runs/table1 --dataset mirflickr --a jdsh --b djsrh --tag e10
    python benchmarks/paired_compare.py --root /work/runs/table1 --dataset wiki --a jdsh --b djsrh --tag jdsh --tag-b djsrh
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from statistics import mean, stdev


def load(root: Path, dataset: str, method: str, tag: str) -> dict[tuple[int, int], dict]:
    out = {}
    for p in sorted((root / dataset / method / tag).glob("*bits/seed*/metrics.json")):
        bits = int(re.match(r"(\d+)bits", p.parent.parent.name).group(1))
        seed = int(p.parent.name.removeprefix("seed"))
        out[(bits, seed)] = json.loads(p.read_text())
    return out


def fmt(xs: list[float]) -> str:
    return f"{mean(xs):.3f} ± {stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--tag", default="e10", help="sub-folder of each method holding the runs (e.g. the epoch budget)")
    p.add_argument("--tag-b", default=None, help="B's sub-folder when it differs from A's (e.g. --tag jdsh --tag-b djsrh: each at its preset)")
    args = p.parse_args()
    root = Path(args.root)
    ra, rb = load(root, args.dataset, args.a, args.tag), load(root, args.dataset, args.b, args.tag_b or args.tag)
    pairs = sorted(set(ra) & set(rb))
    if not pairs:
        raise SystemExit(f"no paired runs under {root / args.dataset}")
    A, B = args.a.upper(), args.b.upper()
    print(f"{args.dataset}: {A} vs {B}, paired by seed ({len(pairs)} pairs), mAP@50")
    print(f"\n| bits | task | seeds | {A} | {B} | {A} − {B} per seed | mean diff | {A} wins |")
    print("|---|---|---|---|---|---|---|---|")
    for bits in sorted({b for b, _ in pairs}):
        seeds = sorted(s for b, s in pairs if b == bits)
        for task, name in (("i2t", "I→T"), ("t2i", "T→I")):
            xa = [ra[(bits, s)][task]["map@50"] for s in seeds]
            xb = [rb[(bits, s)][task]["map@50"] for s in seeds]
            d = [a - b for a, b in zip(xa, xb)]
            per = ", ".join(f"s{s}: {x:+.3f}" for s, x in zip(seeds, d))
            print(f"| {bits} | {name} | {len(seeds)} | {fmt(xa)} | {fmt(xb)} | {per} | {mean(d):+.3f} | {sum(x > 0 for x in d)}/{len(d)} |")
    for name, runs in ((A, ra), (B, rb)):
        spe = [m["seconds_per_epoch"] for m in runs.values() if m.get("seconds_per_epoch")]
        ep = sorted({m.get("epochs") for m in runs.values()})
        print(f"\n{name}: {len(runs)} runs, epochs {ep}, mean {mean(spe):.1f} s/epoch (1 thread, shared 2-core machine)")


if __name__ == "__main__":
    main()
