"""`cmhash data`: list the data sources, inspect a dataset, make and save a split, build a vocabulary.

Heavy imports (numpy, the sources, h5py) happen inside the command functions so that
``cmhash --help`` stays instant.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cmhash.validation import parse_kv, positive_int_arg, seed_arg
from cmhash.cli._common import add_parser, format_table, print_json

DATA_EPILOG = """\
examples:
  cmhash data sources
  cmhash data info wiki --root ../shared/data/wikipedia
  cmhash data info mirflickr --root ../shared/data/mirflickr25k --json
  cmhash data split mirflickr --root ../shared/data/mirflickr25k --protocol djsrh --seed 0 --out runs/mir_split.json
  cmhash data vocab mirflickr --root ../shared/data/mirflickr25k --min-count 15 --out runs/mir_vocab.json
"""

INFO_EPILOG = """\
examples:
  cmhash data info wiki --root ../shared/data/wikipedia
  cmhash data info mirflickr --root ../shared/data/mirflickr25k            # 7,696 kept, 12,319 dropped (missing image)
  cmhash data info mirflickr --root DATA/mirflickr --strict                # fail on the first missing image instead
  cmhash data info mirflickr --root DATA/Cleared-Set -o images_file=IAll/mirflickr25k-iall.mat
  cmhash data info nuswide --root DATA/NUS-WIDE-TC10 --text-features tfidf
  cmhash data info flickr8k --root ../shared/data/flickr8k --first-caption-only
  cmhash data info fashion --root ../shared/data/fashion-small --label-column masterCategory
  cmhash data info folder --root my_photos --manifest pairs.csv --text-column caption --label-column style,tags
  cmhash data info mirflickr --root ../shared/data/mirflickr25k --json > mirflickr_info.json

Dropped pairs are counted per reason (missing_image, unreadable_image, no_labels, no_text,
malformed_row, duplicate_id) with the first examples. Loading never writes to the data folder.
"""

SPLIT_EPILOG = """\
protocols:
  djsrh          per-label greedy draw of DJSRH/JDSH (MIRFlickr: 160/400 queries/train for the first
                 label, 80/200 for the others), topped up to --num-query / --num-train; database =
                 everything but the queries (it contains the training pairs, as in DJSRH)
  djsrh-nuswide  the same with 200/500 for every label (NUS-WIDE)
  official       the split shipped with the data (wiki: 2,173 train=database + 693 queries;
                 flickr8k: train = official train, query = database = official test)
  random         --num-query random queries (whole groups for Flickr8k), database = the rest,
                 --num-train training pairs drawn from the database

examples:
  cmhash data split mirflickr --root ../shared/data/mirflickr25k --protocol djsrh --seed 0 --out mir_s0.json
  cmhash data split wiki --root ../shared/data/wikipedia --protocol official --out wiki.json
  cmhash data split flickr8k --root ../shared/data/flickr8k --protocol official --out f8k.json
  cmhash data split fashion --root ../shared/data/fashion-small --protocol random --num-query 1000 --num-train 5000 --seed 1 --out fashion.json
  cmhash data split nuswide --root DATA/NUS-WIDE-TC10 --protocol djsrh-nuswide --seed 0 --out nus.json
  cmhash data split mirflickr --root DATA --protocol djsrh --param first_query=100 --out small.json

The split file records the protocol, its parameters, the seed and a fingerprint of the pair ids;
loading it on a different dataset is an error. The same command with the same seed gives the
same split.
"""

VOCAB_EPILOG = """\
examples:
  cmhash data vocab mirflickr --root ../shared/data/mirflickr25k --min-count 15 --out mir_vocab.json   # 1,386 tags
  cmhash data vocab flickr8k --root ../shared/data/flickr8k --min-count 5 --out f8k_vocab.json
  cmhash data info folder --root my_photos --text-features bow --vocabulary mir_vocab.json

The vocabulary keeps tokens present in at least --min-count of the listed texts (tags split on
commas; sentences split into lower-case words), sorted, with their document frequencies (for
TF-IDF). Pass it back with --vocabulary to featurise another dataset in the same space.
"""

SOURCES_EPILOG = """\
examples:
  cmhash data sources
  cmhash data sources --json
