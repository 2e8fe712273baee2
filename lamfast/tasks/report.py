"""Run the four tasks on a model and a catalogue: PNGs, a JSON of numbers, a markdown report.

Used by ``lamfast task ...`` and ``lamfast demo``. Each ``run_*`` writes one PNG into
``out`` and returns JSON-able numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import as_model

TASKS = ("generate", "inpaint", "loci", "extinction")


def run_generate(model, catalog, out: Path) -> dict:
    from .generate import compare_with_observed, plot_comparison

    r = compare_with_observed(model, catalog)
    plot_comparison(out / "generate_xp.png", r)
    return _public(r)


def run_inpaint(model, catalog, out: Path) -> dict:
    from .inpaint import evaluate_inpainting, plot_inpainting

    r = evaluate_inpainting(model, catalog)
    plot_inpainting(out / "inpaint.png", r)
    return _public(r)


def run_loci(model, catalog, out: Path) -> dict:
    from .loci import DWARF_LOGG, giant_branch, locus_scatter, main_sequence, plot_loci

    giants, dwarfs = giant_branch(model), main_sequence(model)
    plot_loci(out / "loci.png", giants + dwarfs, catalog)
    is_dwarf = catalog.column("logg") > DWARF_LOGG
    # each branch scored along its exact (swept) quantity: Teff offset of giants at their
    # logg, logg offset of dwarfs at their Teff; stars of the locus' [M/H] +- 0.15 dex
    scored = [(lo, "logg", "teff", "K", None) for lo in giants] + \
             [(lo, "teff", "logg", "dex", is_dwarf) for lo in dwarfs]
    rows = []
    for lo, x, y, unit, stars in scored:
        fit = locus_scatter(lo, catalog, x, y, stars=stars)
        rows.append({"name": lo.name, "fixed": lo.fixed, "sweep": lo.sweep,
                     **{n: _finite_list(lo.column(n)) for n in (lo.sweep, *lo.request)},
                     "offset": f"median |{y}_star - {y}_locus({x}_star)| [{unit}]",
                     "median_abs_offset": _finite_list([fit.median_abs_offset])[0], "stars": fit.stars})
    return {"loci": rows, "dwarf_logg_above": DWARF_LOGG}


def run_extinction(model, catalog, out: Path) -> dict:
    from .extinction import extinction_curve, plot_extinction, summary_table

    curve = extinction_curve(model)
    plot_extinction(out / "extinction.png", curve)
    return {"ebv_grid": curve.ebv.tolist(), "b_minus_v_per_token_unit": curve.b_minus_v.tolist(),
            "table": summary_table(curve)}


RUNNERS = {"generate": run_generate, "inpaint": run_inpaint, "loci": run_loci, "extinction": run_extinction}


def run_all(model, out_dir, catalog=None, tasks=TASKS) -> dict:
    """Run ``tasks`` on ``model`` (LAM, "default" or folder) and ``catalog`` (default: the
    bundled sample of 1,000 real test-split stars); writes PNGs, tasks.json, tasks.md."""
    model = as_model(model)
    if catalog is None:
        from ..io.paper_hdf5 import read_paper_hdf5
        from ..resources import sample_catalogue_path

        catalog = read_paper_hdf5(sample_catalogue_path())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in tasks:
        if name not in RUNNERS:
            raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        results[name] = RUNNERS[name](model, catalog, out)
    (out / "tasks.json").write_text(json.dumps(results, indent=1))
    (out / "tasks.md").write_text(markdown(results, n_stars=len(catalog)))
    return results


def markdown(results: dict, n_stars: int) -> str:
    """A short human report of :func:`run_all`'s numbers."""
    lines = ["# lamfast: the paper's other tasks", "",
             f"Catalogue: {n_stars} stars. Calibrated Gaussian errors give median |z| = 0.674.", ""]
    if "generate" in results:
        g = results["generate"]
        z = np.asarray(g["median_abs_z_total"])
        lines += ["## Generate XP spectra from labels (generate_xp.png)", "",
                  (f"{g['stars']} stars from {', '.join(g['inputs'])}: median over the 110 coefficients of "
                  f"median |obs - gen| / sqrt(s_pred^2 + s_obs^2) = {g['median_over_coefficients_z_total']:.3f} "
                  f"(BP {np.median(z[:55]):.3f}, RP {np.median(z[55:]):.3f}); of |obs - gen| / s_pred = "
                  f"{g['median_over_coefficients_z_model']:.3f}."), ""]
    if "inpaint" in results:
        r = results["inpaint"]
        lines += ["## Inpainting (inpaint.png)", "",
                  (f"Given {len(r['given'])} coefficients ({r['given'][0]}..), predict the other {len(r['targets'])}; "
                  f"linear baseline fitted on {r['fit_stars']} stars, both scored on {r['eval_stars']}."), "",
                  "| | lamfast | linear baseline |", "|---|---|---|",
                  (f"| median residual scatter / population scatter | {r['median_scatter_model']:.3f} | "
                  f"{r['median_scatter_baseline']:.3f} |"),
                  f"| median abs(flux error) / peak flux | {r['spectrum_error_model']:.4f} | {r['spectrum_error_baseline']:.4f} |",
                  f"| coefficients where better | {r['fraction_model_better']:.0%} | {1 - r['fraction_model_better']:.0%} |",
                  "", f"lamfast median |z| = {r['median_abs_z']:.3f}.", ""]
    if "loci" in results:
        loci = results["loci"]["loci"]
        lines += ["## Stellar loci: giant branch and main sequence (loci.png)", "",
                  ("Giant branch: logg swept 3.5 -> 1.0 dex, Teff and colours predicted. Main sequence: Teff "
                   "swept, logg solved self-consistently (generated XP + J-H read back) in 3.6-5.2 dex. "
                   "How far the stars of the same [M/H] (±0.15 dex) lie from each locus:"), "",
                  "| locus | [M/H] | stars | median offset |", "|---|---|---|---|"]
        for lo in loci:
            unit = lo["offset"].rsplit("[", 1)[-1].rstrip("]")
            what = "abs(Teff_star - Teff_locus(logg_star))" if lo["sweep"] == "logg" else \
                "abs(logg_star - logg_locus(Teff_star))"
            value = "n/a" if lo["median_abs_offset"] is None else f"{lo['median_abs_offset']:.3g} {unit}"
            lines.append(f"| {lo['name']} | {lo['fixed']['m_h']:+.2f} | {lo['stars']} | {what} = {value} |")
        lines += ["", (f"Dwarfs: catalogue logg > {results['loci']['dwarf_logg_above']}; n/a: no stars or "
                       "(main sequence) no self-consistent dwarf the model knows at that [M/H]."), ""]
    if "extinction" in results:
        e = results["extinction"]
        lines += ["## Extinction curve (extinction.png)", "",
                  ("Learned from d(-2.5 log10 F)/dE(B-V) of generated spectra; law: CCM89 + O'Donnell94, "
                  "R_V = 3.1 (A/A550 of the model assumes R_V = 3.1; the excess curve does not)."), "",
                  "| λ [nm] | E(λ-V)/E(B-V) model | law | A/A550 model | law |", "|---|---|---|---|---|"]
        lines += [f"| {t['wavelength_nm']:.0f} | {t['excess_model']:+.3f} | {t['excess_law']:+.3f} | "
                  f"{t['a_over_a550_model']:.3f} | {t['a_over_a550_law']:.3f} |" for t in e["table"]]
        lines += ["", "E(440-550) per unit of the model's E(B-V) token, per star: "
                  + ", ".join(f"{v:.2f}" for v in e["b_minus_v_per_token_unit"]), ""]
    return "\n".join(lines)


def _finite_list(a) -> list:
    """JSON-able list with NaN as None (JSON has no NaN)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


def _public(result: dict) -> dict:
    """Drop the private (array / object) entries a runner keeps for plotting."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
