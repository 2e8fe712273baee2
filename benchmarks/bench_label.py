"""End-to-end labelling, file to file: lamfast.label vs the stock-PyTorch baseline.

The same catalogue (``make_synthetic`` stars written to Parquet), the same weights (the
``lam-2024`` preset with random weights and the paper's normalisation; throughput does not
depend on training), the paper's headline task: 63 tokens in (bp0..29, rp0..29, jh, jk,
bprp), Teff, logg and [M/H] out.

- lamfast: ``lamfast.label`` (chunked reads and tokenizing on a background thread, packed
  ragged batches sorted by set length, every request in one decoder pass, atomic parts,
  merge). Stage seconds come from its summary (read and tokenize overlap the model).
- stock: the paper's way with :class:`lamfast.baselines.stock_model.StockLAM` (same
  weights): read the file, tokenize, pad to [B, L], ``nn.MultiheadAttention`` encoder, one
  decoder pass per requested token, write Parquet; one step after the other.

CPU: fp32, and bf16 autocast as a separate row with the largest |difference| of its
predictions from the fp32 run (K for Teff, dex for logg and [M/H]). CUDA: bf16 (and the
stock model in fp32 and bf16). A last part measures the peak RSS of ``lamfast label`` in
child processes on catalogues of N and 4N stars (a tiny model, 3 input tokens, small
chunks): bounded memory means the two peaks agree.

    python -m benchmarks.bench_label [--quick | --dry] [--device cpu|cuda] [--stars N] [--stock-stars N]
        [--threads 2] [--repeats 3] [--no-rss]
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

from .common import STOCK_GPU_BATCH, write_table

INPUTS = list(HEADLINE_INPUTS)
REQUEST = ["teff", "logg", "m_h"]


def make_catalogue(n: int, seed: int = 0, distinct: int = 50_000):
    """``n`` synthetic stars (at most ``distinct`` different ones, tiled with fresh source_ids)."""
    from lamfast.data.synthetic import make_synthetic

    base = make_synthetic(min(n, distinct), seed=seed).catalog
    if len(base) == n:
        return base
    cat = base.rows(np.arange(n) % len(base))
    cat.source_id = np.arange(n, dtype=np.int64) * 128
    return cat


def paper_model(folder: Path):
    """lam-2024 with random weights and the paper's normalisation, saved to ``folder``."""
    import torch

    from lamfast import LAM
    from lamfast.reference_stats import paper_normalizer

    torch.manual_seed(0)
    model = LAM("lam-2024", normalizer=paper_normalizer()).eval()
    model.save(folder)
    return model


def run_lamfast(path, out, model_dir, device, precision, batch_size, chunk_rows) -> dict:
    t0 = time.perf_counter()
    s = lamfast.label(path, model=model_dir, output=out, columns=INPUTS, request=REQUEST, device=device,
                      precision=precision, batch_size=batch_size, chunk_rows=chunk_rows, progress=False,
                      overwrite=True)   # each repeat replaces the last one's output
    _sync(device)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rows": s.output_rows, **{k: s.timings[k] for k in ("read", "tokenize", "model")},
            "write": s.timings["write"] + s.timings["merge"]}


