"""`cmhash reproduce chance`: the chance level of a grid (random codes on its own splits) and its report row.

Two tiny runs (deep DJSRH and shallow CMFH, same seed: same split) are trained once with the real
entry point; each test works on a fresh copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cmhash.cli import main as cli
from cmhash.experiments import chance as C

torch.set_num_threads(1)

from grid_fixtures import RUNS, train_tiny_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_grid(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def grid(trained, tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    return root


def test_chance_json_is_in_range_deterministic_and_equals_a_direct_computation(grid):
    assert cli(["reproduce", "chance", "--out", str(grid), "--draws", "3"]) == 0
    path = grid / "synthetic" / "chance.json"
    first = json.loads(path.read_text())
    assert first["draws"] == 3 and first["dataset"] == "synthetic" and first["code"] and first["date"]
    (entry,) = first["entries"]  # one (bits, seed) though two methods ran it
    assert (entry["bits"], entry["seed"]) == (16, 0)
    m = json.loads((grid / RUNS["cmfh"] / "metrics.json").read_text())
    assert entry["split"] == m["protocol"]["split"] and entry["n_queries"] == m["i2t"]["n_queries"] == 48
    assert entry["protocol"]["topk"] == m["protocol"]["topk"] and entry["protocol"]["tie_break"] == m["protocol"]["tie_break"]
    for t in ("i2t", "t2i"):
        for key in ("map@50", "map@all"):
            v = entry[t][key]
            assert len(v["draws"]) == 3 and all(0.0 <= x <= 1.0 for x in v["draws"])
            assert v["mean"] == pytest.approx(np.mean(v["draws"])) and v["std"] > 0  # different draws, different codes

    # a direct computation: the same seeded random codes on the split rebuilt from the checkpoint
    from cmhash import metrics

    run = grid / entry["source_run"]
    ql, dl, split = C.rebuild_split(run, json.loads((run / "metrics.json").read_text()))
    assert C.split_fingerprint(split) == entry["split_fingerprint"]
    qi, qt, di, dt = C.random_codes(len(ql), len(dl), 16, C.draw_key(0, 16, 1))
    assert entry["i2t"]["map@50"]["draws"][1] == pytest.approx(metrics.mean_average_precision(qi, dt, ql, dl, topk=50), abs=1e-12)
    assert entry["t2i"]["map@all"]["draws"][1] == pytest.approx(metrics.mean_average_precision(qt, di, ql, dl, topk=None), abs=1e-12)

    # what the input features alone retrieve: each modality's own vectors by cosine, on the same split
    (feat,) = first["features"]["entries"]
    _, _, _, q, d = C.rebuild_split(run, json.loads((run / "metrics.json").read_text()), with_data=True)
    assert feat["seed"] == 0 and feat["split_fingerprint"] == entry["split_fingerprint"]
    assert feat["i2i"] == pytest.approx(metrics.map_at_k_dense(q.image_features, d.image_features, ql, dl, 50)["value"], abs=1e-12)
    assert feat["t2t"] == pytest.approx(metrics.map_at_k_dense(q.text_features, d.text_features, ql, dl, 50)["value"], abs=1e-12)
    assert feat["i2i"] > entry["i2t"]["map@50"]["mean"] + 0.1  # the synthetic features carry the labels; random codes do not

    assert cli(["reproduce", "chance", "--out", str(grid), "--draws", "3"]) == 0  # rerun: the same numbers
    again = json.loads(path.read_text())
    strip = lambda entries: [{k: v for k, v in e.items() if k != "seconds"} for e in entries]  # noqa: E731
    assert strip(again["entries"]) == strip(first["entries"])


def test_refuses_when_runs_of_one_seed_disagree_on_the_split(grid, capsys):
    path = grid / RUNS["djsrh"] / "metrics.json"
    m = json.loads(path.read_text())
    m["protocol"]["split"]["sizes"]["query"] += 1
    path.write_text(json.dumps(m))
    assert cli(["reproduce", "chance", "--out", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "disagree on the test split" in err and "seed0" in err
    assert not (grid / "synthetic" / "chance.json").exists()


def test_report_shows_the_random_codes_row(grid):
    from cmhash.experiments import grid as G

    assert cli(["reproduce", "chance", "--out", str(grid), "--draws", "2"]) == 0
    assert cli(["reproduce", "report", "--out", str(grid)]) == 0
    md = (grid / "table1.md").read_text()
    chance = json.loads((grid / "synthetic" / "chance.json").read_text())
    (entry,) = chance["entries"]
    rows = [line for line in md.splitlines() if line.startswith("| random codes (chance)")]
    assert len(rows) == 3  # I→T, T→I (mAP@50) and the mAP@all table
    assert f"{entry['i2t']['map@50']['mean']:.3f} / - / -" in rows[0]
    assert f"{entry['t2i']['map@50']['mean']:.3f} / - / -" in rows[1]
    assert f"{entry['i2t']['map@all']['mean']:.3f}" in rows[2] and f"{entry['t2i']['map@all']['mean']:.3f}" in rows[2]
    assert "chance level" in md
    (feat,) = chance["features"]["entries"]
    line = next(x for x in md.splitlines() if x.startswith("What the input features alone retrieve"))
    assert f"image→image {feat['i2i']:.3f}" in line and f"text→text {feat['t2t']:.3f}" in line
    # without chance.json: no such row
    md2 = G.table1_markdown(G.collect(G.scan(grid), grid), "synthetic")
    assert "random codes" not in md2


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--out", "{root}/nowhere"], "no such folder"),
        (["--out", "{root}", "--dataset", "wiki"], "no finished runs of wiki"),
        (["--out", "{root}", "--draws", "0"], "--draws"),
    ],
)
def test_bad_input_exits_2_with_a_message(trained, argv, needle, capsys):
    argv = [a.format(root=trained) for a in argv]
    try:
        rc = cli(["reproduce", "chance", *argv])
    except SystemExit as exc:  # argparse rejects the value itself
        rc = exc.code
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not (trained / "synthetic" / "chance.json").exists()
