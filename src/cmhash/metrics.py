"""The one evaluation module (interim version: correct, simple; to be replaced by the fast one).

Public API other code relies on (keep it):
``mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=50) -> float``.
"""

from __future__ import annotations

import numpy as np

from cmhash.codes import hamming_from_pm1, to_pm1


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk: int | None = 50) -> float:
    """mAP@K, DJSRH definition: AP over relevant items inside the top K, mean over all queries.

    Ties in Hamming distance are broken by database index (stable). Codes are +-1 or 0/1.
    """
    q = to_pm1(query_codes, "query codes")
    d = to_pm1(db_codes, "database codes")
    ql = np.asarray(query_labels, dtype=np.float32)
    dl = np.asarray(db_labels, dtype=np.float32)
    k = d.shape[0] if topk is None else min(int(topk), d.shape[0])
    total = 0.0
    for start in range(0, q.shape[0], 256):
        ham = hamming_from_pm1(q[start : start + 256], d)
        rel = (ql[start : start + 256] @ dl.T) > 0
        order = np.argsort(ham, axis=1, kind="stable")[:, :k]
        hits = np.take_along_axis(rel, order, axis=1)
        cum = np.cumsum(hits, axis=1)
        ranks = np.arange(1, k + 1)
        prec_sum = (cum / ranks * hits).sum(axis=1)
        n_hit = hits.sum(axis=1)
        total += float(np.where(n_hit > 0, prec_sum / np.maximum(n_hit, 1), 0.0).sum())
    return total / q.shape[0]
