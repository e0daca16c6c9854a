"""Experiment grids (any registered methods x datasets x code lengths x seeds), run over seeds, and their tables.

A grid is a list of :class:`Cell` (method, variant, dataset, bits, seed), each trained by its own
``cmhash train`` process into ``OUT/<dataset>/<method>/<variant>/<bits>bits/seed<k>/``. The layout
lets grids of different methods, started by different people or invocations, share one ``OUT``:
a cell whose ``metrics.json`` exists is skipped, a cell another process is training (its
``train.lock`` names a live process) is left alone, and an interrupted cell resumes from its
checkpoint. :func:`scan` finds every finished cell under ``OUT``, so one report can be built from
whatever exists. Reports are markdown tables (mean +- std over seeds, ours beside the paper's and
the independent reference's figures), a long-format CSV with the protocol of every number, and
PNG plots of the precision@top-R curves. Nothing here names a method: tables list the methods
found in the runs; variants and their comparisons come from ``presets/<method>_variants.yaml``.
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

from cmhash.errors import CmhashError, MissingFileError
from cmhash.io import atomic_open

#: What the paper's protocol was per dataset (table captions; ours is read from each run's metrics.json).
PAPER_PROTOCOL = {
    "mirflickr": "Paper: the full 20,015-pair MIRFlickr-25K (18,015 database), AlexNet fine-tuned end to end on 224-px crops.",
    "wiki": "Paper: AlexNet fc7 features of the raw Wiki images (conv layers frozen), which are not available here.",
    "nuswide": "Paper: NUS-WIDE top-10 concepts, 186,577 pairs, AlexNet end to end.",
}
PAPER_DATASET = {"mirflickr": "mirflickr", "wiki": "wiki", "nuswide": "nuswide"}
LOCK = "train.lock"


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


_SCHEDULE = re.compile(r"e(\d+)(?:-(.+))?")


def schedule_variant(method: str, variant: str, epochs: int | None) -> str:
    """Folder name of ``variant`` trained for ``epochs`` instead of its preset's: ``e10`` or ``e10-<variant>``.

    A shortened schedule is a different experiment: it gets its own folder, so its runs never mix
    with (or get reused as) runs of the preset's schedule, and reports label it ``METHOD [e10]``.
    Methods without epochs (shallow ones) keep the plain name.
    """
    if not epochs or "epochs" not in _defaults(method):
        return variant
    variant_info(method)  # refuses a variants file whose names take the form of these folders
    return f"e{int(epochs)}" if variant == method else f"e{int(epochs)}-{variant}"


def split_schedule(method: str, name: str) -> tuple[str, int | None]:
    """Inverse of :func:`schedule_variant`: ``(preset variant, epochs or None)`` of a variant folder name."""
    m = _SCHEDULE.fullmatch(name)
    if m is None or name in variant_info(method)[0]:
        return name, None
    return m.group(2) or method, int(m.group(1))


def is_schedule_variant(method: str, name: str) -> bool:
    """True for ``e10``: the method's own settings at another number of epochs (no other change)."""
    variant, epochs = split_schedule(method, name)
    return epochs is not None and variant == method


def plan(
    method: str, dataset: str, bits: Iterable[int], seeds: Iterable[int], variants: Iterable[str] | None = None, epochs: int | None = None
) -> list[Cell]:
    """Cells of a grid; ``variants`` default to the method's own settings (variant name = method name).

    With ``epochs`` (an override of the presets' schedule) each variant's folder is named by
    :func:`schedule_variant` (``e10``, ``e10-<variant>``).
    """
    names = [schedule_variant(method, v, epochs) for v in (variants or (method,))]
    return [Cell(method, v, dataset, int(b), int(s)) for v in names for b in bits for s in seeds]


def train_command(cell: Cell, root: Path, spec: GridSpec) -> list[str]:
    cmd = [sys.executable, "-m", "cmhash", "train", cell.method, "--dataset", cell.dataset, "--bits", str(cell.bits)]
    cmd += ["--seed", str(cell.seed), "--out", str(cell.run_dir(root)), "--resume", "--no-progress", "--no-tensorboard"]
    cmd += ["--threads", str(spec.threads), "--device", spec.device]
    if spec.data_root:
        cmd += ["--data-root", str(spec.data_root)]
    if spec.features:
        cmd += ["--features", str(spec.features)]
    variant, epochs = split_schedule(cell.method, cell.variant)
    if variant != cell.method:
        cmd += ["--variant", variant]
    epochs = epochs or spec.epochs
    if epochs and "epochs" in _defaults(cell.method):  # shallow methods have no epochs
        cmd += ["--epochs", str(epochs)]
    for item in spec.overrides:
        cmd += ["--set", item]
    return cmd + list(spec.extra_args)


