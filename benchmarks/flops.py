"""Multiply-accumulates of one forward pass, lamfast's LAM vs the stock padded model.

Throughput ratios mean little without the work each candidate does: the two models share
every weight and GEMM shape except (a) the stock model projects the encoder memory to the
decoder's keys and values once per request (the paper's loop) where lamfast does it once,
and (b) the stock model attends over padded sets. This counts MACs analytically from a
:class:`lamfast.LAMConfig`, so a benchmark can report the achieved MAC rate and the
ratio that equal efficiency would give (the FLOP ceiling of the speed-up).
"""

from __future__ import annotations

import numpy as np

from lamfast.model import LAMConfig


def forward_macs(config: LAMConfig, lengths, requests: int, *, stock: bool = False,
                 attention: bool = True) -> float:
    """MACs of one forward pass over stars with ``lengths`` input tokens [N] and
    ``requests`` requested tokens each.

    ``stock=True``: every set padded to the longest, and the memory key/value projection
    of each decoder block repeated per request. Embedding, LayerNorm, GELU and softmax
    are left out (no MACs; they are memory-bound passes of the same size in both).
    ``attention=False`` counts the dense layers only (what torch's FlopCounterMode sees of
    a model whose attention is a fused or custom kernel).
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if stock:
        lengths = np.full_like(lengths, lengths.max(initial=0))
    w, r = config.width, requests
    tokens = lengths.sum()
    keys = lengths + 1                                   # the learned bias slot is one more key
    macs = 0.0
    for ffn in config.encoder_ffn:
        macs += tokens * (4 * w * w + 2 * w * ffn)       # q, k, v, out projections; FFN
        macs += attention * 2 * w * np.sum(lengths * keys)   # scores and weighted values
    memory_projection = 2 * w * w * tokens * len(config.decoder_ffn)
    macs += memory_projection * (r if stock else 1)
    queries = r * len(lengths)
    for ffn in config.decoder_ffn:
        macs += queries * (2 * w * w + 2 * w * ffn)      # q and out projections; FFN
        macs += attention * 2 * w * r * np.sum(keys)
    widths = (w,) + tuple(config.head_mlp)
    macs += queries * (sum(a * b for a, b in zip(widths[:-1], widths[1:])) + 2 * widths[-1])
    return float(macs)


# GEMM shapes of lam-2024 on a 256-star batch (16,128 tokens): QKV-like, FFN out, FFN in.
PEAK_SHAPES = ((16128, 128, 1024), (16128, 1024, 128), (4096, 1024, 1024))


def matmul_peak_gflops(device, dtype, repeats: int = 5) -> float:
    """The best plain ``torch.matmul`` rate (GFLOP/s, 2 FLOP per MAC) of ``dtype`` over
    :data:`PEAK_SHAPES` on ``device`` with torch's current threads: the ceiling a model's
    achieved rate is measured against, taken in the same run."""
    import statistics
    import time

    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for m, k, n in PEAK_SHAPES:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        torch.matmul(a, b)
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            torch.matmul(a, b)
            sync()
            times.append(time.perf_counter() - t0)
        best = max(best, 2.0 * m * k * n / statistics.median(times) / 1e9)
    return best
