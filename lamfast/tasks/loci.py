"""Stellar loci the model learned (the paper's Sec. 5.1 task).

Sweep one quantity over a grid (e.g. Teff), hold others fixed (e.g. [M/H], a low
extinction) and ask the model for the rest (logg, colours, coefficients): the
predictions trace the empirical relations among its training stars, such as the giant
branch in the Kiel diagram or the stellar locus in colour-colour space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .common import as_model, inputs_from, predict_arrays, pyplot

DEFAULT_REQUEST = ("logg", "bprp", "jh", "jk")
METALLICITIES = (-1.0, -0.5, 0.0, 0.3)
LOW_EXTINCTION = float(np.log(0.02))        # logebv of E(B-V) = 0.02 mag


class Locus(NamedTuple):
    sweep: str                  # the swept token
    grid: np.ndarray            # [K] its values, strictly monotone
    fixed: dict                 # token -> fixed value
    request: list               # R predicted token names
    value: np.ndarray           # [K, R] predictions, physical units
    error: np.ndarray           # [K, R] predicted 1-sigma

    def column(self, name: str) -> np.ndarray:
        """[K] values of ``name`` along the locus (swept, fixed or predicted)."""
        if name == self.sweep:
            return self.grid
        if name in self.fixed:
            return np.full(len(self.grid), float(self.fixed[name]))
        if name in self.request:
            return self.value[:, self.request.index(name)]
        raise KeyError(f"{name!r} is neither swept, fixed nor requested on this locus")


def trace_locus(model, sweep: str, grid, *, fixed: Mapping[str, float] | None = None,
                request: Sequence[str] = DEFAULT_REQUEST, device: str = "cpu") -> Locus:
    """Predict ``request`` along ``grid`` values of the token ``sweep``.

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    sweep : token name swept (e.g. ``"teff"``).
    grid : [K] strictly monotone values of it (physical units).
    fixed : token -> scalar held fixed (e.g. ``{"m_h": 0.0, "logebv": ln 0.02}``).
    request : tokens to predict; none may be swept or fixed.

    Returns
    -------
    Locus(sweep, grid [K], fixed, request, value [K, R], error [K, R]).
    """
    model = as_model(model)
    grid = np.asarray(grid, dtype=np.float64)
    fixed = dict(fixed or {})
    request = list(request)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("grid must be a non-empty 1-d array of finite values")
    d = np.diff(grid)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError(f"grid of {sweep!r} must be strictly monotone")
    clash = {sweep, *fixed} & set(request)
    if clash or sweep in fixed:
        raise ValueError(f"a token cannot be both given and requested: {sorted(clash or {sweep})}")
    values, columns = inputs_from(grid.size, {sweep: grid, **fixed})
    value, error = predict_arrays(model, values, columns, request, device=device)
    return Locus(sweep, grid, fixed, request, value, error)


def giant_branch(model, metallicities=METALLICITIES, *, teff=(3700.0, 5300.0), n: int = 40,
                 logebv: float = LOW_EXTINCTION, request: Sequence[str] = DEFAULT_REQUEST,
                 device: str = "cpu") -> list[Locus]:
    """Teff swept (cool to hot) at each [M/H] with a low extinction: one locus per [M/H]."""
    grid = np.linspace(teff[0], teff[1], n)
    return [trace_locus(model, "teff", grid, fixed={"m_h": mh, "logebv": logebv}, request=request, device=device)
            for mh in metallicities]


def locus_scatter(locus: Locus, catalog, x: str, y: str) -> float:
    """Median |y_star - y_locus(x_star)| of catalogue stars within the locus' x range and
    fixed [M/H] ± 0.15 dex (if fixed): how closely the locus follows the data."""
    xs, ys = catalog.column(x).astype(np.float64), catalog.column(y).astype(np.float64)
    lx, ly = locus.column(x), locus.column(y)
    order = np.argsort(lx)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs >= lx.min()) & (xs <= lx.max())
    if "m_h" in locus.fixed:
        keep &= np.abs(catalog.column("m_h") - locus.fixed["m_h"]) < 0.15
    if not keep.any():
        return float("nan")
    return float(np.median(np.abs(ys[keep] - np.interp(xs[keep], lx[order], ly[order]))))


def plot_loci(path, loci: Sequence[Locus], catalog=None) -> Path | None:
    """Kiel diagram and colour-colour planes of the loci over the catalogue's stars."""
    plt = pyplot()
    if plt is None:
        return None
    panels = [("teff", "logg"), ("jk", "jh"), ("bprp", "jk")]
    panels = [p for p in panels if all(_has(lo, n) for lo in loci for n in p)]
    if not panels:
        raise ValueError("the loci lack the quantities to plot (teff/logg, jh/jk, bprp/jk)")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(loci)))
    for ax, (x, y) in zip(axes[0], panels):
        if catalog is not None:
            ax.scatter(catalog.column(x), catalog.column(y), s=2, c="0.6", alpha=0.5, label="sample stars")
        for lo, col in zip(loci, colours):
            lx, ly = lo.column(x), lo.column(y)
            label = ", ".join(f"{k}={v:+.2f}" if k == "m_h" else f"{k}={v:.2f}" for k, v in lo.fixed.items())
            ax.plot(lx, ly, color=col, lw=2, label=label)
            if x == lo.sweep and y in lo.request:       # a band only where x is exact
                e = lo.error[:, lo.request.index(y)]
                ax.fill_between(lx, ly - e, ly + e, color=col, alpha=0.2)
            elif x in lo.request and y in lo.request:    # both predicted: a few 1-sigma crosses
                step = max(1, len(lx) // 6)
                ax.errorbar(lx[::step], ly[::step], xerr=lo.error[::step, lo.request.index(x)],
                            yerr=lo.error[::step, lo.request.index(y)], fmt="none", ecolor=col, alpha=0.5)
        ax.set(xlabel=x, ylabel=y)
        if (x, y) == ("teff", "logg"):
            ax.set(xlim=(7000, 3300), ylim=(5.2, 0.0), xlabel="Teff [K]", ylabel="logg [dex]")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"loci: {loci[0].sweep} swept; band / bars = ±1σ predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _has(locus: Locus, name: str) -> bool:
    return name == locus.sweep or name in locus.fixed or name in locus.request