def _defaults(method: str) -> dict[str, Any]:
    from cmhash.methods import METHODS

    return getattr(METHODS.get(method), "DEFAULTS", {})


def is_done(cell: Cell, root: Path) -> bool:
    return (cell.run_dir(root) / "metrics.json").exists()


_CELL_RE = re.compile(r"^(?P<bits>\d+)bits$")


def scan(root: Path) -> list[Cell]:
    """Every finished cell under ``root`` (``<dataset>/<method>/<variant>/<bits>bits/seed<k>/metrics.json``)."""
    cells = []
    for path in sorted(Path(root).glob("*/*/*/*bits/seed*/metrics.json")):
        run = path.parent
        m = _CELL_RE.match(run.parent.name)
        seed = run.name[len("seed") :]
        if not m or not seed.isdigit():
            continue
        variant, method, dataset = run.parents[1].name, run.parents[2].name, run.parents[3].name
        cells.append(Cell(method, variant, dataset, int(m.group("bits")), int(seed)))
    return cells


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(cell: Cell, root: Path) -> bool:
    """Take the cell's lock (``train.lock`` with our pid); False when a live process holds it."""
    out = cell.run_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return False
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def release(cell: Cell, root: Path) -> None:
    (cell.run_dir(root) / LOCK).unlink(missing_ok=True)


def run_grid(cells: Sequence[Cell], root: Path, spec: GridSpec, jobs: int = 1, progress: bool = True, log=print) -> list[Cell]:
    """Train every cell without a metrics.json, ``jobs`` processes at a time; returns the failed cells."""
    pending = [c for c in cells if not is_done(c, root)]
    if not pending:
        return []
    log(f"{len(cells) - len(pending)} of {len(cells)} runs already done; training {len(pending)} ({jobs} at a time) under {root}")
    busy: list[Cell] = []
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
                if is_done(cell, root):  # finished meanwhile by another invocation
                    continue
                if not claim(cell, root):
                    busy.append(cell)
                    log(f"skipped (another process is training it): {cell.run_dir(root)}")
                    continue
                out = cell.run_dir(root)
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
                release(cell, root)
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
            release(cell, root)
        raise
    finally:
        if bar is not None:
            bar.close()
    return failed


# ---------------------------------------------------------------------------- results
def protocol_of(m: dict[str, Any]) -> dict[str, Any]:
    """How a number was made, from a run's metrics.json: split, evaluation, features, training length, code."""
    p = m.get("protocol") or {}
    split = p.get("split") or {}
    env = m.get("environment") or {}
    return {
        "split": split.get("protocol"),
        "split_sizes": split.get("sizes"),
        "split_params": split.get("params"),
        "metric": (f"mAP@{p.get('topk', 50)}" + (f" ({p['map_definition']})" if p.get("map_definition") else ""))
        if "map@50" in m.get("i2t", {}) or "recall@10" not in m.get("i2t", {})
        else "Recall@10 (pair identity: same image)",
        "tie_break": p.get("tie_break"),
        "selection": p.get("selection"),
        "validation": p.get("validation"),
        "features": m.get("features"),
        "epochs": m.get("epochs"),
        "hparams": m.get("hparams"),
        "code": env.get("cmhash"),
        "device": env.get("device"),
        "threads": env.get("torch_threads"),
    }


