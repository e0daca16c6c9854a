"""What the shallow-method tests share: a synthetic train/query/database split, the two cross-modal
mAP@50 figures of a model, and the mAP@50 of random codes (the chance level a model must beat)."""

from __future__ import annotations

import numpy as np

from cmhash.data import load_dataset
from cmhash.data.splits import random_split
from cmhash.metrics import mean_average_precision


def synthetic_split(n: int, image_dim: int, vocab_size: int, seed: int, num_query: int, num_train: int):
    """(train, query, database) of a synthetic set with a strong signal (split seed 0)."""
    ds = load_dataset("synthetic", n=n, image_dim=image_dim, vocab_size=vocab_size, signal=1.0, seed=seed)
    query, db, train = random_split(len(ds), seed=0, num_query=num_query, num_train=num_train)
    return ds.subset(train), ds.subset(query), ds.subset(db)


def cross_maps(model, query, db) -> tuple[float, float]:
    """(image->text, text->image) mAP@50 of ``model``'s codes, relevance by shared label."""
    return (
        mean_average_precision(model.encode(query, "image"), model.encode(db, "text"), query.labels, db.labels, topk=50),
        mean_average_precision(model.encode(query, "text"), model.encode(db, "image"), query.labels, db.labels, topk=50),
    )


def chance_map(query, db, bits: int = 16, seed: int = 0) -> float:
    """mAP@50 of random +-1 codes on the same queries and database."""
    rng = np.random.default_rng(seed)
    rand = lambda k: rng.choice(np.array([-1, 1], np.int8), size=(k, bits))  # noqa: E731
    return mean_average_precision(rand(len(query)), rand(len(db)), query.labels, db.labels, topk=50)
