"""DVSH building blocks: sentence/fusion/feature hash nets and the two max-margin losses."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cmhash.methods.losses import bitwise_margin_loss, cosine_margin_loss, pair_signs  # noqa: E402
from cmhash.nets.sentence import FeatureHashNet, FusionHashNet, SentenceHashNet  # noqa: E402


def _ids():
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0], [2, 3, 4, 5, 6]])
    return ids, torch.tensor([3, 1, 5])


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_sentence_net_ignores_padding_and_bounds_codes(pool):
    torch.manual_seed(0)
    net = SentenceHashNet(vocab_size=8, bits=6, embed_dim=4, hidden=5, pool=pool).eval()
    ids, lengths = _ids()
    out = net(ids, lengths)
    assert out.shape == (3, 6) and out.abs().max() < 1
    wider = torch.cat([ids, torch.zeros(3, 4, dtype=ids.dtype)], dim=1)  # more padding changes nothing
    assert torch.allclose(net(wider, lengths), out, atol=1e-6)
    alone = net(ids[1:2, :1], lengths[1:2])
    assert torch.allclose(alone, out[1:2], atol=1e-6)


def test_embedding_init_is_copied_and_padding_row_zeroed():
    init = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)
    net = SentenceHashNet(vocab_size=8, bits=6, embed_dim=4, hidden=5, embedding_init=init)
    assert torch.equal(net.embed.weight[3], torch.from_numpy(init[3]))
    assert not net.embed.weight[0].any()
    with pytest.raises(ValueError, match="shape"):
        SentenceHashNet(vocab_size=9, bits=6, embed_dim=4, hidden=5, embedding_init=init)


def test_fusion_net_sees_the_image_at_every_step():
    torch.manual_seed(0)
    net = FusionHashNet(vocab_size=8, image_dim=7, bits=6, embed_dim=4, hidden=5, image_proj=3).eval()
    ids, lengths = _ids()
    img = torch.randn(3, 7)
    out = net(img, ids, lengths)
    assert out.shape == (3, 6) and out.abs().max() < 1
    assert not torch.allclose(net(img.flip(0), ids, lengths), out)  # the image matters
    assert torch.allclose(net(img, torch.cat([ids, torch.zeros(3, 2, dtype=ids.dtype)], 1), lengths), out, atol=1e-6)
    assert net.lstm.input_size == 4 + 3


def test_feature_net_shape():
    out = FeatureHashNet(7, 6, hidden=9)(torch.randn(4, 7))
    assert out.shape == (4, 6) and out.abs().max() < 1


def test_pair_signs_share_a_label():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert pair_signs(labels, labels).tolist() == [[1, -1, 1], [-1, 1, -1], [1, -1, 1]]


def _loop_loss(a, b, s, margin, neg=None, balance=False):
    pos, negs = [], []
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            c = float(np.dot(a[i], b[j]) / np.linalg.norm(a[i]) / np.linalg.norm(b[j]))
            if s[i, j] > 0:
                pos.append(max(0.0, margin - c))
            else:
                negs.append(max(0.0, (margin if neg is None else -neg) + c))
    if balance:
        return (np.mean(pos) if pos else 0) + (np.mean(negs) if negs else 0)
    return float(np.mean(pos + negs))


@pytest.mark.parametrize("neg,balance", [(None, False), (None, True), (0.0, True), (0.2, False)])
def test_cosine_margin_loss_matches_a_plain_loop(neg, balance):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    labels_a, labels_b = rng.integers(0, 2, (5, 3)), rng.integers(0, 2, (6, 3))
    s = pair_signs(torch.tensor(labels_a), torch.tensor(labels_b))
    got = cosine_margin_loss(torch.tensor(a), torch.tensor(b), s, margin=0.5, negative_margin=neg, balance=balance)
    assert got.item() == pytest.approx(_loop_loss(a, b, s.numpy(), 0.5, neg, balance), rel=1e-6)


def test_cosine_margin_loss_is_zero_when_margins_are_met_and_has_gradients():
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    s = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert cosine_margin_loss(a, a, s, margin=0.5).item() == 0.0
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    loss = cosine_margin_loss(a, b, s, margin=0.5)
    loss.backward()
    assert loss.item() > 0 and a.grad.abs().sum() > 0


def test_bitwise_margin_loss():
    h = torch.tensor([[0.9, -0.1], [0.0, -0.6]])
    assert bitwise_margin_loss(h, 0.5).item() == pytest.approx((0 + 0.4 + 0.5 + 0) / 4)
