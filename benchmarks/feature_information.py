"""How much of the label structure do the input features carry? A ceiling for feature-driven hashing.

For each dataset and seed's test split (the split every method of the grid uses), ranks the
database by **cosine similarity of a modality's own input features** (image features against image
features, text features against text features: real-valued, no hashing, no training) and prints
mAP@50 with the DJSRH definition, beside random codes on the same split. An unsupervised hashing
method builds its training target from these feature similarities; when the image features
themselves retrieve same-category images barely above chance, image queries cannot be expected to
do much better after hashing (Wiki's 128-word SIFT bag-of-words is the case in point).

    python benchmarks/feature_information.py                      # wiki, mirflickr, fashion; seeds 0-2
    python benchmarks/feature_information.py --datasets wiki --seeds 0

Data folders default to ../shared/data/<folder>; the MIRFlickr and Fashion image features are the
ready-made caches that `cmhash train` finds (`cmhash features prepare <dataset>`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

FOLDERS = {"wiki": "wikipedia", "mirflickr": "mirflickr25k", "fashion": "fashion-small"}


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def main() -> None:
    from cmhash.experiments.chance import random_codes
    from cmhash.experiments.run import load_run_data
    from cmhash.metrics import map_at_k, map_at_k_dense

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="wiki,mirflickr,fashion")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"), help="folder holding the dataset folders")
    p.add_argument("--topk", type=int, default=50)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"mAP@{args.topk} (DJSRH definition), same-modality cosine ranking of the input features; random codes 64 bits, same split")
    print("| dataset | seed | queries / database | image→image (features) | text→text (features) | random codes (i2t / t2i) |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        for seed in seeds:
            t0 = time.perf_counter()
            ds, split = load_run_data(name, Path(args.data) / FOLDERS[name], seed=seed)
            q, d = ds.subset(split.query), ds.subset(split.database)
            ii = map_at_k_dense(dense(q.image_features), dense(d.image_features), q.labels, d.labels, args.topk)["value"]
            tt = map_at_k_dense(dense(q.text_features), dense(d.text_features), q.labels, d.labels, args.topk)["value"]
            qi, qt, di, dt = random_codes(len(q), len(d), 64, (seed, 64, 7, 0))
            ri = map_at_k(qi, dt, q.labels, d.labels, args.topk)["value"]
            rt = map_at_k(qt, di, q.labels, d.labels, args.topk)["value"]
            print(f"| {name} | {seed} | {len(q)} / {len(d)} | {ii:.3f} | {tt:.3f} | {ri:.3f} / {rt:.3f} |  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
