"""The chance level of a grid: what independent uniform random codes score on each run's own split.

A method "beats chance" only against the number random codes reach under the same split, labels,
code length and protocol; on multi-label data (MIRFlickr: most pairs share a label) that is far
from zero. It depends on the split and the code length, not on the method, so for every
(dataset, bits, seed) among the finished runs under a grid folder this module:

1. takes the runs of that (dataset, seed) and refuses (:class:`SplitMismatchError`) when their
   recorded splits (``protocol.split`` in metrics.json: protocol, parameters, seed, sizes, dataset
   fingerprint) disagree: one chance level cannot describe two splits;
2. rebuilds the test split and labels from one finished run's checkpoint, as
   ``cmhash reproduce backfill`` does, checking the sizes against the recorded ones;
3. draws ``draws`` sets of independent uniform ±1 codes (queries and database, both modalities),
   seeded from (seed, bits, draw) so reruns give the same numbers, and evaluates them with
   :func:`cmhash.metrics.cross_modal_report` under the run's recorded protocol options, mAP@K and
   mAP@all both ways;
4. scores what the input features alone carry on that split: each modality's own feature vectors
   ranked by cosine similarity (image→image, text→text; real-valued, no hashing), mAP@K with the
   same definition (:func:`cmhash.metrics.map_at_k_dense`): the ceiling an unsupervised method
   that learns from feature similarities starts from;
5. writes ``<root>/<dataset>/chance.json`` atomically: per (bits, seed) the mean and std over
   draws, per seed the feature figures, with the protocol, the split record and fingerprint, the
   code version and the date.

Pair-identity datasets (Flickr8k, Recall@K) are skipped.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cmhash.errors import DataError

CHANCE_JSON = "chance.json"
TASKS = ("i2t", "t2i")
PROTOCOL_KEYS = ("topk", "denominator", "normalize", "tie_break", "radius")


class SplitMismatchError(DataError):
    """Two runs of one (dataset, seed) recorded different splits: no single chance level applies."""


def random_codes(n_query: int, n_database: int, bits: int, key: Sequence[int]) -> tuple[np.ndarray, ...]:
    """``(query_image, query_text, db_image, db_text)``: independent uniform ±1 int8 codes from ``default_rng(key)``."""
    rng = np.random.default_rng(list(key))
    one = np.array([-1, 1], dtype=np.int8)
    return tuple(rng.choice(one, size=(n, bits)) for n in (n_query, n_query, n_database, n_database))


def random_codes_map(query, db, bits: int, seed: int, topk: int = 50) -> tuple[float, float]:
    """mAP@``topk`` (i2t, t2i) of one draw of random codes for two labelled datasets: the demo's chance level."""
    from cmhash.metrics import mean_average_precision

    qi, qt, di, dt = random_codes(len(query), len(db), bits, (seed, bits, 7))
    return (
        mean_average_precision(qi, dt, query.labels, db.labels, topk=topk),
        mean_average_precision(qt, di, query.labels, db.labels, topk=topk),
    )


def draw_key(seed: int, bits: int, draw: int) -> tuple[int, int, int, int]:
    """Seed of one draw: depends only on (seed, bits, draw), so reruns and other tools give the same codes."""
    return (int(seed), int(bits), 7, int(draw))


def chance_report(q_labels, db_labels, bits: int, seed: int, draws: int, protocol: dict[str, Any]) -> dict[str, Any]:
    """Mean and std over ``draws`` of mAP@K and mAP@all both ways for random codes, under ``protocol``."""
    from cmhash import metrics
    from cmhash.experiments.evaluation import MAP_TOPK

    opts = {k: protocol[k] for k in ("denominator", "normalize", "tie_break", "radius") if protocol.get(k) is not None}
    topk = protocol.get("topk", MAP_TOPK)
    key_k = "map@all" if topk is None else f"map@{topk}"
    values: dict[str, dict[str, list[float]]] = {t: {key_k: [], "map@all": []} for t in TASKS}
    for d in range(draws):
        codes = random_codes(len(q_labels), len(db_labels), bits, draw_key(seed, bits, d))
        rep = metrics.cross_modal_report(*codes, q_labels, db_labels, topk=topk, full_map=True, curves=False, **opts)
        for t in TASKS:
            for name in values[t]:
                values[t][name].append(float(rep[t][name]))
    out: dict[str, Any] = {}
    for t in TASKS:
        out[t] = {
            name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "draws": v}
            for name, v in values[t].items()
        }
    return out


