"""APOGEE DR17 allStar FITS -> labels (teff, logg, m_h) and 2MASS colours (jh, jk).

Column names follow the DR17 allStar datamodel (HDU 1): TEFF, LOGG, M_H, FE_H and their
``_ERR`` twins (float32), J, H, K with ``_ERR`` (2MASS, float32), GAIAEDR3_SOURCE_ID
(int64), ASPCAPFLAG and STARFLAG (int64 bitmasks), APOGEE_ID, TELESCOPE, SNR, EXTRATARG.
Only the needed columns are read (memory-mapped), so the 4 GB allStar file is cheap.
APOGEE DR17 is SDSS-IV data: acknowledge SDSS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .catalog import Catalog

# ASPCAPFLAG bits the paper treats as bad labels: 19 = M_H_BAD, 23 = STAR_BAD.
PAPER_ASPCAPFLAG_BITS = (19, 23)
# EXTRATARG bit 4: a duplicate observation of a star (not the highest S/N one).
EXTRATARG_DUPLICATE = 1 << 4
# Sentinels of older releases / unmeasured values: APOGEE uses -9999, 2MASS 99.999.
_LABEL_NULL = -9990.0
_MAG_RANGE = 50.0

_EXTRA = ("APOGEE_ID", "TELESCOPE", "SNR", "J", "H", "K", "STARFLAG", "ASPCAPFLAG", "EXTRATARG")


def read_apogee_allstar(path: str | Path, *, metallicity: str = "auto",
                        blank_flagged: bool = True,
                        aspcapflag_bits: Sequence[int] = PAPER_ASPCAPFLAG_BITS,
                        starflag_mask: int = -1, primary_only: bool = False,
                        hdu: int = 1) -> Catalog:
    """Read an APOGEE allStar file into a :class:`Catalog`.

    Parameters
    ----------
    metallicity : "m_h" (M_H), "fe_h" (FE_H) or "auto" (M_H if the file has it, else
        FE_H). Either way the token column is named ``m_h``; ``meta["m_h_from"]`` says
        which column it came from.
    blank_flagged : set teff/logg/m_h (and errors) to NaN on stars whose ASPCAPFLAG has
        any of ``aspcapflag_bits`` set or whose STARFLAG has any bit of
        ``starflag_mask`` set (default -1: any bit; 0 turns the STARFLAG test off).
    primary_only : drop duplicate observations (EXTRATARG bit 4).
    hdu : the table extension (1 in DR17).

    Returns
    -------
    Catalog
        Columns ``teff`` [K], ``logg`` [dex], ``m_h`` [dex], ``jh``, ``jk`` [mag] with
        errors (colour errors in quadrature); ``source_id`` = GAIAEDR3_SOURCE_ID (0 where
        APOGEE has no Gaia match); ``extra``: apogee_id, telescope, snr, j, h, k,
        starflag, aspcapflag, extratarg (those present) and ``label_blanked`` (bool).
        Sentinels (labels <= -9990, magnitudes beyond +/-50) and non-finite cells are NaN.
    """
    from astropy.io import fits

    if metallicity not in ("auto", "m_h", "fe_h"):
        raise ValueError(f"metallicity must be 'auto', 'm_h' or 'fe_h', got {metallicity!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with fits.open(path, memmap=True) as hdul:
        if hdu >= len(hdul) or not isinstance(hdul[hdu], fits.BinTableHDU):
            raise ValueError(f"{path}: HDU {hdu} is not a binary table")
        data = hdul[hdu].data
        names = {n.upper() for n in data.columns.names}
        if metallicity == "auto":
            metallicity = "m_h" if "M_H" in names else "fe_h"
        met = metallicity.upper()
        required = ["GAIAEDR3_SOURCE_ID", "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", met,
                    f"{met}_ERR", "J", "J_ERR", "H", "H_ERR", "K", "K_ERR"]
        if blank_flagged and len(aspcapflag_bits):
            required.append("ASPCAPFLAG")
        if blank_flagged and starflag_mask:
            required.append("STARFLAG")
        if primary_only:
            required.append("EXTRATARG")
        missing = [c for c in required if c not in names]
        if missing:
            raise ValueError(f"{path}: HDU {hdu} lacks required column(s) {missing}")

        def col(name):
            return np.asarray(data[name]).astype(data[name].dtype.newbyteorder("="))

        labels = {"teff": "TEFF", "logg": "LOGG", "m_h": met}
        values = {t: _clean(col(c), _LABEL_NULL) for t, c in labels.items()}
        errors = {t: _clean(col(f"{c}_ERR"), _LABEL_NULL) for t, c in labels.items()}
        mags = {b: _clean_mag(col(b)) for b in "JHK"}
        mag_errs = {b: _clean_mag(col(f"{b}_ERR")) for b in "JHK"}
        values["jh"], errors["jh"] = mags["J"] - mags["H"], np.hypot(mag_errs["J"], mag_errs["H"])
        values["jk"], errors["jk"] = mags["J"] - mags["K"], np.hypot(mag_errs["J"], mag_errs["K"])
        source_id = col("GAIAEDR3_SOURCE_ID").astype(np.int64)

        n = len(source_id)
        bad = np.zeros(n, bool)
        if blank_flagged:
            if len(aspcapflag_bits):
                mask = 0
                for bit in aspcapflag_bits:
                    if not 0 <= int(bit) < 64:
                        raise ValueError(f"ASPCAPFLAG bit must be in 0..63, got {bit}")
                    mask |= 1 << int(bit)
                bad |= (col("ASPCAPFLAG").astype(np.uint64) & np.uint64(mask)) != 0
            if starflag_mask:
                bad |= (col("STARFLAG").astype(np.uint64)
                        & np.uint64(starflag_mask & 0xFFFFFFFFFFFFFFFF)) != 0
        for t in labels:
            values[t][bad] = np.nan
            errors[t][bad] = np.nan

        extra = {c.lower(): col(c) for c in _EXTRA if c in names}
        for c in ("apogee_id", "telescope"):
            if c in extra and extra[c].dtype.kind == "S":
                extra[c] = np.char.strip(extra[c].astype(str))
        extra["label_blanked"] = bad

    columns = ["teff", "logg", "m_h", "jh", "jk"]
    cat = Catalog(columns,
                  np.stack([values[c] for c in columns], axis=1).astype(np.float32),
                  np.stack([errors[c] for c in columns], axis=1).astype(np.float32),
                  source_id,
                  {"path": str(path), "survey": "APOGEE DR17 allStar", "m_h_from": met,
                   "units": "teff K; logg, m_h dex; jh, jk mag",
                   "aspcapflag_bits": list(aspcapflag_bits) if blank_flagged else [],
                   "starflag_mask": int(starflag_mask) if blank_flagged else 0},
                  extra)
    if primary_only:
        cat = cat.rows((cat.extra["extratarg"].astype(np.int64) & EXTRATARG_DUPLICATE) == 0)
    return cat


def _clean(a: np.ndarray, null_below: float) -> np.ndarray:
    a = a.astype(np.float64)
    a[~np.isfinite(a) | (a <= null_below)] = np.nan
    return a


def _clean_mag(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    a[~np.isfinite(a) | (np.abs(a) >= _MAG_RANGE)] = np.nan
    return a
