"""The photometry join of ``lamfast label --photometry``: loading photometry files and
looking up the stars of each work unit, on synthetic stars.

Photometry: N stars with gaia_source's columns in the archive's types (G, BP-RP, the BP/RP
flux_over_error, parallax_error float32, parallax float64) in one Parquet file and one
gzipped CSV, and 2MASS magnitudes and errors for half of them in another Parquet file.
XP rows: the N source_ids shuffled, 10% of them replaced by stars the photometry lacks, in
units of 65,536 rows (the labelling job's default).

Rows:
- load: :class:`lamfast.io.photometry_join.PhotometryJoin` of the Parquet (or CSV.gz)
  files and a first lookup (the Parquet files are lazy: read by the lookup that needs them;
  random ids, so every lookup does): read, compact, sort once. Its kept bytes per
  photometry star are measured.
- lookup: per unit, ``join.lookup`` (searchsorted in each file group) plus the tokens
  (``gaia_photometry`` of the joined columns): what ``read_xp_joined`` adds to reading
  an XP unit.
- in-memory join per unit: what ``read_catalog(path, photometry=T)`` does for each file,
  ``gaia_photometry`` of the whole table T plus its argsort, then the lookup, once per
  unit (the cost a job would pay without a shared sorted join; Gaia table only).

``--scale`` (table ``photometry_join_scale``): the Gaia table of N stars split by HEALPix
range into K files as the archive's bulk download is (~62k stars each; the bulk download's
XP files hold ~65k, its GaiaSource files ~0.5M, every source of their range), XP rows = the
stars in source_id (HEALPix) order, 10% replaced by stars no file has, in 65,536-row units;
each join in a fresh interpreter: its peak RSS above the interpreter's (VmHWM after the
lookups minus VmRSS before the join, with the imports and the XP ids loaded), the seconds
to make it and to look up every unit (medians of ``--repeats`` runs), and its file reads
(``join.reads``: files, or row-group parts of the sorted file).
- lazy: the files as archive-named Parquet (lazy by their statistics), cache_bytes 8 MB
  (~3 files; the default 1 GB is ~40 of the archive's GaiaSource files);
- lazy, one sorted Parquet: the same rows as one Parquet file sorted by source_id, in
  row groups of 65,536 (read by row group), cache_bytes 8 MB;
- lazy, default cache: the K files, cache_bytes 1 GB (holds all of them here);
- eager: the same rows as K FITS files without ranges in their names (resident).

    python -m benchmarks.bench_photometry_join [--quick] [--stars N] [--repeats 3] [--scale]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
    p.add_argument("--scale", action="store_true", help="the HEALPix-split table (photometry_join_scale) only")
    args = p.parse_args(argv)
    if args.scale:
        return scale(args.quick, args.repeats)
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
                join.lookup(ids[:1])   # reads the lazy (Parquet) files: random ids, every range
                best = min(best, time.perf_counter() - t0)
            stars = len(join)
            rows.append({"task": f"load {' + '.join(names)}", "stars": stars, "seconds": round(best, 3),
                         "stars/s": f"{stars / best:,.0f}",
                         "kept bytes/star": round(join.nbytes / stars, 1)})
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


# ---- --scale: photometry split by HEALPix range, memory and throughput per join -------------

LEVEL8_SHIFT = 43      # source_id >> 43: the HEALPix level-8 pixel (lamfast.io.photometry_file)
SMALL_CACHE = 8 << 20
SCALE = ((1_000_000, 16), (4_000_000, 64))

_CHILD = """
import json, re, sys, time
import numpy as np
import astropy.io.fits, astropy.table, pyarrow.compute, pyarrow.dataset, pyarrow.parquet   # imports: not the join's memory
from lamfast.io.photometry_join import PhotometryJoin
files, cache, ids_path, unit = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ids = np.load(ids_path)
def kb(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
try:
    open("/proc/self/clear_refs", "w").write("5")   # VmHWM from here
except OSError:
    pass
base = kb("VmRSS")
t0 = time.perf_counter()
join = PhotometryJoin(files, cache_bytes=cache)
t1 = time.perf_counter()
found = 0
for a in range(0, len(ids), unit):
    cols, joined = join.lookup(ids[a:a + unit])
    found += int(joined.sum())
t2 = time.perf_counter()
print(json.dumps({"make_s": t1 - t0, "lookup_s": t2 - t1, "peak_mb": (kb("VmHWM") - base) / 1024,
                  "found": found, "reads": sum(join.reads), "held_mb": join.nbytes / 2**20}))
"""


def split_files(folder: Path, gaia: dict, k: int) -> tuple[list[Path], list[Path], Path]:
    """The rows of ``gaia`` sorted by source_id, cut into k files of contiguous level-8
    pixel ranges: (archive-named Parquet files, the same rows as unnamed FITS files, all
    rows as one Parquet file in row groups of 65,536)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table

    order = np.argsort(gaia["source_id"])
    rows = {c: a[order] for c, a in gaia.items()}
    pix = rows["source_id"] >> LEVEL8_SHIFT
    cuts = np.searchsorted(pix, pix[np.arange(1, k) * len(pix) // k])   # never inside a pixel
    edges = [0, *cuts.tolist(), len(pix)]
    first = [0, *pix[cuts].tolist()]
    last = [p - 1 for p in first[1:]] + [12 * 4**8 - 1]
    parquet, fits = [], []
    for j in range(k):
        part = {c: a[edges[j]:edges[j + 1]] for c, a in rows.items()}
        parquet.append(folder / f"GaiaSource_{first[j]:06d}-{last[j]:06d}.parquet")
        pq.write_table(pa.table(part), parquet[-1])
        fits.append(folder / f"gaia_{j}.fits")
        Table(part).write(fits[-1])
    pq.write_table(pa.table(rows), folder / "sorted.parquet", row_group_size=UNIT_ROWS)
    return parquet, fits, folder / "sorted.parquet"


def healpix_xp_ids(gaia_ids: np.ndarray, seed: int = 1) -> np.ndarray:
    """The XP rows' source_ids in HEALPix order (as units of the archive's files come), 10%
    replaced by a neighbouring id no photometry file has."""
    rng = np.random.default_rng(seed)
    ids = np.sort(gaia_ids)
    unknown = np.flatnonzero(rng.random(len(ids)) < 0.1)
    ids[unknown] += 1
    ids[unknown[np.isin(ids[unknown], gaia_ids)]] -= 1   # +1 hit a star: keep it known
    return ids


def join_in_child(files: list[Path], cache: int, ids_path: Path) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([str(f) for f in files]), str(cache),
                          str(ids_path), str(UNIT_ROWS)], capture_output=True, text=True, env=env)
    if run.returncode:
        raise RuntimeError(f"photometry join child failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def scale(quick: bool, repeats: int) -> int:
    sizes = ((100_000, 4), (400_000, 16)) if quick else SCALE
    rows = []
    for n, k in sizes:
        gaia, _ = photometry_tables(n)
        with tempfile.TemporaryDirectory() as tmp:
            parquet, fits, one = split_files(Path(tmp), gaia, k)
            ids = healpix_xp_ids(gaia["source_id"])
            np.save(Path(tmp) / "ids.npy", ids)
            found = None
            for mode, files, cache in (("lazy, cache 8 MB", parquet, SMALL_CACHE),
                                       ("lazy, one sorted Parquet, cache 8 MB", [one], SMALL_CACHE),
                                       ("lazy, default cache 1 GB", parquet, 1 << 30),
                                       ("eager (resident files)", fits, 1 << 30)):
                runs = [join_in_child(files, cache, Path(tmp) / "ids.npy") for _ in range(repeats)]
                r = {key: float(np.median([x[key] for x in runs])) for key in ("make_s", "lookup_s", "peak_mb")}
                r |= {key: runs[0][key] for key in ("found", "reads", "held_mb")}
                if found is not None and r["found"] != found:
                    raise RuntimeError(f"{mode}: {r['found']} stars found, the first join {found}")
                found = r["found"]
                total = r["make_s"] + r["lookup_s"]
                rows.append({"join": mode, "stars": n, "files": len(files), "peak RSS MB": round(r["peak_mb"], 1),
                             "held MB at end": round(r["held_mb"], 1), "reads": r["reads"],
                             "make s": round(r["make_s"], 3), "lookup s": round(r["lookup_s"], 3),
                             "lookup stars/s": f"{len(ids) / r['lookup_s']:,.0f}",
                             "make + lookup stars/s": f"{len(ids) / total:,.0f}"})
        del gaia
    write_table("photometry_join_scale", rows, title="Photometry join split by HEALPix range: memory vs stars",
                notes="Gaia photometry (G, BP-RP, BP/RP flux_over_error, parallax_error float32, parallax "
                      "float64: 36 bytes a star kept) in K files of contiguous HEALPix level-8 ranges; XP rows "
                      "= the stars in HEALPix order, 10% unknown, 65,536-row units. Each join in a fresh "
                      "interpreter, the imports done; peak RSS = VmHWM after the lookups - VmRSS before the "
                      "join. The lazy join reads each file once (units in HEALPix order) and holds at most its "
                      "cache; the eager one holds every star. Of the lazy rows' peak, ~40 MB at any size is "
                      "pyarrow's allocator (mimalloc, per reading thread) after its first Parquet reads.",
                quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
