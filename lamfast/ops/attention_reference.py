"""Plain PyTorch varlen attention: the oracle for the Triton kernel and the CPU path.

Sets are gathered into padded ``[B, H, L, D]`` fp32 blocks (a bounded number of sets at
a time) and go through ``F.scaled_dot_product_attention`` with a key mask; the learned
bias key/value slot of ``nn.MultiheadAttention(add_bias_kv=True)`` is appended as one
extra, never masked key. Differentiable through ordinary autograd. (The tests check it
against a float64 per-set loop.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Largest padded score block (sets x heads x Lq x Lk) materialised at once, so memory stays
# bounded for 1e6 sets: 2^24 fp32 scores = 64 MiB.
MAX_SCORES_PER_CHUNK = 1 << 24


def _padded_index(cu_seqlens: torch.Tensor, max_len: int):
    """Token index [B, L] of position j of set b (clamped where j >= len) and validity mask."""
    starts = cu_seqlens[:-1].long()
    lengths = cu_seqlens[1:].long() - starts
    pos = torch.arange(max_len, device=cu_seqlens.device)
    valid = pos[None, :] < lengths[:, None]  # [B, L]
    index = torch.where(valid, starts[:, None] + pos[None, :], torch.zeros_like(valid, dtype=torch.long))
    return index, valid


def _attend_chunk(q, k, v, cu_q, cu_k, max_q, max_k, bias_k, bias_v, scale):
    """Attention for the sets of one chunk; cu_q/cu_k are chunk-local (start at 0)."""
    n_heads, head_dim = q.shape[1], q.shape[2]
    max_k = max(max_k, 1)  # room for the all-zero key of sets that have none
    iq, vq = _padded_index(cu_q, max_q)
    ik, vk = _padded_index(cu_k, max_k)
    # A zero row appended: padded positions gather it, so they hold exact zeros.
    pad = lambda x: torch.cat([x.float(), x.new_zeros(1, n_heads, head_dim, dtype=torch.float32)])
    qp = pad(q)[torch.where(vq, iq, q.shape[0])].transpose(1, 2)  # [B, H, Lq, D]
    kp = pad(k)[torch.where(vk, ik, k.shape[0])].transpose(1, 2)  # [B, H, Lk, D]
    vp = pad(v)[torch.where(vk, ik, k.shape[0])].transpose(1, 2)
    attend = vk.clone()                                            # [B, Lk]
    if bias_k is None:
        # A set with no key attends to one all-zero key/value: output and gradients are 0.
        attend[:, 0] |= ~vk.any(1)
    else:
        tail = lambda b: b.float()[None, :, None, :].expand(len(kp), -1, 1, -1)
        kp, vp = torch.cat([kp, tail(bias_k)], 2), torch.cat([vp, tail(bias_v)], 2)
        attend = torch.cat([attend, attend.new_ones(len(attend), 1)], 1)
    out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=attend[:, None, None, :], scale=scale)
    return out.transpose(1, 2)[vq]                                 # [Tq_chunk, H, D]


def varlen_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                               max_seqlen_q: int, max_seqlen_k: int, *,
                               bias_k: torch.Tensor | None = None,
                               bias_v: torch.Tensor | None = None,
                               scale: float | None = None) -> torch.Tensor:
    """Non-causal attention within each set, computed on padded blocks in fp32.

    Same signature and semantics as :func:`lamfast.ops.varlen_attention`; the result has
    q's dtype.
    """
    n_heads, head_dim = q.shape[1], q.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    n_sets = cu_seqlens_q.shape[0] - 1
    if q.shape[0] == 0:
        return q.new_zeros(q.shape)
    per_set = n_heads * max(max_seqlen_q, 1) * (max(max_seqlen_k, 0) + 1)
    step = max(1, MAX_SCORES_PER_CHUNK // per_set)
    outs = []
    for b0 in range(0, n_sets, step):
        b1 = min(n_sets, b0 + step)
        cq, ck = cu_seqlens_q[b0:b1 + 1], cu_seqlens_k[b0:b1 + 1]
        q0, q1, k0, k1 = int(cq[0]), int(cq[-1]), int(ck[0]), int(ck[-1])
        if q1 == q0:
            continue
        outs.append(_attend_chunk(q[q0:q1], k[k0:k1], v[k0:k1], cq - q0, ck - k0,
                                  max_seqlen_q, max_seqlen_k, bias_k, bias_v, scale))
    return torch.cat(outs).to(q.dtype)
