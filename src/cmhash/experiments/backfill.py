"""Add metrics that older runs did not record (mAP over the whole ranking) from their own checkpoints.

Runs trained before ``map@all`` was part of the evaluation lack ``i2t.map@all`` / ``t2i.map@all``,
so the report cannot compare them with newer runs on that protocol. Retraining them would cost
hours and change nothing else; the checkpoint already holds the model that made the codes. For
each finished cell this module:

1. skips cells being trained (``train.lock`` of a live process, or the run folder's write lock),
   cells without a finished checkpoint, and pair-identity runs (Recall@K: no mAP);
2. rebuilds the run's dataset, features and test split from what its checkpoint records (the
   path ``cmhash encode --checkpoint RUN`` takes), encodes queries and database;
3. evaluates with :func:`cmhash.metrics.cross_modal_report` under the protocol options the run
   recorded (top-K, denominator, normalisation, tie-break, radius) with ``full_map=True``, as
   :func:`cmhash.experiments.evaluation.evaluate_codes` does at training time;
4. refuses (writes nothing) when the recomputed mAP@K differs from the recorded one by more than
   :data:`TOLERANCE`, or the query/database sizes differ: then the codes or the split were not the
   ones the run was evaluated on, and a "backfilled" number would describe another model;
5. adds only the missing keys, plus a ``backfilled`` record (code version, date, checkpoint
   sha256, the map@K check), and rewrites ``metrics.json`` atomically: old or new, never partial.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from cmhash.errors import CmhashError, DataError, LockedError
from cmhash.experiments import grid as G

#: Metrics this module can add (those ``evaluate_codes`` records that older runs may lack).
BACKFILLABLE = ("map@all",)
#: Largest accepted difference between the recorded and the recomputed mAP@K.
TOLERANCE = 1e-6
TASKS = ("i2t", "t2i")
STATUSES = ("backfilled", "complete", "skipped", "failed")


@dataclass
class Outcome:
    """What happened to one run folder: ``status`` is one of :data:`STATUSES` (dry run: ``would backfill``)."""

    run_dir: Path
    status: str
    message: str = ""
    added: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class MismatchError(DataError):
    """The rebuilt codes do not reproduce the run's recorded mAP@K: nothing was written."""


def check_metrics(names: Sequence[str]) -> list[str]:
    names = [n.strip().lower() for n in names if n.strip()]
    bad = [n for n in names if n not in BACKFILLABLE]
    if bad or not names:
        raise CmhashError(f"--metrics: cannot backfill {', '.join(bad) or 'nothing'} (known: {', '.join(BACKFILLABLE)})")
    return list(dict.fromkeys(names))


def missing(m: dict[str, Any], names: Sequence[str]) -> list[str]:
    """``["i2t map@all", ...]``: the requested metrics the run's metrics.json lacks."""
    return [f"{t} {n}" for n in names for t in TASKS if n not in (m.get(t) or {})]


def is_pair_identity(m: dict[str, Any]) -> bool:
    """Flickr8k-style runs report Recall@K (relevance = same pair), which has no mAP to add."""
    i2t = m.get("i2t") or {}
    return not any(k.startswith("map@") for k in i2t) and any(k.startswith("recall@") for k in i2t)


def _live_train_lock(run_dir: Path) -> int | None:
    lock = run_dir / G.LOCK
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and G._pid_alive(pid) else None


def _per_dataset(value: dict[str, str] | str | None, dataset: str) -> str | None:
    if isinstance(value, dict):
        return value.get(dataset, value.get("*"))
    return value


_DATASETS: dict[str, Any] = {}


def _dataset(ckpt, data_root, features):
    """``checkpoint_dataset`` with a small per-process cache: 150 runs share a handful of datasets."""
    from cmhash.inference.inputs import checkpoint_dataset

    rec = ckpt.meta.get("dataset") or {}
    spec = getattr(ckpt.method, "spec", None)
    modes = [getattr(spec, "image_mode", "features"), getattr(spec, "text_mode", "features")]
    key = json.dumps([rec.get("name"), data_root or rec.get("root"), rec.get("source_options"), features or rec.get("features_file"), modes], sort_keys=True, default=str)
    if key not in _DATASETS:
        while len(_DATASETS) >= 3:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = checkpoint_dataset(ckpt, None, data_root, features=features)
    return _DATASETS[key]


