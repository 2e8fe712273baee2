"""Gaia DR3 / 2MASS photometry columns -> the paper's scalar tokens (bprp, jh, jk,
g_fakemag) with errors, as a :class:`Catalog`; the raw photometry rides in ``extra``."""

from __future__ import annotations

import numpy as np

from .catalog import Catalog
from .photometry import g_fakemag

# d(mag) = 2.5 / ln(10) * d(flux) / flux
_MAG_PER_RELATIVE_FLUX = 2.5 / np.log(10.0)

# Carried in Catalog.extra when present.
GAIA_EXTRA = ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag", "bp_rp",
              "phot_g_mean_flux_over_error", "phot_bp_mean_flux_over_error",
              "phot_rp_mean_flux_over_error", "parallax", "parallax_error", "ruwe")


def _column(table, name: str | None, n: int) -> np.ndarray | None:
    """float64 [n] of a column (masked -> NaN), or None if absent."""
    if name is None:
        return None
    try:
        col = table[name]
    except (KeyError, ValueError, IndexError):
        return None
    a = np.ma.asarray(col, dtype=np.float64).filled(np.nan)
    if a.shape != (n,):
        raise ValueError(f"column {name!r} has shape {a.shape}, expected ({n},)")
    return np.asarray(a)


def _names(table) -> set:
    for attr in ("colnames", "columns", "keys"):
        names = getattr(table, attr, None)
        if names is not None:
            return set(names() if callable(names) else names)
    if getattr(table, "dtype", None) is not None and table.dtype.names:
        return set(table.dtype.names)
    raise TypeError(f"cannot list the columns of a {type(table).__name__}")


def gaia_photometry(table, *, source_id: str = "source_id",
                    tmass: tuple[str, str, str] = ("j_m", "h_m", "ks_m"),
                    tmass_errors: tuple[str, str, str] = ("j_msigcom", "h_msigcom",
                                                          "ks_msigcom"),
                    need_tokens: bool = True) -> Catalog:
    """Scalar tokens from Gaia DR3 (gaia_source) and 2MASS columns.

    Parameters
    ----------
    table : anything indexable by column name with [N] columns (dict of arrays,
        astropy Table, numpy structured array, pandas DataFrame). Gaia names:
        ``source_id``, ``phot_{g,bp,rp}_mean_mag`` [mag], ``bp_rp`` [mag],
        ``phot_{bp,rp}_mean_flux_over_error``, ``parallax`` [mas], ``parallax_error``,
        ``ruwe``; 2MASS magnitudes and errors named by ``tmass`` / ``tmass_errors``
        (the archive's tmass_psc_xsc names by default). Masked cells count as missing.
    need_tokens : False: a table from which no token can be built (e.g. only
        phot_g_mean_mag, for gnorm) gives a Catalog of no token columns instead of an error.

    Returns
    -------
    Catalog
        Token columns, each present when its inputs are:
        ``bprp`` = BP - RP [mag] (``phot_bp_mean_mag - phot_rp_mean_mag`` where both are
        given, else the archive's ``bp_rp``), error from the flux_over_error columns;
        ``jh`` = J - H, ``jk`` = J - Ks [mag], errors added in quadrature;
        ``g_fakemag`` = parallax [mas] * 10**(0.2 G), error parallax_error * 10**(0.2 G).
        ``extra`` holds every column of :data:`GAIA_EXTRA` present.

    Raises
    ------
    ValueError
        No ``source_id`` column, or none of the token inputs (unless not ``need_tokens``).
    """
    names = _names(table)
    if source_id not in names:
        raise ValueError(f"photometry table has no {source_id!r} column")
    ids = np.asarray(np.ma.asarray(table[source_id]).filled(-1), dtype=np.int64)
    n = len(ids)
    col = {name: _column(table, name, n) for name in GAIA_EXTRA if name in names}
    tokens: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    nan = np.full(n, np.nan)

    bprp = _colour(col.get("phot_bp_mean_mag"), col.get("phot_rp_mean_mag"), col.get("bp_rp"))
    if bprp is not None:
        s_bp = _mag_error(col.get("phot_bp_mean_flux_over_error"), nan)
        s_rp = _mag_error(col.get("phot_rp_mean_flux_over_error"), nan)
        tokens["bprp"] = (bprp, np.hypot(s_bp, s_rp))

    mags = [_column(table, c, n) if c in names else None for c in tmass]
    errs = [_column(table, c, n) if c in names else None for c in tmass_errors]
    j, h, k = mags
    s_j, s_h, s_k = (e if e is not None else nan for e in errs)
    if j is not None and h is not None:
        tokens["jh"] = (j - h, np.hypot(s_j, s_h))
    if j is not None and k is not None:
        tokens["jk"] = (j - k, np.hypot(s_j, s_k))

    g, plx = col.get("phot_g_mean_mag"), col.get("parallax")
    if g is not None and plx is not None:
        plx_err = col.get("parallax_error")
        scale = 10.0 ** (0.2 * g)
        tokens["g_fakemag"] = (g_fakemag(plx, g), (plx_err if plx_err is not None else nan) * scale)

    if not tokens and need_tokens:
        raise ValueError("no photometric token can be built: need phot_bp/rp_mean_mag or bp_rp, "
                         f"2MASS {tmass}, or phot_g_mean_mag with parallax")
    columns = list(tokens)
    values, errors = (np.empty((n, len(columns)), np.float32) for _ in range(2))
    for i, c in enumerate(columns):
        values[:, i], errors[:, i] = tokens[c]
    for name, a in zip(tmass + tmass_errors, mags + errs):
        if a is not None:
            col[name] = a
    meta = {"photometry": "Gaia DR3 + 2MASS", "units": "mag; g_fakemag: mas * 10**(0.2 G)"}
    return Catalog(columns, values, errors, ids, meta, col)


def _colour(bp: np.ndarray | None, rp: np.ndarray | None, bp_rp: np.ndarray | None) -> np.ndarray | None:
    """BP - RP [N] from the magnitudes where both are given, else the archive's bp_rp."""
    if bp is None or rp is None:
        return bp_rp
    if bp_rp is None:
        return bp - rp
    both = bp - rp
    return np.where(np.isnan(both), bp_rp, both)


def _mag_error(flux_over_error: np.ndarray | None, nan: np.ndarray) -> np.ndarray:
    if flux_over_error is None:
        return nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux_over_error > 0, _MAG_PER_RELATIVE_FLUX / flux_over_error, np.nan)
