"""`cmhash search`: query an index with a text, an image, or an item already in it."""

from __future__ import annotations

import time

from cmhash.validation import nonneg_int_arg, positive_int_arg
from cmhash.cli._common import add_parser, format_table, print_json
from cmhash.cli.index import use_passive_openmp

EPILOG = """\
examples:
  cmhash search --index mir.index --text "dog beach" --k 10                      # tag model: tags (commas or spaces)
  cmhash search --index f8k.index --text "a dog running on the beach" --k 10    # sentence model: free text
  cmhash search --index mir.index --image photo.jpg --k 10                       # image -> texts
  cmhash search --index mir.index --like im1234 --target both                    # item's text code -> images and texts
  cmhash search --index mir.index --query-codes codes.npz --query-row 0 --query-modality image
  cmhash search --index mir.index --text "sunset" --json                         # JSON list of {id, distance, ...}

A text query searches the image codes and an image query the text codes unless --target says
otherwise. --text/--image need the model that made the codes: the checkpoint recorded in the
index (its content hash is checked), or --checkpoint. A text the model cannot read (a tag model
and no known tag) is refused with the tags it knows. Results are ranked by Hamming distance, ties
in insertion order. From Python: cmhash.open_index(PATH).search_text(TEXT, k=10).
"""


def register(sub) -> None:
    p = add_parser(sub, "search", help="search an index with a text, an image or an item", description=__doc__, epilog=EPILOG)
    p.add_argument("--index", required=True, help="index file from `cmhash index build`")
    q = p.add_argument_group("query (one of)")
    q.add_argument("--text", help="a text query (encoded with the model)")
    q.add_argument("--image", help="an image file (encoded with the model)")
    q.add_argument("--like", metavar="ID", help="an item of the index: use its own codes as the query")
    q.add_argument("--query-codes", metavar="CODES", help="a codes file from `cmhash encode`: query with one of its query rows")
    p.add_argument("--query-row", type=nonneg_int_arg, default=0, help="row of --query-codes")
    p.add_argument("--query-modality", choices=["image", "text"], default="text", help="for --like / --query-codes: which code of the item is the query")
    p.add_argument("--target", choices=["image", "text", "both"], default=None, help="codes to search; None: the other modality")
    p.add_argument("--k", type=positive_int_arg, default=10, help="number of results")
    p.add_argument("--checkpoint", help="model for --text/--image; None: the one recorded in the index")
    p.add_argument("--milvus-uri", help="milvus: reach the collection at this URI instead of the saved one")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="faiss: OpenMP threads")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    p.set_defaults(func=run)


def _query(args, index):
    """(codes (1, bits) or packed, query modality, description) from the chosen query option."""
    from cmhash.errors import DataError

    chosen = [name for name in ("text", "image", "like", "query_codes") if getattr(args, name) is not None]
    if len(chosen) != 1:
        raise DataError("give exactly one query: --text, --image, --like ID or --query-codes FILE")
    how = chosen[0]
    if how in ("text", "image"):
        from cmhash.index.encoding import encode_query

        checkpoint = args.checkpoint or index.info.get("checkpoint")
        if not checkpoint:
            raise DataError(
                f"--{how} needs the model that made the codes: this index was built from a codes file, so pass --checkpoint CKPT "
                "(or query with --like ID / --query-codes)"
            )
        codes, modality = encode_query(checkpoint, text=args.text, image=args.image, info=index.info)
        if how == "image":
            return codes, modality, f"image {args.image}"
        from cmhash.inference.model import load

        read_as = load(checkpoint).read_text(args.text)
        return codes, modality, f'text "{args.text}"' + (f" (read as: {read_as})" if read_as != args.text else "")
    if how == "like":
        like = args.like
        if getattr(index.primary, "id_kind", None) == "int":
            try:
                like = int(like)
            except ValueError:
                raise DataError(f"--like {like!r}: this index uses integer ids") from None
        return index.get_codes([like], args.query_modality), args.query_modality, f"{args.query_modality} code of item {args.like}"
    from cmhash.codes_io import load_codes

    data = load_codes(args.query_codes)
    key = f"query_{args.query_modality}"
    if key not in data:
        raise DataError(f"{args.query_codes}: no {key} codes (pick --query-modality)")
    n = len(data[key])
    if not 0 <= args.query_row < n:
        raise DataError(f"--query-row {args.query_row} is out of range: {args.query_codes} has {n} {key} rows")
    row = args.query_row
    label = data["query_ids"][row] if "query_ids" in data else row
    return data[key][row : row + 1], args.query_modality, f"{args.query_modality} query {label} of {args.query_codes}"


def _overrides(args, manifest) -> dict:
    backend = manifest.get("backend")
    out = {}
    if args.milvus_uri and backend == "milvus":
        out["uri"] = args.milvus_uri
    if args.threads is not None and backend == "faiss":
        out["threads"] = args.threads
    return out


def _short(text, width: int = 60) -> str:
    text = "" if text is None else str(text).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def run(args) -> int:
    use_passive_openmp()
    from cmhash.errors import DataError
    from cmhash.index import CrossModalIndex, load_index
    from cmhash.index.container import read_manifest

    if args.k < 1:
        raise DataError(f"--k must be positive, got {args.k}")
    manifest = read_manifest(args.index)
    index = load_index(args.index, **_overrides(args, manifest))
    if not isinstance(index, CrossModalIndex):
        raise DataError(f"{args.index} is a plain code index (no image/text collection); search it from Python with load_index()")
    try:
        codes, modality, described = _query(args, index)
        target = args.target or ("image" if modality == "text" else "text")
        t0 = time.perf_counter()
        hits = index.search_hits(codes, args.k, target=target)[0]
        ms = (time.perf_counter() - t0) * 1000
        count = index.indexes[target].count if target in index.indexes else index.count
    finally:
        index.close()
    rows = []
    for h in hits:
        meta = h.pop("metadata") or {}
        rows.append({**{k: v for k, v in meta.items() if k not in h}, **h})
    if args.json:
        print_json([{k: r[k] for k in ["rank", "id", "distance", "matched"] + [k for k in r if k not in ("rank", "id", "distance", "matched")]} for r in rows])
        return 0
    print(f"{described} -> {target} codes of {count} items ({index.backend}, {ms:.1f} ms)")
    extra = [c for c in ("text", "image", "labels") if any(r.get(c) not in (None, "", []) for r in rows)]
    headers = ["rank", "id", "distance"] + (["matched"] if target == "both" else []) + extra
    table = []
    for r in rows:
        line = [r["rank"], r["id"], r["distance"]] + ([r["matched"]] if target == "both" else [])
        for c in extra:
            value = r.get(c)
            value = ", ".join(map(str, value)) if isinstance(value, list) else value
            line.append(value if c == "image" else _short(value))  # paths stay whole, to be copied
        table.append(line)
    print(format_table(headers, table))
    return 0
