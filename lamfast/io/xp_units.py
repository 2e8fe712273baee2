"""Units of XP coefficients in files: how they are declared, and a check that the values
agree with them.

Two units exist:

- ``"gnorm"``: each coefficient divided by the star's G-band flux in e-/s (the paper's
  and the model's inputs; the first coefficient of a band, bp0 or rp0, is of order
  1e-3..0.3);
- ``"flux"``: the Gaia archive's XP_CONTINUOUS values in e-/s, as every export of the
  archive has them (bp0, rp0 of order 1e1..1e7; 1e9 for the brightest stars).

Files lamfast writes say which they hold under the key :data:`XP_UNITS_KEY`
(``lamfast.xp_units``): in a Parquet file's schema (key-value) metadata, and as an
attribute of each coefficient dataset of the paper's HDF5 layout. The check
(:func:`check_xp_scale`) takes the median |first coefficient| over the rows of a chunk
that have one, zeros left out (robust to a few odd stars) and places it on either side of
:data:`UNITS_BOUNDARY`, between the two scales.
"""

from __future__ import annotations

import numpy as np

XP_UNITS_KEY = "lamfast.xp_units"
XP_UNITS = ("gnorm", "flux")
UNITS_BOUNDARY = 3.0   # |bp0|, |rp0|: gnorm below (<= ~0.3), the archive's e-/s above (>= ~20)
# Median |first coefficient| of a chunk outside both ranges: neither unit (e.g. divided by
# the G flux twice, or multiplied by it).
SCALE_RANGES = {"gnorm": (1e-5, UNITS_BOUNDARY), "flux": (UNITS_BOUNDARY, 1e10)}
DESCRIPTION = {"gnorm": "gnorm units (coefficient / G flux in e-/s; bp0, rp0 of order 1e-3..0.3)",
               "flux": "the Gaia archive's flux units (e-/s; bp0, rp0 of order 1e1..1e7)"}


def check_units_name(units, where: str) -> str:
    """``units`` if it is one of :data:`XP_UNITS` (bytes decoded), else ValueError."""
    if isinstance(units, bytes):
        units = units.decode("utf-8", "replace")
    if units not in XP_UNITS:
        raise ValueError(f"{where}: XP units {units!r} unknown; {XP_UNITS_KEY} must be one of "
                         f"{XP_UNITS} ('gnorm': divided by the G flux, 'flux': e-/s as in the Gaia archive)")
    return units


def scale_of(first) -> tuple[float, int]:
    """(median |x| over the non-zero values, how many) of a first-coefficient column [N];
    (nan, 0) where there is none. NaN (missing) and zeros are left out: a real first
    coefficient never is zero, and some writers fill missing bands with it; an infinity
    counts (off every scale)."""
    x = np.abs(np.asarray(first, dtype=np.float64))
    x = x[~np.isnan(x) & (x > 0)]
    return (float(np.median(x)) if x.size else float("nan")), int(x.size)


def scale_units(median: float) -> str | None:
    """The unit whose range holds ``median`` (None: neither)."""
    for units, (lo, hi) in SCALE_RANGES.items():
        if lo <= median < hi:
            return units
    return None


def check_xp_scale(first, units: str, where: str, token: str, why: str, fix: str) -> None:
    """ValueError if the values of a first coefficient contradict ``units``.

    Parameters
    ----------
    first : float [N], the chunk's values of ``token`` (bp0 or rp0); NaN = missing.
    units : the units the coefficients are taken to be in ("gnorm" or "flux").
    where : names the file and column, e.g. ``"a.parquet: column 'bp_coefficients'"``.
    why : why they are taken to be in ``units`` (declared, assumed, ...).
    fix : what to do if the values are right and ``units`` is wrong.
    """
    median, n = scale_of(first)
    if n == 0 or scale_units(median) == units:
        return
    seen = scale_units(median)
    looks = (f"the scale of {DESCRIPTION[seen]}" if seen else
             "neither the scale of gnorm units (1e-5..3) nor of the archive's e-/s (3..1e10)")
    raise ValueError(f"{where}: the median |{token}| over the {n} rows with a (non-zero) value is {median:.3g}, "
                     f"{looks}, but the coefficients are taken to be in {DESCRIPTION[units]}: {why}. {fix}")