def split_fingerprint(split) -> str:
    """sha256 (16 hex) of the query and database indices: the same for every run that evaluated on this split."""
    h = hashlib.sha256()
    for part in (split.query, split.database):
        a = np.ascontiguousarray(np.asarray(part, dtype=np.int64))
        h.update(str(a.size).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _runs_by_dataset_seed(root: Path) -> dict[tuple[str, int], list[tuple[Any, dict[str, Any]]]]:
    from cmhash.experiments import grid as G
    from cmhash.io import read_json

    out: dict[tuple[str, int], list] = {}
    for cell in G.scan(root):
        m = read_json(cell.run_dir(root) / "metrics.json")
        out.setdefault((cell.dataset, cell.seed), []).append((cell, m))
    return out


def check_same_split(root: Path, dataset: str, seed: int, runs) -> dict[str, Any]:
    """The split record all runs of (dataset, seed) share; :class:`SplitMismatchError` naming two that differ."""
    first_cell, first = runs[0]
    want = (first.get("protocol") or {}).get("split")
    for cell, m in runs[1:]:
        have = (m.get("protocol") or {}).get("split")
        if have != want:
            raise SplitMismatchError(
                f"{dataset} seed {seed}: runs disagree on the test split, so no single chance level applies: "
                f"{first_cell.run_dir(root)} recorded {want}, {cell.run_dir(root)} recorded {have}. "
                "Same seed must mean same split; retrain or move the odd run out of the grid folder; nothing written"
            )
    return want or {}


def _source_run(root: Path, runs) -> tuple[Any, dict[str, Any]]:
    """A run of the (dataset, seed) whose finished checkpoint can rebuild the split (first in a stable order)."""
    for cell, m in sorted(runs, key=lambda cm: str(cm[0].run_dir(root))):
        if (cell.run_dir(root) / "checkpoint.pt").is_file():
            return cell, m
    raise DataError(f"{runs[0][0].dataset} seed {runs[0][0].seed}: no run has a checkpoint.pt to rebuild the split from")


def rebuild_split(run_dir: Path, m: dict[str, Any], *, data_root=None, features=None, with_data: bool = False):
    """``(query_labels, db_labels, split)`` of a run, from its checkpoint (the path backfill takes), sizes checked;
    ``with_data=True`` adds the query and database datasets (for :func:`feature_information`)."""
    from cmhash.experiments.backfill import rebuild_test_split

    _, split, q, d = rebuild_test_split(run_dir, m, data_root=data_root, features=features)
    for t in TASKS:
        for size, n in (("n_queries", len(q)), ("n_database", len(d))):
            rec = (m.get(t) or {}).get(size)
            if rec is not None and rec != n:
                raise DataError(f"{run_dir}: {t} {size} recorded {rec}, the rebuilt split has {n}; the data or split changed, nothing written")
    return (q.labels, d.labels, split, q, d) if with_data else (q.labels, d.labels, split)


FEATURE_TASKS = {"i2i": "image_features", "t2t": "text_features"}


def feature_information(q, d, topk: int | None) -> dict[str, float]:
    """mAP@``topk`` of each modality's own input features ranked by cosine (``i2i``, ``t2t``), for the
    modalities whose vectors the datasets hold (a backbone-mode or token-text run's source has none)."""
    from cmhash.experiments.evaluation import MAP_TOPK
    from cmhash.metrics import map_at_k_dense

    out = {}
    for task, attr in FEATURE_TASKS.items():
        qf, df = getattr(q, attr, None), getattr(d, attr, None)
        if qf is None or df is None:
            continue
        dense = [np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64) for x in (qf, df)]
        out[task] = map_at_k_dense(*dense, q.labels, d.labels, topk or MAP_TOPK)["value"]
    return out


