"""Training throughput: lamfast's packed LAM vs the stock padded PyTorch model.

One optimiser step = forward, the paper's Gaussian NLL, backward, gradient clipping and
AdamW, on batches drawn by lamfast's training sampler (paper scheme: context 64, 0..59
trailing tokens blanked, one requested token per star) from a synthetic catalogue with
the paper's 118 columns. Both models start from the same weights:

* ``lamfast``  :class:`lamfast.LAM` on packed ragged sets (C++ attention on CPUs, Triton
  on GPUs), the inner step of :class:`lamfast.train.Trainer`;
* ``stock``    :class:`lamfast.baselines.stock_model.StockLAM`: padded [B, L] sets,
  ``nn.MultiheadAttention`` with a key-padding mask (the paper's code). Its padded
  inputs are built before timing (favouring it).

Candidates run interleaved step by step in one process; the table reports median stars/s
and the ratio to the stock model. CPU: fp32 with 2 threads by default; CUDA: bf16 autocast
(as Trainer does).

    python -m benchmarks.bench_train --quick
    python -m benchmarks.bench_train --presets lam-2024 lam-small --batch-size 512
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time

import numpy as np
import torch

from lamfast.baselines.stock_model import StockLAM
from lamfast.loss import gaussian_nll
from lamfast.train import Trainer, TrainConfig, _slice

from .common import device_name, model_bench_parser, torch_device, write_table


def training_batches(preset: str, n_stars: int, batch_size: int, device, seed: int = 0):
    """(Trainer with a fresh model of the preset, list of packed batches on device)."""
    from lamfast.data.synthetic import make_synthetic

    catalog = make_synthetic(n_stars, seed=seed).catalog
    cfg = TrainConfig(preset=preset, batch_size=batch_size, device=str(device), seed=seed,
                      out_dir=tempfile.mkdtemp(prefix="bench_train_"))
    trainer = Trainer(cfg, catalog)
    packed = trainer._draw(0)
    batches = []
    for a in range(0, n_stars - batch_size + 1, batch_size):
        b = _slice(packed, a, a + batch_size)
        batches.append({k: (torch.from_numpy(v).to(device) if isinstance(v, np.ndarray) else v)
                        for k, v in b.items()})
    return trainer, batches


def _padded(batch: dict) -> dict:
    """The stock model's inputs: values/tokens [B, L] (0 = padding), one request per star."""
    cu = batch["cu_seqlens"].long()
    lengths = cu.diff()
    if not bool((batch["cu_targets"].diff() == 1).all()):
        raise ValueError("the stock model takes exactly one request per star")
    width = max(int(lengths.max()), 1)
    pos = torch.arange(width, device=cu.device)
    valid = pos[None, :] < lengths[:, None]
    values = torch.zeros(valid.shape, device=cu.device)
    tokens = torch.zeros(valid.shape, dtype=torch.long, device=cu.device)
    values[valid] = batch["value"]
    tokens[valid] = batch["token_id"].long()
    return {"values": values, "tokens": tokens, "request": batch["target_id"].long()}


