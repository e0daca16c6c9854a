"""Every source on the real data in ../shared/data, with the counts its README gives (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_subdir
from data_fixtures import snapshot

from cmhash.cli import main
from cmhash.data import load_dataset
from cmhash.data.splits import make_split

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def mirflickr():
    root = shared_subdir("mirflickr25k")
    before = snapshot(root)
    ds = load_dataset("mirflickr", root)
    assert snapshot(root) == before, "loading wrote into the data folder"
    return ds


@pytest.fixture(scope="module")
def flickr8k():
    return load_dataset("flickr8k", shared_subdir("flickr8k"))


def test_wiki_official_split_2173_plus_693(capsys):
    root = shared_subdir("wikipedia")
    ds = load_dataset("wiki", root)
    assert len(ds) == 2866 and ds.report.dropped == []
    assert ds.image_features.shape == (2866, 128) and ds.text_features.shape == (2866, 10)
    assert ds.labels.shape == (2866, 10) and (ds.labels.sum(1) == 1).all()
    split = make_split(ds, "official")
    assert split.sizes() == {"query": 693, "database": 2173, "train": 2173}
    assert main(["data", "info", "wiki", "--root", str(root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["pairs"] == 2866 and rep["official_splits"]["query"] == 693


def test_mirflickr_7696_kept_12319_missing_and_1386_tags(mirflickr):
    ds = mirflickr
    assert len(ds) == 7696
    assert ds.report.n_listed == 20015
    assert ds.report.dropped_by_reason() == {"missing_image": 12319}
    assert ds.text_features.shape == (7696, 1386) and ds.meta["text_features"] == "tags-bow-1386"
    assert ds.labels.shape == (7696, 24) and ds.label_names[0] == "animals"
    assert all(int(i[2:]) <= 10000 for i in ds.ids)  # only images numbered 10000 or less are here
    split = make_split(ds, "djsrh", seed=0)
    assert split.sizes() == {"query": 2000, "database": 5696, "train": 5000}


def test_flickr8k_2500_images_5_captions_official_test_and_train(flickr8k):
    ds = flickr8k
    assert len(ds) == 12500 and len(np.unique(ds.groups)) == 2500
    _, counts = np.unique(ds.groups, return_counts=True)
    assert (counts == 5).all()
    assert ds.report.n_listed == 40455 and ds.report.dropped_by_reason() == {"missing_image": 27955}
    sp = ds.official_splits
    assert len(np.unique(ds.groups[sp["test"]])) == 1000 and len(sp["test"]) == 5000
    assert len(np.unique(ds.groups[sp["train"]])) == 1500 and len(sp["dev"]) == 0
    off = make_split(ds, "official")
    assert off.sizes() == {"query": 5000, "database": 5000, "train": 7500}
    train_list = (shared_subdir("flickr8k") / "splits" / "Flickr_8k.trainImages.txt").read_text().split()
    assert set(ds.groups[sp["train"]]) == set(train_list[:1500])  # the first 1,500 of the official train list


def test_flickr8k_first_caption_only():
    ds = load_dataset("flickr8k", shared_subdir("flickr8k"), first_caption_only=True)
    assert len(ds) == 2500 and len(ds.official_splits["test"]) == 1000


def test_fashion_8000_of_44441_rows_have_images():
    root = shared_subdir("fashion-small")
    ds = load_dataset("fashion", root)
    assert len(ds) == 8000 and ds.report.n_listed == 44441
    assert ds.report.dropped_by_reason() == {"missing_image": 36441}
    assert ds.labels.shape == (8000, 45) and (ds.labels.sum(1) == 1).all()
    master = load_dataset("fashion", root, label_column="masterCategory", check_images="exists")
    assert master.labels.shape[1] == 7 and len(master) == 8000


def test_cli_info_on_mirflickr_prints_the_counts(capsys):
    root = shared_subdir("mirflickr25k")
    assert main(["data", "info", "mirflickr", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "mirflickr: 7,696 pairs kept of 20,015 listed (12,319 dropped)" in out
    assert "missing_image" in out and "12,319" in out and "1386-d" in out
