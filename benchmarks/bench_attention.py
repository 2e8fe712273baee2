"""lamfast varlen attention vs stock PyTorch attention on the same ragged sets.

Workloads (the paper's shapes), B sets each, one learned bias key/value per head
(``add_bias_kv``), H x D = 16x8, 8x16, 4x32 (the paper's heads):

* ``encoder``  self-attention, set lengths uniform in [1, 64];
* ``decoder``  cross-attention of 1-6 requested tokens per star to its 1-64 inputs.

Candidates:

* ``lamfast-triton``   the Triton kernels on the packed layout (CUDA; ``--dry``: the
  Triton interpreter on the CPU)
* ``lamfast-cpu``      the C++ CPU kernels on the packed layout (what runs on CPUs)
* ``lamfast-reference`` lamfast's plain PyTorch oracle on the packed layout (timed up to
  1e5 sets: it is the oracle, not a contender)
* ``sdpa-padded-<backend>``  SDPA on [B, H, L(+1), D] padded sets with a key-padding mask,
  one run per SDPA backend that accepts a mask (math, efficient, cudnn; flash refuses
  masks; CPU: math and the CPU flash kernel)
* ``sdpa-nested``      SDPA on nested jagged tensors (one component per star)
* ``flex-document``    FlexAttention on the packed sequence with a document mask (GPU, or
  ``--flex`` on CPU where its compile takes minutes; ``--dry`` runs it uncompiled)

Stock candidates receive their layout ready-made, bias slot appended (not timed), which
favours them; lamfast's candidates time only the attention call. Every candidate's output
is checked against lamfast's reference on the first 2,048 sets before its time is
reported. Metrics: median time, sets/s, ratio to the best stock candidate of the same case,
useful TFLOP/s (4*H*D*Lq*(Lk+1) per set forward; x3.5 for forward+backward,
FlashAttention's convention). The table is rewritten after every case, so a run stopped
part-way (``--budget``, or a timeout) keeps what it measured.

    python -m benchmarks.bench_attention --quick          # < 1 min on a laptop CPU
    python -m benchmarks.bench_attention                  # full sizes (1e5 sets; 1e5 and 1e6 on CUDA)
    python -m benchmarks.bench_attention --dry            # tiny sets, the GPU's candidate list, on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from lamfast.ops import varlen_attention_reference

from .common import device_name, write_table

HEAD_SHAPES = ((16, 8), (8, 16), (4, 32))
# name: (query lengths, key lengths); None = self-attention (queries are the keys)
WORKLOADS = {"encoder": ((1, 64), None), "decoder": ((1, 6), (1, 64))}
QUICK_WORKLOADS = {"encoder": ((5, 64), None), "decoder": ((1, 6), (5, 64))}
DRY_WORKLOADS = {"encoder": ((1, 16), None), "decoder": ((1, 6), (1, 16))}  # one tile: the interpreter is slow
CHECK_SETS = 2048         # sets checked against the reference
REFERENCE_MAX_SETS = 100_000  # the oracle is timed up to here
FLEX_MAX_BLOCK_PAIRS = 2e9    # FlexAttention's BlockMask keeps a dense q-block x kv-block table
CUDA_ONLY_BACKENDS = ("efficient_attention", "cudnn_attention")


# ---- data ------------------------------------------------------------------------------

class Case:
    """One workload: packed q/k/v + bias, and lazily the stock layouts built from it."""

    def __init__(self, n_sets, q_range, k_range, heads, dim, dtype, device, seed=0):
        g = torch.Generator().manual_seed(seed)
        lengths_q = torch.randint(q_range[0], q_range[1] + 1, (n_sets,), generator=g)
        lengths_k = (lengths_q if k_range is None else
                     torch.randint(k_range[0], k_range[1] + 1, (n_sets,), generator=g))
        self.lengths_q, self.lengths_k = lengths_q.to(device), lengths_k.to(device)
        cu = lambda x: torch.cat([x.new_zeros(1), x.cumsum(0)]).to(torch.int32)
        self.cu_q, self.cu_k = cu(self.lengths_q), cu(self.lengths_k)
        self.max_q, self.max_k = int(lengths_q.max()), int(lengths_k.max())
        self.total_q, self.total_k = int(lengths_q.sum()), int(lengths_k.sum())
        make = lambda *s: torch.randn(*s, device=device, dtype=dtype)
        self.q = make(self.total_q, heads, dim)
        self.k, self.v = make(self.total_k, heads, dim), make(self.total_k, heads, dim)
        self.bias_k, self.bias_v = make(heads, dim), make(heads, dim)
        self.n_sets, self.heads, self.dim = n_sets, heads, dim
        self.useful_flop = float(4 * heads * dim * (lengths_q.double() * (lengths_k.double() + 1)).sum())

    def attend(self, fn, n_sets=None):
        """fn (lamfast's signature) on the first n_sets sets (all by default)."""
        n = self.n_sets if n_sets is None else min(n_sets, self.n_sets)
        tq, tk = int(self.cu_q[n]), int(self.cu_k[n])
        return fn(self.q[:tq], self.k[:tk], self.v[:tk], self.cu_q[:n + 1], self.cu_k[:n + 1],
                  self.max_q, self.max_k, bias_k=self.bias_k, bias_v=self.bias_v)

    def check_tokens(self, n_sets=CHECK_SETS) -> int:
        return int(self.cu_q[min(n_sets, self.n_sets)])

    # padded [B, H, L(+1), D] with the bias slot as key L
    def padded(self):
        b, dev = self.n_sets, self.q.device

        def gather(x, cu, lengths, width):
            pos = torch.arange(width, device=dev)
            valid = pos[None, :] < lengths[:, None]
            index = torch.where(valid, cu[:-1, None].long() + pos[None, :], 0)
            return torch.where(valid[..., None, None], x[index], 0).transpose(1, 2), valid

        q, valid_q = gather(self.q, self.cu_q, self.lengths_q, self.max_q)
        k, valid_k = gather(self.k, self.cu_k, self.lengths_k, self.max_k)
        v, _ = gather(self.v, self.cu_k, self.lengths_k, self.max_k)
        tail = lambda bias: bias[None, :, None, :].expand(b, -1, 1, -1)
        k = torch.cat([k, tail(self.bias_k)], 2)
        v = torch.cat([v, tail(self.bias_v)], 2)
        mask = torch.cat([valid_k, valid_k.new_ones(b, 1)], 1)[:, None, None, :]  # True = attend
        return q.contiguous(), k.contiguous(), v.contiguous(), mask, valid_q

    def packed_with_bias(self):
        """Keys: each set's tokens then its bias slot, one packed sequence, and its offsets."""
        dev, n = self.q.device, self.n_sets
        cu_kb = self.cu_k.long() + torch.arange(n + 1, device=dev)
        set_of = torch.repeat_interleave(torch.arange(n, device=dev), self.lengths_k)
        pos = torch.arange(self.total_k, device=dev) + set_of
        last = cu_kb[1:] - 1
        kb = self.k.new_empty(self.total_k + n, self.heads, self.dim)
        vb = torch.empty_like(kb)
        kb[pos], vb[pos] = self.k, self.v
        kb[last], vb[last] = self.bias_k, self.bias_v
        return kb, vb, cu_kb

    def nested(self):
        kb, vb, cu_kb = self.packed_with_bias()
        nest = lambda x, cu, n: torch.nested.nested_tensor_from_jagged(x, offsets=cu.long(),
                                                                       max_seqlen=n).transpose(1, 2)
        return (nest(self.q, self.cu_q, self.max_q), nest(kb, cu_kb, self.max_k + 1),
                nest(vb, cu_kb, self.max_k + 1))


def document_block_mask(doc_q, doc_k, cu_q, cu_kb, block: int = 128):
    """FlexAttention BlockMask of a block-diagonal (document) mask, built from the set
    offsets rather than by evaluating the mask on the whole [Tq, Tk] grid."""
    from torch.nn.attention.flex_attention import BlockMask

    tq, tk = doc_q.numel(), doc_k.numel()
    nq, nk = -(-tq // block), -(-tk // block)
    starts = torch.arange(nq, device=doc_q.device) * block
    first_doc = doc_q[starts]
    last_doc = doc_q[torch.clamp(starts + block - 1, max=tq - 1)]
    lo = cu_kb[first_doc] // block
    hi = (cu_kb[last_doc + 1] - 1) // block
    count = (hi - lo + 1).to(torch.int32)
    width = int(count.max())
    idx = lo[:, None] + torch.arange(width, device=doc_q.device)[None, :]
    idx = torch.where(idx <= hi[:, None], idx, 0).clamp(max=nk - 1).to(torch.int32)
    mask_mod = lambda b, h, qi, ki: doc_q[qi] == doc_k[ki]
    return BlockMask.from_kv_blocks(count[None, None], idx[None, None], BLOCK_SIZE=block,
                                    mask_mod=mask_mod, seq_lengths=(tq, tk))


# ---- candidates: each returns (run(), to_packed(out), inputs) --------------------------

def cand_lamfast(case, backend):
    if backend == "triton":
        from lamfast.ops.attention_triton import varlen_attention_triton as fn
    elif backend == "cpu":
        from lamfast.ops.attention_cpu import varlen_attention_cpu as fn
    else:
        fn = varlen_attention_reference
    return lambda: case.attend(fn), lambda out: out, [case.q, case.k, case.v, case.bias_k, case.bias_v]


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


def cand_flex(case, compiled):
    from torch.nn.attention.flex_attention import flex_attention

    blocks = (-(-case.total_q // 128)) * (-(-(case.total_k + case.n_sets) // 128))
    if blocks > FLEX_MAX_BLOCK_PAIRS:
        raise Skip(f"skipped: BlockMask's dense table of {blocks:.1e} block pairs is too large")
    kb, vb, cu_kb = case.packed_with_bias()
    dev, n = case.q.device, case.n_sets
    doc_q = torch.repeat_interleave(torch.arange(n, device=dev), case.lengths_q)
    doc_k = torch.repeat_interleave(torch.arange(n, device=dev), case.lengths_k + 1)
    q = case.q.transpose(0, 1)[None].contiguous()   # [1, H, T, D]
    k = kb.transpose(0, 1)[None].contiguous()
    v = vb.transpose(0, 1)[None].contiguous()
    block_mask = document_block_mask(doc_q, doc_k, case.cu_q.long(), cu_kb)
    flex = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention

    def run():
        return flex(q, k, v, block_mask=block_mask)
    return run, lambda out: out[0].transpose(0, 1), [q, k, v]


class Skip(Exception):
    """A candidate that does not run here; its message is the row's status."""


def cand_skipped(reason):
    def make(case, _):
        raise Skip(reason)
    return make


def candidates(device: torch.device, flex: bool, dry: bool, n_sets: int):
    """(name, make, arg, stock) of every candidate; in a dry run the GPU's list, with what
    needs CUDA reported as skipped."""
    gpu = device.type == "cuda"
    out = []
    if gpu or dry:  # dry: the Triton interpreter runs the kernels on the CPU
        out.append(("lamfast-triton", cand_lamfast, "triton", False))
    else:
        out.append(("lamfast-cpu", cand_lamfast, "cpu", False))
    if n_sets <= REFERENCE_MAX_SETS:
        out.append(("lamfast-reference", cand_lamfast, "reference", False))
    else:
        out.append(("lamfast-reference", cand_skipped(f"skipped: the oracle is timed up to {REFERENCE_MAX_SETS:,} sets"),
                    None, False))
    backends = ("math", "efficient_attention", "cudnn_attention") if gpu or dry else ("math", "flash_attention")
    for b in backends:
        make = cand_skipped("skipped: needs CUDA") if b in CUDA_ONLY_BACKENDS and not gpu else cand_sdpa_padded
        out.append((f"sdpa-padded-{b.split('_')[0]}", make, b, True))
    out.append(("sdpa-nested", cand_sdpa_nested, None, True))
    if gpu or flex or dry:
        out.append(("flex-document", cand_flex, not dry or gpu, True))  # dry on a CPU: uncompiled
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
        if name.startswith("flex") and mode != "fwd" and device.type != "cuda":
            raise Skip("skipped: needs CUDA (FlexAttention has no CPU backward)")
        if name == "lamfast-triton" and case.q.dtype == torch.bfloat16 and device.type != "cuda":
            raise Skip("skipped: needs CUDA (bf16 tl.dot is wrong in the Triton interpreter)")
        run, to_packed, inputs = make(case, arg)
        t0 = time.perf_counter()
        out = run()  # also the first compile / autotune
        _sync(device)
        first = time.perf_counter() - t0
        if first * (warmup + repeats) > budget_s:  # a slow candidate: fewer runs rank it
            warmup, repeats = 0, max(1, min(repeats, int(budget_s / max(first, 1e-9))))
        err = (to_packed(out)[:expected.shape[0]].float() - expected.float()).abs().max().item()
        del out
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
            grad = None

            def step():
                nonlocal grad
                out = run()
                if grad is None:
                    grad = torch.randn_like(out)
                torch.autograd.grad(out, inputs, grad, allow_unused=True)
            try:
                seconds = time_call(step, device, warmup, repeats)
            finally:
                for x in inputs:
                    x.requires_grad_(False)
        flop = case.useful_flop * (1.0 if mode == "fwd" else 3.5)
        row.update(status="ok", seconds=seconds, sets_per_s=case.n_sets / seconds,
                   tflops=flop / seconds / 1e12)
    except Skip as e:
        row["status"] = str(e)
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
    except Exception as e:  # unsupported shape/backend: report, keep going
        row["status"] = f"unsupported: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# ---- main ------------------------------------------------------------------------------

def parse_heads(text: str) -> tuple[int, int]:
    h, d = text.lower().split("x")
    return int(h), int(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 sets, lengths 5-64 (< 1 min on a CPU)")
    p.add_argument("--dry", action="store_true",
                   help="a dress rehearsal of the GPU run on a CPU: tiny sets, the GPU's dtypes and "
                        "candidate list (Triton through TRITON_INTERPRET=1, which this sets), what "
                        "needs CUDA reported as skipped; writes the full-size table's files")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--stars", type=int, nargs="*", help="set counts (default 1e5, and 1e6 on CUDA; quick: 64)")
    p.add_argument("--dtype", default=None, help="one dtype (as --dtypes)")
    p.add_argument("--dtypes", nargs="*", default=None,
                   help="float32 | float16 | bfloat16 (default bf16 and fp16 on GPU, fp32 on CPU)")
    p.add_argument("--workloads", nargs="*", choices=list(WORKLOADS), default=list(WORKLOADS))
    p.add_argument("--heads", nargs="*", type=parse_heads, default=list(HEAD_SHAPES),
                   help="H x D shapes, e.g. 16x8 8x16 4x32")
    p.add_argument("--modes", nargs="*", default=["fwd", "fwd+bwd"])
    p.add_argument("--flex", action="store_true", help="also FlexAttention on CPU (slow compile)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--budget", type=float, default=None,
                   help="wall seconds for the whole run; cases left then are listed as skipped")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    if args.dry:
        os.environ["TRITON_INTERPRET"] = "1"  # read when lamfast's Triton module is imported
        if args.device == "auto":
            args.device = "cpu"

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    names = args.dtypes or ([args.dtype] if args.dtype else
                            (["bfloat16", "float16"] if gpu else
                             ["float16", "bfloat16"] if args.dry else ["float32"]))  # dry: interpreted fp16 first
    dtypes = [getattr(torch, d) for d in names]
    stars = args.stars or ([64] if args.quick else [2] if args.dry else
                           [100_000, 1_000_000] if gpu else [100_000])
    workloads = QUICK_WORKLOADS if args.quick else DRY_WORKLOADS if args.dry else WORKLOADS
    budget_s = 3.0 if args.quick or args.dry else 5.0 if gpu else 60.0  # per candidate and case
    repeats = args.repeats or (1 if args.dry else 3 if args.quick or not gpu else 10)
    warmup = 0 if args.dry else 1 if not gpu else 3
    if args.dry:
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    print(f"# {device_name(str(device))} | torch {torch.__version__} | {', '.join(names)}"
          + (" | dry run" if args.dry else ""), flush=True)

    rows, last_case_s = [], 0.0
    # Most wanted first: every size in the first dtype, then the next dtype.
    plan = [(dtype, n, w, hd) for dtype in dtypes for n in stars for w in args.workloads for hd in args.heads]
    for dtype, n, workload, (heads, dim) in plan:
        q_range, k_range = workloads[workload]
        k_text = "" if k_range is None else f"x{k_range[0]}-{k_range[1]}"
        meta = dict(stars=n, workload=workload, lengths=f"{q_range[0]}-{q_range[1]}{k_text}", heads=heads,
                    head_dim=dim, dtype=str(dtype).replace("torch.", ""))
        # stop where the next case would likely overrun (it takes about as long as the last)
        if args.budget is not None and time.perf_counter() - t_start + last_case_s > args.budget:
            for mode in args.modes:
                rows.append({**meta, "mode": mode, "candidate": "all", "status": "skipped: time budget"})
            continue
        case_start = time.perf_counter()
        try:
            case = Case(n, q_range, k_range, heads, dim, dtype, device)
            expected = case.attend(varlen_attention_reference, CHECK_SETS)
        except torch.cuda.OutOfMemoryError:
            rows += [{**meta, "mode": m, "candidate": "all", "status": "out of memory (inputs)"} for m in args.modes]
            continue
        for mode in args.modes:
            case_rows = []
            for name, make, arg, stock in candidates(device, args.flex, args.dry, n):
                row = measure(case, name, make, arg, device, mode, expected, warmup, repeats, budget_s)
                row.update(meta, stock=stock)
                case_rows.append(row)
            ok_stock = [r["seconds"] for r in case_rows if r["stock"] and r.get("status") == "ok"]
            best = min(ok_stock) if ok_stock else math.nan
            for r in case_rows:
                r["vs_best_stock"] = best / r["seconds"] if r.get("status") == "ok" else math.nan
                _print_row(r)
            rows += case_rows
            save(rows, device, args, final=False)
        del case, expected
        last_case_s = time.perf_counter() - case_start
        if gpu:
            torch.cuda.empty_cache()
    save(rows, device, args, final=True)
    return 0


def save(rows, device, args, final: bool):
    """Write the table (quietly until the last time: it is rewritten after every case)."""
    notes = (f"Command: `python -m benchmarks.bench_attention {' '.join(args.argv)}`\n\n"
             "Medians; `vs_best_stock` = best stock candidate's time / this candidate's time; "
             "lengths = query set lengths (x key set lengths for cross-attention)."
             + ("" if final else "\n\n**Partial: the run stopped before its end.**")
             + ("\n\nDry run: tiny sets on a CPU, Triton through its interpreter; times mean "
                "nothing, the rows check the plumbing." if args.dry else ""))
    with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
        write_table("attention", [{c: _fmt(r, c) for c in COLUMNS} for r in rows], device=str(device),
                    title="Varlen attention: lamfast vs stock PyTorch", notes=notes, quick=args.quick,
                    extra_stamp={"threads": torch.get_num_threads()} if device.type == "cpu" else None)


COLUMNS = ["stars", "workload", "lengths", "heads", "head_dim", "dtype", "mode", "candidate", "status",
           "seconds", "sets_per_s", "vs_best_stock", "tflops", "max_abs_err"]


def _fmt(r, key):
    v = r.get(key, "")
    if isinstance(v, float):
        return "" if math.isnan(v) else (f"{v:.3g}" if key != "sets_per_s" else f"{v:,.0f}")
    return str(v)


def _print_row(r):
    print(f"{r['stars']:>8} {r['workload'][:3]} {r['lengths']:>9} {r['heads']:>2}x{r['head_dim']:<2} "
          f"{r['dtype'][:4]} {r['mode']:7} {r['candidate']:22} {_fmt(r, 'sets_per_s'):>14} sets/s  "
          f"x{_fmt(r, 'vs_best_stock'):>6}  {_fmt(r, 'tflops'):>7} TFLOP/s  err {r.get('max_abs_err', '-')}  "
          f"{'' if r.get('status') == 'ok' else r.get('status', '')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