Run `cmhash data info NAME --help` for the options; docs/data.md describes each source's files.
"""

# CLI flag -> source option; passed only when given, so a source rejects options it does not take.
SOURCE_FLAGS = [
    ("--images-dir", "images_dir", "folder of the image files (relative to --root or absolute)"),
    ("--manifest", "manifest", "folder: the CSV/JSONL file listing the pairs"),
    ("--captions", "captions", "flickr8k: caption file (captions.txt CSV or Flickr8k.token.txt)"),
    ("--label-column", "label_column", "fashion: label column (default subCategory); folder: label columns a,b"),
    ("--text-column", "text_column", "fashion/folder: column holding the text"),
    ("--image-column", "image_column", "folder: column holding the image path (default image)"),
    ("--id-column", "id_column", "fashion/folder: column holding unique pair ids"),
]


def _add_source_args(p: argparse.ArgumentParser, with_strict: bool = True) -> None:
    p.add_argument("name", metavar="NAME", help="source name (see `cmhash data sources`)")
    p.add_argument("--root", required=True, default=argparse.SUPPRESS, metavar="PATH", help="folder that holds the source's files")
    if with_strict:
        p.add_argument("--strict", action="store_true", help="fail on the first missing/unreadable image or malformed row instead of dropping it")
    g = p.add_argument_group("source options (passed to the source; each source takes its own, see docs/data.md)")
    for flag, dest, text in SOURCE_FLAGS:
        extra = ["--label-columns"] if flag == "--label-column" else []
        g.add_argument(flag, *extra, dest=f"src_{dest}", default=argparse.SUPPRESS, metavar="VALUE", help=text)
    g.add_argument("--first-caption-only", dest="src_first_caption_only", action="store_const", const=True, default=argparse.SUPPRESS, help="flickr8k: keep one caption per image")
    g.add_argument("--keep-unlabeled", dest="src_keep_unlabeled", action="store_const", const=True, default=argparse.SUPPRESS, help="keep pairs without any label (default: drop and report them)")
    g.add_argument("--check-images", dest="src_check_images", choices=("open", "exists", "none"), default=argparse.SUPPRESS, help="how image files are checked (default open: parse each header)")
    g.add_argument("--text-features", dest="src_text_features", choices=("none", "bow", "count", "tfidf"), default=argparse.SUPPRESS, help="model-free text features (mirflickr default bow)")
    g.add_argument("--min-count", dest="src_min_count", type=positive_int_arg, default=argparse.SUPPRESS, metavar="N", help="vocabulary: keep tokens in at least N texts (mirflickr default 15)")
    g.add_argument("--vocabulary", dest="src_vocabulary", default=argparse.SUPPRESS, metavar="FILE", help="a saved vocabulary (cmhash data vocab) to featurise texts with")
    g.add_argument("-o", "--option", dest="src_extra", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE", help="any other source option (repeatable), e.g. -o images_file=IAll/x.mat -o format=mat; `cmhash data sources` lists them")


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The source options given on the command line (flags and -o KEY=VALUE)."""
    from cmhash.data import source_options as known_options
    from cmhash.errors import DataError

    opts: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("src_") and key != "src_extra" and value is not None:
            opts[key[4:]] = value
    opts.update(parse_kv(getattr(args, "src_extra", []), "-o", "images_file=IAll/mirflickr25k-iall.mat"))
    if "label_column" in opts:
        taken = known_options(args.name)
        if "label_column" not in taken and "label_columns" in taken:
            opts["label_columns"] = opts.pop("label_column")
    return opts


def _load(args: argparse.Namespace, **override):
    from cmhash.data import load_dataset

    opts = source_options(args)
    opts.update(override)
    t0 = time.perf_counter()
    ds = load_dataset(args.name, args.root, strict=getattr(args, "strict", False), **opts)
    return ds, time.perf_counter() - t0, opts


# ----------------------------------------------------------------------------- sources
def cmd_sources(args: argparse.Namespace) -> int:
    from cmhash.data import describe_sources, source_options as known_options

    rows = [(name, desc, ", ".join(known_options(name))) for name, desc in describe_sources().items()]
    if args.json:
        print_json({name: {"description": d, "options": o.split(", ") if o else []} for name, d, o in rows})
        return 0
    for name, desc, opts in rows:
        print(f"{name:10s} {desc}")
        if opts:
            print(f"{'':10s}   options: {opts}")
    return 0


# ----------------------------------------------------------------------------- info
def _n(x: int) -> str:
    return f"{x:,}"


