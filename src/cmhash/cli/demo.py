"""`cmhash demo`: the main job (data -> split -> train -> codes -> mAP) on the built-in synthetic set.

It needs no download, no server and no real data: the benchmark is generated on the spot by the
``synthetic`` source (MIRFlickr-shaped, clearly synthetic), split with the DJSRH protocol scaled
to its size, and the best available method is trained and evaluated next to random codes.

"Best available" is the first name of :data:`METHOD_PREFERENCE` that is registered in
:data:`cmhash.methods.METHODS` (and whose optional dependencies are installed); its settings come
from the ``synthetic`` section of ``presets/<method>.yaml``. When DJSRH lands it is picked up
automatically.

Each code length is trained and evaluated by the one run of cmhash
(:func:`cmhash.experiments.run.train_and_evaluate`, as ``cmhash train``), which writes
``OUT/<method>-<bits>bits/{metrics.json,checkpoint.pt}``; the demo adds random codes as the chance
level and the summary. A method declares the packages it needs in ``requires``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from cmhash.validation import positive_int_arg, seed_arg
from cmhash.cli._common import add_parser, format_table

#: Methods the demo tries, best first; the first one registered (with its dependencies) is used.
METHOD_PREFERENCE = ("djsrh", "cmfh")
DEFAULT_BITS = (32, 64)
DEFAULT_N = 8000
#: The synthetic source's default signal (kept equal to cmhash.data.sources.synthetic.DEFAULTS; tested).
DEFAULT_SIGNAL = 0.5
TOPK = 50
#: The DJSRH MIRFlickr protocol (2,000 queries / 5,000 training pairs) is scaled down below this n.
FULL_PROTOCOL_N = 8000
RESULTS_FORMAT = "cmhash-demo-results"

DESCRIPTION = """\
Train and evaluate cross-modal hashing end to end on a built-in SYNTHETIC benchmark, in under a
minute on a laptop CPU, with no download and no server.

What it does:
  1. generates the synthetic MIRFlickr-shaped set (24 multi-label classes, 512-d non-negative
     CNN-like image features, 1,000-tag bag-of-words; --signal sets how much the modalities
     reveal about the classes: 0 = nothing, 1 = strong);
  2. splits it with the DJSRH protocol (per-label greedy queries/training pairs; 2,000 queries
     and 5,000 training pairs at the default size, scaled down for smaller --n);
  3. trains the best available method (first registered of: %s; or --method) with its
     `synthetic` preset, once per code length;
  4. encodes queries and database, and reports mAP@50 (DJSRH definition) image->text and
     text->image, next to random codes as the chance level;
  5. prints a markdown table and writes results.json (protocol, split, settings, seconds) and
     split.json into --out.

The numbers describe synthetic data only; see docs/demo.md. For real data use `cmhash data`,
`cmhash features`, `cmhash train` and `cmhash eval`.
""" % ", ".join(METHOD_PREFERENCE)

EPILOG = """\
examples:
  cmhash demo                                   default run (under a minute on 2 cores)
  cmhash demo --bits 16 32 64 128 --out runs/demo-all-bits
  cmhash demo --signal 0                        no signal: every method scores like random codes
  cmhash demo --signal 1 --method cmfh          strong signal, force CMFH
  cmhash demo --n 2000 --bits 16                a smaller, faster run
