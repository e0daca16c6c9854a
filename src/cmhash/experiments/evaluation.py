"""Evaluation of a trained method: the test protocol (query vs. database) and validation during training.

mAP@50 with the DJSRH definition both ways, precision within Hamming radius 2, the PR curve and
precision@top-R at :data:`CURVE_RANKS`; all from :mod:`cmhash.metrics`, which records the
protocol options with every figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Ranks at which precision@top-R curves are recorded (clipped to the database size).
CURVE_RANKS = (1, 10, 25, 50, 100, 200, 300, 400, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000)
MAP_TOPK = 50


def evaluate_codes(q_image, q_text, db_image, db_text, q_labels, db_labels, *, curves: bool = True) -> dict[str, Any]:
    """``cmhash.metrics.cross_modal_report``: mAP@50 (DJSRH definition) and mAP over the whole ranking
    (``map@all``, the protocol UCCH and DGCPN publish) both ways, precision within
    Hamming radius 2, and with ``curves`` the PR curve and precision@top-R at :data:`CURVE_RANKS`.

    Adds a compact ``curves`` entry (``ranks``, ``i2t_precision``, ``t2i_precision``) that
    ``cmhash reproduce`` plots.
    """
    from cmhash import metrics

    ranks = [r for r in CURVE_RANKS if r <= len(db_labels)]
    out = metrics.cross_modal_report(
        q_image, q_text, db_image, db_text, q_labels, db_labels, topk=MAP_TOPK, full_map=True, curves=curves, r_values=ranks
    )
    if curves:
        top = {t: out[t]["curves"]["precision_at_top_r"] for t in ("i2t", "t2i")}
        out["curves"] = {
            "ranks": list(top["i2t"]["r"]),
            "i2t_precision": list(top["i2t"]["precision"]),
            "t2i_precision": list(top["t2i"]["precision"]),
        }
    return out


def code_health(codes: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Whether a run's codes carry information: ``({set: stats}, [warnings])``.

    ``codes`` maps a name (``database_image``...) to its +-1 (or 0/1) codes. Per set: ``items``,
    ``distinct`` codes, ``constant_bits`` (bits with one value over every item: they carry
    nothing) and ``bit_balance`` (mean over bits of |mean of the bit|: 0 balanced, 1 constant).
    A set whose codes are all identical (a collapsed model: every ranking is the same, the
    mAP is chance) gets a warning that names it, and so does a ``database_*`` set with constant
    bits; few distinct codes alone is not warned about (ten classes could be served by ten codes).
    """
    from cmhash.codes import to_pm1

    stats: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for name, c in codes.items():
        b = to_pm1(c, what=name)
        if b.shape[0] == 0:
            continue
        mean = b.mean(axis=0, dtype=np.float64)
        const = int(np.sum(np.abs(mean) == 1.0))
        distinct = int(len(np.unique(np.packbits(b > 0, axis=1), axis=0)))
        stats[name] = {"items": int(b.shape[0]), "distinct": distinct, "constant_bits": const, "bit_balance": float(np.abs(mean).mean())}
        label = name.replace("_", " ")
        if distinct == 1 and b.shape[0] > 1:
            warnings.append(
                f"collapsed codes: all {b.shape[0]} {label} codes are identical, so every ranking is the same and the mAP is chance"
            )
        elif const and name.startswith("database"):  # a query set is a sample of the same codes: said once
            warnings.append(f"{const} of {b.shape[1]} bits are constant over the {b.shape[0]} {label} codes (they carry no information)")
    return stats, warnings


def evaluate_recall(q_image, q_text, db_image, db_text, q_groups, db_groups, *, embeddings: dict | None = None) -> dict[str, Any]:
    """Pair-identity data (Flickr8k): Recall@1/5/10 both ways by Hamming ranking.

    The image side keeps one row per group (an image repeated for each of its captions is one
    item): image-to-caption ranks the captions for each distinct image, caption-to-image ranks the
    distinct images for each caption. ``embeddings`` (``{"q_image", "q_text", "db_image",
    "db_text"}`` real-valued outputs before the sign) adds the same Recall@K by cosine ranking
    under ``"real_valued"``: the upper bound the binary codes lose against.
    """
    from cmhash import metrics

    out = metrics.cross_modal_report(q_image, q_text, db_image, db_text, query_groups=q_groups, db_groups=db_groups)
    if embeddings is not None:
        q_groups, db_groups = np.asarray(q_groups), np.asarray(db_groups)
        _, qfirst = np.unique(q_groups, return_index=True)
        _, dfirst = np.unique(db_groups, return_index=True)
        qfirst, dfirst = np.sort(qfirst), np.sort(dfirst)
        out["real_valued"] = {
            "i2t": metrics.recall_at_k_dense(embeddings["q_image"][qfirst], embeddings["db_text"], q_groups[qfirst], db_groups),
            "t2i": metrics.recall_at_k_dense(embeddings["q_text"], embeddings["db_image"][dfirst], q_groups, db_groups[dfirst]),
        }
    return out


def make_validator(ds, val_query: np.ndarray, val_db: np.ndarray):
    """Callable(method) -> validation mAP@50 in both directions (queries carved from the database)."""
    from cmhash import metrics

    vq, vd = ds.subset(val_query), ds.subset(val_db)

    def validate(method) -> dict[str, float]:
        qi, qt = method.encode(vq, "image"), method.encode(vq, "text")
        di, dt = method.encode(vd, "image"), method.encode(vd, "text")
        return {
            f"val_i2t_map@{MAP_TOPK}": metrics.mean_average_precision(qi, dt, vq.labels, vd.labels, topk=MAP_TOPK),
            f"val_t2i_map@{MAP_TOPK}": metrics.mean_average_precision(qt, di, vq.labels, vd.labels, topk=MAP_TOPK),
        }

    return validate



__all__ = ["CURVE_RANKS", "MAP_TOPK", "code_health", "evaluate_codes", "evaluate_recall", "make_validator"]
