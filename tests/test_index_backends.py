"""The in-process index backends (numpy, faiss) against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from cmhash.errors import DataError
from cmhash.index import create_index, list_backends, load_index
from cmhash.index import scan

EXACT = [("numpy", {}), ("faiss", {}), ("numpy", {"chunk_size": 7})]
# threads=1: faiss's OpenMP threads crawl when the 2 cores are shared with other work
ALL_LOCAL = EXACT + [("faiss", {"kind": "hnsw", "threads": 1}), ("faiss", {"kind": "ivf", "nlist": 8, "nprobe": 8, "threads": 1})]


def reference_topk(db_bits: np.ndarray, q_bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Obviously correct top-k: every distance, then a stable sort (ties by insertion position)."""
    dist = (q_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, 1)


def random_codes(rng, n, bits):
    return rng.integers(0, 2, (n, bits), dtype=np.uint8)


def test_backends_registered():
    assert {"numpy", "faiss", "milvus"} <= set(list_backends())


@pytest.mark.parametrize("bits", [8, 12, 32, 64, 96, 128, 256, 264])
@pytest.mark.parametrize("backend,opts", EXACT)
def test_exact_backends_match_reference_including_ties(backend, opts, bits):
    rng = np.random.default_rng(bits)
    n = 700
    db = random_codes(rng, n, bits)
    db[100:140] = db[5]  # many exact duplicates: ties must follow insertion order
    q = random_codes(rng, 25, bits)
    q[0] = db[5]
    index = create_index(backend, bits=bits, **opts)
    index.add(np.arange(n) * 10, db)
    for k in (1, 7, 50, 300):
        ids, dist = index.search(q, k)
        ref_pos, ref_dist = reference_topk(db, q, k)
        assert ids.shape == dist.shape == (25, k)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(ids, ref_pos * 10)


