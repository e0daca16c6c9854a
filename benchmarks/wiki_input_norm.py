"""Wiki code collapse and the `input_norm` remedy (issue 10): validation figures and per-epoch code spread.

Two reports, both on Wiki's 2,173 official **training** pairs only (the 693 official queries are
never touched):

* ``validate`` (default): for each seed, 20 % of the training pairs (434) become validation queries;
  the other 1,739 are trained on and form the validation database (Wiki's training set is its
  database). Prints mAP@50 (DJSRH definition) per method, code length, seed and variant, with the
  number of distinct database codes. Variants: ``none`` (features as given, the published methods),
  ``standardize`` (``input_norm``), and ``centred-target`` / ``standardize+centred-target`` (the
  rejected candidate: S_I and S_T from features centred on the training mean; DJSRH and JDSH only,
  computed here by overriding the method's ``modality_similarities``).
* ``spread``: one run on all 2,173 training pairs, printing at chosen epochs the distinct training
  codes, the mean |bit mean| (0 balanced, 1 constant bits), the image network's output magnitude
  and its spread over items, and the target's off-diagonal mean/std (DJSRH/JDSH).

    python benchmarks/wiki_input_norm.py validate --methods djsrh,udcmh --bits 16,64 --seeds 0,1 --epochs 40
    python benchmarks/wiki_input_norm.py spread --methods djsrh --bits 16 --seeds 0 --epochs 40 --variants none,standardize

One single-thread training at a time (DJSRH 40 epochs: about 25 s on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

VARIANTS = ("none", "standardize", "centred-target", "standardize+centred-target")


def distinct(codes: np.ndarray) -> int:
    """Distinct codes, as every run's metrics.json counts them (cmhash.experiments.evaluation.code_health)."""
    return _health(codes)["distinct"]


def balance(codes: np.ndarray) -> float:
    """Mean over bits of |mean of the bit| (0 balanced, 1 constant), as code_health computes it."""
    return _health(codes)["bit_balance"]


def _health(codes: np.ndarray) -> dict:
    from cmhash.experiments.evaluation import code_health

    return code_health({"codes": codes})[0]["codes"]


def make_method(name: str, bits: int, seed: int, epochs: int | None, variant: str, train):
    import torch

    from cmhash.experiments.settings import resolve_settings
    from cmhash.methods import create_method
    from cmhash.methods.similarity import cosine_similarity_matrix

    norm = "standardize" if variant.startswith("standardize") else "none"
    over = {"input_norm": norm}
    if epochs:
        over["epochs"] = int(epochs)
    hp, _, _ = resolve_settings(name, "wiki", overrides=over)
    m = create_method(name, bits, seed=seed, **hp)
    if variant.endswith("centred-target"):
        mean_i = torch.from_numpy(np.asarray(train.image_features, np.float32).mean(0))
        mean_t = torch.from_numpy(np.asarray(train.text_features, np.float32).mean(0))
        rescale = bool(hp.get("rescale_similarity", True))

        def centred(batch):
            with torch.no_grad():
                return cosine_similarity_matrix(batch.image - mean_i, rescale), cosine_similarity_matrix(batch.text - mean_t, rescale)

        m.modality_similarities = centred
    return m


def validate(args, ds, split, name, bits, seed, variant) -> None:
    from cmhash.metrics import map_at_k

    tr = np.asarray(split.train)
    rng = np.random.default_rng(seed + 7919)
    pick = np.zeros(len(tr), dtype=bool)
    pick[rng.permutation(len(tr))[: len(tr) // 5]] = True
    query, train = ds.subset(tr[pick]), ds.subset(tr[~pick])
    m = make_method(name, bits, seed, args.epochs, variant, train)
    t0 = time.perf_counter()
    m.fit(train, progress=False, threads=1, tensorboard=False)
    fit_s = time.perf_counter() - t0
    qi, qt = m.encode(query.image_features, "image"), m.encode(query.text_features, "text")
    di, dt = m.encode(train.image_features, "image"), m.encode(train.text_features, "text")
    i2t = map_at_k(qi, dt, query.labels, train.labels, 50)["value"]
    t2i = map_at_k(qt, di, query.labels, train.labels, 50)["value"]
    epochs = m.hparams["epochs"]
    print(f"| {name} | {epochs} | {bits} | {seed} | {variant} | {i2t:.3f} | {t2i:.3f} | {distinct(di)} / {distinct(dt)} of {len(train)} | {fit_s:.0f} s |", flush=True)


def spread(args, ds, split, name, bits, seed, variant) -> None:
    train = ds.subset(split.train)
    m = make_method(name, bits, seed, args.epochs, variant, train)
    report = {int(e) for e in args.report_epochs.split(",")}
    targets: list[np.ndarray] = []
    hook = m.on_epoch_start

    def on_epoch_start(epoch, tr=None):
        out = hook(epoch, tr)
        if epoch in report:
            m.nets.eval()
            ci, ct = m.encode(train.image_features, "image"), m.encode(train.text_features, "text")
            h = m.hash_outputs(train.image_features, "image")
            m.nets.train()
            tgt = np.concatenate(targets) if targets else None
            targets.clear()
            line = f"| {name} | {variant} | {epoch - 1} | {distinct(ci)} / {balance(ci):.2f} | {distinct(ct)} / {balance(ct):.2f} | {np.abs(h).mean():.3f} / {h.std(axis=0).mean():.3f} |"
            line += f" {tgt.mean():.3f} / {tgt.std():.3f} |" if tgt is not None else " |"
            print(line, flush=True)
        return out

    m.on_epoch_start = on_epoch_start
    if hasattr(m, "target"):
        target = m.target

        def recorded(batch):
            t = target(batch)
            off = ~np.eye(t.shape[0], dtype=bool)
            targets.append(t.cpu().numpy()[off])
            return t

        m.target = recorded
    m.fit(train, progress=False, threads=1, tensorboard=False)


def main() -> None:
    from cmhash.experiments.run import load_run_data
    from cmhash.methods import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", nargs="?", choices=("validate", "spread"), default="validate")
    p.add_argument("--methods", default="djsrh,udcmh,jdsh")
    p.add_argument("--bits", default="16,64")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default 40; 0 = the Wiki preset's)")
    p.add_argument("--variants", default="none,standardize", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--report-epochs", default="1,2,10,40", help="spread: epochs at whose start the codes are measured")
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "wikipedia"))
    args = p.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    import torch

    torch.set_num_threads(1)
    if args.report == "validate":
        print("| method | epochs | bits | seed | variant | I→T | T→I | distinct database codes image / text | fit |\n|---|---|---|---|---|---|---|---|---|")
    else:
        print("| method | variant | after epoch | image codes: distinct / mean abs bit mean | text codes | image net output: mean abs / per-bit std over items | target off-diagonal mean / std (last epoch) |\n|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        ds, split = load_run_data("wiki", args.data_root, seed=seed, run={"split": "official"})
        for name in args.methods.split(","):
            for bits in (int(b) for b in args.bits.split(",")):
                for variant in variants:
                    if variant.endswith("centred-target") and not hasattr(METHODS.get(name), "modality_similarities"):
                        print(f"| {name} | {variant}: skipped, the method has no batch similarity target |")
                        continue
                    (validate if args.report == "validate" else spread)(args, ds, split, name, bits, seed, variant)


if __name__ == "__main__":
    main()
