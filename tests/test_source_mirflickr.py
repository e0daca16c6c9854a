"""MIRFlickr source: the all_*.txt format with an image folder, and the DJSRH/DCMH .mat layouts."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import image_stack, snapshot, write_garbage, write_jpeg, write_mat_v5, write_mat_v73

from cmhash.data import load_dataset
from cmhash.data.images import HDF5ImageStore
from cmhash.data.imageio import UnreadableImageError
from cmhash.data.text import Vocabulary
from cmhash.errors import DataError, MissingFileError

TAGS = ["sky,sea", "dog", "sky,dog,cat", "sea", "sky", "dog,sky", "cat"]
LABELS = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1], [0, 0, 1]]


def make_txt(root, n=7, present=None, garbage=(), tags=TAGS, labels=LABELS):
    root.mkdir(parents=True, exist_ok=True)
    (root / "all_imgs.txt").write_text("".join(f"mirflickr/im{i + 1}.jpg\n" for i in range(n)))
    (root / "all_tags.txt").write_text("\n".join(tags[:n]) + "\n")
    (root / "all_labels.txt").write_text("".join(" ".join(map(str, l)) + "\n" for l in labels[:n]))
    (root / "label_names_24.txt").write_text("sky\ndog\ncat\n")
    for i in range(n) if present is None else present:
        write_jpeg(root / "images128" / f"im{i + 1}.jpg", color=(i * 30, 0, 0))
    for i in garbage:
        write_garbage(root / "images128" / f"im{i + 1}.jpg")


def test_txt_format_matches_images_on_file_name_and_reports_drops(tmp_path):
    make_txt(tmp_path, present=[0, 1, 2, 4, 6], garbage=[5])
    before = snapshot(tmp_path)
    ds = load_dataset("mirflickr", tmp_path, min_count=2)
    assert snapshot(tmp_path) == before  # loading never writes into the source folder
    # row 3 has no label (dropped first), row 5 is not an image, rows 3.. (im4) absent anyway
    assert ds.ids.tolist() == ["im1", "im2", "im3", "im5", "im7"]
    assert ds.report.n_listed == 7 and ds.report.n_kept == 5
    assert ds.report.dropped_by_reason() == {"no_labels": 1, "unreadable_image": 1}
    assert ds.label_names == ["sky", "dog", "cat"] and ds.labels.tolist() == [LABELS[i] for i in (0, 1, 2, 4, 6)]
    assert ds.texts[2] == "sky,dog,cat" and ds.text_kind == "tags"
    # vocabulary over all 7 listed lines, not only the kept ones
    assert ds.meta["vocabulary"]["tokens"] == ["cat", "dog", "sea", "sky"]
    np.testing.assert_array_equal(ds.text_features[2], [1, 1, 0, 1])
    assert np.asarray(ds.images.load(1))[0, 0, 0] in range(25, 36)  # im2 is red=30 (JPEG rounding)


def test_txt_format_strict_and_missing_images(tmp_path):
    make_txt(tmp_path, present=[0, 1, 2], garbage=[4])
    ds = load_dataset("mirflickr", tmp_path, min_count=1)
    assert ds.report.dropped_by_reason() == {"no_labels": 1, "missing_image": 2, "unreadable_image": 1}
    assert ds.report.dropped[1].row == 4  # rows are 0-based positions in the listing
    with pytest.raises(UnreadableImageError, match=r"im5.jpg \(line 5 of all_imgs.txt\)"):
        load_dataset("mirflickr", tmp_path, strict=True)
    kept = load_dataset("mirflickr", tmp_path, keep_unlabeled=True, min_count=1, check_images="exists")
    assert kept.report.dropped_by_reason() == {"missing_image": 3}  # im4 (unlabeled, kept) has no image either
    assert kept.report.dropped[0].id == "im4"


def test_txt_format_text_feature_options(tmp_path):
    make_txt(tmp_path)
    vocab_path = Vocabulary.build(["sky", "dog"], min_count=1).save(tmp_path.parent / "v.json")
    ds = load_dataset("mirflickr", tmp_path, vocabulary=str(vocab_path))
    assert ds.text_features.shape == (6, 2) and ds.meta["text_features"] == "tags-bow-2"
    tf = load_dataset("mirflickr", tmp_path, text_features="tfidf", min_count=1)
    np.testing.assert_allclose(np.linalg.norm(tf.text_features, axis=1), 1.0, rtol=1e-6)
    raw = load_dataset("mirflickr", tmp_path, text_features="none")
    assert raw.text_features is None and len(raw.texts) == 6


def test_txt_format_bad_input(tmp_path):
    make_txt(tmp_path)
    (tmp_path / "all_tags.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="all_imgs.txt has 7 lines, all_tags.txt 2, all_labels.txt 7"):
        load_dataset("mirflickr", tmp_path)
    make_txt(tmp_path)
    (tmp_path / "all_labels.txt").write_text("1 0 0\n0 1\n")
    with pytest.raises(DataError, match="all_labels.txt, line 2: 2 label columns, expected 3"):
        load_dataset("mirflickr", tmp_path)
    (tmp_path / "all_labels.txt").write_text("1 0 0\n0 2 0\n")
    with pytest.raises(DataError, match="all_labels.txt, line 2: labels must be 0/1"):
        load_dataset("mirflickr", tmp_path)
    make_txt(tmp_path)
    with pytest.raises(MissingFileError, match="nowhere: image folder not found"):
        load_dataset("mirflickr", tmp_path, images_dir="nowhere")
    with pytest.raises(DataError, match="unknown option.*label_column"):
        load_dataset("mirflickr", tmp_path, label_column="x")
    with pytest.raises(MissingFileError, match="no MIRFlickr files found"):
        load_dataset("mirflickr", tmp_path / "images128")


# ----------------------------------------------------------------------------- .mat layouts
N = 7


def mat_arrays(n=N):
    rng = np.random.default_rng(1)
    labels = np.asarray(LABELS[:n], dtype=np.float64)
    tags = (rng.random((n, 5)) < 0.5).astype(np.float64)
    return image_stack(n), tags, labels


def test_djsrh_layout_v73_images_v5_tags_and_labels(tmp_path):
    images, tags, labels = mat_arrays()
    write_mat_v73(tmp_path / "mirflickr25k-iall.mat", IAll=images)
    write_mat_v5(tmp_path / "mirflickr25k-yall.mat", YAll=tags)
    write_mat_v5(tmp_path / "mirflickr25k-lall.mat", LAll=labels)
    before = snapshot(tmp_path)
    ds = load_dataset("mirflickr", tmp_path)
    assert snapshot(tmp_path) == before
    keep = [0, 1, 2, 4, 5, 6]  # row 3 has no label
    assert ds.meta["format"] == "djsrh-mat" and ds.ids.tolist() == [str(i) for i in keep]
    assert ds.report.dropped_by_reason() == {"no_labels": 1}
    np.testing.assert_array_equal(ds.text_features, tags[keep])
    np.testing.assert_array_equal(ds.labels, labels[keep])
    assert isinstance(ds.images, HDF5ImageStore) and len(ds.images) == 6
    np.testing.assert_array_equal(np.asarray(ds.images.load(3)), images[:, :, :, 4])  # Image.fromarray(transpose(IAll[4], (2,1,0)))
    assert ds.images.ref(3).endswith("mirflickr25k-iall.mat:IAll[4]")
    all_rows = load_dataset("mirflickr", tmp_path, keep_unlabeled=True)
    assert len(all_rows) == N and all_rows.labels[3].sum() == 0


def test_cleared_set_subfolders_all_v73_and_image_features(tmp_path):
    images, tags, labels = mat_arrays()
    write_mat_v73(tmp_path / "IAll" / "mirflickr25k-iall.mat", IAll=images)
    write_mat_v73(tmp_path / "YAll" / "mirflickr25k-yall.mat", YAll=tags)  # h5py sees 5 x 7
    write_mat_v73(tmp_path / "LAll" / "mirflickr25k-lall.mat", LAll=labels)
    feats = np.arange(N * 4, dtype=np.float64).reshape(N, 4)
    write_mat_v5(tmp_path / "mirflickr25k-xall-vgg.mat", XAll=feats)
    ds = load_dataset("mirflickr", tmp_path, text_features="tfidf")
    keep = [0, 1, 2, 4, 5, 6]
    np.testing.assert_array_equal(ds.labels, labels[keep])
    np.testing.assert_allclose(ds.image_features, feats[keep])
    assert ds.text_features.shape == (6, 5) and ds.meta["text_features"] == "tag-tfidf-5"
    nonzero = tags[keep].sum(1) > 0
    np.testing.assert_allclose(np.linalg.norm(ds.text_features[nonzero], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(ds.images.load(0)), images[:, :, :, 0])
    only_feats = load_dataset("mirflickr", tmp_path, images_file="none")
    assert only_feats.images is None and only_feats.image_features.shape == (6, 4)


def test_dcmh_single_file_layout(tmp_path):
    images, tags, labels = mat_arrays()
    write_mat_v73(tmp_path / "FLICKR-25K.mat", images=images, YAll=tags, LAll=labels)
    ds = load_dataset("mirflickr", tmp_path, keep_unlabeled=True)
    assert ds.meta["format"] == "dcmh-mat" and len(ds) == N
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.text_features, tags)
    np.testing.assert_array_equal(np.asarray(ds.images.load(6)), images[:, :, :, 6])


def test_mat_layout_bad_input(tmp_path):
    images, tags, labels = mat_arrays()
    write_mat_v73(tmp_path / "mirflickr25k-iall.mat", IAll=images)
    write_mat_v5(tmp_path / "mirflickr25k-yall.mat", YAll=tags[:5])
    write_mat_v5(tmp_path / "mirflickr25k-lall.mat", LAll=labels)
    with pytest.raises(DataError, match=r"mirflickr25k-yall.mat: variable 'YAll' has shape \(5, 5\), but the dataset has 7 pairs"):
        load_dataset("mirflickr", tmp_path)
    write_mat_v5(tmp_path / "mirflickr25k-yall.mat", TAll=tags)
    with pytest.raises(DataError, match=r"mirflickr25k-yall.mat: no variable 'YAll' \(the file holds: TAll\); pass the right name with option tags_var"):
        load_dataset("mirflickr", tmp_path)
    assert load_dataset("mirflickr", tmp_path, tags_var="TAll").text_features.shape == (6, 5)
    write_mat_v5(tmp_path / "mirflickr25k-lall.mat", LAll=labels[:6])
    write_mat_v5(tmp_path / "mirflickr25k-yall.mat", YAll=tags)
    with pytest.raises(DataError, match=r"mirflickr25k-lall.mat: variable 'LAll' has shape \(6, 3\), but the dataset has 7 pairs"):
        load_dataset("mirflickr", tmp_path)
    write_mat_v5(tmp_path / "mirflickr25k-lall.mat", LAll=labels)
    with pytest.raises(DataError, match="unknown option.*min_count"):
        load_dataset("mirflickr", tmp_path, min_count=3)
    (tmp_path / "mirflickr25k-iall.mat").unlink()
    with pytest.raises(MissingFileError, match="no image side"):
        load_dataset("mirflickr", tmp_path)
