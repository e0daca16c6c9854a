"""From a trained checkpoint to answers: index build --checkpoint, then search --text / --image, per backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cmhash.cli import main as cli
from cmhash.data import load_dataset
from cmhash.errors import DataError
from cmhash.index import load_index
from cmhash.index.encoding import encode_collection, encode_query
from cmhash.inference import load_checkpoint
from features_fixtures import write_mirflickr_fixture

torch.set_num_threads(1)
SYN = ["-o", "n=1500", "-o", "signal=0.8", "-o", "seed=3"]
SYN_OPTIONS = {"n": 1500, "signal": 0.8, "seed": 3}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """DJSRH trained on a small synthetic collection (texts are tag lists with a saved vocabulary)."""
    out = tmp_path_factory.mktemp("syn") / "run"
    args = ["train", "djsrh", "--dataset", "synthetic", *SYN, "--bits", "16", "--epochs", "10", "--set", "hidden=256"]
    args += ["--split", "random", "--split-param", "num_query=100", "--split-param", "num_train=1000", "--num-val", "0", "--out", str(out), "--no-progress"]
    assert cli(args) == 0
    return out


def _search(capsys, *args):
    capsys.readouterr()
    code = cli(["search", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_encode_collection_follows_the_training_split(synthetic_run):
    ck = load_checkpoint(synthetic_run)
    db = encode_collection(synthetic_run, None, None, split="db", progress=False)
    q = encode_collection(synthetic_run, None, None, split="query", progress=False)
    assert len(q.ids) == 100 and len(db.ids) == 1400 and not set(q.ids) & set(db.ids)
    assert db.codes["image"].shape == (1400, 16) and set(np.unique(db.codes["text"])) <= {-1, 1}
    assert db.bits == ck.bits == 16 and "text" in db.metadata[0] and "labels" in db.metadata[0]
    with pytest.raises(DataError, match="split must be one of"):
        encode_collection(synthetic_run, None, None, split="train", progress=False)


def test_text_query_codes_equal_the_codes_of_the_same_text_in_the_collection(synthetic_run):
    ds = load_dataset("synthetic", None, **SYN_OPTIONS)
    coll = encode_collection(synthetic_run, None, None, split="all", progress=False)
    for row in (0, 17, 321):
        codes, modality = encode_query(synthetic_run, text=ds.texts[row])
        assert modality == "text" and codes.shape == (1, 16)
        np.testing.assert_array_equal(codes[0], coll.codes["text"][row])
    with pytest.raises(DataError, match="vocabulary"):
        encode_query(synthetic_run, text="zebra unicorn")
    with pytest.raises(DataError, match="exactly one"):
        encode_query(synthetic_run)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_search_by_text_returns_relevant_images_through_each_exact_backend(synthetic_run, tmp_path, capsys, backend):
    pytest.importorskip("faiss") if backend == "faiss" else None
    idx = tmp_path / f"{backend}.idx"
    assert cli(["index", "build", "--checkpoint", str(synthetic_run), "--backend", backend, "--out", str(idx)]) == 0
    index = load_index(idx)
    try:
        assert index.count == 1400 and index.info["source"] == "checkpoint" and index.info["method"] == "djsrh"
    finally:
        index.close()
    ds = load_dataset("synthetic", None, **SYN_OPTIONS)
    ck = load_checkpoint(synthetic_run)
    from cmhash.inference.inputs import checkpoint_split

    split = checkpoint_split(ck, ds)
    hits, base = [], []
    for row in split.query[:30]:
        res = _search(capsys, "--index", str(idx), "--text", ds.texts[row], "--k", "10")
        assert len(res) == 10 and [r["distance"] for r in res] == sorted(r["distance"] for r in res)
        rows = [int(np.flatnonzero(ds.ids == r["id"])[0]) for r in res]
        hits.append(np.mean([(ds.labels[row] & ds.labels[j]).any() for j in rows]))
        base.append(np.mean([(ds.labels[row] & ds.labels[j]).any() for j in split.database]))
    assert np.mean(hits) > np.mean(base) + 0.05, (np.mean(hits), np.mean(base))


def test_the_exact_backends_return_identical_distances_for_a_text_query(synthetic_run, tmp_path, capsys):
    pytest.importorskip("faiss")
    ds = load_dataset("synthetic", None, **SYN_OPTIONS)
    results = {}
    for backend in ("numpy", "faiss"):
        idx = tmp_path / f"{backend}.idx"
        assert cli(["index", "build", "--checkpoint", str(synthetic_run), "--backend", backend, "--split", "all", "--out", str(idx)]) == 0
        results[backend] = _search(capsys, "--index", str(idx), "--text", ds.texts[5], "--k", "50")
    assert [r["distance"] for r in results["numpy"]] == [r["distance"] for r in results["faiss"]]
    assert [r["id"] for r in results["numpy"]] == [r["id"] for r in results["faiss"]]  # ties by insertion order in both


def test_search_by_image_file_uses_the_encoder_recorded_with_the_features(tmp_path, capsys):
    """Feature cache (tiny image encoder + tag BoW) -> DJSRH -> index -> --image and --text queries."""
    root = write_mirflickr_fixture(tmp_path / "mir", n=40)
    cache = tmp_path / "cache"
    assert cli(["features", "extract", "--dataset", "mirflickr", "--data-root", str(root), "--source-option", "min_count=1", "--image-encoder", "tiny-image", "--text-encoder", "bow", "--out", str(cache), "--no-progress"]) == 0
    run = tmp_path / "run"
    args = ["train", "djsrh", "--dataset", "mirflickr", "--data-root", str(root), "-o", "min_count=1", "--features", str(cache), "--bits", "8", "--epochs", "2", "--set", "hidden=16"]
    args += ["--split", "random", "--split-param", "num_query=5", "--split-param", "num_train=32", "--num-val", "0", "--out", str(run), "--no-progress"]
    assert cli(args) == 0
    specs = load_checkpoint(run).meta["features"]["encoders"]
    assert specs["image"]["name"] == "tiny-image"
    idx = tmp_path / "mir.idx"
    assert cli(["index", "build", "--checkpoint", str(run), "--backend", "numpy", "--split", "all", "--out", str(idx)]) == 0
    coll = encode_collection(run, None, None, split="all", progress=False)
    photo = root / "images128" / "im7.jpg"
    codes, modality = encode_query(run, image=photo)
    row = next(i for i, item in enumerate(coll.metadata) if str(item["image"]).endswith("/im7.jpg"))
    assert modality == "image"
    np.testing.assert_array_equal(codes[0], coll.codes["image"][row])
    res = _search(capsys, "--index", str(idx), "--image", str(photo), "--k", "5", "--target", "image")
    assert res[0]["distance"] == 0 and len(res) == 5 and all("image" in r for r in res)
    res = _search(capsys, "--index", str(idx), "--text", "sky, dog", "--k", "3")
    assert len(res) == 3 and all("id" in r and "distance" in r for r in res)
    capsys.readouterr()
    assert cli(["search", "--index", str(idx), "--image", str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