def collect(cells: Sequence[Cell], root: Path) -> list[dict[str, Any]]:
    """One row per finished cell (long format), with the protocol of its number."""
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
                # pair-identity runs (Flickr8k) have Recall@K instead of mAP: their tables show Recall@10
                "i2t": float(m["i2t"]["map@50"] if "map@50" in m["i2t"] else m["i2t"]["recall@10"]),
                "t2i": float(m["t2i"]["map@50"] if "map@50" in m["t2i"] else m["t2i"]["recall@10"]),
                "extra": _extra_metrics(m),
                # metrics added after training from the checkpoint (`cmhash reproduce backfill`)
                "backfilled": sorted(m.get("backfilled") or {}),
                "backfill_difference": _backfill_difference(m),
                "seconds": m.get("seconds"),
                "train_seconds": m.get("train_seconds_total") or m.get("train_seconds_epochs") or m.get("train_seconds"),
                "seconds_per_epoch": m.get("seconds_per_epoch"),
                "seconds_per_epoch_median": float(np.median(epoch_secs)) if epoch_secs else None,
                "epochs": m.get("epochs"),
                "curves": m.get("curves"),
                "load_average": (m.get("environment") or {}).get("load_average"),
                "code": (m.get("environment") or {}).get("cmhash"),
                "protocol": protocol_of(m),
                "run_dir": str(c.run_dir(root)),
            }
        )
    return rows


EXTRA_METRICS = ("map@all", "recall@1", "recall@5", "recall@10")


def _extra_metrics(m: dict[str, Any]) -> dict[str, float]:
    """The run's other scalar metrics, per task: ``{"i2t map@all": ..., "real t2i recall@10": ...}``.

    ``real`` = the same metric from the real-valued embeddings (the bound the codes lose against).
    """
    out: dict[str, float] = {}
    for prefix, src in (("", m), ("real ", m.get("real_valued") or {})):
        for task in ("i2t", "t2i"):
            for key in EXTRA_METRICS:
                value = (src.get(task) or {}).get(key)
                if isinstance(value, (int, float)):
                    out[f"{prefix}{task} {key}"] = float(value)
    return out


def metric_markdown(rows, dataset: str, metric: str, pairs: Sequence[tuple[str, str]] | None = None, chance: dict[str, Any] | None = None) -> str:
    """Mean ± std over seeds of one recorded metric (``map@all``, ``recall@10``, ...) per method and code
    length, both directions; with the real-valued bound where the runs recorded one. Empty when no run has it."""
    mine = group(rows, dataset=dataset)
    pairs = list(pairs) if pairs is not None else table_pairs(mine)
    have = [r for r in mine if (r["method"], r["variant"]) in pairs and f"i2t {metric}" in (r.get("extra") or {})]
    if not have:
        return ""
    bits = sorted({r["bits"] for r in have})
    head = ["method", "seeds"] + [f"{b} bits {t}" for b in bits for t in ("I→T", "T→I")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for prefix, suffix in (("", ""), ("real ", " (real-valued)")):
        for method, variant in pairs:
            rs = [r for r in have if (r["method"], r["variant"]) == (method, variant) and f"{prefix}i2t {metric}" in r["extra"]]
            if not rs:
                continue
            cells = [label(method, variant) + suffix, ",".join(map(str, sorted({r["seed"] for r in rs})))]
            for b in bits:
                for task in ("i2t", "t2i"):
                    cells.append(fmt(*mean_std([r["extra"][f"{prefix}{task} {metric}"] for r in rs if r["bits"] == b])))
            lines.append("| " + " | ".join(cells) + " |")
    row = chance_row(chance, bits, ("i2t", "t2i"), metric, sorted({r["seed"] for r in have}))
    if row:
        lines += [row, "", CHANCE_NOTE.format(draws=chance.get("draws", "?"))]
    late = [r for r in have if metric in (r.get("backfilled") or ())]
    if late:  # say so: these numbers were not computed by the training run itself
        worst = max([r.get("backfill_difference") or 0.0 for r in late])
        lines += ["", f"{len(late)} of {len(have)} runs here had {metric} added after training from their checkpoints "
                  f"(`cmhash reproduce backfill`: same split, codes and protocol; their recorded mAP@50 reproduced within "
                  f"{worst:.1e} at worst; see `backfilled` in each metrics.json)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _backfill_difference(m: dict[str, Any]) -> float | None:
    """Largest |recomputed - recorded| mAP@50 of a run's backfill checks (None when nothing was backfilled)."""
    diffs = [float(v["difference"]) for rec in (m.get("backfilled") or {}).values() for v in ((rec.get("check") or {}).values())
             if isinstance(v, dict) and "difference" in v]  # fmt: skip
    return max(diffs) if diffs else None


def _epoch_seconds(log: Path) -> list[float]:
    """Per-epoch step seconds from a run's train_log.csv (empty when there is none)."""
    if not log.exists():
        return []
    with open(log, encoding="utf-8", newline="") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh) if r.get("seconds") not in (None, "")]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Long format, one row per run; ``metrics`` is the JSON of the other recorded metrics (mAP@all, Recall@K, their
    real-valued bounds), ``protocol`` the JSON of :func:`protocol_of` (how the number was made)."""
    cols = ["method", "variant", "dataset", "bits", "seed", "i2t", "t2i", "seconds", "train_seconds", "seconds_per_epoch",
            "seconds_per_epoch_median", "epochs", "code", "run_dir", "metrics", "protocol"]  # fmt: skip
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "metrics": json.dumps(r.get("extra") or {}, sort_keys=True), "protocol": json.dumps(r.get("protocol"), sort_keys=True, default=str)})
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


def reference_label(ref: dict, dataset: str, method: str) -> str | None:
    """The independent reference's row for ``method`` on ``dataset`` (its longest-trained one, e.g. 'X, 80 epochs')."""
    labels = sorted({k[0] for k in ref if k[1] == dataset and k[0].split(",")[0].strip().upper() == method.upper()})
    if not labels:
        return None

    def epochs(label: str) -> int:
        m = re.search(r"(\d+)\s*epochs", label)
        return int(m.group(1)) if m else 0

    return max(labels, key=epochs)


