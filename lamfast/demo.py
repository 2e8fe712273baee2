"""`lamfast demo`: the main job on the embedded default.

For now it exercises the tokenizer and the training sampler on a random catalogue;
it grows into labelling the bundled sample catalogue with the shipped model.
"""

from __future__ import annotations

import time

import numpy as np


def run(n_stars: int = 100_000, seed: int = 0) -> dict:
    from . import sample_training, tokenize
    from .vocab import PAPER_TOKENS

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_stars, len(PAPER_TOKENS))).astype(np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    t0 = time.perf_counter()
    batch = tokenize(values, PAPER_TOKENS, max_tokens=64)
    t1 = time.perf_counter()
    train = sample_training(values, PAPER_TOKENS, epoch=0)
    t2 = time.perf_counter()
    return {"stars": n_stars, "tokens": batch.n_tokens, "tokenize_s": t1 - t0,
            "sampler_tokens": train.n_tokens, "sampler_s": t2 - t1}


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default")
    p.add_argument("--stars", type=int, default=100_000)
    p.set_defaults(func=lambda a: print(run(a.stars)))
