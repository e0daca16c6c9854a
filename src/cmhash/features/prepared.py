"""Ready-made feature sets, one call (or one `cmhash features prepare NAME`) each.

| set | source | image features | text features |
|---|---|---|---|
| ``mirflickr`` | MIRFlickr-25K ``all_*.txt`` + images | EfficientNet-Lite0 (1280-d, the reference recipe) | standard 1,386-d tag BoW |
| ``mirflickr-sentences`` | the same | EfficientNet-Lite0 | MiniLM (384-d) over each tag line: sentence queries |
| ``flickr8k`` | Flickr8k captions + images | EfficientNet-Lite0 | MiniLM (384-d) |
| ``fashion`` | Fashion Product Images (small) | EfficientNet-Lite0 | MiniLM (``text``) and BoW (``text.bow``) |

Caches live outside the repository, in ``$CMHASH_CACHE/features/<set>`` (default
``~/.cache/cmhash/features/<set>``), and are reused as long as the data files and encoders are
unchanged (see :mod:`cmhash.features.cache`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmhash.errors import DataError
from cmhash.features.runtime import cache_root


@dataclass(frozen=True)
class PreparedSet:
    source: str
    image: tuple[str, dict[str, Any]]
    texts: dict[str, tuple[str, dict[str, Any]]]
    description: str
    source_options: dict[str, Any] = field(default_factory=dict)


PREPARED_SETS: dict[str, PreparedSet] = {
    "mirflickr": PreparedSet(
        source="mirflickr",
        image=("efficientnet-lite0", {}),
        texts={"text": ("bow", {})},
        description="MIRFlickr-25K: EfficientNet-Lite0 (224 px bicubic, x/127.5-1, pooled 1280-d) + standard 1,386-d tag BoW",
    ),
    "mirflickr-sentences": PreparedSet(
        source="mirflickr",
        image=("efficientnet-lite0", {}),
        texts={"text": ("minilm", {})},
        description="MIRFlickr-25K for free-sentence search: EfficientNet-Lite0 (1280-d) + all-MiniLM-L6-v2 embeddings of each "
        "image's tag line (384-d), so a model trained on it reads any sentence (docs/search.md)",
    ),
    "flickr8k": PreparedSet(
        source="flickr8k",
        image=("efficientnet-lite0", {}),
        texts={"text": ("minilm", {})},
        description="Flickr8k: EfficientNet-Lite0 (1280-d) + all-MiniLM-L6-v2 caption embeddings (384-d)",
    ),
    "fashion": PreparedSet(
        source="fashion",
        image=("efficientnet-lite0", {}),
        texts={"text": ("minilm", {}), "text.bow": ("bow", {})},
        description="Fashion products: EfficientNet-Lite0 (1280-d) + MiniLM title embeddings (text) and title BoW (text.bow: "
        "words in at least 5 of all listed titles, the source's vocabulary)",
        source_options={"text_features": "bow", "min_count": 5},
    ),
}


def features_cache_dir(name: str | None = None) -> Path:
    """``$CMHASH_CACHE/features[/<name>]`` (default ``~/.cache/cmhash/features``)."""
    root = cache_root() / "features"
    return root / name if name else root


def prepare(
    name: str,
    data_root: str | Path,
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    strict: bool = False,
    batch_size: int = 32,
    workers: int = 1,
    progress: bool = True,
    source_options: dict[str, Any] | None = None,
    image_options: dict[str, Any] | None = None,
):
    """Build (or reuse) ready-made set ``name`` from the data in ``data_root``.

    Returns ``(cache, dataset)``: the :class:`~cmhash.features.cache.FeatureCache` and the
    loaded dataset (call ``cache.apply(dataset)`` for the dataset with features).
    """
    from cmhash.data import load_dataset
    from cmhash.features.base import create_image_encoder, create_text_encoder
    from cmhash.features.cache import extract_features

    if name not in PREPARED_SETS:
        raise DataError(f"unknown ready-made feature set '{name}' (known: {', '.join(PREPARED_SETS)})")
    ps = PREPARED_SETS[name]
    dataset = load_dataset(ps.source, data_root, strict=strict, **{**ps.source_options, **(source_options or {})})
    img_name, img_opts = ps.image
    image = create_image_encoder(img_name, **{**img_opts, **(image_options or {})})
    texts = {entry: create_text_encoder(enc, **opts) for entry, (enc, opts) in ps.texts.items()}
    main_text = texts.pop("text")
    extra = {entry[len("text.") :]: enc for entry, enc in texts.items()}
    out = Path(out_dir) if out_dir else features_cache_dir(name)
    cache = extract_features(
        dataset, image, main_text, out, extra_text_encoders=extra or None, batch_size=batch_size, workers=workers,
        strict=strict, force=force, progress=progress,
    )
    return cache, dataset


def load_prepared(name: str, data_root: str | Path, **kwargs: Any):
    """The dataset of ready-made set ``name`` with its features attached (extracting if needed)."""
    cache, dataset = prepare(name, data_root, **kwargs)
    return cache.apply(dataset)
