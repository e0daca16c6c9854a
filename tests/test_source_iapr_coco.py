"""IAPR TC-12 (.eng files + label lists) and MS-COCO (captions/instances JSON) sources on written fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_fixtures import snapshot, write_garbage, write_jpeg

from cmhash.data import load_dataset
from cmhash.errors import DataError, MissingFileError

ENG = """<DOC>
<DOCNO>annotations/{sub}/{id}.eng</DOCNO>
<TITLE>{title}</TITLE>
<DESCRIPTION>{desc}</DESCRIPTION>
<NOTES></NOTES>
<LOCATION>Cusco, Peru</LOCATION>
<IMAGE>images/{sub}/{id}.jpg</IMAGE>
</DOC>
"""


def make_iapr(root, labels="image"):
    records = {
        ("00", "25"): ("Plaza de Armas", "a yellow building with white columns; two palm trees in front & cars;"),
        ("00", "26"): ("Playa", "a sandy beach with people;"),
        ("01", "1027"): ("Montaña", "a snowy mountain under a blue sky;"),  # written as Latin-1
        ("01", "1028"): ("Nothing", ""),
        ("01", "1029"): ("No image", "a dog on a road;"),
        ("02", "2001"): ("No label", "a red car;"),
    }
    for (sub, pid), (title, desc) in records.items():
        p = root / "annotations_complete_eng" / sub / f"{pid}.eng"
        p.parent.mkdir(parents=True, exist_ok=True)
        text = ENG.format(sub=sub, id=pid, title=title, desc=desc)
        p.write_bytes(text.encode("latin-1" if pid == "1027" else "utf-8"))
        if pid != "1029":
            write_jpeg(root / "images" / sub / f"{pid}.jpg")
    (root / "annotations_complete_eng" / "02" / "broken.eng").write_text("not a record\n")
    if labels == "image":
        (root / "labels.txt").write_text("25 building palm car\n26 beach person\n1027 mountain sky\n1029 dog\n1028 sky\n")
    else:
        (root / "labels.txt").write_text("25 1 3\n25 2 7\n26 1 5\n1027 1 9\n1029 1 7\n1028 1 9\n")
        (root / "wlist.txt").write_text("3 building\n5 beach\n7 car\n9 sky\n")


def test_iapr_reads_eng_records_labels_and_reports_every_drop(tmp_path):
    make_iapr(tmp_path)
    before = snapshot(tmp_path)
    ds = load_dataset("iapr", tmp_path)
    assert snapshot(tmp_path) == before
    assert ds.ids.tolist() == ["25", "26", "1027"]
    assert ds.texts[0].startswith("a yellow building") and "&" in ds.texts[0]
    assert ds.texts[2] == "a snowy mountain under a blue sky;"
    assert ds.text_kind == "sentence"
    assert ds.label_names == ["beach", "building", "car", "dog", "mountain", "palm", "person", "sky"]
    assert ds.labels[0].tolist() == [0, 1, 1, 0, 0, 1, 0, 0]
    r = ds.report
    assert r.n_listed == 7 and r.n_kept == 3
    assert r.dropped_by_reason() == {"malformed_row": 1, "no_text": 1, "missing_image": 1, "no_labels": 1}
    assert load_dataset("iapr", tmp_path, text_field="title").texts[1] == "Playa"
    assert len(load_dataset("iapr", tmp_path, keep_unlabeled=True)) == 4


def test_iapr_region_labels_with_names(tmp_path):
    make_iapr(tmp_path, labels="regions")
    ds = load_dataset("iapr", tmp_path, labels_format="regions")
    assert ds.label_names == ["beach", "building", "car", "sky"]  # numbers mapped to names, sorted
    assert ds.labels[ds.ids.tolist().index("25")].tolist() == [0, 1, 1, 0]


def test_iapr_without_labels_and_strict_errors_name_the_file(tmp_path):
    make_iapr(tmp_path)
    (tmp_path / "labels.txt").unlink()
    ds = load_dataset("iapr", tmp_path)
    assert ds.labels is None and len(ds) == 4 and any("no label file" in n for n in ds.report.notes)
    with pytest.raises(MissingFileError, match=r"1029\.jpg \(01/1029\.eng\)"):
        load_dataset("iapr", tmp_path, strict=True)
    write_jpeg(tmp_path / "images" / "01" / "1029.jpg")
    with pytest.raises(DataError, match=r"broken\.eng"):
        load_dataset("iapr", tmp_path, strict=True)
    (tmp_path / "labels.txt").write_text("25\n")
    with pytest.raises(DataError, match=r"labels\.txt, line 1"):
        load_dataset("iapr", tmp_path)
    with pytest.raises(DataError, match="unknown option"):
        load_dataset("iapr", tmp_path, label_colum="x")


CATS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def make_coco(root, subset="val2014", n_images=4, garbage=()):
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    images = [{"id": 100 + i, "file_name": f"COCO_{subset}_{100 + i:012d}.jpg"} for i in range(n_images)]
    caps = []
    for i, im in enumerate(images):
        for k in range(3):
            caps.append({"id": 1000 * i + k, "image_id": im["id"], "caption": f"A dog {k} near car {i}" if k != 2 or i != 0 else "  "})
    caps.append({"id": 9999, "image_id": 555, "caption": "orphan caption"})
    inst = [{"id": 1, "image_id": 100, "category_id": 18}, {"id": 2, "image_id": 100, "category_id": 3}, {"id": 3, "image_id": 101, "category_id": 1}, {"id": 4, "image_id": 103, "category_id": 1}]
    (ann / f"captions_{subset}.json").write_text(json.dumps({"images": images, "annotations": caps}))
    (ann / f"instances_{subset}.json").write_text(json.dumps({"images": images, "annotations": inst, "categories": list(reversed(CATS))}))
    for i, im in enumerate(images):
        if i == 3:
            continue  # missing image
        (write_garbage if i in garbage else write_jpeg)(root / subset / im["file_name"])
    return images


def test_coco_one_pair_per_caption_with_groups_labels_and_drops(tmp_path):
    images = make_coco(tmp_path)
    before = snapshot(tmp_path)
    ds = load_dataset("coco", tmp_path)
    assert snapshot(tmp_path) == before
    assert ds.label_names == ["person", "car", "dog"]  # ordered by category id
    # image 100: 2 captions (one empty), image 101: 3, image 102: no instance, image 103: no file
    assert len(ds) == 5 and len(np.unique(ds.groups)) == 2
    assert ds.labels[0].tolist() == [0, 1, 1] and ds.labels[-1].tolist() == [1, 0, 0]
    assert ds.report.dropped_by_reason() == {"malformed_row": 1, "no_text": 1, "no_labels": 3, "missing_image": 3}
    assert ds.report.n_listed == 13
    orphan = [d for d in ds.report.dropped if d.reason == "malformed_row"][0]
    assert "annotations[12]: image_id 555" in orphan.detail
    assert ds.official_splits["val2014"].tolist() == list(range(5))
    assert ds.groups[0] == f"val2014/{images[0]['file_name']}"
    first = load_dataset("coco", tmp_path, captions="first", keep_unlabeled=True)
    assert len(np.unique(first.groups)) == len(first) == 3  # 100, 101, and 102 kept unlabeled; 103 has no file
    assert first.labels[2].sum() == 0
    assert first.texts[0] == "A dog 0 near car 0"


def test_coco_two_subsets_and_clear_errors(tmp_path):
    make_coco(tmp_path, "train2014")
    make_coco(tmp_path, "val2014", garbage=(1,))
    ds = load_dataset("coco", tmp_path)
    assert set(ds.official_splits) == {"train2014", "val2014"}
    assert len(ds.official_splits["train2014"]) == 5 and len(ds.official_splits["val2014"]) == 2
    assert ds.report.dropped_by_reason()["unreadable_image"] == 3
    only = load_dataset("coco", tmp_path, subsets="val2014")
    assert set(only.official_splits) == {"val2014"}
    with pytest.raises(DataError, match=r"000000000101\.jpg \(captions_val2014\.json annotations\[3\]\) cannot be read"):
        load_dataset("coco", tmp_path, subsets="val2014", strict=True)
    with pytest.raises(MissingFileError, match="captions_test2015.json"):
        load_dataset("coco", tmp_path, subsets="test2015")
    (tmp_path / "annotations" / "instances_val2014.json").write_text("{not json")
    with pytest.raises(DataError, match=r"instances_val2014\.json: not valid JSON"):
        load_dataset("coco", tmp_path, subsets="val2014")
    bad = {"images": [], "annotations": [{"image_id": 1, "category_id": 77}], "categories": CATS}
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="category 77"):
        load_dataset("coco", tmp_path, subsets="val2014")
