"""Names and defaults of the evaluation protocol options, in one place.

Kept free of numpy so that the CLI can offer them as choices without slowing `cmhash --help`;
``cmhash.metrics`` implements them (see docs/evaluation.md).
"""

DENOMINATORS = ("all_queries", "queries_with_relevant", "queries_with_hits")
NORMALIZATIONS = ("hits_in_topk", "min_k_relevant")
TIE_BREAKS = ("stable_index", "legacy_unstable")
EMPTY_PRECISION = ("zero", "skip")
# Other names used in the literature and in methods-spec.md, mapped to ours.
ALIASES = {
    "valid_queries": "queries_with_relevant",
    "numpy_default": "legacy_unstable",
    "legacy": "legacy_unstable",
    "stable": "stable_index",
}
DEFAULT_TOPK = 50
DEFAULT_RADIUS = 2
DEFAULT_R_VALUES = (1, 100, 200, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000)
DEFAULT_RECALL_KS = (1, 5, 10)
DEFAULT_MEMORY_MB = 256
# task -> (query modality, database modality)
TASKS = {"i2t": ("image", "text"), "t2i": ("text", "image"), "i2i": ("image", "image"), "t2t": ("text", "text")}
