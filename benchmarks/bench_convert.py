"""``lamfast data convert`` (archive XP_CONTINUOUS CSV.gz -> the gnorm Parquet labelling
reads) vs astropy reading the same files and doing the same gnorm work in numpy.

Files: N gzipped archive CSV files ("(v1, v2, ...)" arrays, no correlation columns; and
the same files plain, to show what inflating gzip costs) of
the real archive rows in the shared realdata folder (else random rows), perturbed into a
pool of 64 distinct rows (written by :func:`lamfast.io.write_xp_continuous`) replicated
with fresh source_ids; one Parquet photometry file (G, BP-RP, 2MASS J/H/Ks) of all stars.

- lamfast: :func:`lamfast.data.convert.convert` (photometry loaded and sorted, every file
  parsed, joined, gnormed and *written* to Parquet atomically), files ``threads`` at once.
- astropy: the photometry table read once and sorted; each file ``Table.read``
  (ascii.csv, the coefficient columns) with its array cells parsed by ``np.fromstring``
  (astropy returns them as strings), coefficients beyond n_relevant_bases blanked, G
  joined by ``np.searchsorted``, divided by the G flux, BP-RP/J-H/J-K taken: the same
  arrays, held in memory (no file written). The two results are checked to agree.

    python -m benchmarks.bench_convert [--quick] [--stars 20000] [--files 8] [--threads T] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import lamfast
from lamfast.io import XpContinuous, read_parquet, read_xp_continuous, write_xp_continuous
from lamfast.io.photometry import G_ZERO_POINT, g_flux

from .common import write_table

ROOT = Path(__file__).resolve().parents[1]
POOL = 64
COLUMNS = ["source_id"] + [f"{b}_{c}" for b in ("bp", "rp")
                           for c in ("coefficients", "coefficient_errors", "n_relevant_bases")]


def _base_rows(rng) -> tuple[XpContinuous, str]:
    """Archive rows to perturb: the realdata folder's, else random ones."""
    data = Path(os.environ.get("LAMFAST_REALDATA", ROOT.parent / "shared" / "realdata"))
    src = data / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.csv"
    if src.is_file():
        return read_xp_continuous(src, blank_irrelevant=False), "real archive rows (perturbed)"
    n = 4
    coef = lambda: rng.normal(size=(n, 55)) * 10.0 ** rng.uniform(3, 5, (n, 1))  # noqa: E731
    f32 = lambda *s: rng.uniform(0.01, 1, s).astype(np.float32)  # noqa: E731
    return XpContinuous(rng.integers(1, 2**62, n), coef(), coef(), f32(n, 55), f32(n, 55),
                        np.full(n, 55, np.int32), np.full(n, 50, np.int32), f32(n), f32(n)), "random rows"


