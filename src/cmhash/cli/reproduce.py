"""`cmhash reproduce`: run the paper's experiments for any registered methods over several seeds, and report them.

* ``table1``: methods (``--methods a,b`` or ``all``) on one dataset at several code lengths
  (paper Table 1), then the report of everything in ``--out``;
* ``ablation``: a method's variants (``presets/<method>_variants.yaml``; DJSRH: the paper's Table 2);
* ``report``: the tables, CSV and plots from whatever runs exist in ``--out`` (and with ``--doc``
  the results document), training nothing;
* ``backfill``: add metrics older runs did not record (mAP over the whole ranking) from their
  checkpoints, checked against the mAP@50 they did record; trains nothing;
* ``chance``: the chance level of the grid (random codes on each (dataset, seed)'s own split, per
  code length), written to ``OUT/<dataset>/chance.json`` for the report's "random codes" row;
* ``results``: the grids ``docs/results.md`` reports (Wiki and MIRFlickr Table 1 for ``--methods``,
  the variants of those that have them), then writes that document.

Each run is its own ``cmhash train`` process in ``OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>``;
runs whose ``metrics.json`` exists are skipped, runs another process is training are left to it,
and interrupted runs resume, so grids of different methods and invocations share one folder and
can be stopped and restarted. Tables give mean ± std over seeds beside the paper's numbers and
the independent reference's (from ``../shared/reference``).
"""

from __future__ import annotations

from cmhash.validation import device_arg, positive_int_arg
from cmhash.cli._common import add_parser

EPILOG_TABLE1 = """\
examples:
  cmhash reproduce table1 --methods djsrh,cmfh --dataset wiki --data-root ../shared/data/wikipedia --seeds 0,1,2 --out runs/table1
  cmhash reproduce table1 --methods all --dataset mirflickr --data-root ../shared/data/mirflickr25k \\
      --bits 16,32,64,128 --seeds 0,1,2 --jobs 2 --out runs/table1
  cmhash reproduce report --out runs/table1          # tables from the runs that exist, train nothing
"""
EPILOG_REPORT = """\
examples:
  cmhash reproduce report --out runs/table1                       # runs/table1/table1.{md,csv}, <dataset>/curves.png
  cmhash reproduce report --out runs/table1 --doc docs/results.md --seeds 0,1,2 --against cmfh   # + paired deltas vs CMFH
"""
EPILOG_BACKFILL = """\
Runs trained before mAP@all was recorded lack i2t/t2i map@all in metrics.json. For every finished
run under --out that lacks a requested metric, backfill loads checkpoint.pt, rebuilds the run's
dataset, features and test split from what the checkpoint records (as `cmhash encode --checkpoint`),
encodes queries and database, and evaluates with the run's recorded protocol (top-K, denominator,
normalisation, tie-break) and full_map=True, as training does. It recomputes mAP@50 too and
refuses a run (no write, named in the output) when it differs from the recorded value by more
than 1e-6: then the checkpoint, features or split changed and the new number would describe
another model. Only the missing keys are added, with a "backfilled" record (code version, date,
checkpoint sha256, the mAP@50 check); metrics.json is rewritten atomically. Runs being trained
(live train.lock or write lock), runs without a checkpoint and pair-identity runs (Flickr8k,
Recall@K) are skipped; rerunning does nothing for complete runs. Exit status 1 when a run failed.

examples:
  cmhash reproduce backfill --out runs/table1 --dry-run         # which runs lack map@all
  cmhash reproduce backfill --out runs/table1 --jobs 2
  cmhash reproduce backfill --out runs/table1 --dataset mirflickr \\
      --data-root mirflickr=../shared/data/mirflickr25k      # data moved since training
  cmhash reproduce report --out runs/table1                     # then the map@all tables
"""
EPILOG_CHANCE = """\
The chance level depends on the split and the code length, not on the method. For every
(dataset, bits, seed) among the finished runs under --out, chance checks that all runs of that
(dataset, seed) recorded the same split (protocol.split in metrics.json: protocol, parameters, seed,
sizes, dataset fingerprint) and refuses otherwise (exit 2, nothing written); rebuilds the test
split and labels from one run's checkpoint (as backfill does; sizes checked against the recorded
ones); draws --draws sets of independent uniform +-1 codes for queries and database (seeded from
seed, bits and draw: reruns give the same numbers); evaluates them with the runs' recorded protocol
(mAP@50 with its denominator, normalisation and tie-break, and mAP@all, both directions); and writes
OUT/<dataset>/chance.json atomically (mean and std over draws per bits and seed, protocol, split
record and fingerprint, code version, date). `cmhash reproduce report` then adds a "random codes"
row (mean ± std over seeds) to the mAP@50 and mAP@all tables. Pair-identity datasets (Flickr8k,
Recall@K) are skipped.

examples:
  cmhash reproduce chance --out runs/table1                      # every dataset found
  cmhash reproduce chance --out runs/table1 --dataset wiki,mirflickr --draws 5 --jobs 2
  cmhash reproduce report --out runs/table1                      # tables with the chance row
"""
EPILOG_ABLATION = """\
examples:
  cmhash reproduce ablation --dataset mirflickr --data-root ../shared/data/mirflickr25k \\
      --features mir_effnet_lite0.npz --bits 64 --seeds 0,1,2 --jobs 2 --out runs
"""
EPILOG_RESULTS = """\
examples:
  # the one command that regenerates docs/results.md (hours of CPU the first time; resumable)
  cmhash reproduce results --data ../shared/data --mir-features ~/.cache/cmhash/features/mirflickr \\
      --seeds 0,1,2 --jobs 2 --out runs --doc docs/results.md \\
      --variance mirflickr:16,32:0-5 --variance wiki:16,32,64,128:0-5
"""


