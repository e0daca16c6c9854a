"""NUS-WIDE source: DJSRH file names, v7.3 tag matrix stored transposed, overridable names."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import image_stack, snapshot, write_mat_v5, write_mat_v73

from cmhash.data import load_dataset
from cmhash.data.splits import make_split
from cmhash.errors import DataError, MissingFileError

N, C, D = 30, 10, 12


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((N, C)) < 0.3).astype(np.float64)
    labels[:, 0] = 1  # every pair labeled
    tags = (rng.random((N, D)) < 0.3).astype(np.float64)
    return image_stack(N, h=4, w=5), tags, labels


def test_djsrh_files_with_v73_tags_read_transposed(tmp_path):
    images, tags, labels = arrays()
    write_mat_v73(tmp_path / "nus-wide-tc10-iall.mat", IAll=images)
    write_mat_v73(tmp_path / "nus-wide-tc10-yall.mat", YAll=tags)
    write_mat_v5(tmp_path / "nus-wide-tc10-lall.mat", LAll=labels)
    import h5py

    with h5py.File(tmp_path / "nus-wide-tc10-yall.mat", "r") as fh:
        assert fh["YAll"].shape == (D, N)  # what h5py sees: DJSRH transposes it
    before = snapshot(tmp_path)
    ds = load_dataset("nuswide", tmp_path)
    assert snapshot(tmp_path) == before
    assert len(ds) == N and ds.name == "nuswide" and ds.report.dropped == []
    np.testing.assert_array_equal(ds.text_features, tags)
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(np.asarray(ds.images.load(7)), images[:, :, :, 7])
    split = make_split(ds, "djsrh-nuswide", seed=0, num_query=5, num_train=10, first_query=1, first_train=1, per_label_query=1, per_label_train=1)
    assert len(split.query) == 5 and len(split.train) == 10


def test_overridden_file_and_variable_names_and_label_names(tmp_path):
    images, tags, labels = arrays()
    write_mat_v73(tmp_path / "img.mat", I=images)
    write_mat_v5(tmp_path / "tags.mat", T=tags)
    write_mat_v5(tmp_path / "lab.mat", L=labels)
    names = [f"c{i}" for i in range(C)]
    (tmp_path / "names.txt").write_text("\n".join(names))
    ds = load_dataset(
        "nuswide", tmp_path, images_file="img.mat", images_var="I", tags_file="tags.mat", tags_var="T",
        labels_file="lab.mat", labels_var="L", label_names="names.txt",
    )
    assert len(ds) == N and ds.label_names == names
    (tmp_path / "names.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="names.txt: 2 label names for 10 label columns"):
        load_dataset("nuswide", tmp_path, images_file="img.mat", images_var="I", tags_file="tags.mat", tags_var="T", labels_file="lab.mat", labels_var="L", label_names="names.txt")


def test_single_file_and_feature_only_copies(tmp_path):
    _images, tags, labels = arrays()
    feats = np.random.default_rng(3).random((N, 6))
    write_mat_v73(tmp_path / "all.mat", XAll=feats, YAll=tags, LAll=labels)
    ds = load_dataset("nuswide", tmp_path, mat_file="all.mat")
    assert ds.images is None and ds.image_features.shape == (N, 6)
    np.testing.assert_allclose(ds.image_features, feats, rtol=1e-6)
    np.testing.assert_array_equal(ds.labels, labels)


def test_missing_files_and_unlabeled_rows(tmp_path):
    with pytest.raises(MissingFileError, match="no labels file found for nuswide.*nus-wide-tc10-lall.mat"):
        load_dataset("nuswide", tmp_path)
    images, tags, labels = arrays()
    labels[[3, 9]] = 0
    write_mat_v73(tmp_path / "nus-wide-tc10-iall.mat", IAll=images)
    write_mat_v73(tmp_path / "nus-wide-tc10-yall.mat", YAll=tags)
    write_mat_v5(tmp_path / "nus-wide-tc10-lall.mat", LAll=labels)
    ds = load_dataset("nuswide", tmp_path)
    assert len(ds) == N - 2 and ds.report.dropped_by_reason() == {"no_labels": 2}
    assert [d.row for d in ds.report.dropped] == [3, 9] and "3" not in ds.ids.tolist()
    np.testing.assert_array_equal(np.asarray(ds.images.load(3)), images[:, :, :, 4])
    with pytest.raises(DataError, match="text_features must be one of bow, count, tfidf"):
        load_dataset("nuswide", tmp_path, text_features="none")
