"""Sky cross-match: lamfast vs astropy (match_to_catalog_sky, search_around_sky) and
scipy's cKDTree on unit vectors, side by side in one process.

Catalogues are random on the whole sky (the DESIGN.md case: almost no pairs at 1") and,
optionally, a "pairs" sky where every row of catalogue 1 is a row of catalogue 2 moved by
~0.3" (every row matches). Each candidate does the whole job from degrees: index build,
query, separations. Time is the median over repeats (repeats interleaved across
candidates, so load on a shared machine hits all of them alike); peak memory is the
rise of the process's peak RSS during the first call (Linux /proc, includes C++ and
numpy allocations, excludes the input arrays).

    python -m benchmarks.bench_xmatch            # 1e6 x 1e6 and 1e7 x 1e6 at 1"
    python -m benchmarks.bench_xmatch --quick    # small sizes, < 1 min
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
import warnings

import numpy as np

from .common import usable_cores, write_table


# ------------------------------------------------------------------------------------
# candidates: each takes (ra1, dec1, ra2, dec2, radius_arcsec) and returns matched rows


def unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=1)


def lamfast_nearest(threads):
    def run(ra1, dec1, ra2, dec2, radius):
        from lamfast.xmatch import match

        return int((match(ra1, dec1, ra2, dec2, radius, threads=threads).idx2 >= 0).sum())
    return run


def lamfast_mode(mode):
    def run(ra1, dec1, ra2, dec2, radius):
        from lamfast.xmatch import match

        return len(match(ra1, dec1, ra2, dec2, radius, mode=mode).idx1)
    return run


def astropy_nearest(ra1, dec1, ra2, dec2, radius):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    _, sep, _ = c1.match_to_catalog_sky(c2)
    return int((sep.to_value(u.arcsec) <= radius).sum())


def astropy_around(ra1, dec1, ra2, dec2, radius):
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    return len(search_around_sky(c1, c2, radius * u.arcsec)[0])


def scipy_nearest(workers):
    def run(ra1, dec1, ra2, dec2, radius):
        from scipy.spatial import cKDTree

        chord = 2 * np.sin(np.radians(radius / 3600) / 2)
        d, _ = cKDTree(unit(ra2, dec2)).query(unit(ra1, dec1), distance_upper_bound=chord,
                                               workers=workers)
        found = np.isfinite(d)
        sep = np.full(len(d), np.nan)
        sep[found] = 2 * np.arcsin(d[found] / 2)  # what a user needs next
        return int(found.sum())
    return run


def candidates() -> dict:
    threads = usable_cores()
    c = {
        f"lamfast nearest ({threads} threads)": lamfast_nearest(threads),
        "lamfast nearest (1 thread)": lamfast_nearest(1),
        f"lamfast all ({threads} threads)": lamfast_mode("all"),
        f"lamfast best ({threads} threads)": lamfast_mode("best"),
        "scipy cKDTree query (1 worker)": scipy_nearest(1),
        f"scipy cKDTree query ({threads} workers)": scipy_nearest(-1),
        "astropy match_to_catalog_sky": astropy_nearest,
        "astropy search_around_sky": astropy_around,
    }
    return c


# ------------------------------------------------------------------------------------
# measurement


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM); False where that is not possible."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back first
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def sky(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def pairs_sky(n1: int, ra2, dec2, rng, offset_arcsec=0.3):
    """Catalogue 1 = distinct random rows of catalogue 2 moved by about offset_arcsec."""
    from lamfast.xmatch import propagate

    rows = rng.choice(len(ra2), n1, replace=False)
    pm = rng.normal(0.0, offset_arcsec * 1000.0 / np.sqrt(2), (2, n1))  # mas per "year"
    return propagate(ra2[rows], dec2[rows], pm[0], pm[1], 0.0, 1.0)


def bench_case(label, n1, n2, radius, repeats, names, rng, pairs=False):
    ra2, dec2 = sky(n2, rng)
    ra1, dec1 = pairs_sky(n1, ra2, dec2, rng) if pairs else sky(n1, rng)
    cands = {k: v for k, v in candidates().items() if k in names}
    times = {k: [] for k in cands}
    peak = {}
    found = {}
    for r in range(repeats):
        for name, fn in cands.items():
            measured = r == 0 and _peak_rss_reset()
            before = _status_kib("VmRSS")
            t0 = time.perf_counter()
            found[name] = fn(ra1, dec1, ra2, dec2, radius)
            times[name].append(time.perf_counter() - t0)
            if measured:
                peak[name] = (_status_kib("VmHWM") - before) / 1024.0
    rows = []
    for name in cands:
        rows.append({"case": label, "n1": n1, "n2": n2, "radius_arcsec": radius,
                     "candidate": name, "median_s": statistics.median(times[name]),
                     "min_s": min(times[name]), "repeats": len(times[name]),
                     "peak_mib": peak.get(name, float("nan")), "matches": found[name]})
    return rows


def plan(quick: bool, full_astropy: bool):
    """(label, n1, n2, radius, repeats, candidate names) per case."""
    t = usable_cores()
    all_names = list(candidates())
    fast = [n for n in all_names if not n.startswith("astropy")]
    if quick:
        return [("random", 100_000, 100_000, 1.0, 3, all_names, False),
                ("random", 1_000_000, 100_000, 1.0, 3, fast, False),
                ("pairs", 100_000, 100_000, 1.0, 3, all_names, True)]
    big = all_names if full_astropy else [
        f"lamfast nearest ({t} threads)", "lamfast nearest (1 thread)",
        "scipy cKDTree query (1 worker)", f"scipy cKDTree query ({t} workers)"]
    return [("random", 1_000_000, 1_000_000, 1.0, 5, all_names, False),
            ("random", 10_000_000, 1_000_000, 1.0, 3, big, False),
            ("pairs", 1_000_000, 1_000_000, 1.0, 3, all_names, True)]


# ------------------------------------------------------------------------------------
# report


def with_ratio(rows) -> list[dict]:
    """rows plus x_lamfast: candidate time / lamfast nearest (all threads) time, same case."""
    case = lambda r: (r["case"], r["n1"], r["n2"], r["radius_arcsec"])  # noqa: E731
    ref = {case(r): r["median_s"] for r in rows
           if r["candidate"].startswith("lamfast nearest (") and "1 thread" not in r["candidate"]}
    return [{**r, "x_lamfast": r["median_s"] / ref[case(r)]} for r in rows]


def goals(rows) -> list[str]:
    """DESIGN.md section 7 goals, where this run has the rows to judge them."""
    def t(n1, n2, prefix, case="random"):
        found = [r["median_s"] for r in rows if (r["case"], r["n1"], r["n2"]) == (case, n1, n2)
                 and r["candidate"].startswith(prefix) and "1 thread" not in r["candidate"]]
        return found[0] if found else None

    lam = t(1_000_000, 1_000_000, "lamfast nearest (")
    astro = t(1_000_000, 1_000_000, "astropy match_to_catalog_sky")
    sci = t(1_000_000, 1_000_000, "scipy cKDTree query (1 worker)")
    big = t(10_000_000, 1_000_000, "lamfast nearest (")
    lines = []
    if lam and astro:
        lines.append(f"- 1e6 x 1e6: astropy match_to_catalog_sky / lamfast = {astro / lam:.1f}x "
                     "(goal >= 5x)")
    if lam and sci:
        lines.append(f"- 1e6 x 1e6: scipy cKDTree / lamfast = {sci / lam:.1f}x (goal >= 3x)")
    if big:
        lines.append(f"- 1e7 x 1e6: lamfast {big:.2f} s (goal < 3 s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    p.add_argument("--full-astropy", action="store_true",
                   help="also run astropy and the lamfast all/best modes at 1e7 x 1e6 (slow)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    rows = []
    for label, n1, n2, radius, repeats, names, pairs in plan(args.quick, args.full_astropy):
        print(f"{label}: {n1:,} x {n2:,} at {radius}\" ...", flush=True)
        rows += bench_case(label, n1, n2, radius, repeats, names, rng, pairs)
        for r in rows[-len(names):]:
            print(f"  {r['candidate']:<40} {r['median_s']:8.3f} s  peak {r['peak_mib']:7.0f} MiB"
                  f"  matches {r['matches']:,}", flush=True)
    import astropy
    import scipy

    notes = ("Time: median over repeats, each from degrees to matches (index build included). "
             "Peak: rise of peak RSS during the first call. Ratio x_lamfast: candidate time / "
             "lamfast nearest (all threads) time in the same case.")
    if goals(rows):
        notes += "\n\nGoals (DESIGN.md section 7):\n\n" + "\n".join(goals(rows))
    write_table("xmatch", with_ratio(rows), title="Sky cross-match: lamfast vs astropy and scipy",
                notes=notes, quick=args.quick,
                extra_stamp={"scipy": scipy.__version__, "astropy": astropy.__version__,
                             # above the core count: a shared, noisy machine
                             "load_avg_1min": f"{os.getloadavg()[0]:.1f}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
