"""`cmhash features`: extract image/text features into a resumable cache, ready-made sets, info."""

from __future__ import annotations

import argparse
import sys

from cmhash.validation import kv_arg, nonneg_int_arg, positive_int_arg
from cmhash.cli._common import HelpFormatter, add_parser, format_table, print_json

EXTRACT_EPILOG = """\
examples:
  cmhash features extract --dataset mirflickr --data-root ../shared/data/mirflickr25k \\
      --image-encoder efficientnet-lite0 --text-encoder bow --out features/mir
  cmhash features extract --dataset flickr8k --data-root DATA --image-encoder none \\
      --text-encoder minilm --out features/f8k-text
  cmhash features extract --dataset wiki --data-root DATA --image-encoder vgg16 \\
      --weights ~/models/vgg16-397923af.pth --text-encoder none --out features/wiki-vgg
  cmhash features extract ... --image-encoder onnx --image-option path=model.onnx \\
      --image-option normalize=pm1 --image-option image_size=256
  cmhash features extract ... --text-encoder lda --text-option n_topics=10 --fit-split train

Interrupted? Run the same command again: finished chunks are kept and the rest is computed.
Run it again after the data or an encoder changed: the stale part is rebuilt, the rest reused.
"""

PREPARE_EPILOG = """\
examples:
  cmhash features prepare mirflickr --data-root ../shared/data/mirflickr25k
  cmhash features prepare flickr8k --data-root ../shared/data/flickr8k
  cmhash features prepare fashion --data-root ../shared/data/fashion-small --cache-root /big/disk/cmhash

sets:
  mirflickr  EfficientNet-Lite0 (1280-d) + standard 1,386-d tag BoW
  mirflickr-sentences  EfficientNet-Lite0 + MiniLM over each tag line (free-sentence search)
  flickr8k   EfficientNet-Lite0 + all-MiniLM-L6-v2 caption embeddings (384-d)
  fashion    EfficientNet-Lite0 + MiniLM title embeddings (text) and title BoW (text.bow)

The cache goes to $CMHASH_CACHE/features/<set> (default ~/.cache/cmhash/features/<set>).
"""


_kv = kv_arg  # the one KEY=VALUE rule (cmhash.validation.parse_value)


