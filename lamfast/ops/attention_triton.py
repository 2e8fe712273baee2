"""Triton varlen attention for many small sets: kernels -> launchers -> autograd Function.

Designed for the LAM workload (sets of 0-130 tokens, head dims 8-64, 1e3-1e6 sets), not
for long sequences:

* one program owns ``sets_per_program`` consecutive sets and all their heads, so a
  token's 128-wide row is read by one program and tiny sets do not each pay a launch slot;
* tiles are ``BLOCK_M x BLOCK_N`` = 16x16 (or 32x32 for long sets) and loops run only
  over the blocks a set actually has, so at most 15 (31) padded rows/columns per set get
  an exponential;
* the learned bias key/value slot (``nn.MultiheadAttention(add_bias_kv=True)``) seeds
  the online softmax (running max = the bias score, sum = 1, accumulator = bias_v), so
  it costs one dot product per row and no extra tile;
* head dims < 16 are zero-padded to 16 in registers (the GPU's ``tl.dot`` needs an
  inner dimension >= 16); the padding never touches memory;
* fp32 accumulation; fp32 inputs use exact (IEEE) dots, fp16/bf16 the tensor cores;
* token offsets are int64 (1e6 stars x 65 tokens x a 384-wide qkv row overflow int32).

The backward pass recomputes probabilities from the saved log-sum-exp (base 2): one loop
over key blocks gives dK, dV; one over query blocks gives dQ and the bias gradients
(per-program partial sums, reduced on the host: deterministic, no atomics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 64


# ---- kernels ---------------------------------------------------------------------------

@triton.jit
def _load_key_block(K, V, cols, k_eos, h, offs_d, d_ok, stride_kt, stride_kh, stride_vt, stride_vh):
    """Keys and values of head h at token rows ``cols`` (< k_eos), zeros elsewhere:
    k, v [BN, BD], col_ok [BN], kv_mask [BN, BD]."""
    col_ok = cols < k_eos
    kv_mask = col_ok[:, None] & d_ok[None, :]
    k = tl.load(K + cols[:, None] * stride_kt + h * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + cols[:, None] * stride_vt + h * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
    return k, v, col_ok, kv_mask


@triton.jit
def _load_query_block(Q, DO, LSE, DELTA, rows, q_eos, h, offs_d, d_ok, stride_qt, stride_qh,
                      head_dim, n_heads):
    """What the backward needs of query rows ``rows`` (< q_eos) of head h: q, dO [BM, BD],
    lse, delta [BM]; padded rows load zeros (finite p, zero gradient)."""
    row_ok = rows < q_eos
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(DO + rows[:, None] * (n_heads * head_dim) + h * head_dim + offs_d[None, :],
                 mask=q_mask, other=0.0)
    lse = tl.load(LSE + rows * n_heads + h, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + rows * n_heads + h, mask=row_ok, other=0.0)
    return q, do, lse, delta, q_mask


@triton.jit
def _probs_and_dscores(q, k, v, do, lse, delta, col_ok, scale_log2, PRECISION: tl.constexpr):
    """Recomputed probabilities p and score gradients dS (without the scale) [BM, BN]."""
    scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    p = tl.where(col_ok[None, :], tl.exp2(scores - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return p, p * (dp - delta[:, None])

@triton.jit
def _attn_fwd_kernel(
    Q, K, V, BIAS_K, BIAS_V, O, LSE,          # O [Tq, H, D] contiguous, LSE [Tq, H] fp32
    CU_Q, CU_K, n_sets, sets_per_program,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    n_heads, head_dim, scale_log2,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim
    first_set = pid * sets_per_program
    last_set = tl.minimum(first_set + sets_per_program, n_sets)
    for s in range(first_set, last_set):
        q_bos = tl.load(CU_Q + s).to(tl.int64)
        q_eos = tl.load(CU_Q + s + 1).to(tl.int64)
        k_bos = tl.load(CU_K + s).to(tl.int64)
        k_eos = tl.load(CU_K + s + 1).to(tl.int64)
        for h in range(n_heads):
            for m0 in range(q_bos, q_eos, BLOCK_M):
                rows = m0 + offs_m
                row_ok = rows < q_eos
                q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                            mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # [BM, BD]
                if HAS_BIAS:
                    # The bias slot is the first key seen: max = its score, sum = 1.
                    bk = tl.load(BIAS_K + h * head_dim + offs_d, mask=d_ok, other=0.0).to(tl.float32)
                    bv = tl.load(BIAS_V + h * head_dim + offs_d, mask=d_ok, other=0.0).to(tl.float32)
                    m_i = tl.sum(q.to(tl.float32) * bk[None, :], axis=1) * scale_log2
                    l_i = tl.full((BLOCK_M,), 1.0, tl.float32)
                    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32) + bv[None, :]
                else:
                    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
                    l_i = tl.zeros((BLOCK_M,), tl.float32)
                    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
                for n0 in range(k_bos, k_eos, BLOCK_N):
                    k, v, col_ok, _ = _load_key_block(K, V, n0 + offs_n, k_eos, h, offs_d, d_ok,
                                                      stride_kt, stride_kh, stride_vt, stride_vh)
                    scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
                    scores = tl.where(col_ok[None, :], scores, float("-inf"))
                    # Every block has >= 1 valid column, so m_new is finite.
                    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
                    alpha = tl.exp2(m_i - m_new)
                    p = tl.exp2(scores - m_new[:, None])
                    l_i = l_i * alpha + tl.sum(p, axis=1)
                    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
                    m_i = m_new
                # No key and no bias slot: l = 0, output 0, lse = -inf.
                out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
                o_ptrs = O + rows[:, None] * (n_heads * head_dim) + h * head_dim + offs_d[None, :]
                tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
                lse = tl.where(l_i > 0, m_i + tl.log2(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
                tl.store(LSE + rows * n_heads + h, lse, mask=row_ok)


@triton.jit
def _attn_bwd_kernel(
    Q, K, V, BIAS_K, BIAS_V, DO, LSE, DELTA,   # DO [Tq, H, D], LSE/DELTA [Tq, H] contiguous
    DQ, DK, DV, DBIAS_PART,                    # DQ/DK/DV contiguous, DBIAS_PART [P, 2, H, BD] fp32
    CU_Q, CU_K, n_sets, sets_per_program,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    n_heads, head_dim, scale, scale_log2,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim
    row_stride = n_heads * head_dim
    first_set = pid * sets_per_program
    last_set = tl.minimum(first_set + sets_per_program, n_sets)
    # Heads outside sets, so the bias gradients of one head stay in registers.
    for h in range(n_heads):
        dbk = tl.zeros((BLOCK_D,), tl.float32)
        dbv = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bk = tl.load(BIAS_K + h * head_dim + offs_d, mask=d_ok, other=0.0).to(tl.float32)
            bv = tl.load(BIAS_V + h * head_dim + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        for s in range(first_set, last_set):
            q_bos = tl.load(CU_Q + s).to(tl.int64)
            q_eos = tl.load(CU_Q + s + 1).to(tl.int64)
            k_bos = tl.load(CU_K + s).to(tl.int64)
            k_eos = tl.load(CU_K + s + 1).to(tl.int64)
            # dK, dV: key blocks outside, query blocks inside.
            for n0 in range(k_bos, k_eos, BLOCK_N):
                cols = n0 + offs_n
                k, v, col_ok, kv_mask = _load_key_block(K, V, cols, k_eos, h, offs_d, d_ok, stride_kt,
                                                        stride_kh, stride_vt, stride_vh)
                dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
                dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
                for m0 in range(q_bos, q_eos, BLOCK_M):
                    q, do, lse, delta, q_mask = _load_query_block(
                        Q, DO, LSE, DELTA, m0 + offs_m, q_eos, h, offs_d, d_ok, stride_qt, stride_qh,
                        head_dim, n_heads)
                    p, ds = _probs_and_dscores(q, k, v, do, lse, delta, col_ok, scale_log2, PRECISION)
                    dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
                    dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
                kv_out = cols[:, None] * row_stride + h * head_dim + offs_d[None, :]
                tl.store(DK + kv_out, (dk * scale).to(DK.dtype.element_ty), mask=kv_mask)
                tl.store(DV + kv_out, dv.to(DV.dtype.element_ty), mask=kv_mask)
            # dQ and the bias slot: query blocks outside, key blocks inside.
            for m0 in range(q_bos, q_eos, BLOCK_M):
                rows = m0 + offs_m
                q, do, lse, delta, q_mask = _load_query_block(
                    Q, DO, LSE, DELTA, rows, q_eos, h, offs_d, d_ok, stride_qt, stride_qh, head_dim,
                    n_heads)
                dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
                if HAS_BIAS:
                    q32 = q.to(tl.float32)
                    do32 = do.to(tl.float32)
                    p_bias = tl.exp2(tl.sum(q32 * bk[None, :], axis=1) * scale_log2 - lse)
                    ds_bias = p_bias * (tl.sum(do32 * bv[None, :], axis=1) - delta)
                    dq += ds_bias[:, None] * bk[None, :]
                    dbk += tl.sum(ds_bias[:, None] * q32, axis=0)
                    dbv += tl.sum(p_bias[:, None] * do32, axis=0)
                for n0 in range(k_bos, k_eos, BLOCK_N):
                    k, v, col_ok, _ = _load_key_block(K, V, n0 + offs_n, k_eos, h, offs_d, d_ok,
                                                      stride_kt, stride_kh, stride_vt, stride_vh)
                    p, ds = _probs_and_dscores(q, k, v, do, lse, delta, col_ok, scale_log2, PRECISION)
                    dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
                dq_ptrs = DQ + rows[:, None] * row_stride + h * head_dim + offs_d[None, :]
                tl.store(dq_ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=q_mask)
        if HAS_BIAS:
            part = DBIAS_PART + (pid * 2 * n_heads + h) * BLOCK_D + offs_d
            tl.store(part, dbk * scale)
            tl.store(part + n_heads * BLOCK_D, dbv)


# ---- launch configuration --------------------------------------------------------------

@dataclass(frozen=True)
class KernelConfig:
    """Compile-time shape of one kernel instance (what `aot_check` compiles)."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int = 4
    num_stages: int = 1  # loops run 1-9 trips: software pipelining only costs registers
    maxnreg: int | None = None  # register cap per thread; None lets ptxas choose

    def launch_options(self) -> dict:
        # FP fusion (FMA contraction) stated, not inherited: triton 3.10 flips its default.
        opts = {"num_warps": self.num_warps, "num_stages": self.num_stages, "enable_fp_fusion": True}
        return opts if self.maxnreg is None else {**opts, "maxnreg": self.maxnreg}


