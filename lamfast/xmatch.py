"""Positional sky cross-match between two catalogues, in C++ (:func:`match`,
:class:`Index`) and numpy (:func:`match_reference`, the brute-force oracle with the same
signature and the same output).

Positions are unit vectors; a pair matches when its chord c = |u1 - u2| is at most
2 sin(r/2), and its separation is 2 asin(c/2), exact to ~1e-11 arcsec at any angle (an
arccos of the dot product loses everything below ~10 mas). Catalogue 2 is indexed once
(declination zones cut into RA cells, see ``csrc/xmatch.hpp``) and catalogue 1 streams
through the index, optionally moved to the index's epoch with its proper motions.

Ties (equal separations) are broken by the smaller row index, so every result is a pure
function of the inputs: the same for any thread count and any chunking of catalogue 1.

Units: plain numbers are degrees (positions), arcseconds (radius), mas/yr (proper
motions) and Julian years (epochs). astropy objects are converted: a ``SkyCoord`` (or a
coordinate frame with data) in place of an ``ra, dec`` pair, ``Quantity`` (or a table
``Column`` with a unit) in any angle / angular-velocity unit, ``Time`` epochs. astropy is
never imported unless such an object is passed: they are recognised by their attributes.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from . import _core
from ._threads import resolve_threads

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


# ------------------------------------------------------------------------------------
# astropy inputs, recognised by duck typing (astropy.units is imported only when an
# object with a unit is seen)


def _is_coord(x) -> bool:
    """An astropy SkyCoord or coordinate frame."""
    return hasattr(x, "transform_to") and hasattr(x, "represent_as")


def _is_time(x) -> bool:
    """An astropy Time."""
    return hasattr(x, "jyear") and hasattr(x, "jd1")


_KINDS = {"deg": "angle", "arcsec": "angle", "mas/yr": "angular velocity"}


def _in_unit(x, unit: str, name: str):
    """``x`` as plain numbers in ``unit`` when it carries a unit (a Quantity, or a table
    Column whose ``unit`` is set); anything else is returned as is (already in ``unit``)."""
    have = getattr(x, "unit", None)
    if have is None or _is_coord(x):
        return x
    import astropy.units as u

    kind = _KINDS[unit]
    try:
        have = u.Unit(have)
        if isinstance(x, u.Quantity):
            return x.to_value(unit)
        values = (np.ma.filled(np.ma.asarray(x, dtype=np.float64), np.nan)
                  if np.ma.isMaskedArray(x) else np.asarray(x, dtype=np.float64))
        return have.to(unit, values)
    except (u.UnitsError, ValueError, TypeError):
        raise ValueError(f"{name} has unit {str(have) or 'dimensionless'!r}, which is not "
                         f"an {kind} unit (give {unit}, or any {kind} unit)") from None


def _epoch_years(epoch, name: str):
    """An epoch in Julian years: a number or array as is, a Time (its ``jyear``), or a
    Quantity in years (``2016 * u.yr``)."""
    if epoch is None:
        return None
    if _is_time(epoch):
        return np.asarray(epoch.jyear, dtype=np.float64)
    have = getattr(epoch, "unit", None)
    if have is None:
        return epoch
    import astropy.units as u

    try:
        have = u.Unit(have)
        years = have.to(u.yr) == 1.0
    except (u.UnitsError, ValueError, TypeError):
        years = False
    if not years:
        raise ValueError(f"{name} has unit {str(have) or 'dimensionless'!r}: give epochs in "
                         "Julian years (a number, a Quantity in yr) or as an astropy Time")
    values = epoch.value if isinstance(epoch, u.Quantity) else epoch
    return np.asarray(np.ma.filled(values, np.nan) if np.ma.isMaskedArray(values) else values,
                      dtype=np.float64)


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


_WHY = {
    "ra": "not a finite angle in [-360, 360] degrees",
    "dec": "not a finite angle in [-90, 90] degrees",
    "pmra": "infinite, or moves the row by over 1e15 mas (NaN means: no proper motion)",
    "pmdec": "infinite, or moves the row by over 1e15 mas (NaN means: no proper motion)",
    "epoch": "not a finite epoch",
}


def _raise_bad_row(bad, arrays: dict[str, tuple[str, np.ndarray | None]]):
    row, field = bad
    name, values = arrays[field]
    if field == "epoch" and values is not None and np.ndim(values) == 0:
        raise ValueError(f"{name} = {float(values)!r} is {_WHY[field]}")
    shown = float(np.asarray(values, dtype=np.float64)[row]) if values is not None else "?"
    raise ValueError(f"{name}[{row}] = {shown!r} is {_WHY[field]}")


# ------------------------------------------------------------------------------------
# C++ path



class Index:
    """A cross-match index of one catalogue, built once and queried chunk by chunk.

    ``Index(ra, dec, epoch=...)`` or ``Index(coord)``.

    Parameters
    ----------
    ra, dec : float64 [N2] or Quantity [N2]
        Positions in degrees (ICRS or any one frame), or Quantities in any angle unit;
        ``ra`` in [-360, 360] degrees (wrapped), ``dec`` in [-90, 90].
    coord : SkyCoord [N2]
        In place of ``ra, dec``: positions, converted to ICRS. Its ``obstime`` is the
        index's epoch. Its proper motions are not used: query rows are moved to this
        epoch, where these positions hold as given (a query without proper motions of
        its own, at another epoch, warns).
    epoch : float, Time or Quantity, optional
        Epoch of these positions in Julian years (e.g. 2000.0) or as a Time; query rows
        with proper motions are moved to it.
    zone_height_arcsec : float or Quantity, optional
        Height of the declination zones in [1, 36000] arcsec (RA cells are about as
        wide). Default: chosen from the catalogue so that a cell holds about one row over
        the area the catalogue occupies. Results never depend on it; speed does.
    threads : int, optional
        C++ threads for the build (default :func:`lamfast.get_num_threads`).

    Raises
    ------
    ValueError
        A NaN or out-of-range coordinate (the message names the row), a Quantity whose
        unit is not an angle, or an epoch given twice (``obstime`` and ``epoch``) that
        disagrees.

    Notes
    -----
    Memory: about 48 bytes per row (unit vector, declination, row number, directory);
    the input arrays are not kept.
    """

    def __init__(self, ra, dec=None, *, epoch=None, zone_height_arcsec=None,
                 threads: int | None = None):
        if _is_coord(ra):
            if dec is not None:
                raise TypeError("Index(coord) takes no dec")
            pos = (ra,)
        elif dec is None:
            raise TypeError("Index() missing dec (or give one SkyCoord)")
        else:
            pos = (ra, dec)
        side = _side(pos, None, None, epoch, "")
        self._build(side.ra, side.dec, side.epoch, zone_height_arcsec, threads,
                    (side.names[0], side.names[1], side.names[4]))
        self._unused_motion = side.coord if side.coord_motion else None

    def _build(self, ra, dec, epoch, zone_height_arcsec, threads, names):
        ra_name, dec_name, epoch_name = names
        ra, dec = _coords(ra, dec, ra_name, dec_name)
        self.epoch = _epoch_scalar(epoch, epoch_name)
        self._unused_motion = None
        h_deg = 0.0
        if zone_height_arcsec is not None:
            h = float(_in_unit(zone_height_arcsec, "arcsec", "zone_height_arcsec"))
            if not (1.0 <= h <= 36000.0):
                raise ValueError("zone_height_arcsec must be in [1, 36000], "
                                 f"got {zone_height_arcsec!r}")
            h_deg = h / 3600.0
        bad, self._index = _core.xmatch_build(ra, dec, h_deg, resolve_threads(threads))
        if bad is not None:
            _raise_bad_row(bad, {"ra": (ra_name, ra), "dec": (dec_name, dec)})

    def __len__(self) -> int:
        return self._index.size

    @property
    def zone_height_arcsec(self) -> float:
        return self._index.zone_height_deg * 3600.0

    def query(self, ra, dec=None, radius_arcsec=None, *, mode: str = "nearest", k: int = 1,
              pmra=None, pmdec=None, epoch=None, row_offset: int = 0,
              threads: int | None = None) -> Match:
        """Match rows of catalogue 1 against the index.

        ``query(ra, dec, radius_arcsec, ...)`` or ``query(coord, radius_arcsec, ...)``.

        Parameters
        ----------
        ra, dec : float64 [N1] or Quantity [N1]
            Positions in degrees at ``epoch`` (or Quantities in any angle unit).
        coord : SkyCoord [N1]
            In place of ``ra, dec``: positions, converted to ICRS; its proper motions
            (``pm_ra_cosdec``, ``pm_dec``) and ``obstime``, when set, are used as
            ``pmra``, ``pmdec`` and ``epoch`` (giving them again raises ValueError).
        radius_arcsec : float or Quantity
            Match radius in arcseconds, in [0, 648000] (or a Quantity in any angle unit);
            a pair matches when its separation is at most this.
        mode : {"nearest", "all", "best"}
            ``nearest``: for each row its ``k`` nearest indexed rows within the radius,
            closest first: ``k`` slots per row, ``idx2 = -1`` (sep NaN) where fewer
            than ``k`` lie within the radius, so ``idx2.reshape(N1, k)`` is a table.
            ``all``: every pair within the radius, by (idx1, separation, idx2).
            ``best``: one-to-one pairs, closest first (see :func:`one_to_one`); this is
            one-to-one within this call only: to stream, collect ``all`` pairs of every
            chunk and apply :func:`one_to_one` once.
        k : int
            Neighbours per row in ``nearest`` mode.
        pmra, pmdec : float64 [N1] or Quantity [N1], optional
            Proper motions in mas/yr (or Quantities in any angular-velocity unit),
            ``pmra`` including cos(dec). Rows are moved from ``epoch`` to the index's
            epoch on the sphere (linear space motion, zero radial velocity, as astropy's
            ``apply_space_motion``); NaN = not moved.
        epoch : float, float64 [N1], Time or Quantity, optional
            Epoch(s) of ``ra, dec`` in Julian years (or a Time); needed with proper
            motions.
        row_offset : int
            Added to ``idx1``: the catalogue row of this chunk's first row.
        threads : int, optional
            C++ threads (default :func:`lamfast.get_num_threads`).

        Returns
        -------
        Match
            ``idx1``, ``idx2`` int64 [M], ``sep_arcsec`` float64 [M] (arcseconds).

        Raises
        ------
        ValueError
            Mismatched lengths, a coordinate that is NaN or out of range (the message
            names the row), infinite proper motions, a radius outside [0, 648000]
            arcsec, an unknown mode, proper motions without both epochs, or a Quantity
            of the wrong kind (the message names the argument and its unit).
        """
        (pos,), radius = _split("query", [ra, dec, radius_arcsec], 1, None)
        radius = _radius(radius)
        k = _mode_k(mode, k)
        if not isinstance(row_offset, (int, np.integer)) or row_offset < 0:
            raise ValueError(f"row_offset must be a non-negative int, got {row_offset!r}")
        side = _side(pos, pmra, pmdec, epoch, "")
        rows = _rows(side, self.epoch, "the index's epoch")
        _warn_unused_motion(self._unused_motion, rows.pmra is not None, side.epoch, self.epoch,
                            stacklevel=2)
        return self._query(rows, radius, mode, k, int(row_offset), resolve_threads(threads))

    def _query(self, rows: _Rows, radius: float, mode: str, k: int, row_offset: int,
               threads: int) -> Match:
        radius_rad = radius / _ARCSEC_PER_RAD
        args = (self._index, rows.ra, rows.dec, rows.pmra, rows.pmdec, rows.dt, radius_rad)
        if mode == "nearest":
            out = _core.xmatch_nearest(*args, k, threads)
            if out[0] is not None:
                _raise_bad_row(out[0], rows.names)
            idx1 = np.arange(row_offset, row_offset + len(rows.ra), dtype=np.int64)
            return Match(np.repeat(idx1, k) if k > 1 else idx1, out[1], out[2])
        out = _core.xmatch_all(*args, row_offset, threads)
        if out[0] is not None:
            _raise_bad_row(out[0], rows.names)
        pairs = Match(*out[1:])
        return one_to_one(pairs) if mode == "best" else pairs


def one_to_one(pairs: Match) -> Match:
    """Greedy one-to-one selection, closest first.

    Pairs are visited by increasing separation (ties: smaller ``idx1``, then smaller
    ``idx2``); a pair is kept when neither of its rows is in a kept pair already. This
    is the usual "best match" rule: every kept pair is the closest available for both
    sides at the time it is taken.

    Parameters
    ----------
    pairs : Match
        Candidate pairs (typically ``mode="all"`` results, possibly concatenated over
        chunks); rows with ``idx2 = -1`` are ignored.

    Returns
    -------
    Match
        The kept pairs, in their input order.
    """
    idx1 = np.ascontiguousarray(pairs.idx1, dtype=np.int64)
    idx2 = np.ascontiguousarray(pairs.idx2, dtype=np.int64)
    sep = np.ascontiguousarray(pairs.sep_arcsec, dtype=np.float64)
    valid = idx2 >= 0
    if not valid.all():
        idx1, idx2, sep = idx1[valid], idx2[valid], sep[valid]
    if (idx1 < 0).any():
        raise ValueError("idx1 holds negative rows")
    keep = _core.xmatch_one_to_one(idx1, idx2, sep)
    return Match(idx1[keep], idx2[keep], sep[keep])


def match(ra1, dec1, ra2=None, dec2=None, radius_arcsec=None, *, mode: str = "nearest",
          k: int = 1, pmra1=None, pmdec1=None, epoch1=None, epoch2=None,
          threads: int | None = None) -> Match:
    """Cross-match catalogue 1 against catalogue 2 on the sky.

    ``match(ra1, dec1, ra2, dec2, radius_arcsec, ...)`` with arrays, or
    ``match(coord1, coord2, radius_arcsec, ...)`` with astropy ``SkyCoord`` s (either
    catalogue may be one: ``match(coord1, ra2, dec2, radius_arcsec)`` works too).

    Parameters
    ----------
    ra1, dec1 : float64 [N1] or Quantity [N1]
        Catalogue 1 positions in degrees at ``epoch1`` (``ra`` in [-360, 360], wrapped;
        ``dec`` in [-90, 90]), or Quantities in any angle unit (converted to degrees).
    ra2, dec2 : float64 [N2] or Quantity [N2]
        Catalogue 2 positions in degrees at ``epoch2``.
    coord1, coord2 : SkyCoord
        In place of ``ra1, dec1`` / ``ra2, dec2``: positions in any frame, converted to
        ICRS degrees (``coord.icrs``). ``coord1``'s proper motions (``pm_ra_cosdec``,
        ``pm_dec``) are applied when it carries them, and each ``obstime`` is that
        catalogue's epoch (``epoch1`` / ``epoch2`` may supply a missing one; an
        ``obstime`` and an epoch that disagree, or proper motions given both ways,
        raise ValueError; proper motions without both epochs raise ValueError rather
        than being dropped). ``coord2``'s proper motions are not used: catalogue 1 is
        moved to catalogue 2's epoch, where ``coord2`` holds as given; when catalogue 1
        has no motions of its own, at another (or an unknown) epoch, a UserWarning says
        so. Radial velocities and distances are not used (zero radial velocity).
    radius_arcsec : float or Quantity
        Match radius in arcseconds, in [0, 648000], or a Quantity in any angle unit
        (``1 * u.arcsec``, ``0.5 * u.arcmin``).
    mode : {"nearest", "all", "best"}
        ``nearest``: for each row of catalogue 1 its ``k`` nearest rows of catalogue 2
        within the radius, closest first, as ``k`` slots per row (``idx2 = -1`` and
        ``sep_arcsec = NaN`` for empty slots; ``idx2.reshape(N1, k)`` is a table).
        ``all``: every pair within the radius, ordered by (idx1, separation, idx2).
        ``best``: one-to-one pairs (each row of either catalogue used at most once),
        taken closest first, ordered by idx1 (see :func:`one_to_one`).
    k : int
        Neighbours per row in ``nearest`` mode (the k nearest within the radius).
    pmra1, pmdec1 : float64 [N1] or Quantity [N1], optional
        Catalogue 1 proper motions in mas/yr (``pmra1`` includes cos(dec)), or
        Quantities in any angular-velocity unit. Rows move on the sphere along their
        tangent-plane velocity from ``epoch1`` to ``epoch2`` before matching (valid at
        the poles); NaN = row not moved.
    epoch1 : float, float64 [N1], Time or Quantity, optional
        Epoch(s) of catalogue 1 in Julian years (e.g. 2016.0 for Gaia DR3), an astropy
        ``Time`` (its ``jyear``) or a Quantity in years.
    epoch2 : float, Time or Quantity, optional
        Epoch of catalogue 2 in Julian years (e.g. 2000.0 for 2MASS).
    threads : int, optional
        C++ threads (default :func:`lamfast.get_num_threads`); results do not depend
        on it.

    Returns
    -------
    Match
        ``idx1``, ``idx2`` int64 [M] and ``sep_arcsec`` float64 [M] (arcseconds,
        computed from the chord: exact to ~1e-11 arcsec). Empty catalogues give empty
        results (in ``nearest`` mode, N1 * k rows with ``idx2 = -1``). Plain arrays
        whatever the input units.

    Raises
    ------
    ValueError
        Mismatched lengths, a NaN or out-of-range coordinate (the message names the
        column and row), infinite proper motions, a negative radius, an unknown mode,
        ``k != 1`` outside ``nearest``, proper motions without both epochs, or a
        Quantity of the wrong kind (e.g. a radius in metres: the message names the
        argument and its unit).
    TypeError
        A catalogue or the radius missing, or too many positional arguments.

    Notes
    -----
    Plain numbers are taken as degrees, arcseconds, mas/yr and Julian years, as above;
    astropy is imported only when an astropy object is passed.

    Examples
    --------
    >>> m = match(gaia_ra, gaia_dec, tmass_ra, tmass_dec, 1.0, mode="best",
    ...           pmra1=gaia_pmra, pmdec1=gaia_pmdec, epoch1=2016.0, epoch2=2000.0)
    >>> gaia = SkyCoord(ra, dec, unit="deg", pm_ra_cosdec=pmra * u.mas / u.yr,
    ...                 pm_dec=pmdec * u.mas / u.yr, obstime=Time(2016.0, format="jyear"))
    >>> m = match(gaia, tmass, 1 * u.arcsec, mode="best", epoch2=2000.0)
    """
    inp = _match_inputs("match", ra1, dec1, ra2, dec2, radius_arcsec, mode, k, pmra1, pmdec1,
                        epoch1, epoch2)
    threads = resolve_threads(threads)
    index = Index.__new__(Index)  # Index(...) with catalogue 2's names in its errors
    index._build(inp.ra2, inp.dec2, inp.epoch2, None, threads, inp.names2)
    return index._query(inp.rows, inp.radius, mode, inp.k, 0, threads)


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


def propagate(ra, dec=None, pmra=None, pmdec=None, epoch_from=None, epoch_to=None, *,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move positions by their proper motions (the propagation :func:`match` applies).

    ``propagate(ra, dec, pmra, pmdec, epoch_from, epoch_to)`` or
    ``propagate(coord, epoch_to)``.

    Linear space motion with zero radial velocity: u(t) = normalize(u + dt * v) with v
    the tangent-plane velocity, so it is valid at the poles and agrees with astropy's
    ``SkyCoord.apply_space_motion`` (ERFA pmsafe) for zero radial velocity.

    Parameters
    ----------
    ra, dec : float64 [N] or Quantity [N]
        Positions in degrees at ``epoch_from`` (or Quantities in any angle unit).
    coord : SkyCoord [N]
        In place of ``ra, dec, pmra, pmdec, epoch_from``: ICRS positions, proper
        motions (``pm_ra_cosdec``, ``pm_dec``) and ``obstime`` of the coordinate
        (keywords may supply what it lacks).
    pmra, pmdec : float64 [N] or Quantity [N]
        Proper motions in mas/yr (``pmra`` includes cos(dec)); NaN = not moved.
    epoch_from : float, float64 [N], Time or Quantity
        Epoch(s) of the positions in Julian years.
    epoch_to : float, Time or Quantity
        Target epoch in Julian years.

    Returns
    -------
    ra, dec : float64 [N]
        Degrees (ICRS for a SkyCoord input); ``ra`` in [0, 360).
    """
    p = _propagate_inputs(ra, dec, pmra, pmdec, epoch_from, epoch_to)
    out = _core.xmatch_propagate(p.ra, p.dec, p.pmra, p.pmdec, p.dt, resolve_threads(threads))
    if out[0] is not None:
        _raise_bad_row(out[0], p.names)
    return out[1], out[2]


