"""Flickr8k source: CSV and official token captions, official split lists, groups, protocols."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import snapshot, write_garbage, write_jpeg

from cmhash.data import load_dataset
from cmhash.data.splits import make_split
from cmhash.errors import DataError, MissingFileError

IMAGES = [f"{1000 + i}_abc.jpg" for i in range(8)]


def make_f8k(root, fmt="csv", present=range(6), garbage=(), splits=True, captions_per_image=5):
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        lines = ["image,caption"]
        for name in IMAGES:
            for k in range(captions_per_image):
                cap = f"A dog number {k} runs , fast" if k == 1 else f"caption {k} of {name}"
                lines.append(f'{name},"{cap}"' if "," in cap else f"{name},{cap}")
        (root / "captions.txt").write_text("\n".join(lines) + "\n")
    else:
        lines = [f"{name}#{k}\tcaption {k} of {name}" for name in IMAGES for k in range(captions_per_image)]
        (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for i in present:
        write_jpeg(root / "images224" / IMAGES[i])
    for i in garbage:
        write_garbage(root / "images224" / IMAGES[i])
    if splits:
        s = root / "splits"
        s.mkdir(exist_ok=True)
        (s / "Flickr_8k.trainImages.txt").write_text("\n".join(IMAGES[:4]) + "\n")
        (s / "Flickr_8k.devImages.txt").write_text(IMAGES[4] + "\n")
        (s / "Flickr_8k.testImages.txt").write_text("\n".join(IMAGES[5:8]) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "token"])
def test_one_record_per_caption_grouped_by_image(tmp_path, fmt):
    make_f8k(tmp_path, fmt=fmt)
    before = snapshot(tmp_path)
    ds = load_dataset("flickr8k", tmp_path)
    assert snapshot(tmp_path) == before
    assert len(ds) == 30 and ds.labels is None and ds.text_kind == "sentence"
    assert ds.report.n_listed == 40 and ds.report.dropped_by_reason() == {"missing_image": 10}
    assert ds.ids[0] == f"{IMAGES[0]}#0" and ds.groups[4] == IMAGES[0] and ds.groups[5] == IMAGES[1]
    assert len(np.unique(ds.groups)) == 6
    if fmt == "csv":
        assert ds.texts[1] == "A dog number 1 runs , fast"  # quoted comma kept
    sp = ds.official_splits
    assert len(sp["train"]) == 20 and len(sp["dev"]) == 5 and len(sp["test"]) == 5
    assert sp["query"].tolist() == sp["database"].tolist() == sp["test"].tolist()
    assert set(ds.groups[sp["test"]]) == {IMAGES[5]}


def test_official_protocol_and_group_aware_random_split(tmp_path):
    make_f8k(tmp_path, present=range(8))
    ds = load_dataset("flickr8k", tmp_path)
    off = make_split(ds, "official")
    assert set(ds.groups[off.query]) == set(IMAGES[5:8]) and len(off.query) == 15
    assert off.database.tolist() == off.query.tolist()
    assert set(ds.groups[off.train]) == set(IMAGES[:4])
    rnd = make_split(ds, "random", seed=3, num_query=2, num_train=3)
    assert len(set(ds.groups[rnd.query])) == 2 and len(rnd.query) == 10  # whole images, 5 captions each
    assert not set(ds.groups[rnd.query]) & set(ds.groups[rnd.database])
    for part in (rnd.query, rnd.database, rnd.train):
        for g in set(ds.groups[part]):
            assert (ds.groups[part] == g).sum() == 5  # captions of an image stay together


def test_first_caption_only_and_strict(tmp_path):
    make_f8k(tmp_path, present=range(5), garbage=[5])
    ds = load_dataset("flickr8k", tmp_path, first_caption_only=True)
    assert len(ds) == 5 and ds.ids.tolist() == [f"{n}#0" for n in IMAGES[:5]]
    assert ds.report.n_listed == 8 and ds.report.dropped_by_reason() == {"unreadable_image": 1, "missing_image": 2}
    assert len(ds.official_splits["test"]) == 0 and len(ds.official_splits["train"]) == 4
    with pytest.raises(Exception, match=rf"{IMAGES[5]} \(captions.txt line 27\)"):
        load_dataset("flickr8k", tmp_path, strict=True)


def test_text_features_and_bad_caption_files(tmp_path):
    make_f8k(tmp_path, splits=False)
    ds = load_dataset("flickr8k", tmp_path, text_features="bow", min_count=2)
    assert ds.official_splits == {} and ds.text_features.shape[0] == 30
    assert "caption" in ds.meta["vocabulary"]["tokens"]
    assert any("no official split" in n for n in ds.report.notes)
    (tmp_path / "captions.txt").write_text("picture,words\na.jpg,x\n")
    with pytest.raises(DataError, match="captions.txt: the header 'picture,words' names no image column"):
        load_dataset("flickr8k", tmp_path)
    (tmp_path / "captions.txt").write_text(f"image,caption\n{IMAGES[0]},ok\n{IMAGES[1]},\n{IMAGES[2]}\n")
    ds = load_dataset("flickr8k", tmp_path)
    assert len(ds) == 1 and ds.report.dropped_by_reason() == {"no_text": 1, "malformed_row": 1}
    with pytest.raises(DataError, match=r"captions.txt, line 4: 1 fields"):
        load_dataset("flickr8k", tmp_path, strict=True)
    with pytest.raises(MissingFileError, match="images224: no caption file found"):
        load_dataset("flickr8k", tmp_path / "images224")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "captions.txt").write_text("image,caption\na.jpg,x\n")
    with pytest.raises(MissingFileError, match=r"bare: no image folder found \(looked for images224, Images"):
        load_dataset("flickr8k", bare)


def test_overlapping_split_lists_are_an_error(tmp_path):
    make_f8k(tmp_path)
    (tmp_path / "splits" / "Flickr_8k.devImages.txt").write_text(IMAGES[0] + "\n")
    with pytest.raises(DataError, match=rf"Flickr_8k.devImages.txt: image {IMAGES[0]} is also in the train list"):
        load_dataset("flickr8k", tmp_path)
