"""`cmhash eval --codes FILE`: table, JSON with the protocol, curves PNG, Recall@K, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmhash import metrics as M
from cmhash.cli import main
from cmhash.codes_io import save_codes


def _labelled(seed=0, nq=40, nd=300, bits=16, n_labels=5):
    rng = np.random.default_rng(seed)
    ql = (rng.random((nq, n_labels)) < 0.3).astype(np.uint8)
    dl = (rng.random((nd, n_labels)) < 0.3).astype(np.uint8)
    protos = np.where(rng.random((n_labels, bits)) < 0.5, 1.0, -1.0)

    def codes(labels, noise):
        return np.where(labels @ protos + rng.normal(0, noise, (len(labels), bits)) >= 0, 1, -1).astype(np.int8)

    return dict(query_image=codes(ql, 1.0), query_text=codes(ql, 1.5), db_image=codes(dl, 1.0), db_text=codes(dl, 1.5), query_labels=ql, db_labels=dl)


@pytest.fixture()
def codes_file(tmp_path):
    arrays = _labelled()
    path = save_codes(tmp_path / "codes.npz", bits=16, meta={"method": "djsrh", "dataset": "toy"}, **arrays)
    return path, arrays


def test_eval_json_out_records_protocol_and_matches_library(codes_file, tmp_path, capsys):
    path, a = codes_file
    out = tmp_path / "res" / "results.json"
    assert main(["eval", "--codes", str(path), "--out", str(out), "--topk", "20", "--denominator", "queries_with_relevant", "--tie-break", "legacy_unstable", "--full-map"]) == 0
    printed = capsys.readouterr().out
    assert "| task" in printed and "map@20" in printed and "tie_break=legacy_unstable" in printed
    res = json.loads(out.read_text())
    assert res["protocol"]["topk"] == 20
    assert res["protocol"]["denominator"] == "queries_with_relevant"
    assert res["protocol"]["normalize"] == "hits_in_topk"
    assert res["protocol"]["tie_break"] == "legacy_unstable"
    assert res["meta"]["method"] == "djsrh" and res["codes_file"] == str(path)
    expected_i2t = M.mean_average_precision(a["query_image"], a["db_text"], a["query_labels"], a["db_labels"], 20, denominator="queries_with_relevant", tie_break="legacy_unstable")
    expected_t2i = M.mean_average_precision(a["query_text"], a["db_image"], a["query_labels"], a["db_labels"], 20, denominator="queries_with_relevant", tie_break="legacy_unstable")
    assert res["i2t"]["map@20"] == pytest.approx(expected_i2t, abs=1e-12)
    assert res["t2i"]["map@20"] == pytest.approx(expected_t2i, abs=1e-12)
    assert 0 < res["i2t"]["map@all"] < 1 and "precision@radius2" in res["t2i"]


def test_eval_json_to_stdout_default_protocol(codes_file, capsys):
    path, a = codes_file
    assert main(["eval", "--codes", str(path), "--json", "--tasks", "i2t", "i2i", "t2t"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"i2t", "i2i", "t2t", "protocol"} and "t2i" not in res
    assert res["protocol"]["topk"] == 50 and res["protocol"]["tie_break"] == "stable_index"
    assert res["i2i"]["map@50"] == pytest.approx(M.mean_average_precision(a["query_image"], a["db_image"], a["query_labels"], a["db_labels"]))


def test_eval_curves_png(codes_file, tmp_path, capsys):
    path, _ = codes_file
    png = tmp_path / "curves.png"
    out = tmp_path / "r.json"
    assert main(["eval", "--codes", str(path), "--curves", str(png), "--out", str(out), "--r-values", "1", "10", "100", "--topk", "all"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    res = json.loads(out.read_text())
    assert res["i2t"]["curves"]["precision_at_top_r"]["r"] == [1, 10, 100]
    assert len(res["t2i"]["curves"]["pr"]["recall"]) == 17
    assert "map@all" in res["i2t"] and res["protocol"]["topk"] is None


def test_eval_recall_at_k_for_pair_identity(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n_img = 25
    img = np.where(rng.random((n_img, 32)) < 0.5, 1, -1)
    img_rows = np.repeat(img, 5, axis=0)
    caps = img_rows * np.where(rng.random(img_rows.shape) < 0.1, -1, 1)
    groups = np.repeat([f"{i}.jpg" for i in range(n_img)], 5)
    path = save_codes(tmp_path / "f8k.npz", bits=32, query_image=img_rows, query_text=caps, db_image=img_rows, db_text=caps, query_groups=groups, db_groups=groups)
    assert main(["eval", "--codes", str(path), "--json", "--recall-k", "1", "5"]) == 0
    res = json.loads(capsys.readouterr().out)
    first = np.arange(0, 5 * n_img, 5)
    expected = M.recall_at_k(img, caps, groups[first], groups, (1, 5))["recall"]
    assert [res["i2t"]["recall@1"], res["i2t"]["recall@5"]] == pytest.approx(expected)
    assert res["t2i"]["n_queries"] == 5 * n_img and res["protocol"]["recall_ks"] == [1, 5]
    assert main(["eval", "--codes", str(path)]) == 0
    assert "recall@5" in capsys.readouterr().out


def test_eval_errors_are_clear(tmp_path, capsys):
    arrays = _labelled()
    only_images = save_codes(tmp_path / "img.npz", bits=16, query_image=arrays["query_image"], db_image=arrays["db_image"], query_labels=arrays["query_labels"], db_labels=arrays["db_labels"])
    assert main(["eval", "--codes", str(only_images)]) == 2
    assert "task i2t needs 'db_text' codes" in capsys.readouterr().err
    no_rel = save_codes(tmp_path / "norel.npz", bits=16, query_image=arrays["query_image"], db_text=arrays["db_text"])
    assert main(["eval", "--codes", str(no_rel), "--tasks", "i2t"]) == 2
    assert "nothing defines which items are relevant" in capsys.readouterr().err
    assert main(["eval", "--codes", str(tmp_path / "missing.npz")]) == 2
    assert "codes file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--codes", str(only_images), "--topk", "-3"])


def test_eval_help_teaches(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--denominator", "all_queries", "legacy_unstable", "examples:", "--curves", "Recall@K", "tie order decides the top 50"):
        assert needle in text
