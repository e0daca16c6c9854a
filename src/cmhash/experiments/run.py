"""One training run end to end: data + features -> split -> train -> evaluate -> files.

The one run of cmhash: ``cmhash train`` calls it per code length, ``cmhash reproduce`` starts
``cmhash train`` per grid cell, ``cmhash demo`` calls :func:`train_and_evaluate` on the synthetic
set. Entry points:

* :func:`load_run_data`: the dataset with the features every method finds the same way
  (``--features``, else the dataset's ready-made cache; :mod:`cmhash.features.attach`) and its
  split (run setting ``split``/``split_params``, or a saved split file);
* :func:`train_and_evaluate`: fit any registered method (deep: the shared trainer with
  validation, checkpoints and resume; shallow: ``fit``), evaluate once on query vs. database,
  write ``metrics.json`` and ``checkpoint.pt``.

Settings come from :mod:`cmhash.experiments.settings`; evaluation from
:mod:`cmhash.experiments.evaluation`. The run's ``seed`` drives the split, the deep trainer
(initialisation, batch order) and, for methods with a ``seed`` hyper-parameter that the preset
or the user did not set (CMFH's random start), that seed too.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError
from cmhash.experiments.evaluation import code_health, evaluate_codes, evaluate_recall, make_validator
from cmhash.experiments.settings import DEFAULT_SPLIT_PARAMS, DEFAULT_SPLITS
from cmhash.io import write_json



# ---------------------------------------------------------------------------- provenance
def code_version() -> str:
    """cmhash's version, plus the git commit (and '-dirty') when running from a checkout: results say which code made them."""
    import subprocess

    from cmhash import __version__

    here = Path(__file__).resolve().parents[1]  # the cmhash package
    if here.parent.name != "src" or not (here.parents[1] / "pyproject.toml").exists():
        return __version__  # an installed copy, not a checkout: git would describe some other repository
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return __version__
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True, text=True, timeout=5)
        return f"{__version__}+g{sha.stdout.strip()}" + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


# ---------------------------------------------------------------------------- evaluation
# ---------------------------------------------------------------------------- data
def load_run_data(
    dataset: str,
    data_root=None,
    *,
    options: dict[str, Any] | None = None,
    features=None,
    image_features: bool = True,
    run: dict[str, Any] | None = None,
    seed: int = 0,
    split: str | None = None,
    split_params: dict[str, Any] | None = None,
    split_file=None,
):
    """``(dataset, split)`` of a run: features found the same way for every method, then the split.

    ``image_features``: the method reads image feature vectors (every shallow method; a deep one
    in feature mode), so the dataset's ready-made features are attached when ``features`` is None.
    """
    from cmhash.data import load_dataset
    from cmhash.data.splits import PROTOCOLS, Split, make_split
    from cmhash.features.attach import attach_features, default_features
    from cmhash.inference.inputs import labels_from_groups

    from cmhash.data import SOURCES

    run = dict(run or {})
    SOURCES.get(dataset)  # an unknown dataset is named as such, before asking for its folder
    if dataset != "synthetic" and not data_root:
        raise CmhashError(f"--data-root is required for dataset '{dataset}'")
    options = dict(options or {})
    ds = load_dataset(dataset, data_root, **options)
    if options:
        ds.meta["source_options"] = options
    if features is None and ds.image_features is None and image_features:
        features = default_features(ds)
    ds = attach_features(ds, features)
    if ds.labels is None and ds.groups is not None:
        ds = labels_from_groups(ds)
    if split_file:
        return ds, Split.load(split_file, dataset=ds)
    protocol = split or run.get("split") or DEFAULT_SPLITS.get(ds.name, "djsrh")
    params = dict(DEFAULT_SPLIT_PARAMS.get(ds.name, {})) if protocol == DEFAULT_SPLITS.get(ds.name) else {}
    # a dataset default equal to the protocol's own adds nothing, but passed explicitly it would turn
    # a default (clipped to a small database) into a request (refused there): leave those to the protocol
    own = PROTOCOLS[protocol][1] if protocol in PROTOCOLS else {}
    params = {k: v for k, v in params.items() if k not in own or own[k] != v}
    params.update(run.get("split_params") or {})
    params.update(split_params or {})
    return ds, make_split(ds, protocol, seed=seed, **params)


