"""Scaling of ``lamfast.label`` file to file: wall time, stars/s and peak RSS against catalogue size.

Synthetic catalogues (``make_synthetic`` stars tiled with fresh source_ids, all 118 token
columns and their errors, XP as Parquet list columns) of each size are written once to a
temporary folder; each (model, size) pair is then labelled by a fresh child process that
reports the wall time of its ``lamfast.label`` call and its peak RSS (VmHWM, which exec
does not inherit from the parent, unlike ``ru_maxrss``). The paper's headline task: 63
tokens in (bp0..29, rp0..29, jh, jk, bprp), Teff, logg and [M/H] out, Parquet out.

- ``tiny``: a random-weights model of width 16: the pipeline (read, tokenize, write) plus
  the smallest forward pass; that forward (attention over 63-token sets) is still most of
  its time, the stage seconds of the table show the pipeline's own share.
- ``default``: the shipped model (lamfast's real labelling rate on this machine). Sizes
  beyond the first run only while the first size's rate predicts < ``--default-budget`` s.

Checks printed under the table: time linear in N (the fit wall = a + b*N gives the fixed
start-up a, model load included, and the marginal seconds per star b; linear when the
marginal cost between consecutive sizes agrees within 10 %, the raw seconds per star,
which carry a / N, are shown too), peak RSS flat (within 10 % from 1e6 stars up), the
pipeline >= 10x the default model's rate.

    python -m benchmarks.bench_scale [--quick] [--sizes 1e5 1e6 3e6] [--default-sizes 1e5 1e6]
        [--default-budget 180] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lamfast
from lamfast.vocab import HEADLINE_INPUTS

from .bench_label import tiny_model, write_big_catalogue
from .common import write_table

INPUTS = list(HEADLINE_INPUTS)
CHUNK_ROWS = 65536          # lamfast.label's default work-unit chunk
WRITE_CHUNK = CHUNK_ROWS    # row group of the inputs: one size for all, or peak RSS follows it, not N

_CHILD = """
import json, re, sys, time, torch
torch.set_num_threads(int(sys.argv[5]))
import lamfast
path, model, out, device, _, chunk = sys.argv[1:7]
t0 = time.perf_counter()
s = lamfast.label(path, model=model, output=out, columns=json.loads(sys.argv[7]), device=device,
                  chunk_rows=int(chunk), progress=False)
wall = time.perf_counter() - t0
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"rows": s.output_rows, "wall_s": wall, "peak_rss_mb": hwm / 1024, **s.timings}))
"""


def label_in_child(path: Path, model: str, out: Path, device: str, threads: int) -> dict:
    """One ``lamfast.label`` run in a fresh interpreter: rows, wall_s, peak_rss_mb, stage seconds."""
    root = str(Path(lamfast.__file__).resolve().parents[1])       # the lamfast this process runs
    path_env = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    argv = [str(path), model, str(out), device, str(threads), str(CHUNK_ROWS), json.dumps(INPUTS)]
    run = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": path_env})
    if run.returncode:
        raise RuntimeError(f"labelling {path} with {model} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def linear_fit(stars: list[int], wall: list[float]) -> tuple[float, float]:
    """Least squares wall = a + b * N: the fixed seconds a and the marginal seconds per star b."""
    b, a = np.polyfit(np.asarray(stars, float), np.asarray(wall, float), 1)
    return float(a), float(b)


def linearity(runs: list[dict]) -> list[str]:
    """Fixed cost, marginal cost and the linearity verdict of one model's runs (>= 2 sizes, by N)."""
    stars, wall = [r["stars"] for r in runs], [r["wall_s"] for r in runs]
    a, b = linear_fit(stars, wall)
    marginal = [(w1 - w0) / (n1 - n0) for n0, n1, w0, w1 in zip(stars, stars[1:], wall, wall[1:])]
    steps = ", ".join(f"{n0:,}->{n1:,}: {m * 1e6:.1f}" for n0, n1, m in zip(stars, stars[1:], marginal))
    per_star = [w / n for n, w in zip(stars, wall)]
    spread = max(per_star) / min(per_star)
    lines = [f"{runs[0]['model']}: wall = {a:.1f} s + {b * 1e6:.1f} us x N (least squares over "
             f"{stars[0]:,}..{stars[-1]:,} stars): fixed start-up {a:.1f} s (model load included), "
             f"marginal {1 / b:,.0f} stars/s."]
    if len(marginal) > 1:
        ratio = max(marginal) / min(marginal)
        lines.append(f"{runs[0]['model']}: marginal us per star between consecutive sizes {steps}; they "
                     f"differ {ratio:.2f}x (linear within 10 %: {'yes' if ratio <= 1.1 else 'no'}).")
    else:
        lines.append(f"{runs[0]['model']}: marginal us per star {steps} (one step: linearity needs three sizes).")
    lines.append(f"{runs[0]['model']}: raw seconds per star (fixed cost included) vary {spread:.2f}x over the sizes.")
    return lines