def block_d_for(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def pick_config(max_seqlen_q: int, max_seqlen_k: int, head_dim: int, dtype: torch.dtype,
                backward: bool) -> KernelConfig:
    """Tiles of 16 query rows; 16 keys (32 in the forward pass for sets > 64 keys).

    16-row tiles keep padding waste low for 5-64 token sets and for the decoder's 1-3
    requests per star. Chosen so that every configuration compiles for sm_90 without
    register spills on every admitted triton (3.6-3.9, see `lamfast.ops.aot_check`); to
    be tuned on a GPU.
    """
    block_n = 32 if (max_seqlen_k > 64 and not backward) else 16
    block_d = block_d_for(head_dim)
    # ptxas caps registers for occupancy when left to itself, and where the cap is too low
    # it spills: fp32 (exact FMA dots) and the backward pass on every triton, and one or
    # two fp16/bf16 forward shapes on each of 3.8 and 3.9 (at 96-128 registers). 144 is
    # clean for every low-precision forward shape on 3.6-3.9 (3 programs per SM).
    maxnreg = 255 if dtype == torch.float32 or backward else 144
    return KernelConfig(16, block_n, block_d, maxnreg=maxnreg)


def shipped_configs(dtypes=(torch.float32, torch.float16, torch.bfloat16), biases=(True, False)):
    """Every (backward, dtype, has_bias, config) the launchers can pick."""
    out = []
    for backward in (False, True):
        for dtype in dtypes:
            for has_bias in biases:
                for head_dim in (16, 32, 64):
                    for max_k in (64, 130):
                        out.append((backward, dtype, has_bias, pick_config(64, max_k, head_dim, dtype, backward)))
    return list(dict.fromkeys(out))


def _sets_per_program(n_sets: int) -> int:
    # Enough programs to fill a GPU several times over (132 SMs x 16 resident programs),
    # at most 8 sets each so a program's work stays short.
    return max(1, min(8, n_sets // (132 * 16 * 4)))


_PRECISION = {torch.float32: "ieee", torch.float16: "tf32", torch.bfloat16: "tf32"}


def _check(q, k, v, cu_q, cu_k, bias_k, bias_v):
    if q.dtype not in _PRECISION:
        raise ValueError(f"triton attention supports fp32/fp16/bf16, got {q.dtype}")
    if q.shape[2] > MAX_HEAD_DIM:
        raise ValueError(f"triton attention supports head dims <= {MAX_HEAD_DIM}, got {q.shape[2]}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(2) != 1:
            raise ValueError(f"{name} must have a contiguous last (head_dim) axis")
    if cu_q.dtype != torch.int32 or cu_k.dtype != torch.int32:
        raise ValueError("cu_seqlens must be int32")


def attention_forward(q, k, v, cu_q, cu_k, max_q, max_k, bias_k, bias_v, scale, *,
                      sets_per_program=None, out=None, lse=None):
    """Launch the forward kernel; every element of ``out``/``lse`` is written.

    Returns out [Tq, H, D] (q's dtype) and lse [Tq, H] fp32 (base 2). ``out``/``lse`` may
    be given (contiguous, e.g. NaN-filled by tests).
    """
    _check(q, k, v, cu_q, cu_k, bias_k, bias_v)
    n_tokens, n_heads, head_dim = q.shape
    n_sets = cu_q.shape[0] - 1
    if out is None:
        out = torch.empty((n_tokens, n_heads, head_dim), device=q.device, dtype=q.dtype)
    if lse is None:
        lse = torch.empty((n_tokens, n_heads), device=q.device, dtype=torch.float32)
    if n_tokens == 0 or n_sets == 0:
        return out, lse
    spp = sets_per_program or _sets_per_program(n_sets)
    cfg = pick_config(max_q, max_k, head_dim, q.dtype, backward=False)
    has_bias = bias_k is not None
    _attn_fwd_kernel[(triton.cdiv(n_sets, spp),)](
        q, k, v, bias_k if has_bias else q, bias_v if has_bias else q, out, lse,
        cu_q, cu_k, n_sets, spp,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        n_heads, head_dim, scale * LOG2E,
        HAS_BIAS=has_bias, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
        PRECISION=_PRECISION[q.dtype], **cfg.launch_options(),
    )
    return out, lse


def attention_backward(do, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, bias_k, bias_v, scale, *,
                       sets_per_program=None, dq=None, dk=None, dv=None):
    """Launch the backward kernel; every element of dq/dk/dv is written (they may be given).

    Returns dq, dk, dv (contiguous, input dtypes) and, with a bias, dbias_k, dbias_v [H, D] fp32.
    """
    n_tokens, n_heads, head_dim = q.shape
    n_sets = cu_q.shape[0] - 1
    do = do.contiguous()
    delta = (do.float() * out.float()).sum(-1)  # [Tq, H]: rowsum(dO * O)
    new = lambda t: torch.empty(t.shape, device=t.device, dtype=t.dtype)
    dq = new(q) if dq is None else dq
    dk = new(k) if dk is None else dk
    dv = new(v) if dv is None else dv
    has_bias = bias_k is not None
    cfg = pick_config(max_q, max_k, head_dim, q.dtype, backward=True)
    spp = sets_per_program or _sets_per_program(n_sets)
    n_programs = triton.cdiv(n_sets, spp)
    part = torch.zeros((max(n_programs, 1), 2, n_heads, cfg.block_d), device=q.device,
                       dtype=torch.float32)
    if n_programs and (n_tokens or k.shape[0]):
        _attn_bwd_kernel[(n_programs,)](
            q, k, v, bias_k if has_bias else q, bias_v if has_bias else q, do, lse, delta,
            dq, dk, dv, part, cu_q, cu_k, n_sets, spp,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            n_heads, head_dim, scale, scale * LOG2E,
            HAS_BIAS=has_bias, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            PRECISION=_PRECISION[q.dtype], **cfg.launch_options(),
        )
    if not has_bias:
        return dq, dk, dv, None, None
    dbias = part.sum(0)[:, :, :head_dim]  # [2, H, D]
    return dq, dk, dv, dbias[0], dbias[1]


class VarlenAttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, bias_k, bias_v, scale):
        if bias_k is not None:
            bias_k, bias_v = bias_k.contiguous(), bias_v.contiguous()
        out, lse = attention_forward(q, k, v, cu_q, cu_k, max_q, max_k, bias_k, bias_v, scale)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, bias_k, bias_v)
        ctx.args = (max_q, max_k, scale)
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse, cu_q, cu_k, bias_k, bias_v = ctx.saved_tensors
        max_q, max_k, scale = ctx.args
        dq, dk, dv, dbk, dbv = attention_backward(do, q, k, v, out, lse, cu_q, cu_k, max_q,
                                                  max_k, bias_k, bias_v, scale)
        if dbk is not None:
            dbk, dbv = dbk.to(bias_k.dtype), dbv.to(bias_v.dtype)
        return dq, dk, dv, None, None, None, None, dbk, dbv, None


def varlen_attention_triton(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                            bias_k=None, bias_v=None, scale=None):
    """Triton path of :func:`lamfast.ops.varlen_attention` (same signature)."""
    scale = 1.0 / math.sqrt(q.shape[2]) if scale is None else float(scale)
    return VarlenAttentionTriton.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q),
                                       int(max_seqlen_k), bias_k, bias_v, scale)