# ------------------------------------------------------------------------------------
# numpy reference


def unit_vectors(ra, dec) -> np.ndarray:
    """float64 [N, 3] unit vectors of positions in degrees."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def propagate_reference(ra, dec=None, pmra=None, pmdec=None, epoch_from=None, epoch_to=None,
                        *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy version of :func:`propagate` (the same arguments)."""
    p = _propagate_inputs(ra, dec, pmra, pmdec, epoch_from, epoch_to)
    u = _propagated_vectors(p.ra, p.dec, p.pmra, p.pmdec, p.dt)
    return (np.degrees(np.arctan2(u[:, 1], u[:, 0])) % 360.0,
            np.degrees(np.arctan2(u[:, 2], np.hypot(u[:, 0], u[:, 1]))))


def _propagated_vectors(ra, dec, pmra, pmdec, dt_years) -> np.ndarray:
    u = unit_vectors(ra, dec)
    if pmra is None:
        return u
    a, d = np.radians(ra), np.radians(dec)
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=1)
    pmra, pmdec = np.asarray(pmra, dtype=np.float64), np.asarray(pmdec, dtype=np.float64)
    dt = np.asarray(dt_years, dtype=np.float64) * _MAS_TO_RAD
    still = np.isnan(pmra) | np.isnan(pmdec)  # NaN proper motion: not moved
    ve = np.where(still, 0.0, pmra * dt)
    vn = np.where(still, 0.0, pmdec * dt)
    v = u + ve[:, None] * east + vn[:, None] * north
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def match_reference(ra1, dec1, ra2=None, dec2=None, radius_arcsec=None, *,
                    mode: str = "nearest", k: int = 1, pmra1=None, pmdec1=None, epoch1=None,
                    epoch2=None, threads: int | None = None) -> Match:
    """Brute-force numpy version of :func:`match` (all N1 x N2 chords; small inputs), with
    the same arguments (arrays, Quantities or SkyCoords) and the same output."""
    inp = _match_inputs("match_reference", ra1, dec1, ra2, dec2, radius_arcsec, mode, k,
                        pmra1, pmdec1, epoch1, epoch2)
    rows, radius, k = inp.rows, inp.radius, inp.k
    for ra, dec, (ra_name, dec_name) in ((rows.ra, rows.dec, (rows.names["ra"][0],
                                                                rows.names["dec"][0])),
                                         (inp.ra2, inp.dec2, inp.names2[:2])):
        bad = ~((np.abs(ra) <= 360.0) & (np.abs(dec) <= 90.0))
        if bad.any():
            row = int(np.argmax(bad))
            name = ra_name if not abs(ra[row]) <= 360.0 else dec_name
            raise ValueError(f"{name}[{row}] is out of range")
    u1 = _propagated_vectors(rows.ra, rows.dec, rows.pmra, rows.pmdec, rows.dt)
    u2 = unit_vectors(inp.ra2, inp.dec2)
    c2 = (2.0 * np.sin(0.5 * min(radius / _ARCSEC_PER_RAD, np.pi))) ** 2
    idx1, idx2, d2 = [], [], []
    for i in range(len(u1)):
        d = ((u1[i] - u2) ** 2).sum(axis=1)
        j = np.flatnonzero(d <= c2)
        j = j[np.lexsort((j, d[j]))]  # by chord, ties by row
        idx1.append(np.full(len(j), i, dtype=np.int64))
        idx2.append(j.astype(np.int64))
        d2.append(d[j])
    idx1 = np.concatenate(idx1) if idx1 else np.zeros(0, np.int64)
    idx2 = np.concatenate(idx2) if idx2 else np.zeros(0, np.int64)
    sep = 2.0 * np.arcsin(0.5 * np.sqrt(np.concatenate(d2) if d2 else np.zeros(0)))
    sep *= _ARCSEC_PER_RAD
    if mode == "all":
        return Match(idx1, idx2, sep)
    if mode == "best":
        used1, used2, kept = set(), set(), []
        for p in np.lexsort((idx2, idx1, sep)):
            if idx1[p] not in used1 and idx2[p] not in used2:
                used1.add(idx1[p])
                used2.add(idx2[p])
                kept.append(p)
        kept = np.sort(np.array(kept, dtype=np.int64))
        return Match(idx1[kept], idx2[kept], sep[kept])
    out2 = np.full((len(u1), k), -1, dtype=np.int64)
    out_sep = np.full((len(u1), k), np.nan)
    first = np.searchsorted(idx1, np.arange(len(u1)))
    for i in range(len(u1)):
        slot = np.arange(first[i], min(first[i] + k, len(idx1)))
        slot = slot[idx1[slot] == i]
        out2[i, :len(slot)] = idx2[slot]
        out_sep[i, :len(slot)] = sep[slot]
    return Match(np.repeat(np.arange(len(u1), dtype=np.int64), k), out2.ravel(), out_sep.ravel())
