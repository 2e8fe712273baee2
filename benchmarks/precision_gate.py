"""The precision gate on real test stars: may each precision this machine offers stand in
for fp32, and is it faster?

For every precision (fp32, the reference, and bf16 autocast) the model labels the
test-split stars with complete inputs (bp0..29, rp0..29, jh, jk, bprp); the gate of
:mod:`lamfast.precision_gate` compares each low precision with fp32 per label (scatter
and bias vs APOGEE, p99 |low - fp32| in units of the predicted error), and the table
gives the stars/s of each. A precision may be a default where it passes and is faster.

    python -m benchmarks.precision_gate                          # the 1,000 shipped test stars
    python -m benchmarks.precision_gate --data apogee_xp.h5      # the whole test split

Writes benchmarks/results/<device>/precision_gate.{csv,md}, or precision_gate-<data>.{csv,md}
with --data (so a small and a full test split never overwrite each other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lamfast.precision_gate import (BIAS_TOLERANCE, NULL_DRAWS, NULL_QUANTILE, SCATTER_TOLERANCE,
                                    SHIFT_TOLERANCE, precision_gate, predict_labels)
from lamfast.vocab import HEADLINE_INPUTS, LABELS

from .common import slug, torch_device, write_table

PRECISIONS = ("fp32", "bf16")


def kernel_path(device, precision: str) -> str:
    """The dense and attention kernels a precision runs on this device."""
    if device.type == "cuda":
        return f"cuBLAS {precision} + Triton attention"
    from lamfast import _core
    from lamfast.model import _FUSED_DTYPES

    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    dense = "oneDNN fused" if dtype in _FUSED_DTYPES else "F.linear (no oneDNN bf16 here)"
    attention = "bf16 in/out, fp32 inside" if precision == "bf16" else "fp32"
    return f"{dense} {precision}; C++ attention {attention} ({_core.attention_isa()} build)"


def test_stars(path: str | None):
    """The test-split stars (split 2) with every headline input of a paper-layout file
    (default: the shipped sample, 1,000 test-split stars)."""
    from lamfast.io.paper_hdf5 import read_paper_hdf5
    from lamfast.resources import sample_catalogue_path

    cat = read_paper_hdf5(path or sample_catalogue_path())
    if "split" not in cat.extra:
        raise ValueError(f"{path}: no split column; the gate runs on the test split (split 2)")
    x = cat.select(list(HEADLINE_INPUTS)).values
    return cat.rows((cat.extra["split"] == 2) & np.isfinite(x).all(axis=1))


def timed_interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median wall seconds of ``repeats`` calls of each fn, the fns taking turns so a load
    that comes and goes on a shared machine slows each alike; and each fn's first
    (untimed, warm-up) result."""
    results = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, results


def main(argv=None) -> int:
    from lamfast.model import LAM

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="paper-layout HDF5 with a split column "
                   "(default: the shipped sample of 1,000 test-split stars)")
    p.add_argument("--model", default="default", help="'default' (shipped) or a saved model folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of torch")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per precision, interleaved")
    args = p.parse_args(argv)

    device = torch_device(args.device, args.threads)
    load = os.getloadavg()[0]            # a shared machine's other work slows every timing
    stars = test_stars(args.data)
    x = stars.select(list(HEADLINE_INPUTS))
    truth = {k: stars.column(k).astype(np.float64) for k in LABELS}
    model = LAM.load(args.model)
    seconds, predictions = timed_interleaved(
        {p: (lambda p=p: predict_labels(model, x.values, x.columns, LABELS, p, device=str(device)))
         for p in PRECISIONS}, args.repeats)
    runs = {p: (*predictions[p], seconds[p]) for p in PRECISIONS}   # -> (value, error, seconds)
    fp32, fp32_error, fp32_s = runs["fp32"]
    rows = []
    for precision, (low, low_error, seconds) in runs.items():
        gate = precision_gate(truth, fp32, fp32_error, low, low_error)
        default_ok = gate.passed and (seconds < fp32_s or precision == "fp32")
        for r in gate.rows():
            rows.append({"precision": precision, "path": kernel_path(device, precision),
                         **{k: v for k, v in r.items() if k != "passed"},
                         "gate": "pass" if r["passed"] else "FAIL",
                         "stars_per_s": len(stars) / seconds, "speedup": fp32_s / seconds,
                         "may_be_default": "yes" if default_ok else "no"})
        print(f"{precision}: {len(stars) / seconds:,.0f} stars/s, gate "
              f"{'passed' if gate.passed else 'failed: ' + '; '.join(gate.failures())}")
    # names, not paths: results never carry a path of the machine they were made on
    name = "the shipped sample" if args.data is None else Path(args.data).name
    model_name = args.model if args.model == "default" else Path(args.model).name
    notes = (f"{len(stars)} test-split stars with complete inputs of {name}; model {model_name}. "
             f"Gate per label: scatter_ratio <= scatter_allowed (1 + {SCATTER_TOLERANCE:g}, or the "
             f"{NULL_QUANTILE:g}th percentile of {NULL_DRAWS} sign flips of the differences where the stars cannot "
             f"resolve that), bias_shift_of_scatter <= bias_allowed ({BIAS_TOLERANCE:g} or its noise "
             f"floor), shift_p99_of_sigma <= {SHIFT_TOLERANCE:g}, no lost star. error_p99_rel (p99 of "
             "|sigma_low / sigma_fp32 - 1|) is reported, not gated. may_be_default: passes and is "
             "faster than fp32 (fp32 always may).")
    table = "precision_gate" if args.data is None else f"precision_gate-{slug(Path(args.data).stem)}"
    write_table(table, rows, device=str(device), title="Precision gate on real test stars",
                notes=notes, extra_stamp={"threads": args.threads, "stars": len(stars), "data": name,
                                          "model": model_name, "load_avg_1min": f"{load:.1f}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
