"""Gaia/2MASS photometry -> the paper's scalar tokens, and the XP "gnorm" scaling."""

from __future__ import annotations

import numpy as np

# Gaia DR3 G-band zero point: flux [e-/s] = 10**((ZP - G) / 2.5).
G_ZERO_POINT = 25.6873668671


def g_flux(g_mag) -> np.ndarray:
    """G-band flux in e-/s from phot_g_mean_mag [mag] (NaN stays NaN)."""
    return 10.0 ** ((G_ZERO_POINT - np.asarray(g_mag, dtype=np.float64)) / 2.5)


def gnorm(coefficients, g_mag) -> np.ndarray:
    """XP coefficients [N, K] in the archive's e-/s divided by each star's G flux [N]:
    the paper's "gnorm" units, the model's inputs (see :mod:`lamfast.io.xp_units`)."""
    return np.asarray(coefficients, dtype=np.float64) / g_flux(g_mag)[:, None]


def g_fakemag(parallax_mas, g_mag) -> np.ndarray:
    """The paper's ``g_fakemag`` token: parallax [mas] * 10**(0.2 G)."""
    return np.asarray(parallax_mas, dtype=np.float64) * 10.0 ** (0.2 * np.asarray(g_mag, dtype=np.float64))
