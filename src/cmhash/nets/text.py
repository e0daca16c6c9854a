"""Text encoders over token sequences (padded ids + lengths, :mod:`cmhash.data.tokens`).

:class:`TokenHashNet`: embedding -> GRU/LSTM over the real tokens (packed by length) -> the last
hidden state -> ``Linear(hidden, bits)``. A text of length 0 gives the output of a zero state.
Input: a :class:`~cmhash.training.batch.TokenBatch`-like object with ``ids`` (b, L) and
``lengths`` (b,), or the two tensors.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cmhash.data.tokens import PAD, pack
from cmhash.errors import CmhashError

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


class TokenEncoder(nn.Module):
    """Embedding + recurrent layer; ``forward(ids, lengths) -> (b, hidden)`` final states."""

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden: int = 256, cell: str = "gru", pad_id: int = PAD):
        super().__init__()
        if cell not in RNNS:
            raise CmhashError(f"cell must be one of {', '.join(RNNS)}, got '{cell}'")
        self.hidden = int(hidden)
        self.embed = nn.Embedding(int(vocab_size), int(embed_dim), padding_idx=pad_id)
        self.rnn = RNNS[cell](int(embed_dim), self.hidden, batch_first=True)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b = ids.shape[0]
        out = ids.new_zeros((b, self.hidden), dtype=self.embed.weight.dtype)
        nonempty = lengths > 0
        if not bool(nonempty.any()):
            return out
        keep = nonempty.nonzero().squeeze(1)
        emb = self.embed(ids.index_select(0, keep))
        packed = pack(emb, lengths.index_select(0, keep))
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        return out.index_copy(0, keep, h[-1])


class TokenHashNet(nn.Module):
    """Token sequences -> continuous hash outputs (b, bits)."""

    def __init__(self, vocab_size: int, bits: int, embed_dim: int = 128, hidden: int = 256, cell: str = "gru"):
        super().__init__()
        self.encoder = TokenEncoder(vocab_size, embed_dim, hidden, cell)
        self.hash = nn.Linear(self.encoder.hidden, int(bits))

    def forward(self, tokens, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            tokens, lengths = tokens.ids, tokens.lengths
        return self.hash(self.encoder(tokens, lengths))


__all__ = ["TokenEncoder", "TokenHashNet"]
