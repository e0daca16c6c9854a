"""`cmhash index`: build a searchable index of a collection's image and text codes, and inspect it."""

from __future__ import annotations

import argparse
import json
import time

from cmhash.validation import positive_int_arg
from cmhash.cli._common import add_parser, format_table, print_json

BUILD_EPILOG = """\
examples:
  # from the codes file written by `cmhash encode` (item text/image shown when --dataset is given)
  cmhash index build --codes codes.npz --dataset mirflickr --data-root DATA/mirflickr25k --out mir.index
  # straight from a trained model: encodes the database of its training split, then indexes it
  cmhash index build --checkpoint runs/mir64 --out mir.index
  # every pair of a collection, or another copy of the data
  cmhash index build --checkpoint runs/mir64 --split all --dataset mirflickr --data-root DATA/mirflickr25k --out mir-all.index
  # approximate faiss index, or a Milvus collection (one per modality: NAME_image, NAME_text)
  cmhash index build --codes codes.npz --backend faiss --faiss-kind hnsw --out mir-hnsw.index
  cmhash index build --codes codes.npz --backend milvus --milvus-uri http://milvus:19530 \\
      --milvus-collection mir64 --out mir-milvus.index

The index file is written atomically; for Milvus it records where the collection lives.
"""

INFO_EPILOG = """\
examples:
  cmhash index info mir.index
  cmhash index info mir.index --json
"""


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """Backend choice and options shared by `index build` (and the benchmark)."""
    g = p.add_argument_group("backend")
    g.add_argument("--backend", default="faiss", choices=["faiss", "numpy", "milvus"], help="where the codes are searched")
    g.add_argument("--faiss-kind", default="flat", choices=["flat", "ivf", "hnsw"], help="faiss: flat is exact; ivf/hnsw trade recall for speed")
    g.add_argument("--nlist", type=positive_int_arg, default=None, help="ivf lists; None: 4*sqrt(n) for faiss, 1024 for Milvus")
    g.add_argument("--nprobe", type=positive_int_arg, default=16, help="ivf lists searched per query")
    g.add_argument("--hnsw-m", type=positive_int_arg, default=16, help="hnsw: neighbours per node")
    g.add_argument("--ef-search", type=positive_int_arg, default=128, help="hnsw: search breadth (raised to k when smaller)")
    g.add_argument("--threads", type=positive_int_arg, default=None, help="faiss: OpenMP threads; None: all cores")
    g.add_argument("--milvus-uri", default="http://127.0.0.1:19530", help="milvus: server or cluster URI (token: CMHASH_MILVUS_TOKEN)")
    g.add_argument("--milvus-collection", default="cmhash", help="milvus: collection name prefix (NAME_image, NAME_text)")
    g.add_argument("--milvus-index", default="BIN_FLAT", choices=["BIN_FLAT", "BIN_IVF_FLAT"], help="milvus: exact or IVF")
    g.add_argument("--milvus-drop", action="store_true", help="milvus: replace existing collections of the same name")


def backend_options(args) -> dict:
    if args.backend == "faiss":
        opts = {"kind": args.faiss_kind, "threads": args.threads}
        if args.faiss_kind == "ivf":
            opts.update(nlist=args.nlist, nprobe=args.nprobe)
        if args.faiss_kind == "hnsw":
            opts.update(M=args.hnsw_m, ef_search=args.ef_search)
        return opts
    if args.backend == "milvus":
        opts = {
            "uri": args.milvus_uri,
            "collection": args.milvus_collection,
            "index_type": args.milvus_index,
            "nprobe": args.nprobe,
            "if_exists": "drop" if args.milvus_drop else "error",
        }
        if args.nlist:
            opts["nlist"] = args.nlist
        return opts
    return {}


def register(sub) -> None:
    p = add_parser(sub, "index", help="build and inspect search indexes of binary codes", description=__doc__)
    isub = p.add_subparsers(dest="index_command", metavar="<subcommand>")

    b = add_parser(
        isub,
        "build",
        help="index a collection's image and text codes",
        description="Index the image and the text codes of a collection, so that a text query finds images and an image query finds texts.",
        epilog=BUILD_EPILOG,
    )
    src = b.add_argument_group("what to index (one of)")
    src.add_argument("--codes", help="codes file from `cmhash encode`")
    src.add_argument("--checkpoint", help="trained model (checkpoint.pt or its run folder): encodes the collection with it")
    data = b.add_argument_group(
        "dataset (with --checkpoint: the collection to encode, by default the one the model was trained on; "
        "with --codes: adds text/image/labels to results)"
    )
    data.add_argument("--dataset", help="data source name, e.g. mirflickr (default with --checkpoint: the training dataset)")
    data.add_argument("--data-root", help="folder of the dataset (default with --checkpoint: the training run's)")
    data.add_argument("--features", help="with --checkpoint: precomputed image features of the collection (default: the training run's)")
    data.add_argument("-o", "--option", "--dataset-option", dest="dataset_option", action="append", default=[], metavar="KEY=VALUE",
                      help="data source option (repeatable), as in `cmhash data`, e.g. -o text_features=none")
    b.add_argument("--split", default="db", choices=["db", "query", "all"], help="which items to index (the database by default)")
    add_backend_options(b)
    b.add_argument("--out", required=True, help="index file to write (an existing one is kept unless --overwrite)")
    b.add_argument("--overwrite", action="store_true", help="replace the index file already at --out")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.set_defaults(func=run_build)

    i = add_parser(isub, "info", help="describe an index file", description="Print what an index holds.", epilog=INFO_EPILOG)
    i.add_argument("index", help="index file")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=run_info)

    def no_subcommand(args) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_subcommand)


