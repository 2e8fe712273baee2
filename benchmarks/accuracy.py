"""The paper's headline claim on real stars: Teff, logg, [M/H] from XP spectra + colours,
lamfast's self-supervised model vs the XGBoost expert trained for exactly that task.

    lamfast data build-apogee-xp apogee_xp.h5        # the real benchmark set (~2 min)
    lamfast train apogee_xp.h5 --out-dir runs/x ...   # see README for the shipped recipe
    python -m benchmarks.accuracy --data apogee_xp.h5 --model runs/x/model

Both models see the same inputs (bp0..29, rp0..29, jh, jk, bprp) of the same test stars
(split 2, complete inputs). Scatter = 1.4826 * MAD of truth - prediction; bias = median;
the lamfast/XGBoost scatter ratio comes with a 95% paired-bootstrap interval.
Writes benchmarks/results/accuracy.{md,csv,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lamfast.stats import robust_scatter
from lamfast.vocab import HEADLINE_INPUTS, LABELS

from .common import RESULTS, stamp

UNITS = {"teff": "K", "logg": "dex", "m_h": "dex"}
PAPER = {"lamfast (paper: LAM)": {"teff": 47.0, "logg": 0.11, "m_h": 0.07},
         "XGBoost (paper)": {"teff": 50.7, "logg": 0.13, "m_h": 0.08}}


def robust(d: np.ndarray) -> tuple[float, float]:
    """Robust scatter and median of d, ignoring NaN."""
    return robust_scatter(d), float(np.nanmedian(d))


def evaluate(truth, truth_err, pred, pred_err=None) -> dict:
    out = {}
    for k in LABELS:
        ok = np.isfinite(truth[k]) & np.isfinite(pred[k])
        d = truth[k][ok] - pred[k][ok]
        out[f"{k}_scatter"], out[f"{k}_bias"] = robust(d)
        out[f"{k}_n"] = int(ok.sum())
        if pred_err is not None:
            sigma = np.sqrt(pred_err[k][ok] ** 2 + np.nan_to_num(truth_err[k][ok]) ** 2)
            out[f"{k}_within_1sigma"] = float(np.mean(np.abs(d) < sigma))
    return out


def scatter_ratio(truth, pred_a, pred_b, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Robust scatter of a over that of b, with a 95% paired-bootstrap interval: the same
    resampled stars score both models, so the interval says whether a ratio near 1 is
    a real difference or the luck of this test set. truth, pred_a, pred_b: [N]."""
    ok = np.isfinite(truth) & np.isfinite(pred_a) & np.isfinite(pred_b)
    da, db = truth[ok] - pred_a[ok], truth[ok] - pred_b[ok]
    ratio = robust(da)[0] / robust(db)[0]
    rows = np.random.default_rng(seed).integers(0, len(da), size=(n_boot, len(da)))  # [B, N]
    boot = [robust(da[r])[0] / robust(db[r])[0] for r in rows]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(ratio), float(lo), float(hi)


def _shown(model: str) -> str:
    """The model as the table names it: repo-relative inside the checkout, else its folder
    name (results never carry a path of the machine they were made on)."""
    path = Path(model).resolve()
    repo = Path(__file__).resolve().parents[1]
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else path.name


def main(argv=None) -> dict:
    from lamfast.baselines.xgboost import XGBoostExpert
    from lamfast.io.paper_hdf5 import read_paper_hdf5
    from lamfast.model import LAM

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="paper-layout HDF5 with a split column")
    p.add_argument("--model", required=True, help="a saved lamfast model folder")
    p.add_argument("--xgb-trees", type=int, default=2000)
    p.add_argument("--max-teff", type=float, default=7000.0,
                   help="also report stars with APOGEE Teff below this (the paper's regime)")
    p.add_argument("--out", default=str(RESULTS), help="folder for accuracy.{md,csv,png}")
    args = p.parse_args(argv)

    cat = read_paper_hdf5(args.data)
    split = cat.extra["split"]
    train, val, test = (cat.rows(split == s) for s in (0, 1, 2))
    test = _complete(test)
    truth = {k: test.column(k).astype(np.float64) for k in LABELS}
    truth_err = {k: test.errors[:, test.columns.index(k)].astype(np.float64) for k in LABELS}

    t0 = time.perf_counter()
    xgb = XGBoostExpert(n_estimators=args.xgb_trees).fit(
        train.values, train.columns, eval_set=(val.values, val.columns), early_stopping_rounds=200)
    xgb_s = time.perf_counter() - t0
    xgb_pred = xgb.predict(test.values, test.columns)

    model = LAM.load(args.model)
    t0 = time.perf_counter()
    lam_pred, lam_err = _predict(model, test)
    lam_s = time.perf_counter() - t0
    # Scatter by split: a model that fits its training stars much better than unseen ones overfits.
    by_split = {name: _split_scatter(stars, _predict(model, stars)[0])
                for name, stars in (("train", _complete(train)), ("validation", _complete(val)))}
    by_split["test"] = _split_scatter(test, lam_pred)

    rows = []
    subsets = {"all complete-input test stars": np.ones(len(test), bool),
               f"APOGEE Teff < {args.max_teff:g} K": truth["teff"] < args.max_teff}
    for subset, sel in subsets.items():
        t = {k: v[sel] for k, v in truth.items()}
        te = {k: v[sel] for k, v in truth_err.items()}
        rows.append({"model": "lamfast", "stars": subset,
                     **evaluate(t, te, {k: v[sel] for k, v in lam_pred.items()},
                                {k: v[sel] for k, v in lam_err.items()})})
        rows.append({"model": "XGBoost", "stars": subset,
                     **evaluate(t, te, {k: v[sel] for k, v in xgb_pred.items()})})
    ratios = {k: scatter_ratio(truth[k], lam_pred[k], xgb_pred[k]) for k in LABELS}
    _write(args, rows, ratios, by_split, truth, lam_pred, xgb_pred, xgb_s, lam_s, len(train))
    return {"rows": rows, "ratios": ratios, "by_split": by_split}


