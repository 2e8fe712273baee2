"""`lamfast demo`: the main job on the embedded default.

Labels the bundled sample catalogue (1,000 real APOGEE DR17 stars with Gaia DR3 XP
spectra, test split of the benchmark set) with the shipped default model from the
headline inputs (bp0..29, rp0..29, jh, jk, bprp), file to file through `lamfast.label`,
then compares with the APOGEE labels and draws a Kiel diagram.
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
                    output=out / "labels.h5", progress=progress)
    predicted, meta = read_output(out / "labels.h5")
    truth = read_paper_hdf5(sample)
    report = {"stars": summary.rows, "flagged": summary.flagged,
              "stars_per_s": round(summary.rows / max(summary.wall_s, 1e-9), 1),
              "model": meta.get("model"), "output": str(out / "labels.h5")}
    for k in LABELS:
        d = truth.column(k).astype(np.float64) - predicted[k]
        report[f"{k}_scatter"], report[f"{k}_bias"] = robust_scatter(d), float(np.nanmedian(d))
    _plot(out / "kiel.png", truth, predicted)
    if tasks:  # the paper's other tasks on the same model and stars: PNGs + tasks.md
        from .tasks.report import run_all

        report["tasks"] = run_all(model, out, truth)
        report["tasks_report"] = str(out / "tasks.md")
    return report


def _plot(path: Path, truth, predicted) -> None:
    from .tasks.common import pyplot, save_figure

    plt = pyplot()
    if plt is None:  # matplotlib is optional: the numbers still print
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
    for ax, (name, t, g, m) in zip(axes, (
            ("APOGEE DR17", truth.column("teff"), truth.column("logg"), truth.column("m_h")),
            ("lamfast from XP + colours", predicted["teff"], predicted["logg"], predicted["m_h"]))):
        sc = ax.scatter(t, g, c=m, s=4, cmap="viridis", vmin=-1.5, vmax=0.5)
        ax.set(title=name, xlabel="Teff [K]", xlim=(7500, 3000), ylim=(5.5, -0.5))
    axes[0].set_ylabel("logg [dex]")
    fig.colorbar(sc, ax=axes, label="[M/H] [dex]")
    save_figure(fig, path, tight=False)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="label the bundled sample catalogue with the default model")
    p.add_argument("--out", default="lamfast-demo", help="output folder (labels.h5, kiel.png)")
    p.add_argument("--model", default="default", help="'default' or a saved model folder")
    p.set_defaults(func=_main)


def _main(args) -> int:
    r = run(args.out, args.model)
    print(f"\nlabelled {r['stars']} stars ({r['flagged']} without input) at {r['stars_per_s']} "
          f"stars/s -> {r['output']}")
    print("accuracy vs APOGEE DR17 (robust scatter, median bias):")
    for k in LABELS:
        print(f"  {k:5s} {r[f'{k}_scatter']:9.3f} {UNITS[k]:3s}  bias {r[f'{k}_bias']:+.3f}")
    if "tasks_report" in r:
        print(f"generate XP / inpaint / loci / extinction: {r['tasks_report']} and PNGs in {args.out}")
    return 0
