"""The arguments :mod:`.index` (C++) and :mod:`.reference` (numpy) share: catalogues given
as ``ra, dec`` or a SkyCoord, radius, mode, proper motions and epochs, checked and turned
into plain float64 arrays; and the result type :class:`Match`."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ._units import _epoch_years, _in_unit, _is_coord

MODES = ("nearest", "all", "best")
MAX_RADIUS_ARCSEC = 180.0 * 3600.0
_ARCSEC_PER_RAD = 180.0 * 3600.0 / np.pi
_MAS_TO_RAD = np.pi / (180.0 * 3.6e6)


class Match(NamedTuple):
    """Matched pairs: row ``idx1[m]`` of catalogue 1 with row ``idx2[m]`` of catalogue 2.

    Attributes
    ----------
    idx1 : int64 [M]
        Rows of catalogue 1 (ascending).
    idx2 : int64 [M]
        Rows of catalogue 2; -1 in ``nearest`` mode where no row lies within the radius.
    sep_arcsec : float64 [M]
        Separations in arcseconds (NaN where ``idx2`` is -1); plain numbers whatever the
        input units (``m.sep_arcsec * u.arcsec`` for a Quantity).
    """

    idx1: np.ndarray
    idx2: np.ndarray
    sep_arcsec: np.ndarray


class _Side(NamedTuple):
    """One catalogue's inputs in plain units, with the names errors quote."""

    ra: object
    dec: object
    pmra: object
    pmdec: object
    epoch: object
    names: tuple  # (ra, dec, pmra, pmdec, epoch)
    coord: str | None  # the coordinate argument's name when given as one
    coord_motion: bool  # the coordinate carries proper motions


def _side(pos: tuple, pmra, pmdec, epoch, s: str) -> _Side:
    """Catalogue ``s`` ("1", "2" or "") from ``(ra, dec)`` or ``(coord,)`` and keywords.

    A coordinate is converted to ICRS degrees; its proper motions (pm_ra_cosdec, pm_dec in
    ICRS) and ``obstime`` stand for ``pmra``, ``pmdec``, ``epoch``. Keywords fill what it
    lacks; proper motions given twice, or an epoch that disagrees with ``obstime``, raise.
    """
    if len(pos) == 2:
        return _Side(_in_unit(pos[0], "deg", f"ra{s}"), _in_unit(pos[1], "deg", f"dec{s}"),
                     _in_unit(pmra, "mas/yr", f"pmra{s}"), _in_unit(pmdec, "mas/yr", f"pmdec{s}"),
                     _epoch_years(epoch, f"epoch{s}"),
                     (f"ra{s}", f"dec{s}", f"pmra{s}", f"pmdec{s}", f"epoch{s}"), None, False)
    import astropy.units as u
    from astropy.coordinates import ICRS

    name = f"coord{s}"
    icrs = pos[0].transform_to(ICRS())
    ra, dec = icrs.ra.to_value(u.deg), icrs.dec.to_value(u.deg)
    names = [f"{name}.ra", f"{name}.dec", f"pmra{s}", f"pmdec{s}", f"epoch{s}"]
    diff = icrs.data.differentials.get("s")
    motion = diff is not None and set(diff.components) != {"d_distance"}  # not RV only
    if motion:
        if pmra is not None or pmdec is not None:
            raise ValueError(f"{name} carries proper motions and pmra{s}/pmdec{s} were given "
                             "too: give them once")
        pmra = _in_unit(icrs.pm_ra_cosdec, "mas/yr", f"{name}.pm_ra_cosdec")
        pmdec = _in_unit(icrs.pm_dec, "mas/yr", f"{name}.pm_dec")
        names[2:4] = [f"{name}.pm_ra_cosdec", f"{name}.pm_dec"]
    else:
        pmra = _in_unit(pmra, "mas/yr", f"pmra{s}")
        pmdec = _in_unit(pmdec, "mas/yr", f"pmdec{s}")
    epoch = _epoch_years(epoch, f"epoch{s}")
    obstime = getattr(pos[0], "obstime", None)
    if obstime is not None:
        years = _epoch_years(obstime, f"{name}.obstime")
        if epoch is not None and not np.array_equal(np.asarray(epoch, dtype=np.float64), years):
            raise ValueError(f"epoch{s} and {name}.obstime disagree: give the epoch once")
        epoch = years
        names[4] = f"{name}.obstime"
    elif motion and epoch is None:
        names[4] = f"{name}.obstime (or epoch{s}=)"
    return _Side(ra, dec, pmra, pmdec, epoch, tuple(names), name, motion)


