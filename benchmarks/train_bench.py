"""DJSRH training speed on CPU, feature mode, at Wiki and MIRFlickr sizes; and what a step costs.

Prints, per setting: seconds per epoch and optimiser steps per second of the real training loop
(``cmhash.training.trainer.Trainer``, checkpoints off), then a per-phase profile of one step
(similarity target, forward, backward, optimiser) and the top operators from ``torch.profiler``.

Data: random tensors of the real shapes (Wiki: 2,173 pairs, 128-d SIFT BoW image features, 10-d
LDA text; MIRFlickr: 5,000 training pairs, 1,280-d EfficientNet-Lite0 features, 1,386-d binary tag
BoW with ~4.6 tags per pair), or the real files with ``--real``.

    python benchmarks/train_bench.py                      # both sizes, 1 thread, 3 epochs
    python benchmarks/train_bench.py --threads 1,2 --epochs 2 --compare
    python benchmarks/train_bench.py --real --mir-features mir_effnet_lite0.npz

``--compare`` also times the step without the two speed-ups (sparse text input, fused SGD).
The machine is shared: the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from cmhash.data.dataset import PairedDataset  # noqa: E402
from cmhash.methods import create_method  # noqa: E402
from cmhash.methods.deep import Batch  # noqa: E402
from cmhash.training.trainer import TrainConfig, Trainer, epoch_batches  # noqa: E402

PRESETS = {
    "wiki": dict(beta=0.3, lambda1=0.3, lambda2=0.3, lr_image=0.01, lr_text=0.01),
    "mirflickr": dict(beta=0.9, lambda1=0.1, lambda2=0.1, lr_image=0.001, lr_text=0.01),
}


def synthetic(name: str, seed: int = 0) -> PairedDataset:
    rng = np.random.default_rng(seed)
    if name == "wiki":
        n, di, dt = 2173, 128, 10
        img = rng.poisson(2.0, (n, di)).astype(np.float32)
        txt = rng.dirichlet(np.ones(dt), n).astype(np.float32)
    else:
        n, di, dt = 5000, 1280, 1386
        img = np.maximum(rng.normal(0.3, 0.5, (n, di)), 0).astype(np.float32)
        txt = np.zeros((n, dt), np.float32)
        for i in range(n):
            txt[i, rng.choice(dt, size=max(1, rng.poisson(4.6)), replace=False)] = 1.0
    labels = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, n)]
    return PairedDataset(name=name, ids=np.arange(n).astype(str), image_features=img, text_features=txt, labels=labels)


def real(name: str, args) -> PairedDataset:
    from cmhash.data import load_dataset
    from cmhash.data.splits import make_split
    from cmhash.features.attach import attach_features

    if name == "wiki":
        ds = load_dataset("wiki", Path(args.data) / "wikipedia")
        return ds.subset(make_split(ds, "official").train)
    ds = attach_features(load_dataset("mirflickr", Path(args.data) / "mirflickr25k"), args.mir_features)
    return ds.subset(make_split(ds, "djsrh", seed=0).train)


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def time_epochs(ds, name: str, bits: int, epochs: int, **hp) -> tuple[float, float]:
    method = create_method("djsrh", bits, **PRESETS[name], epochs=epochs, **hp)
    cfg = TrainConfig(epochs=epochs, seed=0, progress=False, tensorboard=False, device="cpu")
    hist = Trainer(method, ds, cfg, spec=method.input_spec_for(ds)).fit()
    secs = [r["seconds"] for r in hist[1:]] or [hist[0]["seconds"]]  # first epoch warms up
    sps = [r["steps_per_second"] for r in hist[1:]] or [hist[0]["steps_per_second"]]
    return float(np.median(secs)), float(np.median(sps))


def profile_step(ds, name: str, bits: int, steps: int = 60, **hp) -> dict[str, float]:
    """Mean milliseconds per phase of one optimiser step."""
    method = create_method("djsrh", bits, **PRESETS[name], **hp)
    method.setup(method.input_spec_for(ds))
    opts = list(method.make_optimizers().values())
    method.on_epoch_start(5)
    img, txt = torch.from_numpy(ds.image_features), torch.from_numpy(ds.text_features)
    batches = epoch_batches(len(ds), 32, 0, 1)
    phases = dict(batch=0.0, target=0.0, forward_loss=0.0, backward=0.0, optimiser=0.0)
    warm = 10
    for k in range(warm + steps):
        idx = batches[k % len(batches)]
        t0 = time.perf_counter()
        batch = Batch(img.index_select(0, idx), txt.index_select(0, idx), idx)
        t1 = time.perf_counter()
        target = method.target(batch)
        t2 = time.perf_counter()
        loss, _ = method.training_loss(batch)  # recomputes the target (tiny) for a faithful step
        t3 = time.perf_counter()
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        for o in opts:
            o.step()
        t5 = time.perf_counter()
        if k >= warm:
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2 - (t2 - t1), t4 - t3, t5 - t4)):
                phases[key] += dt
        del target
    return {k: 1000 * v / steps for k, v in phases.items()}


def top_ops(ds, name: str, bits: int, n: int = 8) -> str:
    from torch.profiler import ProfilerActivity, profile

    method = create_method("djsrh", bits, **PRESETS[name])
    method.setup(method.input_spec_for(ds))
    opts = list(method.make_optimizers().values())
    method.on_epoch_start(5)
    img, txt = torch.from_numpy(ds.image_features), torch.from_numpy(ds.text_features)
    batches = epoch_batches(len(ds), 32, 0, 1)

    def step(idx):
        loss, _ = method.training_loss(Batch(img.index_select(0, idx), txt.index_select(0, idx), idx))
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()

    for k in range(5):
        step(batches[k])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for k in range(30):
            step(batches[k])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="wiki,mirflickr")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--compare", action="store_true", help="also time without sparse text input and fused SGD")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--real", action="store_true", help="use the real files under --data")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--mir-features", help=".npz of MIRFlickr image features (with --real)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {load()}")
    for name in args.sizes.split(","):
        ds = real(name, args) if args.real else synthetic(name)
        print(f"\n== {name}: {len(ds)} training pairs, image {ds.image_features.shape[1]}-d, text {ds.text_features.shape[1]}-d, "
              f"{len(ds) // 32} steps/epoch, {args.bits} bits")
        settings = [("default (sparse text input, fused SGD)", {})]
        if args.compare:
            settings += [("dense text input", {"sparse_text": False}), ("unfused SGD", {"fused_optimizer": False}),
                         ("neither", {"sparse_text": False, "fused_optimizer": False})]
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for label, hp in settings:
                spe, sps = time_epochs(ds, name, args.bits, args.epochs, **hp)
                print(f"  threads={threads}  {label:40s} {spe:6.2f} s/epoch  {sps:6.1f} steps/s   ({load()})")
            if not args.no_profile:
                for label, hp in settings:
                    ph = profile_step(ds, name, args.bits, **hp)
                    tot = sum(ph.values())
                    parts = "  ".join(f"{k} {v:.2f}" for k, v in ph.items())
                    print(f"  threads={threads}  step profile, {label}: {tot:.2f} ms = {parts} (ms)")
        if not args.no_profile:
            torch.set_num_threads(1)
            print("\n  top operators (1 thread, 30 steps):")
            print("  " + top_ops(ds, name, args.bits).replace("\n", "\n  "))


if __name__ == "__main__":
    main()