def _step_fn(model, optimizer, batch, stock: bool, autocast, grad_clip: float = 1.0):
    if stock:
        padded = _padded(batch)
        run = lambda: model(padded["values"], padded["tokens"], padded["request"])
    else:
        run = lambda: model(batch["token_id"], batch["value"], batch["cu_seqlens"],
                            batch["max_seqlen"], batch["target_id"], batch["cu_targets"],
                            batch["max_targets"])

    def step():
        with autocast():
            mu, logvar = run()
        loss = gaussian_nll(mu, logvar, batch["target_value"], batch["target_error"],
                            batch["cu_targets"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return loss

    return step


def bench_preset(preset: str, n_stars: int, batch_size: int, repeats: int, device) -> list[dict]:
    trainer, batches = training_batches(preset, n_stars, batch_size, device)
    lam = trainer.model.train()
    stock = StockLAM.from_lam(lam).to(device).train()
    autocast = trainer._autocast
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    candidates = {}
    for name, model, is_stock in (("lamfast", lam, False), ("stock", stock, True)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        candidates[name] = [_step_fn(model, opt, b, is_stock, autocast) for b in batches]
    times = {name: [] for name in candidates}
    for name, steps in candidates.items():  # warm-up (allocator, autotuning, first touch)
        steps[0]()
    for rep in range(repeats):  # interleaved: both see the same machine load
        for name, steps in candidates.items():
            step = steps[rep % len(steps)]
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - t0)
    tokens = float(np.mean([int(b["cu_seqlens"][-1]) for b in batches])) / batch_size
    stock_rate = batch_size / statistics.median(times["stock"])
    rows = []
    for name, ts in times.items():
        rate = batch_size / statistics.median(ts)
        rows.append({"preset": preset, "params": lam.num_parameters(), "candidate": name,
                     "batch": batch_size, "tokens_per_star": round(tokens, 1),
                     "step_s": statistics.median(ts), "stars_per_s": rate,
                     "vs_stock": rate / stock_rate})
    return rows


def main(argv=None) -> list[dict]:
    p = model_bench_parser(__doc__, "small batches, few steps (< 1 min)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="stars per step, one block each (default 512 on CPU; 1024 and 4096 on GPU)")
    p.add_argument("--budget", type=float, default=None,
                   help="wall seconds; (preset, batch) blocks left then are listed as skipped")
    p.add_argument("--dry", action="store_true",
                   help="a dress rehearsal of the GPU run on a CPU: tiny batches, 2 steps; writes the "
                        "full table's files")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.dry:
        if args.device == "auto":
            args.device = "cpu"
        if args.presets == p.get_default("presets"):
            args.presets = ["lam-small"]
    device = torch_device(args.device, args.threads)
    batches = args.batch_size or ([16] if args.dry else [128] if args.quick else
                                  [512] if device.type == "cpu" else [1024, 4096])
    repeats = args.repeats or (2 if args.dry else 3 if args.quick else 9)
    rows, last_block_s = [], 0.0
    for preset in args.presets:
        for batch in batches:
            # stop where the next block would likely overrun (about as long as the last)
            if args.budget is not None and time.perf_counter() - t_start + last_block_s > args.budget:
                rows.append({"preset": preset, "candidate": "all", "batch": batch, "status": "skipped: time budget"})
                continue
            block_start = time.perf_counter()
            try:
                block = [{**r, "status": "ok"} for r in bench_preset(
                    preset, n_stars=batch * min(repeats, 4), batch_size=batch, repeats=repeats, device=device)]
            except Exception as e:  # e.g. out of memory at this batch: the other blocks still run
                block = [{"preset": preset, "candidate": "all", "batch": batch,
                          "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"}]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows += block
            last_block_s = time.perf_counter() - block_start
            print(*block, sep="\n", flush=True)
            save(rows, device, args, repeats, final=False)
    save(rows, device, args, repeats, final=True)
    return rows


COLUMNS = ["preset", "params", "candidate", "batch", "status", "tokens_per_star", "step_s", "stars_per_s",
           "vs_stock"]


def save(rows, device, args, repeats, final: bool):
    """Write the table (quietly until the last time: it is rewritten after every block)."""
    precision = "fp32" if device.type == "cpu" else "bf16 autocast"
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
        write_table("train", [{c: r.get(c, "") for c in COLUMNS} for r in rows], device=str(device),
                    quick=args.quick, title=f"Training throughput on {device_name(str(device))}",
                    notes=(f"One optimiser step (forward, NLL, backward, clip, AdamW), {precision}"
                           f"{threads}; median of {repeats} interleaved steps; vs_stock = stars/s "
                           "over the stock padded nn.MultiheadAttention model with the same weights. "
                           f"Command: `python -m benchmarks.bench_train{' --quick' if args.quick else ''}`"
                           + ("" if final else "\n\n**Partial: the run stopped before its end.**")
                           + ("\n\nDry run: tiny batches on a CPU; times mean nothing, the rows check "
                              "the plumbing." if args.dry else "")))


if __name__ == "__main__":
    main()
