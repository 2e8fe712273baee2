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
from .flops import forward_macs

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


def bench_preset(preset: str, n_stars: int, repeats: int, device) -> list[dict]:
    batch, packed, values, tokens, normalizer = headline_batch(n_stars, device)
    torch.manual_seed(0)
    lam = LAM(preset, normalizer=normalizer).to(device).eval()
    stock = StockLAM.from_lam(lam).to(device).eval()
    ids = normalizer.vocab.ids(list(REQUEST))
    n, r = batch.n_stars, len(ids)
    target = torch.from_numpy(np.tile(ids, n)).to(device)
    cu_t = torch.arange(0, n * r + 1, r, dtype=torch.int32, device=device)
    request = torch.from_numpy(ids.astype(np.int64)).to(device)
    step = STOCK_GPU_BATCH if device.type == "cuda" else n
    run = {
        "lamfast": lambda: lam(packed["token_id"], packed["value"], packed["cu_seqlens"],
                               batch.max_seqlen, target, cu_t, r)[0].view(n, r),
        "stock": lambda: torch.cat([stock.predict_many(values[a:a + step], tokens[a:a + step], request)[0]
                                    for a in range(0, n, step)]),
    }
    dtype = {"fp32": None, "bf16": torch.bfloat16}
    candidates = {(name, p): (fn, dtype[p]) for name, fn in run.items() for p in dtype}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(fn, dt):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dt or torch.float32,
                                                    enabled=dt is not None):
            return fn().float()

    outputs = {key: call(fn, dt) for key, (fn, dt) in candidates.items()}  # warm-up + results
    times = {key: [] for key in candidates}
    for _ in range(repeats):
        for key, (fn, dt) in candidates.items():
            sync()
            t0 = time.perf_counter()
            call(fn, dt)
            sync()
            times[key].append(time.perf_counter() - t0)
    scale = torch.from_numpy(normalizer.scale[ids]).float().to(device)  # physical units per sd
    stock_rate = n / statistics.median(times[("stock", "fp32")])
    lengths = batch.seqlens()
    macs = {name: forward_macs(lam.config, lengths, r, stock=name == "stock") for name in run}
    rows = []
    for (name, p), ts in times.items():
        rate = n / statistics.median(ts)
        diff = ((outputs[(name, p)] - outputs[(name, "fp32")]).abs().amax(0) * scale).tolist()
        vs_stock_fp32 = ((outputs[(name, p)] - outputs[("stock", "fp32")]).abs().amax(0)
                         * scale).tolist()
        rows.append({"preset": preset, "candidate": name, "precision": p, "stars": n,
                     "seconds": statistics.median(ts), "stars_per_s": rate,
                     "vs_stock_fp32": rate / stock_rate,
                     "mmac_per_star": macs[name] / n / 1e6,
                     "gmac_per_s": macs[name] / statistics.median(ts) / 1e9,
                     "max_dteff_K": diff[0], "max_dlogg_dex": diff[1], "max_dmh_dex": diff[2],
                     "teff_vs_stock_fp32_K": vs_stock_fp32[0]})
    return rows


def main(argv=None) -> list[dict]:
    p = model_bench_parser(__doc__, "small batch, few repeats (< 1 min)")
    p.add_argument("--stars", type=int, default=None,
                   help="stars per batch (default 256 on CPU, the label micro-batch and the best "
                        "size for both candidates there; 65536 on GPU)")
    args = p.parse_args(argv)
    device = torch_device(args.device, args.threads)
    stars = args.stars or (256 if args.quick or device.type == "cpu" else 65536)
    repeats = args.repeats or (3 if args.quick else 15)
    rows = []
    for preset in args.presets:
        rows += bench_preset(preset, stars, repeats, device)
        for row in rows[-4:]:
            print(row, flush=True)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    write_table("model", rows, device=str(device), quick=args.quick,
                title=f"Model inference throughput on {device_name(str(device))}",
                notes=(f"63 tokens in, 3 requests out{threads}; median of {repeats} interleaved "
                       "runs; vs_stock_fp32 = stars/s over the stock model in fp32; max_d* = "
                       "largest |difference| from the same candidate in fp32 (random-init "
                       "weights, physical units via the paper's normalisation); mmac_per_star "
                       "= work per star (benchmarks/flops.py: the stock model repeats the "
                       "memory projection per request), so equal MAC rates would give lamfast "
                       "the ratio of the two mmac_per_star (the FLOP ceiling; "
                       "beyond it, speed comes from efficiency). Command: "
                       f"`python -m benchmarks.bench_model{' --quick' if args.quick else ''}`"))
    return rows


if __name__ == "__main__":
    main()
