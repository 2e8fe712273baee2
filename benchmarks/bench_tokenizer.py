"""C++ tokenizer and training sampler vs their numpy references.

1,000,000 stars x 118 paper columns with realistic missingness: XP coefficients blanked
beyond a per-star relevant count (as the archive's n_relevant_bases), photometry mostly
present, labels missing for about a third of the stars.

    python -m benchmarks.bench_tokenizer [--stars N] [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import lamfast
from lamfast.vocab import PAPER_TOKENS

from .common import median_time, write_table


def realistic_catalogue(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """values, errors float32 [n, 118] in the paper's column order, NaN = missing."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, len(PAPER_TOKENS))).astype(np.float32)
    errors = np.abs(rng.normal(0.1, 0.02, size=values.shape)).astype(np.float32)
    k = np.arange(55)[None, :]
    values[:, 0:55][k >= rng.integers(8, 56, size=n)[:, None]] = np.nan    # BP relevant bases
    values[:, 55:110][k >= rng.integers(8, 56, size=n)[:, None]] = np.nan  # RP relevant bases
    values[:, 110:113][rng.random((n, 3)) < 0.05] = np.nan                 # bprp jh jk
    values[:, 113:116][rng.random(n) < 1 / 3] = np.nan                     # teff logg m_h
    values[:, 116:118][rng.random((n, 2)) < 0.2] = np.nan                  # logebv g_fakemag
    return values, errors


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stars", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="100k stars, 3 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.stars, args.repeats = 100_000, 3
    values, errors = realistic_catalogue(args.stars)
    cols = PAPER_TOKENS
    norm = lamfast.Normalizer.fit(values[:100_000], cols)
    n_tokens = int(np.count_nonzero(~np.isnan(values)))
    threads = lamfast.get_num_threads()

    cases = {
        "tokenize": (
            lambda: lamfast.tokenize(values, cols),
            lambda: lamfast.tokenize_reference(values, cols), n_tokens),
        "tokenize + errors + standardise": (
            lambda: lamfast.tokenize(values, cols, errors=errors, normalizer=norm),
            lambda: lamfast.tokenize_reference(values, cols, errors=errors, normalizer=norm),
            n_tokens),
        "sampler epoch (paper: ctx 64, blank 0-59, 1 output)": (
            lambda: lamfast.sample_training(values, cols, errors=errors, normalizer=norm, epoch=1),
            lambda: lamfast.sample_training_reference(values, cols, errors=errors, normalizer=norm,
                                                      epoch=1), n_tokens),
    }
    rows = []
    mask_s = median_time(lambda: values[~np.isnan(values)], args.repeats)
    rows.append({"operation": "numpy values[~isnan(values)] (values only)", "stars": args.stars,
                 "threads": 1, "seconds": mask_s, "Mtokens/s": n_tokens / mask_s / 1e6,
                 "numpy ref s": mask_s, "speed-up": 1.0})
    for name, (fast, ref, tokens) in cases.items():
        ref_s = median_time(ref, max(1, args.repeats // 3), warmup=0)
        for t in sorted({1, threads}):
            lamfast.set_num_threads(t)
            s = median_time(fast, args.repeats)
            rows.append({"operation": name, "stars": args.stars, "threads": t, "seconds": s,
                         "Mtokens/s": tokens / s / 1e6, "numpy ref s": ref_s,
                         "speed-up": ref_s / s})
        lamfast.set_num_threads(None)
    write_table("tokenizer", rows, title="Tokenizer and training sampler: C++ vs numpy reference",
                notes=f"{args.stars:,} stars x 118 columns, {n_tokens:,} present cells; "
                      "median of repeats; Mtokens/s counts present input cells.",
                quick=args.quick)
    return rows


if __name__ == "__main__":
    main()
