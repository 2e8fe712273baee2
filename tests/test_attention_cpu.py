"""The CPU attention kernels (C++, lamfast.ops.attention_cpu) against the padded reference.

Odd shapes: sets of 0, 1, 2, 7, 8, 15, 16 tokens (with the bias slot: 8 and 16 keys are
whole key blocks of the AVX2 and AVX-512 builds, 9 and 17 a block + 1), one 130-token set
among tiny ones; self and cross attention (request sets with no key, key sets with no
request); with and without the bias slot; fp32 and bf16; forward and every gradient;
q/k/v as strided slices of a fused projection. Outputs are compared with the reference
computed from the same (rounded) inputs in fp32.
"""

import math
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import same_lamfast

from lamfast.ops import attention_backend, varlen_attention, varlen_attention_reference
from lamfast.ops.attention_cpu import (
    _fp32_rows,
    cpu_kernel_supports,
    varlen_attention_cpu,
)

SELF = [0, 1, 2, 7, 8, 15, 16, 3, 130, 1, 0]
CROSS_Q = [1, 3, 0, 2, 9, 1, 0, 4, 17]     # decoder-like requests; sets 2 and 6 have none
CROSS_K = [0, 5, 4, 8, 0, 130, 2, 16, 1]   # sets 0 and 4 have no key
TOLERANCE = {torch.float32: (2e-6, 1e-5), torch.bfloat16: (2e-2, 6e-2)}  # (forward, grads)


def _cu(lengths):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return cu


def _problem(rng, lq, lk, heads, dim, dtype, bias, fused=False):
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    rand = lambda *s: torch.randn(*s, generator=g).to(dtype)
    if fused:  # q, k, v strided slices of one [T, 3, H, D] projection (self-attention)
        q, k, v = rand(sum(lq), 3, heads, dim).unbind(1)
    else:
        q, k, v = rand(sum(lq), heads, dim), rand(sum(lk), heads, dim), rand(sum(lk), heads, dim)
    bk, bv = (rand(heads, dim), rand(heads, dim)) if bias else (None, None)
    return q, k, v, _cu(lq), _cu(lk), bk, bv


def _compare(q, k, v, cq, ck, bk, bv, dtype, max_q, max_k):
    leaves = [t.detach().requires_grad_() for t in (q, k, v) + ((bk, bv) if bk is not None else ())]
    ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
    bias = lambda ls: (ls[3], ls[4]) if len(ls) == 5 else (None, None)
    out = varlen_attention_cpu(*leaves[:3], cq, ck, max_q, max_k, bias_k=bias(leaves)[0],
                               bias_v=bias(leaves)[1])
    ref = varlen_attention_reference(*ref_leaves[:3], cq, ck, max_q, max_k,
                                     bias_k=bias(ref_leaves)[0], bias_v=bias(ref_leaves)[1])
    assert out.dtype == dtype and out.shape == q.shape
    tol_fwd, tol_grad = TOLERANCE[dtype]
    torch.testing.assert_close(out.float(), ref, atol=tol_fwd, rtol=tol_fwd)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(dtype)
    got = torch.autograd.grad(out, leaves, grad_out)
    want = torch.autograd.grad(ref, ref_leaves, grad_out.float())
    for name, g, w in zip(["dq", "dk", "dv", "dbias_k", "dbias_v"], got, want):
        assert g.dtype == dtype and not torch.isnan(g).any(), name
        torch.testing.assert_close(g.float(), w, atol=tol_grad, rtol=tol_grad, msg=name)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", ["self", "cross"])
