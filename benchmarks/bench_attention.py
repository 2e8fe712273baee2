"""lamfast varlen attention vs stock PyTorch attention on the same ragged sets.

Workload: B stars, set lengths uniform in [lo, hi], H x D = 16x8, 8x16, 4x32 (the paper's
heads), one learned bias key/value per head (``add_bias_kv``). Candidates:

* ``lamfast-triton``   the Triton kernels on the packed layout (CUDA only)
* ``lamfast-cpu``      the C++ CPU kernels on the packed layout (what runs on CPUs)
* ``lamfast-reference`` lamfast's plain PyTorch oracle on the packed layout
* ``sdpa-padded-<backend>``  SDPA on [B, H, L+1, D] padded sets with a key-padding mask,
  one run per SDPA backend that accepts a mask (math, efficient, cudnn; flash refuses
  masks; CPU: math and the CPU flash kernel)
* ``sdpa-nested``      SDPA on nested jagged tensors (one component per star)
* ``flex-document``    FlexAttention on the packed sequence with a document mask (GPU, or
  ``--flex`` on CPU where its compile takes minutes)

Stock candidates receive their layout ready-made, bias slot appended (not timed), which
favours them; lamfast's candidates time only the attention call. Every candidate's output
is checked against lamfast's reference before its time is reported. Metrics: median
time, sets/s, ratio to the best stock candidate of the same case, useful TFLOP/s
(4*H*D*Lq*(Lk+1) per set forward; x3.5 for forward+backward, FlashAttention's convention).

    python -m benchmarks.bench_attention --quick          # < 1 min on a laptop CPU
    python -m benchmarks.bench_attention                  # full sizes (1e5 stars)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from lamfast.ops import varlen_attention_reference

from .common import device_name, write_table

HEAD_SHAPES = ((16, 8), (8, 16), (4, 32))
LENGTHS = ((5, 64), (10, 120))


# ---- data ------------------------------------------------------------------------------

class Case:
    """One workload: packed q/k/v + bias, and lazily the stock layouts built from it."""

    def __init__(self, n_sets, lo, hi, heads, dim, dtype, device, seed=0):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(lo, hi + 1, (n_sets,), generator=g)
        self.lengths = lengths.to(device)
        self.cu = torch.zeros(n_sets + 1, dtype=torch.int32, device=device)
        self.cu[1:] = self.lengths.cumsum(0)
        self.max_len = int(lengths.max())
        total = int(lengths.sum())
        make = lambda *s: torch.randn(*s, device=device, dtype=dtype)
        self.q, self.k, self.v = make(total, heads, dim), make(total, heads, dim), make(total, heads, dim)
        self.bias_k, self.bias_v = make(heads, dim), make(heads, dim)
        self.n_sets, self.heads, self.dim, self.total = n_sets, heads, dim, total
        self.useful_flop = float(4 * heads * dim * (lengths.double() * (lengths.double() + 1)).sum())

    # padded [B, H, L(+1), D] with the bias slot as key L
    def padded(self):
        b, length = self.n_sets, self.max_len
        pos = torch.arange(length, device=self.q.device)
        valid = pos[None, :] < self.lengths[:, None]
        index = torch.where(valid, self.cu[:-1, None].long() + pos[None, :], 0)
        pad = lambda x: torch.where(valid[..., None, None], x[index], 0).transpose(1, 2)
        q = pad(self.q)
        tail = lambda bias: bias[None, :, None, :].expand(b, -1, 1, -1)
        k = torch.cat([pad(self.k), tail(self.bias_k)], 2)
        v = torch.cat([pad(self.v), tail(self.bias_v)], 2)
        mask = torch.cat([valid, valid.new_ones(b, 1)], 1)[:, None, None, :]  # True = attend
        return q.contiguous(), k.contiguous(), v.contiguous(), mask, valid

    def nested(self):
        lengths = self.lengths.cpu().tolist()
        qs = torch.split(self.q, lengths)
        ks = [torch.cat([x, self.bias_k[None]]) for x in torch.split(self.k, lengths)]
        vs = [torch.cat([x, self.bias_v[None]]) for x in torch.split(self.v, lengths)]
        nest = lambda xs: torch.nested.nested_tensor(list(xs), layout=torch.jagged).transpose(1, 2)
        return nest(qs), nest(ks), nest(vs)

    def packed_with_bias(self):
        """Keys: each set's tokens then its bias slot, one packed sequence; document ids."""
        lengths = self.lengths.cpu().tolist()
        ks, vs = [], []
        for x, y in zip(torch.split(self.k, lengths), torch.split(self.v, lengths)):
            ks += [x, self.bias_k[None]]
            vs += [y, self.bias_v[None]]
        doc_q = torch.repeat_interleave(torch.arange(self.n_sets, device=self.q.device), self.lengths)
        doc_k = torch.repeat_interleave(torch.arange(self.n_sets, device=self.q.device), self.lengths + 1)
        return torch.cat(ks), torch.cat(vs), doc_q, doc_k


