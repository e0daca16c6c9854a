"""`cmhash reproduce backfill`: map@all added to older runs from their checkpoints, safely.

Two tiny runs (deep DJSRH and shallow CMFH) are trained once with the real entry point; each
test works on a fresh copy with map@all removed, as the runs made before it was recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cmhash.cli import main as cli
from cmhash.experiments import backfill as B
from cmhash.experiments.grid import LOCK

torch.set_num_threads(1)

from grid_fixtures import RUNS, train_tiny_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A grid folder with one finished DJSRH and one CMFH run, metrics as training recorded them."""
    return train_tiny_grid(tmp_path_factory.mktemp("trained"))


def _old_runs(trained: Path, tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """A copy of the grid whose metrics.json lack map@all; returns it and the original metrics."""
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    originals = {}
    for name, rel in RUNS.items():
        path = root / rel / "metrics.json"
        m = json.loads(path.read_text())
        originals[name] = json.loads(json.dumps(m))
        assert "map@all" in m["i2t"] and "map@all" in m["t2i"]
        del m["i2t"]["map@all"], m["t2i"]["map@all"]
        path.write_text(json.dumps(m, indent=2))
    return root, originals


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / RUNS[name] / "metrics.json").read_text())


def _bytes(root: Path) -> dict[str, bytes]:
    return {name: (root / rel / "metrics.json").read_bytes() for name, rel in RUNS.items()}


