"""DGCPN's training codes watched step by step: how (and how fast) a run collapses to one code.

Trains DGCPN with a dataset's preset (``--set`` overrides on top) and prints, at the start of each
epoch and every ``--every`` steps of the first epoch, for the whole training set and each
modality: the number of distinct codes ``sign(H)``, the bit balance (mean over bits of |mean of
the bit|: 0 balanced, 1 constant), the mean |H| of the hash layer, the fraction of saturated
``tanh(H)`` (|tanh| > 0.99), and the item-to-item spread of H (std over items, mean over bits);
then the logged loss terms per epoch and mAP over the whole ranking on the test split. The first
lines give the global similarity's off-diagonal statistics. docs/dgcpn.md quotes its output.

Usage:
  python benchmarks/dgcpn_code_probe.py --dataset wiki --data-root ../shared/data/wikipedia --bits 16 --epochs 4
  python benchmarks/dgcpn_code_probe.py ... --set input_norm=none --set lr_image=0.005 --set lr_text=0.005   # the old Wiki preset
  python benchmarks/dgcpn_code_probe.py --dataset mirflickr --data-root ../shared/data/mirflickr25k --bits 16 --epochs 2

Wiki: about 2 s per epoch on one thread; MIRFlickr: 15-20 s per epoch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main(argv=None) -> int:
    from cmhash.experiments.evaluation import code_health, evaluate_codes
    from cmhash.experiments.run import load_run_data
    from cmhash.experiments.settings import parse_overrides, resolve_settings
    from cmhash.methods import create_method
    from cmhash.methods import dgcpn as D
    from cmhash.training.trainer import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="wiki")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--every", type=int, default=10, help="steps between probes in the first epoch")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    hp, run, _ = resolve_settings("dgcpn", args.dataset, overrides=parse_overrides(args.set))
    hp["epochs"] = args.epochs
    ds, split = load_run_data(args.dataset, args.data_root, run=run, seed=args.seed)
    train = ds.subset(split.train)
    method = create_method("dgcpn", args.bits, seed=args.seed, **hp)
    print(f"dgcpn {args.dataset} {args.bits} bits seed {args.seed}: {len(train)} training pairs; hparams {hp}")

    def probe(tag: str) -> None:
        parts = []
        for mod in ("image", "text"):
            h = method.hash_outputs(train, mod)
            stats = code_health({mod: np.where(h >= 0, 1, -1)})[0][mod]  # as each run's metrics.json counts them
            parts.append(
                f"{mod}: distinct {stats['distinct']:5d}  balance {stats['bit_balance']:.2f}  |H| {np.abs(h).mean():7.3f}  "
                f"saturated {(np.abs(np.tanh(h)) > 0.99).mean():.2f}  spread {h.std(0).mean():.3f}"
            )
        print(f"{tag:>14}  " + "   ".join(parts), flush=True)

    state = {"step": 0, "epoch": 0}
    start, after = D.DGCPN.on_epoch_start, D.DGCPN.after_step

    def on_epoch_start(self, epoch, train_set=None):
        out = start(self, epoch, train_set)
        if epoch == 1:
            s = self.similarity
            off = s[~torch.eye(s.shape[0], dtype=torch.bool)]
            print(f"global S off-diagonal: mean {off.mean():.3f} std {off.std():.3f} min {off.min():.3f} max {off.max():.3f}")
        state["epoch"] = epoch
        probe(f"epoch {epoch} start")
        return out

    def after_step(self, batch, optimizers):
        out = after(self, batch, optimizers)
        state["step"] += 1
        if state["epoch"] == 1 and state["step"] % args.every == 0:
            probe(f"step {state['step']}")
        return out

    D.DGCPN.on_epoch_start, D.DGCPN.after_step = on_epoch_start, after_step
    try:
        config = TrainConfig(epochs=args.epochs, batch_size=int(hp["batch_size"]), seed=args.seed, run_dir=None, progress=False, tensorboard=False, device="cpu")
        method.fit(train, val=None, config=config)
    finally:
        D.DGCPN.on_epoch_start, D.DGCPN.after_step = start, after
    probe("end")
    keys = ("loss", "paired", "reconstruction", "coherence", "binary_image", "binary_text")
    for row in method.history:
        print(f"epoch {row['epoch']}: " + "  ".join(f"{k} {row[k]:.4f}" for k in keys if k in row))
    q, db = ds.subset(split.query), ds.subset(split.database)
    res = evaluate_codes(method.encode(q, "image"), method.encode(q, "text"), method.encode(db, "image"), method.encode(db, "text"), q.labels, db.labels, curves=False)
    print(f"test mAP@all i2t {res['i2t']['map@all']:.4f}  t2i {res['t2i']['map@all']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