"""


def register(sub) -> None:
    p = add_parser(sub, "demo", help="train + evaluate on the built-in synthetic benchmark (no download)", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--bits", type=positive_int_arg, nargs="+", default=list(DEFAULT_BITS), metavar="B", help="code lengths to train and evaluate")
    p.add_argument("--method", default="auto", help=f"hashing method; 'auto' = first registered of {', '.join(METHOD_PREFERENCE)}")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the synthetic data, the split, the method and the random codes")
    p.add_argument("--n", type=positive_int_arg, default=DEFAULT_N, help="number of synthetic image-text pairs (at least 200)")
    p.add_argument("--signal", type=float, default=DEFAULT_SIGNAL, help="strength of the class / cross-modal signal in [0, 1]")
    p.add_argument("--threads", type=positive_int_arg, default=1, help="CPU threads for numerical work (1 is fastest on a busy small machine)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for results.json and split.json")
    p.set_defaults(func=_main)


# ---------------------------------------------------------------------------- pieces
def pick_method(requested: str = "auto", log: Callable[[str], None] = print) -> str:
    """The method to train: ``requested`` if given, else the first available of METHOD_PREFERENCE."""
    from cmhash.errors import CmhashError
    from cmhash.methods import METHODS

    if requested and requested != "auto":
        METHODS.get(requested)  # raises with the list of known names
        return requested.lower()
    for name in METHOD_PREFERENCE:
        if name not in METHODS:
            continue
        missing = _missing_dependency(_method_class(name))
        if missing:
            log(f"  ({name} is registered but needs the package '{missing}', which is not installed; trying the next method)")
            continue
        return name
    raise CmhashError(f"no demo method is available (looked for {', '.join(METHOD_PREFERENCE)}; registered: {', '.join(METHODS.names()) or 'none'})")


def _missing_dependency(cls) -> str | None:
    """The first package a method needs that is not installed (deep methods need torch)."""
    import importlib.util

    for package in cls.requires:
        if importlib.util.find_spec(package) is None:
            return package
    return None


def _method_class(name: str):
    from cmhash.methods import METHODS

    return METHODS.get(name)


def method_preset(name: str, dataset: str = "synthetic"):
    """``(hparams, run_settings, provenance)`` of the method for ``dataset`` (its default section if it has none)."""
    from cmhash.experiments.settings import resolve_settings

    return resolve_settings(name, dataset)


def split_params(n: int) -> dict[str, int]:
    """The DJSRH MIRFlickr protocol (160/400 then 80/200 per label; 2,000 / 5,000) scaled to n pairs."""
    num_query = min(2000, n // 4)
    num_train = min(5000, (n - num_query) * 5 // 6)
    fq, ft = num_query / 2000, num_train / 5000
    return dict(
        first_query=max(1, round(160 * fq)),
        first_train=max(1, round(400 * ft)),
        per_label_query=max(1, round(80 * fq)),
        per_label_train=max(1, round(200 * ft)),
        num_query=num_query,
        num_train=num_train,
    )


def random_codes_map(query, db, bits: int, seed: int) -> tuple[float, float]:
    """mAP@50 of independent uniformly random codes: the chance level of the protocol (shared with `reproduce chance`)."""
    from cmhash.experiments.chance import random_codes_map as chance_map

    return chance_map(query, db, bits, seed, topk=TOPK)


class _Bar:
    """A tqdm bar fed by ``progress(step, total, value)`` callbacks (to stderr)."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, step: int, total: int, value: Any = None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="it", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.bar.update(step - self.bar.n)
        if isinstance(value, float):
            self.bar.set_postfix_str(f"{value:.4g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_demo(
    *,
    bits=DEFAULT_BITS,
    method: str = "auto",
    seed: int = 0,
    n: int = DEFAULT_N,
    signal: float = DEFAULT_SIGNAL,
    threads: int = 1,
    out: str | Path | None = Path("runs/demo"),
    log: Callable[[str], None] = print,
    progress_bars: bool = True,
) -> dict[str, Any]:
    """Run the demo and return the results record (also written to ``out/results.json``)."""
    import numpy as np

    from cmhash import __version__
    from cmhash.data import load_dataset
    from cmhash.data.splits import make_split
    from cmhash.errors import CmhashError
    from cmhash.experiments.run import train_and_evaluate
    from cmhash.io import write_json
    from cmhash.threads import limit_threads

    t_start = time.perf_counter()
    stamp = lambda: f"[{time.perf_counter() - t_start:6.1f}s]"  # noqa: E731
    bits = [int(b) for b in bits]
    if not bits or min(bits) < 1:
        raise CmhashError(f"--bits must be positive integers, got {bits}")
    if n < 200:
        raise CmhashError(f"--n must be at least 200 pairs for a meaningful split, got {n}")

    name = pick_method(method, log)
    cls = _method_class(name)
    if getattr(cls, "deep", False):
        import torch  # noqa: F401  (loaded first so that limit_threads also limits torch)
    hparams, run_settings, prov = method_preset(name)
    log(f"{stamp()} method: {name} (settings: presets/{name}.yaml, {'synthetic section' if prov['dataset_preset'] else 'default section'})")

    seconds: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    with limit_threads(threads):
        t = time.perf_counter()
        ds = load_dataset("synthetic", n=n, seed=seed, signal=signal)
        seconds["data"] = time.perf_counter() - t
        p = ds.meta["params"]
        log(
            f"{stamp()} synthetic data: {len(ds)} pairs, {p['num_labels']} classes, image {ds.image_features.shape[1]}-d, "
            f"tags {ds.text_features.shape[1]}-d, signal {p['signal']}, seed {seed} (SYNTHETIC, see docs/demo.md)"
        )
        t = time.perf_counter()
        split = make_split(ds, "djsrh", seed=seed, **split_params(n))
        seconds["split"] = time.perf_counter() - t
        sz = split.sizes()
        log(f"{stamp()} split (djsrh protocol, seed {seed}): {sz['query']} queries, {sz['database']} database, {sz['train']} training pairs")
        train, query, db = ds.subset(split.train), ds.subset(split.query), ds.subset(split.database)

        hparams_used: dict[int, dict[str, Any]] = {}
        metric_protocol = None
        scratch = None
        if out is None:
            import tempfile

            scratch = tempfile.TemporaryDirectory(prefix="cmhash-demo-")
        runs_dir = Path(scratch.name) if scratch is not None else Path(out)
        try:
            for b in bits:
                log(f"{stamp()} {name} {b} bits: training on {len(split.train)} pairs ...")
                bar = _Bar(f"{name} {b} bits", enabled=progress_bars)
                try:
                    m = train_and_evaluate(
                        name, ds, split, b, hparams, out_dir=runs_dir / f"{name}-{b}bits", seed=seed, run=run_settings,
                        provenance=prov, progress=bar, threads=threads, tensorboard=False,
                    )  # fmt: skip
                finally:
                    bar.close()
                hparams_used[b] = dict(m["hparams"])
                i2t, t2i = m["i2t"]["map@50"], m["t2i"]["map@50"]
                metric_protocol = m["protocol"]
                query, db = ds.subset(split.query), ds.subset(split.database)
                r_i2t, r_t2i = random_codes_map(query, db, b, seed)
                log(
                    f"{stamp()} {name} {b} bits: mAP@{TOPK} image->text {i2t:.4f}, text->image {t2i:.4f} "
                    f"(train {m['train_seconds']:.1f}s, random codes {r_i2t:.4f} / {r_t2i:.4f})"
                )
                rows.append(dict(method=name, bits=b, i2t=i2t, t2i=t2i, train_seconds=m["train_seconds"], encode_seconds=None, eval_seconds=m["eval_seconds"]))
                rows.append(dict(method="random codes", bits=b, i2t=r_i2t, t2i=r_t2i, train_seconds=None, encode_seconds=None, eval_seconds=None))
        finally:
            if scratch is not None:
                scratch.cleanup()

    seconds["total"] = time.perf_counter() - t_start
    table = format_table(
        ["method", "bits", f"image->text mAP@{TOPK}", f"text->image mAP@{TOPK}", "train s"],
        [[r["method"], r["bits"], r["i2t"], r["t2i"], "-" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"] for r in rows],
    )
    record: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cmhash_version": __version__,
        "options": {"bits": bits, "method": method, "seed": seed, "n": n, "signal": signal, "threads": threads, "out": None if out is None else str(out)},
        "data": {
            "name": "synthetic",
            "synthetic": True,
            "description": ds.meta["description"],
            "params": ds.meta["params"],
            "pairs": len(ds),
            "image_dim": int(ds.image_features.shape[1]),
            "text_dim": int(ds.text_features.shape[1]),
        },
        "protocol": {
            "split": split.describe(),
            "split_file": "split.json",
            "metric": {
                "name": f"mAP@{TOPK}",
                "topk": TOPK,
                "definition": "DJSRH calculate_top_map: AP over the relevant items inside the top K, mean over all queries",
                "relevance": "query and database item share at least one class",
                "ties": "stable, by database index",
                "image->text": "image query codes against text database codes",
                "text->image": "text query codes against image database codes",
                "options": metric_protocol,  # as recorded by cmhash.metrics
            },
            "random_codes": "independent uniform +-1 codes per item and modality (seeded): the chance level",
        },
        "method": {
            "name": name,
            "picked_by": "--method" if method and method != "auto" else f"first available of {list(METHOD_PREFERENCE)}",
            "preset_source": prov.get("source") or prov.get("default_source"),
            "runs": None if out is None else {str(b): f"{name}-{b}bits" for b in bits},
            "hparams": {str(b): hp for b, hp in hparams_used.items()},
        },
        "results": rows,
        "seconds": seconds,
        "environment": {
            "threads": threads,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "table": table,
    }
    if out is not None:
        out = Path(out)
        split.save(out / "split.json")
        write_json(out / "results.json", record)
    log("")
    log(f"Synthetic benchmark ({len(ds)} pairs, signal {ds.meta['params']['signal']}, seed {seed}); {sz['query']} queries, {sz['database']} database:")
    log("")
    log(table)
    log("")
    where = f"; results in {out / 'results.json'}" if out is not None else ""
    log(f"total {seconds['total']:.1f}s{where}")
    return record


def _main(args: argparse.Namespace) -> int:
    run_demo(bits=args.bits, method=args.method, seed=args.seed, n=args.n, signal=args.signal, threads=args.threads, out=args.out)
    return 0