def _common(p, dataset_required: bool = True) -> None:
    if dataset_required:
        p.add_argument("--dataset", required=True, help="data source (wiki, mirflickr, ...)")
        p.add_argument("--data-root", help="folder of the dataset")
        p.add_argument("--features", help="precomputed image features (.npz or feature cache), as for `cmhash train`")
    p.add_argument("--method", help="one method (same as --methods NAME)")
    p.add_argument("--methods", help="comma list of registered methods, or 'all'")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--out", default="runs", help="root folder of the runs (OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>)")
    p.add_argument("--jobs", type=positive_int_arg, default=1, help="runs trained in parallel (each a 1-thread process by default)")
    p.add_argument("--threads", type=positive_int_arg, default=1, help="torch threads per run")
    p.add_argument("--epochs", type=positive_int_arg, help="override the preset's epochs; the runs go to their own variant folder 'e<N>' (reported as METHOD [eN])")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter override for every run")
    p.add_argument("--split-param", action="append", metavar="KEY=N", help="split protocol parameter for every run (as `cmhash train`)")
    p.add_argument("--device", type=device_arg, default="auto")
    p.add_argument("--reference", help="folder with the paper's tables and independent_reference.md (default: ../shared/reference)")
    p.add_argument("--report-only", action="store_true", help="do not train; report the runs that exist")
    p.add_argument("--against", metavar="METHOD", help="also compare every method with this one, paired by seed (e.g. the baseline to beat)")
    p.add_argument("--curve-bits", type=int, help="code length of the precision@top-R plots (default: the longest most methods ran)")
    p.add_argument("--no-progress", action="store_true")


