"""Source `synthetic`: a deterministic, MIRFlickr-shaped benchmark made of SYNTHETIC data.

Nothing here is real data. It exists so that ``cmhash demo``, the tests and first experiments run
in seconds with no download, on data that behaves like the real thing in the ways that matter for
cross-modal hashing:

* **labels**: ``num_labels`` (24) multi-label classes with skewed frequencies (from about 2 % to
  40 % of the pairs, like MIRFlickr's 1 % to 40 %) and co-occurrence: every pair belongs to a
  latent *scene* whose classes go together; each pair has 1 to 5 classes (mean 2.9).
* **image side**: ``image_dim`` (512) non-negative, sparse-ish features like pooled CNN
  activations: ``ReLU(signal * content + nuisance + noise - offset)``, where *content* mixes
  sparse non-negative prototypes of the pair's classes and scene, and *nuisance* is strong
  low-rank variation (lighting, framing) that carries no class information.
* **text side**: raw tag strings (``"tag_012, tag_007"`` with 1,000 tags, comma separated, so the tag
  bag-of-words pipeline of :mod:`cmhash.data.text` applies) and ``text_features``, the binary
  bag-of-words over the ``vocab_size`` (1,000) tags. A tag comes from the pair's classes, from its
  scene or from a Zipf background (camera brands, years, places); a fraction ``noisy_pairs`` of
  the pairs has only background tags (tags unrelated to the picture, as on Flickr).

``signal`` in [0, 1] sets the strength of the cross-modal signal: 0 gives features and tags that
are independent of the classes and of each other (any method scores like random codes), 1 gives
strong class structure in both modalities. The class content of the image features is scaled by
``sqrt(signal)`` and ``0.9 * sqrt(signal)`` of the tags come from the classes and scenes, which
makes mAP rise evenly over the range (table in docs/demo.md; default 0.5). Everything is drawn from ``numpy.random.default_rng``
streams derived from ``seed``; the classes, the latent structure and the noise do not depend on
``signal``, so datasets that differ only in ``signal`` have identical labels (and splits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.text import Vocabulary
from cmhash.errors import DataError

GENERATOR_VERSION = 1

DEFAULTS: dict[str, Any] = dict(
    n=8000,
    num_labels=24,
    image_dim=512,
    vocab_size=1000,
    signal=0.5,
    seed=0,
    noisy_pairs=0.1,
    tags_per_pair=6.0,
)

#: Probability of 1..5 classes per pair (before capping at num_labels).
LABELS_PER_PAIR_P = np.array([0.15, 0.25, 0.27, 0.20, 0.13])
TAGS_PER_CLASS = 12
TAGS_PER_SCENE = 10
NUISANCE_RANK = 16
#: Image features are generated in row blocks of about this many values (32 MiB of float64).
IMAGE_BLOCK_VALUES = 2**22


INT_OPTIONS = ("n", "num_labels", "image_dim", "vocab_size", "seed")
FLOAT_OPTIONS = ("signal", "noisy_pairs", "tags_per_pair")


def _coerce(opts: dict[str, Any]) -> dict[str, Any]:
    """Accept numbers given as strings (e.g. from a command line); reject anything else by name."""
    out = dict(opts)
    for name in INT_OPTIONS + FLOAT_OPTIONS:
        value = out[name]
        try:
            number = float(value)
            if name in INT_OPTIONS:
                if isinstance(value, bool) or number != int(number):
                    raise ValueError
                number = int(number)
        except (TypeError, ValueError):
            kind = "an integer" if name in INT_OPTIONS else "a number"
            raise DataError(f"synthetic: option {name}={value!r} is invalid (must be {kind})") from None
        out[name] = number
    return out


def _check(opts: dict[str, Any]) -> None:
    def bad(name: str, rule: str) -> DataError:
        return DataError(f"synthetic: option {name}={opts[name]!r} is invalid ({rule})")

    for name in ("n", "num_labels", "image_dim", "vocab_size"):
        if opts[name] < 1:
            raise bad(name, "must be a positive integer")
    if opts["n"] < 2:
        raise bad("n", "need at least 2 pairs")
    if opts["vocab_size"] < 2 * TAGS_PER_CLASS:
        raise bad("vocab_size", f"need at least {2 * TAGS_PER_CLASS} tags")
    if not 0.0 <= opts["signal"] <= 1.0:
        raise bad("signal", "must lie in [0, 1]")
    if not 0.0 <= opts["noisy_pairs"] <= 1.0:
        raise bad("noisy_pairs", "must lie in [0, 1]")
    if not opts["tags_per_pair"] >= 1.0:
        raise bad("tags_per_pair", "must be at least 1")
    if opts["seed"] < 0:
        raise bad("seed", "must be a non-negative integer")


def _zipf(k: int, s: float, shift: float = 0.0) -> np.ndarray:
    p = 1.0 / (np.arange(k) + 1.0 + shift) ** s
    return p / p.sum()


def _sparse_prototypes(rng: np.random.Generator, rows: int, dim: int, density: float) -> np.ndarray:
    """Non-negative prototypes: half-normal values on a random ``density`` fraction of the dims."""
    return np.abs(rng.standard_normal((rows, dim))) * (rng.random((rows, dim)) < density)


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def generate(**options: Any) -> PairedDataset:
    """Build the synthetic dataset; options as in :data:`DEFAULTS` (unknown ones are an error)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise DataError(f"synthetic: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    opts = _coerce({**DEFAULTS, **{k: v for k, v in options.items() if v is not None}})
    _check(opts)
    n, L, d, V = opts["n"], opts["num_labels"], opts["image_dim"], opts["vocab_size"]
    signal, seed = opts["signal"], opts["seed"]
    strength = np.sqrt(signal)  # makes the effect on mAP roughly even over [0, 1] (docs/demo.md)
    T = max(3, L // 3)  # latent scenes
    # Independent streams: the structure, the labels, the images and the tags never share draws,
    # so e.g. changing `signal` or `image_dim` leaves the labels untouched.
    rs, rl, r_nuisance, rt, r_noise = (np.random.default_rng([seed, k]) for k in (1, 2, 3, 4, 5))

    # ---- structure: class popularity, scenes, prototypes, tag lists ------------------------
    popularity = _zipf(L, 1.2, shift=0.5)[rs.permutation(L)]
    scene_weight = np.sort(rs.dirichlet(np.full(T, 2.0)))[::-1]
    affinity = rs.gamma(0.2, size=(T, L)) * popularity  # sparse: a scene favours few classes
    affinity /= affinity.sum(axis=1, keepdims=True)
    class_protos = _sparse_prototypes(rs, L, d, 0.25)
    scene_protos = _sparse_prototypes(rs, T, d, 0.30)
    nuisance_basis = rs.standard_normal((NUISANCE_RANK, d)) / np.sqrt(NUISANCE_RANK)
    offset = 0.6 + 0.4 * rs.random(d)  # per-dimension threshold before the ReLU
    class_tags = np.stack([rs.choice(V, TAGS_PER_CLASS, replace=False) for _ in range(L)])
    scene_tags = np.stack([rs.choice(V, TAGS_PER_SCENE, replace=False) for _ in range(T)])
    background_order = rs.permutation(V)

    # ---- labels: scene, then 1..5 classes drawn without replacement (Gumbel top-k) ---------
    scene = _draw(np.cumsum(scene_weight), rl.random(n))
    p_m = LABELS_PER_PAIR_P[: min(5, L)] / LABELS_PER_PAIR_P[: min(5, L)].sum()
    m = 1 + _draw(np.cumsum(p_m), rl.random(n))
    mix = 0.8 * affinity[scene] + 0.2 * popularity
    keys = np.log(mix) + rl.gumbel(size=(n, L))
    order = np.argsort(-keys, axis=1, kind="stable")[:, :5]
    labels = np.zeros((n, L), dtype=np.uint8)
    rows = np.repeat(np.arange(n), m)
    cols = np.concatenate([order[i, : m[i]] for i in range(n)])
    labels[rows, cols] = 1
    class_weight = 0.6 + 0.8 * rl.random((n, L))

    # ---- image features --------------------------------------------------------------------
    # in row blocks (sequential draws from each stream, so the values do not depend on the block size)
    image = np.empty((n, d), dtype=np.float32)
    rows_per_block = max(1, IMAGE_BLOCK_VALUES // d)
    for s in range(0, n, rows_per_block):
        b = slice(s, min(n, s + rows_per_block))
        content = ((labels[b] * class_weight[b]) @ class_protos) / np.sqrt(m[b])[:, None] + 0.7 * scene_protos[scene[b]]
        nuisance = r_nuisance.standard_normal((b.stop - b.start, NUISANCE_RANK)) @ nuisance_basis * 1.2
        noise = r_noise.standard_normal((b.stop - b.start, d))
        image[b] = np.maximum(strength * 1.5 * content + nuisance + noise - offset, 0.0)

    # ---- tags --------------------------------------------------------------------------------
    k = np.minimum(1 + rt.poisson(opts["tags_per_pair"] - 1.0, size=n), 30)
    noisy = rt.random(n) < opts["noisy_pairs"]
    slot_item = np.repeat(np.arange(n), k)
    S = len(slot_item)
    u_source, u_class, u_rank, u_scene_rank, u_bg = (rt.random(S) for _ in range(5))
    item_labels = order[slot_item, (u_class * m[slot_item]).astype(np.int64)]
    from_class = class_tags[item_labels, _draw(np.cumsum(_zipf(TAGS_PER_CLASS, 0.8)), u_rank)]
    from_scene = scene_tags[scene[slot_item], _draw(np.cumsum(_zipf(TAGS_PER_SCENE, 0.8)), u_scene_rank)]
    from_bg = background_order[_draw(np.cumsum(_zipf(V, 1.0, shift=5.0)), u_bg)]
    p_class, p_scene = 0.7 * strength, 0.2 * strength
    tag = np.where(u_source < p_class, from_class, np.where(u_source < p_class + p_scene, from_scene, from_bg))
    tag = np.where(noisy[slot_item], from_bg, tag)

    width = len(str(V - 1))
    names = [f"tag_{j:0{width}d}" for j in range(V)]  # zero-padded: alphabetical = column order
    text_features = np.zeros((n, V), dtype=np.float32)
    text_features[slot_item, tag] = 1.0
    texts: list[str] = []
    starts = np.concatenate([[0], np.cumsum(k)])
    for i in range(n):
        seen = dict.fromkeys(tag[starts[i] : starts[i + 1]].tolist())  # dedupe, keep order
        texts.append(", ".join(names[j] for j in seen))

    params = {key: opts[key] for key in DEFAULTS}
    params.update(num_scenes=T, generator_version=GENERATOR_VERSION)
    report = LoadReport("synthetic", n_listed=n, n_kept=n)
    report.notes.append("SYNTHETIC data generated by cmhash.data.sources.synthetic (no real images or tags)")
    return PairedDataset(
        name="synthetic",
        ids=[f"syn{i:06d}" for i in range(n)],
        image_features=image,
        texts=texts,
        text_kind="tags",
        text_features=text_features,
        labels=labels,
        label_names=[f"class_{j:02d}" for j in range(L)],
        report=report,
        meta={
            "source": "synthetic",
            "synthetic": True,
            "description": (
                "SYNTHETIC MIRFlickr-shaped benchmark: multi-label classes with skewed frequencies and "
                "co-occurrence, non-negative CNN-like image features, tag strings and binary tag "
                "bag-of-words; 'signal' sets the strength of the class / cross-modal signal"
            ),
            "params": params,
            "image_features": f"synthetic-relu-{d}",
            "text_features": f"tag-bow-{V}",
            "vocabulary": Vocabulary(names, text_features.sum(axis=0).astype(np.int64), n, "tags", 0).to_dict(),
        },
    )


@SOURCES.register("synthetic")
def load_synthetic(root=None, *, strict: bool = False, **options: Any) -> PairedDataset:
    """The synthetic benchmark (``root`` is ignored; nothing is read or written)."""
    return generate(**options)
