"""Stellar loci the model learned (the paper's Sec. 5.1 task).

Sweep one quantity over a grid, hold others fixed ([M/H], an extinction) and ask the
model for the rest (Teff or logg, colours, coefficients): the predictions trace the
empirical relations among its training stars, such as the giant branch and the main
sequence in the Kiel diagram or the stellar locus in colour-colour space.

Why two ways of tracing a branch
--------------------------------
The model predicts one Gaussian per requested token. Given only Teff, [M/H] and E(B-V)
a cool star may be a dwarf or a giant, so the prediction of logg falls *between* the two
branches with a wide error (the former Teff sweep at E(B-V) = 0.02 missed the giants of
the bundled sample by 0.5-1.3 dex in logg, 250-1000 K in Teff, depending on [M/H]). A
locus is well defined only where the swept quantity fixes the star's place on one branch:

- **Giant branch** (:func:`giant_branch`): sweep *logg* (3.5 -> 1.0 dex) and request
  Teff and colours. At fixed [M/H] logg runs monotonically along the red-giant branch
  and Teff(logg) is single-valued there (the red clump sits ~100 K to the hot side), so
  the Gaussian mean is the branch itself: a plain :func:`trace_locus`.
- **Main sequence** (:func:`main_sequence`): logg is nearly flat along the dwarf
  sequence, so a logg sweep cannot locate it, while a Teff sweep is bimodal in logg.
  :func:`trace_branch` sweeps Teff and solves for a *self-consistent* logg: for trial
  logg values x in a window (the dwarf window 3.6-5.2 dex) the model generates the
  star's observables (XP coefficients bp0..29, rp0..29 and J-H) from (Teff, x,
  [M/H], E(B-V)) and reads logg back from them, f(x). A real star of the model's
  population is a fixed point f(x) = x; off the branch the read-back regresses toward
  where training stars are, so stable fixed points (f - x changing sign from + to -)
  mark the branch. The window picks the branch; where the model knows no such star
  (e.g. cool metal-rich dwarfs, absent from APOGEE) there is no fixed point and the
  locus is NaN rather than a made-up value. The generated tokens plus the given ones
  fit the model's 64-token context, which is why ``via`` is the headline XP + J-H set.

Colours: the model is trained never to predict ``bprp`` or ``jk`` (inputs only, as in the
paper), so the loci use the trained J-H and the XP colour index -2.5 log10(bp0 / rp0)
(``xp_colour``, a proxy of G_BP - G_RP), computed the same way for catalogue stars.

Each family is held at an extinction typical of its stars (APOGEE giants are distant:
median E(B-V) ~0.2 in the bundled sample; dwarfs nearby, ~0.04), because the model's
prediction at fixed E(B-V) is an average over the training stars at that extinction.

:func:`locus_scatter` measures how closely a locus follows catalogue stars of the same
[M/H]: median |y_star - y_locus(x_star)| with x the quantity exact along the branch
(giants: Teff offset at the star's logg; dwarfs: logg offset at the star's Teff). On
the shipped default model and the bundled sample: giant branch 91-116 K, main sequence
0.14-0.18 dex ([M/H] = -0.5..+0.3; -1.0 has 21 giants and a single dwarf).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..vocab import HEADLINE_INPUTS, PAPER_NON_OUTPUTS
from .common import as_model, inputs_from, predict_arrays, pyplot, save_figure

# bprp and jk are never training outputs (the paper's recipe): their heads are untrained, so
# the loci request the trained jh and the XP colour index (bp0, rp0) instead (see DERIVED).
COLOURS = ("jh", "bp0", "rp0")
DEFAULT_REQUEST = ("logg", *COLOURS)
GENERATED = tuple(t for t in HEADLINE_INPUTS if t not in PAPER_NON_OUTPUTS)   # bp0..29, rp0..29, jh
METALLICITIES = (-1.0, -0.5, 0.0, 0.3)
LOW_EXTINCTION = float(np.log(0.02))        # logebv of E(B-V) = 0.02 mag (the former Teff-sweep recipe)
GIANT_EXTINCTION = float(np.log(0.15))      # typical of APOGEE giants (distant, in the disc)
DWARF_EXTINCTION = float(np.log(0.04))      # typical of APOGEE dwarfs (nearby)
DWARF_WINDOW = (3.6, 5.2)                   # logg [dex] searched for main-sequence solutions
DWARF_LOGG = 3.8                            # dwarfs for scoring: APOGEE logg above this [dex]
M_H_MATCH = 0.15                            # stars within this of a locus' [M/H] are compared [dex]

# Quantities computed from predicted tokens, for loci and catalogues alike: name -> (inputs,
# value(*inputs), error(*inputs, *input_errors)). xp_colour = -2.5 log10(bp0 / rp0) [mag] is the
# colour of the first XP coefficients; it tracks G_BP - G_RP (on the bundled sample
# bprp = 1.21 xp_colour + 0.87 with 0.025 mag robust scatter) but needs only trained outputs.
_MAG = 2.5 / np.log(10.0)
DERIVED = {
    "xp_colour": (("bp0", "rp0"), lambda bp, rp: -2.5 * np.log10(bp / rp),
                  lambda bp, rp, ebp, erp: _MAG * np.hypot(ebp / bp, erp / rp)),
}


class Locus(NamedTuple):
    sweep: str                  # the swept token
    grid: np.ndarray            # [K] its values, strictly monotone
    fixed: dict                 # token -> fixed value
    request: list               # R predicted token names
    value: np.ndarray           # [K, R] predictions, physical units (NaN: no solution there)
    error: np.ndarray           # [K, R] predicted 1-sigma
    name: str = ""              # the family, e.g. "giant branch"

    def column(self, name: str) -> np.ndarray:
        """[K] values of ``name`` along the locus (swept, fixed or predicted)."""
        if name == self.sweep:
            return self.grid
        if name in self.fixed:
            return np.full(len(self.grid), float(self.fixed[name]))
        if name in self.request:
            return self.value[:, self.request.index(name)]
        if name in DERIVED:
            inputs, value, _ = DERIVED[name]
            with np.errstate(invalid="ignore", divide="ignore"):
                return value(*(self.column(n) for n in inputs))
        raise KeyError(f"{name!r} is neither swept, fixed, requested nor derived on this locus")

    def column_error(self, name: str) -> np.ndarray | None:
        """[K] predicted 1-sigma of ``name``, or None where it is given exactly."""
        if name in self.request:
            return self.error[:, self.request.index(name)]
        if name in DERIVED and any(n in self.request for n in DERIVED[name][0]):
            inputs, _, error = DERIVED[name]
            errs = [self.column_error(n) for n in inputs]
            errs = [np.zeros(len(self.grid)) if e is None else e for e in errs]
            with np.errstate(invalid="ignore", divide="ignore"):
                return error(*(self.column(n) for n in inputs), *errs)
        return None


class LocusFit(NamedTuple):
    median_abs_offset: float    # median |y_star - y_locus(x_star)|, units of y (NaN: no stars)
    stars: int                  # catalogue stars compared


def trace_locus(model, sweep: str, grid, *, fixed: Mapping[str, float] | None = None,
                request: Sequence[str] = DEFAULT_REQUEST, device: str = "cpu") -> Locus:
    """Predict ``request`` along ``grid`` values of the token ``sweep``.

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    sweep : token name swept (e.g. ``"logg"``).
    grid : [K] strictly monotone values of it (physical units).
    fixed : token -> scalar held fixed (e.g. ``{"m_h": 0.0, "logebv": ln 0.15}``).
    request : tokens to predict; none may be swept or fixed.

    Returns
    -------
    Locus(sweep, grid [K], fixed, request, value [K, R], error [K, R]).
    """
    model = as_model(model)
    grid, fixed, request = _check(sweep, grid, fixed, request)
    values, columns = inputs_from(grid.size, {sweep: grid, **fixed})
    value, error = predict_arrays(model, values, columns, request, device=device)
    return Locus(sweep, grid, fixed, request, value, error)


def trace_branch(model, sweep: str, grid, *, solve: str = "logg", window=DWARF_WINDOW,
                 start: float | None = None, fixed: Mapping[str, float] | None = None,
                 request: Sequence[str] = COLOURS, via: Sequence[str] = GENERATED,
                 steps: int = 33, device: str = "cpu") -> Locus:
    """Sweep ``sweep`` and solve for the self-consistent ``solve`` inside ``window``.

    At each grid point and each of ``steps`` trial values x of ``solve`` in ``window``
    the model generates the ``via`` tokens from (sweep, x, fixed), then predicts
    ``solve`` back from (sweep, fixed, via): f(x). The locus takes the stable fixed point
    (f - x crossing zero from above, linearly interpolated between trials) nearest to
    ``start``; NaN where ``window`` holds none. The other ``request`` tokens are then
    predicted from (sweep, solution, fixed). Two model calls of K * steps rows, one of K.

    Parameters
    ----------
    model : a :class:`lamfast.LAM`, ``"default"`` or a model folder.
    sweep : token swept (e.g. ``"teff"``); grid : [K] strictly monotone values of it.
    solve : token solved for (e.g. ``"logg"``); window : (low, high) searched, its units.
    start : preferred solution where several are stable (default: the window's middle).
    fixed : token -> scalar held fixed; request : tokens predicted at the solution.
    via : observables generated and read back (default: the headline inputs the model
          was trained to predict: bp0..29, rp0..29, jh); steps : trial values (>= 3).

    Returns
    -------
    Locus with request = [solve, *request]: value [K, 1+R]; the error of ``solve`` is the
    model's 1-sigma when reading it back from the generated observables.
    """
    model = as_model(model)
    grid, fixed, request = _check(sweep, grid, fixed, request, solve)
    via = list(via)
    low, high = (float(w) for w in window)
    start = 0.5 * (low + high) if start is None else float(start)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"window of {solve!r} must be (low, high) with low < high, got {window}")
    if not low <= start <= high:
        raise ValueError(f"start {start} lies outside the window {window}")
    if int(steps) < 3:
        raise ValueError(f"steps must be >= 3, got {steps}")
    clash = {sweep, solve, *fixed} & set(via)
    if clash:
        raise ValueError(f"via tokens cannot be swept, solved for or fixed: {sorted(clash)}")
    context = getattr(getattr(model, "config", None), "context_length", None)
    if context is not None and 1 + len(fixed) + len(via) > context:   # predict() would drop the excess
        raise ValueError(f"{len(via)} via tokens plus {1 + len(fixed)} given exceed the model's context "
                         f"of {context} tokens; pass fewer via tokens")

    k, trials = grid.size, np.linspace(low, high, int(steps))                  # [S]
    rows = {sweep: np.repeat(grid, trials.size), solve: np.tile(trials, k)}  # [K*S] each
    values, columns = inputs_from(k * trials.size, {**rows, **fixed})
    observed, _ = predict_arrays(model, values, columns, via, device=device)    # [K*S, len(via)]
    values, columns = inputs_from(k * trials.size, {sweep: rows[sweep], **fixed, **dict(zip(via, observed.T))})
    back, back_error = predict_arrays(model, values, columns, [solve], device=device)
    root, root_error = stable_fixed_point(trials, back[:, 0].reshape(k, -1),
                                          back_error[:, 0].reshape(k, -1), start)

    value = np.full((k, 1 + len(request)), np.nan)
    error = np.full_like(value, np.nan)
    value[:, 0], error[:, 0] = root, root_error
    ok = np.isfinite(root)
    if ok.any() and request:
        values, columns = inputs_from(int(ok.sum()), {sweep: grid[ok], solve: root[ok], **fixed})
        value[ok, 1:], error[ok, 1:] = predict_arrays(model, values, columns, request, device=device)
    return Locus(sweep, grid, fixed, [solve, *request], value, error)


def stable_fixed_point(trials, mapped, mapped_error, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the stable fixed point of x -> f(x) sampled at ``trials``, nearest ``start``.

    Parameters
    ----------
    trials : [S] increasing trial values x.
    mapped : [K, S] f(x) per row; mapped_error : [K, S] a 1-sigma carried along.

    Returns
    -------
    root [K] (NaN where r = f - x never falls from > 0 to <= 0 between neighbouring trials),
    its error [K] (interpolated the same way).
    """
    trials = np.asarray(trials, dtype=np.float64)
    r = np.asarray(mapped, dtype=np.float64) - trials               # [K, S]
    e = np.asarray(mapped_error, dtype=np.float64)
    down = (r[:, :-1] > 0) & (r[:, 1:] <= 0)                        # [K, S-1] stable crossings
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(down, r[:, :-1] / (r[:, :-1] - r[:, 1:]), np.nan)  # in (0, 1]
    roots = trials[:-1] + w * np.diff(trials)                       # [K, S-1], NaN off crossings
    errors = (1 - w) * e[:, :-1] + w * e[:, 1:]
    distance = np.where(down, np.abs(roots - start), np.inf)
    best = np.argmin(distance, axis=1)                              # [K]
    pick = np.arange(len(r))
    found = down[pick, best]
    return np.where(found, roots[pick, best], np.nan), np.where(found, errors[pick, best], np.nan)


def giant_branch(model, metallicities=METALLICITIES, *, logg=(3.5, 1.0), n: int = 26,
                 logebv: float = GIANT_EXTINCTION, request: Sequence[str] = ("teff", *COLOURS),
                 device: str = "cpu") -> list[Locus]:
    """The red-giant branch at each [M/H]: logg swept from ``logg[0]`` to ``logg[1]`` [dex]
    (base to tip), Teff and colours predicted; one locus per [M/H]. See the module text
    for why logg, not Teff, is swept."""
    grid = np.linspace(logg[0], logg[1], n)
    return [trace_locus(model, "logg", grid, fixed={"m_h": mh, "logebv": logebv}, request=request,
                        device=device)._replace(name="giant branch") for mh in metallicities]


def main_sequence(model, metallicities=METALLICITIES, *, teff=(6800.0, 4000.0), n: int = 29,
                  logebv: float = DWARF_EXTINCTION, window=DWARF_WINDOW, start: float = 4.5,
                  request: Sequence[str] = COLOURS, device: str = "cpu") -> list[Locus]:
    """The main sequence at each [M/H]: Teff swept from ``teff[0]`` to ``teff[1]`` [K],
    logg solved self-consistently inside the dwarf ``window`` (:func:`trace_branch`),
    colours predicted there; NaN where the model knows no such dwarf."""
    grid = np.linspace(teff[0], teff[1], n)
    return [trace_branch(model, "teff", grid, solve="logg", window=window, start=start,
                         fixed={"m_h": mh, "logebv": logebv}, request=request,
                         device=device)._replace(name="main sequence") for mh in metallicities]


def locus_scatter(locus: Locus, catalog, x: str, y: str, *, stars=None,
                  m_h_match: float = M_H_MATCH) -> LocusFit:
    """How closely a locus follows the catalogue: median |y_star - y_locus(x_star)|.

    Compared are the stars (``stars``: optional boolean [N] preselection, e.g. dwarfs)
    with finite x, y inside the x range of the locus' finite points and, if the locus
    fixes [M/H], within ``m_h_match`` dex of it. ``x`` should be the quantity exact along
    the branch (the swept one): logg for :func:`giant_branch` (y = teff: a Teff offset in
    K), teff for :func:`main_sequence` (y = logg: a logg offset in dex).
    """
    xs, ys = catalog_column(catalog, x), catalog_column(catalog, y)
    lx, ly = locus.column(x), locus.column(y)
    ok = np.isfinite(lx) & np.isfinite(ly)
    lx, ly = lx[ok], ly[ok]
    if lx.size and not (np.all(np.diff(lx) > 0) or np.all(np.diff(lx) < 0)):
        raise ValueError(f"{x!r} is not monotone along the locus; compare against the swept quantity")
    keep = np.isfinite(xs) & np.isfinite(ys)
    if stars is not None:
        stars = np.asarray(stars, dtype=bool)
        if stars.shape != xs.shape:
            raise ValueError(f"stars must be a boolean mask of {xs.size} catalogue rows, got shape {stars.shape}")
        keep &= stars
    if "m_h" in locus.fixed:
        keep &= np.abs(catalog.column("m_h") - locus.fixed["m_h"]) < m_h_match
    if lx.size == 0:                # no solution anywhere along the locus
        return LocusFit(float("nan"), 0)
    keep &= (xs >= lx.min()) & (xs <= lx.max())
    if not np.any(keep):
        return LocusFit(float("nan"), 0)
    order = np.argsort(lx)
    offset = np.abs(ys[keep] - np.interp(xs[keep], lx[order], ly[order]))
    return LocusFit(float(np.median(offset)), int(keep.sum()))


PANELS = (("teff", "logg"), ("teff", "jh"), ("xp_colour", "jh"))
STYLES = {"giant branch": "-", "main sequence": "--"}
AXIS_LABELS = {"teff": "Teff [K]", "logg": "logg [dex]", "jh": "J-H [mag]",
               "xp_colour": "XP colour -2.5 log10(bp0/rp0) [mag]"}


def plot_loci(path, loci: Sequence[Locus], catalog=None, *, m_h_range=(-1.2, 0.5)) -> Path:
    """Kiel diagram and colour-colour planes of the loci over the catalogue's stars.

    Stars and loci share one [M/H] colour scale, so each locus can be checked against the
    stars of its own metallicity; line style = family. Bands / bars are the predicted
    1-sigma of the quantity not given along the locus."""
    plt = pyplot()
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    panels = [p for p in PANELS if all(_has(lo, n) for lo in loci for n in p)]
    if not panels:
        raise ValueError("the loci lack the quantities to plot (teff/logg, teff/jh, xp_colour/jh)")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    cmap, norm = plt.cm.viridis.with_extremes(bad="0.75"), plt.Normalize(*m_h_range)   # grey: no [M/H]
    outline = [patheffects.Stroke(linewidth=3.6, foreground="k"), patheffects.Normal()]
    for ax, (x, y) in zip(axes[0], panels):
        if catalog is not None:
            ax.scatter(catalog_column(catalog, x), catalog_column(catalog, y), s=5, c=catalog.column("m_h"), cmap=cmap,
                            norm=norm, alpha=0.6, linewidths=0, plotnonfinite=True)
        for lo in loci:
            col = cmap(norm(lo.fixed.get("m_h", np.mean(m_h_range))))
            lx, ly = lo.column(x), lo.column(y)
            ax.plot(lx, ly, STYLES.get(lo.name, "-."), color=col, lw=2.2, path_effects=outline)
            ex, ey = lo.column_error(x), lo.column_error(y)
            if ex is None and ey is not None:
                ax.fill_between(lx, ly - ey, ly + ey, color=col, alpha=0.18, lw=0)
            elif ey is None and ex is not None:
                ax.fill_betweenx(ly, lx - ex, lx + ex, color=col, alpha=0.18, lw=0)
            elif ex is not None and ey is not None:      # both predicted: a few 1-sigma crosses
                step = max(1, len(lx) // 5)
                ax.errorbar(lx[::step], ly[::step], xerr=ex[::step], yerr=ey[::step], fmt="none",
                            ecolor=col, alpha=0.6, lw=1)
        ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=AXIS_LABELS.get(y, y))
        if catalog is not None and x != "teff":           # frame the bulk of the stars
            ax.set_xlim(*np.nanpercentile(catalog_column(catalog, x), [0.5, 99.5]) + [-0.05, 0.05])
        if catalog is not None and y != "logg":
            ax.set_ylim(*np.nanpercentile(catalog_column(catalog, y), [0.5, 99.5]) + [-0.05, 0.05])
        if x == "teff":                                   # the loci's range, hot to cool
            ax.set_xlim(7000, 3300)
        if y == "logg":
            ax.set_ylim(5.2, 0.0)
    families = list(dict.fromkeys(lo.name for lo in loci))
    handles = [Line2D([], [], color="k", ls=STYLES.get(f, "-."), label=_family_label(f, loci)) for f in families]
    if catalog is not None:
        handles.append(Line2D([], [], ls="", marker="o", color="0.5",
                              label=f"{len(catalog)} stars (grey: no [M/H])"))
    axes[0][min(1, len(panels) - 1)].legend(handles=handles, fontsize=7, loc="upper left")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), label="[M/H] [dex]",
                 fraction=0.02, pad=0.01)
    fig.suptitle("stellar loci of the model over the stars (colour = [M/H]); band / bars = ±1σ predicted")
    return save_figure(fig, path, tight=False)


