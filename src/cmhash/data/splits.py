"""Split protocols, seeded and saved, so any run can be repeated exactly.

A :class:`Split` holds ``query``, ``database`` and ``train`` index arrays (into a
:class:`~cmhash.data.dataset.PairedDataset`), the protocol name, its parameters and the seed. It is
saved as JSON and loaded back; loading checks that it belongs to the same dataset (size and a
fingerprint of the pair ids).

Protocols (``make_split(dataset, protocol, seed=..., **params)``):

* ``djsrh``: the per-label greedy protocol of the DJSRH/JDSH code (methods-spec section 0.2).
  For each label column in file order, the positives not used yet are shuffled; the first label
  gives ``first_query`` queries and ``first_train`` training pairs, every other label
  ``per_label_query`` / ``per_label_train``. Queries are then topped up at random (from pairs
  not yet queries) to ``num_query`` when the greedy pass gives fewer (small or skewed sets), the
  database is every pair that is not a query (so it contains the training pairs, as in DJSRH),
  and the training set is the greedy training pairs that are not queries, topped up at random
  from the database to ``num_train``. Defaults are MIRFlickr's (160/400 then 80/200);
  ``djsrh-nuswide`` uses 200/500 for every label.
* ``official``: the split shipped with the data (Wiki: train = database, 693 queries;
  Flickr8k: official train, test = query = database).
* ``random``: ``num_query`` random queries, database = the rest, ``num_train`` training pairs
  drawn from the database. With ``groups`` (Flickr8k captions) whole groups are assigned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cmhash.errors import DataError
from cmhash.io import read_json, write_json

FORMAT = "cmhash-split"
FORMAT_VERSION = 1


def dataset_fingerprint(ids) -> str:
    """A short hash of the ordered pair ids: a split only applies to the dataset it was made on."""
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass
class Split:
    protocol: str
    params: dict[str, Any]
    seed: int | None
    query: np.ndarray
    database: np.ndarray
    train: np.ndarray
    dataset: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("query", "database", "train"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))

    def sizes(self) -> dict[str, int]:
        return {"query": len(self.query), "database": len(self.database), "train": len(self.train)}

    def describe(self) -> dict[str, Any]:
        """The protocol record stored in every result file."""
        return {"protocol": self.protocol, "params": dict(self.params), "seed": self.seed, "sizes": self.sizes(), "dataset": dict(self.dataset)}

    def check(self, n: int) -> None:
        for name in ("query", "database", "train"):
            idx = getattr(self, name)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataError(f"split '{self.protocol}': {name} indices fall outside 0..{n - 1}")
            if len(np.unique(idx)) != len(idx):
                raise DataError(f"split '{self.protocol}': {name} contains duplicate indices")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "protocol": self.protocol,
            "params": self.params,
            "seed": self.seed,
            "dataset": self.dataset,
            "sizes": self.sizes(),
            "query": self.query.tolist(),
            "database": self.database.tolist(),
            "train": self.train.tolist(),
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path, dataset=None) -> "Split":
        """Load a saved split; with ``dataset`` check it was made on the same pairs."""
        d = read_json(path)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DataError(f"{path}: not a cmhash split file (no \"format\": \"{FORMAT}\")")
        for key in ("protocol", "query", "database", "train"):
            if key not in d:
                raise DataError(f"{path}: missing field '{key}'")
        split = cls(d["protocol"], d.get("params", {}), d.get("seed"), d["query"], d["database"], d["train"], d.get("dataset", {}))
        if dataset is not None:
            want = split.dataset.get("fingerprint")
            have = dataset_fingerprint(dataset.ids)
            if want and want != have:
                raise DataError(
                    f"{path}: this split was made on a different dataset "
                    f"({split.dataset.get('name')}, {split.dataset.get('pairs')} pairs, fingerprint {want}); "
                    f"the loaded data has {len(dataset)} pairs, fingerprint {have}. Recompute it with `cmhash data split`."
                )
            split.check(len(dataset))
        return split


# ---------------------------------------------------------------------------- protocols
def djsrh_split(
    labels: np.ndarray,
    seed: int | None = 0,
    first_query: int = 160,
    first_train: int = 400,
    per_label_query: int = 80,
    per_label_train: int = 200,
    num_query: int = 2000,
    num_train: int = 5000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-label greedy protocol; returns (query, database, train). O(n * labels), vectorised."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError("djsrh split needs a 2-D multi-hot label matrix")
    n, c = labels.shape
    if num_query >= n:
        raise DataError(f"djsrh split: {num_query} queries requested but the dataset has only {n} pairs")
    rng = np.random.default_rng(seed)
    used = np.zeros(n, dtype=bool)
    query_parts, train_parts = [], []
    for col in range(c):
        pos = np.flatnonzero((labels[:, col] > 0) & ~used)
        pos = rng.permutation(pos)
        nq, nt = (first_query, first_train) if col == 0 else (per_label_query, per_label_train)
        q, t = pos[:nq], pos[nq : nq + nt]
        used[q] = True
        used[t] = True
        query_parts.append(q)
        train_parts.append(t)
    query = np.concatenate(query_parts) if query_parts else np.zeros(0, np.int64)
    train = np.concatenate(train_parts) if train_parts else np.zeros(0, np.int64)
    is_query = np.zeros(n, dtype=bool)
    is_query[query] = True
    if len(query) < num_query:
        extra = rng.permutation(np.flatnonzero(~is_query))[: num_query - len(query)]
        query = np.concatenate([query, extra])
        is_query[extra] = True
    elif len(query) > num_query:
        query = query[:num_query]
        is_query[:] = False
        is_query[query] = True
    database = np.flatnonzero(~is_query)
    train = train[~is_query[train]]
    if len(train) < num_train:
        in_train = np.zeros(n, dtype=bool)
        in_train[train] = True
        pool = rng.permutation(database[~in_train[database]])
        train = np.concatenate([train, pool[: num_train - len(train)]])
    elif len(train) > num_train:
        train = train[:num_train]
    return query.astype(np.int64), database.astype(np.int64), train.astype(np.int64)


def random_split(n: int, seed: int | None = 0, num_query: int = 2000, num_train: int | None = 5000, groups=None):
    """Random queries, database = the rest, training pairs drawn from the database.

    With ``groups`` whole groups go to one side; ``num_query``/``num_train`` then count groups.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        if num_query >= n:
            raise DataError(f"random split: {num_query} queries requested but the dataset has only {n} pairs")
        perm = rng.permutation(n)
        query, database = np.sort(perm[:num_query]), np.sort(perm[num_query:])
        train = database if num_train is None else np.sort(rng.permutation(database)[: min(num_train, len(database))])
        return query, database, train
    uniq, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if num_query >= len(uniq):
        raise DataError(f"random split: {num_query} query groups requested but the dataset has only {len(uniq)} groups (images); --num-query counts groups here")
    gq, gd, gt = random_split(len(uniq), seed, num_query, num_train)
    members = lambda g: np.flatnonzero(np.isin(inverse, g))  # noqa: E731
    return members(gq), members(gd), members(gt)


