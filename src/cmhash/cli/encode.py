"""`cmhash encode`: turn a trained checkpoint plus data into a codes file (for eval, index, search).

By default the split is the one the model was trained with (protocol, parameters and seed are
read from the checkpoint and checked against the data), and the file holds query and database
codes of both modalities with labels and ids. ``--all`` encodes every pair as the database
(what ``cmhash index build`` wants); ``--split-file`` uses a saved split.
"""

from __future__ import annotations

from cmhash.cli._common import add_parser
from cmhash.validation import positive_int_arg

EPILOG = """\
examples:
  cmhash encode --checkpoint runs/mir64/checkpoint.pt --dataset mirflickr \\
      --data-root ../shared/data/mirflickr25k --features mir_effnet_lite0.npz --out mir64_codes.npz
  cmhash eval --codes mir64_codes.npz
  cmhash encode --checkpoint runs/wiki --dataset wiki --data-root ../shared/data/wikipedia --all --out wiki_all.npz
"""


def register(sub) -> None:
    p = add_parser(sub, "encode", help="checkpoint + data -> codes file", description=__doc__, epilog=EPILOG)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt (or the run folder holding it)")
    p.add_argument("--dataset", help="data source name (default: the one the model was trained on)")
    p.add_argument("--data-root", help="folder of the dataset (default: the training run's)")
    p.add_argument("--features", help="precomputed image features, as for `cmhash train` (default: the training run's)")
    p.add_argument("--split-file", help="a saved split (default: recompute the training run's split)")
    p.add_argument("--all", action="store_true", help="encode every pair as the database (no query set)")
    p.add_argument("--out", required=True, help="codes file to write (.npz)")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch CPU threads")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from cmhash.codes_io import save_codes
    from cmhash.inference import load_checkpoint
    from cmhash.inference.inputs import checkpoint_dataset, checkpoint_split

    from cmhash.validation import output_file

    output_file(args.out, "--out")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    ds = checkpoint_dataset(ckpt, args.dataset, args.data_root, features=args.features)
    out_meta = {
        "method": ckpt.method_name,
        "bits": ckpt.bits,
        "dataset": ds.name,
        "checkpoint": str(ckpt.path),
        "features": {k: v for k, v in ckpt.meta.get("features", {}).items() if k not in ("vocabulary", "encoders")},
    }
    arrays: dict[str, np.ndarray] = {}
    if args.all:
        arrays.update(db_image=ckpt.encode(ds, "image"), db_text=ckpt.encode(ds, "text"), db_ids=ds.ids)
        if ds.labels is not None:
            arrays["db_labels"] = ds.labels
        if ds.groups is not None:
            arrays["db_groups"] = np.asarray(ds.groups).astype(str)
        out_meta["split"] = {"protocol": "all"}
    else:
        split = checkpoint_split(ckpt, ds, args.split_file)
        q, d = ds.subset(split.query), ds.subset(split.database)
        arrays.update(
            query_image=ckpt.encode(q, "image"),
            query_text=ckpt.encode(q, "text"),
            db_image=ckpt.encode(d, "image"),
            db_text=ckpt.encode(d, "text"),
            query_ids=q.ids,
            db_ids=d.ids,
        )
        if ds.labels is not None:
            arrays.update(query_labels=q.labels, db_labels=d.labels)
        if ds.groups is not None:  # pair identity (Flickr8k: the image of each caption) -> Recall@K in `cmhash eval`
            arrays.update(query_groups=np.asarray(q.groups).astype(str), db_groups=np.asarray(d.groups).astype(str))
        out_meta["split"] = split.describe()
    path = save_codes(Path(args.out), bits=ckpt.bits, meta=out_meta, **arrays)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in arrays.items() if k.endswith(("_image", "_text")))
    print(f"wrote {path} ({ckpt.method_name}, {ckpt.bits} bits; {sizes})")
    return 0