def _speed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed (these change throughput, never the features)")
    g.add_argument("--batch-size", type=positive_int_arg, default=32, help="images per model run")
    g.add_argument("--workers", type=nonneg_int_arg, default=1, help="threads that decode and resize images while the model runs (0 = in the main thread)")
    g.add_argument("--threads", type=positive_int_arg, default=None, help="intra-op threads per model run (None = $CMHASH_THREADS or 1, the cheapest measured on 2 cores)")
    g.add_argument("--streams", type=positive_int_arg, default=None, help="parts of each image batch run at once by ONNX models (None = $CMHASH_STREAMS or 2 on 2+ cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser(
        "features",
        help="extract image/text features into a resumable cache; ready-made sets",
        description="Turn images and texts into feature vectors with pretrained or fitted encoders, cached on disk.",
        formatter_class=HelpFormatter,
    )
    fsub = p.add_subparsers(dest="features_command", metavar="<subcommand>")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    e = add_parser(fsub, "extract", "encode a dataset's images and texts into a feature cache",
                   "Encode the images and texts of a dataset into DIR (manifest.json + memory-mapped .npy files). "
                   "Batched, with a progress bar, resumable, and reused only when the data and encoders match.",
                   EXTRACT_EPILOG)
    e.add_argument("--dataset", required=True, help="data source name (mirflickr, wiki, flickr8k, fashion, folder, nuswide...)")
    e.add_argument("--data-root", required=True, help="the dataset's folder")
    e.add_argument("--source-option", action="append", type=_kv, default=[], metavar="KEY=VALUE", help="option for the data source (repeatable)")
    e.add_argument("--image-encoder", default="efficientnet-lite0", help="image encoder name, or 'none' (see `cmhash features encoders`)")
    e.add_argument("--image-option", action="append", type=_kv, default=[], metavar="KEY=VALUE", help="image encoder option (repeatable)")
    e.add_argument("--weights", help="weights file for the image encoder (AlexNet/VGG: torchvision's .pth)")
    e.add_argument("--text-encoder", default="bow", help="text encoder name (bow, tfidf, count, lda, minilm, glove) or 'none'")
    e.add_argument("--text-option", action="append", type=_kv, default=[], metavar="KEY=VALUE", help="text encoder option (repeatable)")
    e.add_argument("--extra-text", action="append", default=[], metavar="NAME=ENCODER", help="an extra text feature set stored as text_features.NAME.npy (repeatable)")
    e.add_argument("--fit-split", help="fit text encoders (vocabularies, LDA) on this official split only (e.g. train); default: all texts")
    e.add_argument("--out", required=True, help="the cache folder to create or resume")
    e.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping and reporting it")
    e.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    e.add_argument("--checksum", choices=["stat", "content", "none"], default="stat",
                   help="how image inputs are fingerprinted: names+sizes+mtimes, file contents, or names only")
    e.add_argument("--chunk-size", type=positive_int_arg, default=None, help="rows per resumable chunk (default 16 x batch size)")
    _speed_args(e)
    e.set_defaults(func=cmd_extract)

    pr = add_parser(fsub, "prepare", "build a ready-made feature set (one command each)",
                    "Build or reuse a ready-made feature set in $CMHASH_CACHE/features/<set>.", PREPARE_EPILOG)
    pr.add_argument("set", choices=["mirflickr", "mirflickr-sentences", "flickr8k", "fashion"], help="which ready-made set")
    pr.add_argument("--data-root", required=True, help="the dataset's folder")
    pr.add_argument("--cache-root", help="put the cache in CACHE_ROOT/features/<set> instead of $CMHASH_CACHE/features/<set>")
    pr.add_argument("--out", help="exact cache folder (overrides --cache-root)")
    pr.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    pr.add_argument("--force", action="store_true", help="rebuild even if the cache matches")
    _speed_args(pr)
    pr.set_defaults(func=cmd_prepare)

    i = add_parser(fsub, "info", "show what a feature cache holds and how it was made",
                   "Print a feature cache's entries: encoder, version, dimension, preprocessing, weights, input checksum, "
                   "progress, failures and timing.",
                   "examples:\n  cmhash features info ~/.cache/cmhash/features/mirflickr\n  cmhash features info features/mir --json\n")
    i.add_argument("dir", help="the cache folder")
    i.add_argument("--json", action="store_true", help="print the full summary as JSON")
    i.set_defaults(func=cmd_info)

    ls = add_parser(fsub, "encoders", "list the image and text encoders",
                    "List the registered encoders with a one-line description each.",
                    "examples:\n  cmhash features encoders\n")
    ls.set_defaults(func=cmd_encoders)


def _setup_speed(args) -> None:
    from cmhash.features.runtime import set_default_threads

    set_default_threads(args.threads, args.streams)


def cmd_extract(args) -> int:
    from cmhash.data import load_dataset
    from cmhash.errors import DataError
    from cmhash.features import create_image_encoder, create_text_encoder, extract_features

    _setup_speed(args)
    dataset = load_dataset(args.dataset, args.data_root, strict=args.strict, **dict(args.source_option))
    img = None
    if args.image_encoder != "none":
        opts = dict(args.image_option)
        if args.weights:
            opts["weights"] = args.weights
        img = create_image_encoder(args.image_encoder, **opts)
    elif args.weights:
        raise DataError("--weights is for an image encoder, but --image-encoder is none")
    txt = None if args.text_encoder == "none" else create_text_encoder(args.text_encoder, **dict(args.text_option))
    extra = {}
    for item in args.extra_text:
        if "=" not in item:
            raise DataError(f"--extra-text expects NAME=ENCODER, got '{item}'")
        nm, enc = item.split("=", 1)
        extra[nm.strip()] = create_text_encoder(enc.strip())
    fit = None
    if args.fit_split:
        if args.fit_split not in dataset.official_splits:
            known = ", ".join(dataset.official_splits) or "none"
            raise DataError(f"{dataset.name}: no official split '{args.fit_split}' (it has: {known})")
        fit = dataset.official_splits[args.fit_split]
    cache = extract_features(
        dataset, img, txt, args.out, extra_text_encoders=extra or None, batch_size=args.batch_size, workers=args.workers,
        chunk_size=args.chunk_size, strict=args.strict, checksum=args.checksum, fit_indices=fit, force=args.force,
        progress=not args.no_progress,
    )
    _print_summary(cache)
    return 0