def _family_label(family: str, loci: Sequence[Locus]) -> str:
    lo = next(lo for lo in loci if lo.name == family)
    how = f"{lo.sweep} swept" + (f", {lo.request[0]} self-consistent" if lo.name == "main sequence" else "")
    ebv = f", E(B-V)={np.exp(lo.fixed['logebv']):.2f}" if "logebv" in lo.fixed else ""
    return f"{family or 'locus'} ({how}{ebv})"


def _check(sweep, grid, fixed, request, solve=None):
    """Validated grid float64 [K], fixed dict, request list (shared by the tracers)."""
    grid = np.asarray(grid, dtype=np.float64)
    fixed = dict(fixed or {})
    request = list(request)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("grid must be a non-empty 1-d array of finite values")
    d = np.diff(grid)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError(f"grid of {sweep!r} must be strictly monotone")
    given = {sweep, *fixed} | ({solve} if solve else set())
    clash = given & set(request)
    if clash or sweep in fixed or (solve is not None and (solve == sweep or solve in fixed)):
        bad = clash or ({sweep} if sweep in fixed else {solve})
        raise ValueError(f"a token cannot be both given and requested: {sorted(bad)}")
    return grid, fixed, request


def catalog_column(catalog, name: str) -> np.ndarray:
    """float64 [N] values of a catalogue token or of a :data:`DERIVED` quantity."""
    if name in DERIVED and name not in catalog.columns:
        inputs, value, _ = DERIVED[name]
        with np.errstate(invalid="ignore", divide="ignore"):
            return value(*(catalog.column(n).astype(np.float64) for n in inputs))
    return catalog.column(name).astype(np.float64)


def _has(locus: Locus, name: str) -> bool:
    if name in DERIVED and name not in locus.request:
        return all(_has(locus, n) for n in DERIVED[name][0])
    return name == locus.sweep or name in locus.fixed or name in locus.request
