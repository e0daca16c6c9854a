"""`cmhash demo` end to end on a tiny synthetic set, and its method choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmhash.cli import build_parser, main
from cmhash.cli import demo
from cmhash.data.sources import synthetic
from cmhash.data.splits import Split
from cmhash.methods import METHODS
from cmhash.methods.base import HashMethod


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--n", "1600", "--bits", "8", "16", "--signal", "1", "--seed", "3", "--method", "cmfh", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| method" in printed and "random codes" in printed and "SYNTHETIC" in printed
    assert "split (djsrh protocol" in printed  # progress lines

    record = json.loads((out / "results.json").read_text())
    assert record["format"] == "cmhash-demo-results"
    assert record["data"]["synthetic"] is True and record["data"]["params"]["n"] == 1600
    assert record["data"]["params"]["signal"] == 1.0 and record["data"]["params"]["seed"] == 3
    assert record["method"]["name"] == "cmfh" and record["method"]["hparams"]["8"]["seed"] == 3
    assert record["protocol"]["metric"]["topk"] == 50
    assert record["protocol"]["metric"]["options"]["tie_break"] == "stable_index"
    split = record["protocol"]["split"]
    assert split["protocol"] == "djsrh" and split["seed"] == 3
    assert split["sizes"] == {"query": 400, "database": 1200, "train": 1000}
    assert record["seconds"]["total"] > 0
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporary files

    rows = {(r["method"], r["bits"]): r for r in record["results"]}
    assert set(rows) == {("cmfh", 8), ("random codes", 8), ("cmfh", 16), ("random codes", 16)}
    for b in (8, 16):
        learned, chance = rows[("cmfh", b)], rows[("random codes", b)]
        assert learned["train_seconds"] > 0
        assert learned["i2t"] > chance["i2t"] + 0.1 and learned["t2i"] > chance["t2i"] + 0.1
        assert 0.2 < chance["i2t"] < 0.8

    saved = Split.load(out / "split.json")
    assert saved.sizes() == split["sizes"] and saved.seed == 3
    # each code length went through the one run of `cmhash train` (metrics.json + checkpoint.pt)
    for b in (8, 16):
        run = json.loads((out / f"cmfh-{b}bits" / "metrics.json").read_text())
        assert run["i2t"]["map@50"] == rows[("cmfh", b)]["i2t"] and run["hparams"]["seed"] == 3
        assert (out / f"cmfh-{b}bits" / "checkpoint.pt").exists()


def test_demo_is_reproducible(tmp_path):
    a = demo.run_demo(bits=[8], method="cmfh", n=400, seed=1, out=None, log=lambda s: None, progress_bars=False)
    b = demo.run_demo(bits=[8], method="cmfh", n=400, seed=1, out=tmp_path / "b", log=lambda s: None, progress_bars=False)
    strip = lambda rec: [(r["method"], r["bits"], r["i2t"], r["t2i"]) for r in rec["results"]]  # noqa: E731
    assert strip(a) == strip(b)
    assert (tmp_path / "b" / "results.json").exists()


def test_default_signal_matches_the_source():
    assert demo.DEFAULT_SIGNAL == synthetic.DEFAULTS["signal"]
    assert demo.DEFAULT_N == synthetic.DEFAULTS["n"]


def test_split_params_scale_the_djsrh_protocol():
    full = demo.split_params(8000)
    assert full == dict(first_query=160, first_train=400, per_label_query=80, per_label_train=200, num_query=2000, num_train=5000)
    small = demo.split_params(1000)
    assert small["num_query"] == 250 and small["num_train"] == 625
    assert small["first_query"] + 23 * small["per_label_query"] == 250
    assert small["num_query"] + small["num_train"] <= 1000


class _Fake(HashMethod):
    name = "demo-fake"

    def fit(self, train, **options):
        return self

    def encode(self, inputs, modality):
        return np.ones((len(inputs), self.bits), np.int8)

    def state(self):
        return {}

    @classmethod
    def from_state(cls, state):
        return cls(8)


def test_method_preference_picks_the_first_registered(monkeypatch):
    METHODS.names()  # load the registry before patching it
    monkeypatch.setitem(METHODS._entries, "demo-fake", _Fake)
    monkeypatch.setattr(demo, "METHOD_PREFERENCE", ("not-there", "demo-fake", "cmfh"))
    assert demo.pick_method("auto") == "demo-fake"
    monkeypatch.setattr(demo, "METHOD_PREFERENCE", ("not-there", "cmfh", "demo-fake"))
    assert demo.pick_method("auto") == "cmfh"
    assert demo.pick_method("demo-fake") == "demo-fake"
    # without a preset file the method runs with its own defaults
    hparams, run, prov = demo.method_preset("demo-fake")
    assert hparams == {} and run == {} and prov["dataset_preset"] is None
    hparams, run, prov = demo.method_preset("cmfh")
    assert prov["dataset_preset"] == "synthetic" and prov["source"] and hparams["iterations"] == 30


def test_methods_missing_a_package_are_skipped(monkeypatch):
    class NeedsAbsent(_Fake):
        requires = ("cmhash_no_such_package_xyz",)

    METHODS.names()
    monkeypatch.setitem(METHODS._entries, "demo-absent", NeedsAbsent)
    monkeypatch.setattr(demo, "METHOD_PREFERENCE", ("demo-absent", "cmfh"))
    notes = []
    assert demo.pick_method("auto", log=notes.append) == "cmfh"
    assert "cmhash_no_such_package_xyz" in notes[0]


def test_default_choice_follows_the_registry():
    expected = next(name for name in demo.METHOD_PREFERENCE if name in METHODS)
    assert demo.pick_method("auto") == expected


def test_bad_options_exit_2_with_a_message(tmp_path, capsys):
    assert main(["demo", "--n", "50", "--out", str(tmp_path)]) == 2
    assert "--n must be at least 200" in capsys.readouterr().err
    assert main(["demo", "--method", "nosuch", "--out", str(tmp_path)]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    assert main(["demo", "--n", "300", "--signal", "2", "--out", str(tmp_path)]) == 2
    assert "signal" in capsys.readouterr().err


def test_help_teaches():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["demo"].format_help()
    for word in ("SYNTHETIC", "mAP@50", "--signal", "--bits", "examples:", "results.json"):
        assert word in text


def test_demo_with_a_deep_method_and_its_progress_bar(tmp_path, capsys):
    """The README's `make demo` path: a deep method trained through the trainer with a tqdm bar as its progress callback."""
    rc = main(["demo", "--n", "600", "--bits", "8", "--method", "djsrh", "--seed", "1", "--out", str(tmp_path / "demo")])
    assert rc == 0
    assert (tmp_path / "demo" / "djsrh-8bits" / "checkpoint.pt").is_file()
    assert "djsrh" in capsys.readouterr().out