def rebuild_test_split(run_dir: Path, m: dict[str, Any], *, data_root=None, features=None):
    """``(checkpoint, split, queries, database)`` of a finished run, rebuilt from its checkpoint (the
    path ``cmhash encode --checkpoint`` takes); labelled data only. Shared by backfill and chance."""
    from cmhash.inference import load_checkpoint
    from cmhash.inference.inputs import checkpoint_split

    ckpt = load_checkpoint(run_dir)
    if not ckpt.finished:
        raise DataError(f"{run_dir}: its checkpoint is not a finished run (epoch {ckpt.epoch} of {ckpt.epochs})")
    dataset = (ckpt.meta.get("dataset") or {}).get("name") or m.get("dataset")
    ds = _dataset(ckpt, _per_dataset(data_root, dataset), _per_dataset(features, dataset))
    split = checkpoint_split(ckpt, ds)
    q, d = ds.subset(split.query), ds.subset(split.database)
    if q.labels is None:
        raise DataError(f"{run_dir}: dataset '{ds.name}' has no labels, so mAP cannot be computed")
    return ckpt, split, q, d


def recompute(run_dir: Path, m: dict[str, Any], *, data_root=None, features=None):
    """``(report, checkpoint)``: the run's evaluation redone from its checkpoint under its recorded protocol (``full_map=True``)."""
    from cmhash import metrics
    from cmhash.experiments.evaluation import MAP_TOPK

    ckpt, _, q, d = rebuild_test_split(run_dir, m, data_root=data_root, features=features)
    codes = [ckpt.encode(part, mod) for part, mod in ((q, "image"), (q, "text"), (d, "image"), (d, "text"))]
    p = m.get("protocol") or {}
    opts = {k: p[k] for k in ("denominator", "normalize", "tie_break", "radius") if p.get(k) is not None}
    report = metrics.cross_modal_report(*codes, q.labels, d.labels, topk=p.get("topk", MAP_TOPK), full_map=True, curves=False, **opts)
    return report, ckpt


