"""Writes ``docs/results.md`` from the runs under a grid folder, one template per dataset.

Every number and every comparison sentence in the document is computed here from the runs'
``metrics.json`` files and the reference tables, so the document is regenerated, never edited.
No method is named here: each dataset section lists the methods (and variants) found in the runs,
with the same parts: the Table 1 style comparison, the protocol of the numbers, the check against
the independent reference, seed variance where more seeds were run, precision@top-R, variants,
and training time.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.experiments import grid as R
from cmhash.io import atomic_open

TOLERANCE = 0.01  # "reaches the reference": mean over seeds at least reference - 0.01
#: Name of the precision@top-R plot written beside the results document (per dataset).
CURVES_PNG = "results_{dataset}_curves.png"
DATASET_TITLES = {
    "mirflickr": "MIRFlickr (7,696-pair subset)",
    "wiki": "Wiki (official features and split)",
    "nuswide": "NUS-WIDE",
    "flickr8k": "Flickr8k",
    "fashion": "Fashion products",
    "synthetic": "Synthetic benchmark",
}
DATASET_ORDER = ("mirflickr", "wiki", "nuswide", "flickr8k", "fashion")
HOW_TO = """## How these numbers are made

1. Runs, per dataset, for any registered methods: `cmhash reproduce table1 --methods M1,M2 (or all)
   --dataset D --data-root ROOT --seeds 0,1,2 [--bits 16,32,64,128] [--jobs 2] --out DIR`. Each
   (method, code length, seed) is one `cmhash train` process writing
   `DIR/<dataset>/<method>/<variant>/<bits>bits/seed<k>/` (`metrics.json` with the protocol,
   `checkpoint.pt`, `train_log.csv`). Finished cells are skipped, interrupted ones resume, and a
   cell another live process is training (`train.lock`) is left to it, so several people and
   invocations can fill one `DIR` with different methods.
2. Report: `cmhash reproduce report --out DIR [--doc docs/results.md] [--seeds 0,1,2]` reads every
   finished cell under `DIR` (training nothing) and writes `DIR/table1.md`, `DIR/table1.csv` (one
   row per run, with a JSON `protocol` column: split and sizes, features, epochs, selection, code
   version, hyper-parameters) and `DIR/<dataset>/curves.png`; with `--doc`, this document. Every
   dataset section has the same parts: ours (mean ± sample std over seeds) beside the independent
   reference and the DJSRH paper's Table 1 (`../shared/reference/djsrh_table1_map50.csv`), the
   protocol of the numbers, the reference check, extra-seed variance, precision@top-R (plot: one
   line per method), variants (`presets/<method>_variants.yaml`), training time per method.
