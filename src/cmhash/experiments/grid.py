"""Experiment grids of the DJSRH paper (Table 1, Table 2 ablation) run over seeds, and their reports.

A grid is a list of :class:`Cell` (method, variant, dataset, bits, seed), each trained by its own
``cmhash train`` process into ``OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>/``. A cell whose
``metrics.json`` exists is skipped, and an interrupted cell resumes from its checkpoint, so a grid
can be stopped and restarted at any time. Reports are markdown tables (mean +- std over seeds, our
numbers beside the paper's and the independent reference's), a long-format CSV and PNG plots of
the precision@top-R curves.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cmhash.errors import MissingFileError
from cmhash.io import atomic_open

ABLATION_ORDER = ("djsrh-1", "djsrh-2", "djsrh-3", "djsrh-4", "djsrh-5", "djsrh", "djsrh-6", "djsrh-noeta")
ABLATION_LABELS = {
    "djsrh-1": "S = S_I",
    "djsrh-2": "S = S_T",
    "djsrh-3": "beta S_I + (1-beta) S_T",
    "djsrh-4": "+ eta (high-order term)",
    "djsrh-5": "+ mu",
    "djsrh": "+ lambda1, lambda2 (full DJSRH)",
    "djsrh-6": "full, alpha = 1 (constant tanh)",
    "djsrh-noeta": "full without eta (cmhash addition)",
}
#: What differs between our protocol and the paper's, per dataset (table captions).
PROTOCOL_NOTES = {
    "mirflickr": (
        "Ours and the independent reference: the 7,696-pair subset of MIRFlickr-25K in ../shared/data (image number <= 10000), "
        "frozen EfficientNet-Lite0 pooled features (1,280-d) with a trained MLP head as ImgNet, binary 1,386-d tag BoW, "
        "DJSRH per-label split (2,000 queries, 5,696 database, 5,000 training pairs). Paper: the full 20,015-pair set "
        "(18,015 database), AlexNet fine-tuned end to end on 224-px crops. mAP@50, DJSRH definition, ties broken by database index."
    ),
    "wiki": (
        "Ours and the independent reference: the official 128-d SIFT bag-of-words image features and 10-d LDA text features, "
        "official split (2,173 training = database pairs, 693 queries), ImgNet = MLP head over the SIFT features. "
        "Paper: AlexNet fc7 features of the raw Wiki images (conv layers frozen, fc layers trained), which are not available here; "
        "SIFT BoW is a far weaker image representation. mAP@50, DJSRH definition."
    ),
    "nuswide": "Paper setting: NUS-WIDE top-10 concepts, 186,577 pairs, AlexNet end to end.",
}
PAPER_DATASET = {"mirflickr": "mirflickr", "wiki": "wiki", "nuswide": "nuswide"}


@dataclass(frozen=True)
class Cell:
    method: str
    variant: str
    dataset: str
    bits: int
    seed: int

    def run_dir(self, root: Path) -> Path:
        return Path(root) / self.dataset / self.method / self.variant / f"{self.bits}bits" / f"seed{self.seed}"


@dataclass
class GridSpec:
    """Everything a ``cmhash train`` call of a cell needs besides the cell itself."""

    data_root: str | None
    features: str | None = None
    epochs: int | None = None
    overrides: list[str] = field(default_factory=list)
    threads: int = 1
    device: str = "auto"
    extra_args: list[str] = field(default_factory=list)


def plan(method: str, dataset: str, bits: Iterable[int], seeds: Iterable[int], variants: Iterable[str] | None = None) -> list[Cell]:
    """Cells of a grid; ``variants`` default to the method's own settings (variant name = method name)."""
    return [Cell(method, v, dataset, int(b), int(s)) for v in (variants or (method,)) for b in bits for s in seeds]