def _split(fn: str, slots: list, n_sides: int, radius, radius_name: str = "radius_arcsec"):
    """Read ``slots`` (the leading positional parameters, in order) as ``n_sides``
    catalogues, each ``ra, dec`` or one coordinate, then the radius."""
    sides = []
    for s in (("1", "2") if n_sides == 2 else ("",)):
        if not slots or slots[0] is None:
            raise TypeError(f"{fn}() missing catalogue{' ' + s if s else ''}: ra{s}, dec{s} "
                            f"(degrees or Quantity) or a SkyCoord")
        if _is_coord(slots[0]):
            sides.append((slots[0],))
            slots = slots[1:]
        else:
            if len(slots) < 2 or slots[1] is None:
                raise TypeError(f"{fn}() missing dec{s}")
            if _is_coord(slots[1]):
                raise TypeError(f"{fn}(): give ra{s}, dec{s} as arrays or one SkyCoord, "
                                "not an array and a SkyCoord")
            sides.append((slots[0], slots[1]))
            slots = slots[2:]
    given = [x for x in slots if x is not None] + ([radius] if radius is not None else [])
    if not given:
        raise TypeError(f"{fn}() missing the match radius ({radius_name})")
    if len(given) > 1:
        raise TypeError(f"{fn}() got too many positional arguments (or the radius twice)")
    return sides, given[0]


def _warn_unused_motion(side2_coord: str | None, rows_moved: bool, epoch1, epoch2,
                        stacklevel: int) -> None:
    """Catalogue 2's proper motions are never applied (catalogue 1 is moved to catalogue 2's
    epoch instead): say so when they could have mattered."""
    if side2_coord is None or rows_moved:
        return
    e1 = None if epoch1 is None else np.asarray(epoch1, dtype=np.float64)
    if e1 is not None and epoch2 is not None and np.all(e1 == epoch2):
        return
    warnings.warn(f"{side2_coord} carries proper motions, which are not applied: catalogue 1 "
                  "is moved to catalogue 2's epoch with catalogue 1's own proper motions, "
                  "and catalogue 1 has none. Swap the catalogues, or move catalogue 2 first "
                  "(apply_space_motion), to use them.", UserWarning, stacklevel=stacklevel + 1)


# ------------------------------------------------------------------------------------
# Argument checks shared by the C++ path and the reference


