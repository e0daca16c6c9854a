"""What the DSDW constant fitter finds on our data, beside the constants the official configs ship.

For each dataset and seed: the training pairs of the run's split, JDSH's joint-modal similarity S_
(before DSDW) pooled over random batches of 32 (off-diagonal entries), a split-normal fit
(:mod:`cmhash.methods.dsdw_fit`), and for both constant sets the thresholds and the share of
entries each DSDW rule touches. Prints a Markdown table (the one in docs/jdsh.md).

    PYTHONPATH=src python benchmarks/jdsh_dsdw_fit.py --dataset mirflickr --data-root ../shared/data/mirflickr25k --seeds 0,1,2
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--variant", default="head")
    a = p.parse_args()

    from cmhash.cli.train import load_data
    from cmhash.methods.dsdw_fit import SHIPPED, describe_constants, fit_dsdw_constants, pooled_joint_similarities
    from cmhash.methods.experiment import resolve_settings

    h, run, _ = resolve_settings("jdsh", a.dataset)
    shipped = SHIPPED["nuswide" if a.dataset == "nuswide" else "mirflickr"]
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        args = SimpleNamespace(dataset=a.dataset, data_root=a.data_root, option=None, features=None, split_file=None, split=None, split_param=None, seed=seed)
        ds, split = load_data(args, run, h)
        tr = ds.subset(split.train)
        vals = pooled_joint_similarities(
            tr.image_features, tr.text_features, alpha=h["weight_image"], beta=h["weight_text"], lamb=h["weight_high"],
            variant=a.variant, batch_size=32, num_batches=a.batches, seed=seed,
        )
        fitted, fs = fit_dsdw_constants(vals, shipped)
        ss = describe_constants(vals, shipped)
        rows.append((seed, fs, ss))
    print(f"dataset {a.dataset}, variant {a.variant}, {a.batches} batches of 32 per seed, S_ off-diagonal entries")
    print("| seed | constants | LOC | SCALE_LEFT | SCALE_RIGHT | MIN | MAX | left | right | share < left | share > right | S_ median | S_ 1% / 99% |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed, fs, ss in rows:
        for name, s in (("fitted", fs), ("shipped", ss)):
            q = s["value_quantiles"]
            print(
                f"| {seed} | {name} | {s['loc_left']:.3f} | {s['scale_left']:.4f} | {s['scale_right']:.4f} | {s['min']:.3f} | {s['max']:.3f} | "
                f"{s['left']:.3f} | {s['right']:.3f} | {s['share_dissimilar']:.3f} | {s['share_similar']:.3f} | {q[0.5]:.3f} | {q[0.01]:.3f} / {q[0.99]:.3f} |"
            )
    fl = np.array([[fs["loc_left"], fs["scale_left"], fs["scale_right"]] for _, fs, _ in rows])
    print(f"\nfitted mean over seeds: LOC {fl[:, 0].mean():.3f}, SCALE_LEFT {fl[:, 1].mean():.4f}, SCALE_RIGHT {fl[:, 2].mean():.4f}")


if __name__ == "__main__":
    main()