def method_hparams(method_name: str, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
    """The hyper-parameters a run passes: the run's seed fills a ``seed`` hyper-parameter left unset."""
    from cmhash.methods import METHODS

    hp = dict(hparams)
    if "seed" in getattr(METHODS.get(method_name), "DEFAULTS", {}) and "seed" not in hp:
        hp["seed"] = int(seed)
    return hp


# ---------------------------------------------------------------------------- the run
def dataset_record(ds) -> dict[str, Any]:
    rec = {"name": ds.name, "pairs": len(ds)}
    for key in ("source", "root", "image_features", "text_features", "features_file", "source_options"):
        if key in ds.meta:
            rec[key] = ds.meta[key]
    if ds.image_features is not None:
        rec["image_dim"] = int(ds.image_features.shape[1])
    if ds.text_features is not None:
        rec["text_dim"] = int(ds.text_features.shape[1])
    return rec


def train_and_evaluate(
    method_name: str,
    ds,
    split,
    bits: int,
    hparams: dict[str, Any],
    *,
    out_dir: str | Path,
    seed: int = 0,
    run: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str = "auto",
    num_workers: int = 0,
    tensorboard: bool = True,
    threads: int | None = None,
) -> dict[str, Any] | None:
    """Train ``method_name`` on ``split.train``, evaluate query vs. database, write metrics.json.

    Returns the metrics dict on the main process (None on other ranks of a DDP run).
    """
    import torch

    from cmhash.data.splits import validation_split
    from cmhash.methods import create_method
    from cmhash.training import distributed as D
    from cmhash.training.checkpoint import save_method
    from cmhash.training.trainer import CHECKPOINT, TrainConfig

    run = dict(run or {})
    out = Path(out_dir)
    dist = D.current()
    t_start = time.perf_counter()
    method = create_method(method_name, bits, **method_hparams(method_name, hparams, seed))
    train = ds.subset(split.train, name=f"{ds.name}-train")
    labels_ok = ds.labels is not None
    num_val = int(run.get("num_val", 500))
    validator = None
    val_sizes = None
    if labels_ok and num_val > 0:
        vq, vd = validation_split(split, num_val=num_val, seed=seed)
        validator = make_validator(ds, vq, vd)
        val_sizes = {"query": len(vq), "database": len(vd)}
    meta = {
        "dataset": dataset_record(ds),
        "split": split.describe(),
        "seed": seed,
        "provenance": provenance or {},
        "run": run,
        "features": {k: ds.meta.get(k) for k in ("image_features", "text_features") if k in ds.meta},
    }
    if "vocabulary" in ds.meta:
        meta["features"]["vocabulary"] = ds.meta["vocabulary"]
    if "encoders" in ds.meta:  # encoder specs of a feature cache: rebuild them to encode new queries
        meta["features"]["encoders"] = ds.meta["encoders"]
    if getattr(method, "deep", False):
        config = TrainConfig(
            epochs=int(method.hparams.get("epochs", 1)),
            batch_size=int(method.hparams.get("batch_size", 32)),
            seed=seed,
            run_dir=str(out),
            resume=resume,
            eval_every=int(run.get("eval_every", 0)),
            select=str(run.get("select", "last")),
            progress=progress,
            tensorboard=tensorboard,
            device=device,
            num_workers=num_workers,
        )
        method.fit(train, val=validator, config=config, meta=meta)
    else:
        method.fit(train, threads=threads, progress=progress if callable(progress) else None)
        if dist.is_main:
            save_method(out / CHECKPOINT, method, meta=meta)
    if not dist.is_main:
        return None
    train_seconds = time.perf_counter() - t_start
    t_eval = time.perf_counter()
    query, database = ds.subset(split.query), ds.subset(split.database)
    q_img, q_txt = method.encode(query, "image"), method.encode(query, "text")
    db_img, db_txt = method.encode(database, "image"), method.encode(database, "text")
    pair_identity = ds.groups is not None and (not labels_ok or str(ds.meta.get("relevance", "")).startswith("same group"))
    if pair_identity:  # Flickr8k: Recall@K (one image row per group), and from real values when the method has them
        emb = None
        if hasattr(method, "embeddings"):
            emb = {f"{side}_{mod}": method.embeddings(part, mod) for side, part in (("q", query), ("db", database)) for mod in ("image", "text")}
        result = evaluate_recall(q_img, q_txt, db_img, db_txt, query.groups, database.groups, embeddings=emb)
    elif labels_ok:
        result = evaluate_codes(q_img, q_txt, db_img, db_txt, query.labels, database.labels)
    else:
        raise DataError(f"{ds.name}: no labels and no pair groups, so nothing defines relevance (use a labelled or captioned dataset)")
    eval_seconds = time.perf_counter() - t_eval
    health, code_warnings = code_health({"database_image": db_img, "database_text": db_txt, "query_image": q_img, "query_text": q_txt})
    history = [r for r in (getattr(method, "history", None) or []) if isinstance(r, dict)] if getattr(method, "deep", False) else []
    epoch_secs = [float(r["seconds"]) for r in history if "seconds" in r]
    overhead = sum(float(r.get("val_seconds", 0.0)) + float(r.get("checkpoint_seconds", 0.0)) for r in history)
    protocol = dict(result.get("protocol", {}))
    protocol.update(split=split.describe(), validation=val_sizes, selection=run.get("select", "last"))
    last_val = next((r for r in reversed(history) if any(k.startswith("val_") for k in r)), None)
    metrics_doc = {
        "method": method_name,
        "variant": method.hparams.get("variant") or (provenance or {}).get("variant") or method_name,
        "dataset": ds.name,
        "bits": int(bits),
        "seed": int(seed),
        "i2t": result["i2t"],
        "t2i": result["t2i"],
        "protocol": protocol,
        "seconds": train_seconds + eval_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "epochs": len(history) if history else None,
        "seconds_per_epoch": float(np.mean(epoch_secs)) if epoch_secs else None,
        "train_seconds_epochs": float(np.sum(epoch_secs)) if epoch_secs else None,
        "train_seconds_total": float(np.sum(epoch_secs) + overhead) if epoch_secs else None,
        "validation": {k: v for k, v in (last_val or {}).items() if k.startswith("val_") or k == "epoch"} or None,
        "codes": health,
        "warnings": code_warnings,
        "curves": result.get("curves"),
        "real_valued": result.get("real_valued"),
        "hparams": method.hparams,
        "provenance": provenance or {},
        "features": {k: v for k, v in meta["features"].items() if k not in ("vocabulary", "encoders")},
        "dataset_info": meta["dataset"],
        "environment": {
            "device": getattr(method, "train_info", {}).get("device", "cpu"),
            "world_size": getattr(method, "train_info", {}).get("world_size", 1),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cmhash": code_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "checkpoint": str(out / CHECKPOINT),
    }
    write_json(out / "metrics.json", metrics_doc)
    return metrics_doc


def summary_line(m: dict[str, Any]) -> str:
    if "map@50" in m["i2t"]:
        scores = f"i2t mAP@50 {m['i2t']['map@50']:.4f}  t2i mAP@50 {m['t2i']['map@50']:.4f}  "
    else:  # pair-identity data: Recall@K
        scores = "  ".join(f"{t} " + " ".join(f"R@{k.split('@')[1]} {v:.3f}" for k, v in m[t].items() if k.startswith("recall@")) for t in ("i2t", "t2i")) + "  "
    line = (
        f"{m['method']} {m['dataset']} {m['bits']} bits seed {m['seed']}: "
        f"{scores}"
        f"({m['seconds']:.1f} s" + (f", {m['seconds_per_epoch']:.2f} s/epoch)" if m.get("seconds_per_epoch") else ")")
    )
    return line + "".join(f"\n  WARNING: {w}" for w in m.get("warnings") or [])


__all__ = ["code_version", "dataset_record", "load_run_data", "method_hparams", "summary_line", "train_and_evaluate"]