def format_info(summary: dict[str, Any], elapsed: float, max_labels: int = 30) -> str:
    """Human-readable `cmhash data info` report from ``PairedDataset.summary()``."""
    rep = summary.get("load_report") or {}
    lines = []
    listed = rep.get("listed", summary["pairs"])
    lines.append(f"{summary['name']}: {_n(summary['pairs'])} pairs kept of {_n(listed)} listed ({_n(rep.get('dropped', 0))} dropped)")
    img, txt = summary["image_side"], summary["text_side"]
    img_parts = []
    if img["files"] is not None:
        img_parts.append(f"{_n(img['files'])} image files" + (f" ({summary['meta']['image_dir']})" if summary.get("meta", {}).get("image_dir") else ""))
    if img["features"] is not None:
        img_parts.append(f"features {img['features'][1]}-d" + (f" ({summary['meta']['image_features']})" if summary.get("meta", {}).get("image_features") else ""))
    lines.append(f"  image side : {'; '.join(img_parts)}")
    txt_parts = [txt["text_kind"] or "text"]
    if txt["texts"] is not None:
        txt_parts.append(f"{_n(txt['texts'])} raw texts")
    if txt["features"] is not None:
        recipe = summary.get("meta", {}).get("text_features")
        txt_parts.append(f"features {txt['features'][1]}-d" + (f" ({recipe})" if recipe else ""))
    lines.append(f"  text side  : {', '.join(txt_parts)}")
    if "groups" in summary:
        lines.append(f"  groups     : {_n(summary['groups'])} distinct images (pairs of one image are relevant to each other)")
    if rep.get("dropped"):
        lines.append("  dropped    :")
        for reason, count in sorted(rep["dropped_by_reason"].items(), key=lambda kv: -kv[1]):
            ex = (rep.get("dropped_examples") or {}).get(reason) or []
            eg = ""
            if ex:
                e = ex[0]
                eg = f"   e.g. {e['id']}" + (f": {e['detail']}" if e.get("detail") else "")
            lines.append(f"    {reason:16s} {_n(count):>8s}{eg}")
    for note in rep.get("notes", []):
        lines.append(f"  note       : {note}")
    if summary.get("official_splits"):
        lines.append("  official   : " + ", ".join(f"{k} {_n(v)}" for k, v in summary["official_splits"].items()))
    else:
        lines.append("  official   : none (use --protocol djsrh or random with `cmhash data split`)")
    lab = summary.get("labels")
    if lab is None:
        lines.append("  labels     : none (pair identity only)")
    else:
        lpp = lab["labels_per_pair"]
        kind = "single-label" if lpp["max"] <= 1 else "multi-label"
        lines.append(
            f"  labels     : {lab['num_labels']} ({kind}; {lpp['mean']:.2f} per pair, min {lpp['min']}, max {lpp['max']}; "
            f"{_n(lab['pairs_without_label'])} pairs without a label)"
        )
        if lab.get("labels_without_pairs"):
            lines.append(f"               {lab['labels_without_pairs']} label(s) have no pair in this copy (the label set comes from the full listing)")
        per = list(lab["pairs_per_label"].items())
        shown = per if len(per) <= max_labels else sorted(per, key=lambda kv: -kv[1])[:max_labels]
        table = format_table(["label", "pairs", "share"], [(k, v, v / max(summary["pairs"], 1)) for k, v in shown])
        lines.extend("    " + l for l in table.splitlines())
        if len(per) > len(shown):
            lines.append(f"    ... {len(per) - len(shown)} more labels (largest shown; --json lists all)")
    lines.append(f"loaded in {elapsed:.1f} s")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    ds, elapsed, opts = _load(args)
    summary = ds.summary()
    summary["meta"] = {k: v for k, v in ds.meta.items() if k != "vocabulary"}
    summary["options"] = opts
    summary["load_seconds"] = round(elapsed, 3)
    if args.json:
        print_json(summary)
    else:
        print(format_info(summary, elapsed))
    return 0


# ----------------------------------------------------------------------------- split
def _parse_params(items: list[str]) -> dict[str, Any]:
    from cmhash.validation import int_params

    return int_params(parse_kv(items, "--param", "first_query=160"), "--param")


