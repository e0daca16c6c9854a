"""The Milvus backend against a real (embedded) Milvus server on 127.0.0.1, compared with numpy."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from cmhash.errors import CmhashError, DataError
from cmhash.index import CrossModalIndex, create_index, load_index

pytestmark = [pytest.mark.milvus, pytest.mark.slow]


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    try:
        import milvus  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the embedded Milvus server needs `pip install \"cmhash[milvus]\"` ({exc})")
    from cmhash.index.milvus_server import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus-data"))
    try:
        uri = server.start()
    except CmhashError as exc:
        pytest.skip(f"the embedded Milvus server could not start here: {exc}")
    yield uri
    server.stop()


def name() -> str:
    return "t" + uuid.uuid4().hex[:10]


def both(backend_opts, bits, ids, codes, metadata=None):
    ref = create_index("numpy", bits=bits)
    ref.add(ids, codes, metadata=metadata)
    mv = create_index("milvus", bits=bits, **backend_opts)
    mv.add(ids, codes, metadata=metadata)
    return ref, mv


@pytest.mark.parametrize("bits,n", [(64, 3000), (16, 2000), (128, 500)])
def test_exact_search_agrees_with_numpy(milvus_uri, bits, n):
    """Same distances and, ties by insertion order, same ids (16-bit codes have many ties)."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2, (n, bits), dtype=np.uint8)
    ids = rng.permutation(n * 5)[:n]  # arbitrary integer ids, not in insertion order
    ref, mv = both({"uri": milvus_uri, "collection": name()}, bits, ids, codes)
    try:
        assert mv.exact and mv.count == n
        q = rng.integers(0, 2, (20, bits), dtype=np.uint8)
        for k in (1, 10, 100):
            ids_m, d_m = mv.search(q, k)
            ids_r, d_r = ref.search(q, k)
            np.testing.assert_array_equal(d_m, d_r)
            np.testing.assert_array_equal(ids_m, ids_r)
            assert ids_m.dtype == np.int64
    finally:
        mv.drop()


def test_string_ids_metadata_remove_and_errors(milvus_uri):
    rng = np.random.default_rng(1)
    codes = rng.choice([-1, 1], (300, 32))
    ids = [f'doc "{i}"' if i % 7 == 0 else f"doc-{i}" for i in range(300)]  # quotes must survive the filter expressions
    meta = [{"text": f"caption {i}"} if i % 2 == 0 else None for i in range(300)]
    ref, mv = both({"uri": milvus_uri, "collection": name(), "insert_batch": 64}, 32, ids, codes, meta)
    try:
        assert mv.count == 300
        assert mv.get_metadata([ids[0], ids[1]]) == [{"text": "caption 0"}, None]
        np.testing.assert_array_equal(mv.get_codes([ids[7], ids[3]]), ref.get_codes([ids[7], ids[3]]))
        assert mv.contains([ids[7], "nope"]).tolist() == [True, False]
        with pytest.raises(DataError, match="already in the index: 'doc-3'"):
            mv.add(["new", "doc-3"], codes[:2])
        with pytest.raises(DataError, match=r"duplicate id\(s\) in the same call"):
            mv.add(["a", "a"], codes[:2])
        with pytest.raises(DataError, match="uses str ids but int ids"):
            mv.add([5], codes[:1])
        with pytest.raises(DataError, match="width 31 does not match 32-bit"):
            mv.add(["x"], codes[:1, :31])
        with pytest.raises(DataError, match=r"unknown id\(s\) 'ghost'"):
            mv.remove(["doc-1", "ghost"])
        assert mv.count == 300
        gone = ids[:50]
        assert mv.remove(gone) == 50 and ref.remove(gone) == 50
        assert mv.count == 250 and mv.remove(["ghost"], missing_ok=True) == 0
        q = codes[:10]
        ids_m, d_m = mv.search(q, 20)
        ids_r, d_r = ref.search(q, 20)
        np.testing.assert_array_equal(d_m, d_r)
        np.testing.assert_array_equal(ids_m, ids_r)
        assert not np.isin(ids_m, gone).any()
        with pytest.raises(DataError, match="k must be a positive integer"):
            mv.search(q, 0)
    finally:
        mv.drop()