def _official(dataset, seed=None, **params):
    s = dataset.official_splits
    if not s:
        raise DataError(f"{dataset.name}: this dataset ships no official split; use --protocol djsrh or random")
    if "query" not in s:
        raise DataError(f"{dataset.name}: the official split has no query set (has: {', '.join(s)})")
    train = s.get("train", s.get("database"))
    database = s.get("database", train)
    return s["query"], database, train


def _djsrh(dataset, seed=0, **params):
    if dataset.labels is None:
        raise DataError(f"{dataset.name}: the djsrh protocol needs labels; this dataset has none (use official or random)")
    return djsrh_split(dataset.labels, seed=seed, **params)


def _random(dataset, seed=0, **params):
    return random_split(len(dataset), seed=seed, groups=dataset.groups, **params)


NUSWIDE_PARAMS = dict(first_query=200, first_train=500, per_label_query=200, per_label_train=500)

PROTOCOLS: dict[str, tuple[Callable, dict[str, Any]]] = {
    "djsrh": (_djsrh, dict(first_query=160, first_train=400, per_label_query=80, per_label_train=200, num_query=2000, num_train=5000)),
    "djsrh-nuswide": (_djsrh, dict(NUSWIDE_PARAMS, num_query=2000, num_train=5000)),
    "official": (_official, {}),
    "random": (_random, dict(num_query=2000, num_train=5000)),
}


def make_split(dataset, protocol: str = "djsrh", seed: int | None = 0, **params) -> Split:
    """Compute a split of ``dataset`` with a named protocol; unknown parameters are an error."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown split protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
    fn, defaults = PROTOCOLS[protocol]
    unknown = set(params) - set(defaults)
    if unknown:
        raise DataError(f"split protocol '{protocol}' has no parameter(s) {', '.join(sorted(unknown))} (it takes: {', '.join(defaults) or 'none'})")
    for key, value in params.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise DataError(f"split protocol '{protocol}': parameter {key} must be a non-negative integer, got {value!r}")
    if params.get("num_query") == 0:
        raise DataError(f"split protocol '{protocol}': num_query=0 leaves no queries to evaluate; give at least 1")
    full = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    query, database, train = fn(dataset, seed=seed, **full)
    if len(query) == 0:
        raise DataError(f"{dataset.name}: split '{protocol}' gives no queries, so nothing could be evaluated; check its parameters")
    if len(train) == 0:
        raise DataError(f"{dataset.name}: split '{protocol}' gives no training pairs; check its parameters")
    asked = params.get("num_train")
    if asked is not None and len(train) < int(asked):
        raise DataError(
            f"{dataset.name}: num_train={asked} requested but split '{protocol}' can give only {len(train)} training pairs "
            f"(database of {len(database)}); ask for at most {len(train)}"
        )
    split = Split(
        protocol=protocol,
        params=full,
        seed=None if protocol == "official" else seed,
        query=query,
        database=database,
        train=train,
        dataset={"name": dataset.name, "pairs": len(dataset), "fingerprint": dataset_fingerprint(dataset.ids)},
    )
    split.check(len(dataset))
    return split


def validation_split(split: Split, num_val: int = 500, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Carve validation queries from the database (never the query set): returns (val_query, val_db).

    The validation database is the rest of the database, so validation queries are not their own
    neighbours. Used for periodic evaluation during training and for model selection.
    """
    rng = np.random.default_rng(None if seed is None else seed + 7919)
    db = np.asarray(split.database)
    num_val = min(int(num_val), max(len(db) // 5, 1))
    pick = np.zeros(len(db), dtype=bool)
    pick[rng.permutation(len(db))[:num_val]] = True
    return db[pick], db[~pick]