def test_backfill_restores_map_all_of_deep_and_shallow_runs_and_changes_nothing_else(trained, tmp_path, capsys):
    root, originals = _old_runs(trained, tmp_path)
    assert cli(["reproduce", "backfill", "--out", str(root), "--jobs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "backfilled 2 / already complete 0 / skipped 0 / failed 0" in out
    for name, orig in originals.items():
        m = _metrics(root, name)
        for task in ("i2t", "t2i"):
            assert m[task]["map@all"] == pytest.approx(orig[task]["map@all"], abs=1e-9)
            assert m[task]["map@50"] == orig[task]["map@50"]  # existing numbers untouched
        record = m.pop("backfilled")["map@all"]
        assert record["tasks"] == ["i2t", "t2i"] and record["code"] and record["date"]
        assert record["protocol"]["tie_break"] == orig["protocol"]["tie_break"]
        assert record["check"]["i2t"]["difference"] <= B.TOLERANCE
        assert m == orig  # only the missing keys (and the record) were added

    # the report says which numbers came afterwards from checkpoints
    from cmhash.experiments import grid as G

    md = G.metric_markdown(G.collect(G.scan(root), root), "synthetic", "map@all")
    assert "| CMFH | 0 |" in md and "2 of 2 runs here had map@all added after training" in md
    assert "reproduced within 0.0e+00 at worst" in md  # the largest recorded check difference is stated

    # idempotent: a second run finds everything complete and rewrites nothing
    before = _bytes(root)
    assert cli(["reproduce", "backfill", "--out", str(root), "--no-progress"]) == 0
    assert "backfilled 0 / already complete 2 / skipped 0 / failed 0" in capsys.readouterr().out
    assert _bytes(root) == before


def test_backfill_refuses_a_run_whose_recomputed_map50_differs(trained, tmp_path, capsys):
    root, _ = _old_runs(trained, tmp_path)
    path = root / RUNS["cmfh"] / "metrics.json"
    m = json.loads(path.read_text())
    m["t2i"]["map@50"] += 1e-4  # as if another model's codes had been evaluated
    path.write_text(json.dumps(m, indent=2))
    before = path.read_bytes()
    assert cli(["reproduce", "backfill", "--out", str(root), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"failed: {root / RUNS['cmfh']}" in out and "refusing to backfill" in out and "t2i map@50" in out
    assert "backfilled 1 / already complete 0 / skipped 0 / failed 1" in out
    assert path.read_bytes() == before  # nothing written
    assert "map@all" in _metrics(root, "djsrh")["i2t"]  # the good run is still done
    # an explicit --tolerance accepts it, and the run records how far off the check was
    assert cli(["reproduce", "backfill", "--out", str(root), "--no-progress", "--tolerance", "1e-3"]) == 0
    check = json.dumps(_metrics(root, "cmfh")["backfilled"])
    assert "0.001" in check and "map@all" in _metrics(root, "cmfh")["t2i"]
    with pytest.raises(SystemExit) as exc:  # argparse refuses it before cmhash runs
        cli(["reproduce", "backfill", "--out", str(root), "--tolerance", "-1"])
    assert exc.value.code == 2
    path.write_text(json.dumps(m, indent=2))  # back to the unfilled, off-by-1e-4 file

    # a difference inside the tolerance is accepted (float noise, not another model)
    m["t2i"]["map@50"] -= 1e-4 - 1e-8
    path.write_text(json.dumps(m, indent=2))
    assert B.backfill_run(root / RUNS["cmfh"]).status == "backfilled"


def test_backfill_skips_runs_being_trained_or_without_checkpoint(trained, tmp_path):
    root, _ = _old_runs(trained, tmp_path)
    deep, shallow = root / RUNS["djsrh"], root / RUNS["cmfh"]
    (deep / LOCK).write_text(str(__import__("os").getpid()))  # a live process holds train.lock
    (shallow / "checkpoint.pt").unlink()
    before = _bytes(root)
    outcomes = {o.run_dir: o for o in B.backfill(B.select(root), progress=False, log=lambda _: None)}
    assert outcomes[deep].status == "skipped" and "train.lock held by live process" in outcomes[deep].message
    assert outcomes[shallow].status == "skipped" and "no checkpoint.pt" in outcomes[shallow].message
    assert _bytes(root) == before

    # a stale train.lock (its process is gone) does not block; a held write lock does
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (deep / LOCK).write_text(str(dead.pid))
    from cmhash.io import write_lock

    with write_lock(deep, "training run", is_dir=True):
        held = B.backfill_run(deep)
    assert held.status == "skipped" and "being written" in held.message
    assert B.backfill_run(deep).status == "backfilled"


def test_interrupted_backfill_leaves_the_old_metrics_file(trained, tmp_path, monkeypatch):
    root, _ = _old_runs(trained, tmp_path)
    run = root / RUNS["djsrh"]
    before = (run / "metrics.json").read_bytes()
    import cmhash.io as cio

    def dump_half_then_die(obj, fh, **kw):
        fh.write(json.dumps(obj)[:100])
        raise KeyboardInterrupt  # killed in the middle of writing

    monkeypatch.setattr(cio.json, "dump", dump_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        B.backfill_run(run)
    monkeypatch.undo()
    assert (run / "metrics.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert B.backfill_run(run).status == "backfilled"  # and the next run completes it


def test_dry_run_pair_identity_and_bad_metric(trained, tmp_path, capsys):
    root, _ = _old_runs(trained, tmp_path)
    before = _bytes(root)
    assert cli(["reproduce", "backfill", "--out", str(root), "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "would backfill 2 /" in out and "i2t map@all, t2i map@all" in out
    assert _bytes(root) == before

    f8k = root / "flickr8k/dvsh/dvsh/16bits/seed0"
    f8k.mkdir(parents=True)
    (f8k / "metrics.json").write_text(json.dumps({"i2t": {"recall@1": 0.1}, "t2i": {"recall@1": 0.2}}))
    assert B.backfill_run(f8k).status == "skipped"
    assert cli(["reproduce", "backfill", "--out", str(root), "--metrics", "map@10", "--no-progress"]) == 2
    assert "cannot backfill map@10 (known: map@all)" in capsys.readouterr().err


def test_a_mistyped_dataset_in_data_root_is_refused(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert cli(["reproduce", "backfill", "--out", str(tmp_path / "runs"), "--data-root", "wikk=/x", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'wikk'" in err and "wiki" in err
