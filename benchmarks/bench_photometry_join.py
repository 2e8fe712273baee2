"""The photometry join of ``lamfast label --photometry``: loading photometry files and
looking up the stars of each work unit, on synthetic stars.

Photometry: N stars with gaia_source's columns in the archive's types (G, BP-RP, the BP/RP
flux_over_error, parallax_error float32, parallax float64) in one Parquet file and one
gzipped CSV, and 2MASS magnitudes and errors for half of them in another Parquet file.
XP rows: the N source_ids shuffled, 10% of them replaced by stars the photometry lacks, in
units of 65,536 rows (the labelling job's default).

Rows:
- load: :class:`lamfast.io.photometry_join.PhotometryJoin` of the Parquet (or CSV.gz)
  files: read, compact, sort once. Its kept bytes per photometry star are measured.
- lookup: per unit, ``join.lookup`` (searchsorted in each file group) plus the tokens
  (``gaia_photometry`` of the joined columns): what ``read_xp_joined`` adds to reading
  an XP unit.
- in-memory join per unit: what ``read_catalog(path, photometry=T)`` does for each file,
  ``gaia_photometry`` of the whole table T plus its argsort, then the lookup, once per
  unit (the cost a job would pay without a shared sorted join; Gaia table only).

    python -m benchmarks.bench_photometry_join [--quick] [--stars N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import write_table

UNIT_ROWS = 65536


def photometry_tables(n: int, seed: int = 0):
    """(gaia, tmass) dicts of arrays: n Gaia stars, 2MASS for every other one."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    ids = np.sort(rng.choice(2**62, n, replace=False)).astype(np.int64)   # 1e6 distinct ids
    ids = ids[rng.permutation(n)]
    g = rng.uniform(8, 20, n).astype(f32)
    gaia = {"source_id": ids, "phot_g_mean_mag": g, "bp_rp": rng.uniform(-0.3, 3, n).astype(f32),
            "phot_bp_mean_flux_over_error": rng.uniform(5, 3000, n).astype(f32),
            "phot_rp_mean_flux_over_error": rng.uniform(5, 3000, n).astype(f32),
            "parallax": rng.normal(1, 1, n), "parallax_error": rng.uniform(0.01, 0.5, n).astype(f32)}
    half = slice(0, n, 2)
    tmass = {"source_id": ids[half]}
    for band, off in (("j_m", 1.0), ("h_m", 1.5), ("ks_m", 1.7)):
        tmass[band] = (g[half] - off).astype(f32)
        tmass[band.replace("_m", "_msigcom")] = rng.uniform(0.01, 0.1, len(tmass["source_id"])).astype(f32)
    return gaia, tmass


def xp_ids(gaia_ids: np.ndarray, seed: int = 1) -> np.ndarray:
    """The XP rows' source_ids: the photometry's, shuffled, 10% replaced by unknown stars."""
    rng = np.random.default_rng(seed)
    ids = gaia_ids[rng.permutation(len(gaia_ids))].copy()
    unknown = rng.random(len(ids)) < 0.1
    ids[unknown] = -1 - np.arange(unknown.sum())    # negative: never a Gaia id
    return ids


def write_files(folder: Path, gaia: dict, tmass: dict) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    paths = {"gaia.parquet": folder / "gaia.parquet", "tmass.parquet": folder / "tmass.parquet",
             "gaia.csv.gz": folder / "gaia.csv.gz"}
    pq.write_table(pa.table(gaia), paths["gaia.parquet"])
    pq.write_table(pa.table(tmass), paths["tmass.parquet"])
    with pa.CompressedOutputStream(str(paths["gaia.csv.gz"]), "gzip") as f:
        pcsv.write_csv(pa.table(gaia), f)
    return paths


def kept_bytes(join) -> int:
    return sum(g.source_id.nbytes + sum(a.nbytes for a in g.columns.values())
               + (0 if g.file_of_row is None else g.file_of_row.nbytes) for g in join.groups)


