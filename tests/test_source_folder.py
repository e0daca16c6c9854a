"""Folder source: a user's image folder with a CSV or JSONL manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_fixtures import snapshot, write_garbage, write_jpeg

from cmhash.data import load_dataset
from cmhash.data.splits import make_split
from cmhash.errors import DataError, MissingFileError


def test_csv_manifest_with_label_columns(tmp_path):
    for name in ("a.jpg", "b.jpg", "sub/c.jpg", "d.jpg"):
        write_jpeg(tmp_path / name)
    write_garbage(tmp_path / "e.jpg")
    (tmp_path / "pairs.csv").write_text(
        "image,caption,style,tags\n"
        "a.jpg,a red bike,photo,street;red\n"
        "b.jpg,a dog,drawing,animal\n"
        "sub/c.jpg,a cat, sleeping,photo,animal;indoor\n"  # unquoted comma in the text column
        "d.jpg,,photo,x\n"  # empty text
        "e.jpg,broken file,photo,x\n"
        "f.jpg,not there,photo,x\n"
        "g.jpg,no labels,,\n"
    )
    before = snapshot(tmp_path)
    ds = load_dataset("folder", tmp_path, text_column="caption", label_columns="style,tags")
    assert snapshot(tmp_path) == before
    assert ds.ids.tolist() == ["a.jpg", "b.jpg", "sub/c.jpg"] and ds.name == "folder"
    assert ds.texts == ["a red bike", "a dog", "a cat, sleeping"]
    assert ds.label_names == ["style=drawing", "style=photo", "tags=animal", "tags=indoor", "tags=red", "tags=street", "tags=x"]
    np.testing.assert_array_equal(ds.labels[2], [0, 1, 1, 1, 0, 0, 0])
    assert ds.report.dropped_by_reason() == {"no_text": 1, "unreadable_image": 1, "missing_image": 1, "no_labels": 1}
    assert ds.meta["label_columns"] == {"style": "categorical", "tags": "tags"}
    assert ds.groups is None
    with pytest.raises(Exception, match=r"e.jpg \(pairs.csv line 6\)"):
        load_dataset("folder", tmp_path, text_column="caption", strict=True)


def test_jsonl_manifest_ids_groups_and_default_text_column(tmp_path):
    imgs = tmp_path / "photos"
    for name in ("x.jpg", "y.jpg"):
        write_jpeg(imgs / name)
    rows = [
        {"id": "p1", "image": "x.jpg", "text": "first caption of x", "tags": ["sea", "sky"]},
        {"id": "p2", "image": "x.jpg", "text": "second caption of x", "tags": ["sea"]},
        {"id": "p3", "image": "y.jpg", "text": "caption of y", "tags": []},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset("folder", tmp_path, images_dir="photos", label_columns=["tags"], keep_unlabeled=True)
    assert ds.ids.tolist() == ["p1", "p2", "p3"] and ds.label_names == ["sea", "sky"]
    assert ds.groups.tolist() == ["x.jpg", "x.jpg", "y.jpg"]
    split = make_split(ds, "random", seed=0, num_query=1, num_train=1)
    assert len(set(ds.groups[split.query])) == 1
    no_labels = load_dataset("folder", tmp_path, images_dir="photos")
    assert no_labels.labels is None and len(no_labels) == 3
    (tmp_path / "m.jsonl").write_text(json.dumps({"image": "x.jpg", "text": "a"}) + "\n" + json.dumps({"image": "x.jpg", "text": "b"}) + "\n")
    ds2 = load_dataset("folder", tmp_path, images_dir="photos")
    assert ds2.ids.tolist() == ["x.jpg#0", "x.jpg#1"]


def test_folder_errors_list_columns_and_manifests(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "m.csv").write_text("picture,words\na.jpg,hello\n")
    with pytest.raises(DataError, match=r"m.csv: no text column \(looked for text, caption\); pass text_column .* available columns: picture, words"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DataError, match=r"m.csv: no column 'image' \(option image_column\); available columns: picture, words"):
        load_dataset("folder", tmp_path, text_column="words")
    assert len(load_dataset("folder", tmp_path, text_column="words", image_column="picture")) == 1
    with pytest.raises(DataError, match=r"no column 'style' \(option label_columns\)"):
        load_dataset("folder", tmp_path, text_column="words", image_column="picture", label_columns="style")
    (tmp_path / "n.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"several possible manifests \(m.csv, n.jsonl\)"):
        load_dataset("folder", tmp_path)
    with pytest.raises(MissingFileError, match="zz.csv: manifest not found"):
        load_dataset("folder", tmp_path, manifest="zz.csv")
    (tmp_path / "d.csv").write_text("id,image,text\n1,a.jpg,x\n1,a.jpg,y\n")
    with pytest.raises(DataError, match=r"id '1' appears on several rows \(lines 2, 3\)"):
        load_dataset("folder", tmp_path, manifest="d.csv")
