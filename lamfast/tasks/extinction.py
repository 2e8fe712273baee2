"""The extinction curve the model learned (the paper's Sec. 5.4 task).

Generate the XP spectrum of fixed stellar parameters at several E(B-V) (the model's
``logebv`` token is ln E(B-V)) and fit the slope of the magnitude -2.5 log10 F(lambda)
against E(B-V) per pixel: for a star dimmed by A(lambda) = k(lambda) E(B-V) that slope is
k(lambda) = A(lambda)/E(B-V).

One subtlety: the model's XP coefficients are divided by the star's G-band flux (gnorm),
so extinction in G is divided out and the slope is k(lambda) - k_G. Differences are free
of that offset, so the curve is reported as the colour excess E(lambda - 550 nm) / E(B-V)
= k(lambda) - k(550), normalised by the model's own E(440 - 550)/E(B-V) (which should
be 1: B and V are near 440 and 550 nm). A(lambda)/A(550) then needs R_V:
A(lambda)/A(550) = 1 + [E(lambda-550)/E(B-V)] / R_V.

The standard law drawn next to it is Cardelli, Clayton & Mathis (1989, ApJ 345, 245)
with the optical coefficients of O'Donnell (1994, ApJ 422, 158), R_V = 3.1.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .common import as_model, pyplot, save_figure

B_NM, V_NM = 440.0, 550.0
REPORT_NM = (400.0, 440.0, 500.0, 550.0, 600.0, 700.0, 800.0, 900.0, 1000.0)
DEFAULT_STARS = {  # (teff K, logg dex, [M/H] dex): red-clump giant, RGB, K and G dwarfs
    "teff": (4750.0, 4400.0, 5000.0, 5800.0), "logg": (2.4, 1.8, 4.5, 4.4), "m_h": (0.0, -0.5, 0.0, 0.0)}
DEFAULT_EBV = tuple(np.linspace(0.05, 0.5, 10))


def ccm89_odonnell94(wavelength_nm, r_v: float = 3.1) -> np.ndarray:
    """A(lambda)/A(V) of Cardelli, Clayton & Mathis 1989 (ApJ 345, 245), optical part of
    O'Donnell 1994 (ApJ 422, 158); valid for 303-3333 nm (x = 0.3-3.3 per micron)."""
    x = 1000.0 / np.asarray(wavelength_nm, dtype=np.float64)      # inverse microns
    if np.any((x < 0.3) | (x > 3.3)):
        raise ValueError("ccm89_odonnell94 is implemented for 303-3333 nm only")
    a, b = np.empty_like(x), np.empty_like(x)
    ir = x < 1.1
    a[ir], b[ir] = 0.574 * x[ir] ** 1.61, -0.527 * x[ir] ** 1.61
    y = x[~ir] - 1.82
    a[~ir] = np.polyval([-0.505, 1.647, -0.827, -1.718, 1.137, 0.701, -0.609, 0.104, 1.0], y)
    b[~ir] = np.polyval([3.347, -10.805, 5.491, 11.102, -7.985, -3.989, 2.908, 1.952, 0.0], y)
    return a + b / r_v