3. Chance level: `cmhash reproduce chance --out DIR` scores independent uniform random codes on
   each seed's own split under the same protocol (`DIR/<dataset>/chance.json`); the mAP tables
   then end with a "random codes (chance)" row, and Table 1 is followed by what the input
   features alone retrieve (each modality's own vectors ranked by cosine, same splits).
"""


def reference_check(rows, dataset: str, method: str, ref: dict) -> tuple[str, list[dict[str, Any]]]:
    """A sentence comparing our mean with the independent reference's row of ``method``, and the per-cell verdicts."""
    label = R.reference_label(ref, dataset, method)
    mine = R.group(rows, dataset=dataset, method=method, variant=method)
    verdicts = []
    for b in sorted({r["bits"] for r in mine}):
        for task in ("i2t", "t2i"):
            rv = ref.get((label, dataset, b, task)) if label else None
            if rv is None:
                continue
            m, s, n = R.mean_std([r[task] for r in mine if r["bits"] == b])
            verdicts.append({"bits": b, "task": task, "ours": m, "std": s, "n": n, "ref": rv, "delta": m - rv, "ok": m >= rv - TOLERANCE})
    if not verdicts:
        return "", verdicts
    ok = sum(v["ok"] for v in verdicts)
    worst = min(verdicts, key=lambda v: v["delta"])
    text = (
        f"{method.upper()} against the independent reference ({label}): {ok} of {len(verdicts)} cells reach it "
        f"(mean over seeds ≥ reference − {TOLERANCE}); ours − reference from "
        f"{min(v['delta'] for v in verdicts):+.3f} to {max(v['delta'] for v in verdicts):+.3f} "
        f"(lowest: {worst['bits']} bits {worst['task'].upper().replace('2', '→')})."
    )
    return text, verdicts


def seed_variance(rows, dataset: str, method: str, ref: dict, main_seeds: Sequence[int]) -> str:
    """Where more seeds than the main ones were run: the spread over seeds against the reference's figure."""
    label = R.reference_label(ref, dataset, method)
    mine = R.group(rows, dataset=dataset, method=method, variant=method)
    lines = []
    for b in sorted({r["bits"] for r in mine}):
        rs = [r for r in mine if r["bits"] == b]
        if len({r["seed"] for r in rs}) <= len(main_seeds):
            continue
        for task in ("i2t", "t2i"):
            v = np.asarray([r[task] for r in rs])
            rv = ref.get((label, dataset, b, task)) if label else None
            cells = [method.upper(), str(b), task.upper().replace("2", "→"), str(len(v)), f"{v.mean():.3f} ± {v.std(ddof=1):.3f}", f"{v.min():.3f} – {v.max():.3f}"]
            if rv is not None and v.std(ddof=1) > 0:
                cells += [f"{rv:.3f}", f"{(rv - v.mean()) / v.std(ddof=1):+.1f}", f"{int((v >= rv - TOLERANCE).sum())} of {len(v)}"]
            else:
                cells += ["-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def feature_information_line(chance: dict[str, Any] | None, seeds: Sequence[int]) -> str:
    """One sentence: what each modality's own input features retrieve by cosine on the same splits
    (``chance.json``'s ``features``), mean over the table's seeds; "" when absent."""
    entries = [e for e in ((chance or {}).get("features") or {}).get("entries", []) if e.get("seed") in seeds]
    if not entries:
        return ""
    names = {"i2i": "image→image", "t2t": "text→text"}
    cells = []
    for task, name in names.items():
        vals = [e[task] for e in entries if task in e]
        if vals:
            cells.append(f"{name} {R.fmt(*R.mean_std(vals))}")
    if not cells:
        return ""
    used = ",".join(str(e["seed"]) for e in entries)
    return ("What the input features alone retrieve on the same splits (each modality's own vectors ranked by cosine "
            f"similarity, real-valued, no hashing; same mAP definition; seeds {used}): " + ", ".join(cells) + ". "
            "A method that learns from feature similarities starts from this; random codes are the last row above.\n")


def dataset_section(
    number: int, dataset: str, rows, extra_rows, ref_dir: Path | None, plot: str | None, main_seeds: Sequence[int], against: str | None = None,
    chance: dict[str, Any] | None = None,
) -> str:
    """The one template of a dataset's section (see the module docstring)."""
    ref = R.load_independent_reference(ref_dir)
    mine = R.group(rows, dataset=dataset)
    if not mine:
        return ""
    title = DATASET_TITLES.get(dataset, dataset)
    parts = [f"## {number}. {title}\n"]
    if any(str((r.get("protocol") or {}).get("metric", "")).startswith("mAP") or not r.get("protocol") for r in mine):
        parts.append(R.table1_markdown(rows, dataset, ref_dir, chance=chance))  # pair-identity sets (Flickr8k) have Recall@K tables only
        info = feature_information_line(chance, sorted({r["seed"] for r in mine}))
        if info:
            parts.append(info)
    order = R.order_markdown(rows, dataset, ref_dir)
    if order:
        parts.append("Order of the methods the paper's Table 1 also has (mean over seeds), ours beside the paper's:\n\n" + order)
    paired = R.paired_against_markdown(rows, dataset, against) if against else ""
    if paired:
        parts.append(f"Against {against.upper()} (`--against`), paired by seed (same seed = same split and database), "
                     "mAP@50 differences:\n\n" + paired)  # fmt: skip
    full = R.metric_markdown(rows, dataset, "map@all", chance=chance)
    if full:
        parts.append("mAP over the whole ranking (mAP@all: AP over every database item, mean over all queries; the protocol "
                     "UCCH and DGCPN publish), mean ± std over seeds:\n\n" + full)  # fmt: skip
    recall = [(k, R.metric_markdown(rows, dataset, f"recall@{k}")) for k in (1, 5, 10)]
    for k, table in recall:
        if table:
            parts.append(f"Recall@{k} (a query's own pair counts; Hamming ranking of the codes, and the same from the "
                         f"real-valued embeddings before binarising):\n\n" + table)  # fmt: skip
    parts.append("Protocol of these numbers (read from each run's metrics.json):\n\n" + R.protocol_markdown(rows + extra_rows, dataset))
    checks = [reference_check(rows, dataset, m, ref)[0] for m, v in R.method_variants(rows, dataset) if m == v]
    checks = [c for c in checks if c]
    if checks:
        parts.append("\n".join(f"* {c}" for c in checks) + "\n")
    var = [seed_variance(rows + extra_rows, dataset, m, ref, main_seeds) for m, v in R.method_variants(rows + extra_rows, dataset) if m == v]
    var = [v for v in var if v]
    if var:
        parts.append(
            "Seed variance (every seed run for these code lengths; each seed its own split, initialisation and batch order):\n\n"
            "| method | bits | task | seeds | mean ± std | min – max | reference | reference in std units | seeds ≥ reference − 0.01 |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(var) + "\n"
        )
    curves = R.curves_markdown(rows, dataset)
    if curves:
        parts.append("Precision@top-R (mean over seeds):\n\n" + curves)
        if plot:
            parts.append(f"\n![Precision@top-R on {dataset}, both directions, one line per method]({plot})\n")
    main = set(R.table_pairs(rows, dataset))
    for method in sorted({m for m, v in R.method_variants(rows, dataset) if (m, v) not in main}):
        parts.append(f"Variants of {method.upper()}:\n\n" + R.ablation_markdown(rows, dataset, method, ref_dir))
        eff = R.effects_markdown(rows, dataset, method)
        if eff:
            parts.append(eff)
    parts.append("Training time (steps only for deep methods: no evaluation or checkpoint; shallow methods: fit time):\n\n" + R.timing_markdown(mine))
    return "\n".join(parts)


def write_results_doc(
    rows: Sequence[dict[str, Any]],
    path: Path,
    ref_dir: Path | None,
    main_seeds: Sequence[int] | None = None,
    command: str | None = None,
    plots: dict[str, str] | None = None,
    against: str | None = None,
    chance: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """``docs/results.md``: a header, one section per dataset present (same template), notes.

    ``plots``: {dataset: image path relative to the document}; default: ``results_<dataset>_curves.png``
    beside the document when it exists.
    """
    rows = list(rows)
    all_seeds = sorted({r["seed"] for r in rows})
    seeds = sorted(main_seeds) if main_seeds else all_seeds
    extra = [r for r in rows if r["seed"] not in seeds]
    rows = [r for r in rows if r["seed"] in seeds]
    now = _dt.datetime.now().strftime("%Y-%m-%d")
    methods = sorted({r["method"] for r in rows})
    parts: list[str] = [
        "# Results\n",
        f"Methods: {', '.join(m.upper() for m in methods)}. Generated on {now} (CPU, {platform.machine()}, {os.cpu_count()} cores "
        f"shared with other jobs; seeds {', '.join(map(str, seeds))}) by `{command or 'cmhash reproduce report'}`. Do not edit by "
        "hand: rerun it (finished runs are reused, unfinished ones resume). All numbers are mAP@50 with the DJSRH definition "
        "(AP over the relevant items inside the top 50, mean over all queries, relevance = at least one shared label, ties "
        "broken by database index), on the test protocol, evaluated once after training (no model selection on the query "
        "set). '±' is the sample standard deviation over seeds.\n",
    ]
    parts.append(HOW_TO)
    datasets = [d for d in DATASET_ORDER if R.group(rows, dataset=d)] + sorted({r["dataset"] for r in rows} - set(DATASET_ORDER))
    doc_dir = Path(path).parent
    if plots is None:
        plots = {d: CURVES_PNG.format(dataset=d) for d in datasets if (doc_dir / CURVES_PNG.format(dataset=d)).exists()}
    for i, dataset in enumerate(datasets, 1):
        parts.append(dataset_section(i, dataset, rows, extra, ref_dir, plots.get(dataset), seeds, against, (chance or {}).get(dataset)))
    loads = [r["load_average"][0] for r in rows if r.get("load_average")]
    notes = ["## Notes\n"]
    if loads:
        notes.append(f"* Load average (1 min) when the runs finished: median {np.median(loads):.1f}, max {max(loads):.1f}.")
    codes: dict[str, int] = {}
    for r in rows + extra:
        key = r.get("code") or "not recorded (runs made before cmhash recorded its version in metrics.json)"
        codes[key] = codes.get(key, 0) + 1
    notes.append("* Code that made the runs: " + "; ".join(f"{k}: {n} runs" for k, n in sorted(codes.items())) + ".")
    notes.append("* Every run's `metrics.json` (with its full protocol), `checkpoint.pt` and `train_log.csv` are in the grid folder; "
                 "the long-format CSV beside the tables has one row per run with its protocol.")  # fmt: skip
    parts.append("\n".join(notes) + "\n")
    text = "\n".join(p for p in parts if p)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return path


def write_report(root: Path, ref_dir: Path | None, *, doc: Path | None = None, curve_bits: int | None = None,
                 main_seeds: Sequence[int] | None = None, command: str | None = None, against: str | None = None) -> dict[str, Any]:  # fmt: skip
    """From every finished cell under ``root``: ``root/table1.md``, ``root/table1.csv``, ``root/<dataset>/curves.png``;
    with ``doc``, the results document too (plots copied beside it)."""
    import shutil

    from cmhash.io import atomic_path

    from cmhash.experiments.chance import load_chance

    rows = R.collect(R.scan(root), root)
    chance = {d: c for d in sorted({r["dataset"] for r in rows}) if (c := load_chance(root, d))}
    R.write_csv(rows, Path(root) / "table1.csv")
    pngs = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        png = R.plot_curves(rows, dataset, Path(root) / dataset / "curves.png", curve_bits)
        png = None if png is None else Path(png)
        if png is not None:
            pngs[dataset] = png
            if doc is not None:
                Path(doc).parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(Path(doc).parent / CURVES_PNG.format(dataset=dataset), suffix=".png") as tmp:
                    shutil.copyfile(png, tmp)
    rel = {d: str(p.relative_to(root)) for d, p in pngs.items()}
    md = write_results_doc(rows, Path(root) / "table1.md", ref_dir, main_seeds, command, plots=rel, against=against, chance=chance)
    out = {"rows": rows, "markdown": md, "csv": Path(root) / "table1.csv", "plots": pngs}
    if doc is not None:
        out["doc"] = write_results_doc(rows, Path(doc), ref_dir, main_seeds, command, against=against, chance=chance)
    return out


__all__ = ["CURVES_PNG", "HOW_TO", "dataset_section", "reference_check", "seed_variance", "write_report", "write_results_doc"]
