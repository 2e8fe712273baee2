"""Inpaint missing XP coefficients (the paper's Sec. 5.3 task), with a linear baseline.

The model sees the coefficients a star has (and any other tokens given) and is asked for
the ones it lacks. The baseline the issue asks for is a per-coefficient linear
least-squares regression from the given coefficients, fitted on training stars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..stats import robust_scatter
from .common import (
    GAUSSIAN_MEDIAN_ABS_Z,
    XP_TOKENS,
    as_model,
    predict_arrays,
    pyplot,
    save_figure,
)

DEFAULT_GIVEN = tuple(f"bp{i}" for i in range(10)) + tuple(f"rp{i}" for i in range(10))


class Inpainted(NamedTuple):
    coefficients: np.ndarray   # [N, 110] given values kept, missing ones predicted
    errors: np.ndarray         # [N, 110] predicted 1-sigma where predicted, NaN where given
    predicted: np.ndarray      # [N, 110] bool, True where the value is the model's


def inpaint(model, coefficients, *, others: Mapping[str, np.ndarray] | None = None,
            device: str = "cpu") -> Inpainted:
    """Fill the NaN coefficients of each star from the ones it has.

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    coefficients : [N, 110] gnorm XP coefficients (BP 0-54 then RP 0-54), NaN = to predict.
        The model reads at most ``config.context_length`` present values per star (first
        in BP-then-RP order).
    others : extra inputs by token name (e.g. ``{"bprp": [N], "jh": [N]}``), optional.
    device : torch device for the model.

    Returns
    -------
    Inpainted(coefficients [N, 110], errors [N, 110], predicted [N, 110] bool).
    """
    model = as_model(model)
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != len(XP_TOKENS):
        raise ValueError(f"coefficients must be [N, {len(XP_TOKENS)}] (BP 0-54 then RP 0-54), got {c.shape}")
    columns, blocks = list(XP_TOKENS), [c]
    for name, v in (others or {}).items():
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (len(c),):
            raise ValueError(f"others[{name!r}] must have {len(c)} values, got shape {v.shape}")
        columns.append(name)
        blocks.append(v[:, None])
    missing = np.isnan(c)
    filled, errors = c.copy(), np.full(c.shape, np.nan)
    todo = np.flatnonzero(missing.any(axis=0))           # only request coefficients someone lacks
    if todo.size and len(c):
        value, error = predict_arrays(model, np.concatenate(blocks, axis=1), columns,
                                      [XP_TOKENS[k] for k in todo], device=device)
        sub = missing[:, todo]
        filled[:, todo] = np.where(sub, value, c[:, todo])
        errors[:, todo] = np.where(sub, error, np.nan)
    return Inpainted(filled, errors, missing)


class LinearBaseline:
    """Per-target ordinary least squares with an intercept: y_k ~ a_k + X @ b_k.

    Each target is fitted on the rows where all inputs and that target are finite.
    """

    def __init__(self):
        self.coef_: np.ndarray | None = None   # [P + 1, M]: intercept row, then one row per input

    def fit(self, x, y) -> LinearBaseline:
        """x : [N, P] inputs; y : [N, M] targets (NaN = unknown for that target)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be [N, P] and y [N, M] with the same N, got {x.shape}, {y.shape}")
        design = np.column_stack([np.ones(len(x)), x])
        ok_x = np.all(np.isfinite(x), axis=1)
        self.coef_ = np.full((design.shape[1], y.shape[1]), np.nan)
        for k in range(y.shape[1]):
            rows = ok_x & np.isfinite(y[:, k])
            if rows.sum() < design.shape[1]:
                raise ValueError(f"target {k}: {rows.sum()} complete rows for {design.shape[1]} "
                                 "parameters; need at least as many rows as parameters")
            self.coef_[:, k] = np.linalg.lstsq(design[rows], y[rows, k], rcond=None)[0]
        return self

    def predict(self, x) -> np.ndarray:
        """[N, P] -> [N, M] (NaN rows where an input is NaN)."""
        if self.coef_ is None:
            raise ValueError("LinearBaseline.predict called before fit")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.coef_.shape[0] - 1:
            raise ValueError(f"x must be [N, {self.coef_.shape[0] - 1}], got {x.shape}")
        return np.column_stack([np.ones(len(x)), x]) @ self.coef_