def register(sub) -> None:
    p = add_parser(sub, "reproduce", help="run the paper's tables over seeds (table1, ablation, results), report them, backfill metrics", description=__doc__)
    s = p.add_subparsers(dest="reproduce_command", metavar="<experiment>")
    t = add_parser(s, "table1", help="one method, several code lengths (paper Table 1)", description=__doc__, epilog=EPILOG_TABLE1)
    _common(t)
    t.add_argument("--bits", default="16,32,64,128")
    t.set_defaults(func=run_table1)
    a = add_parser(s, "ablation", help="a method's variants (DJSRH: paper Table 2)", description=__doc__, epilog=EPILOG_ABLATION)
    _common(a)
    a.add_argument("--bits", default="64")
    a.add_argument("--variants", default="all", help="comma list, or 'all' (every section of presets/<method>_variants.yaml)")
    a.set_defaults(func=run_ablation)
    rp = add_parser(s, "report", help="tables, CSV and plots from the runs that exist in --out", description=__doc__, epilog=EPILOG_REPORT)
    rp.add_argument("--out", default="runs", help="root folder of the runs")
    rp.add_argument("--doc", help="also write the results document here (e.g. docs/results.md)")
    rp.add_argument("--seeds", help="main seeds of the tables (default: every seed found); more seeds show as seed variance")
    rp.add_argument("--reference", help="folder with the paper's tables and independent_reference.md (default: ../shared/reference)")
    rp.add_argument("--curve-bits", type=int, help="code length of the precision@top-R plots")
    rp.add_argument("--against", metavar="METHOD", help="also compare every method with this one, paired by seed (e.g. the baseline to beat)")
    rp.set_defaults(func=run_report)
    b = add_parser(s, "backfill", help="add map@all to older runs from their checkpoints (checked against mAP@50)", description=__doc__, epilog=EPILOG_BACKFILL)
    b.add_argument("--out", default="runs", help="root folder of the runs (OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>)")
    b.add_argument("--metrics", default="map@all", help="comma list of metrics to add where missing (known: map@all)")
    b.add_argument("--dataset", help="only runs of these datasets (comma list)")
    b.add_argument("--methods", help="only runs of these methods (comma list)")
    b.add_argument("--data-root", action="append", metavar="[DATASET=]PATH", help="data folder when the one recorded in the checkpoints moved (repeatable, per dataset)")
    b.add_argument("--features", action="append", metavar="[DATASET=]PATH", help="image features when the file recorded in the checkpoints moved (repeatable, per dataset)")
    b.add_argument("--jobs", type=positive_int_arg, default=1, help="runs evaluated in parallel (one torch thread each)")
    b.add_argument("--dry-run", action="store_true", help="list the runs that lack a metric; load and write nothing")
    b.add_argument("--tolerance", type=_nonnegative_float, default=1e-6,
                   help="largest accepted |recomputed - recorded| mAP@50 (the difference is recorded in the run either way); "
                        "raise it only for methods whose encoding is not bit-reproducible, e.g. 1e-3")  # fmt: skip
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=run_backfill)
    c = add_parser(s, "chance", help="chance level: random codes on the grid's own splits, per dataset, bits and seed", description=__doc__, epilog=EPILOG_CHANCE)
    c.add_argument("--out", default="runs", help="root folder of the runs (OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>)")
    c.add_argument("--draws", type=positive_int_arg, default=5, help="sets of random codes per (bits, seed); mean and std over them")
    c.add_argument("--dataset", help="only these datasets (comma list; default: every dataset with finished runs)")
    c.add_argument("--data-root", action="append", metavar="[DATASET=]PATH", help="data folder when the one recorded in the checkpoints moved (repeatable, per dataset)")
    c.add_argument("--features", action="append", metavar="[DATASET=]PATH", help="image features when the file recorded in the checkpoints moved (repeatable, per dataset)")
    c.add_argument("--jobs", type=positive_int_arg, default=1, help="datasets computed in parallel (one process each)")
    c.set_defaults(func=run_chance)
    r = add_parser(s, "results", help="every experiment of docs/results.md, then write it", description=__doc__, epilog=EPILOG_RESULTS)
    _common(r, dataset_required=False)
    r.add_argument("--data", required=True, help="folder holding wikipedia/ and mirflickr25k/ (../shared/data)")
    r.add_argument("--mir-features", help="MIRFlickr image features (.npz or feature cache; default: the ready-made cache)")
    r.add_argument("--bits", default="16,32,64,128")
    r.add_argument("--ablation-bits", default="64")
    r.add_argument(
        "--variance",
        action="append",
        metavar="[METHOD/]DATASET:BITS:SEEDS",
        help="extra seeds for a seed-variance check, e.g. mirflickr:16,32:0-5 or cmfh/wiki:64:0-9 (repeatable; default method: the first of --methods)",
    )
    r.add_argument("--doc", default="docs/results.md", help="markdown file to write")
    r.set_defaults(func=run_results)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _variance_spec(spec: str, default_method: str) -> tuple[str, str, str, str]:
    from cmhash.errors import CmhashError

    method, _, rest = spec.rpartition("/")
    parts = rest.split(":")
    if len(parts) != 3 or parts[0] not in ("mirflickr", "wiki"):
        raise CmhashError(f"--variance expects [METHOD/]DATASET:BITS:SEEDS with DATASET mirflickr or wiki, e.g. wiki:64,128:0-9; got '{spec}'")
    return method or default_method, parts[0], parts[1], parts[2]


def _methods(args) -> list[str]:
    """--methods a,b | all (and --method), checked against the registry."""
    from cmhash.errors import CmhashError
    from cmhash.methods import METHODS

    text = ",".join(t for t in (args.methods, args.method) if t)
    if not text:
        raise CmhashError("give the methods to run: --methods NAME[,NAME...] or --methods all")
    names = METHODS.names() if text.strip().lower() == "all" else [t.strip().lower() for t in text.split(",") if t.strip()]
    for n in names:
        METHODS.get(n)  # unknown name: an error listing the known ones
    return list(dict.fromkeys(names))


def _seed_range(text: str) -> list[int]:
    """'0-9' or '3,4,5'."""
    from cmhash.errors import CmhashError

    if "-" in text:
        lo, _, hi = text.partition("-")
        try:
            return list(range(int(lo), int(hi) + 1))
        except ValueError:
            raise CmhashError(f"seed range must look like 0-9, got '{text}'") from None
    return _seeds(text)


