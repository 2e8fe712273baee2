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
import csv
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _stamp() -> dict:
    import torch

    import lamfast

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    return {"device": f"{cpu} ({len(os.sched_getaffinity(0))} cores)", "numpy": np.__version__,
            "torch": torch.__version__, "lamfast": lamfast.__version__, "commit": commit,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


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


def write(rows, stamp, quick):
    slug = f"cpu-{len(os.sched_getaffinity(0))}cores"
    out = ROOT / "benchmarks" / "results" / slug
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_xp" + ("_quick" if quick else "")
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) + list(stamp))
        w.writeheader()
        for r in rows:
            w.writerow({**r, **stamp})
    lines = [f"# {name}", "", ", ".join(f"{k}: {v}" for k, v in stamp.items()), "",
             "| candidate | spectra | seconds | spectra/s | max deviation from per-star MAP [pop. sigma] |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['candidate']} | {r['spectra']} | {r['seconds']:.4f} | {r['spectra_per_s']:,.0f} | "
              f"{r['max_dev_sigma']:.2g} |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    sizes, ref, fixed = ([512], 64, 10_000) if a.quick else ([4096], 256, 100_000)
    rows = run(sizes, ref, fixed, a.repeats, a.threads)
    stamp = _stamp()
    print(stamp["device"], f"threads={a.threads or 'all'}")
    print(f"{'candidate':<36}{'spectra':>9}{'seconds':>10}{'spectra/s':>12}{'max dev [sigma]':>17}")
    for r in rows:
        print(f"{r['candidate']:<36}{r['spectra']:>9}{r['seconds']:>10.4f}{r['spectra_per_s']:>12,.0f}"
              f"{r['max_dev_sigma']:>17.2g}")
    print("written to", write(rows, stamp, a.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
