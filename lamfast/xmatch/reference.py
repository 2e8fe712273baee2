"""numpy references: :func:`match_reference` (brute force over all N1 x N2 chords) and
:func:`propagate_reference`, the plain versions of :func:`lamfast.xmatch.match` and
:func:`lamfast.xmatch.propagate` with the same arguments and output, and
:func:`unit_vectors`."""

from __future__ import annotations

import numpy as np

from .inputs import _ARCSEC_PER_RAD, _MAS_TO_RAD, Match, _match_inputs, _propagate_inputs


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
