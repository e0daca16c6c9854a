"""MIRFlickr-25K in the DJSRH/DCMH ``.mat`` layouts (used by ``mirflickr`` when ``all_imgs.txt`` is absent).

Files looked for under ``root`` (side by side or in ``IAll/``, ``YAll/``, ``LAll/``, ``XAll/``):
``mirflickr25k-iall.mat`` (``IAll``, v7.3: 20,015 raw images), ``mirflickr25k-yall.mat``
(``YAll``: 1,386-d tag bag-of-words), ``mirflickr25k-lall.mat`` (``LAll``: 24 labels),
optionally ``mirflickr25k-xall-vgg.mat`` (``XAll`` image features); or DCMH's single
``FLICKR-25K.mat`` (``images``, ``YAll``, ``LAll``). See :mod:`.matlayout` for the options.
"""

from __future__ import annotations

from pathlib import Path

from cmhash.data.dataset import PairedDataset
from cmhash.data.sources.matlayout import MatLayout, has_mat_files, load_mat_layout

LAYOUT = MatLayout(
    source="mirflickr",
    prefix="mirflickr25k",
    single_files=("FLICKR-25K.mat",),
    label_name_files=("label_names_24.txt", "label_names.txt"),
)


def has_files(root) -> bool:
    return has_mat_files(LAYOUT, Path(root))


def load_mirflickr_mat(root, *, strict: bool = False, **options) -> PairedDataset:
    """Load MIRFlickr from the ``.mat`` files (options: see :func:`.matlayout.load_mat_layout`)."""
    return load_mat_layout(LAYOUT, Path(root), strict=strict, **options)

