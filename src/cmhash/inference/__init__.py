"""Inference: a checkpoint back to a method that encodes, to its inputs (dataset, split), and raw queries to features.

* :func:`load_checkpoint` (``inference.checkpoint``): rebuild any registered method from a file;
* ``inference.inputs``: ``checkpoint_dataset``, ``checkpoint_split``, ``QueryFeaturizer``.
"""

from cmhash.inference.checkpoint import Checkpoint, load_checkpoint

__all__ = ["Checkpoint", "load_checkpoint"]
