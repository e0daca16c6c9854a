"""`cmhash data sources|info|split|vocab` on small fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_source_flickr8k import make_f8k
from test_source_mirflickr import make_txt

from cmhash.cli import main
from cmhash.data import load_dataset
from cmhash.data.splits import Split
from cmhash.data.text import Vocabulary


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sources_lists_every_source_with_options(capsys):
    code, out, _ = run(capsys, "data", "sources")
    assert code == 0
    for name in ("wiki", "mirflickr", "nuswide", "flickr8k", "fashion", "folder"):
        assert any(line.startswith(name) for line in out.splitlines())
    code, out, _ = run(capsys, "data", "sources", "--json")
    info = json.loads(out)
    assert "label_column" in info["fashion"]["options"] and "first_caption_only" in info["flickr8k"]["options"]


def test_info_text_and_json(tmp_path, capsys):
    make_txt(tmp_path, present=[0, 1, 2, 4])
    code, out, _ = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path), "--min-count", "1")
    assert code == 0
    assert "mirflickr: 4 pairs kept of 7 listed (3 dropped)" in out
    assert "missing_image" in out and "no_labels" in out and "features 4-d" in out
    code, out, _ = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path), "--min-count", "1", "--json")
    rep = json.loads(out)
    assert rep["pairs"] == 4 and rep["load_report"]["dropped_by_reason"] == {"no_labels": 1, "missing_image": 2}
    assert rep["labels"]["pairs_per_label"] == {"sky": 3, "dog": 2, "cat": 1}
    assert rep["options"] == {"min_count": 1}


def test_info_errors_exit_2_with_a_clear_message(tmp_path, capsys):
    make_txt(tmp_path, present=[0, 1, 2])
    code, _, err = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path), "--strict")
    assert code == 2 and "im5.jpg (line 5 of all_imgs.txt) does not exist (--strict)" in err
    code, _, err = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path), "--label-column", "x")
    assert code == 2 and "unknown option(s) label_column" in err
    code, _, err = run(capsys, "data", "info", "mirflikr", "--root", str(tmp_path))
    assert code == 2 and "Did you mean mirflickr" in err
    code, _, err = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path), "-o", "novalue")
    assert code == 2 and "expected KEY=VALUE" in err


def test_split_writes_a_reloadable_seeded_split(tmp_path, capsys):
    make_f8k(tmp_path / "f8k", present=range(8))
    out_file = tmp_path / "out" / "split.json"
    code, out, _ = run(capsys, "data", "split", "flickr8k", "--root", str(tmp_path / "f8k"), "--protocol", "random", "--num-query", "2", "--num-train", "3", "--seed", "4", "--out", str(out_file))
    assert code == 0 and "saved" in out and "(2 images)" in out
    ds = load_dataset("flickr8k", tmp_path / "f8k")
    split = Split.load(out_file, dataset=ds)
    assert split.protocol == "random" and split.seed == 4 and len(split.query) == 10
    again = tmp_path / "again.json"
    run(capsys, "data", "split", "flickr8k", "--root", str(tmp_path / "f8k"), "--protocol", "random", "--num-query", "2", "--num-train", "3", "--seed", "4", "--out", str(again))
    assert np.array_equal(Split.load(again).query, split.query)
    code, out, _ = run(capsys, "data", "split", "flickr8k", "--root", str(tmp_path / "f8k"), "--protocol", "official", "--out", str(tmp_path / "o.json"), "--json")
    assert code == 0 and json.loads(out)["sizes"] == {"query": 15, "database": 15, "train": 20}
    code, _, err = run(capsys, "data", "split", "flickr8k", "--root", str(tmp_path / "f8k"), "--protocol", "djsrh", "--out", str(tmp_path / "d.json"))
    assert code == 2 and "needs labels" in err and not (tmp_path / "d.json").exists()


def test_split_djsrh_with_protocol_params(tmp_path, capsys):
    make_txt(tmp_path / "mir")
    code, out, err = run(capsys, "data", "split", "mirflickr", "--root", str(tmp_path / "mir"), "--min-count", "1", "--protocol", "djsrh", "--num-query", "2", "--num-train", "3", "--param", "first_query=1", "--param", "first_train=1", "--param", "per_label_query=0", "--param", "per_label_train=1", "--out", str(tmp_path / "s.json"))
    assert code == 0, err
    s = Split.load(tmp_path / "s.json")
    assert s.params["first_query"] == 1 and len(s.query) == 2 and len(s.train) == 3
    code, _, err = run(capsys, "data", "split", "mirflickr", "--root", str(tmp_path / "mir"), "--protocol", "djsrh", "--param", "first_query=x", "--out", str(tmp_path / "t.json"))
    assert code == 2 and "must be a non-negative integer" in err


def test_vocab_command_saves_a_vocabulary_the_sources_reuse(tmp_path, capsys):
    make_txt(tmp_path / "mir")
    out_file = tmp_path / "v.json"
    code, out, _ = run(capsys, "data", "vocab", "mirflickr", "--root", str(tmp_path / "mir"), "--min-count", "2", "--out", str(out_file))
    assert code == 0 and "4 tags present in at least 2 of 7 listed texts" in out
    vocab = Vocabulary.load(out_file)
    assert vocab.tokens == ["cat", "dog", "sea", "sky"]
    code, out, _ = run(capsys, "data", "info", "mirflickr", "--root", str(tmp_path / "mir"), "--vocabulary", str(out_file), "--json")
    assert json.loads(out)["text_side"]["features"] == [6, 4]
    code, _, err = run(capsys, "data", "vocab", "wiki", "--root", str(tmp_path), "--out", str(tmp_path / "w.json"))
    assert code == 2 and "no raw texts" in err


def test_help_is_instant_and_teaches():
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = (
        "import sys, cmhash.cli as c; p = c.build_parser(); "
        "heavy = [m for m in ('numpy', 'h5py', 'scipy', 'PIL', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    out = subprocess.run([sys.executable, "-m", "cmhash", "data", "split", "--help"], check=True, capture_output=True, text=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}).stdout
    assert "examples:" in out and "--protocol official" in out and "djsrh-nuswide" in out
