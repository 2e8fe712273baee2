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
"""

from __future__ import annotations

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
        Separations in arcseconds (NaN where ``idx2`` is -1).
    """

    idx1: np.ndarray
    idx2: np.ndarray
    sep_arcsec: np.ndarray


# ------------------------------------------------------------------------------------
# Argument checks shared by the C++ path and the reference


def _coords(ra, dec, ra_name: str, dec_name: str) -> tuple[np.ndarray, np.ndarray]:
    ra = np.ascontiguousarray(ra, dtype=np.float64)
    dec = np.ascontiguousarray(dec, dtype=np.float64)
    for a, name in ((ra, ra_name), (dec, dec_name)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (degrees), got shape {a.shape}")
    if len(ra) != len(dec):
        raise ValueError(f"{ra_name} and {dec_name} differ in length ({len(ra)} vs {len(dec)})")
    return ra, dec


def _radius(radius_arcsec) -> float:
    r = float(radius_arcsec)
    if not (0.0 <= r <= MAX_RADIUS_ARCSEC):
        raise ValueError(f"radius_arcsec must be in [0, {MAX_RADIUS_ARCSEC:g}], "
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
    e = np.asarray(epoch, dtype=np.float64)
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
        a = np.ascontiguousarray(a, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) like the coordinates, got {a.shape}")
        out.append(a)
    e = np.asarray(epoch, dtype=np.float64)
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


def _rows(ra, dec, pmra, pmdec, epoch, to_epoch, names: tuple[str, ...],
          to_epoch_name: str) -> _Rows:
    ra_name, dec_name, pmra_name, pmdec_name, epoch_name = names
    ra, dec = _coords(ra, dec, ra_name, dec_name)
    pmra, pmdec, dt = _motion(len(ra), pmra, pmdec, epoch, to_epoch,
                              (pmra_name, pmdec_name, epoch_name), to_epoch_name)
    return _Rows(ra, dec, pmra, pmdec, dt, {
        "ra": (ra_name, ra), "dec": (dec_name, dec), "pmra": (pmra_name, pmra),
        "pmdec": (pmdec_name, pmdec), "epoch": (epoch_name, epoch)})


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

    Parameters
    ----------
    ra, dec : float64 [N2]
        Positions in degrees (ICRS or any one frame); ``ra`` in [-360, 360] (wrapped),
        ``dec`` in [-90, 90].
    epoch : float, optional
        Epoch of these positions in Julian years (e.g. 2000.0); query rows with proper
        motions are moved to it.
    zone_height_arcsec : float, optional
        Height of the declination zones in [1, 36000] (RA cells are about as wide).
        Default: chosen from the catalogue so that a cell holds about one row over the
        area the catalogue occupies. Results never depend on it; speed does.
    threads : int, optional
        C++ threads for the build (default :func:`lamfast.get_num_threads`).

    Notes
    -----
    Memory: about 48 bytes per row (unit vector, declination, row number, directory);
    the input arrays are not kept.
    """

    def __init__(self, ra, dec, *, epoch: float | None = None,
                 zone_height_arcsec: float | None = None, threads: int | None = None):
        self._build(ra, dec, epoch, zone_height_arcsec, threads, ("ra", "dec", "epoch"))

    def _build(self, ra, dec, epoch, zone_height_arcsec, threads, names):
        ra_name, dec_name, epoch_name = names
        ra, dec = _coords(ra, dec, ra_name, dec_name)
        self.epoch = _epoch_scalar(epoch, epoch_name)
        h_deg = 0.0
        if zone_height_arcsec is not None:
            h = float(zone_height_arcsec)
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

    def query(self, ra, dec, radius_arcsec: float, *, mode: str = "nearest", k: int = 1,
              pmra=None, pmdec=None, epoch=None, row_offset: int = 0,
              threads: int | None = None) -> Match:
        """Match rows of catalogue 1 against the index.

        Parameters
        ----------
        ra, dec : float64 [N1]
            Positions in degrees at ``epoch``.
        radius_arcsec : float
            Match radius in arcseconds, in [0, 648000]; a pair matches when its
            separation is at most this.
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
        pmra, pmdec : float64 [N1], optional
            Proper motions in mas/yr, ``pmra`` including cos(dec). Rows are moved from
            ``epoch`` to the index's epoch on the sphere (linear space motion, zero
            radial velocity, as astropy's ``apply_space_motion``); NaN = not moved.
        epoch : float or float64 [N1], optional
            Epoch(s) of ``ra, dec`` in Julian years; needed with proper motions.
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
            names the row), infinite proper motions, a radius outside [0, 648000], an
            unknown mode, or proper motions without both epochs.
        """
        radius = _radius(radius_arcsec)
        k = _mode_k(mode, k)
        if not isinstance(row_offset, (int, np.integer)) or row_offset < 0:
            raise ValueError(f"row_offset must be a non-negative int, got {row_offset!r}")
        rows = _rows(ra, dec, pmra, pmdec, epoch, self.epoch,
                     ("ra", "dec", "pmra", "pmdec", "epoch"), "the index's epoch")
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


def match(ra1, dec1, ra2, dec2, radius_arcsec: float, *, mode: str = "nearest", k: int = 1,
          pmra1=None, pmdec1=None, epoch1=None, epoch2=None,
          threads: int | None = None) -> Match:
    """Cross-match catalogue 1 against catalogue 2 on the sky.

    Parameters
    ----------
    ra1, dec1 : float64 [N1]
        Catalogue 1 positions in degrees at ``epoch1`` (``ra`` in [-360, 360], wrapped;
        ``dec`` in [-90, 90]).
    ra2, dec2 : float64 [N2]
        Catalogue 2 positions in degrees at ``epoch2``.
    radius_arcsec : float
        Match radius in arcseconds, in [0, 648000].
    mode : {"nearest", "all", "best"}
        ``nearest``: for each row of catalogue 1 its ``k`` nearest rows of catalogue 2
        within the radius, closest first, as ``k`` slots per row (``idx2 = -1`` and
        ``sep_arcsec = NaN`` for empty slots; ``idx2.reshape(N1, k)`` is a table).
        ``all``: every pair within the radius, ordered by (idx1, separation, idx2).
        ``best``: one-to-one pairs (each row of either catalogue used at most once),
        taken closest first, ordered by idx1 (see :func:`one_to_one`).
    k : int
        Neighbours per row in ``nearest`` mode (the k nearest within the radius).
    pmra1, pmdec1 : float64 [N1], optional
        Catalogue 1 proper motions in mas/yr (``pmra1`` includes cos(dec)). Rows move
        on the sphere along their tangent-plane velocity from ``epoch1`` to ``epoch2``
        before matching (valid at the poles); NaN = row not moved.
    epoch1 : float or float64 [N1], optional
        Epoch(s) of catalogue 1 in Julian years (e.g. 2016.0 for Gaia DR3).
    epoch2 : float, optional
        Epoch of catalogue 2 in Julian years (e.g. 2000.0 for 2MASS).
    threads : int, optional
        C++ threads (default :func:`lamfast.get_num_threads`); results do not depend
        on it.

    Returns
    -------
    Match
        ``idx1``, ``idx2`` int64 [M] and ``sep_arcsec`` float64 [M] (arcseconds,
        computed from the chord: exact to ~1e-11 arcsec). Empty catalogues give empty
        results (in ``nearest`` mode, N1 * k rows with ``idx2 = -1``).

    Raises
    ------
    ValueError
        Mismatched lengths, a NaN or out-of-range coordinate (the message names the
        column and row), infinite proper motions, a negative radius, an unknown mode,
        ``k != 1`` outside ``nearest``, or proper motions without both epochs.

    Examples
    --------
    >>> m = match(gaia_ra, gaia_dec, tmass_ra, tmass_dec, 1.0, mode="best",
    ...           pmra1=gaia_pmra, pmdec1=gaia_pmdec, epoch1=2016.0, epoch2=2000.0)
    """
    radius = _radius(radius_arcsec)
    k = _mode_k(mode, k)
    threads = resolve_threads(threads)
    epoch2 = _epoch_scalar(epoch2, "epoch2")
    rows = _rows(ra1, dec1, pmra1, pmdec1, epoch1, epoch2,
                 ("ra1", "dec1", "pmra1", "pmdec1", "epoch1"), "epoch2")
    index = Index.__new__(Index)  # Index(...) with catalogue 2's names in its errors
    index._build(ra2, dec2, epoch2, None, threads, ("ra2", "dec2", "epoch2"))
    return index._query(rows, radius, mode, k, 0, threads)


def propagate(ra, dec, pmra, pmdec, epoch_from, epoch_to, *,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move positions by their proper motions (the propagation :func:`match` applies).

    Linear space motion with zero radial velocity: u(t) = normalize(u + dt * v) with v
    the tangent-plane velocity, so it is valid at the poles and agrees with astropy's
    ``SkyCoord.apply_space_motion`` (ERFA pmsafe) for zero radial velocity.

    Parameters
    ----------
    ra, dec : float64 [N]
        Positions in degrees at ``epoch_from``.
    pmra, pmdec : float64 [N]
        Proper motions in mas/yr (``pmra`` includes cos(dec)); NaN = not moved.
    epoch_from : float or float64 [N]
        Epoch(s) of the positions in Julian years.
    epoch_to : float
        Target epoch in Julian years.

    Returns
    -------
    ra, dec : float64 [N]
        Degrees; ``ra`` in [0, 360).
    """
    ra, dec = _coords(ra, dec, "ra", "dec")
    to = _epoch_scalar(epoch_to, "epoch_to")
    if to is None:
        raise ValueError("epoch_to is required")
    pmra_, pmdec_, dt = _motion(len(ra), pmra, pmdec, epoch_from, to,
                                ("pmra", "pmdec", "epoch_from"), "epoch_to")
    if pmra_ is None:
        raise ValueError("pmra and pmdec are required")
    out = _core.xmatch_propagate(ra, dec, pmra_, pmdec_, dt, resolve_threads(threads))
    if out[0] is not None:
        _raise_bad_row(out[0], {"ra": ("ra", ra), "dec": ("dec", dec), "pmra": ("pmra", pmra_),
                                "pmdec": ("pmdec", pmdec_), "epoch": ("epoch_from", epoch_from)})
    return out[1], out[2]


# ------------------------------------------------------------------------------------
# numpy reference


def unit_vectors(ra, dec) -> np.ndarray:
    """float64 [N, 3] unit vectors of positions in degrees."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def propagate_reference(ra, dec, pmra, pmdec, epoch_from, epoch_to, *,
                        threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy version of :func:`propagate`."""
    u = _propagated_vectors(*_coords(ra, dec, "ra", "dec"), pmra, pmdec, epoch_from, epoch_to)
    return (np.degrees(np.arctan2(u[:, 1], u[:, 0])) % 360.0,
            np.degrees(np.arctan2(u[:, 2], np.hypot(u[:, 0], u[:, 1]))))


def _propagated_vectors(ra, dec, pmra, pmdec, epoch_from, epoch_to) -> np.ndarray:
    u = unit_vectors(ra, dec)
    if pmra is None:
        return u
    a, d = np.radians(ra), np.radians(dec)
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=1)
    pmra, pmdec = np.asarray(pmra, dtype=np.float64), np.asarray(pmdec, dtype=np.float64)
    dt = (float(epoch_to) - np.asarray(epoch_from, dtype=np.float64)) * _MAS_TO_RAD
    still = np.isnan(pmra) | np.isnan(pmdec)  # NaN proper motion: not moved
    ve = np.where(still, 0.0, pmra * dt)
    vn = np.where(still, 0.0, pmdec * dt)
    v = u + ve[:, None] * east + vn[:, None] * north
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def match_reference(ra1, dec1, ra2, dec2, radius_arcsec: float, *, mode: str = "nearest",
                    k: int = 1, pmra1=None, pmdec1=None, epoch1=None, epoch2=None,
                    threads: int | None = None) -> Match:
    """Brute-force numpy version of :func:`match` (all N1 x N2 chords; small inputs)."""
    ra1, dec1 = _coords(ra1, dec1, "ra1", "dec1")
    ra2, dec2 = _coords(ra2, dec2, "ra2", "dec2")
    radius = _radius(radius_arcsec)
    k = _mode_k(mode, k)
    epoch2 = _epoch_scalar(epoch2, "epoch2")
    for ra, dec, s in ((ra1, dec1, "1"), (ra2, dec2, "2")):
        bad = ~((np.abs(ra) <= 360.0) & (np.abs(dec) <= 90.0))
        if bad.any():
            row = int(np.argmax(bad))
            name = f"ra{s}" if not abs(ra[row]) <= 360.0 else f"dec{s}"
            raise ValueError(f"{name}[{row}] is out of range")
    pmra, pmdec, dt = _motion(len(ra1), pmra1, pmdec1, epoch1, epoch2,
                              ("pmra1", "pmdec1", "epoch1"), "epoch2")
    u1 = (_propagated_vectors(ra1, dec1, pmra, pmdec, epoch1, epoch2) if pmra is not None
          else unit_vectors(ra1, dec1))
    u2 = unit_vectors(ra2, dec2)
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