@pytest.mark.parametrize("heads,dim", [(16, 8), (8, 16), (4, 32), (3, 12), (1, 64), (2, 4)])
def test_cpu_kernels_match_reference(rng, heads, dim, mode, bias, dtype):
    lq, lk = (SELF, SELF) if mode == "self" else (CROSS_Q, CROSS_K)
    q, k, v, cq, ck, bk, bv = _problem(rng, lq, lk, heads, dim, dtype, bias)
    out = _compare(q, k, v, cq, ck, bk, bv, dtype, max(lq), max(lk))
    if mode == "cross":  # a request set without keys: exactly bias_v, or zeros without bias
        no_keys = out[int(cq[0]):int(cq[1])]
        want = bv.expand_as(no_keys) if bias else torch.zeros_like(no_keys)
        torch.testing.assert_close(no_keys, want, atol=0, rtol=0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", ["self-fused", "cross"])
@pytest.mark.parametrize("heads,dim", [(16, 8), (8, 16), (4, 32), (3, 12), (1, 64), (2, 4)])
def test_bf16_inference_entry_is_bit_identical_to_converting(rng, heads, dim, mode, bias, monkeypatch):
    """bf16 inputs without gradients go to the kernels' bf16 entry (the autograd path is
    not taken) and give exactly the bf16 rounding of the fp32 kernels' result."""
    from lamfast.ops import attention_cpu

    lq, lk = (SELF, SELF) if mode == "self-fused" else (CROSS_Q, CROSS_K)
    q, k, v, cq, ck, bk, bv = _problem(rng, lq, lk, heads, dim, torch.bfloat16, bias,
                                       fused=mode == "self-fused")
    bk, bv = (None, None) if bk is None else (bk.float(), bv.float())   # fp32 parameters
    want = varlen_attention_cpu(q.requires_grad_(), k, v, cq, ck, max(lq), max(lk), bias_k=bk,
                                bias_v=bv).detach()
    q = q.detach()
    monkeypatch.setattr(attention_cpu._VarlenAttentionCPU, "apply", None)   # must not be used
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            got = varlen_attention_cpu(q, k, v, cq, ck, max(lq), max(lk), bias_k=bk, bias_v=bv)
        assert got.dtype == torch.bfloat16 and torch.equal(got, want)


def test_bf16_entry_rounds_to_nearest_even_and_keeps_nan():
    """One query, two keys of equal score: out = (v0 + v1) / 2 in fp32, then rounded. With
    v1 one bf16 step above v0 every mean is a tie, which goes to even as torch rounds; a
    NaN stays a NaN (rounding its bits up could give an infinity)."""
    from lamfast import _core

    v0 = torch.tensor([1.0, 1.0078125, -1.0, -3.0, 0.5, 1e-30, 100.0, float("nan")]).bfloat16()
    v1 = (v0.view(torch.int16) + 1).view(torch.bfloat16)   # the next bf16 (from zero); NaN stays
    values = torch.stack([v0, v1]).reshape(2, 1, 8)                         # [Tk, H, D]
    zeros = torch.zeros(2, 1, 8, dtype=torch.bfloat16)
    out = torch.empty(1, 1, 8, dtype=torch.bfloat16)
    bits = lambda x: x.view(torch.int16).numpy()
    _core.attention_forward_bf16(bits(zeros[:1]), bits(zeros), bits(values),
                                 torch.tensor([0, 1], dtype=torch.int32).numpy(),
                                 torch.tensor([0, 2], dtype=torch.int32).numpy(), None, None, 1.0,
                                 bits(out), torch.empty(1, 1).numpy(), 1)
    want = ((v0.float() + v1.float()) / 2).bfloat16().reshape(1, 1, 8)
    assert out[0, 0, -1].isnan() and torch.equal(out[..., :-1], want[..., :-1])


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_strided_slices_of_a_fused_projection(rng, bias):
    q, k, v, cq, ck, bk, bv = _problem(rng, SELF, SELF, 4, 16, torch.float32, bias, fused=True)
    assert not q.is_contiguous() and q.stride(0) == 3 * 4 * 16
    _compare(q, k, v, cq, ck, bk, bv, torch.float32, max(SELF), max(SELF))


@pytest.mark.parametrize("lengths", [SELF, [1], [0, 1, 0], [2, 0, 9, 1]], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fused_slices_convert_once_and_match_reference(rng, dtype, lengths):
    """bf16 q, k, v slices of one [T, 3, H, D] projection become views of one fp32 block
    (one conversion; a single token is converted per slice) with the values of per-slice
    conversion; forward and grads agree with the reference (fp32 slices pass through)."""
    q, k, v, cq, ck, bk, bv = _problem(rng, lengths, lengths, 8, 8, dtype, True, fused=True)
    qf, kf, vf = _fp32_rows(q, k, v)
    for x, xf in zip((q, k, v), (qf, kf, vf)):
        assert xf.dtype == torch.float32 and torch.equal(xf, x.float())
    storages = {xf.untyped_storage().data_ptr() for xf in (qf, kf, vf)}
    assert len(storages) == 1 or q.shape[0] == 1
    assert dtype != torch.float32 or qf.data_ptr() == q.data_ptr()
    _compare(q, k, v, cq, ck, bk, bv, dtype, max(lengths), max(lengths))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_decoder_like_key_value_slices_of_a_wide_projection(rng, dtype):
    """k, v as adjacent column slices of a wider [Tk, 6W] projection (the decoder's keys and
    values of all blocks in one GEMM), q from its own projection: odd set lengths."""
    heads, dim = 4, 16
    width = heads * dim
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    kv_all = torch.randn(sum(CROSS_K), 6 * width, generator=g).to(dtype)
    for block in range(3):
        k, v = (kv_all[:, (2 * block + i) * width:(2 * block + i + 1) * width].view(-1, heads, dim)
                for i in range(2))
        kf, vf = _fp32_rows(k, v)
        assert torch.equal(kf, k.float()) and torch.equal(vf, v.float())
        assert kf.untyped_storage().data_ptr() == vf.untyped_storage().data_ptr()
        q = torch.randn(sum(CROSS_Q), heads, dim, generator=g).to(dtype)
        bk, bv = (torch.randn(heads, dim, generator=g).to(dtype) for _ in "kv")
        _compare(q, k, v, _cu(CROSS_Q), _cu(CROSS_K), bk, bv, dtype, max(CROSS_Q), max(CROSS_K))


def test_slices_of_different_tokens_are_converted_apart():
    """Views with one token stride whose columns do not fit in one token's row (here a
    later token's row) cannot share a block: each is converted on its own."""
    base = torch.randn(10, 2, 8).to(torch.bfloat16)
    a, b = base[:6], base[3:9]   # same storage and stride, rows 3 tokens apart
    af, bf = _fp32_rows(a, b)
    assert torch.equal(af, a.float()) and torch.equal(bf, b.float())


def test_many_sets_and_thread_counts_agree(rng):
    """Results do not depend on the thread count (each set is one task; the bias
    gradient is summed per thread, so only it may differ by rounding)."""
    lengths = [int(x) for x in rng.integers(0, 40, size=300)]
    q, k, v, cq, ck, bk, bv = _problem(rng, lengths, lengths, 8, 8, torch.float32, True)
    runs = []
    for threads in (1, 2, 3):
        leaves = [t.detach().requires_grad_() for t in (q, k, v, bk, bv)]
        out = varlen_attention_cpu(*leaves[:3], cq, ck, 39, 39, bias_k=leaves[3],
                                   bias_v=leaves[4], threads=threads)
        runs.append((out, torch.autograd.grad(out.square().sum(), leaves)))
    for out, grads in runs[1:]:
        assert torch.equal(out, runs[0][0])
        for g, g0 in zip(grads[:3], runs[0][1][:3]):
            assert torch.equal(g, g0)
        for g, g0 in zip(grads[3:], runs[0][1][3:]):
            torch.testing.assert_close(g, g0, atol=1e-5, rtol=1e-6)
    _compare(q, k, v, cq, ck, bk, bv, torch.float32, 39, 39)


def test_empty_inputs():
    cu = torch.zeros(4, dtype=torch.int32)
    q = torch.randn(0, 2, 8, requires_grad=True)
    out = varlen_attention_cpu(q, q, q, cu, cu, 0, 0, bias_k=torch.randn(2, 8), bias_v=torch.randn(2, 8))
    assert out.shape == (0, 2, 8)
    out.sum().backward()
    assert q.grad.shape == (0, 2, 8)
    none = torch.zeros(1, dtype=torch.int32)  # zero sets
    assert varlen_attention_cpu(q, q, q, none, none, 0, 0).shape == (0, 2, 8)


def test_unsupported_head_dim_falls_back_to_reference(rng):
    assert not cpu_kernel_supports(5) and cpu_kernel_supports(8)
    q, k, v, cq, ck, bk, bv = _problem(rng, [3, 0, 2], [3, 1, 0], 2, 5, torch.float32, True)
    out = varlen_attention_cpu(q, k, v, cq, ck, 3, 3, bias_k=bk, bias_v=bv)
    ref = varlen_attention_reference(q, k, v, cq, ck, 3, 3, bias_k=bk, bias_v=bv)
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


def test_dispatch_uses_the_cpu_kernels(rng, monkeypatch):
    monkeypatch.delenv("LAMFAST_ATTENTION", raising=False)
    assert attention_backend("cpu") == "cpu"
    q, k, v, cq, ck, bk, bv = _problem(rng, [4, 1], [2, 5], 2, 8, torch.float32, True)
    fast = varlen_attention(q, k, v, cq, ck, 4, 5, bias_k=bk, bias_v=bv)
    assert torch.equal(fast, varlen_attention_cpu(q, k, v, cq, ck, 4, 5, bias_k=bk, bias_v=bv))
    monkeypatch.setenv("LAMFAST_ATTENTION", "reference")
    ref = varlen_attention(q, k, v, cq, ck, 4, 5, bias_k=bk, bias_v=bv)
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=2e-6)


def test_core_rejects_bad_layouts():
    """The C++ entry point checks what it relies on, even when called directly."""
    from lamfast import _core

    q = torch.randn(5, 2, 8)
    out, lse = torch.empty(5, 2, 8), torch.empty(5, 2)
    good = torch.tensor([0, 2, 5], dtype=torch.int32)
    call = lambda cu_k, k=q: _core.attention_forward(q.numpy(), k.numpy(), k.numpy(), good.numpy(),
                                                     cu_k.numpy(), None, None, 1.0, out.numpy(),
                                                     lse.numpy(), 1)
    with pytest.raises(ValueError, match="rise from 0"):
        call(torch.tensor([0, 2, 9], dtype=torch.int32))
    with pytest.raises(ValueError, match="not decrease"):
        call(torch.tensor([0, 6, 5], dtype=torch.int32))
    with pytest.raises(ValueError, match="contiguous"):
        call(good, torch.randn(5, 8, 2).transpose(1, 2))
    with pytest.raises(ValueError, match="head_dim"):
        call(good, torch.randn(5, 2, 4))


def test_scale_argument(rng):
    q, k, v, cq, ck, bk, bv = _problem(rng, [3, 2], [4, 1], 2, 16, torch.float32, True)
    for scale in (0.1, 1.0, 1 / math.sqrt(16)):
        out = varlen_attention_cpu(q, k, v, cq, ck, 3, 4, bias_k=bk, bias_v=bv, scale=scale)
        ref = varlen_attention_reference(q, k, v, cq, ck, 3, 4, bias_k=bk, bias_v=bv, scale=scale)
        torch.testing.assert_close(out, ref, atol=2e-6, rtol=2e-6)


ISA_CHILD = textwrap.dedent("""
    import sys
    import torch
    from lamfast import _core
    from lamfast.ops import varlen_attention_reference
    from lamfast.ops.attention_cpu import varlen_attention_cpu

    assert _core.attention_isa() == sys.argv[1], _core.attention_isa()
    cu = lambda ls: torch.tensor([0] + ls, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    g = torch.Generator().manual_seed(3)
    for heads, dim in [(16, 8), (8, 16), (4, 32), (3, 12), (1, 64), (2, 4), (2, 24), (1, 48)]:
        for lq, lk in [({SELF}, {SELF}), ({CROSS_Q}, {CROSS_K})]:
            for bias in (True, False):
                leaves = [torch.randn(sum(n), heads, dim, generator=g).requires_grad_()
                          for n in (lq, lk, lk)]
                bk, bv = [torch.randn(heads, dim, generator=g).requires_grad_() if bias else None
                          for _ in "kv"]
                args = (cu(lq), cu(lk), max(lq), max(lk))
                out = varlen_attention_cpu(*leaves[:3], *args, bias_k=bk, bias_v=bv)
                ref = varlen_attention_reference(*leaves[:3], *args, bias_k=bk, bias_v=bv)
                torch.testing.assert_close(out, ref, atol=2e-6, rtol=2e-6)
                grad = torch.randn(out.shape, generator=g)
                inputs = leaves + ([bk, bv] if bias else [])
                for a, b in zip(torch.autograd.grad(out, inputs, grad),
                                torch.autograd.grad(ref, inputs, grad)):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
                qb, kb, vb = (x.detach().bfloat16() for x in leaves[:3])   # the bf16 entry
                converted = varlen_attention_cpu(qb.requires_grad_(), kb, vb, *args, bias_k=bk,
                                                 bias_v=bv).detach()
                with torch.no_grad():
                    direct = varlen_attention_cpu(qb.detach(), kb, vb, *args, bias_k=bk, bias_v=bv)
                assert torch.equal(direct, converted), (heads, dim, bias)
    print(sys.argv[1], "ok")
""").replace("{SELF}", repr(SELF)).replace("{CROSS_Q}", repr(CROSS_Q)).replace("{CROSS_K}", repr(CROSS_K))

# What each build needs, as /proc/cpuinfo names the flags.
ISA_FLAGS = {"baseline": set(), "avx2": {"avx2", "fma"},
             "avx512": {"avx512f", "avx512vl", "avx512bw", "avx512dq", "fma"}}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


def _run_child(tmp_path, isa, code=ISA_CHILD):
    kw = same_lamfast(tmp_path)
    kw["env"]["LAMFAST_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code, isa], capture_output=True, text=True,
                          timeout=300, check=False, **kw)


@pytest.mark.parametrize("isa", list(ISA_FLAGS))
def test_each_isa_build_matches_reference(tmp_path, isa):
    """Each build of the kernels, forced by LAMFAST_CPU_ISA (read once per process, hence
    the child process), against the reference on every head dim, with and without the bias."""
    if platform.machine() not in ("x86_64", "AMD64") and isa != "baseline":
        pytest.skip(f"the {isa} build exists on x86-64 only")
    if not ISA_FLAGS[isa] <= _cpu_flags():
        pytest.skip(f"this CPU lacks {sorted(ISA_FLAGS[isa] - _cpu_flags())}: the {isa} build cannot run")
    r = _run_child(tmp_path, isa)
    assert r.returncode == 0 and f"{isa} ok" in r.stdout, r.stderr[-3000:]


def test_the_best_build_the_cpu_runs_is_the_default():
    """attention_isas() lists the builds the CPU's flags allow, best first, and the default
    (no LAMFAST_CPU_ISA) is the first."""
    from lamfast import _core

    flags = _cpu_flags()
    if not flags or os.environ.get("LAMFAST_CPU_ISA"):
        pytest.skip("no /proc/cpuinfo flags here, or LAMFAST_CPU_ISA is set for this run")
    x86 = platform.machine() in ("x86_64", "AMD64")
    runs = [isa for isa in ISA_FLAGS if ISA_FLAGS[isa] <= flags and (x86 or isa == "baseline")]
    assert _core.attention_isas() == sorted(runs, key=["avx512", "avx2", "baseline"].index)
    assert _core.attention_isa() == _core.attention_isas()[0]


@pytest.mark.parametrize("isa", ["sse9", "avx512"])
def test_a_forced_isa_the_cpu_lacks_or_nobody_knows_is_an_error(tmp_path, isa):
    if isa == "avx512" and ISA_FLAGS["avx512"] <= _cpu_flags():
        pytest.skip("this CPU has AVX-512: forcing it is no error here")
    r = _run_child(tmp_path, isa, "from lamfast import _core; _core.attention_isa()")
    assert r.returncode != 0 and f"LAMFAST_CPU_ISA={isa}" in r.stderr, r.stderr[-2000:]