def _ints(text: str) -> list[int]:
    from cmhash.cli.train import parse_bits

    return parse_bits(text) if text else []


def _seeds(text: str) -> list[int]:
    from cmhash.validation import seed_list

    return seed_list(text)


def _spec(args, data_root, features):
    from cmhash.experiments.grid import GridSpec
    from cmhash.validation import int_params, parse_kv

    # checked here once, not in every `cmhash train` process of the grid
    parse_kv(args.set, "--set", "beta=0.8")
    int_params(parse_kv(args.split_param, "--split-param", "num_query=1000"), "--split-param")
    extra = [a for item in (args.split_param or []) for a in ("--split-param", item)]
    return GridSpec(
        data_root=data_root,
        features=features,
        epochs=args.epochs,
        overrides=list(args.set or []),
        threads=args.threads,
        device=args.device,
        extra_args=extra,
    )


def _run(cells, args, spec) -> int:
    from pathlib import Path

    from cmhash.experiments.grid import run_grid

    if args.report_only:
        return 0
    failed = run_grid(cells, Path(args.out), spec, jobs=args.jobs, progress=not args.no_progress)
    return 1 if failed else 0


def _write(text: str, path) -> None:
    from cmhash.io import atomic_open

    with atomic_open(path, "w") as fh:
        fh.write(text)


def _report(args, root) -> int:
    """The tables of everything under ``root``; prints where they are."""
    from cmhash.experiments import grid as R
    from cmhash.experiments.report import write_report

    main = _seeds(args.seeds) if getattr(args, "seeds", None) else None
    doc = getattr(args, "doc", None)
    against = getattr(args, "against", None)
    if against:
        from cmhash.methods import METHODS

        against = against.strip().lower()
        METHODS.get(against)  # unknown name: an error listing the known ones
    res = write_report(root, R.require_reference(args.reference), doc=doc, curve_bits=args.curve_bits, main_seeds=main, command=_command(), against=against)
    print(res["markdown"].read_text(encoding="utf-8"))
    print(f"{len(res['rows'])} runs found under {root}")
    print(f"markdown: {res['markdown']}\nCSV (one row per run, with its protocol): {res['csv']}")
    for dataset, png in res["plots"].items():
        print(f"precision@top-R ({dataset}): {png}")
    if "doc" in res:
        print(f"results document: {res['doc']}")
    return 0


def _command() -> str | None:
    import shlex
    import sys

    return "cmhash " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("cmhash", "__main__.py")) else None


def run_table1(args) -> int:
    from pathlib import Path

    from cmhash.experiments import grid as R

    cells = [c for m in _methods(args) for c in R.plan(m, args.dataset, _ints(args.bits), _seeds(args.seeds), epochs=args.epochs)]
    status = _run(cells, args, _spec(args, args.data_root, args.features))
    args.seeds = None  # the report shows every seed found under --out
    _report(args, Path(args.out))
    return status


def run_report(args) -> int:
    from pathlib import Path

    from cmhash.errors import MissingFileError

    root = Path(args.out)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder of runs (train some with `cmhash reproduce table1 ... --out {root}`)")
    return _report(args, root)


def _per_dataset(items, flag: str):
    """``[DATASET=]PATH`` repeated -> ``{dataset: path}`` (``"*"``: every dataset), or None."""
    from cmhash.errors import UsageError

    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name, path = (name.strip(), path.strip()) if sep else ("*", item.strip())
        if not name or not path:
            raise UsageError(f"{flag} expects [DATASET=]PATH, got '{item}'")
        if name != "*":
            from cmhash.data import SOURCES

            if name not in SOURCES.names():  # a typo would otherwise be ignored silently
                raise UsageError(f"{flag} {item}: unknown dataset '{name}' (known: {', '.join(sorted(SOURCES.names()))})")
        out[name] = path
    return out


