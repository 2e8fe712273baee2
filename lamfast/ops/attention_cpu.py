"""Varlen attention for CPUs: the C++ kernels of ``csrc/attention*.cpp`` in autograd.

The padded reference spends most of its time building padded blocks (gathers, masks,
fills, index_put in the backward). The C++ kernels work on the packed layout directly:
one task per set with all its heads, the set's keys copied into small scratch tiles, the
learned bias slot as one more key, a vectorised exp, and a backward that recomputes the
probabilities from the saved log-sum-exp (FlashAttention's recipe). Nothing is padded
beyond a multiple of 8 keys inside the tiles, nothing is gathered in memory, and q/k/v may
be strided slices of a fused QKV projection (no copy).

Computed in fp32; other dtypes (bf16 under autocast) are converted on the way in and out.
Head dims without a compiled kernel (anything but 4, 8, 12, 16, 24, 32, 48, 64) go to the
reference.
"""

from __future__ import annotations

import math

import torch

from .attention_reference import varlen_attention_reference


def _rows(x: torch.Tensor) -> torch.Tensor:
    """fp32 [T, H, D] whose H x D values are contiguous per token (a no-op for fp32 slices
    of a fused projection)."""
    x = x.detach().float()
    t, h, d = x.shape
    rows_ok = (d == 1 or x.stride(2) == 1) and (h == 1 or x.stride(1) == d) and \
        (t <= 1 or x.stride(0) >= h * d)
    return x if rows_ok else x.contiguous()


def _np(x: torch.Tensor | None):
    return None if x is None else x.numpy()


class _VarlenAttentionCPU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, bias_k, bias_v, cu_q, cu_k, scale, threads):
        from .. import _core

        qf, kf, vf = _rows(q), _rows(k), _rows(v)
        bk = None if bias_k is None else bias_k.detach().float().contiguous()
        bv = None if bias_v is None else bias_v.detach().float().contiguous()
        out = torch.empty(qf.shape, dtype=torch.float32)                 # [Tq, H, D]
        lse = torch.empty(qf.shape[:2], dtype=torch.float32)             # [Tq, H]
        _core.attention_forward(qf.numpy(), kf.numpy(), vf.numpy(), cu_q.numpy(), cu_k.numpy(),
                                _np(bk), _np(bv), scale, out.numpy(), lse.numpy(), threads)
        ctx.save_for_backward(qf, kf, vf, bk, bv, out, lse, cu_q, cu_k)
        ctx.scale, ctx.threads = scale, threads
        ctx.dtypes = (q.dtype, k.dtype, v.dtype,
                      None if bias_k is None else bias_k.dtype)
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        from .. import _core

        qf, kf, vf, bk, bv, out, lse, cu_q, cu_k = ctx.saved_tensors
        grad_out = grad_out.float().contiguous()
        dq, dk, dv = (torch.empty(x.shape, dtype=torch.float32) for x in (qf, kf, vf))
        dbk = None if bk is None else torch.empty_like(bk)
        dbv = None if bv is None else torch.empty_like(bv)
        _core.attention_backward(grad_out.numpy(), qf.numpy(), kf.numpy(), vf.numpy(),
                                 out.numpy(), lse.numpy(), cu_q.numpy(), cu_k.numpy(), _np(bk),
                                 _np(bv), ctx.scale, dq.numpy(), dk.numpy(), dv.numpy(),
                                 _np(dbk), _np(dbv), ctx.threads)
        tq, tk, tv, tb = ctx.dtypes
        cast = lambda g, t: None if g is None else g.to(t)
        return (dq.to(tq), dk.to(tk), dv.to(tv), cast(dbk, tb), cast(dbv, tb),
                None, None, None, None)


def cpu_kernel_supports(head_dim: int) -> bool:
    """Whether the C++ kernels are compiled for this head dim."""
    from .. import _core

    return bool(_core.attention_supports(int(head_dim)))


def varlen_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                         max_seqlen_q: int, max_seqlen_k: int, *,
                         bias_k: torch.Tensor | None = None, bias_v: torch.Tensor | None = None,
                         scale: float | None = None, threads: int | None = None) -> torch.Tensor:
    """Non-causal attention within each set on CPU tensors (C++ kernels, fp32 inside).

    Same arguments and result as :func:`lamfast.ops.varlen_attention`; ``threads``
    defaults to ``torch.get_num_threads()``. Differentiable in q, k, v, bias_k, bias_v.
    """
    head_dim = q.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    if not cpu_kernel_supports(head_dim):
        return varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                          max_seqlen_k, bias_k=bias_k, bias_v=bias_v, scale=scale)
    threads = torch.get_num_threads() if threads is None else int(threads)
    return _VarlenAttentionCPU.apply(q, k, v, bias_k, bias_v, cu_seqlens_q.contiguous(),
                                     cu_seqlens_k.contiguous(), scale, threads)
