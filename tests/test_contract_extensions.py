"""The method contract's extensions (issue 9): labels, token text, optimisers and extra learnable
state, the whole-training-set epoch hook, one hyper-parameter convention, the shallow base, old
checkpoints, and every method finding the same features."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn as nn
from trainer_fixtures import fit_interrupted

from cmhash.data.dataset import PairedDataset
from cmhash.data.tokens import PAD, TokenSequences
from cmhash.errors import CmhashError, DataError
from cmhash.inference import load_checkpoint
from cmhash.methods.deep import DeepHashMethod
from cmhash.methods.shallow import ShallowHashMethod
from cmhash.nets.heads import LearnableScalar, MLPHashNet
from cmhash.nets.text import TokenHashNet
from cmhash.training.batch import TokenBatch
from cmhash.training.checkpoint import save_method, save_payload
from cmhash.training.trainer import TrainConfig, Trainer


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: one thread (two threads on a loaded 2-core machine made each fit ~100x slower)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny(n=96, classes=3, seed=0, tokens=False) -> PairedDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    img = (rng.normal(0, 0.3, (n, 12)) + np.eye(classes, 12)[y] * 2).astype(np.float32)
    txt = np.maximum(rng.normal(0, 0.05, (n, 8)) + np.eye(classes, 8)[y], 0).astype(np.float32)
    toks = None
    if tokens:  # class-specific words (ids 2..), lengths 0..5, so padding really varies
        seqs = [[2 + y[i] * 3 + int(rng.integers(0, 3)) for _ in range(int(rng.integers(0, 6)))] for i in range(n)]
        toks = TokenSequences.from_lists(seqs, vocab_size=2 + 3 * classes)
    return PairedDataset(
        name="tiny", ids=np.arange(n).astype(str), image_features=img, text_features=txt,
        labels=np.eye(classes, dtype=np.uint8)[y], text_tokens=toks,
    )  # fmt: skip


def cfg(tmp=None, **kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, seed=0, run_dir=None if tmp is None else str(tmp), progress=False, tensorboard=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


class Probe(DeepHashMethod):
    """A small deep method recording what the trainer hands it."""

    name: ClassVar[str] = "probe"
    DEFAULTS: ClassVar[dict[str, Any]] = {"lr_image": 0.01, "lr_text": 0.01, "lr_fusion": 0.01, "lr_scale": 0.01, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}

    def __init__(self, bits, **hp):
        super().__init__(bits, **hp)
        self.seen: list[Any] = []
        self.hook: list[Any] = []
        self.global_sim = None

    def build(self, spec, for_training=True):
        text = TokenHashNet(spec.vocab_size, self.bits, embed_dim=8, hidden=8) if spec.text_mode == "tokens" else MLPHashNet(spec.text_dim, self.bits, hidden=8)
        self.nets = nn.ModuleDict(
            {"image": MLPHashNet(spec.image_dim, self.bits, hidden=8), "text": text,
             "fusion": nn.Linear(2 * self.bits, self.bits), "scale": LearnableScalar(1.0)}
        )  # fmt: skip

    def on_epoch_start(self, epoch, train):
        self.hook.append((epoch, len(train), train.labels is not None, train.image.shape))
        f = nn.functional.normalize(train.image, dim=1)
        self.global_sim = f @ f.T  # a global similarity over the whole training set
        return {"sim_mean": float(self.global_sim.mean())}

    def training_loss(self, batch):
        self.seen.append(batch)
        hi, ht = self.fwd["image"](batch.image), self.fwd["text"](batch.text)
        fused = self.fwd["fusion"](torch.cat([hi, ht], 1))
        s = self.global_sim.index_select(0, batch.index).index_select(1, batch.index)
        b = torch.tanh(self.nets["scale"]() * torch.cat([hi, ht, fused]))
        bi, bt, bf = b.split(len(batch))
        target = s if batch.labels is None else (batch.labels @ batch.labels.T).clamp(max=1)
        loss = sum(((x @ z.T) / self.bits - target).pow(2).mean() for x, z in ((bi, bt), (bi, bf), (bt, bf)))
        return loss, {"scale": self.nets["scale"]().detach()}

    def training_state(self):
        return {"hook_epochs": torch.tensor([h[0] for h in self.hook])}

    def load_training_state(self, state):
        self.restored = state


class SupervisedProbe(Probe):
    name: ClassVar[str] = "probe-sup"
    uses_labels: ClassVar[bool] = True


class TokenProbe(Probe):
    name: ClassVar[str] = "probe-tok"
    text_input: ClassVar[str] = "tokens"


def fit(method, ds, config):
    Trainer(method, ds, config, spec=method.input_spec_for(ds)).fit()
    return method


# ---------------------------------------------------------------------------- labels
def test_labels_reach_supervised_methods_only():
    ds = tiny()
    unsup = fit(Probe(8), ds, cfg())
    assert all(b.labels is None for b in unsup.seen) and not any(h[2] for h in unsup.hook)
    sup = fit(SupervisedProbe(8), ds, cfg())
    b = sup.seen[0]
    assert b.labels.dtype == torch.float32 and b.labels.shape == (16, 3)
    np.testing.assert_array_equal(b.labels.numpy(), ds.labels[b.index.numpy()])
    assert all(h[2] for h in sup.hook)
    no_labels = PairedDataset(name="nolab", ids=ds.ids, image_features=ds.image_features, text_features=ds.text_features)
    with pytest.raises(DataError, match="supervised"):
        SupervisedProbe(8).input_spec_for(no_labels)


# ---------------------------------------------------------------------------- token text
def test_token_sequences_are_padded_ids_with_lengths_and_checked():
    seqs = TokenSequences.from_lists([[5, 3], [], [2, 2, 4]], vocab_size=6)
    assert seqs.ids.tolist() == [[5, 3, PAD], [PAD, PAD, PAD], [2, 2, 4]] and seqs.lengths.tolist() == [2, 0, 3]
    assert seqs.subset([2, 0]).ids.tolist() == [[2, 2, 4], [5, 3, PAD]]
    with pytest.raises(DataError, match="row 0 has non-PAD"):
        TokenSequences(np.array([[1, 2]]), np.array([1]), 5)
    with pytest.raises(DataError, match="outside"):
        TokenSequences(np.array([[7]]), np.array([1]), 5)
    t = TokenSequences.from_texts(["Sky, sea", "dog"], vocabulary=["sky", "sea"], max_len=4)
    assert t.ids.tolist() == [[2, 3, 0, 0], [1, 0, 0, 0]] and t.vocab_size == 4
    with pytest.raises(DataError, match="text_tokens"):
        PairedDataset(name="x", ids=["a", "b"], image_features=np.zeros((2, 3)), text_tokens=TokenSequences.from_lists([[2]], 3))


def test_token_text_trains_in_batches_of_padded_sequences_and_encodes():
    ds = tiny(tokens=True)
    m = fit(TokenProbe(8), ds, cfg())
    b = m.seen[0]
    assert isinstance(b.text, TokenBatch) and b.text.ids.dtype == torch.int64
    idx = b.index.numpy()
    lengths = ds.text_tokens.lengths[idx]
    assert b.text.lengths.tolist() == lengths.tolist() and b.text.ids.shape == (16, max(int(lengths.max()), 1))
    np.testing.assert_array_equal(b.text.ids.numpy(), ds.text_tokens.ids[idx][:, : b.text.ids.shape[1]])
    assert m.spec.text_mode == "tokens" and m.spec.vocab_size == ds.text_tokens.vocab_size
    codes = m.encode(ds, "text")
    assert codes.shape == (len(ds), 8) and codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(codes, m.encode(ds.text_tokens, "text"))
    with pytest.raises(DataError, match="token"):
        TokenProbe(8).input_spec_for(tiny())


# ---------------------------------------------------------------------------- optimisers, extra nets, learnable params
class AdamProbe(Probe):
    """Adam takes no momentum: a method choosing Adam states betas instead."""

    name: ClassVar[str] = "probe-adam"
    DEFAULTS: ClassVar[dict[str, Any]] = {**{k: v for k, v in Probe.DEFAULTS.items() if k != "momentum"}, "optimizer": "adam"}

    def param_groups(self):
        groups = super().param_groups()
        groups["scale"].update(optimizer="sgd", lr=0.05)  # one group may use another optimiser
        for name in ("image", "text", "fusion"):
            groups[name]["betas"] = (0.8, 0.9)
        return groups


@pytest.mark.parametrize(
    "method, kinds",
    [
        (lambda: Probe(8), {"image": torch.optim.SGD, "scale": torch.optim.SGD}),
        (lambda: Probe(8, optimizer="rmsprop", momentum=0.5), {"image": torch.optim.RMSprop, "fusion": torch.optim.RMSprop}),
        (lambda: AdamProbe(8, weight_decay=1e-4), {"image": torch.optim.Adam, "text": torch.optim.Adam, "scale": torch.optim.SGD}),
    ],
)
def test_optimiser_per_method_with_extra_networks_and_learnable_parameters(method, kinds):
    m = method()
    m.setup(m.input_spec_for(tiny()))
    before = m.nets["scale"].value.item()
    fit(m, tiny(), cfg())
    opts = m.make_optimizers()
    assert set(opts) == {"image", "text", "fusion", "scale"}
    for name, cls in kinds.items():
        assert type(opts[name]) is cls
    assert m.nets["scale"].value.item() != before  # the learnable scale was trained
    if isinstance(m, AdamProbe):
        assert opts["image"].param_groups[0]["betas"] == (0.8, 0.9) and opts["scale"].param_groups[0]["lr"] == 0.05
    with pytest.raises(CmhashError, match="adam does not take momentum"):
        fit(Probe(8, optimizer="adam"), tiny(), cfg())


def test_unknown_optimiser_is_a_clear_error():
    with pytest.raises(CmhashError, match="unknown optimizer 'lbfgs'"):
        fit(Probe(8, optimizer="lbfgs"), tiny(), cfg())


def test_extra_networks_learnable_parameters_and_training_state_survive_checkpoint_and_resume(tmp_path, monkeypatch):
    from cmhash.methods import METHODS
    from cmhash.training.checkpoint import read_payload

    METHODS.names()
    monkeypatch.setitem(METHODS._entries, "probe", Probe)
    ds = tiny()
    hp = dict(optimizer="rmsprop", momentum=0.5)
    full = fit(Probe(8, **hp), ds, cfg(tmp_path / "full", epochs=3))
    # an interrupted run: stopped during epoch 3, then resumed from the checkpoint of epoch 2
    stopper = Probe(8, **hp)
    fit_interrupted(Trainer(stopper, ds, cfg(tmp_path / "stop", epochs=3), spec=stopper.input_spec_for(ds)), 3)
    saved = read_payload(tmp_path / "stop" / "checkpoint.pt")
    assert not saved["finished"] and set(saved["optimizers"]) == {"image", "text", "fusion", "scale"}
    assert {"fusion", "scale"} <= set(saved["method_state"]["nets"])
    assert saved["method_training_state"]["hook_epochs"].tolist() == [1, 2]
    resumed = fit(Probe(8, **hp), ds, cfg(tmp_path / "stop", epochs=3, resume=True))
    assert resumed.restored["hook_epochs"].tolist() == [1, 2]
    sa, sb = full.nets.state_dict(), resumed.nets.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.nets["scale"].value.item() != 1.0
    ck = load_checkpoint(tmp_path / "full")
    assert torch.equal(ck.method.nets["scale"].value, full.nets["scale"].value)
    assert torch.equal(ck.method.nets["fusion"].weight, full.nets["fusion"].weight)
    np.testing.assert_array_equal(ck.encode(ds, "image"), full.encode(ds, "image"))


# ---------------------------------------------------------------------------- epoch hook
def test_epoch_hook_sees_the_whole_training_set_every_epoch():
    ds = tiny()
    m = fit(Probe(8), ds, cfg(epochs=3))
    assert [h[0] for h in m.hook] == [1, 2, 3]
    assert all(h[1] == len(ds) and tuple(h[3]) == ds.image_features.shape for h in m.hook)
    assert m.global_sim.shape == (len(ds), len(ds))
    assert "sim_mean" in m.history[0]


# ---------------------------------------------------------------------------- hyper-parameters
def test_one_hyper_parameter_convention_for_deep_and_shallow():
    from cmhash.methods import create_method

    for name in ("djsrh", "cmfh"):
        with pytest.raises(CmhashError, match=f"{name}: unknown hyper-parameter.*nonsense.*known:"):
            create_method(name, 16, nonsense=1)
        cls = __import__("cmhash.methods", fromlist=["METHODS"]).METHODS.get(name)
        assert create_method(name, 16).hparams.keys() == cls.DEFAULTS.keys()
    with pytest.raises(CmhashError, match="bits"):
        create_method("cmfh", 0)


def test_presets_split_hyper_parameters_from_run_settings(tmp_path, monkeypatch):
    import cmhash.presets as P

    def fake(text):
        monkeypatch.setattr(P, "_read", lambda method: __import__("yaml").safe_load(text))

    fake("default: {hparams: {a: 1}, run: {split: random}}\nwiki: {source: s, hparams: {a: 2}, run: {eval_every: 5}}")
    p = P.load_preset("m", "wiki")
    assert p.hparams == {"a": 2} and p.run == {"split": "random", "eval_every": 5} and p.source == "s"
    fake("default: {a: 1}")
    with pytest.raises(CmhashError, match="section 'default': unknown key.*hparams:"):
        P.load_preset("m")
    fake("default: {run: {beta: 1}}")
    with pytest.raises(CmhashError, match="unknown run setting.*beta"):
        P.load_preset("m")


def test_every_shipped_preset_section_builds_its_method():
    from cmhash.methods import METHODS, create_method
    from cmhash.presets import has_presets, sections

    for name in METHODS.names():
        if not has_presets(name):
            continue
        for sec, preset in sections(name).items():
            create_method(name, 16, **{**P_load(name, sec)})


def P_load(name, sec):
    from cmhash.presets import load_preset

    return load_preset(name, None if sec == "default" else sec).hparams


# ---------------------------------------------------------------------------- shallow base
class MeanProj(ShallowHashMethod):
    """A toy shallow method on the base: P = random projection seeded by hparams."""

    name: ClassVar[str] = "meanproj"
    DEFAULTS: ClassVar[dict[str, Any]] = {"seed": 0, "center": True}

    def fit_features(self, feats, labels=None, progress=None):
        rng = np.random.default_rng(self.hparams["seed"])
        for m, f in feats.items():
            self.arrays[f"P_{m}"] = rng.standard_normal((f.shape[1], self.bits))
        self.history = [0.0]


class SupMeanProj(MeanProj):
    name: ClassVar[str] = "supmeanproj"
    uses_labels: ClassVar[bool] = True

    def fit_features(self, feats, labels=None, progress=None):
        self.got_labels = labels
        super().fit_features(feats)


def test_shallow_base_centres_checks_and_round_trips(tmp_path):
    ds = tiny()
    m = MeanProj(8).fit(ds)
    np.testing.assert_allclose(m.arrays["mean_image"], ds.image_features.astype(np.float64).mean(0), rtol=1e-12)
    expected = np.where((ds.image_features - m.arrays["mean_image"]) @ m.arrays["P_image"] >= 0, 1, -1)
    np.testing.assert_array_equal(m.encode(ds, "image"), expected)
    assert not MeanProj(8, center=False).fit(ds).arrays["mean_text"].any()
    again = MeanProj.from_state(m.state())
    np.testing.assert_array_equal(again.encode(ds.text_features, "text"), m.encode(ds, "text"))
    save_method(tmp_path / "c.pt", m)
    bad = ds.image_features.copy()
    bad[5, 1] = np.inf
    with pytest.raises(DataError, match="meanproj: image features of training row 5"):
        MeanProj(8).fit({"image": bad, "text": ds.text_features})
    with pytest.raises(DataError, match="pairs"):
        MeanProj(8).fit({"image": ds.image_features, "text": ds.text_features[:3]})
    with pytest.raises(DataError, match="2-D"):
        m.encode(ds.image_features[0], "image")
    with pytest.raises(DataError, match="trained on 12"):
        m.encode(ds.image_features[:, :5], "image")
    with pytest.raises(CmhashError, match="lacks 'P_text'"):
        MeanProj.from_state({k: v for k, v in m.state().items() if k != "P_text"})
    assert getattr(MeanProj(8).fit(ds), "got_labels", "never") == "never"
    assert SupMeanProj(8).fit(ds).got_labels.shape == (len(ds), 3)


# ---------------------------------------------------------------------------- old checkpoints
OLD_DJSRH_HPARAMS = {
    "beta": 0.6, "eta": 0.4, "mu": 1.5, "lambda1": 0.1, "lambda2": 0.1, "alpha": "sqrt", "rescale_similarity": True,
    "lr_image": 0.001, "lr_text": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 32, "epochs": 80,
    "fused_optimizer": "auto", "hidden": 16, "image_mode": "features", "backbone": "efficientnet-lite0",
    "backbone_weights": None, "finetune": "all", "sparse_text": True, "variant": "djsrh",
}  # fmt: skip


def test_checkpoints_written_before_the_layout_change_still_load(tmp_path):
    """Files exactly as the code before issue 9 wrote them (no text_mode, no optimizer key, flat CMFH state)."""
    ds = tiny()
    torch.manual_seed(0)
    image, text = MLPHashNet(12, 8, hidden=16, sparse_input=False), MLPHashNet(8, 8, hidden=16)
    old_spec = {"text_dim": 8, "image_mode": "features", "image_dim": 12, "backbone": None, "backbone_weights": None, "finetune": "all", "features": {}}
    payload = {
        "method": "djsrh", "bits": 8, "meta": {"seed": 0}, "epoch": 80, "epochs": 80, "finished": True, "history": [],
        "method_state": {"bits": 8, "hparams": OLD_DJSRH_HPARAMS, "spec": old_spec,
                         "nets": {"image": image.state_dict(), "text": text.state_dict()}},
    }  # fmt: skip
    save_payload(tmp_path / "djsrh.pt", payload)
    ck = load_checkpoint(tmp_path / "djsrh.pt")
    with torch.no_grad():
        want = np.where(image(torch.from_numpy(ds.image_features)).numpy() >= 0, 1, -1)
    np.testing.assert_array_equal(ck.encode(ds, "image"), want)
    assert ck.method.spec.text_mode == "features" and ck.method.hparams["optimizer"] == "sgd"

    rng = np.random.default_rng(0)
    old_cmfh = {
        "method": "cmfh", "bits": 8, "history": [3.0, 2.0],
        "hparams": {"alpha": [0.5, 0.5], "gamma": 0.01, "mu": 100.0, "iterations": 30, "tol": None, "seed": 0,
                    "center": True, "bmc_compat": False, "order": "PUV"},
        "mean_image": rng.standard_normal(12), "mean_text": rng.standard_normal(8),
        "P_image": rng.standard_normal((12, 8)), "P_text": rng.standard_normal((8, 8)),
    }  # fmt: skip
    save_payload(tmp_path / "cmfh.pt", {"method": "cmfh", "bits": 8, "method_state": old_cmfh, "meta": {}, "finished": True})
    ck = load_checkpoint(tmp_path / "cmfh.pt")
    want = np.where((ds.text_features - old_cmfh["mean_text"]) @ old_cmfh["P_text"] >= 0, 1, -1)
    np.testing.assert_array_equal(ck.encode(ds, "text"), want)


# ---------------------------------------------------------------------------- same features for every method
def test_every_method_finds_the_same_ready_made_features(tmp_path, monkeypatch):
    """Issue 9: `cmhash train cmfh` failed with 'no image features' where `cmhash train djsrh` found the cache."""
    import json

    from features_fixtures import write_mirflickr_fixture

    from cmhash.cli import main
    from cmhash.data import load_dataset
    from cmhash.features import create_image_encoder, extract_features
    from cmhash.features.prepared import features_cache_dir

    monkeypatch.setenv("CMHASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CMHASH_FEATURES", raising=False)
    root = write_mirflickr_fixture(tmp_path / "mir", n=60)
    ds = load_dataset("mirflickr", root)
    extract_features(ds, create_image_encoder("tiny-image"), None, features_cache_dir("mirflickr"))
    common = ["--dataset", "mirflickr", "--data-root", str(root), "--bits", "8", "--split", "random",
              "--split-param", "num_query=10", "--split-param", "num_train=40", "--no-progress", "--no-tensorboard"]  # fmt: skip
    files = {}
    for method, extra in (("cmfh", ["--set", "iterations=2"]), ("djsrh", ["--epochs", "1", "--set", "hidden=8", "--num-val", "0"])):
        out = tmp_path / method
        assert main(["train", method, *common, *extra, "--out", str(out)]) == 0
        files[method] = json.loads((out / "metrics.json").read_text())["features"]
    assert files["cmfh"] == files["djsrh"] and files["cmfh"]["image_features"] == "tiny-image"
