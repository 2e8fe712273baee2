"""Inference throughput of the model alone: lamfast's LAM vs the stock padded model.

The labelling workload of the paper: 63 tokens in (bp0..29, rp0..29, jh, jk, bprp) and
Teff, logg, [M/H] out, for stars of a synthetic catalogue with complete inputs, tokenized
beforehand (not timed). Candidates, same weights:

* ``lamfast``  ``LAM.forward`` on the packed batch, all 3 requests in one decoder pass;
* ``stock``    ``StockLAM.predict_many``: padded sets, nn.MultiheadAttention, encode once
  and one decoder pass per request (the paper's loop);

each in fp32 and in bf16 autocast. bf16 rows report the largest difference from the same
model in fp32, in physical units through the paper's normalisation (K for Teff, dex for
logg and [M/H]); the weights are a fresh initialisation, so these are indicative (a
trained model's sensitivity differs). Candidates run interleaved in one process.

    python -m benchmarks.bench_model --quick
    python -m benchmarks.bench_model --presets lam-2024 lam-small --stars 4096
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time

import numpy as np
import torch

import lamfast
from lamfast.baselines.stock_model import StockLAM, pad_batch
from lamfast.model import LAM
from lamfast.reference_stats import paper_normalizer
from lamfast.vocab import HEADLINE_INPUTS

from .common import STOCK_GPU_BATCH, device_name, model_bench_parser, torch_device, write_table
from .flops import forward_macs, matmul_peak_gflops

REQUEST = ("teff", "logg", "m_h")


def headline_batch(n_stars: int, device, seed: int = 0):
    """Packed and padded tensors of n stars with the 63 headline inputs."""
    from lamfast.data.synthetic import make_synthetic

    catalog = make_synthetic(n_stars, seed=seed).truth.select(list(HEADLINE_INPUTS))
    normalizer = paper_normalizer()
    batch = lamfast.tokenize(catalog.values, catalog.columns, normalizer=normalizer)
    packed = batch.to_torch(device)
    values, tokens = (torch.from_numpy(x).to(device) for x in pad_batch(batch))
    return batch, packed, values, tokens, normalizer


def bench_preset(preset: str, n_stars: int, repeats: int, device, compile_backend: str | None = "inductor",
                 precisions=("fp32", "bf16"), step: int | None = None) -> list[dict]:
    batch, packed, values, tokens, normalizer = headline_batch(n_stars, device)
    torch.manual_seed(0)
    lam = LAM(preset, normalizer=normalizer).to(device).eval()
    stock = StockLAM.from_lam(lam).to(device).eval()
    ids = normalizer.vocab.ids(list(REQUEST))
    n, r = batch.n_stars, len(ids)
    target = torch.from_numpy(np.tile(ids, n)).to(device)
    cu_t = torch.arange(0, n * r + 1, r, dtype=torch.int32, device=device)
    request = torch.from_numpy(ids.astype(np.int64)).to(device)
    step = step or (STOCK_GPU_BATCH if device.type == "cuda" else n)

    def sliced(predict):
        return lambda: torch.cat([predict(values[a:a + step], tokens[a:a + step])[0] for a in range(0, n, step)])

    run = {
        "lamfast": lambda: lam(packed["token_id"], packed["value"], packed["cu_seqlens"],
                               batch.max_seqlen, target, cu_t, r)[0].view(n, r),
        "stock": sliced(lambda v, t: stock.predict_many(v, t, request)),
    }
    if compile_backend:
        # Requests as Python ints: constants of the graph, not a tensor read per pass.
        requests = [int(i) for i in ids]
        compiled = torch.compile(lambda v, t: stock.predict_many(v, t, requests), backend=compile_backend,
                                 dynamic=False)
        run["stock-compile"] = sliced(compiled)
    dtype = {"fp32": None, "bf16": torch.bfloat16}
    precisions = list(dict.fromkeys(["fp32", *precisions]))  # fp32: the reference of the differences
    candidates = {(name, p): (fn, dtype[p]) for name, fn in run.items() for p in precisions}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(fn, dt):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dt or torch.float32,
                                                    enabled=dt is not None):
            return fn().float()

    outputs, failed, first = {}, {}, {}
    for key, (fn, dt) in candidates.items():  # warm-up (and compile) + results
        try:
            t0 = time.perf_counter()
            outputs[key] = call(fn, dt)
            sync()
            first[key] = time.perf_counter() - t0
        except Exception as e:  # a candidate that does not run here: a row that says why
            failed[key] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
    times = {key: [] if repeats else [first[key]] for key in outputs}  # 0 repeats: the first call's time
    for _ in range(repeats):
        for key in outputs:
            fn, dt = candidates[key]
            sync()
            t0 = time.perf_counter()
            call(fn, dt)
            sync()
            times[key].append(time.perf_counter() - t0)
    scale = torch.from_numpy(normalizer.scale[ids]).float().to(device)  # physical units per sd
    stock_rate = n / statistics.median(times[("stock", "fp32")]) if ("stock", "fp32") in times else float("nan")
    lengths = batch.seqlens()
    macs = {name: forward_macs(lam.config, lengths, r, stock=name != "lamfast") for name in run}
    rows = []
    for (name, p) in candidates:
        row = {"preset": preset, "candidate": name, "precision": p, "stars": n}
        if (name, p) in failed:
            rows.append({**row, "status": failed[(name, p)]})
            continue
        ts = times[(name, p)]
        rate = n / statistics.median(ts)
        ref = outputs.get((name, "fp32"), outputs[(name, p)])
        diff = ((outputs[(name, p)] - ref).abs().amax(0) * scale).tolist()
        stock_ref = outputs.get(("stock", "fp32"))
        vs_stock_fp32 = (((outputs[(name, p)] - stock_ref).abs().amax(0) * scale).tolist()
                         if stock_ref is not None else [float("nan")])
        rows.append({**row, "status": "ok", "first_call_s": first[(name, p)],
                     "seconds": statistics.median(ts), "stars_per_s": rate,
                     "vs_stock_fp32": rate / stock_rate,
                     "mmac_per_star": macs[name] / n / 1e6,
                     "gmac_per_s": macs[name] / statistics.median(ts) / 1e9,
                     "max_dteff_K": diff[0], "max_dlogg_dex": diff[1], "max_dmh_dex": diff[2],
                     "teff_vs_stock_fp32_K": vs_stock_fp32[0]})
    return rows


COLUMNS = ["preset", "candidate", "precision", "stars", "status", "first_call_s", "seconds", "stars_per_s",
           "vs_stock_fp32", "mmac_per_star", "gmac_per_s", "matmul_peak_gflops", "of_peak", "max_dteff_K", "max_dlogg_dex", "max_dmh_dex",
           "teff_vs_stock_fp32_K"]


def main(argv=None) -> list[dict]:
    p = model_bench_parser(__doc__, "small batch, few repeats (< 1 min)")
    p.add_argument("--stars", type=int, nargs="+", default=None,
                   help="stars per batch, one table block each (default 256 on CPU, the label micro-batch "
                        "and the best size for both candidates there; 8192 and 65536 on GPU)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the stock-compile candidate ('none': leave it out)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--budget", type=float, default=None,
                   help="wall seconds; (preset, stars) blocks left then are listed as skipped")
    p.add_argument("--dry", action="store_true",
                   help="a dress rehearsal of the GPU run on a CPU: tiny model and batch, one repeat, "
                        "the stock model compiled with the aot_eager backend, times of the first call; writes the full table's files")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.dry:
        if args.device == "auto":
            args.device = "cpu"
        if args.presets == p.get_default("presets"):
            args.presets = ["lam-small"]
        if args.compile_backend == p.get_default("compile_backend"):
            args.compile_backend = "aot_eager"  # inductor's C++ compile takes minutes on 2 cores
    device = torch_device(args.device, args.threads)
    stars = args.stars or ([16] if args.dry else [256] if args.quick or device.type == "cpu" else [8192, 65536])
    repeats = args.repeats if args.repeats is not None else (0 if args.dry else 3 if args.quick else 15)
    backend = None if args.compile_backend == "none" else args.compile_backend
    rows, last_block_s, peaks = [], 0.0, {}
    for preset in args.presets:
        for n in stars:
            # stop where the next block would likely overrun (about as long as the last)
            if args.budget is not None and time.perf_counter() - t_start + last_block_s > args.budget:
                rows.append({"preset": preset, "candidate": "all", "stars": n, "status": "skipped: time budget"})
                continue
            block_start = time.perf_counter()
            try:
                block = bench_preset(preset, n, repeats, device, backend, args.precisions)
            except Exception as e:  # e.g. out of memory at this batch: the other blocks still run
                block = [{"preset": preset, "candidate": "all", "stars": n,
                          "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"}]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            for row in block:   # achieved FLOP/s against torch.matmul's in this run
                if row.get("status") == "ok":
                    if row["precision"] not in peaks:
                        dt = torch.bfloat16 if row["precision"] == "bf16" else torch.float32
                        peaks[row["precision"]] = matmul_peak_gflops(device, dt)
                    peak = peaks[row["precision"]]
                    row["matmul_peak_gflops"], row["of_peak"] = peak, 2 * row["gmac_per_s"] / peak
            rows += block
            last_block_s = time.perf_counter() - block_start
            for row in block:
                print(row, flush=True)
            save(rows, device, args, repeats, final=False)
    save(rows, device, args, repeats, final=True)
    return rows


def save(rows, device, args, repeats, final: bool):
    """Write the table (quietly until the last time: it is rewritten after every block)."""
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    table = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
    with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
        write_table("model", table, device=str(device), quick=args.quick,
                    title=f"Model inference throughput on {device_name(str(device))}",
                    notes=(f"63 tokens in, 3 requests out{threads}; median of {repeats} interleaved "
                           "runs; stock-compile = the stock model under torch.compile "
                           f"(backend {args.compile_backend}; its compile is in first_call_s); "
                           "vs_stock_fp32 = stars/s over the stock model in fp32; max_d* = "
                           "largest |difference| from the same candidate in fp32 (random-init "
                           "weights, physical units via the paper's normalisation); mmac_per_star "
                           "= work per star (benchmarks/flops.py: the stock model repeats the "
                           "memory projection per request), so equal MAC rates would give lamfast "
                           "the ratio of the two mmac_per_star (the FLOP ceiling; "
                           "beyond it, speed comes from efficiency); matmul_peak_gflops = the best "
                           "plain torch.matmul rate of that precision on lam-2024's GEMM shapes "
                           "(benchmarks/flops.py), measured in this run, and of_peak = "
                           "2 x gmac_per_s over it. Command: "
                           f"`python -m benchmarks.bench_model{' --quick' if args.quick else ''}`"
                           + ("" if final else "\n\n**Partial: the run stopped before its end.**")
                           + ("\n\nDry run: tiny batch on a CPU; times mean nothing, the rows check "
                              "the plumbing." if args.dry else "")))


if __name__ == "__main__":
    main()
