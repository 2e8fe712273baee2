"""Public varlen attention with the one dispatch point: Triton on CUDA, the C++ kernels on
CPUs, the padded reference (the oracle) on request."""

from __future__ import annotations

import os

import torch

from .attention_cpu import varlen_attention_cpu
from .attention_reference import varlen_attention_reference

_BACKENDS = ("triton", "cpu", "reference")


def attention_backend(device: torch.device | str) -> str:
    """``"triton"`` for CUDA tensors, ``"cpu"`` elsewhere; env LAMFAST_ATTENTION forces one
    of triton, cpu, reference."""
    forced = os.environ.get("LAMFAST_ATTENTION", "").strip().lower()
    if forced:
        if forced not in _BACKENDS:
            raise ValueError(f"LAMFAST_ATTENTION must be one of {_BACKENDS}, got {forced!r}")
        return forced
    return "triton" if torch.device(device).type == "cuda" else "cpu"


def _validate(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, bias_k, bias_v):
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"q, k, v must be [tokens, heads, head_dim], got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu.dtype != torch.int32 or cu.ndim != 1 or cu.shape[0] < 1:
            raise ValueError(f"{name} must be a 1-D int32 tensor [B+1], got {cu.dtype} {tuple(cu.shape)}")
        if cu.device != q.device:
            raise ValueError(f"{name} is on {cu.device} but q is on {q.device}")
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"cu_seqlens_q and cu_seqlens_k describe different numbers of sets: "
                         f"{cu_seqlens_q.shape[0] - 1} vs {cu_seqlens_k.shape[0] - 1}")
    if (bias_k is None) != (bias_v is None):
        raise ValueError("give both bias_k and bias_v, or neither")
    if bias_k is not None and (bias_k.shape != q.shape[1:] or bias_v.shape != q.shape[1:]):
        raise ValueError(f"bias_k/bias_v must be [heads, head_dim] = {tuple(q.shape[1:])}, got "
                         f"{tuple(bias_k.shape)}, {tuple(bias_v.shape)}")
    if q.device.type == "cpu":  # value checks would force a device sync on GPUs
        for name, cu, total, longest in (("cu_seqlens_q", cu_seqlens_q, q.shape[0], max_seqlen_q),
                                         ("cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k)):
            lengths = cu.diff()
            if int(cu[0]) != 0 or int(cu[-1]) != total or bool((lengths < 0).any()):
                raise ValueError(f"{name} must rise from 0 to the token count {total}")
            if lengths.numel() and int(lengths.max()) > longest:
                raise ValueError(f"{name}: a set has {int(lengths.max())} tokens but the max_seqlen "
                                 f"given is {longest}")


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                     max_seqlen_q: int, max_seqlen_k: int, *,
                     bias_k: torch.Tensor | None = None, bias_v: torch.Tensor | None = None,
                     scale: float | None = None) -> torch.Tensor:
    """Non-causal attention inside each of B ragged sets (FlashAttention varlen layout).

    Set b's queries are ``q[cu_seqlens_q[b]:cu_seqlens_q[b+1]]`` and they attend to its keys
    ``k[cu_seqlens_k[b]:cu_seqlens_k[b+1]]`` (self-attention: pass the same cu_seqlens
    twice; the LAM decoder passes request counts and encoder set lengths).

    Parameters
    ----------
    q : [Tq, H, D] fp32/fp16/bf16
    k, v : [Tk, H, D], same dtype as q
    cu_seqlens_q, cu_seqlens_k : int32 [B+1], rising from 0 to Tq (Tk)
    max_seqlen_q, max_seqlen_k : int, the longest set (an upper bound is fine)
    bias_k, bias_v : [H, D], optional
        One learned key/value per head appended to every set and never masked (PyTorch
        ``nn.MultiheadAttention(add_bias_kv=True)``), so a set with no key attends to it.
    scale : float, default 1/sqrt(D)

    Returns
    -------
    [Tq, H, D] in q's dtype. A set with no key and no bias yields zeros.

    Runs the Triton kernels on CUDA tensors and the C++ kernels (:mod:`.attention_cpu`)
    on CPU tensors; ``LAMFAST_ATTENTION=triton|cpu|reference`` forces
    one path (reference = the padded oracle).
    """
    _validate(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, bias_k, bias_v)
    if bias_k is not None:
        bias_k, bias_v = bias_k.to(q.dtype), bias_v.to(q.dtype)
    backend = attention_backend(q.device)
    if backend == "triton" and q.shape[2] <= 64:
        from .attention_triton import varlen_attention_triton  # lazy: triton is optional

        return varlen_attention_triton(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                       max_seqlen_k, bias_k=bias_k, bias_v=bias_v, scale=scale)
    if backend == "cpu" and q.device.type == "cpu":
        return varlen_attention_cpu(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                    max_seqlen_k, bias_k=bias_k, bias_v=bias_v, scale=scale)
    return varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                      max_seqlen_k, bias_k=bias_k, bias_v=bias_v, scale=scale)