def _coords(ra, dec, ra_name: str, dec_name: str) -> tuple[np.ndarray, np.ndarray]:
    ra = np.ascontiguousarray(_in_unit(ra, "deg", ra_name), dtype=np.float64)
    dec = np.ascontiguousarray(_in_unit(dec, "deg", dec_name), dtype=np.float64)
    for a, name in ((ra, ra_name), (dec, dec_name)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (degrees), got shape {a.shape}")
    if len(ra) != len(dec):
        raise ValueError(f"{ra_name} and {dec_name} differ in length ({len(ra)} vs {len(dec)})")
    return ra, dec


def _radius(radius_arcsec) -> float:
    r = float(_in_unit(radius_arcsec, "arcsec", "radius_arcsec"))
    if not (0.0 <= r <= MAX_RADIUS_ARCSEC):
        raise ValueError(f"radius_arcsec must be in [0, {MAX_RADIUS_ARCSEC:g}] arcsec, "
                         f"got {radius_arcsec!r}")
    return r


def _mode_k(mode: str, k) -> int:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k != 1 and mode != "nearest":
        raise ValueError(f"k applies to mode='nearest' only (got k={k} with mode={mode!r})")
    return int(k)


def _epoch_scalar(epoch, name: str) -> float | None:
    if epoch is None:
        return None
    e = np.asarray(_epoch_years(epoch, name), dtype=np.float64)
    if e.ndim != 0 or not np.isfinite(e):
        raise ValueError(f"{name} must be one finite epoch in years, got {epoch!r}")
    return float(e)


def _motion(n: int, pmra, pmdec, epoch, to_epoch: float | None, names: tuple[str, str, str],
            index_epoch_name: str):
    """(pmra, pmdec, dt) float64 arrays for the C++ core, or (None, None, None)."""
    pmra_name, pmdec_name, epoch_name = names
    if (pmra is None) != (pmdec is None):
        raise ValueError(f"{pmra_name} and {pmdec_name} go together")
    if pmra is None:
        return None, None, None
    if epoch is None or to_epoch is None:
        raise ValueError(f"proper motions need both {epoch_name} and {index_epoch_name} "
                         "(Julian years, e.g. 2016.0)")
    out = []
    for a, name in ((pmra, pmra_name), (pmdec, pmdec_name)):
        a = np.ascontiguousarray(_in_unit(a, "mas/yr", name), dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) like the coordinates, got {a.shape}")
        out.append(a)
    e = np.asarray(_epoch_years(epoch, epoch_name), dtype=np.float64)
    if e.ndim == 0:
        if not np.isfinite(e):
            raise ValueError(f"{epoch_name} must be finite, got {epoch!r}")
        dt = np.array([to_epoch - float(e)])
    elif e.shape == (n,):
        dt = np.ascontiguousarray(to_epoch - e)
    else:
        raise ValueError(f"{epoch_name} must be a scalar or have shape ({n},), got {e.shape}")
    return out[0], out[1], dt


class _Rows(NamedTuple):
    """Catalogue-1 rows as the C++ core takes them, and the caller's names for errors."""

    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray | None
    pmdec: np.ndarray | None
    dt: np.ndarray | None
    names: dict  # field -> (name the caller knows, values to quote)


def _rows(side: _Side, to_epoch, to_epoch_name: str) -> _Rows:
    ra_name, dec_name, pmra_name, pmdec_name, epoch_name = side.names
    ra, dec = _coords(side.ra, side.dec, ra_name, dec_name)
    if side.coord_motion and (side.epoch is None or to_epoch is None):
        c = side.coord
        raise ValueError(f"{c} carries proper motions, which need both {epoch_name} and "
                         f"{to_epoch_name} (Julian years or Time); to match the positions as "
                         f"given, drop them: {c}.realize_frame({c}.data.without_differentials())")
    pmra, pmdec, dt = _motion(len(ra), side.pmra, side.pmdec, side.epoch, to_epoch,
                              (pmra_name, pmdec_name, epoch_name), to_epoch_name)
    return _Rows(ra, dec, pmra, pmdec, dt, {
        "ra": (ra_name, ra), "dec": (dec_name, dec), "pmra": (pmra_name, pmra),
        "pmdec": (pmdec_name, pmdec), "epoch": (epoch_name, side.epoch)})


class _MatchInputs(NamedTuple):
    rows: _Rows  # catalogue 1
    ra2: np.ndarray
    dec2: np.ndarray
    epoch2: float | None
    names2: tuple  # (ra2, dec2, epoch2) as the caller knows them
    radius: float  # arcsec
    k: int


def _match_inputs(fn, ra1, dec1, ra2, dec2, radius_arcsec, mode, k, pmra1, pmdec1, epoch1,
                  epoch2, stacklevel: int = 3) -> _MatchInputs:
    """The argument handling :func:`match` and :func:`match_reference` share."""
    (pos1, pos2), radius = _split(fn, [ra1, dec1, ra2, dec2], 2, radius_arcsec)
    radius = _radius(radius)
    k = _mode_k(mode, k)
    side1 = _side(pos1, pmra1, pmdec1, epoch1, "1")
    side2 = _side(pos2, None, None, epoch2, "2")
    epoch2 = _epoch_scalar(side2.epoch, side2.names[4])
    to_name = side2.names[4] if side2.coord is None else f"{side2.coord}.obstime (or epoch2=)"
    rows = _rows(side1, epoch2, to_name)
    ra2_, dec2_ = _coords(side2.ra, side2.dec, side2.names[0], side2.names[1])
    _warn_unused_motion(side2.coord if side2.coord_motion else None, rows.pmra is not None,
                        side1.epoch, epoch2, stacklevel)
    return _MatchInputs(rows, ra2_, dec2_, epoch2,
                        (side2.names[0], side2.names[1], side2.names[4]), radius, k)


class _Propagation(NamedTuple):
    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray
    pmdec: np.ndarray
    dt: np.ndarray
    names: dict


def _propagate_inputs(ra, dec, pmra, pmdec, epoch_from, epoch_to) -> _Propagation:
    """The argument handling :func:`propagate` and :func:`propagate_reference` share."""
    if _is_coord(ra):
        if dec is not None and epoch_to is not None:
            raise TypeError("propagate(coord, epoch_to): epoch_to given twice")
        pos, epoch_to = (ra,), epoch_to if dec is None else dec
    elif dec is None:
        raise TypeError("propagate() missing dec (or give one SkyCoord)")
    else:
        pos = (ra, dec)
    side = _side(pos, pmra, pmdec, epoch_from, "")
    if len(pos) == 2:  # the keyword names of this function
        side = side._replace(names=side.names[:4] + ("epoch_from",))
    ra_, dec_ = _coords(side.ra, side.dec, side.names[0], side.names[1])
    to = _epoch_scalar(epoch_to, "epoch_to")
    if to is None:
        raise ValueError("epoch_to is required")
    if side.pmra is None and side.pmdec is None:
        raise ValueError("pmra and pmdec are required" if side.coord is None else
                         f"{side.coord} carries no proper motions (pm_ra_cosdec, pm_dec) and "
                         "none were given")
    pmra_, pmdec_, dt = _motion(len(ra_), side.pmra, side.pmdec, side.epoch, to,
                                side.names[2:], "epoch_to")
    names = {"ra": (side.names[0], ra_), "dec": (side.names[1], dec_),
             "pmra": (side.names[2], pmra_), "pmdec": (side.names[3], pmdec_),
             "epoch": (side.names[4], side.epoch)}
    return _Propagation(ra_, dec_, pmra_, pmdec_, dt, names)