def run_stock(path, out, stock, normalizer, device, precision, batch_size) -> dict:
    """The paper-style pipeline, stage after stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from lamfast.baselines.stock_model import pad_batch
    from lamfast.io import read_parquet

    request_ids = normalizer.vocab.ids(REQUEST)
    t0 = time.perf_counter()
    cat = read_parquet(path)
    values = cat.select(INPUTS).values
    t1 = time.perf_counter()
    batch = lamfast.tokenize(values, INPUTS, max_tokens=64, normalizer=normalizer)
    padded_values, padded_tokens = pad_batch(batch)                    # [N, L]
    t2 = time.perf_counter()
    n = len(cat)
    mu, logvar = np.empty((n, len(REQUEST))), np.empty((n, len(REQUEST)))
    requests = torch.from_numpy(request_ids.astype(np.int64))
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        for a in range(0, n, batch_size):
            v = torch.from_numpy(padded_values[a:a + batch_size]).to(device)
            t = torch.from_numpy(padded_tokens[a:a + batch_size]).to(device)
            m, s = stock.predict_many(v, t, requests)
            mu[a:a + batch_size], logvar[a:a + batch_size] = m.float().cpu().numpy(), s.float().cpu().numpy()
    _sync(device)
    t3 = time.perf_counter()
    value, error = normalizer.unstandardize(mu, request_ids[None, :], np.sqrt(np.exp(logvar)))
    no_input = batch.seqlens() == 0
    value[no_input], error[no_input] = np.nan, np.nan
    cols = {"source_id": cat.source_id}
    for j, name in enumerate(REQUEST):
        cols[name], cols[f"{name}_error"] = value[:, j].astype(np.float32), error[:, j].astype(np.float32)
    pq.write_table(pa.table(cols), out, compression="zstd")
    t4 = time.perf_counter()
    return {"wall": t4 - t0, "rows": n, "read": t1 - t0, "tokenize": t2 - t1, "model": t3 - t2, "write": t4 - t3}


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def max_differences(a_path, b_path) -> dict:
    from lamfast.label import read_output

    a, _ = read_output(a_path)
    b, _ = read_output(b_path)
    return {name: float(np.nanmax(np.abs(a[name].astype(np.float64) - b[name]))) for name in REQUEST}


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
_RSS_CHILD = """
import json, re, sys, torch
torch.set_num_threads(1)
import lamfast
s = lamfast.label(sys.argv[1], model=sys.argv[2], output=sys.argv[3], columns=["bprp", "jh", "jk"],
                  device="cpu", chunk_rows=4096, batch_size=4096, progress=False)
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"rows": s.output_rows, "peak_rss_mb": hwm / 1024}))
"""


def peak_rss(folder: Path, n: int, model_dir: Path) -> dict:
    """Peak RSS of a child labelling an n-star Parquet file (all 118 columns present)."""
    from lamfast.io import write_parquet

    path = folder / f"rss_{n}.parquet"
    write_parquet(make_catalogue(n, seed=1, distinct=5000), path, row_group_size=4096)
    # The child imports the lamfast this process runs (installed, or a checkout built in place).
    root = str(Path(lamfast.__file__).resolve().parents[1])
    path_env = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(model_dir), str(folder / f"rss_{n}.h5")],
                         capture_output=True, text=True, cwd=folder, env={**os.environ, "PYTHONPATH": path_env})
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def tiny_model(folder: Path):
    from lamfast import LAM, LAMConfig
    from lamfast.reference_stats import paper_normalizer

    LAM(LAMConfig(width=16, encoder_heads=(2, 1), encoder_ffn=(32, 16), decoder_heads=(2, 1, 1),
                  decoder_ffn=(24, 12, 8), head_mlp=(20, 10)), normalizer=paper_normalizer()).save(folder)


def write_big_catalogue(path: Path, n: int, chunk: int, seed: int = 0, compression: str = "zstd") -> None:
    """An n-star Parquet catalogue written chunk by chunk: one ``chunk``-star slice of
    synthetic stars, repeated with fresh source_ids (10M stars without 10M in memory)."""
    import pyarrow.parquet as pq

    from lamfast.io import write_parquet

    base_path = path.with_name(path.stem + "_base.parquet")
    write_parquet(make_catalogue(min(n, chunk), seed=seed), base_path, row_group_size=chunk)
    base = pq.read_table(base_path)
    base_path.unlink()
    ids = base.schema.get_field_index("source_id")
    with pq.ParquetWriter(path, base.schema, compression=compression) as writer:
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            sid = pa_int64(np.arange(a, a + m, dtype=np.int64) * 128)
            writer.write_table(base.slice(0, m).set_column(ids, "source_id", sid), row_group_size=chunk)


def pa_int64(x):
    import pyarrow as pa

    return pa.array(x, pa.int64())


class GpuBusy:
    """Mean GPU utilisation (NVML's "percent of time a kernel ran", via nvidia-smi sampled
    every 100 ms) while the block runs; ``value`` stays None without nvidia-smi."""

    def __init__(self, enabled: bool):
        self.enabled, self.value, self.proc = enabled, None, None

    def __enter__(self):
        import shutil

        if self.enabled and shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "100", "-i", str(max(0, _cuda_index()))],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            samples = [float(x) for x in out.split() if x.replace(".", "", 1).isdigit()]
            self.value = sum(samples) / len(samples) / 100 if samples else None
        return False


def _cuda_index() -> int:
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else -1


def main(argv=None) -> list[dict]:
    import torch

    from lamfast.baselines.stock_model import StockLAM
    from lamfast.io import write_parquet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--stars", type=int, default=None, help="default 4096 on CPU, 10,000,000 on CUDA")
    p.add_argument("--stock-stars", type=int, default=None,
                   help="stars the stock pipeline labels (default: --stars on CPU, at most 1,000,000 on CUDA)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (CPU runs)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per pipeline (median kept)")
    p.add_argument("--rss", action=argparse.BooleanOptionalAction, default=True,
                   help="the bounded-memory probe (peak RSS of `lamfast label` on N and 4N stars)")
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (< 1 min on 2 CPU cores)")
    p.add_argument("--dry", action="store_true",
                   help="a dress rehearsal of the GPU run on a CPU: tiny catalogue in several work units, "
                        "one run each; writes the full table's files")
    args = p.parse_args(argv)
    if args.dry:
        args.device = args.device or "cpu"
        args.repeats = 1
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    n = args.stars or (96 if args.dry else (200_000 if args.quick else 10_000_000) if cuda
                       else (768 if args.quick else 4096))
    n_stock = min(n, args.stock_stars or (1_000_000 if cuda else n))
    if args.quick:
        args.repeats = 1
    if not cuda:
        torch.set_num_threads(args.threads)
    # CPU: cache-sized micro-batches, the best size for both candidates
    # (lamfast.infer.default_batch_size); dry: several work units of a tiny file
    batch_size, chunk_rows = (65536, 262144) if cuda else (32, 32) if args.dry else (256, 4096)
    stock_batch = STOCK_GPU_BATCH if cuda else batch_size
    rows, notes, rss = [], [], []
    started = time.perf_counter()

    def save(final: bool):
        text = list(notes)
        if rss:
            text.append(f"Peak RSS of `lamfast label` (tiny model, 3 input tokens, chunk 4096 rows, all catalogue "
                        f"columns read): {rss[0]['rows']} stars {rss[0]['peak_rss_mb']:.0f} MB, {rss[1]['rows']} stars "
                        f"{rss[1]['peak_rss_mb']:.0f} MB ({rss[1]['peak_rss_mb'] - rss[0]['peak_rss_mb']:+.0f} MB; reading "
                        f"the catalogue whole would add ~{(large - small) * 118 * 8 / 2**20:.0f} MB of values and errors).")
        if not final:
            text.append("**Partial: the run stopped before its end.**")
        if args.dry:
            text.append("Dry run: a tiny catalogue on a CPU; times mean nothing, the rows check the plumbing.")
        with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
            write_table("label", [{c: r.get(c, "") for c in COLUMNS} for r in rows], device=device,
                        title="End-to-end labelling, file to file", notes="\n\n".join(text), quick=args.quick)

    goal = (">= 1e6 stars/s and >= 10x the best stock run (bf16, lam-2024)" if cuda else
            ">= 3x stock fp32 (bf16 allowed if it differs from fp32 by < 1 K and < 0.002 dex); fp32 >= 2x")
    notes += [f"Catalogue: {n:,} synthetic stars in Parquet (stock pipeline: the first {n_stock:,}), 63 input "
              f"tokens (bp0..29, rp0..29, jh, jk, bprp) -> teff, logg, m_h; lam-2024 preset with random weights "
              f"and the paper's normalisation; batch {batch_size} stars (stock: {stock_batch}), chunk {chunk_rows} "
              f"rows; median of {args.repeats} interleaved runs; "
              + ("CUDA." if cuda else f"CPU, torch threads {args.threads}."),
              f"Goal: {goal}. Stage seconds of lamfast: read and tokenize run on a background thread, "
              "overlapping the model; write includes the final merge. model_frac = model stage / wall; "
              "gpu_busy = mean NVML utilisation during the run (share of time a kernel ran; blank without "
              "nvidia-smi).",
              "bf16 differences are of this random-weights model (the trained model's may differ)."]
    small, large = (1500, 6000) if args.dry else (15_000, 60_000) if args.quick else (50_000, 200_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = paper_model(folder / "model")
        stock = StockLAM.from_lam(model).eval().to(device)
        path, stock_path = folder / "catalogue.parquet", folder / "catalogue_stock.parquet"
        t0 = time.perf_counter()
        write_big_catalogue(path, n, chunk=min(chunk_rows, 262144), compression="lz4" if n > 2_000_000 else "zstd")
        if n_stock < n:
            write_big_catalogue(stock_path, n_stock, chunk=min(chunk_rows, 262144))
        else:
            stock_path = path
        print(f"catalogue of {n:,} stars written in {time.perf_counter() - t0:.1f} s", flush=True)
        lamfast_precisions = ["bf16", "fp32"] if cuda else ["fp32", "bf16"]
        stock_precisions = ["fp32", "bf16"] if cuda else ["fp32"]
        # Warm-up (kernel compilation, allocator, first-call costs) on a small slice.
        warm = folder / "warm.parquet"
        write_parquet(make_catalogue(min(n, 8192 if cuda else 128), seed=3), warm)
        for prec in lamfast_precisions:
            run_lamfast(warm, folder / f"warm_{prec}.parquet", folder / "model", device, prec, batch_size, chunk_rows)
        for prec in stock_precisions:
            run_stock(warm, folder / "warm_stock.parquet", stock, model.normalizer, device, prec, stock_batch)
        trials: dict[str, list[dict]] = {}
        for _ in range(args.repeats):  # interleaved, so load changes of a shared machine hit all alike
            for prec in stock_precisions:
                with GpuBusy(cuda) as busy:
                    r = run_stock(stock_path, folder / f"stock_{prec}.parquet", stock, model.normalizer, device,
                                  prec, stock_batch)
                trials.setdefault(f"stock {prec}", []).append({**r, "gpu_busy": busy.value})
            for prec in lamfast_precisions:
                with GpuBusy(cuda) as busy:
                    r = run_lamfast(path, folder / f"lamfast_{prec}.parquet", folder / "model", device, prec,
                                    batch_size, chunk_rows)
                trials.setdefault(f"lamfast {prec}", []).append({**r, "gpu_busy": busy.value})
                if len(trials[f"lamfast {prec}"]) == 1:  # the first measurement, in the table at once
                    rows.append(_row(f"lamfast {prec}", r | {"gpu_busy": busy.value}, None, None))
                    save(final=False)
        rows.clear()
        runs = {name: sorted(results, key=lambda r: r["wall"])[len(results) // 2]  # the median run
                for name, results in trials.items()}
        baseline = max(r["rows"] / r["wall"] for k, r in runs.items() if k.startswith("stock"))
        diffs = max_differences(folder / "lamfast_bf16.parquet", folder / "lamfast_fp32.parquet")
        for name, r in runs.items():
            rows.append(_row(name, r, baseline, diffs if name == "lamfast bf16" else None))
            print(rows[-1], flush=True)  # in the log even if a later step fails
        save(final=False)
        print(f"pipelines done in {time.perf_counter() - started:.0f} s", flush=True)
        # Bounded memory: peak RSS of label on N and 4N stars (tiny model, 3 input tokens).
        if args.rss:
            tiny_model(folder / "tiny")
            rss = [peak_rss(folder, m, folder / "tiny") for m in (small, large)]
    if not cuda:
        try:
            notes.append(f"Load average at the end: {os.getloadavg()[0]:.1f} (shared machine: numbers are noisy).")
        except OSError:
            pass
    save(final=True)
    return rows


COLUMNS = ["pipeline", "stars", "wall_s", "stars_per_s", "vs_best_stock", "read_s", "tokenize_s", "model_s",
           "write_s", "model_frac", "gpu_busy", "max_diff_teff_K", "max_diff_logg_dex", "max_diff_m_h_dex"]


def _row(name, r, baseline, diffs) -> dict:
    rate = r["rows"] / r["wall"]
    row = {"pipeline": name, "stars": r["rows"], "wall_s": r["wall"], "stars_per_s": rate,
           "vs_best_stock": rate / baseline if baseline else ""}
    row.update({f"{k}_s": r[k] for k in ("read", "tokenize", "model", "write")})
    row["model_frac"] = r["model"] / r["wall"]
    row["gpu_busy"] = "" if r.get("gpu_busy") is None else r["gpu_busy"]
    if diffs:
        row.update({"max_diff_teff_K": diffs["teff"], "max_diff_logg_dex": diffs["logg"],
                    "max_diff_m_h_dex": diffs["m_h"]})
    return row


if __name__ == "__main__":
    main()
