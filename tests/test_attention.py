"""Varlen attention: reference vs a float64 loop, Triton kernels vs the reference.

Without a GPU the Triton kernels run under TRITON_INTERPRET=1 (set before they are
defined); with one they run for real on CUDA tensors. Every output buffer is poisoned
with NaN first so an element the kernel never writes cannot pass.
"""

import importlib
import math
import os
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:  # must precede the kernels' definition
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")
if "lamfast.ops.attention_triton" in sys.modules:
    importlib.reload(sys.modules["lamfast.ops.attention_triton"])
from lamfast.ops import attention_triton as at  # noqa: E402
from lamfast.ops import attention_backend, varlen_attention, varlen_attention_reference  # noqa: E402

DEVICE = "cuda" if HAS_CUDA else "cpu"

# Max abs error allowed against the fp32 reference computed from the same (rounded) inputs.
TOLERANCE = {  # dtype: (forward, gradients)
    torch.float32: (2e-5, 5e-5),
    torch.float16: (3e-3, 1e-2),
    torch.bfloat16: (2e-2, 6e-2),
}


def _cu(lengths):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return cu.to(DEVICE)


def _problem(rng, lq, lk, heads, dim, dtype, bias):
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    rand = lambda *s: torch.randn(*s, generator=g).to(DEVICE, dtype)
    q, k, v = rand(sum(lq), heads, dim), rand(sum(lk), heads, dim), rand(sum(lk), heads, dim)
    bk, bv = (rand(heads, dim), rand(heads, dim)) if bias else (None, None)
    return q, k, v, _cu(lq), _cu(lk), bk, bv