def train_command(cell: Cell, root: Path, spec: GridSpec) -> list[str]:
    cmd = [sys.executable, "-m", "cmhash", "train", cell.method, "--dataset", cell.dataset, "--bits", str(cell.bits)]
    cmd += ["--seed", str(cell.seed), "--out", str(cell.run_dir(root)), "--resume", "--no-progress", "--no-tensorboard"]
    cmd += ["--threads", str(spec.threads), "--device", spec.device]
    if spec.data_root:
        cmd += ["--data-root", str(spec.data_root)]
    if spec.features:
        cmd += ["--features", str(spec.features)]
    if cell.variant != cell.method:
        cmd += ["--variant", cell.variant]
    if spec.epochs:
        cmd += ["--epochs", str(spec.epochs)]
    for item in spec.overrides:
        cmd += ["--set", item]
    return cmd + list(spec.extra_args)


def is_done(cell: Cell, root: Path) -> bool:
    return (cell.run_dir(root) / "metrics.json").exists()


def run_grid(cells: Sequence[Cell], root: Path, spec: GridSpec, jobs: int = 1, progress: bool = True, log=print) -> list[Cell]:
    """Train every cell without a metrics.json, ``jobs`` processes at a time; returns the failed cells."""
    pending = [c for c in cells if not is_done(c, root)]
    if not pending:
        return []
    log(f"{len(cells) - len(pending)} of {len(cells)} runs already done; training {len(pending)} ({jobs} at a time) under {root}")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc="runs", unit="run")
    running: list[tuple[Cell, subprocess.Popen, Any, float]] = []
    failed: list[Cell] = []
    queue = list(pending)
    try:
        while queue or running:
            while queue and len(running) < max(1, jobs):
                cell = queue.pop(0)
                out = cell.run_dir(root)
                out.mkdir(parents=True, exist_ok=True)
                fh = open(out / "train.out", "a", encoding="utf-8")
                fh.write(f"$ {' '.join(train_command(cell, root, spec))}\n")
                fh.flush()
                proc = subprocess.Popen(train_command(cell, root, spec), stdout=fh, stderr=subprocess.STDOUT, env=env)
                running.append((cell, proc, fh, time.time()))
            time.sleep(0.5)
            for item in list(running):
                cell, proc, fh, t0 = item
                if proc.poll() is None:
                    continue
                fh.close()
                running.remove(item)
                if proc.returncode != 0 or not is_done(cell, root):
                    failed.append(cell)
                    log(f"FAILED ({proc.returncode}): {cell} -> see {cell.run_dir(root) / 'train.out'}")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(last=f"{cell.variant}/{cell.bits}b/s{cell.seed} {time.time() - t0:.0f}s")
    except KeyboardInterrupt:
        for cell, proc, fh, _ in running:
            proc.terminate()
            proc.wait()
            fh.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    return failed


# ---------------------------------------------------------------------------- results
def collect(cells: Sequence[Cell], root: Path) -> list[dict[str, Any]]:
    """One row per finished cell (long format)."""
    rows = []
    for c in cells:
        path = c.run_dir(root) / "metrics.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text(encoding="utf-8"))
        epoch_secs = _epoch_seconds(c.run_dir(root) / "train_log.csv")
        rows.append(
            {
                **asdict(c),
                "i2t": float(m["i2t"]["map@50"]),
                "t2i": float(m["t2i"]["map@50"]),
                "seconds": m.get("seconds"),
                "train_seconds": m.get("train_seconds_total") or m.get("train_seconds_epochs") or m.get("train_seconds"),
                "seconds_per_epoch": m.get("seconds_per_epoch"),
                "seconds_per_epoch_median": float(np.median(epoch_secs)) if epoch_secs else None,
                "epochs": m.get("epochs"),
                "curves": m.get("curves"),
                "load_average": (m.get("environment") or {}).get("load_average"),
                "code": (m.get("environment") or {}).get("cmhash"),
            }
        )
    return rows


