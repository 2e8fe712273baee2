"""Gaia XP_CONTINUOUS text parsing: lamfast's C++ reader vs astropy's, same files.

An archive-like file is synthesised by replicating real archive rows (from the shared
realdata folder when present, else random rows) with perturbed values and fresh
source_ids, written as CSV ("(v1, v2, ...)" arrays) and ECSV ("[v1,v2,...]" arrays),
plain and gzipped, into a temporary folder. Each task is timed for every reader on the
same file in this one process; ratios are astropy time / lamfast time.

Last, the archive's bulk layout: 8 gzipped ECSV files read file by file (astropy) and
several at a time (lamfast.io.read_xp_continuous_many).

Tasks:
  coefficients  source_id, BP/RP coefficients, errors, n_relevant_bases, std
                (astropy: include_names with the same columns)
  all arrays    the above plus the two [1485] correlation arrays
astropy parses ECSV arrays itself; for CSV it returns the array cells as strings, so its
time includes numpy parsing them (np.fromstring), the least a user must add.

    python -m benchmarks.bench_io [--quick] [--rows N] [--threads T]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lamfast
from lamfast.io import read_xp_continuous, read_xp_continuous_many
from lamfast.io import text_table

from .common import write_table

ROOT = Path(__file__).resolve().parents[1]

COEFFICIENT_COLUMNS = ["source_id"] + [f"{b}_{c}" for b in ("bp", "rp") for c in (
    "coefficients", "coefficient_errors", "n_relevant_bases", "standard_deviation")]
ARRAY_COLUMNS = [f"{b}_{c}" for b in ("bp", "rp") for c in (
    "coefficients", "coefficient_errors", "coefficient_correlations")]


# ---- the synthetic archive file -----------------------------------------------------------

def _real_rows(fmt: str):
    """(header text incl. names line, list of cell lists) of real archive rows, or None."""
    data = Path(os.environ.get("LAMFAST_REALDATA", ROOT.parent / "shared" / "realdata"))
    src = data / "gaiaxpy_tests" / f"XP_CONTINUOUS_RAW.{fmt}"
    if not src.is_file():
        return None
    lines = src.read_text().splitlines(keepends=True)
    n_head = next(i for i, ln in enumerate(lines) if not ln.startswith("#")) + 1
    rows = list(csv.reader(io.StringIO("".join(lines[n_head:]))))
    return "".join(lines[:n_head]), [r for r in rows if r]


def _random_rows(fmt: str, rng):
    from lamfast.io import XpContinuous, write_xp_continuous

    n = 4
    coef = lambda: rng.normal(size=(n, 55)) * 10.0 ** rng.uniform(0, 5, (n, 1))  # noqa: E731
    f32 = lambda *s: rng.uniform(0.01, 1, s).astype(np.float32)  # noqa: E731
    xp = XpContinuous(rng.integers(1, 2**62, n), coef(), coef(), f32(n, 55), f32(n, 55),
                      np.full(n, 55, np.int32), np.full(n, 55, np.int32), f32(n), f32(n),
                      f32(n, 1485), f32(n, 1485))
    with tempfile.TemporaryDirectory() as d:
        write_xp_continuous(xp, Path(d) / f"x.{fmt}")
        text = (Path(d) / f"x.{fmt}").read_text()
    lines = text.splitlines(keepends=True)
    n_head = next(i for i, ln in enumerate(lines) if not ln.startswith("#")) + 1
    return "".join(lines[:n_head]), list(csv.reader(io.StringIO("".join(lines[n_head:]))))


def _perturb(cell: str, rng, float64: bool) -> str:
    """The same array cell with every value scaled by (1 + 1e-3 N(0,1)), in the file's
    style: "(v, v, ...)" or "[v,v,...]"; float32 columns keep float32 precision."""
    s = cell.strip()
    if not s:
        return cell
    open_, close = s[0], s[-1]
    values = np.array(s[1:-1].split(","), dtype=np.float64)
    values = values * (1 + 1e-3 * rng.normal(size=values.size))
    sep = ", " if open_ == "(" else ","
    items = ([repr(float(v)) for v in values] if float64
             else [str(np.float32(v)) for v in values])
    return open_ + sep.join(items) + close


def build_file(fmt: str, rows: int, folder: Path, rng, pool: int = 32,
               name: str = "xp_continuous") -> tuple[Path, str]:
    """Write ``rows`` archive-like rows; returns (path, where the rows came from)."""
    real = _real_rows(fmt)
    header, base = real if real else _random_rows(fmt, rng)
    names = next(csv.reader(io.StringIO(header.splitlines()[-1])))
    arrays = {i: n.endswith("coefficients") for i, n in enumerate(names) if n in ARRAY_COLUMNS}
    lines = []
    for p in range(pool):  # distinct perturbed rows, then replicated with new ids
        cells = list(base[p % len(base)])
        for i, float64 in arrays.items():
            cells[i] = _perturb(cells[i], rng, float64)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(cells)
        line = out.getvalue()
        lines.append(line[line.index(","):])  # everything after source_id
    ids = rng.choice(2**62, size=rows, replace=False)
    path = folder / f"{name}.{fmt}"
    with open(path, "w") as f:
        f.write(header)
        f.writelines(f"{ids[i]}{lines[i % pool]}" for i in range(rows))
    return path, "real archive rows (perturbed)" if real else "random rows"


def gzip_copy(path: Path) -> Path:
    # Level 1 keeps setup short; inflate speed hardly depends on the level.
    out = path.with_name(path.name + ".gz")
    with open(path, "rb") as f, gzip.open(out, "wb", compresslevel=1) as g:
        while block := f.read(16 << 20):
            g.write(block)
    return out


# ---- readers --------------------------------------------------------------------------------

def read_lamfast(path, correlations, threads, backend):
    text_table.set_gzip_backend(backend)
    try:
        xp = read_xp_continuous(path, correlations=correlations, threads=threads)
    finally:
        text_table.set_gzip_backend(None)
    return len(xp)


def read_lamfast_many(paths, correlations, threads, workers):
    return len(read_xp_continuous_many(paths, correlations=correlations, threads=threads,
                                       workers=workers))


def read_astropy_many(paths, fmt, correlations):
    return sum(read_astropy(p, fmt, correlations) for p in paths)


def read_astropy(path, fmt, correlations):
    from astropy.table import Table

    names = COEFFICIENT_COLUMNS + ([f"{b}_coefficient_correlations" for b in ("bp", "rp")]
                                   if correlations else [])
    t = Table.read(path, format=f"ascii.{fmt}", include_names=names)
    if fmt == "csv":  # array cells are strings: parse them as a user must
        for name in names:
            if name in ARRAY_COLUMNS:
                np.stack([np.fromstring(str(s).strip()[1:-1], sep=",") for s in t[name]])
    return len(t)


def _time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small file, one pass (< 1 min)")
    parser.add_argument("--rows", type=int, default=None, help="rows per file (default 5000; quick 300)")
    parser.add_argument("--threads", type=int, default=None, help="lamfast threads (default: all)")
    parser.add_argument("--repeat", type=int, default=None, help="timings per lamfast case (median)")
    args = parser.parse_args(argv)
    rows = args.rows or (300 if args.quick else 5000)
    repeat = args.repeat or (1 if args.quick else 3)
    threads = args.threads or lamfast.get_num_threads()
    try:
        import isal  # noqa: F401
        backends = ["zlib", "isal"]
    except ImportError:
        backends = ["zlib"]

    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("ecsv", "csv"):
            # Warm-up on a small file: imports and first-call costs stay out of the timings.
            small, _ = build_file(fmt, 20, Path(tmp), rng)
            read_astropy(small, fmt, True)
            read_lamfast(small, True, threads, None)
            plain, source = build_file(fmt, rows, Path(tmp), rng)
            for path in (plain, gzip_copy(plain)):
                gz = path.suffix == ".gz"
                mb = path.stat().st_size / 1e6
                for correlations in (False, True):
                    task = "all arrays" if correlations else "coefficients"
                    t_ref, n = _time(lambda: read_astropy(path, fmt, correlations), 1)
                    assert n == rows
                    cases = [("astropy", t_ref)]
                    for backend in (backends if gz else ["zlib"]):
                        label = f"lamfast ({threads} thr{', ' + backend if gz else ''})"
                        t, n = _time(lambda: read_lamfast(path, correlations, threads, backend),
                                     repeat)
                        assert n == rows
                        cases.append((label, t))
                    for reader, t in cases:
                        results.append({"file": path.name, "MB": round(mb, 1), "task": task,
                                        "reader": reader, "rows": rows, "seconds": round(t, 4),
                                        "rows_per_s": round(rows / t),
                                        "speedup_vs_astropy": round(t_ref / t, 1)})
                        print(f"{path.name:24s} {task:13s} {reader:28s} {t:8.3f} s "
                              f"{rows / t:10.0f} rows/s  x{t_ref / t:6.1f}", flush=True)
        source_note = source

        # The archive's bulk export: many gzipped ECSV files, read one after another by
        # astropy, several at a time by lamfast (one gzip stream cannot be split).
        n_files = 8
        per = max(1, rows // n_files)
        bulk = [gzip_copy(build_file("ecsv", per, Path(tmp), rng, name=f"part{i}")[0])
                for i in range(n_files)]
        label = f"{n_files} x {bulk[0].name}"
        for correlations in (False, True):
            task = "all arrays" if correlations else "coefficients"
            t_ref, n = _time(lambda: read_astropy_many(bulk, "ecsv", correlations), 1)
            cases = [("astropy (file by file)", t_ref)]
            for workers in sorted({1, threads}):
                t, n = _time(lambda: read_lamfast_many(bulk, correlations, threads, workers),
                             repeat)
                assert n == per * n_files
                cases.append((f"lamfast ({threads} thr, {workers} file(s) at a time, "
                              f"{text_table.gzip_backend()})", t))
            for reader, t in cases:
                results.append({"file": label, "MB": round(sum(p.stat().st_size for p in bulk) / 1e6, 1),
                                "task": task, "reader": reader, "rows": per * n_files,
                                "seconds": round(t, 4), "rows_per_s": round(per * n_files / t),
                                "speedup_vs_astropy": round(t_ref / t, 1)})
                print(f"{label:24s} {task:13s} {reader:28s} {t:8.3f} s "
                      f"{per * n_files / t:10.0f} rows/s  x{t_ref / t:6.1f}", flush=True)

    import astropy

    write_table("io", results, title="XP archive text parsing: lamfast vs astropy",
                notes="Median of the lamfast timings; astropy timed once. Speedup = astropy "
                      "time / reader time on the same file and task. Timings on a shared, "
                      "noisy machine: read the ratios, not the absolute numbers.",
                quick=args.quick,
                extra_stamp={"threads": threads, "cpu_cores": os.cpu_count(),
                             "rows_from": source_note, "astropy": astropy.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
