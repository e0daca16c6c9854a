"""Every metric of cmhash.metrics against a plain, obviously correct reference (loops, full sort).

The random data use few bits (8/16) so that many database items share a distance, include
queries with no relevant item in the database and queries whose relevant items all fall outside
the top K, and run every option combination.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cmhash import metrics as M
from cmhash.errors import DataError


# --------------------------------------------------------------------------- reference
def ref_distance(q, d):
    """Hamming distance of two +-1 vectors, by counting differing positions."""
    return sum(1 for a, b in zip(q, d) if a != b)


def ref_relevant(ql, dl):
    return any(a and b for a, b in zip(ql, dl))


def ref_ranking(qcode, db, tie="stable"):
    dists = [ref_distance(qcode, x) for x in db]
    return sorted(range(len(db)), key=lambda j: (dists[j], j)), dists


def ref_map(qB, dB, qL, dL, topk, denominator="all_queries", normalize="hits_in_topk"):
    n = len(dB)
    k = n if topk is None else min(topk, n)
    aps, counted = [], []
    for i in range(len(qB)):
        ranking, _ = ref_ranking(qB[i], dB)
        rel = [ref_relevant(qL[i], dL[j]) for j in range(n)]
        n_rel = sum(rel)
        hits, total = 0, 0.0
        for pos, j in enumerate(ranking[:k], start=1):
            if rel[j]:
                hits += 1
                total += hits / pos
        norm = hits if normalize == "hits_in_topk" else min(k, n_rel)
        aps.append(total / norm if norm else 0.0)
        counted.append({"all_queries": True, "queries_with_relevant": n_rel > 0, "queries_with_hits": hits > 0}[denominator])
    sel = [a for a, c in zip(aps, counted) if c]
    return (sum(sel) / len(sel) if sel else 0.0), aps


def ref_precision_top_r(qB, dB, qL, dL, r_values, denominator="all_queries"):
    n = len(dB)
    per_query = []
    for i in range(len(qB)):
        ranking, _ = ref_ranking(qB[i], dB)
        rel = [ref_relevant(qL[i], dL[j]) for j in range(n)]
        if denominator == "queries_with_relevant" and not any(rel):
            continue
        per_query.append([sum(rel[j] for j in ranking[: min(r, n)]) / min(r, n) for r in r_values])
    return np.mean(per_query, axis=0) if per_query else np.zeros(len(r_values))


def ref_pr(qB, dB, qL, dL, denominator="queries_with_relevant", empty="zero"):
    bits = len(qB[0])
    n = len(dB)
    P = [[] for _ in range(bits + 1)]
    R = [[] for _ in range(bits + 1)]
    empties = [0] * (bits + 1)
    for i in range(len(qB)):
        _, dists = ref_ranking(qB[i], dB)
        rel = [ref_relevant(qL[i], dL[j]) for j in range(n)]
        if denominator == "queries_with_relevant" and not any(rel):
            continue
        for r in range(bits + 1):
            ret = [j for j in range(n) if dists[j] <= r]
            good = sum(rel[j] for j in ret)
            if ret:
                P[r].append(good / len(ret))
            else:
                empties[r] += 1
                if empty == "zero":
                    P[r].append(0.0)
            R[r].append(good / sum(rel) if any(rel) else 0.0)
    prec = [float(np.mean(p)) if p else 0.0 for p in P]
    rec = [float(np.mean(x)) if x else 0.0 for x in R]
    return prec, rec, empties


def ref_recall(qB, dB, qG, dG, ks):
    found = []
    for i in range(len(qB)):
        ranking, _ = ref_ranking(qB[i], dB)
        found.append([any(dG[j] == qG[i] for j in ranking[:k]) for k in ks])
    return np.mean(found, axis=0)


def djsrh_literal_map(qB, rB, qL, rL, topk):
    """The DJSRH calculate_top_map loop, written out (float32 codes as from torch, np.argsort default)."""
    qB = qB.astype(np.float32)
    rB = rB.astype(np.float32)
    num_query = qL.shape[0]
    total = 0.0
    for it in range(num_query):
        gnd = (np.dot(qL[it, :], rL.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (rB.shape[1] - np.dot(qB[it, :], rB.transpose()))
        ind = np.argsort(hamm)
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        total += np.mean(count / tindex)
    return total / num_query


# --------------------------------------------------------------------------- data
def make_data(seed, nq=30, nd=220, bits=8, n_labels=6, density=0.18):
    rng = np.random.default_rng(seed)
    qB = np.where(rng.random((nq, bits)) < 0.5, 1, -1).astype(np.int8)
    dB = np.where(rng.random((nd, bits)) < 0.5, 1, -1).astype(np.int8)
    qL = (rng.random((nq, n_labels)) < density).astype(np.uint8)
    dL = (rng.random((nd, n_labels)) < density).astype(np.uint8)
    qL[0] = 0  # a query without any label: no relevant item at all
    qL[1] = 0
    qL[1, -1] = 1
    dL[:, -1] = 0  # label nobody in the database has: query 1 has no relevant item either
    return qB, dB, qL, dL


@pytest.fixture(scope="module")
def data8():
    return make_data(0, bits=8)


@pytest.fixture(scope="module")
def data16():
    return make_data(1, bits=16, nd=260)


# --------------------------------------------------------------------------- mAP
@pytest.mark.parametrize("topk", [1, 5, 50, 180, 10_000, None])
def test_map_every_option_matches_reference(data8, topk):
    qB, dB, qL, dL = data8
    for denominator, normalize in itertools.product(M.DENOMINATORS, M.NORMALIZATIONS):
        expected, per_query = ref_map(qB, dB, qL, dL, topk, denominator, normalize)
        res = M.mean_average_precision(qB, dB, qL, dL, topk, denominator=denominator, normalize=normalize, return_result=True)
        assert res["value"] == pytest.approx(expected, abs=1e-12), (denominator, normalize)
        np.testing.assert_allclose(res["per_query"], per_query, atol=1e-12)
        proto = res["protocol"]
        assert (proto["topk"], proto["denominator"], proto["normalize"], proto["tie_break"]) == (topk, denominator, normalize, "stable_index")
        assert proto["relevance"] == "share_at_least_one_label" and proto["bits"] == 8


def test_map_data_has_the_hard_cases(data8):
    """The fixture really contains zero-relevant queries, zero-hit queries and heavy ties."""
    qB, dB, qL, dL = data8
    res = M.map_at_k(qB, dB, qL, dL, topk=5)
    assert res["n_queries_with_relevant"] < res["n_queries"]
    assert res["n_queries_with_hits"] < res["n_queries_with_relevant"]
    _, dists = ref_ranking(qB[2], dB)
    assert max(np.bincount(dists)) > 40  # many items share a distance


def test_map_16_bits_and_chunking(data16):
    qB, dB, qL, dL = data16
    expected, _ = ref_map(qB, dB, qL, dL, 20)
    for chunk in (1, 7, None):
        assert M.mean_average_precision(qB, dB, qL, dL, 20, chunk_size=chunk) == pytest.approx(expected, abs=1e-12)
    expected_all, _ = ref_map(qB, dB, qL, dL, None, "queries_with_relevant")
    assert M.mean_average_precision(qB, dB, qL, dL, None, denominator="queries_with_relevant", chunk_size=4) == pytest.approx(expected_all, abs=1e-12)


def test_map_accepts_pm1_01_bool_and_float_codes(data8):
    qB, dB, qL, dL = data8
    ref = M.mean_average_precision(qB, dB, qL, dL)
    assert M.mean_average_precision((qB > 0).astype(np.uint8), (dB > 0).astype(np.uint8), qL, dL) == ref
    assert M.mean_average_precision(qB > 0, dB.astype(np.float32), qL.astype(bool), dL.astype(np.float64)) == ref
    assert M.mean_average_precision(qB, (dB > 0).astype(np.int64), qL, dL) == ref


def test_map_class_id_labels_equal_one_hot():
    rng = np.random.default_rng(3)
    qB = np.where(rng.random((25, 8)) < 0.5, 1, -1)
    dB = np.where(rng.random((150, 8)) < 0.5, 1, -1)
    qc, dc = rng.integers(0, 5, 25), rng.integers(0, 5, 150)
    onehot = np.eye(6, dtype=np.uint8)
    expected, _ = ref_map(qB, dB, onehot[qc], onehot[dc], 10)
    assert M.mean_average_precision(qB, dB, qc, dc, 10) == pytest.approx(expected, abs=1e-12)
    names = np.array(list("abcde"))
    assert M.mean_average_precision(qB, dB, names[qc], names[dc], 10) == pytest.approx(expected, abs=1e-12)


def test_map_many_labels_and_long_codes():
    """More than 64 labels and more than 64 bits: multi-word label and code paths."""
    qB, dB, qL, dL = make_data(4, nq=15, nd=120, bits=72, n_labels=70, density=0.03)
    for topk in (10, None):
        for normalize in M.NORMALIZATIONS:
            expected, _ = ref_map(qB, dB, qL, dL, topk, normalize=normalize)
            assert M.mean_average_precision(qB, dB, qL, dL, topk, normalize=normalize) == pytest.approx(expected, abs=1e-12)


def test_known_small_example_by_hand():
    """Three db items, one query: distances 0, 1, 1; relevant = items 0 and 2."""
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, 1, 1, 1]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [0, 1], [1, 1]])
    # ranking 0, 1, 2 -> hits at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert M.mean_average_precision(q, db, ql, dl, topk=3) == pytest.approx((1 + 2 / 3) / 2)
    # top 2: one hit at rank 1 -> 1.0 (hits_in_topk) or 1/min(2, 2) = 0.5 (min_k_relevant)
    assert M.mean_average_precision(q, db, ql, dl, topk=2) == pytest.approx(1.0)
    assert M.mean_average_precision(q, db, ql, dl, topk=2, normalize="min_k_relevant") == pytest.approx(0.5)


# --------------------------------------------------------------------------- legacy tie-break
def test_legacy_unstable_reproduces_literal_djsrh_loop():
    """Large enough that numpy's default (unstable) argsort reorders ties; compared literally."""
    qB, dB, qL, dL = make_data(5, nq=12, nd=3000, bits=8, n_labels=8, density=0.15)
    for topk in (50, 400):
        expected = djsrh_literal_map(qB, dB, qL.astype(np.float32), dL.astype(np.float32), topk)
        got = M.mean_average_precision(qB, dB, qL, dL, topk, tie_break="legacy_unstable", chunk_size=5)
        assert got == pytest.approx(expected, abs=1e-12)
    idx, dist = M.top_k(qB, dB, 100, tie_break="legacy_unstable")
    qf, df = qB.astype(np.float32), dB.astype(np.float32)
    for i in range(len(qB)):
        hamm = 0.5 * (8 - np.dot(qf[i], df.T))
        np.testing.assert_array_equal(idx[i], np.argsort(hamm)[:100])
        np.testing.assert_array_equal(dist[i], hamm[idx[i]])


