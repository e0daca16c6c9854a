"""Writes ``docs/results.md`` from the runs of ``cmhash reproduce results``.

Every number and every comparison sentence in the document is computed here from the runs'
``metrics.json`` files and the reference tables, so the document is regenerated, never edited.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmhash.io import atomic_open
from cmhash.experiments import grid as R

TOLERANCE = 0.01  # "reaches the reference": mean over seeds at least reference - 0.01


def _mean(rows, task) -> float:
    return R.mean_std([r[task] for r in rows])[0]


def reference_check(rows, dataset: str, ref: dict) -> tuple[str, list[dict[str, Any]]]:
    """Markdown lines comparing our mean with the reference's DJSRH row, and the per-cell verdicts."""
    label = R.reference_djsrh_label(ref, dataset)
    mine = R.group(rows, dataset=dataset, method="djsrh", variant="djsrh")
    verdicts = []
    for b in sorted({r["bits"] for r in mine}):
        for task in ("i2t", "t2i"):
            rv = ref.get((label, dataset, b, task))
            if rv is None:
                continue
            m, s, n = R.mean_std([r[task] for r in mine if r["bits"] == b])
            verdicts.append({"bits": b, "task": task, "ours": m, "std": s, "n": n, "ref": rv, "delta": m - rv, "ok": m >= rv - TOLERANCE})
    if not verdicts:
        return "", verdicts
    ok = sum(v["ok"] for v in verdicts)
    worst = min(verdicts, key=lambda v: v["delta"])
    text = (
        f"Against the independent reference ({label}): {ok} of {len(verdicts)} cells reach it "
        f"(mean over seeds ≥ reference − {TOLERANCE}); differences ours − reference range from "
        f"{min(v['delta'] for v in verdicts):+.3f} to {max(v['delta'] for v in verdicts):+.3f} "
        f"(lowest: {worst['bits']} bits {worst['task'].upper().replace('2', '→')})."
    )
    return text, verdicts


def cmfh_comparison(rows, dataset: str, ref: dict) -> str:
    """DJSRH (ours) against CMFH: our CMFH runs if any, else the reference's CMFH figures."""
    mine = R.group(rows, dataset=dataset, method="djsrh", variant="djsrh")
    ours_cmfh = R.group(rows, dataset=dataset, method="cmfh")
    bits = sorted({r["bits"] for r in mine})
    if not bits:
        return ""
    src = "cmhash CMFH (same splits and seeds)" if ours_cmfh else "independent reference CMFH"
    lines = [f"| bits | DJSRH I→T | CMFH I→T | Δ | DJSRH T→I | CMFH T→I | Δ |", "|---|---|---|---|---|---|---|"]
    wins = {"i2t": 0, "t2i": 0}
    n = 0
    for b in bits:
        cells = [str(b)]
        have = True
        for task in ("i2t", "t2i"):
            d = _mean([r for r in mine if r["bits"] == b], task)
            if ours_cmfh:
                c = _mean([r for r in ours_cmfh if r["bits"] == b], task)
            else:
                c = ref.get(("CMFH", dataset, b, task), float("nan"))
            if np.isnan(c):
                have = False
            wins[task] += int(d > c)
            cells += [f"{d:.3f}", f"{c:.3f}", f"{d - c:+.3f}"]
        n += int(have)
        lines.append("| " + " | ".join(cells) + " |")
    verdict = (
        f"DJSRH beats {src} image→text at {wins['i2t']} of {len(bits)} code lengths and text→image at {wins['t2i']} of {len(bits)}."
    )
    return "\n".join(lines) + f"\n\nCMFH source: {src}. " + verdict + "\n"


def eta_findings(rows, dataset: str) -> str:
    out = []
    for with_v, without_v, what in (
        ("djsrh-4", "djsrh-3", "adding eta = 0.4 to the plain mix (DJSRH-4 − DJSRH-3, as in the paper's Table 2)"),
        ("djsrh", "djsrh-noeta", "eta in the full model (DJSRH − DJSRH-noeta)"),
    ):
        for e in R.paired_effect(rows, dataset, with_v, without_v):
            ti, ts, n = e["t2i"]
            ii, is_, _ = e["i2t"]
            neg = sum(d < 0 for d in e["t2i_per_seed"])
            out.append(
                f"- {what}, {e['bits']} bits, {n} seeds: text→image {ti:+.3f} ± {ts:.3f} "
                f"(lower in {neg} of {n} seeds), image→text {ii:+.3f} ± {is_:.3f}."
            )
    return "\n".join(out)