def verify(run_dir: Path, m: dict[str, Any], new: dict[str, Any], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Refuse unless the recomputed mAP@K and sizes equal the recorded ones: the same codes and split were rebuilt."""
    topk = (m.get("protocol") or {}).get("topk", 50)
    key = "map@all" if topk is None else f"map@{topk}"
    check: dict[str, Any] = {"metric": key, "tolerance": tolerance}
    problems = []
    for t in TASKS:
        old, now = (m.get(t) or {}).get(key), (new.get(t) or {}).get(key)
        if not isinstance(old, (int, float)):
            problems.append(f"{t} {key} is not recorded, so the rebuilt codes cannot be checked")
            continue
        check[t] = {"recorded": float(old), "recomputed": float(now), "difference": abs(float(now) - float(old))}
        if abs(float(now) - float(old)) > tolerance:
            problems.append(f"{t} {key} recorded {old:.8f}, recomputed {now:.8f} (difference {abs(now - old):.2e} > {tolerance:g})")
        for size in ("n_queries", "n_database"):
            a, b = (m.get(t) or {}).get(size), (new.get(t) or {}).get(size)
            if a is not None and a != b:
                problems.append(f"{t} {size} recorded {a}, rebuilt split has {b}")
    if problems:
        raise MismatchError(
            f"{run_dir}: refusing to backfill: the checkpoint and data do not reproduce the recorded evaluation ("
            + "; ".join(problems)
            + "). The checkpoint, its features or the split changed since the run was evaluated; metrics.json left unchanged"
        )
    return check


def backfill_run(
    run_dir, names: Sequence[str] = BACKFILLABLE, *, data_root=None, features=None, dry_run: bool = False, tolerance: float = TOLERANCE
) -> Outcome:
    """Backfill one run folder (see the module docstring); returns its :class:`Outcome`, raising nothing for a bad run."""
    from cmhash.io import read_json, write_lock

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    names = check_metrics(names)
    try:
        m = read_json(run_dir / "metrics.json")
    except CmhashError as exc:
        return Outcome(run_dir, "failed", str(exc))
    if is_pair_identity(m):
        return Outcome(run_dir, "skipped", "pair-identity run (Recall@K): no mAP to add")
    want = missing(m, names)
    if not want:
        return Outcome(run_dir, "complete")
    pid = _live_train_lock(run_dir)
    if pid:
        return Outcome(run_dir, "skipped", f"being trained (train.lock held by live process {pid})")
    if not (run_dir / "checkpoint.pt").is_file():
        return Outcome(run_dir, "skipped", "no checkpoint.pt: cannot rebuild its codes")
    if dry_run:
        return Outcome(run_dir, "would backfill", ", ".join(want))
    try:
        with write_lock(run_dir, "training run", is_dir=True):
            m = read_json(run_dir / "metrics.json")  # re-read under the lock: another writer may have finished
            want = missing(m, names)
            if not want:
                return Outcome(run_dir, "complete")
            return _backfill_locked(run_dir, m, names, want, data_root, features, t0, tolerance)
    except LockedError as exc:
        return Outcome(run_dir, "skipped", f"being written by another process ({exc})")
    except CmhashError as exc:
        return Outcome(run_dir, "failed", str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # a broken run must not stop the other 149; the message names it
        return Outcome(run_dir, "failed", f"{run_dir}: {type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)


def _backfill_locked(run_dir: Path, m: dict[str, Any], names, want, data_root, features, t0: float, tolerance: float = TOLERANCE) -> Outcome:
    from cmhash.experiments.run import code_version
    from cmhash.inference.provenance import checkpoint_sha256
    from cmhash.io import write_json

    new, ckpt = recompute(run_dir, m, data_root=data_root, features=features)
    check = verify(run_dir, m, new, tolerance)
    added: dict[str, float] = {}
    out = json.loads(json.dumps(m))  # deep copy: existing numbers are never touched
    for item in want:
        task, name = item.split(" ", 1)
        if name not in new.get(task, {}):
            raise DataError(f"{run_dir}: the evaluation gave no {item}")
        out[task][name] = new[task][name]
        added[item] = float(new[task][name])
    record = dict(out.get("backfilled") or {})
    stamp = {
        "code": code_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint_sha256": checkpoint_sha256(ckpt.path),
        "tasks": sorted({i.split(" ", 1)[0] for i in want}),
        "protocol": {k: new["protocol"].get(k) for k in ("topk", "denominator", "normalize", "tie_break")},
        "check": check,
    }
    for name in names:
        if any(i.endswith(" " + name) for i in want):
            record[name] = stamp
    out["backfilled"] = record
    write_json(run_dir / "metrics.json", out)
    return Outcome(run_dir, "backfilled", ", ".join(f"{k} {v:.4f}" for k, v in added.items()), added, time.perf_counter() - t0)


def select(root: Path, datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> list[Path]:
    """Run folders of the finished cells under ``root`` (:func:`grid.scan`), optionally filtered."""
    cells = G.scan(Path(root))
    return [c.run_dir(root) for c in cells if (not datasets or c.dataset in datasets) and (not methods or c.method in methods)]


def _worker(args) -> Outcome:
    import torch

    torch.set_num_threads(1)
    run_dir, names, data_root, features, dry_run, tolerance = args
    return backfill_run(run_dir, names, data_root=data_root, features=features, dry_run=dry_run, tolerance=tolerance)


def backfill(
    run_dirs: Sequence[Path],
    names: Sequence[str] = BACKFILLABLE,
    *,
    data_root=None,
    features=None,
    jobs: int = 1,
    dry_run: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    tolerance: float = TOLERANCE,
) -> list[Outcome]:
    """Backfill every run folder, ``jobs`` processes at a time; logs one line per run that is not already complete."""
    names = check_metrics(names)
    tasks = [(Path(r), names, data_root, features, dry_run, tolerance) for r in run_dirs]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="backfill", unit="run")
        log = bar.write
    outcomes: list[Outcome] = []

    def done(o: Outcome) -> None:
        outcomes.append(o)
        if o.status != "complete":
            log(f"{o.status}: {o.run_dir}" + (f" ({o.seconds:.1f} s)" if o.status == "backfilled" else "") + (f": {o.message}" if o.message else ""))
        if bar is not None:
            bar.update(1)

    try:
        if jobs <= 1 or len(tasks) <= 1:
            for t in tasks:
                done(_worker(t))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # runs of one dataset together, so each worker's dataset cache serves consecutive runs
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                for o in pool.map(_worker, tasks, chunksize=max(1, min(8, len(tasks) // (4 * jobs)))):
                    done(o)
    finally:
        if bar is not None:
            bar.close()
    return outcomes


def summary(outcomes: Sequence[Outcome], dry_run: bool = False) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in (*STATUSES, "would backfill")}
    secs = [o.seconds for o in outcomes if o.status == "backfilled"]
    first = f"would backfill {counts['would backfill']}" if dry_run else f"backfilled {counts['backfilled']}"
    line = f"{first} / already complete {counts['complete']} / skipped {counts['skipped']} / failed {counts['failed']} (of {len(outcomes)} runs)"
    if secs:
        line += f"; {sum(secs) / len(secs):.1f} s per backfilled run ({sum(secs):.0f} s in all)"
    return line


__all__ = ["BACKFILLABLE", "TOLERANCE", "MismatchError", "Outcome", "backfill", "backfill_run", "check_metrics", "missing", "rebuild_test_split", "recompute", "select", "summary", "verify"]