def test_stable_index_is_a_true_stable_order():
    qB, dB, _, _ = make_data(6, nq=10, nd=3000, bits=8)
    idx, dist = M.top_k(qB, dB, 300)
    for i in range(len(qB)):
        ranking, dists = ref_ranking(qB[i], dB)
        assert idx[i].tolist() == ranking[:300]
        assert dist[i].tolist() == [dists[j] for j in ranking[:300]]


def test_selection_kernel_sampled_exact_and_sub_batched():
    """The stable top-k kernel alone: sampled cut-off, exact-histogram path, tiny batches."""
    rng = np.random.default_rng(7)
    dist = rng.integers(0, 5, (9, 400)).astype(np.uint8)
    dist[3] = 2  # a whole row at one distance
    dist[4, :10] = 0  # the cut falls exactly at the end of a distance bucket for k=10
    hist = np.stack([np.bincount(r, minlength=17) for r in dist])
    for k in (1, 10, 57, 399, 400):
        expected = np.argsort(dist, axis=1, kind="stable")[:, :k]
        for budget in (1, 48 * 400 * 3, 1e9):
            np.testing.assert_array_equal(M._stable_topk(dist, k, 17, budget), expected)
            np.testing.assert_array_equal(M._stable_topk(dist, k, 17, budget, hist), expected)


