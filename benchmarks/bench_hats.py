"""What a HATS catalogue costs ``lamfast label`` against one flat Parquet file of the same stars.

Synthetic stars (``make_catalogue``) in the archive's layout, as LSDB's Gaia catalogues hold
them: e-/s ``bp_coefficients``/``rp_coefficients`` lists with ``phot_g_mean_mag`` beside
them, and sky positions spread over the sphere. Written once as one flat Parquet file and
as HATS catalogues (``lsdb.from_dataframe`` + ``write_catalog``) of two partition sizes,
then labelled in this process, side by side, with a tiny width-16 model so that the
pipeline's own cost shows (read, gnorm, tokenize, write; the default model would hide it):

- flat -> Parquet: the baseline;
- HATS -> Parquet: the same stars, one work unit per partition;
- HATS -> HATS: the labels written as a HATS catalogue of the input's pixels.

The median of ``--repeats`` runs each, interleaved (a fresh output every time).

    python -m benchmarks.bench_hats [--quick] [--stars N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .bench_label import make_catalogue, tiny_model
from .common import write_table


def archive_frame(n: int, seed: int = 0):
    """n stars as a pandas DataFrame in the archive's XP layout, with ra/dec."""
    import pandas as pd

    from lamfast.io.photometry import g_flux

    cat = make_catalogue(n, seed=seed)
    rng = np.random.default_rng(seed)
    g = rng.uniform(10, 17, n)
    xp = [cat.columns.index(f"{b}{k}") for b in ("bp", "rp") for k in range(55)]
    flux = cat.values[:, xp].astype(np.float64) * g_flux(g)[:, None]
    flux = np.where(np.isnan(flux), 0.0, flux)   # the archive has every coefficient of a band it has
    return pd.DataFrame({"source_id": cat.source_id, "ra": rng.uniform(0, 360, n),
                         "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                         "bp_coefficients": list(flux[:, :55]), "rp_coefficients": list(flux[:, 55:]),
                         "phot_g_mean_mag": g})


def write_inputs(folder: Path, n: int, partition_rows: list[int]) -> dict:
    """name -> input path: the flat file and one HATS catalogue per partition size."""
    import lsdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = archive_frame(n)
    inputs = {"flat": folder / "flat.parquet"}
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), inputs["flat"], row_group_size=65536)
    for rows in partition_rows:
        catalog = lsdb.from_dataframe(frame, catalog_name="xp", ra_column="ra", dec_column="dec",
                                      lowest_order=0, highest_order=10, partition_rows=rows)
        inputs[f"hats_{rows}"] = folder / f"hats_{rows}"
        catalog.write_catalog(inputs[f"hats_{rows}"], progress_bar=False)
    return inputs


def label_once(path: Path, out: Path, model: Path) -> tuple[float, object]:
    import lamfast

    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        summary = lamfast.label(path, model=model, output=out, device="cpu", progress=False)
    return time.perf_counter() - t0, summary


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stars", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="20,000 stars, one repeat")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n, repeats = (20_000, 1) if args.quick else (args.stars, args.repeats)
    sizes = [n // 10, n // 100]              # ~10 and ~100 partitions
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny_model(folder / "tiny")
        inputs = write_inputs(folder, n, sizes)
        jobs = [("flat", "flat -> Parquet", "out.parquet")]
        for size in sizes:
            jobs += [(f"hats_{size}", f"HATS ({size:,}-star partitions) -> Parquet", "out.parquet"),
                     (f"hats_{size}", f"HATS ({size:,}-star partitions) -> HATS", "out_hats")]
        times: dict[str, list[float]] = {what: [] for _, what, _ in jobs}
        summaries = {}
        for _ in range(repeats):   # interleaved: a shared machine's load changes hit every job alike
            for name, what, out in jobs:
                seconds, summaries[what] = label_once(inputs[name], folder / out, folder / "tiny")
                times[what].append(seconds)
                print(f"{what}: {seconds:.2f} s", flush=True)
        for _, what, _ in jobs:
            s, t = summaries[what], float(np.median(times[what]))
            rows.append({"job": what, "stars": s.output_rows, "work_units": s.units_total, "seconds": t,
                         "stars_per_s": s.output_rows / t})
    base = rows[0]["seconds"]
    for r in rows:
        r["time_vs_flat"] = r["seconds"] / base
    write_table("hats", rows, title="lamfast label on HATS catalogues vs one flat Parquet file",
                notes=f"{n:,} synthetic stars in the archive's layout (e-/s coefficient lists + G), tiny width-16 "
                      f"model (the pipeline's own cost), torch 1 thread, median of {repeats} interleaved runs; one "
                      "process. A shared machine: read the ratios.", quick=args.quick)
    return rows


if __name__ == "__main__":
    main()
