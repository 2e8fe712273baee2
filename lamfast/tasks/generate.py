"""Generate Gaia XP spectra from stellar parameters (the paper's Sec. 5.2 task).

The model is asked for all 110 coefficients (gnorm units: divided by the star's G-band
flux in e-/s) given Teff, logg, [M/H] and optionally the extinction token and colours;
:func:`lamfast.xp.sample` turns them into a spectrum on the DR3 grid (336-1020 nm, 2 nm)
and propagates the predicted coefficient uncertainties (treated as independent: the model
predicts a marginal Gaussian per requested token, not a joint one).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .common import (
    GAUSSIAN_MEDIAN_ABS_Z,
    XP_TOKENS,
    as_model,
    common_length,
    inputs_from,
    predict_arrays,
    pyplot,
    save_figure,
)


class GeneratedXP(NamedTuple):
    coefficients: np.ndarray        # [N, 110] gnorm units, BP 0-54 then RP 0-54
    coefficient_errors: np.ndarray  # [N, 110] predicted 1-sigma
    flux: np.ndarray                # [N, 343] W m^-2 nm^-1 per (e-/s of G-band flux)
    flux_error: np.ndarray          # [N, 343] 1-sigma, propagated from coefficient_errors
    wavelength_nm: np.ndarray       # [343] 336 ... 1020 nm


def generate_xp(model, teff, logg, m_h, *, logebv=None, bprp=None, jh=None, jk=None,
                device: str = "cpu") -> GeneratedXP:
    """XP coefficients and sampled spectra of stars with the given parameters.

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    teff : [N] or scalar, K.  logg : [N] or scalar, dex (cgs).  m_h : [N] or scalar, dex.
    logebv : ln E(B-V) (E(B-V) in mag), optional; omitted -> the model marginalises over
        the extinction of its training stars.
    bprp, jh, jk : colours in mag, optional. NaN anywhere = not given for that star.
    device : torch device for the model.

    Returns
    -------
    GeneratedXP(coefficients [N, 110], coefficient_errors [N, 110], flux [N, 343],
    flux_error [N, 343], wavelength_nm [343]).
    """
    from ..xp import sample

    model = as_model(model)
    given = {"teff": teff, "logg": logg, "m_h": m_h, "logebv": logebv, "bprp": bprp, "jh": jh, "jk": jk}
    n = common_length(**given)
    values, columns = inputs_from(n, given)
    coefficients, errors = predict_arrays(model, values, columns, XP_TOKENS, device=device)
    spectra = sample(coefficients, errors)
    return GeneratedXP(coefficients, errors, spectra.flux, spectra.error, spectra.wavelength_nm)


def compare_with_observed(model, catalog, *, inputs=("teff", "logg", "m_h", "logebv"),
                          device: str = "cpu") -> dict:
    """Generate the catalogue's stars from their labels and score against their XP coefficients.

    Stars need every ``inputs`` column present. Per coefficient k, with residual
    r = observed - generated, predicted error s and observed error e:

    - ``median_abs_z_model[k]``  = median |r| / s (0.674 if s is a calibrated Gaussian error
      and the observations were noiseless),
    - ``median_abs_z_total[k]``  = median |r| / sqrt(s^2 + e^2) (0.674 when calibrated),

    as lists of 110 (BP 0-54 then RP 0-54), plus ``stars`` and summary medians.
    """
    model = as_model(model)
    cat = catalog.select(list(inputs) + list(XP_TOKENS))
    keep = np.all(np.isfinite(cat.values[:, :len(inputs)]), axis=1)
    if not keep.any():
        raise ValueError(f"no star of the catalogue has all of {list(inputs)}")
    cat = cat.rows(keep)
    gen = generate_xp(model, **{k: cat.column(k) for k in inputs}, device=device)
    observed = cat.values[:, len(inputs):].astype(np.float64)
    observed_err = cat.errors[:, len(inputs):].astype(np.float64)
    r = np.abs(observed - gen.coefficients)
    z_model = np.nanmedian(r / gen.coefficient_errors, axis=0)
    z_total = np.nanmedian(r / np.hypot(gen.coefficient_errors, observed_err), axis=0)
    return {"stars": int(keep.sum()), "inputs": list(inputs),
            "median_abs_z_model": z_model.tolist(), "median_abs_z_total": z_total.tolist(),
            "median_over_coefficients_z_model": float(np.nanmedian(z_model)),
            "median_over_coefficients_z_total": float(np.nanmedian(z_total)),
            "gaussian_reference": GAUSSIAN_MEDIAN_ABS_Z,
            "_generated": gen, "_catalog": cat}


def plot_comparison(path, result: dict, n_stars: int = 4) -> Path:
    """Generated vs observed spectra of a few stars (spread in Teff) + per-coefficient |z|."""
    from ..xp import sample

    plt = pyplot()
    gen, cat = result["_generated"], result["_catalog"]
    teff = cat.column("teff")
    picks = np.argsort(teff)[np.linspace(0, len(teff) - 1, min(n_stars, len(teff))).astype(int)]
    obs = sample(cat.select(XP_TOKENS).values[picks], cat.select(XP_TOKENS).errors[picks])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    wl = gen.wavelength_nm
    for j, (i, colour) in enumerate(zip(picks, plt.cm.plasma(np.linspace(0.05, 0.85, len(picks))))):
        scale = np.nanmax(obs.flux[j])
        ax.plot(wl, obs.flux[j] / scale + j * 0.6, color="k", lw=1.0, label="observed XP" if j == 0 else None)
        f, e = gen.flux[i] / scale + j * 0.6, gen.flux_error[i] / scale
        ax.plot(wl, f, color=colour, lw=1.2, ls="--")
        ax.fill_between(wl, f - e, f + e, color=colour, alpha=0.3)
        lab = f"Teff {cat.column('teff')[i]:.0f} K, logg {cat.column('logg')[i]:.2f}, [M/H] {cat.column('m_h')[i]:+.2f}"
        ax.text(1015, j * 0.6 + 0.05, lab, ha="right", fontsize=7, color=colour)
    ax.set(xlabel="wavelength [nm]", ylabel="flux / max(observed) + offset",
           title="generated (dashed, ±1σ band) vs observed XP spectra")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    k = np.arange(110)
    ax.bar(k, result["median_abs_z_total"], color=np.where(k < 55, "tab:blue", "tab:red"), width=0.9)
    ax.axhline(result["gaussian_reference"], color="k", ls=":", label="calibrated Gaussian (0.674)")
    ax.set(xlabel="coefficient (BP 0-54 | RP 0-54)", ylabel="median |obs - gen| / σ_total",
           title=f"{result['stars']} stars, inputs {', '.join(result['inputs'])}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