def test_selection_kernel_when_the_sample_misleads(monkeypatch):
    """Sampled columns close, the rest far: for large k the estimate is too low and rows fall back."""
    nd = 50_000
    step = max(1, nd // 4096)
    dist = np.full((3, nd), 60, dtype=np.uint8)
    dist[:, ::step] = 1  # the sample predicts ~nd items at distance <= 1; only ~4,200 exist
    dist[1, ::step] = 30
    dist[1, 7] = 0  # row 1 has one very close item off the sample
    calls = []
    real = M._topk_below
    monkeypatch.setattr(M, "_topk_below", lambda *a: calls.append(len(a[0])) or real(*a))
    for k, fallback in ((10, False), (5000, True)):
        calls.clear()
        expected = np.argsort(dist, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(M._stable_topk(dist, k, 65, 1e8), expected)
        assert (len(calls) == 2) == fallback  # second call = the exact-histogram fallback
    assert M._stable_topk(dist, 10, 65, 1e8)[1, 0] == 7


@pytest.mark.parametrize("bits", [16, 64])
def test_sampled_selection_at_a_realistic_size(bits):
    """20k-item database (the sampled cut-off is active): top-k and mAP against a full stable sort."""
    qB, dB, qL, dL = make_data(20 + bits, nq=40, nd=20_000, bits=bits, n_labels=10, density=0.15)
    dist = np.stack([(q[None, :] != dB).sum(1) for q in qB])
    full = np.argsort(dist, axis=1, kind="stable")
    for k in (1, 50, 1000, 5000):
        idx, d = M.top_k(qB, dB, k, chunk_size=16)
        np.testing.assert_array_equal(idx, full[:, :k])
        np.testing.assert_array_equal(d, np.take_along_axis(dist, full[:, :k], 1))
    rel = (qL.astype(int) @ dL.T.astype(int)) > 0
    hits = np.take_along_axis(rel, full[:, :50], 1)
    ranks = np.arange(1, 51)
    ap = [(np.cumsum(h)[h] / ranks[h]).mean() if h.any() else 0.0 for h in hits]
    assert M.mean_average_precision(qB, dB, qL, dL, 50) == pytest.approx(np.mean(ap), abs=1e-12)
    # full ranking (row-by-row AP path) and long precision@top-R (gathered relevance flags)
    hits_all = np.take_along_axis(rel, full, 1)
    ranks_all = np.arange(1, dB.shape[0] + 1)
    ap_all = [(np.cumsum(h)[h] / ranks_all[h]).mean() if h.any() else 0.0 for h in hits_all]
    assert M.mean_average_precision(qB, dB, qL, dL, None, chunk_size=16) == pytest.approx(np.mean(ap_all), abs=1e-12)
    p = M.precision_at_top_r(qB, dB, qL, dL, (10, 5000, 20_000))["precision"]
    np.testing.assert_allclose(p, [hits_all[:, :r].mean() for r in (10, 5000, 20_000)], atol=1e-12)


# --------------------------------------------------------------------------- precision@top-R
def test_precision_at_top_r_matches_reference(data8):
    qB, dB, qL, dL = data8
    r_values = (1, 3, 10, 57, 219, 220, 500)
    for tie in ("stable_index",):
        for denominator in ("all_queries", "queries_with_relevant"):
            res = M.precision_at_top_r(qB, dB, qL, dL, r_values, denominator=denominator, tie_break=tie)
            np.testing.assert_allclose(res["precision"], ref_precision_top_r(qB, dB, qL, dL, r_values, denominator), atol=1e-12)
            assert res["effective_r"][-1] == len(dB) and res["protocol"]["denominator"] == denominator


# --------------------------------------------------------------------------- radius metrics
@pytest.mark.parametrize("bits", [8, 16])
def test_pr_curve_and_precision_within_radius(bits):
    qB, dB, qL, dL = make_data(8 + bits, nq=25, nd=150, bits=bits)
    for denominator, empty in itertools.product(("all_queries", "queries_with_relevant"), M.EMPTY_PRECISION):
        prec, rec, empties = ref_pr(qB, dB, qL, dL, denominator, empty)
        res = M.pr_curve(qB, dB, qL, dL, denominator=denominator, empty_precision=empty, chunk_size=6)
        assert res["radius"] == list(range(bits + 1))
        np.testing.assert_allclose(res["precision"], prec, atol=1e-12)
        np.testing.assert_allclose(res["recall"], rec, atol=1e-12)
        assert res["queries_with_empty_retrieval"] == empties
        assert rec[-1] == pytest.approx(1.0 if denominator == "queries_with_relevant" else rec[-1])
        for radius in (0, 2, bits):
            p = M.precision_within_radius(qB, dB, qL, dL, radius, denominator=denominator, empty_precision=empty)
            assert p["value"] == pytest.approx(prec[radius], abs=1e-12)
            assert p["queries_with_empty_retrieval"] == empties[radius]
    assert sum(empties) > 0  # the data exercise the empty-retrieval rule


# --------------------------------------------------------------------------- Recall@K
def test_recall_at_k_matches_reference():
    rng = np.random.default_rng(9)
    n_img = 40
    img = np.where(rng.random((n_img, 8)) < 0.5, 1, -1)
    caps = np.repeat(img, 5, axis=0) * np.where(rng.random((n_img * 5, 8)) < 0.15, -1, 1)  # noisy captions
    img_g = np.array([f"im{i}.jpg" for i in range(n_img)])
    cap_g = np.repeat(img_g, 5)
    ks = (1, 5, 10, 500)
    for qB, dB, qG, dG in ((img, caps, img_g, cap_g), (caps, img, cap_g, img_g)):
        res = M.recall_at_k(qB, dB, qG, dG, ks)
        np.testing.assert_allclose(res["recall"], ref_recall(qB, dB, qG, dG, ks), atol=1e-12)
        assert res["recall"][-1] == 1.0 and res["protocol"]["relevance"] == "same_group"


# --------------------------------------------------------------------------- one pass, report
def test_evaluate_one_pass_equals_single_metric_calls(data16):
    qB, dB, qL, dL = data16
    res = M.evaluate(qB, dB, qL, dL, metrics=("map", "map_all", "precision_radius", "pr_curve", "precision_top_r"), topk=30, r_values=(5, 50))
    assert res["map"]["value"] == M.mean_average_precision(qB, dB, qL, dL, 30)
    assert res["map_all"]["value"] == M.mean_average_precision(qB, dB, qL, dL, None)
    assert res["precision_radius"]["value"] == M.precision_within_radius(qB, dB, qL, dL, 2)["value"]
    assert res["precision_top_r"]["precision"] == M.precision_at_top_r(qB, dB, qL, dL, (5, 50))["precision"]


def test_cross_modal_report_keys_and_values():
    qI, dI, qL, dL = make_data(10, nq=20, nd=150, bits=16)
    rng = np.random.default_rng(10)
    qT = qI * np.where(rng.random(qI.shape) < 0.2, -1, 1)
    dT = dI * np.where(rng.random(dI.shape) < 0.2, -1, 1)
    rep = M.cross_modal_report(qI, qT, dI, dT, qL, dL, tasks=("i2t", "t2i", "i2i", "t2t"), full_map=True, curves=True, r_values=(1, 10, 100))
    assert set(rep) == {"i2t", "t2i", "i2i", "t2t", "protocol"}
    pairs = {"i2t": (qI, dT), "t2i": (qT, dI), "i2i": (qI, dI), "t2t": (qT, dT)}
    for task, (q, d) in pairs.items():
        assert rep[task]["map@50"] == pytest.approx(ref_map(q, d, qL, dL, 50)[0], abs=1e-12)
        assert rep[task]["map@all"] == pytest.approx(ref_map(q, d, qL, dL, None)[0], abs=1e-12)
        assert rep[task]["precision@radius2"] == pytest.approx(ref_pr(q, d, qL, dL)[0][2], abs=1e-12)
        assert rep[task]["curves"]["precision_at_top_r"]["r"] == [1, 10, 100]
        assert len(rep[task]["curves"]["pr"]["precision"]) == 17
    proto = rep["protocol"]
    for key, value in dict(topk=50, denominator="all_queries", normalize="hits_in_topk", tie_break="stable_index", bits=16, radius=2).items():
        assert proto[key] == value
    assert proto["relevance"] == "share_at_least_one_label" and "cmhash_version" in proto

    rep_all = M.cross_modal_report(qI, qT, dI, dT, qL, dL, topk=None, tie_break="legacy_unstable", denominator="queries_with_relevant")
    assert "map@all" in rep_all["i2t"] and rep_all["protocol"]["topk"] is None
    assert rep_all["protocol"]["tie_break"] == "legacy_unstable"


def test_cross_modal_report_pair_identity_counts_each_image_once():
    rng = np.random.default_rng(11)
    n_img = 30
    img = np.where(rng.random((n_img, 16)) < 0.5, 1, -1)
    caps = np.repeat(img, 5, axis=0) * np.where(rng.random((n_img * 5, 16)) < 0.2, -1, 1)
    groups = np.repeat(np.arange(n_img), 5)
    img_rows = np.repeat(img, 5, axis=0)  # the codes file stores one image row per pair
    rep = M.cross_modal_report(img_rows, caps, img_rows, caps, query_groups=groups, db_groups=groups, recall_ks=(1, 5, 10))
    expected_i2t = ref_recall(img, caps, np.arange(n_img), groups, (1, 5, 10))
    expected_t2i = ref_recall(caps, img, groups, np.arange(n_img), (1, 5, 10))
    assert [rep["i2t"][f"recall@{k}"] for k in (1, 5, 10)] == pytest.approx(list(expected_i2t))
    assert [rep["t2i"][f"recall@{k}"] for k in (1, 5, 10)] == pytest.approx(list(expected_t2i))
    assert rep["i2t"]["n_queries"] == n_img and rep["t2i"]["n_queries"] == 5 * n_img
    assert rep["protocol"]["recall_protocol"]["db_images"] == n_img
    assert rep["protocol"]["recall_protocol"]["db_groups_with_differing_image_codes"] == 0
    assert rep["protocol"]["relevance"] == "same_group" and "map@50" not in rep["i2t"]
    changed = img_rows.copy()
    changed[7] *= -1  # a second row of group 1 with other codes: the first row is used, and it is counted
    rep2 = M.cross_modal_report(changed, caps, changed, caps, query_groups=groups, db_groups=groups, recall_ks=(1,))
    assert rep2["protocol"]["recall_protocol"]["query_groups_with_differing_image_codes"] == 1
    assert rep2["i2t"]["recall@1"] == rep["i2t"]["recall@1"]


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument(data8):
    qB, dB, qL, dL = data8
    with pytest.raises(DataError, match="query_codes have 8 bits but db_codes have 7"):
        M.mean_average_precision(qB, dB[:, :7], qL, dL)
    with pytest.raises(DataError, match="query_labels has 29 rows"):
        M.mean_average_precision(qB, dB, qL[:-1], dL)
    with pytest.raises(DataError, match="query_labels has 6 label columns but db_labels has 5"):
        M.mean_average_precision(qB, dB, qL, dL[:, :5])
    bad = dB.copy()
    bad[4, 3] = 2
    with pytest.raises(DataError, match="db_codes: row 4, bit 3"):
        M.mean_average_precision(qB, bad, qL, dL)
    badl = qL.copy()
    badl[2, 1] = 3
    with pytest.raises(DataError, match="query_labels: row 2, column 1"):
        M.mean_average_precision(qB, dB, badl, dL)
    with pytest.raises(DataError, match="denominator must be one of"):
        M.mean_average_precision(qB, dB, qL, dL, denominator="some")
    with pytest.raises(DataError, match="tie_break must be one of"):
        M.mean_average_precision(qB, dB, qL, dL, tie_break="random")
    with pytest.raises(DataError, match="topk must be a positive integer"):
        M.mean_average_precision(qB, dB, qL, dL, topk=0)
    with pytest.raises(DataError, match="query_codes is empty"):
        M.mean_average_precision(qB[:0], dB, qL[:0], dL)
    with pytest.raises(DataError, match="Recall@K needs query_groups"):
        M.evaluate(qB, dB, metrics=("recall",))
    with pytest.raises(DataError, match="task i2t needs db_text"):
        M.cross_modal_report(qB, qB, dB, None, qL, dL)
    with pytest.raises(DataError, match="nothing defines relevance"):
        M.cross_modal_report(qB, qB, dB, dB)


def test_aliases_are_recorded_under_the_canonical_name(data8):
    qB, dB, qL, dL = data8
    res = M.map_at_k(qB, dB, qL, dL, denominator="valid_queries", tie_break="numpy_default")
    assert res["protocol"]["denominator"] == "queries_with_relevant"
    assert res["protocol"]["tie_break"] == "legacy_unstable"


def test_recall_at_k_dense_matches_a_plain_cosine_ranking():
    from cmhash.metrics import recall_at_k_dense

    rng = np.random.default_rng(3)
    q, d = rng.standard_normal((40, 6)), rng.standard_normal((90, 6))
    qg, dg = rng.integers(0, 30, 40), rng.integers(0, 30, 90)
    got = recall_at_k_dense(q, d, qg, dg, ks=(1, 5, 10), chunk_size=7)
    for k in (1, 5, 10):
        found = 0
        for i in range(40):
            sims = [float(q[i] @ d[j] / np.linalg.norm(q[i]) / np.linalg.norm(d[j])) for j in range(90)]
            top = sorted(range(90), key=lambda j: (-sims[j], j))[:k]
            found += any(dg[j] == qg[i] for j in top)
        assert got[f"recall@{k}"] == pytest.approx(found / 40)
    assert got["n_queries"] == 40 and got["protocol"]["ranking"] == "cosine"
    with pytest.raises(DataError):
        recall_at_k_dense(q, d[:, :5], qg, dg)


def test_dense_map_ranks_by_cosine_and_matches_hamming_on_codes():
    """On ±1 codes cosine order = Hamming order, so map_at_k_dense must give map_at_k's value; on
    real vectors it must follow cosine, not Euclidean length."""
    from cmhash.metrics import map_at_k, map_at_k_dense

    rng = np.random.default_rng(3)
    q = np.where(rng.random((40, 16)) < 0.5, -1, 1).astype(np.int8)
    d = np.where(rng.random((300, 16)) < 0.5, -1, 1).astype(np.int8)
    ql = rng.random((40, 5)) < 0.3
    dl = rng.random((300, 5)) < 0.3
    want = map_at_k(q, d, ql, dl, topk=50)
    got = map_at_k_dense(q.astype(np.float32), d.astype(np.float32), ql, dl, topk=50)
    assert got["value"] == pytest.approx(want["value"], abs=1e-12)
    np.testing.assert_allclose(got["per_query"], want["per_query"], atol=1e-12)

    # One query, three items: the relevant one is nearest by angle but farthest by length.
    res = map_at_k_dense([[1.0, 0.0]], [[0.0, 5.0], [10.0, 0.5], [3.0, 3.0]], [0], [1, 0, 2], topk=1)
    assert res["value"] == 1.0 and res["protocol"]["ranking"] == "cosine"
    res = map_at_k_dense([[1.0, 0.0]], [[0.0, 5.0], [10.0, 0.5], [3.0, 3.0]], [1], [1, 0, 2], topk=1)
    assert res["value"] == 0.0
    with pytest.raises(DataError, match="same width"):
        map_at_k_dense([[1.0, 0.0]], [[1.0]], [0], [0])
    with pytest.raises(DataError, match="NaN"):
        map_at_k_dense([[np.nan, 0.0]], [[1.0, 0.0]], [0], [0])