def cmd_split(args: argparse.Namespace) -> int:
    import numpy as np

    from cmhash.data.splits import make_split

    from cmhash.io import write_lock
    from cmhash.validation import output_file

    output_file(args.out, "--out")
    params = _parse_params(getattr(args, "param", []))
    ds, elapsed, opts = _load(args)
    for key in ("num_query", "num_train"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    split = make_split(ds, args.protocol, seed=args.seed, **params)
    split.dataset["root"] = str(args.root)
    split.dataset["source_options"] = opts
    if ds.report is not None:
        split.dataset["dropped"] = len(ds.report.dropped)
    with write_lock(args.out, "split file", is_dir=False):
        path = split.save(args.out)
    sizes = split.sizes()
    if args.json:
        print_json({"out": str(path), **split.describe()})
        return 0
    print(f"{ds.name}: {_n(len(ds))} pairs (loaded in {elapsed:.1f} s); protocol {split.protocol}, seed {split.seed}")
    for part in ("query", "database", "train"):
        idx = getattr(split, part)
        extra = ""
        if ds.groups is not None:
            extra = f" ({_n(len(np.unique(ds.groups[idx])))} images)"
        print(f"  {part:9s}: {_n(sizes[part])}{extra}")
    overlap = len(np.intersect1d(split.query, split.train))
    print(f"  query/train overlap: {overlap}; train within database: {bool(np.isin(split.train, split.database).all())}")
    print(f"saved {path}")
    return 0


# ----------------------------------------------------------------------------- vocab
def cmd_vocab(args: argparse.Namespace) -> int:
    from cmhash.data.text import Vocabulary
    from cmhash.errors import DataError

    from cmhash.data import source_options as known_options

    from cmhash.validation import output_file

    output_file(args.out, "--out")
    if "text_features" not in known_options(args.name):
        raise DataError(f"{args.name}: this source has no raw texts to build a vocabulary from (its text side is a ready-made feature matrix)")
    ds, _elapsed, _ = _load(args, text_features="bow")
    if "vocabulary" not in ds.meta:
        raise DataError(f"{args.name}: this source has no raw texts to build a vocabulary from (its text side is a ready-made feature matrix)")
    vocab = Vocabulary.from_dict(ds.meta["vocabulary"])
    path = vocab.save(args.out)
    print(
        f"{ds.name}: {_n(len(vocab))} {'tags' if vocab.kind == 'tags' else 'words'} present in at least {vocab.min_count} of {_n(vocab.num_docs)} listed texts "
        f"(fingerprint {vocab.fingerprint()}); saved {path}"
    )
    return 0


# ----------------------------------------------------------------------------- parser
def register(sub) -> None:
    p = add_parser(
        sub,
        "data",
        help="list data sources, inspect a dataset, make a split, build a vocabulary",
        description="Work with datasets: which sources exist, what a dataset holds and what was dropped, seeded splits saved as JSON, tag/word vocabularies.",
        epilog=DATA_EPILOG,
    )
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])
    dsub = p.add_subparsers(dest="data_command", metavar="<data command>")

    s = add_parser(dsub, "sources", help="list the data sources with one-line descriptions and their options", description="List every registered data source.", epilog=SOURCES_EPILOG)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_sources)

    i = add_parser(
        dsub,
        "info",
        help="load a dataset and report pairs, dropped pairs and why, label statistics",
        description="Load a dataset from its files and report what it holds: pairs kept and dropped (with reasons and examples), the image and text sides, official splits and label statistics.",
        epilog=INFO_EPILOG,
    )
    _add_source_args(i)
    i.add_argument("--json", action="store_true", help="print the full report as JSON")
    i.set_defaults(func=cmd_info)

    sp = add_parser(
        dsub,
        "split",
        help="compute a seeded query/database/train split and save it as JSON",
        description="Compute a split of a dataset with a named protocol and save it (protocol, parameters, seed and dataset fingerprint included) so every run can use exactly the same pairs.",
        epilog=SPLIT_EPILOG,
    )
    _add_source_args(sp)
    sp.add_argument("--protocol", required=True, choices=("djsrh", "djsrh-nuswide", "official", "random"), help="split protocol (see below)")
    sp.add_argument("--seed", type=seed_arg, default=0, help="random seed (ignored by official)")
    sp.add_argument("--num-query", type=positive_int_arg, default=argparse.SUPPRESS, metavar="N", help="number of queries (djsrh/random; default 2000; groups for grouped data)")
    sp.add_argument("--num-train", type=positive_int_arg, default=argparse.SUPPRESS, metavar="N", help="number of training pairs (djsrh/random; default 5000)")
    sp.add_argument("--param", action="append", default=argparse.SUPPRESS, metavar="KEY=N", help="other protocol parameters, e.g. first_query=160 per_label_train=200")
    sp.add_argument("--out", required=True, metavar="FILE", help="where to write the split JSON (written atomically)")
    sp.add_argument("--json", action="store_true", help="print the split description as JSON")
    sp.set_defaults(func=cmd_split)

    v = add_parser(
        dsub,
        "vocab",
        help="build a tag/word vocabulary (min-count) from a source's raw texts and save it",
        description="Build the bag-of-words vocabulary of a source's raw texts (tags or words present in at least --min-count texts) and save it as JSON, to reuse with --vocabulary.",
        epilog=VOCAB_EPILOG,
    )
    _add_source_args(v)
    v.add_argument("--out", required=True, metavar="FILE", help="where to write the vocabulary JSON")
    v.set_defaults(func=cmd_vocab)