def _loop_oracle(q, k, v, cu_q, cu_k, bias_k, bias_v, scale):
    """float64, one set and one head at a time, written as plainly as possible."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b in range(len(cu_q) - 1):
        q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        for h in range(q.shape[1]):
            keys, values = k[k0:k1, h].double(), v[k0:k1, h].double()
            if bias_k is not None:
                keys = torch.cat([keys, bias_k[h].double()[None]])
                values = torch.cat([values, bias_v[h].double()[None]])
            if len(keys) == 0:
                continue
            weights = torch.softmax(q[q0:q1, h].double() @ keys.T * scale, dim=-1)
            out[q0:q1, h] = weights @ values
    return out


# ---- the reference itself --------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_reference_matches_loop(rng, bias):
    lq, lk = [0, 3, 1, 7, 2, 0], [4, 0, 1, 9, 2, 0]
    q, k, v, cq, ck, bk, bv = _problem(rng, lq, lk, 4, 8, torch.float32, bias)
    out = varlen_attention_reference(q, k, v, cq, ck, 7, 9, bias_k=bk, bias_v=bv)
    expected = _loop_oracle(q.cpu(), k.cpu(), v.cpu(), cq.cpu(), ck.cpu(),
                            None if bk is None else bk.cpu(), None if bv is None else bv.cpu(),
                            1 / math.sqrt(8))
    torch.testing.assert_close(out.cpu().double(), expected, atol=1e-6, rtol=1e-6)
    # A query set without keys: zeros without bias, exactly bias_v with it.
    no_keys = out[cq[1]:cq[2]]
    torch.testing.assert_close(no_keys, bv.expand_as(no_keys) if bias else torch.zeros_like(no_keys))


def test_reference_chunking_is_invisible(rng, monkeypatch):
    from lamfast.ops import attention_reference as ref

    lengths = [int(x) for x in rng.integers(0, 12, size=40)]
    q, k, v, cu, _, bk, bv = _problem(rng, lengths, lengths, 2, 16, torch.float32, True)
    whole = varlen_attention_reference(q, k, v, cu, cu, 11, 11, bias_k=bk, bias_v=bv)
    monkeypatch.setattr(ref, "MAX_SCORES_PER_CHUNK", 300)  # a handful of sets per chunk
    chunked = varlen_attention_reference(q, k, v, cu, cu, 11, 11, bias_k=bk, bias_v=bv)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_all_sets_empty_and_no_tokens():
    cu = torch.zeros(4, dtype=torch.int32, device=DEVICE)
    q = torch.randn(0, 2, 8, device=DEVICE)
    assert varlen_attention(q, q, q, cu, cu, 0, 0).shape == (0, 2, 8)


# ---- Triton vs reference ---------------------------------------------------------------

SMALL = [0, 1, 2, 16, 17, 3]          # empty, single, pair, one tile, tile + 1
CROSS_Q = [1, 3, 0, 2, 17, 1]         # decoder-like requests; set 0 and 4 have no key
CROSS_K = [0, 5, 4, 16, 0, 2]
# Each case covers a head shape x dtype x bias x self/cross x sets per program.
CASES = [
    ((16, 8), torch.float32, True, "self", 1),
    ((16, 8), torch.float16, False, "cross", 4),
    ((8, 16), torch.float32, True, "cross", 2),
    ((8, 16), torch.float16, True, "self", 1),
    ((4, 32), torch.float32, False, "self", 3),
    ((4, 32), torch.float16, True, "cross", 1),
    ((2, 64), torch.float32, False, "cross", 1),
    ((2, 64), torch.float16, True, "self", 6),
]


def _run_both(q, k, v, cq, ck, mq, mk, bk, bv, spp):
    """(out, grads) from the Triton launchers, all buffers NaN-poisoned, and from the reference."""
    grad_out = torch.randn(q.shape, device=q.device, dtype=q.dtype)
    nan_like = lambda t, dtype=None: torch.full(t.shape, float("nan"), device=t.device,
                                                dtype=dtype or t.dtype)
    scale = 1 / math.sqrt(q.shape[2])
    out, lse = at.attention_forward(q, k, v, cq, ck, mq, mk, bk, bv, scale, sets_per_program=spp,
                                    out=nan_like(q), lse=nan_like(q[..., 0], torch.float32))
    grads = at.attention_backward(grad_out, q, k, v, out, lse, cq, ck, mq, mk, bk, bv, scale,
                                  sets_per_program=spp, dq=nan_like(q), dk=nan_like(k), dv=nan_like(v))
    # The reference runs in fp32 on the same rounded inputs, so it carries no rounding of its own.
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v) + ((bk, bv) if bk is not None else ())]
    qq, kk, vv, *bias = leaves
    ref = varlen_attention_reference(qq, kk, vv, cq, ck, mq, mk, bias_k=bias[0] if bias else None,
                                     bias_v=bias[1] if bias else None)
    ref_grads = torch.autograd.grad(ref, leaves, grad_out)
    return (out, [g for g in grads if g is not None]), (ref.detach(), ref_grads)


def _compare(results, dtype):
    (out_t, grads_t), (out_r, grads_r) = results
    tol_fwd, tol_grad = TOLERANCE[dtype]
    assert not torch.isnan(out_t).any(), "kernel left output elements unwritten (NaN poison)"
    torch.testing.assert_close(out_t.float(), out_r.float(), atol=tol_fwd, rtol=tol_fwd)
    names = ["dq", "dk", "dv", "dbias_k", "dbias_v"]
    assert len(grads_t) == len(grads_r)
    for name, gt, gr in zip(names, grads_t, grads_r):
        assert not torch.isnan(gt).any(), f"{name}: unwritten elements (NaN poison)"
        if name.startswith("dbias"):
            # A sum over every query of every set: its elements can cancel to near zero, where
            # an elementwise tolerance measures the terms' rounding, not the kernel. By norm:
            rel = float((gt.float() - gr.float()).norm() / gr.float().norm())
            assert rel < tol_grad, f"{name}: |kernel - reference| / |reference| = {rel:.2e}"
        else:
            torch.testing.assert_close(gt.float(), gr.float(), atol=tol_grad, rtol=tol_grad, msg=name)


@pytest.mark.parametrize("shape,dtype,bias,mode,spp", CASES,
                         ids=[f"{h}x{d}-{str(t)[6:]}-{'bias' if b else 'nobias'}-{m}-spp{s}"
                              for (h, d), t, b, m, s in CASES])
def test_triton_matches_reference(rng, shape, dtype, bias, mode, spp):
    lq, lk = (SMALL, SMALL) if mode == "self" else (CROSS_Q, CROSS_K)
    q, k, v, cq, ck, bk, bv = _problem(rng, lq, lk, *shape, dtype, bias)
    _compare(_run_both(q, k, v, cq, ck, max(lq), max(lk), bk, bv, spp), dtype)


def test_triton_long_set_among_tiny_ones(rng):
    """One 130-token set (32-wide tiles, 5 blocks) among sets of 0-3 tokens."""
    lengths = [2, 0, 130, 1, 3]
    q, k, v, cq, ck, bk, bv = _problem(rng, lengths, lengths, 2, 32, torch.float32, True)
    _compare(_run_both(q, k, v, cq, ck, 130, 130, bk, bv, 2), torch.float32)


@pytest.mark.skipif(not HAS_CUDA, reason="bf16 tl.dot is wrong in the Triton interpreter; GPU only")
@pytest.mark.parametrize("shape", [(16, 8), (8, 16), (4, 32)])
def test_triton_bf16_on_gpu(rng, shape):
    q, k, v, cq, ck, bk, bv = _problem(rng, SMALL, SMALL, *shape, torch.bfloat16, True)
    _compare(_run_both(q, k, v, cq, ck, max(SMALL), max(SMALL), bk, bv, 2), torch.bfloat16)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU: many sets at real scale")
def test_triton_many_sets_on_gpu(rng):
    lengths = [int(x) for x in rng.integers(0, 120, size=20000)]
    q, k, v, cq, ck, bk, bv = _problem(rng, lengths, lengths, 8, 16, torch.float16, True)
    _compare(_run_both(q, k, v, cq, ck, max(lengths), max(lengths), bk, bv, 8), torch.float16)


# ---- dispatch and validation -----------------------------------------------------------

def test_dispatch_and_override(monkeypatch):
    monkeypatch.delenv("LAMFAST_ATTENTION", raising=False)
    assert attention_backend("cpu") == "cpu"
    assert attention_backend("cuda") == "triton"
    monkeypatch.setenv("LAMFAST_ATTENTION", "reference")
    assert attention_backend("cuda") == "reference"
    monkeypatch.setenv("LAMFAST_ATTENTION", "Triton")
    assert attention_backend("cpu") == "triton"
    monkeypatch.setenv("LAMFAST_ATTENTION", "cudnn")
    with pytest.raises(ValueError, match="LAMFAST_ATTENTION"):
        attention_backend("cpu")


def test_forced_triton_path_through_autograd(rng, monkeypatch):
    """The public function -> dispatch -> autograd Function -> kernels, values and gradients."""
    monkeypatch.setenv("LAMFAST_ATTENTION", "triton")
    q, k, v, cq, ck, bk, bv = _problem(rng, [3, 0, 2], [3, 1, 0], 2, 16, torch.float32, True)
    leaves = [t.requires_grad_() for t in (q, k, v, bk, bv)]
    out = varlen_attention(q, k, v, cq, ck, 3, 3, bias_k=bk, bias_v=bv)
    ref = varlen_attention_reference(q, k, v, cq, ck, 3, 3, bias_k=bk, bias_v=bv)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    grad_out = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, leaves, grad_out),
                         torch.autograd.grad(ref, leaves, grad_out)):
        torch.testing.assert_close(got, want, atol=5e-5, rtol=5e-5)


@pytest.mark.parametrize("change,message", [
    (dict(q=torch.randn(5, 2)), "tokens, heads, head_dim"),
    (dict(k=torch.randn(5, 3, 8)), "shape mismatch"),
    (dict(cu_q=torch.tensor([0, 2, 5], dtype=torch.int64)), "int32"),
    (dict(cu_q=torch.tensor([0, 2, 4], dtype=torch.int32)), "rise from 0 to the token count 5"),
    (dict(cu_q=torch.tensor([0, 5], dtype=torch.int32)), "different numbers of sets"),
    (dict(max_q=1), "max_seqlen"),
    (dict(bias_k=torch.randn(2, 8)), "both bias_k and bias_v"),
    (dict(bias_k=torch.randn(2, 4), bias_v=torch.randn(2, 4)), r"\[heads, head_dim\]"),
])
def test_bad_input(change, message):
    args = dict(q=torch.randn(5, 2, 8), k=torch.randn(5, 2, 8), v=torch.randn(5, 2, 8),
                cu_q=torch.tensor([0, 2, 5], dtype=torch.int32),
                cu_k=torch.tensor([0, 1, 5], dtype=torch.int32), max_q=3, max_k=4,
                bias_k=None, bias_v=None)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        varlen_attention(args["q"], args["k"], args["v"], args["cu_q"], args["cu_k"],
                         args["max_q"], args["max_k"], bias_k=args["bias_k"], bias_v=args["bias_v"])
