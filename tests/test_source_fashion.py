"""Fashion source: Kaggle styles.csv (with its malformed rows) and the repackaged image_file layout."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import snapshot, write_garbage, write_jpeg

from cmhash.data import load_dataset
from cmhash.errors import DataError

KAGGLE_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
KAGGLE_ROWS = [
    "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt",
    "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans",
    "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch",
    # unquoted commas in the title (as in the real file): 12 fields instead of 10
    "21379,Men,Apparel,Bottomwear,Track Pants,Black,Fall,2011,Casual,Manchester United Men Solid Black, Red, Track Pants",
    "53759,Men,Apparel,Topwear,Tshirts,Grey,Summer,2012,Casual,",  # empty title
    "1855,Men,Apparel,,Tshirts,Grey,Summer,2011,Casual,Inkfruit Mens Chain Reaction T-shirt",  # empty label
    "30805,Men,Apparel",  # truncated row
    "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Duplicate id",
    "26960,Women,Apparel,Topwear,Shirts,Purple,Summer,2012,Casual,Nike Women Purple Top",  # image missing
    "29114,Men,Accessories,Socks,Socks,Navy Blue,Summer,2012,Casual,Puma Men Pack of 3 Socks",  # image unreadable
]


def make_kaggle(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "styles.csv").write_text(KAGGLE_HEADER + "\n" + "\n".join(KAGGLE_ROWS) + "\n")
    for pid in (15970, 39386, 59263, 21379, 53759, 1855):
        write_jpeg(root / "images" / f"{pid}.jpg")
    write_garbage(root / "images" / "29114.jpg")


def test_kaggle_styles_csv_with_malformed_rows(tmp_path):
    make_kaggle(tmp_path)
    before = snapshot(tmp_path)
    ds = load_dataset("fashion", tmp_path)
    assert snapshot(tmp_path) == before
    assert ds.ids.tolist() == ["15970", "39386", "59263", "21379"]
    assert ds.texts[3] == "Manchester United Men Solid Black, Red, Track Pants"
    assert ds.report.n_listed == 10 and ds.report.n_kept == 4
    assert ds.report.dropped_by_reason() == {
        "malformed_row": 1, "no_text": 1, "no_labels": 1, "duplicate_id": 1, "missing_image": 1, "unreadable_image": 1,
    }
    assert any("1 rows had unquoted commas" in n for n in ds.report.notes)
    # labels: one-hot over every subCategory value in the listing, sorted
    assert ds.label_names == ["Bottomwear", "Socks", "Topwear", "Watches"]
    np.testing.assert_array_equal(ds.labels.argmax(1), [2, 0, 3, 0])
    assert ds.labels.sum(1).tolist() == [1, 1, 1, 1] and ds.text_kind == "sentence"
    with pytest.raises(DataError, match=r"styles.csv, line 8: 3 fields, the header has 10 \(--strict\)"):
        load_dataset("fashion", tmp_path, strict=True)


def test_label_column_choice_and_unknown_columns(tmp_path):
    make_kaggle(tmp_path)
    ds = load_dataset("fashion", tmp_path, label_column="masterCategory")
    assert ds.label_names == ["Accessories", "Apparel"] and len(ds) == 5  # the empty-subCategory row is back
    multi = load_dataset("fashion", tmp_path, label_column="gender,season")
    assert multi.label_names == ["gender=Men", "gender=Women", "season=Fall", "season=Summer", "season=Winter"]
    assert multi.labels.sum(1).tolist() == [2] * len(multi)
    kept = load_dataset("fashion", tmp_path, keep_unlabeled=True)
    assert "1855" in kept.ids.tolist() and kept.labels[kept.ids.tolist().index("1855")].sum() == 0
    with pytest.raises(DataError, match=r"styles.csv: no column 'colour' \(option label_column\); available columns: id, gender, masterCategory"):
        load_dataset("fashion", tmp_path, label_column="colour")
    with pytest.raises(DataError, match="'productDisplayName' cannot be a label column"):
        load_dataset("fashion", tmp_path, label_column="productDisplayName")


def test_repackaged_layout_with_image_file_column(tmp_path):
    (tmp_path / "styles.csv").write_text(
        "id,image_file,gender,masterCategory,subCategory,baseColour,season,usage,productDisplayName\n"
        "1163,imgs/1163.jpg,Men,Apparel,Topwear,Blue,Summer,Sports,Nike Sahara Jersey\n"
        "1164,imgs/1164.jpg,Men,Apparel,Topwear,Blue,Winter,Sports,Nike Men Blue Jersey\n"
        "1165,imgs/1165.jpg,Women,Footwear,Shoes,Red,Winter,Casual,Red Shoes\n"
    )
    write_jpeg(tmp_path / "imgs" / "1163.jpg")
    write_jpeg(tmp_path / "imgs" / "1165.jpg")
    ds = load_dataset("fashion", tmp_path)
    assert ds.ids.tolist() == ["1163", "1165"] and ds.images.paths[1].endswith("imgs/1165.jpg")
    assert ds.label_names == ["Shoes", "Topwear"]
    tf = load_dataset("fashion", tmp_path, text_features="tfidf", min_count=2)
    assert tf.text_features.shape[0] == 2 and "nike" in tf.meta["vocabulary"]["tokens"]