# ---- candidates: each returns (run(), to_packed(out)) ----------------------------------

def cand_lamfast(case, backend):
    def run():
        if backend == "triton":
            from lamfast.ops.attention_triton import varlen_attention_triton as fn
        elif backend == "cpu":
            from lamfast.ops.attention_cpu import varlen_attention_cpu as fn
        else:
            fn = varlen_attention_reference
        return fn(case.q, case.k, case.v, case.cu, case.cu, case.max_len, case.max_len,
                  bias_k=case.bias_k, bias_v=case.bias_v)
    return run, lambda out: out, [case.q, case.k, case.v, case.bias_k, case.bias_v]


def cand_sdpa_padded(case, backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, mask, valid = case.padded()
    kind = getattr(SDPBackend, backend.upper())

    def run():
        with sdpa_kernel([kind]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return run, lambda out: out.transpose(1, 2)[valid], [q, k, v]


def cand_sdpa_nested(case, _):
    q, k, v = case.nested()

    def run():
        return F.scaled_dot_product_attention(q, k, v)
    return run, lambda out: out.transpose(1, 2).values(), [q, k, v]


def cand_flex(case, _):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    k, v, doc_q, doc_k = case.packed_with_bias()
    q = case.q.transpose(0, 1)[None].contiguous()   # [1, H, T, D]
    k = k.transpose(0, 1)[None].contiguous()
    v = v.transpose(0, 1)[None].contiguous()
    mask_fn = lambda b, h, qi, ki: doc_q[qi] == doc_k[ki]
    block_mask = create_block_mask(mask_fn, 1, 1, q.shape[2], k.shape[2], device=str(q.device))
    flex = torch.compile(flex_attention, dynamic=False)

    def run():
        return flex(q, k, v, block_mask=block_mask)
    return run, lambda out: out[0].transpose(0, 1), [q, k, v]


def candidates(device: torch.device, flex: bool):
    out = []
    if device.type == "cuda":
        out.append(("lamfast-triton", cand_lamfast, "triton", False))
    else:
        out.append(("lamfast-cpu", cand_lamfast, "cpu", False))
    out.append(("lamfast-reference", cand_lamfast, "reference", False))
    backends = ("math", "efficient_attention", "cudnn_attention") if device.type == "cuda" else ("math", "flash_attention")
    out += [(f"sdpa-padded-{b.split('_')[0]}", cand_sdpa_padded, b, True) for b in backends]
    out.append(("sdpa-nested", cand_sdpa_nested, None, True))
    if device.type == "cuda" or flex:
        out.append(("flex-document", cand_flex, None, True))
    return out


# ---- timing ----------------------------------------------------------------------------

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device, warmup: int, repeats: int) -> float:
    """Median seconds of fn() after warm-up (CUDA events on GPUs)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(case, name, make, arg, device, mode, expected, warmup, repeats, budget_s):
    row = {"candidate": name, "mode": mode}
    try:
        run, to_packed, inputs = make(case, arg)
        t0 = time.perf_counter()
        out = run()  # also the first compile / autotune
        _sync(device)
        if (time.perf_counter() - t0) * (warmup + repeats) > budget_s:
            warmup, repeats = 0, 1  # a very slow candidate: one timed run is enough to rank it
        err = (to_packed(out).float() - expected.float()).abs().max().item()
        row["max_abs_err"] = f"{err:.2e}"
        if not err < 0.05:
            row["status"] = "wrong result"
            return row
        if mode == "fwd":
            with torch.no_grad():
                seconds = time_call(run, device, warmup, repeats)
        else:
            for x in inputs:  # the very tensors the candidate's closure reads
                x.requires_grad_(True)
            grad = torch.randn_like(out)

            def step():
                torch.autograd.grad(run(), inputs, grad, allow_unused=True)
            seconds = time_call(step, device, warmup, repeats)
            for x in inputs:
                x.requires_grad_(False)
        flop = case.useful_flop * (1.0 if mode == "fwd" else 3.5)
        row.update(status="ok", seconds=seconds, sets_per_s=case.n_sets / seconds,
                   tflops=flop / seconds / 1e12)
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
    except Exception as e:  # unsupported shape/backend: report, keep going
        row["status"] = f"unsupported: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# ---- main ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 stars, lengths 5-64 (< 1 min on a CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--stars", type=int, nargs="*", help="set counts (default 1e5; quick: 64)")
    p.add_argument("--dtype", default=None, help="float32 | float16 | bfloat16 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--modes", nargs="*", default=["fwd", "fwd+bwd"])
    p.add_argument("--flex", action="store_true", help="also FlexAttention on CPU (slow compile)")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    stars = args.stars or ([64] if args.quick else [100_000])  # 100k sets fill an H100 many times
    lengths = LENGTHS[:1] if args.quick else LENGTHS
    budget_s = 3.0 if args.quick else 60.0  # per candidate and case, beyond its first run
    repeats = args.repeats or (3 if args.quick or device.type == "cpu" else 10)
    warmup = 1 if device.type == "cpu" else 3
    print(f"# {device_name(str(device))} | torch {torch.__version__} | {dtype}")

    rows = []
    for n in stars:
        for lo, hi in lengths:
            for heads, dim in HEAD_SHAPES:
                case = Case(n, lo, hi, heads, dim, dtype, device)
                expected = varlen_attention_reference(case.q, case.k, case.v, case.cu, case.cu, case.max_len,
                                                      case.max_len, bias_k=case.bias_k, bias_v=case.bias_v)
                for mode in args.modes:
                    case_rows = []
                    for name, make, arg, stock in candidates(device, args.flex):
                        row = measure(case, name, make, arg, device, mode, expected, warmup, repeats, budget_s)
                        row.update(stars=n, lengths=f"{lo}-{hi}", heads=heads, head_dim=dim,
                                   dtype=str(dtype).replace("torch.", ""), stock=stock)
                        case_rows.append(row)
                    ok_stock = [r["seconds"] for r in case_rows if r["stock"] and r.get("status") == "ok"]
                    best = min(ok_stock) if ok_stock else math.nan
                    for r in case_rows:
                        r["vs_best_stock"] = best / r["seconds"] if r.get("status") == "ok" else math.nan
                        _print_row(r)
                    rows += case_rows
                del case, expected
    write_table("attention", [{c: _fmt(r, c) for c in COLUMNS} for r in rows], device=str(device),
                title="Varlen attention: lamfast vs stock PyTorch",
                notes=f"Command: `python -m benchmarks.bench_attention {' '.join(args.argv)}`\n\n"
                      "Medians; `vs_best_stock` = best stock candidate's time / this candidate's time.",
                quick=args.quick,
                extra_stamp={"threads": torch.get_num_threads()} if device.type == "cpu" else None)
    return 0


COLUMNS = ["stars", "lengths", "heads", "head_dim", "dtype", "mode", "candidate", "status", "seconds",
           "sets_per_s", "vs_best_stock", "tflops", "max_abs_err"]


def _fmt(r, key):
    v = r.get(key, "")
    if isinstance(v, float):
        return "" if math.isnan(v) else (f"{v:.3g}" if key != "sets_per_s" else f"{v:,.0f}")
    return str(v)


def _print_row(r):
    print(f"{r['stars']:>8} {r['lengths']:>6} {r['heads']:>2}x{r['head_dim']:<2} {r['mode']:7} "
          f"{r['candidate']:22} {_fmt(r, 'sets_per_s'):>14} sets/s  x{_fmt(r, 'vs_best_stock'):>6}  "
          f"{_fmt(r, 'tflops'):>7} TFLOP/s  err {r.get('max_abs_err', '-')}  "
          f"{'' if r.get('status') == 'ok' else r.get('status', '')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