def _epoch_seconds(log: Path) -> list[float]:
    """Per-epoch step seconds from a run's train_log.csv (empty when there is none)."""
    if not log.exists():
        return []
    with open(log, encoding="utf-8", newline="") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh) if r.get("seconds") not in (None, "")]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    cols = ["method", "variant", "dataset", "bits", "seed", "i2t", "t2i", "seconds", "train_seconds", "seconds_per_epoch", "seconds_per_epoch_median", "epochs"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    with atomic_open(path, "w") as fh:
        fh.write(buf.getvalue())
    return path


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def fmt(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "-"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def group(rows, **where) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


# ---------------------------------------------------------------------------- published figures
def default_reference_dir() -> Path | None:
    """``../shared/reference`` beside the checkout (or $CMHASH_REFERENCE), when present."""
    env = os.environ.get("CMHASH_REFERENCE")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "reference"
        if (cand / "djsrh_table1_map50.csv").exists():
            return cand
    return None


def load_paper_table1(ref_dir: Path | None) -> dict[tuple[str, str, int, str], float]:
    """{(method, dataset, bits, 'i2t'|'t2i'): mAP@50} from djsrh_table1_map50.csv."""
    out: dict[tuple[str, str, int, str], float] = {}
    if ref_dir is None or not (Path(ref_dir) / "djsrh_table1_map50.csv").exists():
        return out
    with open(Path(ref_dir) / "djsrh_table1_map50.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            out[(r["method"].upper(), r["dataset"].lower(), int(r["bits"]), r["task"].lower())] = float(r["map50"])
    return out


def load_paper_ablation(ref_dir: Path | None) -> dict[str, dict[str, float]]:
    """{variant: {'i2t_64': .., 't2i_64': .., 'i2t_128': .., 't2i_128': ..}} (paper Table 2, NUS-WIDE)."""
    out: dict[str, dict[str, float]] = {}
    path = None if ref_dir is None else Path(ref_dir) / "djsrh_table2_ablation_nuswide_map50.csv"
    if path is None or not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            out[r["model"].lower()] = {k: float(v) for k, v in r.items() if k.startswith(("i2t", "t2i"))}
    return out


_SECTION = {"mirflickr": "## MIRFlickr", "wiki": "## Wikipedia"}


def load_independent_reference(ref_dir: Path | None) -> dict[tuple[str, str, int, str], float]:
    """Figures of ``independent_reference.md``: {(row label, dataset, bits, task): mAP@50}.

    Row labels are the table's first column cut at the first parenthesis (e.g. "CMFH",
    "DJSRH, 80 epochs"); cells read "i2t / t2i".
    """
    out: dict[tuple[str, str, int, str], float] = {}
    path = None if ref_dir is None else Path(ref_dir) / "independent_reference.md"
    if path is None or not path.exists():
        return out
    text = path.read_text(encoding="utf-8")
    for dataset, heading in _SECTION.items():
        start = text.find(heading)
        if start < 0:
            continue
        end = text.find("\n## ", start + 1)
        section = text[start : end if end > 0 else len(text)]
        bits_cols: list[int] = []
        for line in section.splitlines():
            if not line.startswith("|"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == "method":
                bits_cols = [int(re.sub(r"\D", "", c)) for c in cells[1:]]
                continue
            if not bits_cols or set(cells[0]) <= set("-: "):
                continue
            label = cells[0].split("(")[0].strip().rstrip(",")
            for b, cell in zip(bits_cols, cells[1:]):
                m = re.match(r"\s*([.\d]+)\s*/\s*([.\d]+)", cell)
                if m:
                    out[(label, dataset, b, "i2t")] = float(m.group(1))
                    out[(label, dataset, b, "t2i")] = float(m.group(2))
    return out


def reference_djsrh_label(ref: dict, dataset: str) -> str | None:
    """The reference's longest-trained DJSRH row for ``dataset`` (e.g. 'DJSRH, 80 epochs')."""
    labels = sorted({k[0] for k in ref if k[1] == dataset and k[0].startswith("DJSRH")})
    if not labels:
        return None

    def epochs(label: str) -> int:
        m = re.search(r"(\d+)\s*epochs", label)
        return int(m.group(1)) if m else 0

    return max(labels, key=epochs)


# ---------------------------------------------------------------------------- tables
def table1_markdown(rows, dataset: str, method: str = "djsrh", ref_dir: Path | None = None, variant: str | None = None) -> str:
    """Ours (mean ± std over seeds) beside the independent reference and the paper, per code length."""
    paper = load_paper_table1(ref_dir)
    ref = load_independent_reference(ref_dir)
    ref_label = reference_djsrh_label(ref, dataset) if method == "djsrh" else method.upper()
    mine = group(rows, dataset=dataset, method=method, variant=variant or method)
    bits = sorted({r["bits"] for r in mine})
    seeds = sorted({r["seed"] for r in mine})
    head = ["bits", "ours I→T", f"ref. I→T", "paper I→T", "ours T→I", "ref. T→I", "paper T→I"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in bits:
        cells = [str(b)]
        for task in ("i2t", "t2i"):
            rs = [r[task] for r in mine if r["bits"] == b]
            cells.append(fmt(*mean_std(rs)))
            rv = ref.get((ref_label, dataset, b, task)) if ref_label else None
            cells.append(f"{rv:.3f}" if rv is not None else "-")
            pv = paper.get((method.upper(), PAPER_DATASET.get(dataset, dataset), b, task))
            cells.append(f"{pv:.3f}" if pv is not None else "-")
        lines.append("| " + " | ".join(cells[:1] + cells[1:4] + cells[4:]) + " |")
    caption = (
        f"mAP@50 of {method.upper()} on {dataset}, mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
        f"each seed draws its own split, initialisation and batch order. 'ref.' = independent reference ({ref_label or 'n/a'}), "
        f"'paper' = DJSRH paper Table 1. {PROTOCOL_NOTES.get(dataset, '')}"
    )
    return "\n".join(lines) + "\n\n" + caption + "\n"


def ablation_markdown(rows, dataset: str, ref_dir: Path | None = None, method: str = "djsrh") -> str:
    paper = load_paper_ablation(ref_dir)
    mine = group(rows, dataset=dataset, method=method)
    variants = [v for v in ABLATION_ORDER if any(r["variant"] == v for r in mine)]
    bits = sorted({r["bits"] for r in mine if r["variant"] in variants})
    head = ["variant", "configuration"]
    for b in bits:
        head += [f"{b} I→T", f"{b} T→I"]
    head += [f"paper {b} I→T / T→I (NUS-WIDE)" for b in bits if b in (64, 128)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        cells = [v.upper(), ABLATION_LABELS.get(v, "")]
        for b in bits:
            for task in ("i2t", "t2i"):
                cells.append(fmt(*mean_std([r[task] for r in mine if r["variant"] == v and r["bits"] == b])))
        for b in bits:
            if b in (64, 128):
                p = paper.get(v)
                cells.append(f"{p[f'i2t_{b}']:.3f} / {p[f't2i_{b}']:.3f}" if p else "-")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in mine})
    caption = (
        f"Ablation on {dataset} (paper Table 2 variants), mAP@50 mean ± std over {len(seeds)} seed(s). "
        "The paper's own ablation is on NUS-WIDE with AlexNet, shown for the direction of each effect only. "
        + PROTOCOL_NOTES.get(dataset, "")
    )
    return "\n".join(lines) + "\n\n" + caption + "\n"


def paired_effect(rows, dataset: str, with_variant: str, without_variant: str, method: str = "djsrh") -> list[dict[str, Any]]:
    """Per code length: mean ± std over seeds of (with - without), paired by seed (same split and init)."""
    out = []
    for b in sorted({r["bits"] for r in group(rows, dataset=dataset, method=method)}):
        a = {r["seed"]: r for r in group(rows, dataset=dataset, method=method, variant=with_variant, bits=b)}
        z = {r["seed"]: r for r in group(rows, dataset=dataset, method=method, variant=without_variant, bits=b)}
        seeds = sorted(set(a) & set(z))
        if not seeds:
            continue
        rec: dict[str, Any] = {"bits": b, "seeds": seeds}
        for task in ("i2t", "t2i"):
            d = [a[s][task] - z[s][task] for s in seeds]
            rec[task] = mean_std(d)
            rec[f"{task}_per_seed"] = d
        out.append(rec)
    return out


def effect_markdown(effects: list[dict[str, Any]], title: str) -> str:
    if not effects:
        return ""
    lines = [f"| bits | Δ I→T ({title}) | Δ T→I | per-seed Δ T→I |", "|---|---|---|---|"]
    for e in effects:
        i_m, i_s, n = e["i2t"]
        t_m, t_s, _ = e["t2i"]
        per = ", ".join(f"{d:+.3f}" for d in e["t2i_per_seed"])
        lines.append(f"| {e['bits']} | {i_m:+.3f} ± {i_s:.3f} | {t_m:+.3f} ± {t_s:.3f} | {per} |")
    return "\n".join(lines) + "\n"


def timing_markdown(rows) -> str:
    """Per dataset/variant/bits: s/epoch (mean of runs, and median epoch: robust to load spikes) and time per run."""
    lines = [
        "| dataset | variant | bits | runs | epochs | s/epoch (mean) | s/epoch (median epoch) | training time per run (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["dataset"], r["variant"], r["bits"]) for r in rows})
    for d, v, b in keys:
        rs = group(rows, dataset=d, variant=v, bits=b)
        spe = mean_std([r["seconds_per_epoch"] for r in rs])
        med = [r.get("seconds_per_epoch_median") for r in rs if r.get("seconds_per_epoch_median") is not None]
        tot = mean_std([r["train_seconds"] for r in rs])
        ep = rs[0].get("epochs")
        if spe[2] == 0:  # shallow methods (CMFH): no epochs
            lines.append(f"| {d} | {v} | {b} | {len(rs)} | - | - | - | {tot[0]:.1f} s |" if tot[2] else f"| {d} | {v} | {b} | {len(rs)} | - | - | - | - |")
            continue
        med_txt = f"{np.median(med):.2f}" if med else "-"
        lines.append(f"| {d} | {v} | {b} | {len(rs)} | {ep} | {spe[0]:.2f} | {med_txt} | {tot[0] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def plot_curves(rows, dataset: str, path: Path, method: str = "djsrh", variant: str | None = None) -> Path | None:
    """PNG: precision@top-R, I→T and T→I, one line per code length (mean over seeds)."""
    mine = [r for r in group(rows, dataset=dataset, method=method, variant=variant or method) if r.get("curves")]
    if not mine:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, task, title in ((axes[0], "i2t", "Image → Text"), (axes[1], "t2i", "Text → Image")):
        for b in sorted({r["bits"] for r in mine}):
            rs = [r for r in mine if r["bits"] == b]
            ranks = rs[0]["curves"]["ranks"]
            prec = np.mean([r["curves"][f"{task}_precision"] for r in rs if r["curves"]["ranks"] == ranks], axis=0)
            ax.plot(ranks, prec, marker="o", markersize=3, label=f"{b} bits")
        ax.set_title(f"{method.upper()} {dataset}: {title}")
        ax.set_xlabel("R (top-R retrieved)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision@top-R")
    axes[1].legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from cmhash.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def curves_markdown(rows, dataset: str, method: str = "djsrh", ranks_shown=(1, 50, 100, 500, 1000, 2000, 5000)) -> str:
    mine = [r for r in group(rows, dataset=dataset, method=method, variant=method) if r.get("curves")]
    if not mine:
        return ""
    ranks = mine[0]["curves"]["ranks"]
    show = [R for R in ranks_shown if R in ranks]
    lines = ["| bits | task | " + " | ".join(f"P@{R}" for R in show) + " |", "|---|---|" + "---|" * len(show)]
    for b in sorted({r["bits"] for r in mine}):
        rs = [r for r in mine if r["bits"] == b]
        for task in ("i2t", "t2i"):
            prec = np.mean([r["curves"][f"{task}_precision"] for r in rs], axis=0)
            lines.append(f"| {b} | {task.upper().replace('2', '→')} | " + " | ".join(f"{prec[ranks.index(R)]:.3f}" for R in show) + " |")
    return "\n".join(lines) + "\n"


def require_reference(ref_dir: str | None) -> Path | None:
    if ref_dir is None:
        return default_reference_dir()
    p = Path(ref_dir)
    if not p.exists():
        raise MissingFileError(f"{p}: reference folder not found")
    return p


__all__ = [
    "ABLATION_ORDER",
    "Cell",
    "GridSpec",
    "ablation_markdown",
    "collect",
    "paired_effect",
    "plan",
    "plot_curves",
    "run_grid",
    "table1_markdown",
    "write_csv",
]
