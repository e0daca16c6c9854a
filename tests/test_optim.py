"""build_optimizer: Adam's default path is torch's multi-tensor one and matches the per-parameter loop bit for bit."""

from __future__ import annotations

import pytest
import torch

from cmhash.errors import CmhashError
from cmhash.training.optim import build_optimizer


def _train(kind, fused, steps=5, **opts):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(30, 20)), torch.nn.Parameter(torch.randn(20))]
    opt = build_optimizer(kind, params, 1e-3, fused=fused, **opts)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return opt, [p.detach().clone() for p in params]


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_auto_is_the_multi_tensor_path_with_the_loops_arithmetic(kind):
    loop_opt, loop = _train(kind, False, weight_decay=1e-2)
    auto_opt, auto = _train(kind, "auto", weight_decay=1e-2)
    assert loop_opt.defaults["foreach"] is False and auto_opt.defaults["foreach"] is True
    for a, b in zip(loop, auto):
        assert torch.equal(a, b)


def test_adam_fused_true_is_the_fused_kernel_equal_to_float_rounding():
    _, loop = _train("adam", False, weight_decay=1e-2)
    fused_opt, fused = _train("adam", True, weight_decay=1e-2)
    assert fused_opt.defaults["fused"] is True
    for a, b in zip(loop, fused):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_unknown_options_are_named():
    with pytest.raises(CmhashError, match="adam does not take momentum"):
        build_optimizer("adam", [torch.nn.Parameter(torch.zeros(2))], 1e-3, momentum=0.9)