def seed_variance(rows, dataset: str, ref: dict, main_seeds: Sequence[int]) -> str:
    """Where every seed run exists beyond the main ones: the spread over seeds against the reference's single run."""
    label = R.reference_djsrh_label(ref, dataset)
    mine = R.group(rows, dataset=dataset, method="djsrh", variant="djsrh")
    lines = []
    for b in sorted({r["bits"] for r in mine}):
        rs = [r for r in mine if r["bits"] == b]
        if len({r["seed"] for r in rs}) <= len(main_seeds):
            continue
        for task in ("i2t", "t2i"):
            v = np.asarray([r[task] for r in rs])
            rv = ref.get((label, dataset, b, task))
            cells = [str(b), task.upper().replace("2", "→"), str(len(v)), f"{v.mean():.3f} ± {v.std(ddof=1):.3f}", f"{v.min():.3f} – {v.max():.3f}"]
            if rv is not None:
                cells += [f"{rv:.3f}", f"{(rv - v.mean()) / v.std(ddof=1):+.1f}", f"{int((v >= rv - TOLERANCE).sum())} of {len(v)}"]
            else:
                cells += ["-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| bits | task | seeds | mean ± std | min – max | reference | reference in std units | seeds ≥ reference − 0.01 |\n|---|---|---|---|---|---|---|---|\n"
    return head + "\n".join(lines) + "\n"


CANONICAL_COMMAND = (
    "cmhash reproduce results --data ../shared/data --mir-features <MIRFlickr EfficientNet-Lite0 features: a cmhash feature "
    "cache or .npz> --seeds 0,1,2 --jobs 2 --out runs --doc docs/results.md "
    "--variance mirflickr:16,32:0-5 --variance wiki:16,32,64,128:0-5"
)

#: Name of the precision@top-R plot written beside the results document (per dataset).
CURVES_PNG = "results_{dataset}_curves.png"

NOTES = """## 6. Notes

* Protocol differences with the paper are stated in each table's caption: our MIRFlickr is the
  7,696-pair subset whose images are in `../shared/data` (database 5,696 instead of 18,015, so
  the top 50 is drawn from a smaller pool), image features are frozen EfficientNet-Lite0 pooled
  features with a trained MLP head instead of AlexNet fine-tuned end to end, and Wiki uses the
  official SIFT bag-of-words features instead of AlexNet fc7 of the raw images. The paper's
  columns are therefore context, not targets; the independent reference ran exactly our protocol.
* Every run is reported at its last epoch; validation (500 queries carved from the database)
  was logged every 40 (MIRFlickr) or 100 (Wiki) epochs and never used to pick a model.
* Runs were made with `cmhash train` processes started by `cmhash reproduce`, one thread each,
  two at a time; each run's `metrics.json`, `checkpoint.pt` and `train_log.csv` are under `runs/`.
"""


def write_results_doc(
    rows: Sequence[dict[str, Any]], path: Path, ref_dir: Path | None, main_seeds: Sequence[int] | None = None, command: str | None = None
) -> Path:
    ref = R.load_independent_reference(ref_dir)
    all_seeds = sorted({r["seed"] for r in rows})
    seeds = sorted(main_seeds) if main_seeds else all_seeds
    extra = [r for r in rows if r["seed"] not in seeds]
    rows = [r for r in rows if r["seed"] in seeds]
    now = _dt.datetime.now().strftime("%Y-%m-%d")
    cmd = CANONICAL_COMMAND
    parts: list[str] = [
        "# DJSRH results\n",
        f"Generated by `{cmd}` on {now} (CPU, {platform.machine()}, {os.cpu_count()} cores shared with other jobs; "
        f"seeds {', '.join(map(str, seeds))}). Do not edit by hand: rerun the command (finished runs are reused, "
        "unfinished ones resume). All numbers are mAP@50 with the DJSRH definition (AP over the relevant items inside "
        "the top 50, mean over all queries, relevance = at least one shared label, ties broken by database index), "
        "on the test protocol, evaluated once after the last epoch (no model selection on the query set). "
        "'±' is the sample standard deviation over seeds; every seed draws its own split, initialisation and batch order.\n",
    ]
    variance = seed_variance(rows + extra, "mirflickr", ref, seeds)
    wiki_variance = seed_variance(rows + extra, "wiki", ref, seeds)
    mir_text, _ = reference_check(rows, "mirflickr", ref)
    wiki_text, _ = reference_check(rows, "wiki", ref)
    parts.append("## 1. MIRFlickr (7,696-pair subset), paper Table 1 protocol\n")
    parts.append(R.table1_markdown(rows, "mirflickr", "djsrh", ref_dir))
    if mir_text:
        parts.append(mir_text + "\n")
    if variance:
        parts.append(
            "Seed variance on MIRFlickr (all seeds run for these code lengths, each seed its own split, initialisation and "
            "batch order; the independent reference's figures are a single run):\n\n" + variance
        )
    curves = R.curves_markdown(rows, "mirflickr")
    if curves:
        parts.append("Precision@top-R (mean over seeds; `cmhash reproduce` also plots these as `runs/mirflickr/curves_djsrh.png`):\n\n" + curves)
        png = Path(path).parent / CURVES_PNG.format(dataset="mirflickr")
        if png.exists():
            parts.append(f"\n![Precision@top-R of DJSRH on MIRFlickr, both directions, one line per code length]({png.name})\n")
    if R.group(rows, dataset="wiki", method="djsrh"):
        parts.append("## 2. Wiki (official features and split)\n")
        parts.append(R.table1_markdown(rows, "wiki", "djsrh", ref_dir))
        if wiki_text:
            parts.append(wiki_text + "\n")
        if wiki_variance:
            parts.append(
                "Seed variance on Wiki (the split is the official one, so seeds change only the initialisation and the "
                "batch order; the reference's figures are a mean of 2 seeds):\n\n" + wiki_variance
            )
    abl = [r for r in rows if r["dataset"] == "mirflickr" and r["method"] == "djsrh"]
    if any(r["variant"] != "djsrh" for r in abl):
        parts.append("## 3. Ablation on MIRFlickr (paper Table 2 variants)\n")
        parts.append(R.ablation_markdown(abl, "mirflickr", ref_dir))
        findings = eta_findings(rows, "mirflickr")
        if findings:
            parts.append("The high-order term eta, paired by seed (same split, initialisation and batch order):\n\n" + findings + "\n")
    cm = cmfh_comparison(rows, "mirflickr", ref)
    if cm:
        parts.append("## 4. DJSRH against CMFH on the same data (MIRFlickr subset)\n")
        parts.append(cm)
        cw = cmfh_comparison(rows, "wiki", ref)
        if cw:
            parts.append("Wiki:\n\n" + cw)
    parts.append("## 5. Training time\n")
    parts.append(
        "Seconds per epoch are the optimiser steps only (no evaluation or checkpoint), one thread per run, two runs at a "
        "time on a 2-core machine shared with other jobs, so they are upper bounds; the median epoch is the least "
        "affected by other jobs (and by runs paused while benchmarks used the machine). `benchmarks/train_bench.py` "
        "measures the step in isolation.\n\n" + R.timing_markdown(rows)
    )
    loads = [r["load_average"][0] for r in rows if r.get("load_average")]
    if loads:
        parts.append(f"\nLoad average (1 min) when the runs finished: median {np.median(loads):.1f}, max {max(loads):.1f} on 2 cores.\n")
    parts.append(NOTES)
    codes: dict[str, int] = {}
    for r in rows + extra:
        key = r.get("code") or "not recorded (runs made before cmhash recorded its version in metrics.json)"
        codes[key] = codes.get(key, 0) + 1
    parts.append("* Code that made the runs: " + "; ".join(f"{k}: {n} runs" for k, n in sorted(codes.items())) + ".\n")
    if command:
        parts.append(f"This file was written by: `{command}`\n")
    text = "\n".join(parts)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return path


__all__ = ["write_results_doc", "reference_check", "cmfh_comparison", "eta_findings"]