# ---- ahead-of-time compile check (no GPU needed) --------------------------------------

_TL_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def compile_for_target(backward: bool, dtype: torch.dtype, has_bias: bool, cfg: KernelConfig,
                       arch: int = 90):
    """Compile one kernel instance for ``sm_<arch>`` without a GPU; returns the CompiledKernel."""
    from triton.backends.compiler import GPUTarget

    kernel = _attn_bwd_kernel if backward else _attn_fwd_kernel
    t = _TL_DTYPE[dtype]
    ptr = {"Q": f"*{t}", "K": f"*{t}", "V": f"*{t}", "BIAS_K": f"*{t}", "BIAS_V": f"*{t}",
           "O": f"*{t}", "LSE": "*fp32", "DO": f"*{t}", "DELTA": "*fp32", "DQ": f"*{t}",
           "DK": f"*{t}", "DV": f"*{t}", "DBIAS_PART": "*fp32", "CU_Q": "*i32", "CU_K": "*i32"}
    const = {"HAS_BIAS": has_bias, "BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n,
             "BLOCK_D": cfg.block_d, "PRECISION": _PRECISION[dtype]}
    signature = {}
    for name in kernel.arg_names:
        if name in const:
            signature[name] = "constexpr"
        elif name in ptr:
            signature[name] = ptr[name]
        elif name.startswith("scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    src = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=const)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options=cfg.launch_options())