def cmd_prepare(args) -> int:
    import os
    from pathlib import Path

    from cmhash.features.prepared import features_cache_dir, prepare

    _setup_speed(args)
    out = args.out
    if not out and args.cache_root:
        out = Path(args.cache_root).expanduser() / "features" / args.set
    out = out or features_cache_dir(args.set)
    cache, dataset = prepare(args.set, args.data_root, out_dir=out, force=args.force, strict=args.strict,
                             batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress)
    if dataset.report is not None and dataset.report.dropped:
        print(f"dataset: {dataset.report.n_listed} pairs listed, {dataset.report.n_kept} kept; dropped: {dataset.report.dropped_by_reason()}")
    _print_summary(cache)
    print(f"\nuse it: from cmhash.features.prepared import load_prepared; "
          f"ds = load_prepared({args.set!r}, {os.fspath(args.data_root)!r}{', out_dir=' + repr(str(out)) if args.out or args.cache_root else ''})")
    return 0


def _print_summary(cache) -> None:
    info = cache.info()
    rows = []
    for name, e in info["entries"].items():
        t = e.get("timing") or {}
        rows.append([name, e["encoder"], e["dim"], e["rows"], e["status"], e["failures"], t.get("rows_per_s", "")])
    print(f"feature cache {info['path']} ({info['dataset']['name']}, {info['dataset']['n']} pairs)")
    print(format_table(["entry", "encoder", "dim", "rows", "status", "failures", "items/s (last build)"], rows))


def cmd_info(args) -> int:
    from cmhash.features import FeatureCache

    cache = FeatureCache.load(args.dir)
    info = cache.info()
    if args.json:
        print_json(info)
        return 0
    _print_summary(cache)
    for name, e in info["entries"].items():
        print(f"\n[{name}] {e['file']}")
        print(f"  encoder: {e['encoder']}  options: {e['options']}")
        if e.get("preprocess"):
            p = e["preprocess"]
            print(f"  preprocess: {p['resize']} to {p['size']} px ({p['interpolation']}), normalize {p['normalize']}")
        if e.get("weights"):
            print(f"  weights: {e['weights'].get('file')} sha256 {str(e['weights'].get('sha256'))[:16]}...")
        if e.get("input"):
            print(f"  input: {e['input'].get('count')} items, checksum ({e['input'].get('checksum')}) {str(e['input'].get('sha256'))[:16]}...")
        print(f"  chunks done: {e['chunks_done']}; failures: {e['failures']} {e['failures_by_reason'] or ''}")
        for f in cache.failures(name)[:5]:
            print(f"    row {f['row']}: {f.get('reason')} {f.get('ref', '')}", file=sys.stdout)
    return 0


def cmd_encoders(args) -> int:
    from cmhash.features import IMAGE_ENCODERS, TEXT_ENCODERS

    for title, reg in (("image encoders", IMAGE_ENCODERS), ("text encoders", TEXT_ENCODERS)):
        print(f"{title}:")
        for name in reg.names():
            doc = (reg.get(name).__doc__ or "").strip().splitlines()
            print(f"  {name:20s} {doc[0] if doc else ''}")
    return 0