def checks(rows: list[dict]) -> list[str]:
    """The three questions of the benchmark, answered from the measured rows."""
    lines = []
    for model in ("tiny", "default"):
        runs = sorted((r for r in rows if r["model"] == model), key=lambda r: r["stars"])
        if len(runs) > 1:
            lines += linearity(runs)
        big = [r for r in runs if r["stars"] >= 1_000_000]
        if len(big) > 1:
            growth = big[-1]["peak_rss_mb"] / big[0]["peak_rss_mb"]
            lines.append(f"{model}: peak RSS {big[0]['peak_rss_mb']:.0f} MB at {big[0]['stars']:,} stars, "
                         f"{big[-1]['peak_rss_mb']:.0f} MB at {big[-1]['stars']:,} ({growth:.2f}x; flat within "
                         f"10 %: {'yes' if growth <= 1.1 else 'no'}).")
    rate = {(r["model"], r["stars"]): r["stars_per_s"] for r in rows}
    for (model, n), default_rate in rate.items():
        if model == "default" and ("tiny", n) in rate:
            ratio = rate[("tiny", n)] / default_rate
            lines.append(f"At {n:,} stars the tiny model labels {ratio:.1f}x the stars/s of the "
                         f"default model (>= 10x: {'yes' if ratio >= 10 else 'no'}).")
    tiny, default = ([r for r in rows if r["model"] == m] for m in ("tiny", "default"))
    if tiny and default:
        big = max(tiny, key=lambda r: r["stars"])
        stages = big["read_s"] + big["tokenize_s"] + big["write_s"]
        ratio = big["stars"] / stages / default[0]["stars_per_s"]
        lines.append(f"The pipeline's own stages (read + tokenize + write of the tiny run at {big['stars']:,} stars, "
                     f"the model left out): {big['stars'] / stages:,.0f} stars/s, {ratio:.0f}x the default model's "
                     f"rate (>= 10x: {'yes' if ratio >= 10 else 'no'}).")
    return lines


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", default=None, help="stars per catalogue (tiny model)")
    p.add_argument("--default-sizes", type=float, nargs="*", default=None,
                   help="sizes the shipped default model labels (each only while predicted < --default-budget)")
    p.add_argument("--default-budget", type=float, default=180.0, help="seconds a default-model run may take")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the child (CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="1e4 and 4e4 stars (well under a minute)")
    args = p.parse_args(argv)
    sizes = [int(n) for n in (args.sizes or ([10_000, 40_000] if args.quick else [100_000, 1_000_000, 3_000_000]))]
    default_sizes = [int(n) for n in (args.default_sizes if args.default_sizes is not None
                                      else [sizes[0]] if args.quick else [100_000, 1_000_000])]
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny_model(folder / "tiny")
        for n in sorted(set(sizes) | set(default_sizes)):
            t0 = time.perf_counter()
            write_big_catalogue(folder / f"stars_{n}.parquet", n, chunk=WRITE_CHUNK)
            print(f"{n:,} stars written in {time.perf_counter() - t0:.0f} s", flush=True)
        jobs = sorted([("tiny", str(folder / "tiny"), n) for n in sizes]  # by size: a cut-short run keeps
                      + [("default", "default", n) for n in default_sizes], key=lambda j: j[2])  # the small ones
        for model, model_path, n in jobs:
            done = [r for r in rows if r["model"] == model]
            if model == "default" and done and n / done[0]["stars_per_s"] > args.default_budget:
                skipped.append(f"default model at {n:,} stars not run: {done[0]['stars_per_s']:,.0f} stars/s "
                               f"predicts {n / done[0]['stars_per_s']:.0f} s > --default-budget "
                               f"{args.default_budget:.0f} s.")
                continue
            out = folder / f"out_{model}_{n}.parquet"
            r = label_in_child(folder / f"stars_{n}.parquet", model_path, out, args.device, args.threads)
            out.unlink()
            rows.append({"model": model, "stars": r["rows"], "wall_s": r["wall_s"],
                         "stars_per_s": r["rows"] / r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
                         **{f"{k}_s": r[k] for k in ("read", "tokenize", "model")}, "write_s": r["write"] + r["merge"]})
            print(rows[-1], flush=True)
            save(rows, skipped, args, final=False)
    save(rows, skipped, args, final=True)
    return rows


def _auto_precision(device: str) -> str:
    """What precision="auto" runs on ``device`` (bf16 on GPUs and on CPUs whose oneDNN runs
    bf16 GEMMs, else fp32)."""
    import torch

    from lamfast.infer import resolve_precision

    return resolve_precision("auto", torch.device(device))


def save(rows: list[dict], skipped: list[str], args, final: bool) -> None:
    """The table so far (each row as it is measured), marked partial until the last."""
    notes = [f"Synthetic stars in Parquet (all 118 token columns + errors, XP as list columns, zstd), "
             f"{len(INPUTS)} input tokens (bp0..29, rp0..29, jh, jk, bprp) -> teff, logg, m_h, Parquet out; "
             f"`lamfast.label` defaults (chunk {CHUNK_ROWS:,} rows, batch 256 stars on CPU, precision 'auto': "
             f"{_auto_precision(args.device)} here); one fresh "
             f"child process per row, torch threads {args.threads}; wall_s = the `lamfast.label` call (model "
             "load included, interpreter start not); peak RSS = the child's VmHWM. tiny = a width-16 random-weights "
             "model (the pipeline's own cost); default = the shipped model. Stage seconds: read and tokenize run "
             "on a background thread, overlapping the model.", *skipped, *checks(rows)]
    if not final:
        notes.append("**Partial: the run stopped before its end.**")
    try:
        notes.append(f"Load average at the end: {os.getloadavg()[0]:.1f} (shared machine: numbers are noisy).")
    except OSError:
        pass
    with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
        write_table("scale", rows, device=args.device, title="Labelling at scale, file to file",
                    notes="\n\n".join(notes), quick=args.quick, extra_stamp={"torch_threads": args.threads})


if __name__ == "__main__":
    main()
