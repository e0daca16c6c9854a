"""CMFH on the real data, side by side with the independent reference figures.

Reproduces the CMFH rows of ``shared/reference/independent_reference.md`` (and a random-codes row)
with cmhash's own pieces: the data sources, ``make_split``, ``cmhash.methods.cmfh`` and
``cmhash.metrics.mean_average_precision`` (mAP@50, DJSRH definition, stable ties).

Protocol
  MIRFlickr, 7,696-pair subset: EfficientNet-Lite0 pooled image features (1280-d) and the binary
  1,386-d tag bag-of-words, from a features file (``--mir-features``, an .npz with
  ``image_features``, ``text_features``, ``labels``, ``ids`` in the row order of
  ``load_dataset("mirflickr", root)``); split ``make_split(ds, "djsrh", seed=s)`` (2,000 queries,
  5,696 database, 5,000 training pairs); seeds 0, 1, 2 (the seed draws the split, the CMFH
  initialisation and the random codes).
  Wiki: the official features and split (2,173 train = database, 693 queries); seeds 0, 1, 2 draw
  the CMFH initialisation and the random codes.
  CMFH: alpha .5/.5, gamma .01, mu 100, 30 iterations, centred on training means, codes
  sign((x - mean) P_t) for queries and database.

Usage:
  python benchmarks/cmfh_reference.py                                # both sets, 16-128 bits, 3 seeds
  python benchmarks/cmfh_reference.py --datasets wiki --bits 32 --seeds 0
  python benchmarks/cmfh_reference.py --bmc-compat                   # the BMC-SDNU 1/mu^2 P-update
  python benchmarks/cmfh_reference.py --order UVP                    # the official update order
  python benchmarks/cmfh_reference.py --out runs/cmfh_reference.json

Takes about 3 minutes on one core of the 2-core development machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cmhash.data import load_dataset  # noqa: E402
from cmhash.data.dataset import PairedDataset  # noqa: E402
from cmhash.data.splits import make_split  # noqa: E402
from cmhash.errors import DataError, MissingFileError  # noqa: E402
from cmhash.io import write_json  # noqa: E402
from cmhash.methods import create_method  # noqa: E402
from cmhash.metrics import mean_average_precision  # noqa: E402
from cmhash.threads import limit_threads  # noqa: E402

#: ../shared beside the project (worktrees live one level deeper, under ../wt/<name>)
SHARED = next((p / "shared" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared").is_dir()), ROOT.parent / "shared")

#: shared/reference/independent_reference.md, mean of 3 seeds: {bits: (i2t, t2i)}
REFERENCE = {
    "mirflickr": {
        "cmfh": {16: (0.821, 0.763), 32: (0.847, 0.780), 64: (0.875, 0.801), 128: (0.892, 0.819)},
        "random": {16: (0.579, 0.577), 32: (0.580, 0.580), 64: (0.581, 0.579), 128: (0.581, 0.579)},
    },
    "wiki": {
        "cmfh": {16: (0.235, 0.363), 32: (0.248, 0.419), 64: (0.257, 0.434), 128: (0.267, 0.448)},
        "random": {16: (0.169, 0.173), 32: (0.171, 0.171), 64: (0.171, 0.171), 128: (0.171, 0.167)},
    },
}
TOPK = 50


def load_mirflickr_features(path: Path, data_root: Path | None) -> PairedDataset:
    """The MIRFlickr pairs with precomputed features; checks ids/labels against the source if present."""
    if not path.exists():
        raise MissingFileError(
            f"{path}: MIRFlickr features not found; create the ready-made cache with "
            "`cmhash features prepare mirflickr --data-root ../shared/data/mirflickr25k` or pass --mir-features FILE.npz"
        )
    if path.is_dir():  # a cmhash feature cache: the source gives ids, labels and the tag BoW
        from cmhash.features.attach import attach_features

        return attach_features(load_dataset("mirflickr", data_root), path)
    z = np.load(path, allow_pickle=False)
    missing = [k for k in ("image_features", "text_features", "labels", "ids") if k not in z]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    ds = PairedDataset(
        name="mirflickr",
        ids=z["ids"],
        image_features=z["image_features"],
        text_features=z["text_features"],
        text_kind="tags",
        labels=z["labels"],
        meta={"features_file": str(path)},
    )
    if data_root is not None and data_root.is_dir():
        src = load_dataset("mirflickr", data_root, check_images="exists")
        if not (np.array_equal(src.ids, ds.ids) and np.array_equal(src.labels, ds.labels)):
            raise DataError(f"{path}: ids/labels differ from load_dataset('mirflickr', {data_root}); the features are for other rows")
        if not np.array_equal(src.text_features, ds.text_features):
            raise DataError(f"{path}: text features differ from the source's 1,386-d tag bag-of-words")
        print(f"  checked: {len(ds)} ids, labels and tag BoW match load_dataset('mirflickr')", flush=True)
    return ds


def evaluate(method, query: PairedDataset, db: PairedDataset) -> tuple[float, float]:
    qi, qt = method.encode(query, "image"), method.encode(query, "text")
    di, dt = method.encode(db, "image"), method.encode(db, "text")
    i2t = mean_average_precision(qi, dt, query.labels, db.labels, topk=TOPK)
    t2i = mean_average_precision(qt, di, query.labels, db.labels, topk=TOPK)
    return i2t, t2i


def random_codes(query: PairedDataset, db: PairedDataset, bits: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    codes = {k: rng.choice(np.array([-1, 1], np.int8), size=(len(s), bits)) for k, s in (("qi", query), ("qt", query), ("di", db), ("dt", db))}
    return (
        mean_average_precision(codes["qi"], codes["dt"], query.labels, db.labels, topk=TOPK),
        mean_average_precision(codes["qt"], codes["di"], query.labels, db.labels, topk=TOPK),
    )


def run_dataset(name: str, ds: PairedDataset, protocol: str, args) -> list[dict]:
    rows = []
    for seed in args.seeds:
        split = make_split(ds, protocol, seed=seed)
        train, query, db = ds.subset(split.train), ds.subset(split.query), ds.subset(split.database)
        for bits in args.bits:
            t0 = time.perf_counter()
            method = create_method("cmfh", bits, seed=seed, iterations=args.iterations, bmc_compat=args.bmc_compat, order=args.order)
            method.fit(train)
            fit_s = time.perf_counter() - t0
            i2t, t2i = evaluate(method, query, db)
            r_i2t, r_t2i = random_codes(query, db, bits, seed)
            rows.append(dict(dataset=name, seed=seed, bits=bits, cmfh=(i2t, t2i), random=(r_i2t, r_t2i), fit_seconds=fit_s, split=split.describe()))
            print(f"  {name} seed {seed} {bits:3d} bits: CMFH {i2t:.3f} / {t2i:.3f}   random {r_i2t:.3f} / {r_t2i:.3f}   fit {fit_s:.1f}s", flush=True)
    return rows


def summarise(rows: list[dict], bits_list) -> str:
    lines = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"\n### {name}: mAP@{TOPK} image->text / text->image, mean of seeds {sorted({r['seed'] for r in rows if r['dataset'] == name})}\n"]
        lines += ["| method | " + " | ".join(f"{b} bits" for b in bits_list) + " |", "|---|" + "---|" * len(bits_list)]
        for key, label in (("random", "random codes"), ("cmfh", "CMFH (cmhash)")):
            cells, refs, diffs = [], [], []
            for b in bits_list:
                vals = np.array([r[key] for r in rows if r["dataset"] == name and r["bits"] == b])
                mean = vals.mean(axis=0)
                ref = REFERENCE[name][key].get(b)
                cells.append(f"{mean[0]:.3f} / {mean[1]:.3f}")
                refs.append(f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else "-")
                diffs.append(f"{mean[0] - ref[0]:+.3f} / {mean[1] - ref[1]:+.3f}" if ref else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append(f"| {label.split(' (')[0]}, independent reference | " + " | ".join(refs) + " |")
            lines.append("| difference | " + " | ".join(diffs) + " |")
        spread = {b: np.array([r["cmfh"] for r in rows if r["dataset"] == name and r["bits"] == b]) for b in bits_list}
        lines.append(
            "\nCMFH seed range (min-max): "
            + "; ".join(f"{b}: {s[:, 0].min():.3f}-{s[:, 0].max():.3f} / {s[:, 1].min():.3f}-{s[:, 1].max():.3f}" for b, s in spread.items())
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["mirflickr", "wiki"], choices=["mirflickr", "wiki"])
    p.add_argument("--mir-features", type=Path, default=None, help="an .npz (image_features, text_features, labels, ids) or a feature cache (default: the ready-made cache of `cmhash features prepare mirflickr`)")
    p.add_argument("--mir-root", type=Path, default=SHARED / "data" / "mirflickr25k", help="checks the features file's rows against the source")
    p.add_argument("--wiki-root", type=Path, default=SHARED / "data" / "wikipedia")
    p.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64, 128])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--bmc-compat", action="store_true", help="use the BMC-SDNU 1/mu^2 P-update (and its U->V->P order)")
    p.add_argument("--order", choices=["PUV", "UVP"], help="order of the block updates (default: the method's)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--out", type=Path, help="write all rows as JSON")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    rows: list[dict] = []
    with limit_threads(args.threads):
        for name in args.datasets:
            print(f"{name}:", flush=True)
            if name == "mirflickr":
                if args.mir_features is None:
                    from cmhash.features.prepared import features_cache_dir

                    args.mir_features = features_cache_dir("mirflickr")
                ds, protocol = load_mirflickr_features(Path(args.mir_features), args.mir_root), "djsrh"
            else:
                ds, protocol = load_dataset("wiki", args.wiki_root), "official"
            rows += run_dataset(name, ds, protocol, args)
    print(summarise(rows, args.bits))
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f}s (iterations {args.iterations}, bmc_compat {args.bmc_compat}, order {args.order or 'default'}, threads {args.threads})")
    if args.out:
        write_json(args.out, {"protocol": __doc__, "args": vars(args), "rows": rows, "seconds": total})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
