"""The C++ path: the zone index of catalogue 2 (:class:`Index`), :func:`match`,
:func:`one_to_one` and :func:`propagate` (``lamfast._core``); the numpy references with
the same signatures are in :mod:`.reference`."""

from __future__ import annotations

import numpy as np

from .. import _core
from .._threads import resolve_threads
from ._units import _in_unit, _is_coord
from .inputs import (_ARCSEC_PER_RAD, Match, _coords, _epoch_scalar, _match_inputs, _mode_k,
                     _propagate_inputs, _radius, _Rows, _rows, _side, _split,
                     _warn_unused_motion)


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
