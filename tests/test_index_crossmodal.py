"""CrossModalIndex, building from a codes file (+ dataset metadata), and the index/search CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmhash.cli import main
from cmhash.codes_io import save_codes
from cmhash.errors import DataError
from cmhash.index import CrossModalIndex, load_index
from cmhash.index.build import build_from_codes, dataset_metadata

BITS = 32


def label_codes(labels: np.ndarray, rng, flip: float) -> np.ndarray:
    """Codes that follow the labels: a fixed random code per label pattern, with a few bits flipped."""
    table = rng.integers(0, 2, (2 ** labels.shape[1], BITS), dtype=np.uint8)
    key = labels @ (1 << np.arange(labels.shape[1]))
    noise = (rng.random((len(labels), BITS)) < flip).astype(np.uint8)
    return (table[key] ^ noise).astype(np.int8) * 2 - 1


@pytest.fixture()
def collection():
    rng = np.random.default_rng(0)
    n = 60
    labels = rng.integers(0, 2, (n, 3)).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    img = label_codes(labels, np.random.default_rng(1), 0.05)
    txt = label_codes(labels, np.random.default_rng(1), 0.05)  # same table: both modalities share the code space
    ids = np.asarray([f"im{i + 1}" for i in range(n)])
    return ids, img, txt, labels


@pytest.fixture()
def mirflickr_dir(tmp_path, collection):
    """A tiny MIRFlickr folder in the all_*.txt layout with real (tiny) JPEG files."""
    from PIL import Image

    ids, _, _, labels = collection
    root = tmp_path / "mir"
    (root / "images128").mkdir(parents=True)
    names = ["sky", "dog", "beach"]
    tags = []
    for i, stem in enumerate(ids):
        Image.new("RGB", (8, 8), color=(i * 4 % 256, 100, 50)).save(root / "images128" / f"{stem}.jpg")
        tags.append(", ".join(names[j] for j in np.flatnonzero(labels[i])) + f", photo{i}")
    (root / "all_imgs.txt").write_text("\n".join(f"mirflickr/{s}.jpg" for s in ids) + "\n")
    (root / "all_tags.txt").write_text("\n".join(tags) + "\n")
    (root / "all_labels.txt").write_text("\n".join(" ".join(map(str, row)) for row in labels) + "\n")
    return root


@pytest.fixture()
def codes_file(tmp_path, collection):
    ids, img, txt, labels = collection
    path = tmp_path / "codes.npz"
    save_codes(
        path,
        bits=BITS,
        meta={"method": "oracle", "dataset": "mirflickr"},
        db_image=img[10:],
        db_text=txt[10:],
        db_ids=ids[10:],
        db_labels=labels[10:],
        query_image=img[:10],
        query_text=txt[:10],
        query_ids=ids[:10],
        query_labels=labels[:10],
    )
    return path


def hamming(a, b):
    return (a[:, None, :] != b[None, :, :]).sum(-1)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_search_each_direction_and_both(backend, collection):
    ids, img, txt, _ = collection
    index = CrossModalIndex.create(backend, BITS)
    index.add(ids, image_codes=img, text_codes=txt, metadata=[{"n": i} for i in range(len(ids))])
    q = txt[:5]
    for target, db in (("image", img), ("text", txt)):
        out_ids, dist = index.search(q, 8, target=target)
        ref = np.sort(hamming(q, db), axis=1, kind="stable")[:, :8]
        np.testing.assert_array_equal(dist, ref)
    out_ids, dist = index.search(q, 8, target="both")
    nearest = np.minimum(hamming(q, img), hamming(q, txt))
    np.testing.assert_array_equal(dist, np.sort(nearest, axis=1)[:, :8])
    for row in range(5):
        assert len(set(out_ids[row].tolist())) == 8  # each item once, at its nearer code
        pos = [int(s[2:]) - 1 for s in out_ids[row]]
        np.testing.assert_array_equal(nearest[row, pos], dist[row])
    hits = index.search_hits(q[:1], 3, target="both")[0]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(h["matched"] in ("image", "text") and h["metadata"] == {"n": int(h["id"][2:]) - 1} for h in hits)


def test_add_checks_both_modalities_and_stays_consistent(collection, monkeypatch):
    ids, img, txt, _ = collection
    index = CrossModalIndex.create("numpy", BITS)
    with pytest.raises(DataError, match="give text_codes too"):
        index.add(ids, image_codes=img)
    with pytest.raises(DataError, match="different numbers of rows"):
        index.add(ids, image_codes=img, text_codes=txt[:-1])
    with pytest.raises(DataError, match="text codes: width 31"):
        index.add(ids, image_codes=img, text_codes=txt[:, :-1])
    assert index.count == 0
    text_index = index.indexes["text"]

    def broken_add(*a, **k):
        raise RuntimeError("backend down")

    monkeypatch.setattr(text_index, "add", broken_add)
    with pytest.raises(RuntimeError):
        index.add(ids, image_codes=img, text_codes=txt)
    assert index.indexes["image"].count == 0  # rolled back
    only_images = CrossModalIndex.create("numpy", BITS, modalities=["image"])
    with pytest.raises(DataError, match="holds no text codes"):
        only_images.add(ids, image_codes=img, text_codes=txt)
    only_images.add(ids, image_codes=img)
    with pytest.raises(DataError, match="holds no text codes"):
        only_images.search(txt[:1], 3, target="text")
    with pytest.raises(DataError, match="target must be one of"):
        only_images.search(txt[:1], 3, target="audio")
    assert only_images.search(txt[:1], 3, target="both")[0].shape == (1, 3)


def test_remove_and_save_roundtrip(tmp_path, collection):
    ids, img, txt, _ = collection
    index = CrossModalIndex.create("faiss", BITS, info={"checkpoint": "run/ckpt.pt"})
    index.add(ids, image_codes=img, text_codes=txt, metadata=[{"text": f"t{i}"} for i in range(len(ids))])
    assert index.remove(ids[:5]) == 5
    assert index.indexes["text"].count == index.indexes["image"].count == 55
    index.save(tmp_path / "cm.index")
    loaded = load_index(tmp_path / "cm.index")
    assert isinstance(loaded, CrossModalIndex) and loaded.info == {"checkpoint": "run/ckpt.pt"}
    for target in ("image", "text", "both"):
        a, b = index.search(txt[:4], 6, target=target), loaded.search(txt[:4], 6, target=target)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert loaded.get_metadata([ids[7]]) == [{"text": "t7"}]
    np.testing.assert_array_equal(loaded.get_codes([ids[7]], "text"), np.packbits(txt[7:8] > 0, axis=1))


def test_build_from_codes_splits(codes_file, collection):
    ids, img, _, labels = collection
    db = build_from_codes(codes_file, backend="numpy")
    assert db.count == 50 and db.info["method"] == "oracle" and db.info["split"] == "db"
    assert db.get_metadata([ids[12]]) == [{"labels": np.flatnonzero(labels[12]).tolist()}]
    everything = build_from_codes(codes_file, backend="numpy", split="all")
    assert everything.count == 60 and everything.contains(ids).all()
    queries = build_from_codes(codes_file, backend="numpy", split="query")
    assert queries.count == 10
    with pytest.raises(DataError, match="split must be one of"):
        build_from_codes(codes_file, split="train")


def test_dataset_metadata_matches_ids(mirflickr_dir, collection):
    from cmhash.data import load_dataset

    ids, _, _, labels = collection
    ds = load_dataset("mirflickr", mirflickr_dir, text_features="none")
    meta = dataset_metadata(ds, ids[[3, 0]])
    assert meta[0]["image"].endswith("images128/im4.jpg") and meta[0]["text"].endswith("photo3")
    assert len(meta[0]["labels"]) == int(labels[3].sum())
    with pytest.raises(DataError, match="not in dataset 'mirflickr': 'nope'"):
        dataset_metadata(ds, ["nope"])


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_cli_build_info_and_search(tmp_path, capsys, codes_file, mirflickr_dir, collection, backend):
    ids, img, txt, labels = collection
    out = tmp_path / "mir.index"
    code, stdout, err = run_cli(
        capsys, "index", "build", "--codes", str(codes_file), "--dataset", "mirflickr", "--data-root", str(mirflickr_dir),
        "--dataset-option", "text_features=none", "--backend", backend, "--out", str(out),
    )
    assert code == 0, err
    assert "indexed 50 items" in stdout and out.exists()

    code, stdout, _ = run_cli(capsys, "index", "info", str(out))
    assert code == 0 and "crossmodal" in stdout and "oracle" in stdout

    # query with an item's text code: the closest images come first, each with its text and image path
    code, stdout, err = run_cli(capsys, "search", "--index", str(out), "--like", "im20", "--k", "5", "--json")
    assert code == 0, err
    hits = json.loads(stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    q = txt[19:20]
    expected = np.sort(hamming(q, img[10:])[0])[:5]
    assert [h["distance"] for h in hits] == expected.tolist()
    assert hits[0]["image"].endswith(f"images128/{hits[0]['id']}.jpg") and "photo" in hits[0]["text"]
    assert all(h["matched"] == "image" for h in hits)
    # label-following codes: the top hit shares the query's label pattern
    top = int(hits[0]["id"][2:]) - 1
    assert (labels[top] == labels[19]).all()

    code, stdout, err = run_cli(
        capsys, "search", "--index", str(out), "--query-codes", str(codes_file), "--query-row", "3", "--query-modality", "image", "--k", "4"
    )
    assert code == 0, err
    assert "image query im4" in stdout and "-> text codes of 50 items" in stdout
    assert "| rank | id" in stdout and "images128" in stdout

    code, stdout, err = run_cli(capsys, "search", "--index", str(out), "--like", "im20", "--target", "both", "--k", "3")
    assert code == 0 and "matched" in stdout and "im20" in stdout  # the item itself matches at distance 0


def test_cli_errors_are_clear(tmp_path, capsys, codes_file):
    out = tmp_path / "a.index"
    assert run_cli(capsys, "index", "build", "--codes", str(codes_file), "--backend", "numpy", "--out", str(out))[0] == 0
    code, _, err = run_cli(capsys, "search", "--index", str(out), "--text", "a dog on the beach")
    assert code == 2 and "--text needs the model" in err and "--checkpoint" in err
    code, _, err = run_cli(capsys, "search", "--index", str(out), "--like", "im999")
    assert code == 2 and "unknown id(s) 'im999'" in err
    code, _, err = run_cli(capsys, "search", "--index", str(out))
    assert code == 2 and "give exactly one query" in err
    with pytest.raises(SystemExit) as exc:  # argparse's one-line usage error (cmhash.validation)
        run_cli(capsys, "search", "--index", str(out), "--like", "im20", "--k", "0")
    assert exc.value.code == 2 and "--k: must be a positive integer" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "search", "--index", str(tmp_path / "missing.index"), "--like", "im20")
    assert code == 2 and "index file not found" in err
    code, _, err = run_cli(capsys, "index", "build", "--out", str(tmp_path / "new.index"))
    assert code == 2 and "exactly one of --codes" in err
    code, _, err = run_cli(capsys, "index", "build", "--checkpoint", "x.pt", "--out", str(tmp_path / "new.index"))
    assert code == 2 and "x.pt: checkpoint not found" in err
    code, _, err = run_cli(capsys, "index", "build", "--codes", str(tmp_path / "none.npz"), "--out", str(tmp_path / "new.index"))
    assert code == 2 and "codes file not found" in err
    code, _, err = run_cli(capsys, "index", "build", "--checkpoint", "x.pt", "--dataset", "mirflickr", "--data-root", str(tmp_path), "--out", str(tmp_path / "new.index"))
    assert code == 2 and "x.pt: checkpoint not found" in err
    code, _, err = run_cli(capsys, "index", "build", "--codes", str(tmp_path / "none.npz"), "--features", "f.npz", "--out", str(tmp_path / "new.index"))
    assert code == 2 and "--features goes with --checkpoint" in err
    truncated = tmp_path / "t.index"
    truncated.write_bytes(out.read_bytes()[:-10])
    code, _, err = run_cli(capsys, "search", "--index", str(truncated), "--like", "im20")
    assert code == 2 and "truncated" in err


@pytest.mark.shared_data
def test_real_mirflickr_metadata_in_search_results(shared_data, tmp_path, capsys):
    """On the real MIRFlickr subset: results carry each item's real tags, image file and label names."""
    from pathlib import Path

    from cmhash.data import load_dataset

    root = shared_data / "mirflickr25k"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    ds = load_dataset("mirflickr", root, text_features="none", check_images="exists")
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((ds.labels.shape[1], BITS))
    base = ds.labels.astype(np.float64) @ proj  # codes that follow the labels: a stand-in for a trained model
    img = np.where(base + 0.3 * rng.standard_normal(base.shape) >= 0, 1, -1)
    txt = np.where(base + 0.3 * rng.standard_normal(base.shape) >= 0, 1, -1)
    codes = tmp_path / "mir-codes.npz"
    save_codes(codes, bits=BITS, db_image=img, db_text=txt, db_ids=ds.ids, db_labels=ds.labels)
    out = tmp_path / "mir.index"
    assert main(["index", "build", "--codes", str(codes), "--dataset", "mirflickr", "--data-root", str(root),
                 "--dataset-option", "text_features=none", "--dataset-option", "check_images=exists", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(out), "--like", ds.ids[0], "--k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5
    names = set(np.asarray(ds.label_names)[ds.labels[0] == 1])
    for h in hits:
        row = int(np.flatnonzero(ds.ids == h["id"])[0])
        assert h["text"] == ds.texts[row] and Path(h["image"]).is_file()
        assert set(h["labels"]) == set(np.asarray(ds.label_names)[ds.labels[row] == 1])
    assert names & set(hits[0]["labels"])  # the nearest image shares a concept with the query's text
