"""`cmhash eval`: evaluate saved binary codes (a codes file from `cmhash encode` or the trainer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmhash.validation import nonneg_int_arg, positive_int_arg
from cmhash.cli._common import add_parser, format_table, print_json

DESCRIPTION = """\
Evaluate the binary codes in a codes file (.npz written by `cmhash encode`, the trainer or
cmhash.codes_io.save_codes) by Hamming ranking, and print a table of metrics per task:

  i2t  image queries against the text database      t2i  text queries against the image database
  i2i  image queries against the image database     t2t  text queries against the text database

With labels in the file, an item is relevant to a query when they share at least one label, and
the table shows mAP@K (the DJSRH definition by default) and precision within Hamming radius r.
With pair-identity groups (Flickr8k: five captions per image) it shows Recall@K, counting each
image once.

Protocol options change published numbers, so they are explicit and recorded in --json/--out:
  --topk K           rank cut-off (DJSRH and its descendants report mAP@50); `all` = full ranking
  --denominator      all_queries: mean over every query, a query without a relevant item in the top
                     K counts 0 (DJSRH/JDSH); queries_with_relevant: only queries with a relevant
                     item in the database (UCCH); queries_with_hits: only queries with a hit in the top K
  --normalize        hits_in_topk: AP divides by the relevant items inside the top K (DJSRH);
                     min_k_relevant: by min(K, relevant items in the database)
  --tie-break        stable_index: equal distances in database order (deterministic, default);
                     legacy_unstable: numpy's default argsort per query exactly as the DJSRH code
                     (platform dependent). At 16-32 bits tens of thousands of items share a
                     distance, so the tie order decides the top 50.
"""

EPILOG = """\
examples:
  cmhash eval --codes codes.npz
  cmhash eval --codes codes.npz --topk all --denominator queries_with_relevant   (UCCH-style mAP@all)
  cmhash eval --codes codes.npz --tie-break legacy_unstable                      (as the DJSRH code ranks)
  cmhash eval --codes codes.npz --tasks i2t t2i i2i t2t --full-map --out results.json
  cmhash eval --codes codes.npz --curves curves.png --out results.json           (PR and precision@top-R)
  cmhash eval --codes flickr8k_codes.npz --recall-k 1 5 10                        (pair identity: Recall@K)
  cmhash eval --codes codes.npz --json | jq .i2t
