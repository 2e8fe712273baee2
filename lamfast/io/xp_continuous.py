"""Gaia DR3 XP_CONTINUOUS in memory: :class:`XpContinuous` (archive units, as read by
:mod:`lamfast.io.xp_archive`), and :func:`xp_catalog`, its coefficients in the paper's gnorm
units as a :class:`~lamfast.io.Catalog` of model columns.

Units are fixed by the type, never guessed: an :class:`XpContinuous` holds the archive's
e-/s (``meta["xp_units"] == "flux"``), a Catalog from :func:`xp_catalog` gnorm
(``meta["xp_units"] == "gnorm"``). :func:`check_xp_continuous_scale` and
:func:`check_gnorm_scale` say so loudly where values read from a file disagree
(:mod:`lamfast.io.xp_units`).

Gaia data: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO.
"""

from __future__ import annotations

from collections.abc import Callable

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from .catalog import Catalog, join_rows
from .photometry import g_flux
from .xp_units import check_xp_scale

N_BASES = 55                                   # coefficients per band (DR3)
N_CORRELATIONS = N_BASES * (N_BASES - 1) // 2  # 1485, np.tril_indices(55, -1) order
BANDS = ("bp", "rp")


@dataclass
class XpContinuous:
    """N stars of Gaia XP_CONTINUOUS, archive units (e-/s per basis function).

    A missing band (empty fields) is NaN with n_relevant_bases = -1; so is a column the
    file lacks. Where ``blank_irrelevant`` was set, coefficients (and their errors) at
    index >= n_relevant_bases are NaN.
    """

    source_id: np.ndarray               # int64 [N]
    bp_coefficients: np.ndarray         # float64 [N, 55]
    rp_coefficients: np.ndarray         # float64 [N, 55]
    bp_coefficient_errors: np.ndarray   # float32 [N, 55]
    rp_coefficient_errors: np.ndarray   # float32 [N, 55]
    bp_n_relevant_bases: np.ndarray     # int32 [N], -1 = unknown
    rp_n_relevant_bases: np.ndarray     # int32 [N]
    bp_standard_deviation: np.ndarray   # float32 [N]
    rp_standard_deviation: np.ndarray   # float32 [N]
    bp_coefficient_correlations: np.ndarray | None = None  # float32 [N, 1485] or None
    rp_coefficient_correlations: np.ndarray | None = None
    extra: dict = field(default_factory=dict)  # name -> float64 [N] (extra_columns)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source_id)

    @property
    def coefficients(self) -> np.ndarray:
        """float64 [N, 110]: BP 0-54 then RP 0-54 (the paper's order)."""
        return np.concatenate([self.bp_coefficients, self.rp_coefficients], axis=1)

    @property
    def coefficient_errors(self) -> np.ndarray:
        """float32 [N, 110]."""
        return np.concatenate([self.bp_coefficient_errors, self.rp_coefficient_errors], axis=1)

    def covariance(self, band: str) -> np.ndarray:
        """float64 [N, 55, 55] covariance of one band's coefficients from the errors and
        the lower-triangle correlations (read with ``correlations=True``)."""
        corr = getattr(self, f"{_check_band(band)}_coefficient_correlations")
        if corr is None:
            raise ValueError("correlations were not read: use correlations=True")
        err = getattr(self, f"{band}_coefficient_errors").astype(np.float64)
        rho = np.zeros((len(self), N_BASES, N_BASES))
        lo = np.tril_indices(N_BASES, -1)
        rho[:, lo[0], lo[1]] = corr
        rho = rho + rho.transpose(0, 2, 1)
        rho[:, np.arange(N_BASES), np.arange(N_BASES)] = 1.0
        return rho * err[:, :, None] * err[:, None, :]

    def blank_irrelevant(self) -> None:
        """Set coefficients and errors at index >= n_relevant_bases to NaN (in place)."""
        for band in BANDS:
            n_rel = getattr(self, f"{band}_n_relevant_bases")
            mask = (np.arange(N_BASES)[None, :] >= n_rel[:, None]) & (n_rel[:, None] >= 0)
            getattr(self, f"{band}_coefficients")[mask] = np.nan
            getattr(self, f"{band}_coefficient_errors")[mask] = np.nan

    @classmethod
    def concatenate(cls, parts: Sequence[XpContinuous], meta: dict | None = None) -> XpContinuous:
        """Stars of several results, in order (e.g. one per archive file)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        kw = {}
        for f in fields(cls):
            if f.name in ("extra", "meta"):
                continue
            arrays = [getattr(p, f.name) for p in parts]
            if any(a is None for a in arrays):
                if not all(a is None for a in arrays):
                    raise ValueError(f"{f.name} present in some parts only")
                kw[f.name] = None
            else:
                kw[f.name] = np.concatenate(arrays)
        names = list(parts[0].extra)
        if any(list(p.extra) != names for p in parts):
            raise ValueError("parts have different extra columns")
        kw["extra"] = {k: np.concatenate([p.extra[k] for p in parts]) for k in names}
        return cls(**kw, meta=dict(meta if meta is not None else parts[0].meta))


def _check_band(band: str) -> str:
    if band not in BANDS:
        raise ValueError(f"band must be 'bp' or 'rp', got {band!r}")
    return band


# ---- to the model's columns ------------------------------------------------------------

def xp_token_names(n: int = N_BASES) -> list[str]:
    """bp0..bp{n-1}, rp0..rp{n-1}."""
    return [f"{b}{i}" for b in BANDS for i in range(n)]


def xp_catalog(xp: XpContinuous, g_mag=None, *, photometry: Catalog | Callable[[np.ndarray], Catalog] | None = None,
               n_coefficients: int = N_BASES) -> Catalog:
    """XP coefficients in the paper's gnorm units (divided by the G flux in e-/s) as a
    :class:`Catalog` with columns bp0..bp{n-1}, rp0..rp{n-1}.

    Parameters
    ----------
    xp : the archive rows.
    g_mag : float [N], optional
        phot_g_mean_mag [mag] per row of ``xp``. Default: ``photometry``'s (its
        ``extra["phot_g_mean_mag"]``) where it has one, else ``xp.extra["phot_g_mean_mag"]``.
    photometry : Catalog, optional
        E.g. from :func:`lamfast.io.gaia_photometry.gaia_photometry`; joined on
        source_id (stars it lacks get NaN), its token columns and extras appended. Or a
        callable that gets the rows' source_id (int64 [N]) and returns their photometry
        row by row (:meth:`lamfast.io.photometry_join.PhotometryJoin.lookup`: no second join).
    n_coefficients : keep the first n coefficients per band (the paper: 55; its
        headline inputs use 30).

    A star without G gets NaN coefficients (missing), never a wrong scale.
    """
    if not 1 <= n_coefficients <= N_BASES:
        raise ValueError(f"n_coefficients must be in 1..{N_BASES}, got {n_coefficients}")
    n = len(xp)
    joined = None
    if photometry is not None:
        joined = photometry(xp.source_id) if callable(photometry) else join_rows(photometry, xp.source_id)
    if g_mag is None:
        theirs = joined.extra.get("phot_g_mean_mag") if joined is not None else None
        own = xp.extra.get("phot_g_mean_mag")
        if theirs is not None and own is not None:   # the photometry's G where it has the star
            g_mag = np.where(np.isnan(np.asarray(theirs, np.float64)), np.asarray(own, np.float64), theirs)
        elif theirs is not None or own is not None:
            g_mag = theirs if theirs is not None else own
        else:
            raise ValueError("XP coefficients in gnorm units need each star's G magnitude "
                             "(phot_g_mean_mag), found neither in the XP rows nor in photometry=: "
                             "add a phot_g_mean_mag column to the file (the only way for `lamfast "
                             "label`), or in Python pass read_catalog(path, photometry=...) Gaia "
                             "photometry of the stars (a table or file with source_id, "
                             "phot_g_mean_mag and e.g. phot_bp_mean_mag, phot_rp_mean_mag; or a "
                             "Catalog from gaia_photometry) or call xp_catalog(xp, g_mag=...)")
    g_mag = np.asarray(g_mag, dtype=np.float64)
    if g_mag.shape != (n,):
        raise ValueError(f"g_mag must have shape ({n},), got {g_mag.shape}")
    scale = (1.0 / g_flux(g_mag))[:, None]  # NaN G -> NaN coefficients
    k = n_coefficients
    width = 2 * k + (len(joined.columns) if joined is not None else 0)
    # Each product in float64, rounded once to float32 as it is stored: the same values as
    # (a.astype(float64) * scale).astype(float32), without the [N, 2k] float64 temporaries;
    # written into the final [N, 2k + photometry tokens] tables (no concatenation after).
    values = np.empty((n, width), np.float32)
    errors = np.empty((n, width), np.float32)
    for half, band in enumerate(BANDS):
        at = slice(half * k, (half + 1) * k)
        np.multiply(getattr(xp, f"{band}_coefficients")[:, :k], scale, out=values[:, at],
                    dtype=np.float64, casting="same_kind")
        np.multiply(getattr(xp, f"{band}_coefficient_errors")[:, :k], scale, out=errors[:, at],
                    dtype=np.float64, casting="same_kind")
    columns = xp_token_names(k)
    extra = {"phot_g_mean_mag": g_mag,
             "bp_n_relevant_bases": xp.bp_n_relevant_bases,
             "rp_n_relevant_bases": xp.rp_n_relevant_bases,
             "bp_standard_deviation": xp.bp_standard_deviation,
             "rp_standard_deviation": xp.rp_standard_deviation, **xp.extra}
    meta = {**xp.meta, "xp_units": "gnorm"}
    if joined is not None:
        columns += joined.columns
        values[:, 2 * k:] = joined.values
        errors[:, 2 * k:] = joined.errors
        extra.update(joined.extra)
        extra["phot_g_mean_mag"] = g_mag   # the G that gnormed the rows, not the photometry's alone
        meta["photometry"] = joined.meta
    return Catalog(columns, values, errors, xp.source_id.copy(), meta, extra)


def check_xp_continuous_scale(xp: XpContinuous) -> None:
    """ValueError (naming the file of ``xp.meta["path"]`` and the column) if bp0 or rp0 of
    these archive rows are not on the scale of e-/s, e.g. gnorm values written into an
    archive-format file, which :func:`xp_catalog` would divide by the G flux once more."""
    where = xp.meta.get("path", "XP_CONTINUOUS rows")
    for band in BANDS:
        check_xp_scale(getattr(xp, f"{band}_coefficients")[:, 0], "flux",
                       f"{where}: column '{band}_coefficients'", f"{band}0",
                       "the Gaia archive's XP_CONTINUOUS (CSV, ECSV, FITS, VOTable) holds e-/s",
                       "Coefficients already in gnorm units go to lamfast in Parquet "
                       "(lamfast.io.write_parquet, which declares them) or the paper's HDF5 layout.")


def check_gnorm_scale(catalog: Catalog, where: str) -> None:
    """ValueError if bp0 or rp0 of ``catalog`` (just gnormed from the archive's e-/s with
    phot_g_mean_mag) are not on the gnorm scale: a G that is not Gaia's G magnitude."""
    for token in ("bp0", "rp0"):
        if token in catalog.columns:
            check_xp_scale(catalog.column(token), "gnorm", f"{where}: column {token!r}", token,
                           "they were divided by the G flux from phot_g_mean_mag",
                           "phot_g_mean_mag must be each star's Gaia G magnitude [mag] "
                           "(a flux or another band gives this).")