def build_files(folder: Path, stars: int, files: int, rng) -> tuple[dict, Path, str]:
    """({"csv.gz": XP files, "csv": the same plain}, photometry Parquet, where the rows came from)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base, source = _base_rows(rng)
    k = np.arange(POOL) % len(base)
    noise = lambda a: a[k] * (1 + 1e-3 * rng.normal(size=a[k].shape)).astype(a.dtype)  # noqa: E731
    pool = XpContinuous(np.arange(POOL, dtype=np.int64), noise(base.bp_coefficients), noise(base.rp_coefficients),
                        noise(base.bp_coefficient_errors), noise(base.rp_coefficient_errors),
                        base.bp_n_relevant_bases[k], base.rp_n_relevant_bases[k],
                        base.bp_standard_deviation[k], base.rp_standard_deviation[k])
    write_xp_continuous(pool, folder / "pool.csv")
    header, *lines = (folder / "pool.csv").read_text().splitlines(keepends=True)
    tails = [ln[ln.index(","):] for ln in lines]   # all after source_id
    ids = rng.choice(2**62, stars, replace=False).astype(np.int64)
    paths = {"csv.gz": [], "csv": []}
    for f, part in enumerate(np.array_split(np.arange(stars), files)):
        text = header + "".join(f"{ids[i]}{tails[i % POOL]}" for i in part)
        for ext, opener in (("csv.gz", lambda p: gzip.open(p, "wt", compresslevel=6)),   # the archive's level
                            ("csv", lambda p: open(p, "w"))):
            (folder / ext).mkdir(exist_ok=True)
            path = folder / ext / f"XP_CONTINUOUS_{f:03d}.{ext}"
            with opener(path) as out:
                out.write(text)
            paths[ext].append(path)
    first = np.fmax(pool.bp_coefficients[:, 0], pool.rp_coefficients[:, 0])[np.arange(stars) % POOL]
    g = (G_ZERO_POINT - 2.5 * np.log10(first / 0.1) + rng.uniform(-0.1, 0.1, stars)).astype(np.float32)
    f32 = lambda lo, hi: rng.uniform(lo, hi, stars).astype(np.float32)  # noqa: E731
    phot = {"source_id": ids, "phot_g_mean_mag": g, "bp_rp": f32(-0.3, 3),
            "j_m": g - f32(0.5, 2), "h_m": g - f32(1, 3), "ks_m": g - f32(1, 3.5),
            "j_msigcom": f32(0.01, 0.05), "h_msigcom": f32(0.01, 0.05), "ks_msigcom": f32(0.01, 0.05)}
    order = rng.permutation(stars)
    pq.write_table(pa.table({c: a[order] for c, a in phot.items()}), folder / "photometry.parquet")
    return paths, folder / "photometry.parquet", source


def run_lamfast(paths, photometry, out: Path, threads: int) -> int:
    from lamfast.data.convert import convert

    return convert(paths, out, photometry=[photometry], threads=threads, overwrite=True, progress=False).stars


def run_astropy(paths, photometry) -> list[dict]:
    """The same gnorm arrays through astropy + numpy, file by file (see the module doc)."""
    from astropy.table import Table

    phot = Table.read(photometry)
    order = np.argsort(phot["source_id"])
    sid = np.asarray(phot["source_id"])[order]
    cols = {c: np.asarray(phot[c], np.float64)[order] for c in ("phot_g_mean_mag", "bp_rp", "j_m", "h_m", "ks_m")}
    out = []
    for path in paths:
        t = Table.read(path, format="ascii.csv", include_names=COLUMNS)
        row = np.searchsorted(sid, np.asarray(t["source_id"]))   # every star has photometry here
        scale = 1.0 / g_flux(cols["phot_g_mean_mag"][row])
        res = {"source_id": np.asarray(t["source_id"])}
        for band in ("bp", "rp"):
            n_rel = np.asarray(t[f"{band}_n_relevant_bases"])
            beyond = np.arange(55)[None, :] >= n_rel[:, None]
            for what, dtype in (("coefficients", np.float64), ("coefficient_errors", np.float32)):
                a = np.stack([np.fromstring(str(s)[1:-1], sep=",") for s in t[f"{band}_{what}"]]).astype(dtype)
                a[beyond] = np.nan
                res[f"{band}_{what}"] = (a.astype(np.float64) * scale[:, None]).astype(np.float32)
        res.update(bprp=cols["bp_rp"][row], jh=cols["j_m"][row] - cols["h_m"][row],
                   jk=cols["j_m"][row] - cols["ks_m"][row])
        out.append(res)
    return out


def _check_same(paths, out: Path, ref: list[dict]) -> None:
    """lamfast's Parquet and astropy's arrays agree (coefficients bit for bit)."""
    from lamfast.data.convert import output_path

    for path, want in zip(paths, ref):
        cat = read_parquet(output_path(path, out))
        assert np.array_equal(cat.source_id, want["source_id"])
        bp = [cat.columns.index(f"bp{i}") for i in range(55)]
        assert np.array_equal(cat.values[:, bp], want["bp_coefficients"], equal_nan=True), path
        assert np.array_equal(cat.errors[:, bp], want["bp_coefficient_errors"], equal_nan=True), path
        for c in ("bprp", "jh", "jk"):
            assert np.allclose(cat.column(c), want[c], rtol=1e-6, atol=1e-6), (path, c)


def stage_runs(gz_paths, plain_paths, photometry, out: Path) -> dict:
    """One thread, one stage of the convert of every file each (what its time goes to):
    inflating the gzip text, parsing it (the same text plain, memory-mapped), the
    photometry join + gnorm, writing the Parquet; and the whole convert (its stages
    overlap: the next chunk is inflated while one is parsed)."""
    from lamfast.data.convert import COMPRESSION, convert
    from lamfast.io import write_parquet, xp_catalog
    from lamfast.io.photometry_join import PhotometryJoin
    from lamfast.io.text_table import read_header, stream_chunks
    from lamfast.io.xp_archive import CHUNK_BYTES

    join = PhotometryJoin([photometry])
    xps = [read_xp_continuous(p, threads=1) for p in plain_paths]
    cats = [xp_catalog(xp, photometry=lambda ids: _photometry(join, ids)) for xp in xps]

    def inflate():
        for p in gz_paths:
            for _ in stream_chunks(p, CHUNK_BYTES, read_header(p, "csv").header_bytes):
                pass

    def write():
        for i, cat in enumerate(cats):
            write_parquet(cat, out / f"stage_{i}.parquet", compression=COMPRESSION)

    return {"inflate (isal, stream_chunks)": inflate,
            "parse (C++ core, the plain text memory-mapped)": lambda: [read_xp_continuous(p, threads=1) for p in plain_paths],
            "photometry join + gnorm (xp_catalog)": lambda: [xp_catalog(xp, photometry=lambda ids: _photometry(join, ids))
                                                             for xp in xps],
            "write Parquet (snappy)": write,
            "whole convert (1 file at once; stages overlap)": lambda: convert(
                gz_paths, out / "whole", photometry=[photometry], threads=1, overwrite=True, progress=False)}


def _photometry(join, ids):
    from lamfast.io.gaia_photometry import gaia_photometry

    columns, _ = join.lookup(ids)
    return gaia_photometry({"source_id": ids, **columns}, need_tokens=False)


def _interleaved(runs: dict, rounds: int) -> dict:
    """name -> (median wall seconds, median CPU seconds of this process, all threads) over
    ``rounds`` rounds, each running every fn of ``runs`` once in turn: load that comes and
    goes on a shared machine falls on all of them alike."""
    samples = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0, _cpu_seconds() - c0))
    return {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for name, v in samples.items()}


def _cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 stars in 4 files, one pass")
    parser.add_argument("--stars", type=int, default=None, help="stars in all (default 20,000)")
    parser.add_argument("--files", type=int, default=None, help="archive files (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="files converted at once (default: cores)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (median; default 5)")
    args = parser.parse_args(argv)
    stars = args.stars or (2000 if args.quick else 20_000)
    files = args.files or (4 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 5)
    threads = args.threads or lamfast.get_num_threads()
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]   # other jobs on the cores: wall times stretch, CPU seconds less
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        by_ext, photometry, source = build_files(tmp, stars, files, rng)
        run_lamfast(by_ext["csv.gz"][:1], photometry, tmp / "warm", 1)   # imports and first calls out of the timings
        run_astropy(by_ext["csv.gz"][:1], photometry)
        rows = []
        for ext, paths in by_ext.items():
            base = {"input": f"{files} x .{ext}", "stars": stars, "MB": sum(p.stat().st_size for p in paths) / 1e6}
            ref = run_astropy(paths, photometry)
            runs = {"astropy": lambda paths=paths: run_astropy(paths, photometry)}
            for t in sorted({1, threads}):
                runs[t] = lambda t=t, paths=paths, out=tmp / ext / "out": run_lamfast(paths, photometry, out, t)
            timed = _interleaved(runs, repeats)
            t_astropy, cpu_astropy = timed.pop("astropy")
            rows.append({**base, "reader": "astropy Table.read + numpy gnorm (file by file)", "seconds": t_astropy,
                         "cpu_s": cpu_astropy, "stars_per_s": stars / t_astropy, "speedup_vs_astropy": 1.0,
                         "cpu_speedup": 1.0})
            for t, (sec, cpu) in timed.items():
                rows.append({**base, "reader": f"lamfast data convert ({t} file(s) at once, Parquet written)",
                             "seconds": sec, "cpu_s": cpu, "stars_per_s": stars / sec,
                             "speedup_vs_astropy": t_astropy / sec, "cpu_speedup": cpu_astropy / cpu})
            _check_same(paths, tmp / ext / "out", ref)
        stages = _interleaved(stage_runs(by_ext["csv.gz"], by_ext["csv"], photometry, tmp), repeats)
        load_end = os.getloadavg()[0]
    import astropy

    from lamfast.io.text_table import gzip_backend
    notes = ("Each file: archive CSV (gzipped, and the same plain) of source_id, BP/RP coefficients, errors, n_relevant_bases, "
             f"standard_deviation (no correlations). Medians of {repeats} rounds, each running astropy and every "
             "lamfast setting once in turn (load that comes and goes falls on all alike); "
             "cpu_s: CPU seconds of the process (all threads), cpu_speedup: astropy's over lamfast's (what a machine "
             "shared with other jobs shows best). lamfast also loads the photometry and writes the Parquet; astropy's "
             "arrays stay in memory. Both results checked equal. lamfast's first archive read sets glibc's malloc "
             "thresholds for the process (lamfast._malloc): astropy, run in the same process, has them too. "
             "A shared machine: read the ratios.")
    write_table("convert", rows, title="lamfast data convert vs astropy (archive CSV.gz -> gnorm)", notes=notes,
                quick=args.quick, extra_stamp={"threads": threads, "cpu_cores": os.cpu_count(), "load_avg_1min": f"{load:.1f} at start, {load_end:.1f} at end",
                                               "gzip": gzip_backend(),
                                               "rows_from": source, "astropy": astropy.__version__})
    whole_cpu = list(stages.values())[-1][1]
    write_table("convert_stages", [{"stage": name, "seconds": sec, "cpu_s": cpu, "cpu_share_of_whole": cpu / whole_cpu}
                                   for name, (sec, cpu) in stages.items()],
                title=f"lamfast data convert: where the time goes ({files} x .csv.gz, one thread per stage)",
                notes=(f"Each stage alone over all {files} files ({stars} stars), medians of {repeats} interleaved rounds "
                       "(benchmarks/bench_convert.py stage_runs). The whole convert overlaps inflating and parsing, runs the "
                       "parser on cores // files-at-once threads and adds what no stage holds (headers, blanking, scale "
                       "checks, records, thread hand-offs): compare the stages' CPU sum with its CPU."),
                quick=args.quick, extra_stamp={"cpu_cores": os.cpu_count(), "gzip": gzip_backend(),
                                               "load_avg_1min": f"{load:.1f} at start, {load_end:.1f} at end"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
