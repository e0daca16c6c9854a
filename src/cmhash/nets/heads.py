"""Hash heads shared by the deep methods: the MLP head, its sparse-input first layer, the tightening tanh.

* :class:`MLPHashNet`: ``in_dim -> hidden (ReLU) -> bits``. DJSRH's TxtNet, and the ImgNet of the
  feature mode (a trainable head over frozen image features). Its first layer skips all-zero
  input columns of the batch (bag-of-words input: ~5 of 1,386 tags per pair), which gives the
  same result up to float rounding at a fraction of the cost (see ``benchmarks/train_bench.py``).
* :class:`StandardizedInput`: a head over inputs centred and scaled by training statistics (kept
  as buffers, so encoding applies the same transform).
* :class:`LearnableScalar`: one trainable number (a scale or temperature) as a module, so it lives
  in ``method.nets`` and is saved, restored on ``--resume`` and optimised like any network.

Every head returns the continuous hash layer output ``H``; codes are ``tanh(alpha * H)`` in
training (:func:`relaxed_codes`) and ``sign(H)`` at test time.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Use the column-skipping path of the first layer when at most this fraction of columns is active.
SPARSE_INPUT_FRACTION = 0.25


def relaxed_codes(h: torch.Tensor, alpha: float) -> torch.Tensor:
    """The tightening tanh of DJSRH eq. (7): ``tanh(alpha * H)``, alpha = sqrt(epoch)."""
    return torch.tanh(h * alpha) if alpha != 1.0 else torch.tanh(h)


class SparseAwareLinear(nn.Linear):
    """``nn.Linear`` that multiplies only the input columns that are non-zero somewhere in the batch.

    For sparse inputs (tag bag-of-words: ~5 of 1,386 columns per pair, ~130 per batch of 32) the
    forward product and the weight gradient shrink from ``in_features`` to the active columns; the
    result equals the dense layer's up to float rounding (same SGD update, weight decay and
    momentum still apply to every weight). Dense inputs take the ordinary path.

    Modes (``sparse_mode``): ``"buffer"`` (default, one process) computes the gradient of the
    active columns on a small leaf tensor and scatters it into a persistent dense gradient buffer
    (no 22 MB zero-filled allocation per step); ``"autograd"`` lets autograd scatter it (used under
    DDP, whose gradient hooks must see the weight); ``"off"`` is the plain dense layer.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, sparse_input: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.sparse_mode = "buffer" if sparse_input else "off"
        self._grad_buffer: torch.Tensor | None = None
        self._buffer_cols: torch.Tensor | None = None
        self._weight_t: torch.Tensor | None = None  # inference: (in, out) copy of the weight
        self._weight_t_key: tuple | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = torch.is_grad_enabled() and self.weight.requires_grad
        if training:
            self._weight_t = None  # the weights change every step: drop the inference copy
        if self.sparse_mode == "off" or x.dim() != 2 or self.in_features < 64:
            return F.linear(x, self.weight, self.bias)
        active = (x != 0).any(dim=0)
        cols = active.nonzero().squeeze(1)
        if cols.numel() > SPARSE_INPUT_FRACTION * self.in_features:
            return F.linear(x, self.weight, self.bias)
        xs = x.index_select(1, cols)
        if not training:
            if not torch.is_grad_enabled() or not (xs.requires_grad or (self.bias is not None and self.bias.requires_grad)):
                return self._inference_product(xs, cols)
            # a frozen weight under autograd: the input or the bias still wants its gradient
            return F.linear(xs, self.weight.index_select(1, cols), self.bias)
        if self.sparse_mode == "autograd":
            return F.linear(xs, self.weight.index_select(1, cols), self.bias)
        w_active = self.weight.detach().index_select(1, cols).requires_grad_()
        w_active.register_hook(lambda grad, cols=cols: self._scatter_grad(cols, grad))
        return F.linear(xs, w_active, self.bias)

    def train(self, mode: bool = True):
        """Switching mode drops the inference copy: weights edited in place through ``.data`` (which
        does not bump their version) are then seen by the next evaluation, not the stale copy."""
        self._weight_t = None
        return super().train(mode)

    @torch.no_grad()
    def _inference_product(self, xs: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``xs @ W[:, cols].T + b`` from a transposed copy of the weight, made once per weight version.

        The active columns of the (out, in) weight are strided: gathering them touches a cache line
        per output row and column, i.e. most of the 22 MB of a 1,386 -> 4,096 layer for a handful of
        tags. In the (in, out) copy each column is one contiguous row, so a query costs what its tags
        cost (5x less time per search query); the product is the same (same operands, same order).
        """
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)
        if self._weight_t is None or self._weight_t_key != key:
            self._weight_t, self._weight_t_key = w.detach().t().contiguous(), key
        w_active = self._weight_t.index_select(0, cols)
        if self.bias is None:
            return xs @ w_active
        return torch.addmm(self.bias, xs, w_active)

    @torch.no_grad()
    def _scatter_grad(self, cols: torch.Tensor, grad: torch.Tensor) -> None:
        w = self.weight
        if w.grad is not None:  # accumulate, as autograd would
            w.grad.index_add_(1, cols, grad)
            return
        buf = self._grad_buffer
        if buf is None or buf.shape != w.shape or buf.device != w.device or buf.dtype != w.dtype:
            buf = torch.zeros_like(w)
        elif self._buffer_cols is not None:
            buf.index_fill_(1, self._buffer_cols, 0.0)  # only these columns were non-zero
        buf.index_copy_(1, cols, grad)
        self._grad_buffer, self._buffer_cols = buf, cols
        w.grad = buf


class MLPHashNet(nn.Module):
    """``in_dim -> hidden -> ReLU -> bits`` (DJSRH TxtNet; ImgNet head over frozen features)."""

    def __init__(self, in_dim: int, bits: int, hidden: int = 4096, sparse_input: bool = True):
        super().__init__()
        self.in_dim, self.bits, self.hidden = int(in_dim), int(bits), int(hidden)
        self.fc1 = SparseAwareLinear(self.in_dim, self.hidden, sparse_input=sparse_input)
        self.fc2 = nn.Linear(self.hidden, self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))



class StandardizedInput(nn.Module):
    """``net((x - shift) / scale)``: a head over inputs centred and scaled by training statistics.

    ``shift`` (per input dimension) and ``scale`` (one number) are buffers, so they are saved in
    checkpoints and applied again when new items are encoded; :meth:`fit` sets them from the
    training rows (``shift`` = their mean, ``scale`` = the RMS of the centred values). Until then
    they are the identity (0, 1). Behind the ``input_norm: standardize`` option of the deep methods
    (DJSRH, JDSH, UDCMH, DGCPN) for small-norm features (Wiki's l1-normalised SIFT histograms), on
    which an MLP's output barely depends on the input at initialisation.
    """

    def __init__(self, net: nn.Module, in_dim: int):
        super().__init__()
        self.net = net
        self.register_buffer("shift", torch.zeros(int(in_dim)))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        x = x.to(dtype=torch.float64, device=self.shift.device)
        mean = x.mean(dim=0)
        rms = (x - mean).pow(2).mean().sqrt()
        self.shift.copy_(mean.to(self.shift.dtype))
        self.scale.fill_(float(rms) if float(rms) > 0 else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.shift) / self.scale)


class LearnableScalar(nn.Module):
    """One trainable scalar (e.g. DBRC's scale); ``forward()`` returns it."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        return self.value


__all__ = ["LearnableScalar", "MLPHashNet", "SPARSE_INPUT_FRACTION", "SparseAwareLinear", "StandardizedInput", "relaxed_codes"]