def evaluate_inpainting(model, catalog, *, given: Sequence[str] = DEFAULT_GIVEN,
                        fit_fraction: float = 0.5, seed: int = 0, device: str = "cpu") -> dict:
    """Inpaint the catalogue's stars from ``given`` coefficients; score model and baseline.

    Stars with all ``given`` coefficients are split at random (``seed``) into a fitting
    part (``fit_fraction``, for the linear baseline only) and an evaluation part. On the
    evaluation stars, per target coefficient k (the 110 minus the given):

    - ``scatter_model[k]``, ``scatter_baseline[k]``: robust scatter (mad_std) of
      observed - predicted, divided by the robust scatter of the observed coefficient
      itself (1 = no better than the population spread, 0 = perfect);
    - ``median_abs_z_model[k]``: median |observed - predicted| / sqrt(s^2 + e^2).

    Plus medians over targets, the fraction of targets where the model beats the
    baseline, and spectrum-level errors: median over stars of
    median_pixels |flux_pred - flux_obs| / max(flux_obs).
    """
    from ..xp import sample

    model = as_model(model)
    given = list(given)
    unknown = [t for t in XP_TOKENS if t not in given]
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    if not given or len(given) == len(XP_TOKENS) or any(g not in XP_TOKENS for g in given):
        raise ValueError("given must be a non-empty proper subset of the XP coefficient names")
    cat = catalog.select(list(XP_TOKENS))
    gi = [XP_TOKENS.index(g) for g in given]
    ui = [XP_TOKENS.index(u) for u in unknown]
    complete = np.flatnonzero(np.all(np.isfinite(cat.values[:, gi]), axis=1))
    order = np.random.default_rng(seed).permutation(complete)
    n_fit = round(fit_fraction * len(order))
    fit_rows, eval_rows = np.sort(order[:n_fit]), np.sort(order[n_fit:])
    if len(eval_rows) == 0:
        raise ValueError("no stars left to evaluate on")
    obs = cat.values.astype(np.float64)
    obs_err = cat.errors.astype(np.float64)
    baseline = LinearBaseline().fit(obs[fit_rows][:, gi], obs[fit_rows][:, ui])
    truth = obs[eval_rows]
    partial = np.full_like(truth, np.nan)
    partial[:, gi] = truth[:, gi]
    result = inpaint(model, partial, device=device)
    pred_model = result.coefficients[:, ui]
    pred_base = baseline.predict(truth[:, gi])
    spread = robust_scatter(truth[:, ui], axis=0)
    s_model = robust_scatter(truth[:, ui] - pred_model, axis=0) / spread
    s_base = robust_scatter(truth[:, ui] - pred_base, axis=0) / spread
    z = np.nanmedian(np.abs(truth[:, ui] - pred_model) / np.hypot(result.errors[:, ui], obs_err[eval_rows][:, ui]),
                     axis=0)
    full_base = truth.copy()
    full_base[:, ui] = pred_base
    f_obs, f_model, f_base = (sample(np.nan_to_num(c, nan=0.0)).flux
                              for c in (truth, result.coefficients, full_base))
    peak = np.max(np.abs(f_obs), axis=1, keepdims=True)
    return {"given": given, "fit_stars": len(fit_rows), "eval_stars": len(eval_rows),
            "targets": unknown, "scatter_model": s_model.tolist(), "scatter_baseline": s_base.tolist(),
            "median_abs_z_model": z.tolist(),
            "median_scatter_model": float(np.nanmedian(s_model)),
            "median_scatter_baseline": float(np.nanmedian(s_base)),
            "fraction_model_better": float(np.mean(s_model < s_base)),
            "median_abs_z": float(np.nanmedian(z)), "gaussian_reference": GAUSSIAN_MEDIAN_ABS_Z,
            "spectrum_error_model": float(np.median(np.median(np.abs(f_model - f_obs) / peak, axis=1))),
            "spectrum_error_baseline": float(np.median(np.median(np.abs(f_base - f_obs) / peak, axis=1))),
            "_spectra": (f_obs, f_model, f_base), "_eval_rows": eval_rows, "_catalog": catalog}


def plot_inpainting(path, result: dict) -> Path:
    """Per-coefficient scatter (model vs baseline) and two example stars' spectra."""
    from ..xp import load_basis

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    k = np.array([XP_TOKENS.index(t) for t in result["targets"]])
    ax.plot(k, result["scatter_baseline"], "s", ms=3, color="0.5", label="linear regression baseline")
    ax.plot(k, result["scatter_model"], "o", ms=3, color="tab:red", label="lamfast")
    ax.axvline(54.5, color="k", lw=0.5)
    ax.set(yscale="log", xlabel="coefficient (BP 0-54 | RP 0-54)",
           ylabel="robust scatter of residual / population scatter",
           title=f"inpainting from {len(result['given'])} coefficients, {result['eval_stars']} stars")
    ax.legend(fontsize=8)
    ax = axes[1]
    f_obs, f_model, f_base = result["_spectra"]
    wl = load_basis().wavelength_nm
    for j, i in enumerate((0, len(f_obs) // 2)):
        scale, off = f_obs[i].max(), 1.1 * j
        ax.plot(wl, f_obs[i] / scale + off, "k", lw=1.2, label="observed" if j == 0 else None)
        ax.plot(wl, f_model[i] / scale + off, "tab:red", ls="--", label="lamfast inpainted" if j == 0 else None)
        ax.plot(wl, f_base[i] / scale + off, color="0.5", ls=":", label="baseline" if j == 0 else None)
    ax.set(xlabel="wavelength [nm]", ylabel="flux / max + offset", title="spectra from inpainted coefficients")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
