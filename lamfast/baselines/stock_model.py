"""The LAM architecture written the way the paper's code runs it, in stock PyTorch.

Padded [B, L] sets, ``nn.MultiheadAttention(add_bias_kv=True, batch_first=True)`` with a
key-padding mask, and one decoder pass per requested token. Module and parameter names
are the authors' (``torch_encoder.encoder_transformer_block_1.attention.in_proj_weight``
...), so their ``model_state_dict`` and :meth:`lamfast.LAM.reference_state_dict` load
directly. It is the comparison baseline and the oracle of lamfast's packed model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model import LAMConfig


class _Embedding(nn.Module):
    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(vocab_size, width))
        self.bias = nn.Parameter(torch.zeros(vocab_size, width))

    def forward(self, tokens, values=None):
        out = F.embedding(tokens, self.embeddings)
        return out if values is None else F.gelu(out * values + F.embedding(tokens, self.bias))


class _Block(nn.Module):
    def __init__(self, width, heads, ffn, dropout, eps):
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True,
                                               add_bias_kv=True)
        self.dense_1 = nn.Linear(width, ffn)
        self.dense_2 = nn.Linear(ffn, width)
        self.layernorm_1 = nn.LayerNorm(width, eps=eps)
        self.layernorm_2 = nn.LayerNorm(width, eps=eps)
        self.dropout_1 = nn.Dropout(dropout)
        self.dropout_2 = nn.Dropout(dropout)

    def forward(self, query, key_value, padding_mask):
        att, _ = self.attention(query, key_value, key_value, key_padding_mask=padding_mask,
                                need_weights=False)
        y = self.layernorm_1(query + self.dropout_1(att))
        return self.layernorm_2(y + self.dropout_2(self.dense_2(F.gelu(self.dense_1(y)))))


class StockLAM(nn.Module):
    """Padded, per-request LAM; ``forward(values [B, L], tokens [B, L], request [B])``."""

    def __init__(self, config: LAMConfig | None = None):
        super().__init__()
        c = self.config = config or LAMConfig()
        block = lambda h, f: _Block(c.width, h, f, c.dropout, c.layer_norm_eps)
        self.embedding_layer = _Embedding(c.vocab_size, c.width)
        self.torch_encoder = nn.Module()
        for i, (h, f) in enumerate(zip(c.encoder_heads, c.encoder_ffn)):
            self.torch_encoder.add_module(f"encoder_transformer_block_{i + 1}", block(h, f))
        self.torch_decoder = nn.Module()
        for i, (h, f) in enumerate(zip(c.decoder_heads, c.decoder_ffn)):
            self.torch_decoder.add_module(f"decoder_transformer_block_{i + 1}", block(h, f))
        widths = (c.width,) + c.head_mlp
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            self.torch_decoder.add_module(f"decoder_dense_{i + 3}", nn.Linear(a, b))
        self.torch_decoder.add_module("decoder_out", nn.Linear(widths[-1], 1))
        self.torch_decoder.add_module("decoder_logvar_out", nn.Linear(widths[-1], 1))
        self.head_dropout = nn.Dropout(c.dropout)

    @classmethod
    def from_lam(cls, lam) -> StockLAM:
        """Same weights as a :class:`lamfast.LAM`."""
        model = cls(lam.config)
        model.load_state_dict(lam.reference_state_dict())
        return model

    def _blocks(self, part: str, prefix: str):
        return [m for name, m in part.named_children() if name.startswith(prefix)]

    def encode(self, values, tokens):
        """values float [B, L], tokens long [B, L] (0 = padding) -> perception [B, L, W], mask."""
        padding_mask = tokens == 0
        x = self.embedding_layer(tokens, values[..., None])
        for block in self._blocks(self.torch_encoder, "encoder_transformer_block_"):
            x = block(x, x, padding_mask)
        return x, padding_mask

    def decode(self, perception, padding_mask, request):
        """request long [B] -> mu, logvar [B]."""
        x = self.embedding_layer(request[:, None])  # [B, 1, W]
        for block in self._blocks(self.torch_decoder, "decoder_transformer_block_"):
            x = block(x, perception, padding_mask)
        for dense in self._blocks(self.torch_decoder, "decoder_dense_"):
            x = self.head_dropout(F.gelu(dense(x)))
        return self.torch_decoder.decoder_out(x)[:, 0, 0], self.torch_decoder.decoder_logvar_out(x)[:, 0, 0]

    def forward(self, values, tokens, request):
        return self.decode(*self.encode(values, tokens), request)

    def predict_many(self, values, tokens, requests):
        """Encode once, then one decoder pass per requested token (the paper's loop).

        requests: long [R] token ids asked of every star -> mu, logvar [B, R].
        """
        perception, mask = self.encode(values, tokens)
        outs = [self.decode(perception, mask, torch.full_like(tokens[:, 0], int(t))) for t in requests]
        return torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs], 1)


def pad_batch(batch, min_length: int = 1):
    """A packed :class:`lamfast.Batch` -> padded float32 values, int64 tokens [B, L] (numpy)."""
    lengths = batch.seqlens()
    width = max(int(lengths.max(initial=0)), min_length)
    pos = np.arange(width)
    valid = pos[None, :] < lengths[:, None]
    values = np.zeros((batch.n_stars, width), dtype=np.float32)
    tokens = np.zeros((batch.n_stars, width), dtype=np.int64)
    values[valid] = batch.value
    tokens[valid] = batch.token_id
    return values, tokens