def parse_kv(pairs: list[str]) -> dict:
    """``-o KEY=VALUE`` options, typed by the one rule of cmhash.validation."""
    from cmhash.validation import parse_kv as _parse

    return _parse(pairs, "-o", "check_images=exists")


def run_build(args) -> int:
    use_passive_openmp()
    from cmhash.errors import DataError
    from cmhash.index.build import build_from_checkpoint, build_from_codes

    if bool(args.codes) == bool(args.checkpoint):
        raise DataError("give exactly one of --codes CODES.npz or --checkpoint CKPT")
    if args.features and not args.checkpoint:
        raise DataError("--features goes with --checkpoint (the image features of the collection to encode)")
    if args.data_root and not args.dataset:
        raise DataError("--data-root needs --dataset NAME")
    from cmhash.io import clean_stale_temps, refuse_existing, write_lock
    from cmhash.validation import output_file

    output_file(args.out, "--out")
    options = backend_options(args)
    dataset_options = parse_kv(args.dataset_option)
    with write_lock(args.out, "index", is_dir=False):
        clean_stale_temps(args.out, is_dir=False)
        refuse_existing(args.out, "an index", overwrite=args.overwrite)
        return _build(args, options, dataset_options)


def _build(args, options, dataset_options) -> int:
    from cmhash.index.build import build_from_checkpoint, build_from_codes

    t0 = time.perf_counter()
    if args.codes:
        dataset = None
        if args.dataset:
            from cmhash.data import load_dataset

            dataset = load_dataset(args.dataset, args.data_root, **dataset_options)
        index = build_from_codes(args.codes, backend=args.backend, split=args.split, dataset=dataset, progress=True, **options)
    else:
        index = build_from_checkpoint(
            args.checkpoint,
            args.dataset,
            args.data_root,
            backend=args.backend,
            split=args.split,
            dataset_options=dataset_options,
            features=args.features,
            progress=True,
            **options,
        )
    index.save(args.out)
    summary = {**index.describe(), "out": args.out, "seconds": round(time.perf_counter() - t0, 3)}
    index.close()
    if args.json:
        print_json(summary)
    else:
        what = (f"{summary['counts']['image']} images and {summary['counts']['text']} texts as separate items"
                if summary.get("info", {}).get("items") == "per_modality" else f"{summary['count']} items")
        print(f"indexed {what} ({', '.join(summary['modalities'])} codes, {summary['bits']} bits) "
              f"with the {summary['backend']} backend in {summary['seconds']:.1f} s -> {args.out}")
    return 0


def run_info(args) -> int:
    from cmhash.index.container import read_manifest

    manifest = read_manifest(args.index)
    manifest.pop("sections", None)
    if args.json:
        print_json(manifest)
        return 0
    rows = [
        ("kind", manifest.get("kind")),
        ("backend", manifest.get("backend")),
        ("bits", manifest.get("bits")),
        ("items", manifest.get("count")),
        ("saved", manifest.get("saved")),
    ]
    subs = manifest.get("modalities") or {}
    if subs:
        rows.append(("modalities", ", ".join(subs)))
        first = next(iter(subs.values()))
        rows.append(("options", json.dumps(first.get("options", {}))))
    else:
        rows.append(("options", json.dumps(manifest.get("options", {}))))
    for key, value in (manifest.get("info") or {}).items():
        rows.append((f"info.{key}", value if not isinstance(value, (dict, list)) else json.dumps(value)))
    print(format_table(["field", "value"], rows))
    return 0


def use_passive_openmp() -> None:
    """faiss's OpenMP threads spin while waiting; on a machine whose cores are busy that makes
    2 threads ~3x slower than 1 (measured). Sleeping waiters fix it; the variable is read when the
    OpenMP runtime starts, so set it before faiss/torch load, unless the user chose a policy."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