def variant_info(method: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """``(order, descriptions, compare_with)`` of the method's variants file (empty without one)."""
    from cmhash.presets import has_presets, sections

    if not has_presets(f"{method}_variants"):
        return [], {}, {}
    secs = {k: v for k, v in sections(f"{method}_variants").items() if k != "default"}
    reserved = [k for k in secs if _SCHEDULE.fullmatch(k)]
    if reserved:  # e10 / e10-x are the folders of shortened schedules (schedule_variant): a variant there would share them
        raise CmhashError(
            f"presets/{method}_variants.yaml: variant name '{reserved[0]}' has the form of a shortened-schedule folder "
            "(e<N> or e<N>-<variant>, made by --epochs); rename the variant"
        )
    return list(secs), {k: v.description or "" for k, v in secs.items()}, {k: v.compare_with for k, v in secs.items() if v.compare_with}


def method_variants(rows, dataset: str | None = None) -> list[tuple[str, str]]:
    """(method, variant) pairs present, each method's own settings first, then its variants in file order."""
    pairs = sorted({(r["method"], r["variant"]) for r in rows if dataset is None or r["dataset"] == dataset})
    out = []
    for method in sorted({m for m, _ in pairs}):
        order = variant_info(method)[0]
        vs = [v for m, v in pairs if m == method]
        out += [(method, v) for v in sorted(vs, key=lambda v: (v != method, order.index(v) if v in order else len(order), v))]
    return out


def table_pairs(rows, dataset: str | None = None) -> list[tuple[str, str]]:
    """The rows of a main table: each method's own settings, or, for a method run only at a
    shortened schedule, that schedule (labelled ``METHOD [e10]``)."""
    pairs = method_variants(rows, dataset)
    own = {m for m, v in pairs if m == v}
    return [(m, v) for m, v in pairs if m == v or (m not in own and is_schedule_variant(m, v))]


def label(method: str, variant: str) -> str:
    return method.upper() if variant == method else f"{method.upper()} [{variant}]"


# ---------------------------------------------------------------------------- tables
def chance_values(chance: dict[str, Any] | None, bits: int, task: str, metric: str, seeds: Sequence[int] | None = None) -> list[float]:
    """Per-seed means (over draws) of ``metric`` for ``bits``/``task``, restricted to ``seeds`` when given."""
    if not chance:
        return []
    return [
        float(e[task][metric]["mean"])
        for e in chance.get("entries", [])
        if e.get("bits") == bits and (seeds is None or e.get("seed") in seeds) and metric in (e.get(task) or {})
    ]


def chance_row(chance: dict[str, Any] | None, bits: Sequence[int], tasks: Sequence[str], metric: str, seeds: Sequence[int], suffix=lambda v: v) -> str | None:
    """The "random codes" table row from ``chance.json`` (mean ± std over the table's seeds), or None when absent."""
    if not chance:
        return None
    have = sorted({e["seed"] for e in chance.get("entries", []) if e.get("seed") in seeds and e.get("bits") in bits})
    if not have:
        return None
    cells = ["random codes (chance)", ",".join(map(str, have))]
    for b in bits:
        for task in tasks:
            cells.append(suffix(fmt(*mean_std(chance_values(chance, b, task, metric, have)))))
    return "| " + " | ".join(cells) + " |"


CHANCE_NOTE = ("'random codes (chance)' = the chance level: independent uniform random ±1 codes on each seed's own split, "
               "evaluated with the same protocol (`cmhash reproduce chance`; mean over {draws} draws per seed, ± std over seeds).")  # fmt: skip


def table1_markdown(rows, dataset: str, ref_dir: Path | None = None, pairs: Sequence[tuple[str, str]] | None = None,
                    chance: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Every (method, variant) of ``dataset``: ours (mean ± std over seeds) beside the reference and the paper, per code length;
    with ``chance`` (``chance.json``) a last "random codes" row, the chance level."""
    paper = load_paper_table1(ref_dir)
    ref = load_independent_reference(ref_dir)
    mine = group(rows, dataset=dataset)
    pairs = list(pairs) if pairs is not None else table_pairs(mine)
    bits = sorted({r["bits"] for r in mine if (r["method"], r["variant"]) in pairs})
    out = []
    for task, arrow in (("i2t", "Image → Text"), ("t2i", "Text → Image")):
        head = ["method", "seeds"] + [f"{b} bits" for b in bits]
        lines = [f"{arrow}, mAP@50: ours (mean ± std over seeds) / independent reference / paper", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, variant in pairs:
            rs = group(mine, method=method, variant=variant)
            seeds = sorted({r["seed"] for r in rs})
            own = variant == method or is_schedule_variant(method, variant)  # the method itself, maybe on a shorter schedule
            ref_label = reference_label(ref, dataset, method) if own else None
            cells = [label(method, variant), ",".join(map(str, seeds))]
            for b in bits:
                ours = fmt(*mean_std([r[task] for r in rs if r["bits"] == b]))
                rv = ref.get((ref_label, dataset, b, task)) if ref_label else None
                pv = paper.get((method.upper(), PAPER_DATASET.get(dataset, dataset), b, task)) if own else None
                cells.append(f"{ours} / {'-' if rv is None else f'{rv:.3f}'} / {'-' if pv is None else f'{pv:.3f}'}")
            lines.append("| " + " | ".join(cells) + " |")
        row = chance_row(chance, bits, (task,), "map@50", sorted({r["seed"] for r in mine}), lambda v: f"{v} / - / -")
        if row:
            lines.append(row)
        out.append("\n".join(lines) + "\n")
    caption = (
        f"A seed sets the initialisation and batch order, and the split where the protocol draws one (official splits "
        f"are fixed). 'reference' = the independent reference "
        f"(independent_reference.md, its longest-trained row of the method), 'paper' = DJSRH paper Table 1 "
        f"(djsrh_table1_map50.csv). {PAPER_PROTOCOL.get(dataset, '')} Our protocol per method: see the protocol table."
    )
    if chance and any("random codes" in part for part in out):
        caption += " " + CHANCE_NOTE.format(draws=chance.get("draws", "?"))
    return "\n".join(out) + "\n" + caption + "\n"


def protocol_markdown(rows, dataset: str) -> str:
    """How each method's numbers on ``dataset`` were made (read from the runs); differing cells are listed."""
    lines = ["| method | runs | split (query / database / train) | features | epochs | selection | code |", "|---|---|---|---|---|---|---|"]
    for method, variant in method_variants(rows, dataset):
        rs = group(rows, dataset=dataset, method=method, variant=variant)
        protos = [r.get("protocol") or {} for r in rs]

        def one(key, fmt_fn=str):
            vals = sorted({json.dumps(p.get(key), sort_keys=True, default=str) for p in protos})
            shown = [fmt_fn(json.loads(v)) for v in vals]
            return " or ".join(shown) if shown else "-"

        def split_txt(p):
            return "-" if not p else p

        sizes = one("split_sizes", lambda s: "-" if not s else f"{s.get('query')} / {s.get('database')} / {s.get('train')}")
        feats = one("features", lambda f: "-" if not f else ", ".join(f"{k}: {v}" for k, v in sorted(f.items())))
        lines.append(
            f"| {label(method, variant)} | {len(rs)} | {one('split', split_txt)}: {sizes} | {feats} | {one('epochs', lambda e: '-' if e is None else str(e))} "
            f"| {one('selection')} | {one('code')} |"
        )
    return "\n".join(lines) + "\n"


def ablation_markdown(rows, dataset: str, method: str, ref_dir: Path | None = None) -> str:
    """The method's variants present on ``dataset`` (order and descriptions from its variants file)."""
    paper = load_paper_ablation(ref_dir)
    order, desc, _ = variant_info(method)
    mine = group(rows, dataset=dataset, method=method)
    present = {r["variant"] for r in mine}
    variants = [v for v in order if v in present] + sorted(present - set(order))
    bits = sorted({r["bits"] for r in mine if r["variant"] in variants})
    head = ["variant", "configuration"]
    for b in bits:
        head += [f"{b} I→T", f"{b} T→I"]
    paper_bits = [b for b in bits if any(f"i2t_{b}" in p for p in paper.values())]
    head += [f"paper {b} I→T / T→I" for b in paper_bits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        cells = [v.upper(), variant_description(method, v, desc)]
        for b in bits:
            for task in ("i2t", "t2i"):
                cells.append(fmt(*mean_std([r[task] for r in mine if r["variant"] == v and r["bits"] == b])))
        for b in paper_bits:
            p = paper.get(v)
            cells.append(f"{p[f'i2t_{b}']:.3f} / {p[f't2i_{b}']:.3f}" if p and f"i2t_{b}" in p else "-")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in mine})
    caption = (
        f"Variants of {method.upper()} on {dataset} (presets/{method}_variants.yaml), mAP@50 mean ± std over {len(seeds)} seed(s). "
        "Paper columns: the paper's own ablation table where one exists (djsrh_table2_ablation_nuswide_map50.csv: NUS-WIDE, AlexNet), "
        "for the direction of each effect only."
    )
    return "\n".join(lines) + "\n\n" + caption + "\n"


def order_markdown(rows, dataset: str, ref_dir: Path | None = None) -> str:
    """Our order of the methods the paper's Table 1 also has, beside the paper's, per code length and
    direction, with Kendall's tau between the two (1 = same order, -1 = reversed)."""
    from scipy.stats import kendalltau

    paper = load_paper_table1(ref_dir)
    mine = group(rows, dataset=dataset)
    pd = PAPER_DATASET.get(dataset, dataset)
    lines = ["| bits | task | methods | ours, best first | paper, best first | Kendall τ |", "|---|---|---|---|---|---|"]
    for b in sorted({r["bits"] for r in mine}):
        for task, arrow in (("i2t", "I→T"), ("t2i", "T→I")):
            # one row per method, as the paper has: the variant with the most runs at this length, the
            # method's own preset on a tie (DBRC [e156] with one run beside DBRC [e40] with three)
            best: dict[str, tuple] = {}
            for method, variant in table_pairs(mine):
                pv = paper.get((method.upper(), pd, b, task))
                vals = [r[task] for r in mine if (r["method"], r["variant"], r["bits"]) == (method, variant, b)]
                rank = (len(vals), variant == method)
                if pv is not None and vals and (method not in best or rank > best[method][0]):
                    best[method] = (rank, variant, float(np.mean(vals)), pv)
            ours = {(m, v): mean for m, (_, v, mean, _) in best.items()}
            theirs = {(m, v): pv for m, (_, v, _, pv) in best.items()}
            if len(ours) < 3:
                continue
            keys = sorted(ours)
            tau = kendalltau([ours[k] for k in keys], [theirs[k] for k in keys]).statistic
            mine_order = " > ".join(label(*k) for k in sorted(keys, key=lambda k: -ours[k]))
            paper_order = " > ".join(k[0].upper() for k in sorted(keys, key=lambda k: -theirs[k]))
            tau_text = "n/a (ties)" if not np.isfinite(tau) else f"{tau:+.2f}"
            lines.append(f"| {b} | {arrow} | {len(keys)} | {mine_order} | {paper_order} | {tau_text} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def paired_against_markdown(rows, dataset: str, baseline: str) -> str:
    """Every main-table method minus ``baseline``, paired by seed (same seed = same split) per code length.

    Cells: ``Δ I→T / Δ T→I`` (mean over the paired seeds) and, in brackets, the seeds won in each
    direction; a trailing ✓ marks a length where both mean differences are positive.
    """
    mine = group(rows, dataset=dataset)
    # the baseline's row of the main table: its own settings, else its one shortened schedule (e10)
    rows_of = [p for p in table_pairs(mine) if p[0] == baseline]
    base_pair = (baseline, baseline) if (baseline, baseline) in rows_of else (rows_of[0] if len(rows_of) == 1 else None)
    base = {(r["bits"], r["seed"]): r for r in mine if (r["method"], r["variant"]) == base_pair}
    if not base:
        return ""
    pairs = [p for p in table_pairs(mine) if p != base_pair]
    bits = sorted({b for b, _ in base})
    lines = ["| method | " + " | ".join(f"{b} bits: Δ I→T / Δ T→I (seeds won)" for b in bits) + " | lengths won both ways |",
             "|---|" + "---|" * (len(bits) + 1)]  # fmt: skip
    for method, variant in pairs:
        rs = {(r["bits"], r["seed"]): r for r in mine if (r["method"], r["variant"]) == (method, variant)}
        cells, won, tried = [], 0, 0
        for b in bits:
            seeds = sorted(s for bb, s in rs if bb == b and (b, s) in base)
            if not seeds:
                cells.append("-")
                continue
            d = {t: [rs[(b, s)][t] - base[(b, s)][t] for s in seeds] for t in ("i2t", "t2i")}
            mi, mt = float(np.mean(d["i2t"])), float(np.mean(d["t2i"]))
            both = mi > 0 and mt > 0
            tried += 1
            won += both
            wins = f"{sum(x > 0 for x in d['i2t'])}/{len(seeds)}, {sum(x > 0 for x in d['t2i'])}/{len(seeds)}"
            cells.append(f"{mi:+.3f} / {mt:+.3f} ({wins}){' ✓' if both else ''}")
        if tried:
            lines.append(f"| {label(method, variant)} | " + " | ".join(cells) + f" | {won} of {tried} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def variant_description(method: str, name: str, desc: dict[str, str]) -> str:
    """What a variant folder holds: its variants-file description, with the schedule when shortened (``e10-x``)."""
    variant, epochs = split_schedule(method, name)
    text = "(the method's own settings)" if variant == method else desc.get(variant, "")
    return text if epochs is None else f"{text}, {epochs} epochs".lstrip(", ")


def paired_effect(rows, dataset: str, with_variant: str, without_variant: str, method: str) -> list[dict[str, Any]]:
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


def effects_markdown(rows, dataset: str, method: str) -> str:
    """The comparisons the variants file declares (``compare_with``), paired by seed."""
    _, desc, compare = variant_info(method)
    parts = []
    for with_v, without_v in compare.items():
        eff = paired_effect(rows, dataset, with_v, without_v, method)
        if eff:
            parts.append(f"{with_v.upper()} − {without_v.upper()} ({desc.get(with_v, '')}), paired by seed:\n\n" + effect_markdown(eff, f"{with_v} − {without_v}"))
    return "\n".join(parts)


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
    """Per dataset/method/variant/bits: s/epoch (mean of runs, and median epoch: robust to load spikes) and training time per run."""
    lines = [
        "| dataset | method | bits | runs | epochs | s/epoch (mean) | s/epoch (median epoch) | training time per run (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["dataset"], r["method"], r["variant"], r["bits"]) for r in rows})
    for d, m, v, b in keys:
        rs = group(rows, dataset=d, method=m, variant=v, bits=b)
        spe = mean_std([r["seconds_per_epoch"] for r in rs])
        med = [r.get("seconds_per_epoch_median") for r in rs if r.get("seconds_per_epoch_median") is not None]
        tot = mean_std([r["train_seconds"] for r in rs])
        ep = rs[0].get("epochs")
        name = label(m, v)
        if spe[2] == 0:  # shallow methods: no epochs, their fit time
            lines.append(f"| {d} | {name} | {b} | {len(rs)} | - | - | - | {_duration(tot[0]) if tot[2] else '-'} |")
            continue
        med_txt = f"{np.median(med):.2f}" if med else "-"
        lines.append(f"| {d} | {name} | {b} | {len(rs)} | {ep} | {spe[0]:.2f} | {med_txt} | {_duration(tot[0])} |")
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def curve_bits(rows, dataset: str, preferred: int | None = None) -> int | None:
    """The code length the curves plot shows: ``preferred`` if run, else the longest run by most methods."""
    mine = [r for r in group(rows, dataset=dataset) if r.get("curves")]
    if not mine:
        return None
    have = {r["bits"] for r in mine}
    if preferred in have:
        return preferred
    count = {b: len({(r["method"], r["variant"]) for r in mine if r["bits"] == b}) for b in have}
    return max(have, key=lambda b: (count[b], b))


def plot_curves(rows, dataset: str, path: Path, bits: int | None = None) -> Path | None:
    """PNG: precision@top-R, I→T and T→I, one line per method (its own settings), at one code length (mean over seeds)."""
    b = curve_bits(rows, dataset, bits)
    if b is None:
        return None
    main = set(table_pairs(rows, dataset))
    mine = [r for r in group(rows, dataset=dataset, bits=b) if r.get("curves") and (r["method"], r["variant"]) in main]
    if not mine:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, task, title in ((axes[0], "i2t", "Image → Text"), (axes[1], "t2i", "Text → Image")):
        for i, (method, variant) in enumerate(sorted({(r["method"], r["variant"]) for r in mine})):
            rs = [r for r in mine if (r["method"], r["variant"]) == (method, variant)]
            ranks = rs[0]["curves"]["ranks"]
            prec = np.mean([r["curves"][f"{task}_precision"] for r in rs if r["curves"]["ranks"] == ranks], axis=0)
            style = {"color": plt.get_cmap("tab10")(i % 10), "linestyle": ("-", "--", ":")[i // 10 % 3]}  # distinct past 10 methods
            ax.plot(ranks, prec, marker="o", markersize=3, **style, label=f"{label(method, variant)} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
        ax.set_title(f"{dataset}, {b} bits: {title}")
        ax.set_xlabel("R (top-R retrieved)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision@top-R")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from cmhash.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def curves_markdown(rows, dataset: str, bits: int | None = None, ranks_shown=(1, 50, 100, 500, 1000, 2000, 5000)) -> str:
    """Precision@top-R per method at the plot's code length (mean over seeds)."""
    b = curve_bits(rows, dataset, bits)
    main = set(table_pairs(rows, dataset))
    mine = [r for r in group(rows, dataset=dataset, bits=b) if r.get("curves") and (r["method"], r["variant"]) in main] if b else []
    if not mine:
        return ""
    ranks = mine[0]["curves"]["ranks"]
    show = [R for R in ranks_shown if R in ranks]
    lines = [f"| method ({b} bits) | task | " + " | ".join(f"P@{R}" for R in show) + " |", "|---|---|" + "---|" * len(show)]
    for method, variant in sorted({(r["method"], r["variant"]) for r in mine}):
        rs = [r for r in mine if (r["method"], r["variant"]) == (method, variant) and r["curves"]["ranks"] == ranks]
        for task in ("i2t", "t2i"):
            prec = np.mean([r["curves"][f"{task}_precision"] for r in rs], axis=0)
            lines.append(f"| {label(method, variant)} | {task.upper().replace('2', '→')} | " + " | ".join(f"{prec[ranks.index(R)]:.3f}" for R in show) + " |")
    return "\n".join(lines) + "\n"


def require_reference(ref_dir: str | None) -> Path | None:
    if ref_dir is None:
        return default_reference_dir()
    p = Path(ref_dir)
    if not p.exists():
        raise MissingFileError(f"{p}: reference folder not found")
    return p


__all__ = [
    "Cell",
    "GridSpec",
    "ablation_markdown",
    "collect",
    "curves_markdown",
    "effects_markdown",
    "method_variants",
    "paired_effect",
    "plan",
    "plot_curves",
    "protocol_markdown",
    "run_grid",
    "scan",
    "table1_markdown",
    "chance_row",
    "timing_markdown",
    "write_csv",
]
