"""Wiki source on small fixture files in the official format."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import snapshot, write_garbage, write_jpeg, write_mat_v5, write_mat_v73

from cmhash.data import load_dataset
from cmhash.data.splits import make_split
from cmhash.errors import DataError, MissingFileError

CATS = ["art", "biology", "geography", "history", "literature", "media", "music", "royalty", "sport", "warfare"]


def make_wiki(root, n_tr=6, n_te=3, v73=False, **override):
    rng = np.random.default_rng(0)
    mats = {
        "I_tr": rng.random((n_tr, 5)),
        "T_tr": rng.random((n_tr, 4)),
        "I_te": rng.random((n_te, 5)),
        "T_te": rng.random((n_te, 4)),
    }
    mats.update(override)
    (write_mat_v73 if v73 else write_mat_v5)(root / "raw_features.mat", **mats)
    tr = [f"t{i}\timg{i}\t{i % 10 + 1}" for i in range(n_tr)]
    te = [f"q{i}\tqimg{i}\t{(i + 3) % 10 + 1}" for i in range(n_te)]
    (root / "trainset_txt_img_cat.list").write_text("\n".join(tr) + "\n")
    (root / "testset_txt_img_cat.list").write_text("\n".join(te) + "\n")
    (root / "categories.list").write_text("\n".join(CATS) + "\n")
    return mats


@pytest.mark.parametrize("v73", [False, True])
def test_wiki_features_labels_and_official_split(tmp_path, v73):
    mats = make_wiki(tmp_path, v73=v73)
    ds = load_dataset("wiki", tmp_path)
    assert len(ds) == 9 and ds.ids[0] == "t0" and ds.ids[6] == "q0"
    np.testing.assert_allclose(ds.image_features, np.vstack([mats["I_tr"], mats["I_te"]]), rtol=1e-6)
    np.testing.assert_allclose(ds.text_features, np.vstack([mats["T_tr"], mats["T_te"]]), rtol=1e-6)
    assert ds.labels.sum(1).tolist() == [1] * 9
    assert ds.label_names[int(ds.labels[1].argmax())] == "biology"  # category 2
    assert ds.official_splits["query"].tolist() == [6, 7, 8]
    split = make_split(ds, "official")
    assert split.train.tolist() == split.database.tolist() == list(range(6))
    assert ds.report.n_listed == ds.report.n_kept == 9 and ds.images is None


def test_wiki_image_folder_missing_images_are_dropped_and_split_remapped(tmp_path):
    make_wiki(tmp_path)
    for i in range(6):
        if i != 2:
            write_jpeg(tmp_path / "images" / CATS[i % 10] / f"img{i}.jpg")
    write_jpeg(tmp_path / "images" / "qimg0.jpg")  # flat layout also found
    write_garbage(tmp_path / "images" / CATS[4] / "qimg1.jpg")
    before = snapshot(tmp_path)
    ds = load_dataset("wiki", tmp_path)
    assert snapshot(tmp_path) == before
    assert len(ds) == 6 and ds.report.dropped_by_reason() == {"missing_image": 2, "unreadable_image": 1}
    assert [d.id for d in ds.report.dropped] == ["t2", "q1", "q2"]
    assert ds.official_splits["query"].tolist() == [5] and ds.ids[5] == "q0"
    assert len(ds.official_splits["train"]) == 5
    assert ds.images.load(0).size == (12, 10)
    with pytest.raises(MissingFileError, match=r"img2.jpg \(line 3 of trainset_txt_img_cat.list\)"):
        load_dataset("wiki", tmp_path, strict=True)
    assert len(load_dataset("wiki", tmp_path, images_dir="none")) == 9


def test_wiki_bad_input_errors(tmp_path):
    make_wiki(tmp_path, T_te=np.ones((2, 4)))
    with pytest.raises(DataError, match=r"raw_features.mat: variable 'T_te' has shape \(2, 4\), but the dataset has 3 pairs"):
        load_dataset("wiki", tmp_path)
    bad = np.ones((6, 5))
    bad[4, 2] = np.inf
    make_wiki(tmp_path, I_tr=bad)
    with pytest.raises(DataError, match=r"variable 'I_tr', row 4, column 2 is inf"):
        load_dataset("wiki", tmp_path)
    make_wiki(tmp_path)
    write_mat_v5(tmp_path / "raw_features.mat", I_tr=np.ones((6, 5)), T_tr=np.ones((6, 4)))
    with pytest.raises(DataError, match=r"missing variable\(s\) I_te, T_te \(the file holds: I_tr, T_tr\)"):
        load_dataset("wiki", tmp_path)
    make_wiki(tmp_path)
    (tmp_path / "testset_txt_img_cat.list").write_text("q0\tqimg0\t11\n")
    with pytest.raises(DataError, match=r"testset_txt_img_cat.list, line 1: category 11 is outside 1..10"):
        load_dataset("wiki", tmp_path)
    (tmp_path / "testset_txt_img_cat.list").write_text("q0 qimg0 3\n")
    with pytest.raises(DataError, match="line 1: expected 'text_id<TAB>image<TAB>category'"):
        load_dataset("wiki", tmp_path)
    with pytest.raises(DataError, match="unknown option.*label_column"):
        load_dataset("wiki", tmp_path, label_column="x")