"""


def _topk_arg(value: str):
    """A positive K, or 'all' for the full ranking (0 is an error: it used to mean 'all' silently)."""
    if value.strip().lower() in ("all", "none"):
        return None
    try:
        return _positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}") from None


_positive_int = positive_int_arg  # the one positive-integer check (cmhash.validation)


def register(sub) -> None:
    from cmhash.eval_protocol import (
        DEFAULT_MEMORY_MB,
        DEFAULT_R_VALUES,
        DEFAULT_RECALL_KS,
        DENOMINATORS,
        NORMALIZATIONS,
        TASKS,
        TIE_BREAKS,
    )

    p = add_parser(sub, "eval", help="evaluate saved codes: mAP@K, precision, PR curves, Recall@K", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--codes", required=True, type=Path, metavar="FILE", help="codes file (.npz) with query_*/db_* codes and labels or groups")
    p.add_argument("--tasks", nargs="+", default=["i2t", "t2i"], choices=list(TASKS), metavar="TASK", help="retrieval directions: i2t t2i i2i t2t")
    p.add_argument("--topk", type=_topk_arg, default=50, metavar="K", help="mAP cut-off K, or 'all' for the full ranking")
    p.add_argument("--denominator", choices=DENOMINATORS, default="all_queries", help="which queries the mAP mean runs over")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default="hits_in_topk", help="what AP@K divides by")
    p.add_argument("--tie-break", choices=TIE_BREAKS, default="stable_index", help="order of items at equal Hamming distance")
    p.add_argument("--full-map", action="store_true", help="also report mAP over the full ranking (map@all)")
    p.add_argument("--radius", type=nonneg_int_arg, default=2, help="Hamming radius for precision within radius r")
    p.add_argument("--curves", type=Path, metavar="PNG", help="write PR (by Hamming radius) and precision@top-R plots to this PNG")
    p.add_argument("--r-values", type=_positive_int, nargs="+", default=list(DEFAULT_R_VALUES), metavar="R", help="R values of the precision@top-R curve")
    p.add_argument("--recall-k", type=_positive_int, nargs="+", default=list(DEFAULT_RECALL_KS), metavar="K", help="K values of Recall@K (pair-identity data)")
    p.add_argument("--json", action="store_true", help="print the full result (with protocol) as JSON instead of a table")
    p.add_argument("--out", type=Path, metavar="JSON", help="also write the full result (with protocol) to this JSON file")
    p.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB, help="memory budget for the per-chunk distance arrays")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _plot_curves(report: dict, tasks: list[str], dest: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cmhash.io import atomic_path

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    ax_pr, ax_top = fig.subplots(1, 2)
    for task in tasks:
        curves = report[task]["curves"]
        pr = curves["pr"]
        ax_pr.plot(pr["recall"], pr["precision"], marker=".", label=task)
        top = curves["precision_at_top_r"]
        ax_top.plot(top["effective_r"], top["precision"], marker="o", markersize=3, label=task)
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall (Hamming radius 0..bits)", xlim=(0, 1.02), ylim=(0, 1.02))
    ax_top.set(xlabel="R (number of top-ranked items)", ylabel="precision", title="precision@top-R", ylim=(0, 1.02))
    for ax in (ax_pr, ax_top):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def run(args) -> int:
    import sys

    from cmhash.codes_io import load_codes
    from cmhash.errors import DataError
    from cmhash.io import write_json
    from cmhash.metrics import cross_modal_report

    from cmhash.validation import output_file

    output_file(args.curves, "--curves")
    output_file(args.out, "--out")
    if not args.memory_mb > 0:
        raise DataError(f"--memory-mb must be positive, got {args.memory_mb}")
    data = load_codes(args.codes)
    has_labels = "query_labels" in data and "db_labels" in data
    has_groups = "query_groups" in data and "db_groups" in data
    if not has_labels and not has_groups:
        raise DataError(
            f"{args.codes}: no labels (query_labels/db_labels) and no pair-identity groups (query_groups/db_groups); "
            "nothing defines which items are relevant. Re-encode with labels or groups."
        )
    if args.curves and not has_labels:
        raise DataError(f"{args.codes}: --curves needs labels (PR and precision@top-R are label metrics); this file has only groups")
    from cmhash.eval_protocol import TASKS

    for task in args.tasks:
        qmod, dmod = TASKS[task]
        for key in (f"query_{qmod}", f"db_{dmod}"):
            if key not in data:
                raise DataError(f"{args.codes}: task {task} needs '{key}' codes, which the file does not have (drop {task} from --tasks)")

    report = cross_modal_report(
        data.get("query_image"),
        data.get("query_text"),
        data.get("db_image"),
        data.get("db_text"),
        data.get("query_labels") if has_labels else None,
        data.get("db_labels") if has_labels else None,
        query_groups=data.get("query_groups") if has_groups else None,
        db_groups=data.get("db_groups") if has_groups else None,
        tasks=args.tasks,
        topk=args.topk,
        denominator=args.denominator,
        normalize=args.normalize,
        tie_break=args.tie_break,
        radius=args.radius,
        full_map=args.full_map,
        curves=bool(args.curves),
        r_values=args.r_values,
        recall_ks=args.recall_k,
        memory_mb=args.memory_mb,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
    )
    result = {"codes_file": str(args.codes), "meta": data["meta"], **report}
    proto = report["protocol"]
    title = (
        f"{args.codes.name}: {data['bits']} bits; topk={proto['topk'] or 'all'}, denominator={proto['denominator']}, "
        f"normalize={proto['normalize']}, tie_break={proto['tie_break']}"
    )
    if args.curves:
        _plot_curves(report, args.tasks, args.curves, title)
        result["curves_png"] = str(args.curves)
    if args.out:
        write_json(args.out, result)
    if args.json:
        print_json(result)
        return 0

    skip = {"curves"}
    columns: list[str] = []
    for task in args.tasks:
        for key in report[task]:
            if key not in skip and key not in columns:
                columns.append(key)
    rows = [[task] + [report[task].get(c, "") for c in columns] for task in args.tasks]
    meta = data["meta"]
    described = ", ".join(f"{k}={meta[k]}" for k in ("method", "dataset") if k in meta)
    print(f"codes: {args.codes} ({data['bits']} bits{'; ' + described if described else ''})")
    print(format_table(["task"] + columns, rows))
    relevance = proto.get("relevance") or proto.get("recall_protocol", {}).get("relevance")
    print(
        f"protocol: topk={proto['topk'] or 'all'}, denominator={proto['denominator']}, normalize={proto['normalize']}, "
        f"tie_break={proto['tie_break']}, relevance={relevance}"
    )
    if args.out:
        print(f"results written to {args.out}")
    if args.curves:
        print(f"curves written to {args.curves}")
    return 0
