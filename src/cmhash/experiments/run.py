"""One training run end to end: settings -> data + features -> split -> train -> evaluate -> files.

Used by ``cmhash train`` (and therefore by ``cmhash reproduce``, which starts ``cmhash train`` per
grid cell). Library entry points:

* :func:`resolve_settings`: preset of (method, dataset) + ablation variant + user overrides,
  split into the method's hyper-parameters and run settings;
* :func:`attach_features`: precomputed image (and text) features from a feature cache / ``.npz``;
* :func:`train_and_evaluate`: fit on the split's training pairs, validate on pairs carved from the
  database, evaluate once on query vs. database, write ``metrics.json`` and the checkpoint.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.errors import CmhashError, DataError, MissingFileError
from cmhash.io import read_npz, write_json

#: Preset keys that configure the run rather than the method.
RUN_KEYS = ("split", "split_params", "num_val", "eval_every", "select", "image_features", "notes")
#: Split protocol of a dataset when the method's preset names none (the DJSRH papers' protocols).
DEFAULT_SPLITS = {"wiki": "official", "nuswide": "djsrh-nuswide", "flickr8k": "official", "synthetic": "random", "fashion": "random"}
#: Ranks at which precision@top-R curves are recorded (clipped to the database size).
CURVE_RANKS = (1, 10, 25, 50, 100, 200, 300, 400, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000)
MAP_TOPK = 50


# ---------------------------------------------------------------------------- settings
def available_variants(method: str) -> list[str]:
    from cmhash.presets import available

    try:
        return available(f"{method}_variants")
    except CmhashError:
        return []


def resolve_settings(method: str, dataset: str | None, variant: str | None = None, overrides: dict[str, Any] | None = None):
    """``(hparams, run_settings, provenance)`` for a run.

    Order: the method's ``default`` preset, the dataset's section (if any), the ablation
    ``variant`` (``presets/<method>_variants.yaml``), then ``overrides`` (CLI ``--set``/flags).
    """
    from cmhash.presets import available, load_preset

    try:
        datasets = available(method)
    except CmhashError:
        datasets = []
    prov: dict[str, Any] = {"method": method, "dataset_preset": None, "variant": None}
    if dataset is not None and dataset.lower() in datasets:
        settings = load_preset(method, dataset)
        prov["dataset_preset"] = dataset.lower()
    elif datasets or _has_presets(method):
        settings = load_preset(method)
    else:
        settings = {}
    if variant:
        known = available_variants(method)
        if variant.lower() not in known:
            raise CmhashError(f"unknown {method} variant '{variant}' (known: {', '.join(known) or 'none'})")
        var = load_preset(f"{method}_variants", variant)
        prov["variant"] = variant.lower()
        prov["variant_source"] = var.pop("_source", None)
        var.pop("description", None)
        settings.update(var)
        settings["variant"] = variant.lower()
    prov["source"] = settings.pop("_source", None)
    prov["default_source"] = settings.pop("source", None)
    settings.update(overrides or {})
    run = {k: settings.pop(k) for k in RUN_KEYS if k in settings}
    return settings, run, prov


def _has_presets(method: str) -> bool:
    from importlib import resources

    return resources.files("cmhash.presets").joinpath(f"{method.lower()}.yaml").is_file()


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["beta=0.9", "alpha=1"]`` -> dict with YAML-typed values."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CmhashError(f"--set expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


# ---------------------------------------------------------------------------- features
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


def attach_features(ds, features: str | Path | None = None, *, encoder: str | None = None):
    """Dataset with precomputed image features from ``features`` (an ``.npz`` or a feature cache).

    An ``.npz`` needs ``image_features`` (n, d) and ``ids`` in any order (rows are matched on the
    dataset's pair ids); ``text_features`` are taken only when the dataset has none.
    """
    if features is None:
        return ds
    path = Path(features)
    if not path.exists():
        raise MissingFileError(f"{path}: features not found (give an .npz with image_features and ids, or a feature cache folder)")
    if path.is_dir():
        return _from_feature_cache(ds, path, encoder)
    data = read_npz(path)
    if "image_features" not in data:
        raise DataError(f"{path}: no 'image_features' array (found: {', '.join(data)})")
    img = np.asarray(data["image_features"], dtype=np.float32)
    rows = _match_rows(ds, data.get("ids"), img.shape[0], path)
    txt = None
    if ds.text_features is None and "text_features" in data:
        txt = np.asarray(data["text_features"], dtype=np.float32)[rows]
    meta = {"image_features": str(data["encoder"]) if "encoder" in data else (encoder or path.stem), "features_file": str(path)}
    out = ds.with_features(image_features=img[rows], text_features=txt)
    out.meta.update(meta)  # (not as with_features kwargs: "image_features" names the array there)
    return out


def default_features(ds, encoder: str | None) -> str | None:
    """The feature cache of this dataset and image encoder, if one exists, else None.

    Looks in ``$CMHASH_FEATURES`` (a folder) for ``<dataset>-<encoder>.npz``, then for the
    ready-made cache that ``cmhash features prepare <dataset>`` writes
    (``$CMHASH_CACHE/features/<dataset>``), used when its image encoder is ``encoder``.
    """
    if not encoder:
        return None
    enc = str(encoder).split()[0]
    folder = os.environ.get("CMHASH_FEATURES")
    if folder:
        cand = Path(folder) / f"{ds.name}-{enc}.npz"
        if cand.exists():
            return str(cand)
    try:
        from cmhash.features.cache import FeatureCache
        from cmhash.features.prepared import features_cache_dir
    except ImportError:
        return None
    path = features_cache_dir(ds.name)
    if not (path / "manifest.json").exists():
        return None
    try:
        cache = FeatureCache.load(path)
        name = cache.entries.get("image", {}).get("encoder", {}).get("name")
    except Exception:
        return None
    return str(path) if name == enc and cache.complete("image") else None


def _match_rows(ds, ids, n_rows: int, path: Path) -> np.ndarray:
    if ids is None:
        if n_rows != len(ds):
            raise DataError(f"{path}: {n_rows} feature rows but the dataset has {len(ds)} pairs, and no 'ids' array to match them")
        return np.arange(n_rows)
    ids = np.asarray(ids).astype(str)
    if len(ids) != n_rows:
        raise DataError(f"{path}: {len(ids)} ids for {n_rows} feature rows")
    pos = {i: k for k, i in enumerate(ids)}
    missing = [i for i in ds.ids if i not in pos]
    if missing:
        raise DataError(f"{path}: no features for {len(missing)} of the dataset's {len(ds)} pairs (first: id '{missing[0]}'); re-extract them")
    return np.asarray([pos[i] for i in ds.ids], dtype=np.int64)


def _from_feature_cache(ds, folder: Path, encoder: str | None):
    """Features from a cache folder written by ``cmhash features`` (image, and text when it has it)."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        npz = sorted(folder.glob("*.npz"))
        if len(npz) == 1:
            return attach_features(ds, npz[0], encoder=encoder)
        raise DataError(f"{folder}: not a feature cache (no manifest.json; create one with `cmhash features extract` or `prepare`)")
    from cmhash.features.cache import FeatureCache

    cache = FeatureCache.load(folder)
    out = cache.apply(ds, text="text" if "text" in cache.entries else None)
    specs = out.meta.get("encoders", {})
    out.meta.update(
        image_features=specs.get("image", {}).get("name", encoder),
        features_file=str(folder),
    )
    if "text" in specs:
        out.meta["text_features"] = f"{specs['text'].get('name')}-{specs['text'].get('dim')}"
    return out


# ---------------------------------------------------------------------------- evaluation
def evaluate_codes(q_image, q_text, db_image, db_text, q_labels, db_labels, *, curves: bool = True) -> dict[str, Any]:
    """``cmhash.metrics.cross_modal_report``: mAP@50 (DJSRH definition) both ways, precision within
    Hamming radius 2, and with ``curves`` the PR curve and precision@top-R at :data:`CURVE_RANKS`.

    Adds a compact ``curves`` entry (``ranks``, ``i2t_precision``, ``t2i_precision``) that
    ``cmhash reproduce`` plots.
    """
    from cmhash import metrics

    ranks = [r for r in CURVE_RANKS if r <= len(db_labels)]
    out = metrics.cross_modal_report(
        q_image, q_text, db_image, db_text, q_labels, db_labels, topk=MAP_TOPK, curves=curves, r_values=ranks
    )
    if curves:
        top = {t: out[t]["curves"]["precision_at_top_r"] for t in ("i2t", "t2i")}
        out["curves"] = {
            "ranks": list(top["i2t"]["r"]),
            "i2t_precision": list(top["i2t"]["precision"]),
            "t2i_precision": list(top["t2i"]["precision"]),
        }
    return out


def make_validator(ds, val_query: np.ndarray, val_db: np.ndarray):
    """Callable(method) -> validation mAP@50 in both directions (queries carved from the database)."""
    from cmhash import metrics

    vq, vd = ds.subset(val_query), ds.subset(val_db)

    def validate(method) -> dict[str, float]:
        qi, qt = method.encode(vq, "image"), method.encode(vq, "text")
        di, dt = method.encode(vd, "image"), method.encode(vd, "text")
        return {
            f"val_i2t_map@{MAP_TOPK}": metrics.mean_average_precision(qi, dt, vq.labels, vd.labels, topk=MAP_TOPK),
            f"val_t2i_map@{MAP_TOPK}": metrics.mean_average_precision(qt, di, vq.labels, vd.labels, topk=MAP_TOPK),
        }

    return validate


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
    method = create_method(method_name, bits, **hparams)
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
        method.fit(train)
        if dist.is_main:
            save_method(out / CHECKPOINT, method, meta=meta)
    if not dist.is_main:
        return None
    train_seconds = time.perf_counter() - t_start
    t_eval = time.perf_counter()
    query, database = ds.subset(split.query), ds.subset(split.database)
    q_img, q_txt = method.encode(query, "image"), method.encode(query, "text")
    db_img, db_txt = method.encode(database, "image"), method.encode(database, "text")
    if not labels_ok:
        raise DataError(f"{ds.name}: no labels, so mAP cannot be computed (use a labelled dataset)")
    result = evaluate_codes(q_img, q_txt, db_img, db_txt, query.labels, database.labels)
    eval_seconds = time.perf_counter() - t_eval
    history = [r for r in (getattr(method, "history", None) or []) if isinstance(r, dict)] if getattr(method, "deep", False) else []
    epoch_secs = [float(r["seconds"]) for r in history if "seconds" in r]
    overhead = sum(float(r.get("val_seconds", 0.0)) + float(r.get("checkpoint_seconds", 0.0)) for r in history)
    protocol = dict(result.get("protocol", {}))
    protocol.update(split=split.describe(), validation=val_sizes, selection=run.get("select", "last"))
    last_val = next((r for r in reversed(history) if any(k.startswith("val_") for k in r)), None)
    metrics_doc = {
        "method": method_name,
        "variant": hparams.get("variant", method_name),
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
        "curves": result.get("curves"),
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
    return (
        f"{m['method']} {m['dataset']} {m['bits']} bits seed {m['seed']}: "
        f"i2t mAP@50 {m['i2t']['map@50']:.4f}  t2i mAP@50 {m['t2i']['map@50']:.4f}  "
        f"({m['seconds']:.1f} s" + (f", {m['seconds_per_epoch']:.2f} s/epoch)" if m.get("seconds_per_epoch") else ")")
    )


__all__ = [
    "attach_features",
    "evaluate_codes",
    "make_validator",
    "parse_overrides",
    "resolve_settings",
    "summary_line",
    "train_and_evaluate",
]
