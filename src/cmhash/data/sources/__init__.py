"""Data sources; each module registers loaders in cmhash.data.SOURCES."""
