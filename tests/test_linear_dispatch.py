"""The CPU dense-layer dispatch of lamfast.model._linear, each path forced.

The paths: oneDNN's fused linear (bias and GELU inside the GEMM) for the dtypes oneDNN
has on this CPU (``_FUSED_DTYPES``: fp32 always, bf16 only with AVX-512), F.linear for
the rest, for autograd and for torch builds without oneDNN. Each probe result is forced
in turn (the module-level probe results are patched) and each path must be the one
taken and agree with an fp32 reference on odd shapes. Where this CPU lacks the fused
bf16 kernel (AVX2-only, AMD Zen 3) forcing it cannot run oneDNN: a stand-in records the
call and computes the same GEMM, so the test checks what is dispatched, and the cast.
"""

import pytest
import torch
import torch.nn.functional as F

import lamfast.model as model

pytestmark = pytest.mark.usefixtures("single_torch_thread")

REAL = model._LINEAR_POINTWISE
HAS_BF16 = REAL is not None and torch.bfloat16 in model._FUSED_DTYPES
SHAPES = [(0, 5, 3), (1, 13, 17), (7, 64, 64), (33, 24, 9)]     # [T, in] -> [T, out]
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}
PROBES = {  # forced probe results -> _FUSED_DTYPES (None: no oneDNN in this torch build)
    "onednn-bf16": (torch.float32, torch.bfloat16),    # AVX-512 (BF16) and AMX CPUs
    "onednn-fp32": (torch.float32,),                   # AVX2 only
    "no-onednn": None,
}


def _reference(x, w, b, gelu):
    y = x.double() @ w.double().T + b.double()
    return F.gelu(y) if gelu else y


def _recorder(calls):
    """The fused op, or where this CPU cannot run it in bf16 a stand-in for it."""
    def fused(x, w, b, attr, scalars, algorithm):
        calls.append((x.dtype, w.dtype, b.dtype, attr))
        if REAL is not None and (x.dtype == torch.float32 or HAS_BF16):
            return REAL(x, w, b, attr, scalars, algorithm)
        y = F.linear(x, w, b)
        return F.gelu(y) if attr == "gelu" else y
    return fused


@pytest.mark.parametrize("gelu", [False, True], ids=["linear", "gelu"])
@pytest.mark.parametrize("how", ["fp32", "autocast-bf16", "bf16-tensors"])
@pytest.mark.parametrize("probe", list(PROBES))
def test_each_forced_path_is_taken_and_matches_fp32(probe, how, gelu, monkeypatch):
    calls = []
    fused_dtypes = PROBES[probe]
    monkeypatch.setattr(model, "_LINEAR_POINTWISE", None if fused_dtypes is None else _recorder(calls))
    monkeypatch.setattr(model, "_FUSED_DTYPES", fused_dtypes or (torch.float32,))
    dtype = torch.float32 if how == "fp32" else torch.bfloat16
    g = torch.Generator().manual_seed(1)
    for t, n_in, n_out in SHAPES:
        x, w = torch.randn(t, n_in, generator=g), torch.randn(n_out, n_in, generator=g)
        b = torch.randn(n_out, generator=g)
        if how == "bf16-tensors":
            x, w, b = x.bfloat16(), w.bfloat16(), b.bfloat16()
        before = len(calls)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=how == "autocast-bf16"):
            y = model._linear(x, w, b, gelu)
        fused = fused_dtypes is not None and dtype in fused_dtypes
        assert len(calls) - before == int(fused), (probe, how, t)
        if fused:
            assert calls[-1] == (dtype, dtype, dtype, "gelu" if gelu else "none")
        assert y.dtype == dtype and y.shape == (t, n_out)
        # the reference sees the inputs as rounded to the path's dtype
        want = _reference(x.to(dtype), w.to(dtype), b.to(dtype), gelu)
        scale = float(want.abs().max()) if t else 1.0
        torch.testing.assert_close(y.double(), want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def test_autograd_takes_f_linear_whatever_the_probe(monkeypatch):
    calls = []
    monkeypatch.setattr(model, "_LINEAR_POINTWISE", _recorder(calls))
    monkeypatch.setattr(model, "_FUSED_DTYPES", PROBES["onednn-bf16"])
    x = torch.randn(5, 13, requires_grad=True)
    w, b = torch.randn(17, 13), torch.randn(17)
    y = model._linear(x, w, b, gelu=True)
    y.sum().backward()
    assert not calls and x.grad.shape == x.shape
    torch.testing.assert_close(y.detach().double(), _reference(x.detach(), w, b, True), rtol=2e-5, atol=2e-5)


def test_the_real_probe_matches_what_onednn_can_run():
    """The import-time probe says bf16 exactly where oneDNN runs a bf16 linear here."""
    if REAL is None:
        pytest.skip("this torch build has no oneDNN fused linear")
    x, w, b = torch.randn(3, 8).bfloat16(), torch.randn(4, 8).bfloat16(), torch.randn(4).bfloat16()
    try:
        REAL(x, w, b, "none", [], "")
        runs = True
    except RuntimeError:
        runs = False
    assert runs == HAS_BF16