def magnitude_slope(ebv, flux) -> np.ndarray:
    """Least-squares slope of -2.5 log10(flux) against E(B-V), per star and pixel.

    ebv : [K] E(B-V) values, mag (K >= 2, not all equal).
    flux : [M, K, P] spectra at those E(B-V); pixels with flux <= 0 at any E are NaN.
    returns : [M, P] d mag / d E(B-V).
    """
    ebv = np.asarray(ebv, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if ebv.ndim != 1 or ebv.size < 2 or np.ptp(ebv) == 0:
        raise ValueError("ebv must hold at least two different values")
    if flux.ndim != 3 or flux.shape[1] != ebv.size:
        raise ValueError(f"flux must be [M, {ebv.size}, P], got {flux.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(flux), np.nan)    # [M, K, P]
    de = ebv - ebv.mean()
    return np.einsum("k,mkp->mp", de, mag - mag.mean(axis=1, keepdims=True)) / np.sum(de ** 2)


class ExtinctionCurve(NamedTuple):
    wavelength_nm: np.ndarray     # [P]
    ebv: np.ndarray               # [K] E(B-V) grid used, mag
    slope: np.ndarray             # [M, P] d(-2.5 log10 F_gnorm)/dE(B-V) = k(lambda) - k_G per star
    excess: np.ndarray            # [M, P] E(lambda-550)/E(B-V) per token unit: slope - slope(550)
    excess_normalised: np.ndarray  # [P] median over stars of excess / excess(440): E(l-V)/E(B-V)
    b_minus_v: np.ndarray         # [M] E(440-550) per unit of the model's E(B-V) token

    def a_over_a550(self, r_v: float = 3.1) -> np.ndarray:
        """[P] A(lambda)/A(550 nm) implied by the normalised excess curve for this R_V."""
        return 1.0 + self.excess_normalised / r_v


def extinction_curve(model, teff=DEFAULT_STARS["teff"], logg=DEFAULT_STARS["logg"],
                     m_h=DEFAULT_STARS["m_h"], *, ebv=DEFAULT_EBV, device: str = "cpu") -> ExtinctionCurve:
    """The model's extinction curve at M parameter sets (teff/logg/m_h scalars or [M]).

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    teff, logg, m_h : K, dex, dex; the stars whose spectra are reddened.
    ebv : [K] E(B-V) values in mag (> 0: the token is ln E(B-V)); the slope is fitted
        over them, so a range where the model is well trained is best.
    """
    from .generate import generate_xp

    model = as_model(model)
    ebv = np.asarray(ebv, dtype=np.float64)
    if ebv.ndim != 1 or np.any(~np.isfinite(ebv) | (ebv <= 0)):
        raise ValueError("ebv must be a 1-d grid of positive E(B-V) values (mag)")
    teff, logg, m_h = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                            for v in (teff, logg, m_h)))
    m, k = teff.size, ebv.size
    gen = generate_xp(model, np.repeat(teff, k), np.repeat(logg, k), np.repeat(m_h, k),
                      logebv=np.tile(np.log(ebv), m), device=device)
    wl = gen.wavelength_nm
    slope = magnitude_slope(ebv, gen.flux.reshape(m, k, -1))
    excess = slope - _at(wl, slope, V_NM)[:, None]
    b_minus_v = _at(wl, excess, B_NM)
    with warnings.catch_warnings():   # pixels with flux <= 0 are NaN by design (untrained models)
        warnings.simplefilter("ignore", RuntimeWarning)
        normalised = np.nanmedian(excess / b_minus_v[:, None], axis=0)
    return ExtinctionCurve(wl, ebv, slope, excess, normalised, b_minus_v)


def summary_table(curve: ExtinctionCurve, r_v: float = 3.1, wavelengths=REPORT_NM) -> list[dict]:
    """Rows per wavelength: model vs CCM89/O'Donnell94 E(l-V)/E(B-V) and A(l)/A(550)."""
    law_a = ccm89_odonnell94(curve.wavelength_nm, r_v)
    law_a550 = law_a / np.interp(V_NM, curve.wavelength_nm, law_a)
    law_excess = r_v * (law_a550 - 1.0)
    model_a = curve.a_over_a550(r_v)
    return [{"wavelength_nm": float(w),
             "excess_model": float(np.interp(w, curve.wavelength_nm, curve.excess_normalised)),
             "excess_law": float(np.interp(w, curve.wavelength_nm, law_excess)),
             "a_over_a550_model": float(np.interp(w, curve.wavelength_nm, model_a)),
             "a_over_a550_law": float(np.interp(w, curve.wavelength_nm, law_a550))} for w in wavelengths]


def plot_extinction(path, curve: ExtinctionCurve, r_v: float = 3.1) -> Path:
    """Colour-excess curve per star and median, and A(l)/A(550), against CCM89 R_V=3.1."""
    plt = pyplot()
    wl = curve.wavelength_nm
    law = ccm89_odonnell94(wl, r_v)
    law = law / np.interp(V_NM, wl, law)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    for e, bv in zip(curve.excess, curve.b_minus_v):
        ax.plot(wl, e / bv, color="tab:red", alpha=0.3, lw=0.8)
    ax.plot(wl, curve.excess_normalised, color="tab:red", lw=2, label="lamfast (median over stars)")
    ax.plot(wl, r_v * (law - 1.0), "k--", lw=1.5, label=f"CCM89 + O'Donnell94, R_V={r_v}")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set(xlabel="wavelength [nm]", ylabel="E(λ - 550 nm) / E(440 - 550 nm)",
           title=f"learned colour-excess curve ({len(curve.excess)} stars, E(B-V) {curve.ebv.min():.2f}-{curve.ebv.max():.2f})")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(wl, curve.a_over_a550(r_v), color="tab:red", lw=2, label=f"lamfast (assuming R_V={r_v})")
    ax.plot(wl, law, "k--", lw=1.5, label="CCM89 + O'Donnell94")
    ax.set(xlabel="wavelength [nm]", ylabel="A(λ) / A(550 nm)", title="implied extinction curve")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _at(wl, curves, nm) -> np.ndarray:
    """[M] values of [M, P] curves at wavelength ``nm`` (linear interpolation)."""
    return np.array([np.interp(nm, wl, c) for c in curves])
