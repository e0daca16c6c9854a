"""Feature cache: image files -> cache -> dataset, reuse/rebuild rules, resume after interruption, CLI."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from features_fixtures import write_awkward_images, write_images, write_mirflickr_fixture

from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.images import FileImageStore
from cmhash.errors import CmhashError, DataError, MissingFileError
from cmhash.features import FeatureCache, create_image_encoder, create_text_encoder, encoder_from_spec, extract_features

TAGS = ["sky, sea", "dog, park", "sky, night", "cat, dog", "sea, sky", "night, city", "dog", "sky", "city, dog", "sea"]


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CMHASH_CACHE", str(tmp_path_factory.getbasetemp() / "cmhash-cache"))


def make_dataset(tmp_path, n=10, with_bad=False, name="toy"):
    paths = write_images(tmp_path / "imgs", n)
    if with_bad:
        bad = write_awkward_images(tmp_path / "bad")
        paths[3] = bad["garbage"]
        paths[7] = bad["missing"]
    labels = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    return PairedDataset(
        name=name, ids=[f"p{i}" for i in range(n)], images=FileImageStore(paths), texts=TAGS[:n], text_kind="tags",
        labels=labels, report=LoadReport(name, n_listed=n, n_kept=n),
    )


def counting_hook():
    calls = []
    return calls, lambda entry, chunk: calls.append((entry, chunk))


# ----------------------------------------------------------------------------- end to end
def test_image_files_to_cache_and_back_with_efficientnet(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    ds = make_dataset(tmp_path, n=6)
    img, txt = create_image_encoder("efficientnet-lite0"), create_text_encoder("bow", min_count=1)
    cache = extract_features(ds, img, txt, tmp_path / "cache", batch_size=4, progress=False)
    # the files on disk are plain .npy, readable memory-mapped without cmhash
    arr = np.load(tmp_path / "cache" / "image_features.npy", mmap_mode="r")
    assert isinstance(arr, np.memmap) and arr.shape == (6, 1280) and arr.dtype == np.float32
    from cmhash.data.imageio import open_rgb

    direct = create_image_encoder("efficientnet-lite0").encode([open_rgb(p) for p in ds.images.paths])
    np.testing.assert_allclose(arr, direct, atol=1e-5)
    assert np.load(tmp_path / "cache" / "ids.npy").tolist() == ds.ids.tolist()
    # back into a dataset, with the encoder specs a model checkpoint would store
    loaded = FeatureCache.load(tmp_path / "cache")
    with_feats = loaded.apply(ds)
    assert with_feats.image_features.shape == (6, 1280) and with_feats.text_features.shape == (6, len(txt.vocab))
    np.testing.assert_array_equal(with_feats.labels, ds.labels)
    specs = with_feats.meta["encoders"]
    assert specs["image"]["name"] == "efficientnet-lite0" and specs["text"]["state"]["vocabulary"]["tokens"] == txt.vocab.tokens
    query = encoder_from_spec(specs["text"]).encode(["dog, sky"])
    np.testing.assert_array_equal(query, txt.encode(["dog, sky"]))
    m = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    e = m["entries"]["image"]
    assert e["encoder"]["name"] == "efficientnet-lite0" and e["encoder"]["version"] == "1"
    assert e["encoder"]["preprocess"]["normalize"] == "pm1" and e["encoder"]["weights"]["sha256"]
    assert e["input"]["count"] == 6 and len(e["input"]["sha256"]) == 64 and e["status"] == "complete"


def test_failed_images_are_recorded_zeroed_and_dropped_on_apply(tmp_path):
    ds = make_dataset(tmp_path, with_bad=True)
    cache = extract_features(ds, "tiny-image", None, tmp_path / "c", batch_size=2, progress=False)
    fails = cache.failures("image")
    assert [(f["row"], f["reason"], f["id"]) for f in fails] == [(3, "unreadable_image", "p3"), (7, "missing_image", "p7")]
    assert np.all(cache.image_features[[3, 7]] == 0)
    assert cache.valid_mask().tolist() == [i not in (3, 7) for i in range(10)]
    out = cache.apply(ds, text=None)
    assert out.ids.tolist() == [f"p{i}" for i in range(10) if i not in (3, 7)]
    assert out.report.n_kept == 8 and out.report.dropped_by_reason() == {"unreadable_image": 1, "missing_image": 1}
    kept = cache.apply(ds, text=None, drop_failed=False)
    assert len(kept) == 10
    with pytest.raises(DataError, match=r"row 3"):
        extract_features(ds, "tiny-image", None, tmp_path / "strict", strict=True, progress=False)


def test_apply_matches_ids_of_a_subset_and_refuses_other_datasets(tmp_path):
    ds = make_dataset(tmp_path)
    cache = extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=1), tmp_path / "c", progress=False)
    sub = ds.subset([5, 2, 9])
    out = cache.apply(sub)
    np.testing.assert_array_equal(out.image_features, np.asarray(cache.image_features)[[5, 2, 9]])
    other = PairedDataset(name="x", ids=["zz"], image_features=np.zeros((1, 2)), text_features=np.zeros((1, 2)))
    with pytest.raises(DataError, match="not in the feature cache"):
        cache.apply(other)


# ----------------------------------------------------------------------------- reuse / rebuild
def test_cache_is_reused_when_everything_matches_and_rebuilt_per_entry_otherwise(tmp_path):
    ds = make_dataset(tmp_path)
    out = tmp_path / "c"
    calls, hook = counting_hook()
    extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=1), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    assert ("image", 2) in calls and ("text", 0) in calls
    first = np.array(FeatureCache.load(out).image_features)

    calls.clear()
    extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=1), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    assert calls == []  # nothing recomputed

    calls.clear()  # the same files named by a relative path: still a match
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        rel = PairedDataset(name="toy", ids=ds.ids, images=FileImageStore([os.path.relpath(p) for p in ds.images.paths]), texts=ds.texts, text_kind="tags")
        extract_features(rel, "tiny-image", create_text_encoder("bow", min_count=1), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    finally:
        os.chdir(cwd)
    assert calls == []

    calls.clear()  # another text encoder option: the text entry is rebuilt, the images are kept
    extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=2), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    assert {c[0] for c in calls} == {"text"}

    calls.clear()  # another image encoder option: the image entry is rebuilt
    c = extract_features(ds, create_image_encoder("tiny-image", size=8), create_text_encoder("bow", min_count=2), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    assert {x[0] for x in calls} == {"image"} and c.image_features.shape == (10, 192)

    calls.clear()  # a changed image file: rebuilt (stat checksum sees the new size/mtime)
    from PIL import Image

    p = ds.images.paths[4]
    Image.new("RGB", (20, 20), (255, 0, 0)).save(p)
    os.utime(p, ns=(1, 1))
    c = extract_features(ds, create_image_encoder("tiny-image", size=8), create_text_encoder("bow", min_count=2), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook)
    assert {x[0] for x in calls} == {"image"}
    np.testing.assert_allclose(c.image_features[4].reshape(8, 8, 3)[..., 0], 1.0, atol=0.02)
    assert not np.array_equal(first[:, :192], c.image_features)

    calls.clear()  # force rebuilds everything
    extract_features(ds, create_image_encoder("tiny-image", size=8), create_text_encoder("bow", min_count=2), out, batch_size=2, chunk_size=4, progress=False, on_chunk=hook, force=True)
    assert {x[0] for x in calls} == {"image", "text"}


def test_another_dataset_in_the_same_folder_removes_stale_entries(tmp_path):
    ds = make_dataset(tmp_path)
    out = tmp_path / "c"
    extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=1), out, progress=False)
    sub = ds.subset([0, 1, 2, 3], name="toy4")
    c = extract_features(sub, None, create_text_encoder("bow", min_count=1), out, progress=False)
    assert set(c.entries) == {"text"} and len(c) == 4 and c.ids.tolist() == ["p0", "p1", "p2", "p3"]
    assert not (out / "image_features.npy").exists()


def test_text_fitted_on_a_split_and_changed_texts_rebuild(tmp_path):
    ds = make_dataset(tmp_path)
    out = tmp_path / "c"
    c1 = extract_features(ds, None, create_text_encoder("bow", min_count=1), out, fit_indices=[0, 1, 2], progress=False)
    assert c1.encoder("text").vocab.tokens == ["dog", "night", "park", "sea", "sky"]
    ds2 = PairedDataset(name="toy", ids=ds.ids, images=ds.images, texts=["zebra"] * 10, text_kind="tags")
    calls, hook = counting_hook()
    c2 = extract_features(ds2, None, create_text_encoder("bow", min_count=1), out, fit_indices=[0, 1, 2], progress=False, on_chunk=hook)
    assert calls and c2.encoder("text").vocab.tokens == ["zebra"]


# ----------------------------------------------------------------------------- resume
class Interrupt(Exception):
    pass


def test_interrupted_extraction_resumes_to_the_same_features(tmp_path):
    ds = make_dataset(tmp_path, n=10, with_bad=True)
    kwargs = dict(batch_size=2, chunk_size=4, progress=False)
    full = extract_features(ds, "tiny-image", create_text_encoder("tfidf", min_count=1), tmp_path / "full", **kwargs)

    def stop_after_first_image_chunk(entry, chunk):
        if entry == "image" and chunk == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        extract_features(ds, "tiny-image", create_text_encoder("tfidf", min_count=1), tmp_path / "part", on_chunk=stop_after_first_image_chunk, **kwargs)
    m = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert m["entries"]["image"]["status"] == "partial" and m["entries"]["image"]["done_chunks"] == [0]
    assert m["entries"]["text"]["status"] == "complete"
    assert (tmp_path / "part" / "image_features.partial.npy").exists() and not (tmp_path / "part" / "image_features.npy").exists()
    with pytest.raises(DataError, match="incomplete"):
        FeatureCache.load(tmp_path / "part").image_features

    calls, hook = counting_hook()
    resumed = extract_features(ds, "tiny-image", create_text_encoder("tfidf", min_count=1), tmp_path / "part", on_chunk=hook, **kwargs)
    assert calls == [("image", 1), ("image", 2)]  # only the unfinished chunks
    np.testing.assert_array_equal(resumed.image_features, full.image_features)
    np.testing.assert_array_equal(resumed.text_features, full.text_features)
    assert resumed.failures("image") == full.failures("image")
    assert resumed.entries["image"]["resumed"] == 1


def test_killed_process_resumes_to_the_same_features(tmp_path):
    """A real interruption: SIGKILL a CLI extraction mid-way, run the same command again."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import signal
    import subprocess
    import sys
    import time

    root = write_mirflickr_fixture(tmp_path / "mir", n=20)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("cmhash").__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "cmhash", "features", "extract", "--dataset", "mirflickr", "--data-root", str(root),
            "--image-encoder", "efficientnet-lite0", "--image-option", "backend=torch", "--threads", "1",
            "--source-option", "min_count=1", "--text-encoder", "bow", "--text-option", "min_count=1", "--batch-size", "2", "--chunk-size", "2",
            "--no-progress", "--workers", "0"]
    proc = subprocess.Popen(base + ["--out", str(tmp_path / "part")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = tmp_path / "part" / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            e = json.loads(manifest.read_text())["entries"].get("image")
        except (json.JSONDecodeError, OSError, KeyError):
            e = None
        if e and len(e["done_chunks"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    e = json.loads(manifest.read_text())["entries"]["image"]
    assert e["status"] == "partial" and 2 <= len(e["done_chunks"]) < e["num_chunks"]
    subprocess.run(base + ["--out", str(tmp_path / "part")], check=True, env=env, capture_output=True)
    # one uninterrupted run with the same settings (in this process: same arithmetic)
    from cmhash.data import load_dataset
    from cmhash.features.runtime import set_default_threads

    set_default_threads(1)
    a = extract_features(load_dataset("mirflickr", root, min_count=1), create_image_encoder("efficientnet-lite0", backend="torch", threads=1),
                         create_text_encoder("bow", min_count=1), tmp_path / "full", batch_size=2, chunk_size=2, workers=0, progress=False)
    b = FeatureCache.load(tmp_path / "part")
    np.testing.assert_array_equal(a.image_features, b.image_features)
    np.testing.assert_array_equal(a.text_features, b.text_features)
    assert b.entries["image"]["resumed"] == 1 and b.entries["image"]["status"] == "complete"


def test_two_extractions_cannot_write_one_cache_at_once(tmp_path):
    from cmhash.features.cache import _dir_lock

    ds = make_dataset(tmp_path, n=3)
    with _dir_lock(tmp_path / "c"):
        with pytest.raises(CmhashError, match=rf"process {os.getpid()} is writing this feature cache"):
            extract_features(ds, "tiny-image", None, tmp_path / "c", progress=False)


def test_shared_images_are_encoded_once(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    store = FileImageStore([paths[i] for i in (0, 0, 1, 1, 1, 2, 0)])  # 5 captions per image style
    ds = PairedDataset(name="f8k", ids=[f"c{i}" for i in range(7)], images=store, texts=["a"] * 7, text_kind="sentence")
    c = extract_features(ds, "tiny-image", None, tmp_path / "c", batch_size=2, chunk_size=2, progress=False)
    f = np.asarray(c.image_features)
    np.testing.assert_array_equal(f[0], f[1]) and np.testing.assert_array_equal(f[0], f[6])
    np.testing.assert_array_equal(f[2], f[4])
    assert not np.array_equal(f[0], f[2])
    assert c.entries["image"]["timing"]["rows_computed"] == 3


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(MissingFileError, match="features extract"):
        FeatureCache.load(tmp_path)
    ds = make_dataset(tmp_path, n=3)
    no_img = PairedDataset(name="feats", ids=ds.ids, image_features=np.zeros((3, 2)), texts=ds.texts)
    with pytest.raises(DataError, match="no image files"):
        extract_features(no_img, "tiny-image", None, tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="image encoder, a text encoder or both"):
        extract_features(ds, None, None, tmp_path / "c", progress=False)


# ----------------------------------------------------------------------------- CLI
def test_cli_extract_info_and_errors(tmp_path, capsys):
    from cmhash.cli import main

    root = write_mirflickr_fixture(tmp_path / "mir", n=8)
    out = tmp_path / "feats"
    rc = main(["features", "extract", "--dataset", "mirflickr", "--data-root", str(root), "--source-option", "min_count=1", "--image-encoder", "tiny-image",
               "--image-option", "size=8", "--text-encoder", "bow", "--text-option", "min_count=1", "--extra-text", "tf=tfidf",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    cache = FeatureCache.load(out)
    assert cache.image_features.shape == (8, 192) and set(cache.entries) == {"image", "text", "text.tf"}
    assert np.load(out / "text_features.tf.npy").shape[0] == 8
    capsys.readouterr()
    assert main(["features", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny-image v1" in text and "text.tf" in text and "stretch to 8 px" in text
    assert main(["features", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"]["image"]["dim"] == 192
    assert main(["features", "extract", "--dataset", "mirflickr", "--data-root", str(root), "--source-option", "min_count=1", "--image-encoder", "alexnet",
                 "--weights", str(tmp_path / "none.pth"), "--text-encoder", "none", "--out", str(tmp_path / "x")]) == 2
    assert "none.pth" in capsys.readouterr().err
    assert main(["features", "extract", "--dataset", "mirflickr", "--data-root", str(root), "--source-option", "min_count=1", "--image-encoder", "resnet",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown image encoder 'resnet'" in capsys.readouterr().err
    assert main(["features", "encoders"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out


def test_cli_prepare_uses_the_cache_root(tmp_path, monkeypatch, capsys):
    from cmhash.cli import main

    root = write_mirflickr_fixture(tmp_path / "mir", n=8)
    from cmhash.features import prepared

    monkeypatch.setitem(prepared.PREPARED_SETS, "mirflickr", prepared.PreparedSet(
        source="mirflickr", image=("tiny-image", {}), texts={"text": ("bow", {"min_count": 1})}, description="test",
        source_options={"min_count": 1},
    ))
    monkeypatch.setenv("CMHASH_CACHE", str(tmp_path / "cc"))
    assert main(["features", "prepare", "mirflickr", "--data-root", str(root), "--no-progress"]) == 0
    cache = FeatureCache.load(tmp_path / "cc" / "features" / "mirflickr")
    assert cache.complete("image") and cache.complete("text")
    # the dataset's own vocabulary (min_count=1 over all listed lines) is the BoW vocabulary
    from cmhash.data import load_dataset

    ds = load_dataset("mirflickr", root, min_count=1)
    np.testing.assert_array_equal(cache.text_features, ds.text_features)
    shutil.rmtree(tmp_path / "cc")
