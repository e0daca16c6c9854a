"""Shared source machinery: tables (CSV repair, JSONL), label matrices, image policy, .mat reading."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import image_stack, write_garbage, write_jpeg, write_mat_v5, write_mat_v73

from cmhash.data import load_dataset
from cmhash.data.dataset import LoadReport
from cmhash.data.imageio import UnreadableImageError
from cmhash.data.sources import _mat
from cmhash.data.sources._common import ImageChecker, check_options, label_matrix, read_table
from cmhash.errors import DataError, MissingFileError


# ----------------------------------------------------------------------------- tables
def test_csv_rows_with_unquoted_commas_in_the_free_text_column_are_repaired(tmp_path):
    p = tmp_path / "styles.csv"
    p.write_text(
        "id,gender,title,usage\n"
        "1,Men,Nike Blue Shirt,Casual\n"
        "2,Women,Puma, Red, Shoes,Sports\n"  # two unquoted commas inside the title
        '3,Men,"Quoted, fine",Casual\n'
        "4,Men\n",  # too few fields: malformed, never shifted
        encoding="utf-8",
    )
    t = read_table(p, free_text_column="title")
    assert t.columns == ["id", "gender", "title", "usage"]
    assert [r["title"] for r in t.rows] == ["Nike Blue Shirt", "Puma, Red, Shoes", "Quoted, fine"]
    assert t.rows[1]["usage"] == "Sports"
    assert t.repaired == 1
    assert t.malformed == [(5, "2 fields, the header has 4")]
    assert t.lines == [2, 3, 4]


def test_csv_without_repair_column_reports_long_rows_as_malformed(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("\ufeffa,b\n1,2\n3,4,5\n", encoding="utf-8")  # BOM is ignored
    t = read_table(p)
    assert t.columns == ["a", "b"] and len(t.rows) == 1 and t.malformed[0][0] == 3


def test_jsonl_table_collects_columns_and_reports_bad_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"image": "a.jpg", "text": "x"}\n\nnot json\n[1, 2]\n{"image": "b.jpg", "tags": ["p", "q"]}\n', encoding="utf-8")
    t = read_table(p)
    assert t.columns == ["image", "text", "tags"]
    assert len(t.rows) == 2 and t.lines == [1, 5]
    assert [m[0] for m in t.malformed] == [3, 4]


def test_table_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("a,b\n\xe9t\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.csv.*UTF-8"):
        read_table(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="duplicate column"):
        read_table(dup)
    ok = tmp_path / "ok.csv"
    ok.write_text("a,b\n1,2\n")
    t = read_table(ok)
    with pytest.raises(DataError, match=r"ok.csv: no column 'zzz' \(option text_column\); available columns: a, b"):
        t.require("zzz", "text_column")


# ----------------------------------------------------------------------------- labels
def test_label_matrix_one_hot_blocks_and_tag_columns():
    rows = [
        {"style": "b", "tags": "x;y"},
        {"style": "a", "tags": "y"},
        {"style": "", "tags": ["z"]},
        {"style": "b", "tags": ""},
    ]
    m, names, kinds = label_matrix(rows, ["style", "tags"])
    assert names == ["style=a", "style=b", "tags=x", "tags=y", "tags=z"]
    assert kinds == ["categorical", "tags"]
    np.testing.assert_array_equal(m, [[0, 1, 1, 1, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]])
    single, names1, _ = label_matrix(rows, ["style"])
    assert names1 == ["a", "b"] and single[2].sum() == 0
    cat, names2, kinds2 = label_matrix([{"c": "p;q"}, {"c": "r"}], ["c"], allow_tags=False)
    assert names2 == ["p;q", "r"] and kinds2 == ["categorical"]


# ----------------------------------------------------------------------------- images
def test_image_checker_drops_missing_and_unreadable_and_caches(tmp_path):
    good = write_jpeg(tmp_path / "good.jpg")
    bad = write_garbage(tmp_path / "bad.jpg")
    rep = LoadReport("t", n_listed=4)
    chk = ImageChecker("t", rep)
    assert chk(0, "g", good, "row 0")
    assert not chk(1, "b", bad, "row 1")
    assert not chk(2, "m", tmp_path / "missing.jpg", "row 2")
    assert not chk(3, "m2", tmp_path / "missing.jpg", "row 3")  # cached
    assert rep.dropped_by_reason() == {"unreadable_image": 1, "missing_image": 2}
    assert rep.dropped[0].detail.endswith("bad.jpg")
    # 'exists' does not open files; 'none' trusts the listing
    rep2 = LoadReport("t")
    assert ImageChecker("t", rep2, check="exists")(0, "b", bad, "x")
    assert ImageChecker("t", rep2, check="none")(0, "m", tmp_path / "missing.jpg", "x")
    with pytest.raises(DataError, match="check_images"):
        ImageChecker("t", rep2, check="deep")


def test_image_checker_strict_names_file_and_row(tmp_path):
    bad = write_garbage(tmp_path / "bad.jpg")
    with pytest.raises(MissingFileError, match=r"missing.jpg \(line 7 of list.txt\)"):
        ImageChecker("t", LoadReport("t"), strict=True)(6, "m", tmp_path / "missing.jpg", "line 7 of list.txt")
    with pytest.raises(UnreadableImageError, match=r"bad.jpg \(row 3\)"):
        ImageChecker("t", LoadReport("t"), strict=True)(3, "b", bad, "row 3")


def test_unknown_options_list_the_known_ones():
    def loader(root, *, strict=False, alpha=1, beta=2, **unused):
        check_options("toy", loader, unused)

    loader(None, alpha=3)
    with pytest.raises(DataError, match="unknown option.*gamma.*takes: alpha, beta"):
        loader(None, gamma=1)


def test_load_dataset_needs_an_existing_root(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        load_dataset("wiki", tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match="--root"):
        load_dataset("wiki", None)


# ----------------------------------------------------------------------------- .mat
def test_read_matrix_orients_v5_and_v73_the_same_way(tmp_path):
    m = np.arange(12, dtype=np.float64).reshape(6, 2)  # 6 pairs x 2 dims
    v5 = write_mat_v5(tmp_path / "a.mat", Y=m)
    v73 = write_mat_v73(tmp_path / "b.mat", Y=m)
    assert not _mat.is_v73(v5) and _mat.is_v73(v73)
    for p in (v5, v73):
        np.testing.assert_array_equal(_mat.read_matrix(p, "Y"), m)
        np.testing.assert_array_equal(_mat.read_matrix(p, "Y", n=6), m)
    # stored the other way round (2 x 6): transposed when the pair count is known
    t = write_mat_v5(tmp_path / "t.mat", Y=m.T)
    np.testing.assert_array_equal(_mat.read_matrix(t, "Y", n=6), m)
    with pytest.raises(DataError, match=r"t.mat: variable 'Y' has shape \(2, 6\), but the dataset has 5 pairs"):
        _mat.read_matrix(t, "Y", n=5)


def test_read_matrix_errors_name_file_variable_and_row(tmp_path):
    m = np.ones((4, 3))
    m[2, 1] = np.nan
    p = write_mat_v73(tmp_path / "nan.mat", YAll=m, Other=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"nan.mat: variable 'YAll', row 2, column 1 is nan"):
        _mat.read_matrix(p, "YAll")
    with pytest.raises(DataError, match=r"nan.mat: no variable 'TAll' \(the file holds: Other, YAll\); pass the right name with option tags_var"):
        _mat.read_matrix(p, "TAll", option="tags_var")
    q = write_mat_v5(tmp_path / "lab.mat", LAll=np.array([[0, 1], [2, 0], [1, 1]]))
    with pytest.raises(DataError, match=r"lab.mat: variable 'LAll', row 1, column 0 is 2.0; labels must be 0/1"):
        _mat.read_labels(q, "LAll")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat: cannot read"):
        _mat.read_matrix(junk, "X")
    with pytest.raises(MissingFileError, match="absent.mat"):
        _mat.read_matrix(tmp_path / "absent.mat", "X")


def test_matlab_sparse_v73_matrix_is_read(tmp_path):
    import h5py
    import scipy.sparse as sp

    dense = np.array([[0, 1, 0], [2, 0, 0], [0, 0, 3], [0, 4, 0]], dtype=np.float64)  # 4 pairs x 3
    csc = sp.csc_matrix(dense)
    p = tmp_path / "sp.mat"
    with h5py.File(p, "w") as fh:
        g = fh.create_group("YAll")
        g.attrs["MATLAB_class"] = np.bytes_("double")
        g.attrs["MATLAB_sparse"] = np.uint64(4)
        g["data"], g["ir"], g["jc"] = csc.data, csc.indices.astype(np.uint64), csc.indptr.astype(np.uint64)
    np.testing.assert_array_equal(_mat.read_matrix(p, "YAll"), dense)


def test_image_stacks_v5_and_v73_give_the_same_pixels(tmp_path):
    stack = image_stack(3, h=5, w=4)
    v73 = _mat.open_images(write_mat_v73(tmp_path / "i73.mat", IAll=stack), "IAll")
    v5 = _mat.open_images(write_mat_v5(tmp_path / "i5.mat", IAll=stack), "IAll")
    assert len(v73) == len(v5) == 3 and v73.layout == "CWH"
    for i in range(3):
        a, b = np.asarray(v73.load(i)), np.asarray(v5.load(i))
        assert a.shape == (5, 4, 3)
        np.testing.assert_array_equal(a, stack[:, :, :, i])
        np.testing.assert_array_equal(b, stack[:, :, :, i])
    sub = v73.subset([2, 0])
    np.testing.assert_array_equal(np.asarray(sub.load(0)), stack[:, :, :, 2])
    assert sub.ref(0).endswith("i73.mat:IAll[2]")
    with pytest.raises(DataError, match="holds 3 images"):
        _mat.open_images(tmp_path / "i73.mat", "IAll", n=4)