def test_topk_limit_and_k_above_count(milvus_uri):
    rng = np.random.default_rng(2)
    mv = create_index("milvus", bits=8, uri=milvus_uri, collection=name())
    try:
        mv.add(np.arange(20_000), rng.integers(0, 256, (20_000, 1), dtype=np.uint8))
        with pytest.raises(DataError, match="at most 16384 results per query"):
            mv.search(np.zeros((1, 8)), 20_000)
        small = create_index("milvus", bits=8, uri=milvus_uri, collection=name())
        small.add([1, 2, 3], np.eye(3, 8))
        ids, dist = small.search(np.zeros((2, 8)), 10)
        assert ids.shape == (2, 3) and dist[0].tolist() == [1, 1, 1] and ids[0].tolist() == [1, 2, 3]
        small.drop()
    finally:
        mv.drop()


def test_save_load_reconnects_and_checks(milvus_uri, tmp_path):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2, (500, 64), dtype=np.uint8)
    coll = name()
    mv = create_index("milvus", bits=64, uri=milvus_uri, collection=coll)
    mv.add(np.arange(500), codes, metadata=[{"i": i} for i in range(500)])
    before = mv.search(codes[:5], 10)
    path = mv.save(tmp_path / "mv.index")
    manifest = json.loads(json.dumps(__import__("cmhash.index.container", fromlist=["x"]).read_manifest(path)))
    assert manifest["backend"] == "milvus" and manifest["options"]["collection"] == coll and "token" not in json.dumps(manifest)
    mv.close()
    loaded = load_index(path, uri=milvus_uri)
    after = loaded.search(codes[:5], 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.get_metadata([42]) == [{"i": 42}]
    with pytest.raises(DataError, match="already exists"):
        create_index("milvus", bits=64, uri=milvus_uri, collection=coll)
    with pytest.raises(DataError, match="holds 64-bit codes, not 32-bit"):
        create_index("milvus", bits=32, uri=milvus_uri, collection=coll, if_exists="open")
    loaded.drop()
    with pytest.raises(DataError, match="not found"):
        load_index(path)


def test_ivf_index_recall_and_params(milvus_uri):
    rng = np.random.default_rng(4)
    centers = rng.integers(0, 2, (20, 64), dtype=np.uint8)
    db = centers[rng.integers(0, 20, 4000)] ^ (rng.random((4000, 64)) < 0.08).astype(np.uint8)
    q = centers[rng.integers(0, 20, 30)] ^ (rng.random((30, 64)) < 0.08).astype(np.uint8)
    ref, mv = both({"uri": milvus_uri, "collection": name(), "index_type": "BIN_IVF_FLAT", "nlist": 32, "nprobe": 8}, 64, np.arange(4000), db)
    try:
        mv.flush()  # seal the segment so the IVF index is built and used
        assert not mv.exact
        _, d_m = mv.search(q, 10)
        _, d_r = ref.search(q, 10)
        assert (d_m >= d_r).all()  # never better than exact
        assert np.mean(d_m[:, -1] <= d_r[:, -1] + 1) > 0.8
    finally:
        mv.drop()


def test_bad_uri_and_options(milvus_uri):
    with pytest.raises(DataError, match="index_type must be one of"):
        create_index("milvus", bits=8, uri=milvus_uri, index_type="HNSW")
    with pytest.raises(CmhashError, match="cannot connect to Milvus at http://127.0.0.1:9"):
        create_index("milvus", bits=8, uri="http://127.0.0.1:9", timeout=3)


def test_crossmodal_cli_through_milvus(milvus_uri, tmp_path, capsys):
    from cmhash.cli import main
    from cmhash.codes_io import save_codes

    rng = np.random.default_rng(5)
    img, txt = rng.choice([-1, 1], (200, 32)), rng.choice([-1, 1], (200, 32))
    ids = [f"im{i}" for i in range(200)]
    codes = tmp_path / "codes.npz"
    save_codes(codes, bits=32, db_image=img, db_text=txt, db_ids=ids)
    coll = name()
    out = tmp_path / "mv.index"
    assert main(["index", "build", "--codes", str(codes), "--backend", "milvus", "--milvus-uri", milvus_uri,
                 "--milvus-collection", coll, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(out), "--like", "im5", "--k", "7", "--json", "--target", "both"]) == 0
    hits = json.loads(capsys.readouterr().out)
    local = CrossModalIndex.create("numpy", 32)
    local.add(ids, image_codes=img, text_codes=txt)
    ref_ids, ref_d = local.search(txt[5:6], 7, target="both")
    assert [h["id"] for h in hits] == ref_ids[0].tolist()
    assert [h["distance"] for h in hits] == ref_d[0].tolist()
    index = load_index(out)
    assert {ix.collection_name for ix in index.indexes.values()} == {f"{coll}_image", f"{coll}_text"}
    for ix in index.indexes.values():
        ix.drop()
