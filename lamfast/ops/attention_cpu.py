"""Varlen attention for CPUs: the C++ kernels of ``csrc/attention*.cpp`` in autograd.

The padded reference spends most of its time building padded blocks (gathers, masks,
fills, index_put in the backward). The C++ kernels work on the packed layout directly:
one task per set with all its heads, the set's keys copied into small scratch tiles, the
learned bias slot as one more key, a vectorised exp, and a backward that recomputes the
probabilities from the saved log-sum-exp (FlashAttention's recipe). Nothing is padded
beyond a multiple of 8 keys inside the tiles, nothing is gathered in memory, and q/k/v may
be strided slices of a fused QKV projection (no copy).

Computed in fp32. bf16 inputs (autocast) that need no gradient (inference, labelling) go
to the kernels' bf16 entry, which reads bf16 q/k/v and writes bf16 out directly, with the
result bit-identical to converting in and out. Otherwise (training) other dtypes are
converted to fp32 on the way in and out, since the backward works on fp32 copies.
Slices of one projection (self-attention's q, k, v; the decoder's k, v) are converted
together, as one copy of the rows they span, not slice by slice (copies of 8-wide head
slices were 12% of a bf16 forward's time).
Head dims without a compiled kernel (anything but 4, 8, 12, 16, 24, 32, 48, 64) go to the
reference.
"""

from __future__ import annotations

import math

import torch

from .attention_reference import varlen_attention_reference


def _rows_ok(x: torch.Tensor) -> bool:
    """Whether [T, H, D] x has its H x D values contiguous per token (any token stride)."""
    t, h, d = x.shape
    return (d == 1 or x.stride(2) == 1) and (h == 1 or x.stride(1) == d) and \
        (t <= 1 or x.stride(0) >= h * d)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """fp32 [T, H, D] whose H x D values are contiguous per token (a no-op for fp32 slices
    of a fused projection)."""
    x = x.detach().float()
    return x if _rows_ok(x) else x.contiguous()


def _fp32_rows(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`_rows` of each [T, H, D] x, with one conversion for all when they are
    non-fp32 row slices of one projection [T, C] (same storage and token stride, columns
    within one token's row): the span of columns they cover is converted as one [T, span]
    block of long rows, and each x becomes a view of it."""
    x0 = xs[0]
    t, h, d = x0.shape
    shared = (x0.dtype != torch.float32 and t > 1 and all(
        x.shape == x0.shape and x.dtype == x0.dtype and _rows_ok(x)
        and x.stride(0) == x0.stride(0)
        and x.untyped_storage().data_ptr() == x0.untyped_storage().data_ptr() for x in xs))
    if not shared:  # fp32 (used in place), a single token, or unrelated tensors
        return tuple(_rows(x) for x in xs)
    stride, first = x0.stride(0), min(x.storage_offset() for x in xs)
    span = max(x.storage_offset() for x in xs) + h * d - first
    if span > stride:  # not within one token's row (views of different tokens): no block
        return tuple(_rows(x) for x in xs)
    block = x0.detach().as_strided((t, span), (stride, 1), first).float()   # [T, span]
    return tuple(block.as_strided((t, h, d), (span, d, 1), x.storage_offset() - first)
                 for x in xs)


def _np(x: torch.Tensor | None):
    return None if x is None else x.numpy()


def _bf16_inference(*xs: torch.Tensor | None) -> bool:
    """Whether q, k, v (xs[:3]) are bf16 and no input needs a gradient."""
    q, k, v = xs[:3]
    needs_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in xs)
    return q.dtype == k.dtype == v.dtype == torch.bfloat16 and not needs_grad


def _forward_bf16(q, k, v, bias_k, bias_v, cu_q, cu_k, scale, threads) -> torch.Tensor:
    """The bf16 kernel: [Tq, H, D] bf16 out of bf16 q, k, v (strided row slices read in place)."""
    from .. import _core

    bits = lambda x: (x if _rows_ok(x) else x.contiguous()).view(torch.int16).numpy()
    bias = lambda b: None if b is None else b.detach().float().contiguous().numpy()
    out = torch.empty(q.shape, dtype=torch.bfloat16)                      # [Tq, H, D]
    lse = torch.empty(q.shape[:2], dtype=torch.float32)                   # [Tq, H]
    _core.attention_forward_bf16(bits(q), bits(k), bits(v), cu_q.numpy(), cu_k.numpy(), bias(bias_k),
                                 bias(bias_v), scale, out.view(torch.int16).numpy(), lse.numpy(),
                                 threads)
    return out


class _VarlenAttentionCPU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, bias_k, bias_v, cu_q, cu_k, scale, threads):
        from .. import _core

        if q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr():
            qf, kf, vf = _fp32_rows(q, k, v)   # self-attention: one fused projection
        else:                                  # cross-attention: q has its own
            qf, (kf, vf) = _rows(q), _fp32_rows(k, v)
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
    if _bf16_inference(q, k, v, bias_k, bias_v):
        return _forward_bf16(q, k, v, bias_k, bias_v, cu_seqlens_q.contiguous(),
                             cu_seqlens_k.contiguous(), scale, threads)
    return _VarlenAttentionCPU.apply(q, k, v, bias_k, bias_v, cu_seqlens_q.contiguous(),
                                     cu_seqlens_k.contiguous(), scale, threads)