def test_scan_kernel_many_shapes():
    rng = np.random.default_rng(0)
    for bits, n, k, nq in [(16, 5, 5, 3), (16, 3000, 200, 70), (64, 20000, 1, 3), (128, 4097, 50, 130), (8, 1000, 999, 2)]:
        db = random_codes(rng, n, bits)
        q = random_codes(rng, nq, bits)
        packed = np.packbits(db, axis=1)
        dt = scan.word_dtype(packed.shape[1])
        planes = scan.to_planes(packed, dt)
        chunks = [planes[:, : n // 3], planes[:, n // 3 :]]
        dist, pos = scan.topk([c for c in chunks if c.shape[1]], np.packbits(q, axis=1).view(dt), k, bits)
        ref_pos, ref_dist = reference_topk(db, q, k)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(pos, ref_pos)
        np.testing.assert_array_equal(scan.from_planes(planes), packed)


@pytest.mark.parametrize("backend,opts", EXACT)
def test_code_formats_are_equivalent(backend, opts):
    rng = np.random.default_rng(1)
    bits01 = random_codes(rng, 50, 24)
    pm1 = bits01.astype(np.int8) * 2 - 1
    packed = np.packbits(bits01, axis=1)
    results = []
    for codes in (bits01, pm1, packed, bits01.astype(bool)):
        index = create_index(backend, bits=24, **opts)
        index.add(list(range(50)), codes)
        results.append(index.search(pm1[:5], 10))
        # queries in any format too
        np.testing.assert_array_equal(index.search(packed[:5], 10)[1], results[-1][1])
    for ids, dist in results[1:]:
        np.testing.assert_array_equal(ids, results[0][0])
        np.testing.assert_array_equal(dist, results[0][1])
    assert results[0][1][:, 0].tolist() == [0] * 5


def test_numpy_and_faiss_agree_on_large_random_codes():
    rng = np.random.default_rng(2)
    db = rng.integers(0, 256, (60_000, 8), dtype=np.uint8)
    q = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    a, b = create_index("numpy", bits=64), create_index("faiss", bits=64)
    for ix in (a, b):
        ix.add(np.arange(len(db)), db)
    ia, da = a.search(q, 50)
    ib, db_ = b.search(q, 50)
    np.testing.assert_array_equal(da, db_)
    np.testing.assert_array_equal(ia, ib)


@pytest.mark.parametrize("backend,opts", ALL_LOCAL)
def test_remove_then_search_and_positions(backend, opts):
    rng = np.random.default_rng(3)
    n = 400
    db = random_codes(rng, n, 32)
    ids = np.asarray([f"doc-{i}" for i in range(n)])
    index = create_index(backend, bits=32, **opts)
    index.add(ids, db, metadata=[{"i": i} for i in range(n)])
    gone = ids[::3]
    assert index.remove(gone) == len(gone)
    assert index.count == n - len(gone)
    keep = np.setdiff1d(np.arange(n), np.arange(0, n, 3))
    out_ids, dist = index.search(db[:20], 10)
    assert not np.isin(out_ids, gone).any()
    assert index.contains(gone).sum() == 0 and index.contains(ids[keep]).all()
    assert index.get_metadata(ids[keep][:3]) == [{"i": int(i)} for i in keep[:3]]
    np.testing.assert_array_equal(index.get_codes(ids[keep][:5]), np.packbits(db[keep][:5], axis=1))
    if index.exact:
        ref_pos, ref_dist = reference_topk(db[keep], db[:20], 10)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(out_ids, ids[keep][ref_pos])
    # a removed id can be added again, at the end of the insertion order
    index.add([gone[0]], db[:1])
    assert index.contains([gone[0]]).all() and index.count == n - len(gone) + 1


@pytest.mark.parametrize("backend,opts", ALL_LOCAL)
def test_save_load_roundtrip(tmp_path, backend, opts):
    rng = np.random.default_rng(4)
    db = random_codes(rng, 300, 40)
    index = create_index(backend, bits=40, **opts)
    index.add(np.arange(300) + 5, db, metadata=[{"n": i} if i % 2 else None for i in range(300)])
    index.remove([5, 6, 7])
    before = index.search(db[:9], 12)
    path = index.save(tmp_path / "a.index")
    loaded = load_index(path)
    assert type(loaded) is type(index) and loaded.count == 297 and loaded.options() == index.options()
    after = loaded.search(db[:9], 12)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.get_metadata([8, 9]) == [{"n": 3}, None]
    loaded.add([1000], db[:1])  # still usable after loading
    assert loaded.search(db[:1], 1)[1][0, 0] == 0


def test_faiss_flat_file_loads_into_numpy(tmp_path):
    rng = np.random.default_rng(5)
    db = random_codes(rng, 100, 64)
    index = create_index("faiss", bits=64)
    index.add(np.arange(100), db)
    path = index.save(tmp_path / "f.index")
    from cmhash.index.container import read_container
    from cmhash.index.numpy_backend import NumpyIndex

    manifest, sections = read_container(path)
    as_numpy = NumpyIndex._from_state({**manifest, "options": {}}, sections)
    np.testing.assert_array_equal(as_numpy.search(db[:4], 5)[1], index.search(db[:4], 5)[1])


@pytest.mark.parametrize("backend,opts", ALL_LOCAL)
def test_k_larger_than_count_and_empty_index(backend, opts):
    opts = {**opts, "nlist": 2} if opts.get("kind") == "ivf" else opts
    index = create_index(backend, bits=16, **opts)
    ids, dist = index.search(np.zeros((2, 16), np.uint8), 5)
    assert ids.shape == dist.shape == (2, 0)
    rng = np.random.default_rng(6)
    db = random_codes(rng, 3, 16)
    index.add([1, 2, 3], db)
    q = random_codes(rng, 2, 16)
    ids, dist = index.search(q, 10)
    assert ids.shape == dist.shape == (2, 3)
    ref_pos, ref_dist = reference_topk(db, q, 3)
    np.testing.assert_array_equal(dist, ref_dist)  # every code is returned, even by approximate kinds
    np.testing.assert_array_equal(ids, ref_pos + 1)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_bad_input_errors(backend):
    index = create_index(backend, bits=16)
    index.add([1, 2], np.ones((2, 16), np.int8))
    with pytest.raises(DataError, match="width 15 does not match 16-bit"):
        index.add([3], np.ones((1, 15)))
    with pytest.raises(DataError, match=r"row 0, bit 2 is 2"):
        index.add([3], np.asarray([[1, 0, 2] + [0] * 13]))
    with pytest.raises(DataError, match="mixes -1 and 0"):
        index.add([3], np.asarray([[1, -1, 0] + [1] * 13]))
    with pytest.raises(DataError, match=r"already in the index: 2"):
        index.add([2, 9], np.ones((2, 16)))
    with pytest.raises(DataError, match=r"duplicate id\(s\) in the same call: 7"):
        index.add([7, 7], np.ones((2, 16)))
    with pytest.raises(DataError, match="uses int ids but str ids"):
        index.add(["x"], np.ones((1, 16)))
    with pytest.raises(DataError, match="2 ids for 1 codes"):
        index.add([3, 4], np.ones((1, 16)))
    with pytest.raises(DataError, match=r"unknown id\(s\) 5, 6"):
        index.remove([1, 5, 6])
    assert index.count == 2  # nothing was removed by the failed call
    assert index.remove([1, 5], missing_ok=True) == 1
    with pytest.raises(DataError, match="k must be a positive integer"):
        index.search(np.ones((1, 16)), 0)
    with pytest.raises(DataError, match="query codes: width 8"):
        index.search(np.ones((1, 8)), 1)
    with pytest.raises(DataError, match="metadata: 1 entries for 2 codes"):
        index.add([10, 11], np.ones((2, 16)), metadata=[{}])
    with pytest.raises(DataError, match="not JSON-serialisable"):
        index.add([10], np.ones((1, 16)), metadata=[{"x": object()}])
    assert index.count == 1


def test_padding_bits_of_packed_codes_are_checked():
    index = create_index("numpy", bits=12)
    with pytest.raises(DataError, match="padding bits set"):
        index.add([1], np.asarray([[0xFF, 0xFF]], np.uint8))
    index.add([1], np.asarray([[0xFF, 0xF0]], np.uint8))
    assert index.search(np.ones((1, 12)), 1)[1][0, 0] == 0


def test_unknown_options_and_backend():
    with pytest.raises(DataError, match="unknown option"):
        create_index("numpy", bits=8, kind="flat")
    with pytest.raises(DataError, match="kind must be one of"):
        create_index("faiss", bits=8, kind="lsh")
    with pytest.raises(Exception, match="unknown index backend 'fais'. .*Did you mean faiss"):
        create_index("fais", bits=8)
    with pytest.raises(DataError, match="bits must be a positive integer"):
        create_index("numpy", bits=0)


def test_ids_ascending_fast_path_and_lookup():
    index = create_index("numpy", bits=8)
    index.add(np.arange(0, 100, 2), np.zeros((50, 8)))
    index.add([1, 3], np.zeros((2, 8)))  # no longer ascending: lookups use a sorted view
    index.add(np.arange(1000, 1010), np.zeros((10, 8)))
    with pytest.raises(DataError, match="already in the index: 3, 1004"):
        index.add([3, 1004, 5000], np.zeros((3, 8)))
    assert index.contains([0, 1, 3, 5, 98, 1009]).tolist() == [True, True, True, False, True, True]
    index.remove([1, 1005])
    assert index.ids().tolist()[-11:] == [98, 3, 1000, 1001, 1002, 1003, 1004, 1006, 1007, 1008, 1009]
    assert index.count == 60


def test_approximate_faiss_recall_on_clustered_codes():
    rng = np.random.default_rng(7)
    centers = random_codes(rng, 30, 64)
    assign = rng.integers(0, 30, 6000)
    noise = (rng.random((6000, 64)) < 0.08).astype(np.uint8)
    db = centers[assign] ^ noise
    q = centers[rng.integers(0, 30, 50)] ^ (rng.random((50, 64)) < 0.08).astype(np.uint8)
    exact = create_index("faiss", bits=64)
    exact.add(np.arange(6000), db)
    _, true_d = exact.search(q, 20)
    for opts in ({"kind": "hnsw"}, {"kind": "ivf", "nlist": 30, "nprobe": 4}):
        approx = create_index("faiss", bits=64, threads=1, **opts)
        approx.add(np.arange(6000), db)
        assert not approx.exact
        ids, d = approx.search(q, 20)
        assert (np.diff(d, axis=1) >= 0).all()
        # recall measured on distances (ties make id sets ambiguous): the k-th distance found is close to the true one
        assert np.mean(d[:, -1] <= true_d[:, -1] + 1) > 0.8


def test_ivf_needs_enough_training_codes():
    index = create_index("faiss", bits=16, kind="ivf", nlist=50)
    with pytest.raises(DataError, match="10 training codes for nlist=50"):
        index.add(np.arange(10), np.zeros((10, 16)))
    assert index.count == 0


def test_memory_is_packed_width_per_code():
    index = create_index("numpy", bits=128)
    index.add(np.arange(10_000), np.zeros((10_000, 16), np.uint8))
    assert index.memory_bytes() == 10_000 * 16


@pytest.mark.parametrize("backend,opts", ALL_LOCAL)
def test_index_owns_its_codes_and_ids(backend, opts):
    """Changing the caller's arrays after add must not change the index."""
    rng = np.random.default_rng(8)
    packed = rng.integers(0, 256, (200, 8), dtype=np.uint8)
    ids = np.arange(200, dtype=np.int64)
    queries = packed[:5].copy()
    index = create_index(backend, bits=64, **opts)
    index.add(ids, packed)
    before = index.search(queries, 3)
    packed[:] = 0
    ids[:] = -1
    after = index.search(queries, 3)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[0][:, 0].tolist() == [0, 1, 2, 3, 4] and after[1][:, 0].tolist() == [0] * 5
    np.testing.assert_array_equal(index.get_codes([0, 1]), queries[:2])