def _nonnegative_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def run_backfill(args) -> int:
    from pathlib import Path

    from cmhash.errors import MissingFileError
    from cmhash.experiments import backfill as B

    root = Path(args.out)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder of runs")
    names = B.check_metrics(args.metrics.split(","))
    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None  # noqa: E731
    runs = B.select(root, split(args.dataset), split(args.methods))
    outcomes = B.backfill(
        runs,
        names,
        data_root=_per_dataset(args.data_root, "--data-root"),
        features=_per_dataset(args.features, "--features"),
        jobs=args.jobs,
        dry_run=args.dry_run,
        progress=not args.no_progress,
        tolerance=args.tolerance,
    )
    print(B.summary(outcomes, dry_run=args.dry_run) + f" under {root}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _chance_worker(args):
    import torch

    from cmhash.experiments import chance as C

    torch.set_num_threads(1)
    root, dataset, draws, data_root, features = args
    lines: list[str] = []
    path = C.dataset_chance(root, dataset, draws, data_root=data_root, features=features, log=lines.append)
    return path, lines


def run_chance(args) -> int:
    from pathlib import Path

    from cmhash.errors import MissingFileError
    from cmhash.experiments import chance as C

    root = Path(args.out)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder of runs")
    names = [t.strip() for t in args.dataset.split(",") if t.strip()] if args.dataset else None
    data_root, features = _per_dataset(args.data_root, "--data-root"), _per_dataset(args.features, "--features")
    wanted = C.plan_chance(root, names)  # every split checked before anything is computed or written
    if args.jobs <= 1 or len(wanted) <= 1:
        results = [C.dataset_chance(root, d, args.draws, data_root=data_root, features=features) for d in wanted]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        tasks = [(root, d, args.draws, data_root, features) for d in wanted]
        results = []
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for path, lines in pool.map(_chance_worker, tasks):
                print("\n".join(lines))
                results.append(path)
    for path in results:
        if path is not None:
            print(f"chance level: {path}")
    return 0


def _variants(text: str, method: str) -> list[str]:
    from cmhash.errors import CmhashError
    from cmhash.experiments.grid import variant_info

    known = variant_info(method)[0]
    if text == "all":
        return known + ([method] if method not in known else [])
    chosen = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in chosen if v not in known and v != method]
    if bad:
        raise CmhashError(f"unknown variant(s) {', '.join(bad)} (known: {', '.join(known)})")
    return chosen


def ablation_report(rows, dataset: str, method: str, ref) -> str:
    from cmhash.experiments import grid as R

    md = R.ablation_markdown(rows, dataset, method, ref)
    eff = R.effects_markdown(rows, dataset, method)
    return md + ("\n" + eff if eff else "")


def run_ablation(args) -> int:
    from pathlib import Path

    from cmhash.experiments import grid as R

    methods = _methods(args)
    if len(methods) != 1:
        from cmhash.errors import CmhashError

        raise CmhashError("ablation runs the variants of one method: give --method NAME")
    args.method = methods[0]
    variants = _variants(args.variants, args.method)
    cells = R.plan(args.method, args.dataset, _ints(args.bits), _seeds(args.seeds), variants, epochs=args.epochs)
    status = _run(cells, args, _spec(args, args.data_root, args.features))
    root = Path(args.out)
    rows = R.collect(cells, root)
    md = ablation_report(rows, args.dataset, args.method, R.require_reference(args.reference))
    base = root / args.dataset / f"ablation_{args.method}"
    R.write_csv(rows, base.with_suffix(".csv"))
    _write(md, base.with_suffix(".md"))
    print(md)
    print(f"CSV: {base.with_suffix('.csv')}\nmarkdown: {base.with_suffix('.md')}")
    return status


def run_results(args) -> int:
    """Table 1 grids of --methods on Wiki and MIRFlickr, the variants of those that have them, extra seeds; then the document."""
    from pathlib import Path

    from cmhash.experiments import grid as R

    methods = _methods(args)
    data = Path(args.data)
    root = Path(args.out)
    seeds = _seeds(args.seeds)
    bits = _ints(args.bits)
    mir = (str(data / "mirflickr25k"), args.mir_features)
    wiki = (str(data / "wikipedia"), None)
    groups = []
    for m in methods:
        groups += [(R.plan(m, "wiki", bits, seeds, epochs=args.epochs), *wiki), (R.plan(m, "mirflickr", bits, seeds, epochs=args.epochs), *mir)]
        variants = [v for v in R.variant_info(m)[0] if v != m]
        if variants:
            groups.append((R.plan(m, "mirflickr", _ints(args.ablation_bits), seeds, variants, epochs=args.epochs), *mir))
    for spec in args.variance or []:
        m, ds_name, bits_text, seeds_text = _variance_spec(spec, methods[0])
        groups.append((R.plan(m, ds_name, _ints(bits_text), _seed_range(seeds_text), epochs=args.epochs), *(wiki if ds_name == "wiki" else mir)))
    status = 0
    for cells, data_root, feats in groups:
        status |= _run(cells, args, _spec(args, data_root, feats))
    args.seeds = ",".join(map(str, seeds))
    _report(args, root)
    return status
