"""XP sampled spectra -> 110 coefficients: per-star MAP (batched GEMM + Cholesky) vs its
plain per-star reference vs one fixed projector matrix, side by side in one process.

Spectra are synthetic stars (lamfast.data.synthetic) sampled through the real DR3 basis,
with 1% pixel errors. Reports median seconds over repeats (interleaved across candidates so
load on a shared machine hits all alike), spectra per second, and the largest deviation
from the per-star MAP in population sigma (0 for the fast path = same estimate).

    python -m benchmarks.bench_xp            # 4096 spectra (reference on 256), fixed on 100k
    python -m benchmarks.bench_xp --quick    # small sizes, < 1 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import lamfast

from .common import write_table


def _spectra(n: int, seed: int = 0):
    from lamfast import xp
    from lamfast.data.synthetic import make_synthetic

    truth = make_synthetic(n, seed=seed).truth.values[:, :110].astype(np.float64)
    flux = xp.sample(truth).flux
    rng = np.random.default_rng(seed)
    err = 0.01 * np.abs(flux) + 1e-4 * np.abs(flux).max(axis=1, keepdims=True)
    return flux + 1e-4 * err * rng.normal(size=flux.shape), err


def run(sizes, ref_size, fixed_size, repeats, threads):
    from lamfast import xp
    from lamfast.reference_stats import xp_prior

    _, std = xp_prior()
    rows = []
    for n in sizes:
        flux, err = _spectra(n)
        exact = xp.project(flux, err, threads=threads)
        fixed = xp.FixedProjector.for_spectrum(np.median(flux, axis=0))
        nr = min(n, ref_size)
        cands = {
            "project (batched GEMM + Cholesky)": (n, lambda: xp.project(flux, err, threads=threads).coefficients),
            "project_reference (per-star loop)": (nr, lambda: xp.project_reference(flux[:nr], err[:nr]).coefficients),
            "project, no errors": (n, lambda: xp.project(flux, threads=threads).coefficients),
            "FixedProjector (one matrix)": (n, lambda: fixed(flux)),
        }
        times = {k: [] for k in cands}
        outs = {}
        for _ in range(repeats):
            for name, (m, fn) in cands.items():
                t0 = time.perf_counter()
                outs[name] = fn()
                times[name].append(time.perf_counter() - t0)
        for name, (m, _) in cands.items():
            sec = statistics.median(times[name])
            dev = np.nanmax(np.abs(outs[name] - exact.coefficients[:m]) / std)
            rows.append({"candidate": name, "spectra": m, "seconds": sec, "spectra_per_s": m / sec,
                         "max_dev_sigma": dev})
    if fixed_size:
        flux, _ = _spectra(1000)
        big = np.tile(flux, (fixed_size // len(flux) + 1, 1))[:fixed_size]
        fixed = xp.FixedProjector.for_spectrum(np.median(flux, axis=0))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fixed(big)
            ts.append(time.perf_counter() - t0)
        sec = statistics.median(ts)
        rows.append({"candidate": "FixedProjector (one matrix)", "spectra": fixed_size, "seconds": sec,
                     "spectra_per_s": fixed_size / sec, "max_dev_sigma": float("nan")})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    sizes, ref, fixed = ([512], 64, 10_000) if a.quick else ([4096], 256, 100_000)
    rows = run(sizes, ref, fixed, a.repeats, a.threads)
    write_table("xp", rows, title="XP spectra -> coefficients: batched MAP vs per-star loop vs "
                                  "one fixed matrix",
                notes="Median seconds over interleaved repeats. max_dev_sigma: largest "
                      "deviation from the per-star MAP, in population sigma (0 = same "
                      "estimate; nan where no MAP was computed).",
                quick=a.quick, extra_stamp={"threads": a.threads or lamfast.get_num_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
