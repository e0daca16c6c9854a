"""Networks over word sequences (DVSH): a sentence hashing net and the visual-semantic fusion net.

Both read right-padded word ids and their true lengths (:mod:`cmhash.data.tokens`: PAD = 0,
UNK = 1), embed them with a table that may be initialised from GloVe, run an LSTM over the
packed sequence (padding never reaches the recurrence) and **mean-pool** the step outputs over
the true length (our choice; the last state is ``pool="last"``).

* :class:`SentenceHashNet` g(y): embedding -> LSTM -> pool -> linear -> tanh (K units).
* :class:`FusionHashNet` h(x, y): the image feature, projected to ``fusion_image_dim`` by a
  linear + ReLU, is concatenated to the word embedding **at every time step** of a multimodal
  LSTM; the pooled outputs go through linear -> tanh to the unified code in (-1, 1)^K.
* :class:`FeatureHashNet` f(x): frozen image features -> linear -> ReLU -> dropout -> linear -> tanh.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from cmhash.data.tokens import PAD, pack

POOLS = ("mean", "last")


def _embedding(vocab_size: int, dim: int, init: np.ndarray | None) -> nn.Embedding:
    emb = nn.Embedding(int(vocab_size), int(dim), padding_idx=PAD)
    if init is not None:
        init = np.asarray(init, dtype=np.float32)
        if init.shape != (vocab_size, dim):
            raise ValueError(f"embedding init has shape {init.shape}, expected {(vocab_size, dim)}")
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(init))
            emb.weight[PAD].zero_()
    return emb


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, pool: str) -> torch.Tensor:
    """LSTM over packed ``x`` (B, L, d); mean of the outputs over the true length, or the last state."""
    from torch.nn.utils.rnn import pad_packed_sequence

    lengths = lengths.clamp(min=1)
    out, (h, _) = lstm(pack(x, lengths))
    if pool == "last":
        return h[-1]
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]).to(out.dtype)
    return (out * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


class SentenceHashNet(nn.Module):
    """g(y): word ids -> tanh codes (see module docstring)."""

    def __init__(self, vocab_size: int, bits: int, embed_dim: int = 50, hidden: int = 256, pool: str = "mean", embedding_init: np.ndarray | None = None, dropout: float = 0.0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.embed = _embedding(vocab_size, embed_dim, embedding_init)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.hash = nn.Linear(hidden, bits)

    def embedding(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled sentence vector before the hash layer."""
        return run_lstm(self.lstm, self.embed(ids), lengths, self.pool)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash(self.drop(self.embedding(ids, lengths))))


class FusionHashNet(nn.Module):
    """h(x, y): multimodal LSTM with the image fed at every step, pooled into the unified code."""

    def __init__(self, vocab_size: int, image_dim: int, bits: int, embed_dim: int = 50, hidden: int = 256, image_proj: int = 256, pool: str = "mean", embedding_init: np.ndarray | None = None, dropout: float = 0.0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.embed = _embedding(vocab_size, embed_dim, embedding_init)
        self.image = nn.Sequential(nn.Linear(image_dim, image_proj), nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(embed_dim + image_proj, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.hash = nn.Linear(hidden, bits)

    def forward(self, image: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        words = self.embed(ids)
        v = self.image(image).unsqueeze(1).expand(-1, ids.shape[1], -1)
        pooled = run_lstm(self.lstm, torch.cat([words, v], dim=2), lengths, self.pool)
        return torch.tanh(self.hash(self.drop(pooled)))


class FeatureHashNet(nn.Module):
    """f(x) over frozen image features: linear -> ReLU -> dropout -> linear -> tanh."""

    def __init__(self, image_dim: int, bits: int, hidden: int = 1024, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(image_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.hash = nn.Linear(hidden, bits)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash(self.body(x)))


__all__ = ["FeatureHashNet", "FusionHashNet", "SentenceHashNet", "run_lstm", "POOLS"]