def dataset_chance(root: Path, dataset: str, draws: int = 5, *, data_root=None, features=None, log: Callable[[str], None] = print) -> Path | None:
    """Compute and write ``root/<dataset>/chance.json`` for every (bits, seed) of the finished runs; None for pair-identity data."""
    from cmhash.experiments.backfill import is_pair_identity
    from cmhash.experiments.run import code_version
    from cmhash.io import write_json

    root = Path(root)
    groups = {k: v for k, v in _runs_by_dataset_seed(root).items() if k[0] == dataset}
    if not groups:
        raise DataError(f"{root}: no finished run of dataset '{dataset}'")
    if any(is_pair_identity(m) for runs in groups.values() for _, m in runs):
        log(f"skipped {dataset}: pair-identity runs (Recall@K), no mAP chance level")
        return None
    splits = {seed: check_same_split(root, dataset, seed, runs) for (_, seed), runs in sorted(groups.items())}  # all checked before any work
    entries = []
    feature_entries = []
    feature_cache: dict[str, dict[str, float]] = {}
    protocol_out: dict[str, Any] | None = None
    for (_, seed), runs in sorted(groups.items()):
        cell, m = _source_run(root, runs)
        t0 = time.perf_counter()
        q_labels, db_labels, split, q, d = rebuild_split(cell.run_dir(root), m, data_root=data_root, features=features, with_data=True)
        protocol = {k: (m.get("protocol") or {}).get(k) for k in PROTOCOL_KEYS}
        protocol["relevance"] = (m.get("protocol") or {}).get("relevance")
        protocol_out = protocol_out or protocol
        load_s = time.perf_counter() - t0
        fingerprint = split_fingerprint(split)
        if fingerprint not in feature_cache:  # fixed splits (Wiki's official one) are the same for every seed
            feature_cache[fingerprint] = feature_information(q, d, protocol.get("topk"))
        info = feature_cache[fingerprint]
        if info:
            feature_entries.append({"seed": seed, **info, "split_fingerprint": fingerprint,
                                    "source_run": str(cell.run_dir(root).relative_to(root))})
            log(f"{dataset} seed {seed}: input features, same-modality cosine "
                + ", ".join(f"{t} {v:.4f}" for t, v in info.items()))  # fmt: skip
        for bits in sorted({c.bits for c, _ in runs}):
            t1 = time.perf_counter()
            res = chance_report(q_labels, db_labels, bits, seed, draws, protocol)
            secs = time.perf_counter() - t1
            entries.append(
                {
                    "bits": bits,
                    "seed": seed,
                    **res,
                    "n_queries": int(len(q_labels)),
                    "n_database": int(len(db_labels)),
                    "protocol": protocol,
                    "split": splits[seed],
                    "split_fingerprint": fingerprint,
                    "source_run": str(cell.run_dir(root).relative_to(root)),
                    "seconds": secs,
                }
            )
            key = f"map@{protocol['topk']}" if protocol.get("topk") is not None else "map@all"
            log(f"{dataset} {bits} bits seed {seed}: random codes {key} i2t {res['i2t'][key]['mean']:.4f} t2i {res['t2i'][key]['mean']:.4f} "
                f"({secs:.1f} s for {draws} draws; split rebuilt in {load_s:.1f} s)")  # fmt: skip
    out = {
        "what": "chance level: independent uniform random ±1 codes per item and modality, evaluated like the runs",
        "dataset": dataset,
        "draws": draws,
        "seeding": "numpy default_rng([seed, bits, 7, draw])",
        "protocol": protocol_out,
        "code": code_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "entries": entries,
        "features": {
            "what": "each modality's own input features ranked by cosine similarity (real-valued, no hashing): i2i = image features "
                    "against image features, t2t = text features against text features; same mAP definition and split",
            "entries": feature_entries,
        },
    }
    return write_json(root / dataset / CHANCE_JSON, out)


def plan_chance(root: Path, datasets: Sequence[str] | None = None) -> list[str]:
    """The datasets to score under ``root`` (every one with finished runs, or those named), after
    checking every (dataset, seed)'s split: a mismatch anywhere refuses before anything is written."""
    from cmhash.errors import MissingFileError

    groups = _runs_by_dataset_seed(Path(root))
    found = sorted({d for d, _ in groups})
    wanted = list(datasets) if datasets else found
    missing = [d for d in wanted if d not in found]
    if missing or not wanted:
        raise MissingFileError(f"{root}: no finished runs of {', '.join(missing) or 'any dataset'} (found: {', '.join(found) or 'none'})")
    for (d, seed), runs in sorted(groups.items()):
        if d in wanted:
            check_same_split(Path(root), d, seed, runs)
    return wanted


def load_chance(root: Path, dataset: str) -> dict[str, Any] | None:
    """``root/<dataset>/chance.json`` when present (the report's chance row), else None."""
    from cmhash.io import read_json

    path = Path(root) / dataset / CHANCE_JSON
    return read_json(path) if path.is_file() else None


__all__ = [
    "CHANCE_JSON", "FEATURE_TASKS", "SplitMismatchError", "chance_report", "feature_information", "check_same_split", "dataset_chance", "draw_key",
    "load_chance", "plan_chance", "random_codes", "random_codes_map", "rebuild_split", "split_fingerprint",
]  # fmt: skip
