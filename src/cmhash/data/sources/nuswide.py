"""NUS-WIDE TC-10 (186,577 pairs, 10 labels, 1,000-d tags) in the DJSRH ``.mat`` layout.

Files looked for under ``root`` (side by side or in ``IAll/``, ``YAll/``, ``LAll/``, ``XAll/``):
``nus-wide-tc10-iall.mat`` (``IAll``, v7.3 raw images), ``nus-wide-tc10-yall.mat`` (``YAll``,
v7.3: h5py sees it transposed, 1,000 x N; v5 copies also work), ``nus-wide-tc10-lall.mat``
(``LAll``, N x 10), optionally ``nus-wide-tc10-xall-vgg.mat`` (``XAll`` image features), or one
file given with ``mat_file`` that holds the variables. File and variable names can be overridden
(``images_file``, ``tags_file``, ``labels_file``, ``image_features_file``, ``*_var``). Label
names are read from ``label_names.txt`` (one per line) when present: the column order of
``LAll`` is not documented by its publishers, so none is assumed.

Split: ``--protocol djsrh-nuswide`` (200 queries + 500 training pairs per label).
"""

from __future__ import annotations

from pathlib import Path

from cmhash.data import SOURCES
from cmhash.data.dataset import PairedDataset
from cmhash.data.sources.matlayout import MatLayout, load_mat_layout

LAYOUT = MatLayout(
    source="nuswide",
    prefix="nus-wide-tc10",
    single_files=("nus-wide-tc10.mat",),
    label_name_files=("label_names.txt", "label_names_10.txt"),
)


@SOURCES.register("nuswide")
def load_nuswide(root, *, strict: bool = False, **options) -> PairedDataset:
    """NUS-WIDE TC-10: the DJSRH .mat files (IAll images, YAll 1,000-d tags, LAll 10 labels)."""
    return load_mat_layout(LAYOUT, Path(root), strict=strict, **options)



load_nuswide.options_from = lambda: (load_mat_layout,)  # type: ignore[attr-defined]
