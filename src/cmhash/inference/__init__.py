"""Inference: a checkpoint back to its inputs (dataset, split) and raw queries to features."""
