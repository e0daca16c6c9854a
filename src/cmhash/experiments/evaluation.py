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
    """``cmhash.metrics.cross_modal_report``: mAP@50 (DJSRH definition) both ways, precision within
    Hamming radius 2, and with ``curves`` the PR curve and precision@top-R at :data:`CURVE_RANKS`.

    Adds a compact ``curves`` entry (``ranks``, ``i2t_precision``, ``t2i_precision``) that
    ``cmhash reproduce`` plots.
    """
    from cmhash import metrics

    ranks = [r for r in CURVE_RANKS if r <= len(db_labels)]
    out = metrics.cross_modal_report(
        q_image, q_text, db_image, db_text, q_labels, db_labels, topk=MAP_TOPK, curves=curves, r_values=ranks
    )
    if curves:
        top = {t: out[t]["curves"]["precision_at_top_r"] for t in ("i2t", "t2i")}
        out["curves"] = {
            "ranks": list(top["i2t"]["r"]),
            "i2t_precision": list(top["i2t"]["precision"]),
            "t2i_precision": list(top["t2i"]["precision"]),
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



__all__ = ["CURVE_RANKS", "MAP_TOPK", "evaluate_codes", "make_validator"]
