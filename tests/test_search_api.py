"""The Python search API and what a query means: cmhash.load / open_index, tag splitting, refusals,
the checkpoint hash an index records, and caption datasets (one image item per image, Recall@K)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import cmhash
from cmhash.cli import main as cli
from cmhash.errors import DataError
from cmhash.inference.queries import UnreadableQueryError, query_tokens
from serve_fixtures import caption_run, tag_index

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    return tag_index(tmp_path_factory.mktemp("tag"), backend="numpy")


def test_tags_split_on_commas_and_whitespace():
    from cmhash.data.text import Vocabulary

    v = Vocabulary(["beach", "dog", "new york"], [3, 3, 3], 10, kind="tags")
    assert query_tokens("dog beach", v) == ["dog", "beach"]
    assert query_tokens("Dog,  beach", v) == ["dog", "beach"]
    assert query_tokens("new york, dog", v) == ["new york", "dog"]  # a known multi-word tag stays whole


def test_load_encodes_texts_and_images_like_the_index(tagged):
    root, run, idx = tagged
    model = cmhash.load(run)
    assert model is cmhash.load(run / "checkpoint.pt")  # cached by content
    t = model.encode_text(["dog sky", "dog, sky"])
    assert t.shape == (2, 16) and t.dtype == np.int8 and set(np.unique(t)) <= {-1, 1}
    np.testing.assert_array_equal(t[0], t[1])  # whitespace = comma for tags
    from PIL import Image

    photo = root / "images128" / "im7.jpg"
    by_path, by_pil, by_bytes = model.encode_image([photo]), model.encode_image(Image.open(photo)), model.encode_image(photo.read_bytes())
    np.testing.assert_array_equal(by_path, by_pil)
    np.testing.assert_array_equal(by_path, by_bytes)
    index = cmhash.open_index(idx)
    hits = index.search_image(photo, k=40, target="image")
    assert hits[0].distance == 0 and "im7" in [h.id for h in hits if h.distance == 0]  # its own code (ties possible)
    hits = index.search_text("dog sky", k=7)
    assert len(hits) == 7 and [h.rank for h in hits] == list(range(1, 8))
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert all(h.image and h.image.endswith(".jpg") and h.text and h.modality == "image" for h in hits)
    texts = index.search_image(photo, k=3)
    assert all(h.modality == "text" and h.text for h in texts)


def test_a_query_the_tag_model_cannot_read_is_refused_with_what_it_reads(tagged, capsys):
    _, run, idx = tagged
    model = cmhash.load(run)
    with pytest.raises(UnreadableQueryError) as info:
        model.encode_text("xyzzy")
    msg = str(info.value)
    assert "vocabulary of 8 tags" in msg and "MiniLM" in msg and "docs/search.md" in msg
    assert set(info.value.suggestions) <= set(model.vocabulary.tokens) and info.value.suggestions
    capsys.readouterr()
    assert cli(["search", "--index", str(idx), "--text", "a photo of xyzzy"]) == 2
    err = capsys.readouterr().err
    assert "vocabulary of 8 tags" in err and "Traceback" not in err
    with pytest.raises(UnreadableQueryError, match="empty"):
        model.encode_text("   ")


def test_close_tags_are_suggested(tagged):
    _, run, _ = tagged
    with pytest.raises(UnreadableQueryError) as info:
        cmhash.load(run).encode_text("dogs citty")
    assert info.value.suggestions[:2] == ["dog", "city"]


def test_an_index_refuses_a_retrained_checkpoint(tagged, tmp_path, capsys):
    root, run, idx = tagged
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    own = tmp_path / "own.idx"
    assert cli(["index", "build", "--checkpoint", str(copy), "--backend", "numpy", "--out", str(own)]) == 0
    info = json.loads(json.dumps(cmhash.open_index(own).info))
    assert len(info["checkpoint_sha256"]) == 64
    ck = torch.load(copy / "checkpoint.pt", weights_only=False)  # "retrain": same path, other weights
    state = ck["method_state"]
    for key, value in state.items():
        if isinstance(value, dict):
            for name, tensor in value.items():
                if torch.is_tensor(tensor) and tensor.is_floating_point():
                    value[name] = tensor + 0.5
    torch.save(ck, copy / "checkpoint.pt")
    with pytest.raises(DataError, match="sha256 .*retrained or replaced"):
        cmhash.open_index(own).search_text("dog", k=3)
    capsys.readouterr()
    assert cli(["search", "--index", str(own), "--text", "dog"]) == 2
    assert "Rebuild the index" in capsys.readouterr().err


def test_an_open_index_notices_a_retrain_after_it_has_answered(tagged, tmp_path):
    """The query model's check is skipped while the checkpoint file is unchanged, never after it changed."""
    _, run, _ = tagged
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    own = tmp_path / "own.idx"
    assert cli(["index", "build", "--checkpoint", str(copy), "--backend", "numpy", "--out", str(own)]) == 0
    index = cmhash.open_index(own)
    first = index.search_text("dog", k=3)
    assert [h.id for h in index.search_text("dog", k=3)] == [h.id for h in first]
    model = index.model
    assert np.array_equal(model.encode_read_texts([model.read_text("dog, beach")]), model.encode_text("dog beach"))
    assert index.read_text("Dog xyzzy") == model.read_text("Dog xyzzy") == "dog"
    assert not any(m.training for m in model.checkpoint.method.nets.modules())  # an encode-only model stays in eval mode
    ck = torch.load(copy / "checkpoint.pt", weights_only=False)
    ck["meta"] = dict(ck.get("meta") or {}, retrained=True)  # same size class, new content
    torch.save(ck, copy / "checkpoint.pt")
    with pytest.raises(DataError, match="sha256 .*retrained or replaced"):
        index.search_text("dog", k=3)
    with pytest.raises(DataError, match="retrained or replaced"):  # and keeps refusing
        index.model


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("f8k")
    return caption_run(tmp)


