"""UCCH: ranking loss and memory against plain references, one Adam, clipping, resume keeps the memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cmhash import metrics
from cmhash.methods import create_method
from cmhash.training.checkpoint import read_payload
from cmhash.training.trainer import Trainer
from cmhash.methods.ucch import BinaryMemory, in_batch_weight, memory_logits, memory_scores, ranking_loss
from test_trainer import _cfg, tiny

torch.set_num_threads(1)


def _reference_ranking(scores, margin, shift):
    n = scores.shape[0]
    total = 0.0
    for axis in (0, 1):
        s = scores if axis == 0 else scores.T  # rows: image queries; then text queries
        for i in range(n):
            pos = s[i, i]
            row = [v if v >= pos - margin else v - shift for v in s[i]]
            total += (-pos + math.log(sum(math.exp(v) for v in row)) + margin) / n
    return total


def test_ranking_loss_matches_a_loop_reference():
    torch.manual_seed(0)
    bi = torch.nn.functional.normalize(torch.randn(7, 16), dim=1)
    bt = torch.nn.functional.normalize(torch.randn(7, 16), dim=1)
    got = float(ranking_loss(bi, bt, margin=0.2, shift=0.1))
    assert got == pytest.approx(_reference_ranking((bi @ bt.T).numpy(), 0.2, 0.1), rel=1e-5)


def test_memory_logits_score_against_signs_and_the_update_is_a_normalised_momentum_step():
    torch.manual_seed(0)
    bits = 8
    bi = torch.nn.functional.normalize(torch.randn(3, bits), dim=1)
    bt = torch.nn.functional.normalize(torch.randn(3, bits), dim=1)
    weight = torch.randn(3, 5, bits)
    out_i, out_t = memory_logits(bi, bt, weight, temperature=0.5)
    ref = np.einsum("bkd,bd->bk", np.sign(weight.numpy()), bi.numpy()) / (0.5 * math.sqrt(bits))
    np.testing.assert_allclose(out_i.numpy(), ref, rtol=1e-5)
    mem = BinaryMemory(bits)
    mem.reset(10, torch.Generator().manual_seed(0))
    assert set(np.unique(np.abs(mem.memory.numpy()) * math.sqrt(bits)).round(5)) == {1.0}
    old = mem.memory.clone()
    idx = torch.tensor([2, 5, 7])
    mem.update(idx, bi, bt, momentum=0.4)
    mean = torch.nn.functional.normalize((bi + bt) / 2, dim=1)
    want = torch.nn.functional.normalize(0.4 * old[idx] + 0.6 * mean, dim=1)
    torch.testing.assert_close(mem.memory[idx], want)
    untouched = [i for i in range(10) if i not in (2, 5, 7)]
    torch.testing.assert_close(mem.memory[untouched], old[untouched])


def test_memory_scores_equal_the_gathered_rows_scores_values_and_gradients():
    """The (batch, n) product + column pick gives memory_logits on memory[draw] (repeats and exact zeros included)."""
    torch.manual_seed(0)
    bits, n, b, k = 16, 40, 6, 25
    memory = torch.nn.functional.normalize(torch.randn(n, bits), dim=1)
    memory[3, :4] = 0.0  # sign(0) counts as +1 in both
    draw = torch.randint(0, n, (b, k + 1))
    draw[:, 0] = torch.arange(b) + 1
    draw[0, 5] = draw[0, 6] = 3  # the same row drawn twice
    raw_i, raw_t = torch.randn(b, bits, requires_grad=True), torch.randn(b, bits, requires_grad=True)
    grads = []
    for fn in (lambda bi, bt: memory_logits(bi, bt, memory[draw], 0.9), lambda bi, bt: memory_scores(bi, bt, memory, draw, 0.9)):
        bi, bt = torch.nn.functional.normalize(raw_i, dim=1), torch.nn.functional.normalize(raw_t, dim=1)
        out_i, out_t = fn(bi, bt)
        assert out_i.shape == out_t.shape == (b, k + 1)
        loss = torch.nn.functional.cross_entropy(out_i, torch.zeros(b, dtype=torch.long)) + (out_t**2).sum()
        gi, gt = torch.autograd.grad(loss, (raw_i, raw_t))
        grads.append((out_i.detach(), out_t.detach(), gi, gt))
    for want, got in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_warmup_candidates_put_the_pair_first_then_every_other_pair():
    bi = torch.eye(4)
    w = in_batch_weight(bi, bi)
    assert w.shape == (4, 4, 4)
    for i in range(4):
        assert torch.equal(w[i, 0], bi[i])
        assert sorted(int(r.argmax()) for r in w[i, 1:]) == [j for j in range(4) if j != i]


def test_one_adam_over_both_nets_and_gradients_clipped():
    ds = tiny(128)
    m = create_method("ucch", 8, hidden=16, negatives=32, batch_size=32, epochs=1, clip_grad_norm=1e-3)
    m.fit(ds, progress=False, seed=0)
    opts = m.make_optimizers()
    assert list(opts) == ["joint"] and isinstance(opts["joint"], torch.optim.Adam)
    assert len(opts["joint"].param_groups[0]["params"]) == len(list(m.nets["image"].parameters())) + len(list(m.nets["text"].parameters()))
    m.before_step()  # grads of the last step exist: clipping leaves a total norm <= 1e-3
    norm = torch.sqrt(sum((p.grad ** 2).sum() for k in ("image", "text") for p in m.nets[k].parameters() if p.grad is not None))
    assert float(norm) <= 1e-3 * 1.001


def test_ucch_learns_and_resume_continues_the_memory_bit_identically(tmp_path, monkeypatch):
    ds = tiny(256)
    kw = dict(hidden=32, negatives=64, batch_size=32, epochs=4, lr=1e-3)

    def fit(run_dir, resume=False):
        m = create_method("ucch", 16, **kw)
        Trainer(m, ds, _cfg(run_dir, epochs=4, batch_size=32, resume=resume), spec=m.input_spec_for(ds)).fit()
        return m

    straight = fit(tmp_path / "a")
    qi, qt = straight.encode(ds, "image"), straight.encode(ds, "text")
    assert metrics.mean_average_precision(qi, qt, ds.labels, ds.labels, topk=50) > 0.6
    orig = Trainer._run_epoch

    def crash(self, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return orig(self, epoch, *args)

    monkeypatch.setattr(Trainer, "_run_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b")
    assert read_payload(tmp_path / "b" / "checkpoint.pt")["method_state"]["nets"]["memory"]["memory"].shape == (256, 16)
    monkeypatch.setattr(Trainer, "_run_epoch", orig)
    resumed = fit(tmp_path / "b", resume=True)
    torch.testing.assert_close(straight.nets["memory"].memory, resumed.nets["memory"].memory, rtol=0, atol=0)
    np.testing.assert_array_equal(straight.encode(ds, "text"), resumed.encode(ds, "text"))