def time_lookup(join, ids: np.ndarray) -> float:
    from lamfast.io.gaia_photometry import gaia_photometry

    t0 = time.perf_counter()
    for a in range(0, len(ids), UNIT_ROWS):
        unit = ids[a:a + UNIT_ROWS]
        cols, _ = join.lookup(unit)
        gaia_photometry({"source_id": unit, **cols}, need_tokens=False)
    return time.perf_counter() - t0


def time_in_memory(gaia: dict, ids: np.ndarray, units: int) -> tuple[float, int]:
    """(seconds, rows found) of xp_catalog's join for ``units`` units (gaia_photometry of the
    whole table and its argsort each time), seconds scaled to every unit of ``ids``."""
    from lamfast.io.gaia_photometry import gaia_photometry

    n_units = -(-len(ids) // UNIT_ROWS)
    units = min(units, n_units)
    found = 0
    t0 = time.perf_counter()
    for k in range(units):
        cat = gaia_photometry(gaia)
        order = np.argsort(cat.source_id, kind="stable")   # as xp_catalog's join, every call
        unit = ids[k * UNIT_ROWS:(k + 1) * UNIT_ROWS]
        sorted_ids = cat.source_id[order]
        pos = np.minimum(np.searchsorted(sorted_ids, unit), len(order) - 1)
        hit = sorted_ids[pos] == unit
        values = np.where(hit[:, None], cat.values[order[pos]], np.nan)
        found += int(np.isfinite(values[:, 0]).sum())
    return (time.perf_counter() - t0) / units * n_units, found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1e5 stars instead of 1e6")
    p.add_argument("--stars", type=int, default=None, help="photometry stars = XP rows (default 1e6)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings (default 3)")
    args = p.parse_args(argv)
    from lamfast.io.photometry_join import PhotometryJoin

    n = args.stars or (100_000 if args.quick else 1_000_000)
    gaia, tmass = photometry_tables(n)
    ids = xp_ids(gaia["source_id"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), gaia, tmass)
        for names in (("gaia.parquet", "tmass.parquet"), ("gaia.csv.gz", "tmass.parquet")):
            files = [paths[k] for k in names]
            best, join = float("inf"), None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                join = PhotometryJoin(files)
                best = min(best, time.perf_counter() - t0)
            stars = len(join)
            rows.append({"task": f"load {' + '.join(names)}", "stars": stars, "seconds": round(best, 3),
                         "stars/s": f"{stars / best:,.0f}",
                         "kept bytes/star": round(kept_bytes(join) / stars, 1)})
        lookup = min(time_lookup(join, ids) for _ in range(args.repeats))
        rows.append({"task": f"lookup + tokens, {UNIT_ROWS:,}-row units", "stars": len(ids),
                     "seconds": round(lookup, 3), "stars/s": f"{len(ids) / lookup:,.0f}", "kept bytes/star": ""})
        found = int(join.lookup(ids)[1][0])
        memory, found_memory = time_in_memory(gaia, ids, units=3)
        # the two joins find the same stars (G is finite for every Gaia star here)
        found_join = int(np.isfinite(join.lookup(ids[:3 * UNIT_ROWS])[0]["phot_g_mean_mag"]).sum())
        if found_memory != found_join:
            raise RuntimeError(f"joins disagree: {found_memory} vs {found_join} stars found")
        rows.append({"task": "in-memory join per unit (read_catalog photometry=T), scaled", "stars": len(ids),
                     "seconds": round(memory, 3), "stars/s": f"{len(ids) / memory:,.0f}", "kept bytes/star": ""})
    write_table("photometry_join", rows, title="Photometry join of lamfast label",
                notes=f"{n:,} photometry stars (2MASS for half), {len(ids):,} XP rows of which {found:,} "
                      "are in the Gaia file; one process, numpy single-threaded.", quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