def test_caption_index_has_one_item_per_image_and_one_per_caption(captions, tmp_path):
    root, run = captions
    idx = tmp_path / "f8k.idx"
    assert cli(["index", "build", "--checkpoint", str(run), "--backend", "faiss", "--split", "all", "--out", str(idx)]) == 0
    index = cmhash.open_index(idx)
    counts = index.describe()["counts"]
    assert counts == {"image": 12, "text": 36}
    hits = index.search_text("a dog with a cat", k=12)
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)) == 12  # every image once
    assert all(h.image.endswith("_img.jpg") and len(h.texts) == 3 and h.metadata["group"] == h.id for h in hits)
    assert "labels" not in hits[0].metadata  # no bare group numbers
    texts = index.search_image(root / "Images" / "1000_img.jpg", k=36)
    assert len({h.id for h in texts}) == 36 and all("#" in h.id and h.text for h in texts)
    item = index.get("1000_img.jpg")
    assert item["modality"] == "image" and len(item["texts"]) == 3
    # add and remove keep the per-modality layout; the file is rewritten atomically
    index.add("new#0", text="a red bike on the snow")
    assert cmhash.open_index(idx).describe()["counts"] == {"image": 12, "text": 37}
    index.remove("new#0")
    assert cmhash.open_index(idx).describe()["counts"]["text"] == 36


def test_encode_then_eval_prints_recall_at_k_for_captions(captions, tmp_path, capsys):
    _, run = captions
    codes = tmp_path / "codes.npz"
    assert cli(["encode", "--checkpoint", str(run), "--out", str(codes)]) == 0
    capsys.readouterr()
    assert cli(["eval", "--codes", str(codes), "--recall-k", "1", "5", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for task in ("i2t", "t2i"):
        r = [report[task][f"recall@{k}"] for k in (1, 5, 10)]
        assert 0 <= r[0] <= r[1] <= r[2] <= 1
    assert report["t2i"]["recall@10"] == 1.0  # 3 test images: every image is within the top 10


def test_index_from_a_caption_codes_file_groups_captions_too(captions, tmp_path):
    root, run = captions
    codes = tmp_path / "codes.npz"
    assert cli(["encode", "--checkpoint", str(run), "--out", str(codes)]) == 0
    idx = tmp_path / "codes.idx"
    assert cli(["index", "build", "--codes", str(codes), "--backend", "numpy", "--out", str(idx)]) == 0
    index = cmhash.open_index(idx, model=run)
    assert index.describe()["counts"] == {"image": 3, "text": 9}  # official test split: 3 images x 3 captions
    hits = index.search_text("a dog with a cat", k=5)
    assert len(hits) == 3 and len({h.id for h in hits}) == 3
