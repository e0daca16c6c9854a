"""`cmhash reproduce`: run the DJSRH paper's experiments over several seeds and report them.

* ``table1``: one method on one dataset at several code lengths (paper Table 1);
* ``ablation``: the variants DJSRH-1 ... DJSRH-6 of the paper's Table 2 (plus ``djsrh-noeta``);
* ``results``: everything ``docs/results.md`` reports (Wiki and MIRFlickr Table 1, the MIRFlickr
  ablation, CMFH beside DJSRH when CMFH is installed), then writes that document.

Each run is its own ``cmhash train`` process; runs whose ``metrics.json`` exists are skipped and
interrupted runs resume, so a grid can be stopped and restarted. Tables give mean ± std over
seeds beside the paper's numbers and the independent reference's (from ``../shared/reference``).
"""

from __future__ import annotations

from cmhash.cli._common import add_parser

EPILOG_TABLE1 = """\
examples:
  cmhash reproduce table1 --dataset wiki --data-root ../shared/data/wikipedia --seeds 0,1,2 --out runs
  cmhash reproduce table1 --dataset mirflickr --data-root ../shared/data/mirflickr25k \\
      --features mir_effnet_lite0.npz --bits 16,32,64,128 --seeds 0,1,2 --jobs 2 --out runs
  cmhash reproduce table1 ... --report-only          # tables from the runs that exist, train nothing
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
    p.add_argument("--method", default="djsrh", help="method to run")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--out", default="runs", help="root folder of the runs (OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel (each a 1-thread process by default)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--epochs", type=int, help="override the preset's epochs (quick checks)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter override for every run")
    p.add_argument("--split-param", action="append", metavar="KEY=N", help="split protocol parameter for every run (as `cmhash train`)")
    p.add_argument("--device", default="auto")
    p.add_argument("--reference", help="folder with the paper's tables and independent_reference.md (default: ../shared/reference)")
    p.add_argument("--report-only", action="store_true", help="do not train; report the runs that exist")
    p.add_argument("--no-progress", action="store_true")


def register(sub) -> None:
    p = add_parser(sub, "reproduce", help="run the paper's tables over seeds (table1, ablation, results)", description=__doc__)
    s = p.add_subparsers(dest="reproduce_command", metavar="<experiment>")
    t = add_parser(s, "table1", help="one method, several code lengths (paper Table 1)", description=__doc__, epilog=EPILOG_TABLE1)
    _common(t)
    t.add_argument("--bits", default="16,32,64,128")
    t.set_defaults(func=run_table1)
    a = add_parser(s, "ablation", help="DJSRH-1 ... DJSRH-6 (paper Table 2)", description=__doc__, epilog=EPILOG_ABLATION)
    _common(a)
    a.add_argument("--bits", default="64")
    a.add_argument("--variants", default="all", help="comma list, or 'all' (djsrh-1..6, djsrh, djsrh-noeta)")
    a.set_defaults(func=run_ablation)
    r = add_parser(s, "results", help="every experiment of docs/results.md, then write it", description=__doc__, epilog=EPILOG_RESULTS)
    _common(r, dataset_required=False)
    r.add_argument("--data", required=True, help="folder holding wikipedia/ and mirflickr25k/ (../shared/data)")
    r.add_argument("--mir-features", required=True, help="MIRFlickr image features (.npz or feature cache)")
    r.add_argument("--bits", default="16,32,64,128")
    r.add_argument("--ablation-bits", default="64")
    r.add_argument(
        "--variance",
        action="append",
        metavar="DATASET:BITS:SEEDS",
        help="extra seeds for a seed-variance check, e.g. mirflickr:16,32:0-5 or wiki:16,32,64,128:0-9 (repeatable)",
    )
    r.add_argument("--doc", default="docs/results.md", help="markdown file to write")
    r.set_defaults(func=run_results)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _variance_spec(spec: str) -> tuple[str, str, str]:
    from cmhash.errors import CmhashError

    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in ("mirflickr", "wiki"):
        raise CmhashError(f"--variance expects DATASET:BITS:SEEDS with DATASET mirflickr or wiki, e.g. wiki:64,128:0-9; got '{spec}'")
    return parts[0], parts[1], parts[2]


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
    from cmhash.errors import CmhashError

    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CmhashError(f"--seeds must be integers separated by commas, got '{text}'") from None


def _spec(args, data_root, features):
    from cmhash.experiments.grid import GridSpec

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


def run_table1(args) -> int:
    from pathlib import Path

    from cmhash.methods import METHODS
    from cmhash.experiments import grid as R

    METHODS.get(args.method)
    cells = R.plan(args.method, args.dataset, _ints(args.bits), _seeds(args.seeds))
    status = _run(cells, args, _spec(args, args.data_root, args.features))
    root = Path(args.out)
    rows = R.collect(cells, root)
    ref = R.require_reference(args.reference)
    md = R.table1_markdown(rows, args.dataset, args.method, ref)
    base = root / args.dataset / f"table1_{args.method}"
    R.write_csv(rows, base.with_suffix(".csv"))
    _write(md, base.with_suffix(".md"))
    png = R.plot_curves(rows, args.dataset, base.parent / f"curves_{args.method}.png", args.method)
    print(md)
    print(f"CSV: {base.with_suffix('.csv')}\nmarkdown: {base.with_suffix('.md')}" + (f"\nprecision@top-R curves: {png}" if png else ""))
    return status


def _variants(text: str, method: str) -> list[str]:
    from cmhash.errors import CmhashError
    from cmhash.experiments.settings import available_variants
    from cmhash.experiments.grid import ABLATION_ORDER

    known = available_variants(method)
    if text == "all":
        return [v for v in ABLATION_ORDER if v in known or v == method]
    chosen = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in chosen if v not in known and v != method]
    if bad:
        raise CmhashError(f"unknown variant(s) {', '.join(bad)} (known: {', '.join(known)})")
    return chosen


def ablation_report(rows, dataset: str, method: str, ref) -> str:
    from cmhash.experiments import grid as R

    md = R.ablation_markdown(rows, dataset, ref, method)
    for with_v, without_v, title in (
        ("djsrh-4", "djsrh-3", "DJSRH-4 − DJSRH-3: adding eta to the plain mix"),
        ("djsrh", "djsrh-noeta", "DJSRH − DJSRH-noeta: eta in the full model"),
    ):
        eff = R.paired_effect(rows, dataset, with_v, without_v, method)
        if eff:
            md += f"\nEffect of the high-order term, {title} (paired by seed):\n\n" + R.effect_markdown(eff, with_v + " − " + without_v)
    return md


def run_ablation(args) -> int:
    from pathlib import Path

    from cmhash.experiments import grid as R

    variants = _variants(args.variants, args.method)
    cells = R.plan(args.method, args.dataset, _ints(args.bits), _seeds(args.seeds), variants)
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
    from pathlib import Path

    from cmhash.methods import METHODS
    from cmhash.experiments import grid as R
    from cmhash.experiments.report import write_results_doc

    data = Path(args.data)
    root = Path(args.out)
    seeds = _seeds(args.seeds)
    bits = _ints(args.bits)
    wiki_cells = R.plan(args.method, "wiki", bits, seeds)
    mir_cells = R.plan(args.method, "mirflickr", bits, seeds)
    abl_cells = R.plan(args.method, "mirflickr", _ints(args.ablation_bits), seeds, _variants("all", args.method))
    abl_cells = [c for c in abl_cells if c not in set(mir_cells)]
    var_mir, var_wiki = [], []
    for spec in args.variance or []:
        ds_name, bits_text, seeds_text = _variance_spec(spec)
        cells = R.plan(args.method, ds_name, _ints(bits_text), _seed_range(seeds_text))
        (var_wiki if ds_name == "wiki" else var_mir).extend(c for c in cells if c not in set(mir_cells) | set(wiki_cells))
    cmfh = "cmfh" in METHODS
    status = 0
    mir = (str(data / "mirflickr25k"), args.mir_features)
    wiki = (str(data / "wikipedia"), None)
    groups = [(wiki_cells, *wiki), (mir_cells, *mir), (abl_cells, *mir), (var_mir, *mir), (var_wiki, *wiki)]
    if cmfh:
        groups.append((R.plan("cmfh", "mirflickr", bits, seeds), str(data / "mirflickr25k"), args.mir_features))
        groups.append((R.plan("cmfh", "wiki", bits, seeds), str(data / "wikipedia"), None))
    all_cells = []
    for cells, data_root, feats in groups:
        all_cells += cells
        status |= _run(cells, args, _spec(args, data_root, feats))
    rows = R.collect(all_cells, root)
    R.write_csv(rows, root / "results.csv")
    import shutil

    from cmhash.io import atomic_path
    from cmhash.experiments.report import CURVES_PNG

    for ds in ("wiki", "mirflickr"):
        png = R.plot_curves(rows, ds, root / ds / f"curves_{args.method}.png", args.method)
        if png is not None:  # beside the document, which shows it
            Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(Path(args.doc).parent / CURVES_PNG.format(dataset=ds), suffix=".png") as tmp:
                shutil.copyfile(png, tmp)
    import shlex
    import sys

    command = "cmhash " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("cmhash", "__main__.py")) else None
    doc = write_results_doc(rows, Path(args.doc), R.require_reference(args.reference), main_seeds=seeds, command=command)
    print(f"wrote {doc}; runs under {root}; CSV {root / 'results.csv'}")
    return status
