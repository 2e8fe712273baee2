"""`lamfast demo`: the main job on the embedded default.

Labels the bundled sample catalogue (1,000 real APOGEE DR17 stars with Gaia DR3 XP
spectra, test split of the benchmark set) with the shipped default model from the
headline inputs (bp0..29, rp0..29, jh, jk, bprp), file to file through `lamfast.label`,
then compares with the APOGEE labels: a one-to-one plot per label and a Kiel diagram,
beside the paper's other tasks (generated spectra, inpainting, loci, extinction curve).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .resources import sample_catalogue_path
from .vocab import HEADLINE_INPUTS, LABELS

UNITS = {"teff": "K", "logg": "dex", "m_h": "dex"}


def run(out_dir: str = "lamfast-demo", model: str = "default", progress: bool = True,
        tasks: bool = True) -> dict:
    """Label the sample catalogue; returns robust scatter/bias vs APOGEE per label.

    With ``tasks`` also runs :func:`lamfast.tasks.report.run_all` (generate XP, inpaint,
    loci, extinction curve) on the same model, writing their PNGs and ``tasks.md``."""
    from .io.paper_hdf5 import read_paper_hdf5
    from .label import label, read_output
    from .stats import robust_scatter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = sample_catalogue_path()
    summary = label(sample, model=model, request=LABELS, columns=list(HEADLINE_INPUTS),
                    output=out / "labels.h5", overwrite=True, progress=progress)  # a rerun redoes it
    predicted, meta = read_output(out / "labels.h5")
    truth = read_paper_hdf5(sample)
    report = {"stars": summary.rows, "flagged": summary.flagged,
              "stars_per_s": round(summary.rows / max(summary.wall_s, 1e-9), 1),
              "model": meta.get("model"), "output": str(out / "labels.h5")}
    for k in LABELS:
        d = truth.column(k).astype(np.float64) - predicted[k]
        report[f"{k}_scatter"], report[f"{k}_bias"] = robust_scatter(d), float(np.nanmedian(d))
    report["figures"] = [str(_plot_one_to_one(out / "one_to_one.png", truth, predicted, report)),
                         str(_plot_kiel(out / "kiel.png", truth, predicted))]
    if tasks:  # the paper's other tasks on the same model and stars: PNGs + tasks.md
        from .tasks.report import run_all

        report["tasks"] = run_all(model, out, truth)
        report["tasks_report"] = str(out / "tasks.md")
        report["figures"] += [str(out / name) for name in
                              ("generate_xp.png", "inpaint.png", "loci.png", "extinction.png")]
    return report


def _plot_one_to_one(path: Path, truth, predicted, report: dict) -> Path:
    """Predicted against APOGEE per label, with the robust scatter and bias written in."""
    from .tasks.common import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(LABELS), figsize=(13, 4.2))
    for ax, k in zip(axes, LABELS):
        t, p = truth.column(k), predicted[k]
        lo, hi = np.nanpercentile(np.concatenate([t, p]), [0.5, 99.5])
        ax.scatter(t, p, s=3, alpha=0.5, color="tab:blue")
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"APOGEE DR17 {k} [{UNITS[k]}]",
               ylabel=f"lamfast {k} [{UNITS[k]}]", aspect="equal")
        ax.text(0.04, 0.96, f"robust scatter {report[f'{k}_scatter']:.3g} {UNITS[k]}\n"
                f"median APOGEE - lamfast {report[f'{k}_bias']:+.2g} {UNITS[k]}",
                transform=ax.transAxes, va="top")
    fig.suptitle(f"{len(truth)} sample stars, labelled from XP coefficients and colours")
    return save_figure(fig, path)


def _plot_kiel(path: Path, truth, predicted) -> Path:
    from .tasks.common import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
    for ax, (name, t, g, m) in zip(axes, (
            ("APOGEE DR17", truth.column("teff"), truth.column("logg"), truth.column("m_h")),
            ("lamfast from XP + colours", predicted["teff"], predicted["logg"], predicted["m_h"]))):
        sc = ax.scatter(t, g, c=m, s=4, cmap="viridis", vmin=-1.5, vmax=0.5)
        ax.set(title=name, xlabel="Teff [K]", xlim=(7500, 3000), ylim=(5.5, -0.5))
    axes[0].set_ylabel("logg [dex]")
    fig.colorbar(sc, ax=axes, label="[M/H] [dex]")
    return save_figure(fig, path, tight=False)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="label the bundled sample catalogue with the default model",
                       description="Label the 1,000 bundled APOGEE DR17 stars with Gaia DR3 XP "
                       "spectra from their XP coefficients and colours, compare with APOGEE, and "
                       "run the paper's other tasks on the same model.")
    p.add_argument("--out", default="lamfast-demo",
                   help="output folder: labels.h5, tasks.md and six PNG figures (default: %(default)s)")
    p.add_argument("--model", default="default",
                   help="'default' (the shipped model) or a folder written by LAM.save (default: %(default)s)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    r = run(args.out, args.model)
    print(f"\nlabelled {r['stars']} stars ({r['flagged']} without input) at {r['stars_per_s']} "
          f"stars/s -> {r['output']}")
    print("accuracy vs APOGEE DR17 (robust scatter, median bias):")
    for k in LABELS:
        print(f"  {k:5s} {r[f'{k}_scatter']:9.3f} {UNITS[k]:3s}  bias {r[f'{k}_bias']:+.3f}")
    if "tasks_report" in r:
        print(f"generate XP / inpaint / loci / extinction: {r['tasks_report']}")
    print("figures:", ", ".join(r["figures"]))
    return 0