def _complete(cat):
    """The stars of cat with every headline input."""
    return cat.rows(np.isfinite(cat.select(list(HEADLINE_INPUTS)).values).all(axis=1))


def _predict(model, cat) -> tuple[dict, dict]:
    """lamfast's labels and errors [N] from the headline inputs of cat."""
    from lamfast.infer import predict

    x = cat.select(list(HEADLINE_INPUTS))
    table = predict(model, x.values, x.columns, request=list(LABELS), device="cpu")
    return ({k: np.asarray(table[k], dtype=np.float64) for k in LABELS},
            {k: np.asarray(table[f"{k}_error"], dtype=np.float64) for k in LABELS})


def _split_scatter(cat, pred) -> dict:
    return {k: robust(cat.column(k).astype(np.float64) - pred[k])[0] for k in LABELS}


def _write(args, rows, ratios, by_split, truth, lam_pred, xgb_pred, xgb_s, lam_s, n_train):
    import csv

    info = stamp("cpu")  # before writing: rewriting a tracked result must not mark the commit dirty
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("model", "stars"), k))
    with open(out / "accuracy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    lines = ["## Accuracy on real stars: APOGEE DR17 x Gaia DR3 XP (test split)", "",
             " | ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"model: `{_shown(args.model)}`; data: `{Path(args.data).name}` ({n_train:,} training stars); "
             f"XGBoost: {args.xgb_trees} trees max, early stopping on the validation split, "
             f"fit in {xgb_s:.0f} s; lamfast predicted the test stars in {lam_s:.1f} s.", "",
             "| model | stars | Teff scatter [K] | logg scatter [dex] | [M/H] scatter [dex] | "
             "Teff bias | logg bias | [M/H] bias | within 1 sigma (Teff/logg/[M/H]) | n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = "/".join(f"{r[f'{k}_within_1sigma']:.2f}" for k in LABELS) if "teff_within_1sigma" in r else "-"
        lines.append(f"| {r['model']} | {r['stars']} | {r['teff_scatter']:.1f} | {r['logg_scatter']:.3f} | "
                     f"{r['m_h_scatter']:.3f} | {r['teff_bias']:.1f} | {r['logg_bias']:.3f} | "
                     f"{r['m_h_bias']:.3f} | {cal} | {r['teff_n']} |")
    for name, v in PAPER.items():
        lines.append(f"| {name} | paper test set (397k/44k stars) | {v['teff']} | {v['logg']} | "
                     f"{v['m_h']} | | | | | |")
    names = {"teff": "Teff", "logg": "logg", "m_h": "[M/H]"}
    lines += ["", "lamfast / XGBoost scatter on all complete-input test stars, with a 95% paired-bootstrap "
              "interval (1000 resamples; below 1: lamfast is better): "
              + ", ".join(f"{names[k]} {r:.3f} [{lo:.3f}, {hi:.3f}]" for k, (r, lo, hi) in ratios.items()) + ".",
              "", "lamfast scatter by split, complete-input stars (Teff [K] / logg / [M/H] [dex]; a model "
              "that fits its training stars much better than the others overfits): "
              + ", ".join(f"{name} {s['teff']:.1f} / {s['logg']:.3f} / {s['m_h']:.3f}" for name, s in by_split.items())
              + "."]
    lines += ["", "![one-to-one plots and Kiel diagram](accuracy.png)", ""]
    (out / "accuracy.md").write_text("\n".join(lines))
    print("\n".join(lines))
    _plot(out / "accuracy.png", truth, lam_pred, xgb_pred)


def _plot(path, truth, lam_pred, xgb_pred):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(17, 8.2))
    lims = {"teff": (3000, 8000), "logg": (-0.5, 5.5), "m_h": (-2.5, 0.7)}
    for row, (name, pred) in enumerate((("lamfast", lam_pred), ("XGBoost", xgb_pred))):
        for col, k in enumerate(LABELS):
            ax = axes[row, col]
            ax.scatter(truth[k], pred[k], s=2, alpha=0.4, rasterized=True)
            ax.plot(lims[k], lims[k], "k--", lw=0.8)
            ax.set(xlim=lims[k], ylim=lims[k], xlabel=f"APOGEE {k} [{UNITS[k]}]",
                   ylabel=f"{name} {k} [{UNITS[k]}]")
            s, b = robust(truth[k] - pred[k])
            ax.set_title(f"{name}: scatter {s:.3g}, bias {b:.2g} {UNITS[k]}")
        ax = axes[row, 3]
        sc = ax.scatter(pred["teff"], pred["logg"], c=pred["m_h"], s=2, cmap="viridis",
                        vmin=-1.5, vmax=0.5, rasterized=True)
        ax.set(xlim=(7500, 3000), ylim=(5.5, -0.5), xlabel="Teff [K]", ylabel="logg [dex]",
               title=f"{name}: Kiel diagram (test stars)")
        fig.colorbar(sc, ax=ax, label="[M/H]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
