"""Reusable network pieces: image backbones, hash heads and the image transforms they take.

Nothing here knows about hashing methods or training runs; methods, the trainer and the feature
extractors build on it.
"""
