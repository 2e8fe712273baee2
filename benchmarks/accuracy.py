"""The paper's headline claim on real stars: Teff, logg, [M/H] from XP spectra + colours,
lamfast's self-supervised model vs experts trained for exactly that task.

    lamfast data build-apogee-xp apogee_xp.h5        # the real benchmark set (~2 min)
    lamfast train apogee_xp.h5 --out-dir runs/x ...   # see README for the shipped recipe
    python -m benchmarks.accuracy --data apogee_xp.h5 --model runs/x/model

All models see the same inputs (bp0..29, rp0..29, jh, jk, bprp). Two experts, each tuned
on the validation split (split 1) by a logged search and trained on split 0: XGBoost
(lamfast.baselines.xgboost) and a supervised MLP (lamfast.baselines.mlp). They are scored,
next to lamfast, on the same test stars (split 2, complete inputs). Scatter = 1.4826 *
MAD of truth - prediction; bias = median; each lamfast/expert scatter ratio comes with a
95% paired-bootstrap interval. ``--reuse-search`` fits only the configurations a
previous run chose (read from the --out folder) instead of searching again.
Writes benchmarks/results/accuracy.{md,csv,png}, the search log accuracy_search.csv and
the chosen configurations accuracy_experts.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lamfast.stats import robust_scatter
from lamfast.vocab import HEADLINE_INPUTS, LABELS

from .common import RESULTS, stamp

UNITS = {"teff": "K", "logg": "dex", "m_h": "dex"}
NAMES = {"teff": "Teff", "logg": "logg", "m_h": "[M/H]"}
PAPER = {"lamfast (paper: LAM)": {"teff": 47.0, "logg": 0.11, "m_h": 0.07},
         "XGBoost (paper)": {"teff": 50.7, "logg": 0.13, "m_h": 0.08}}
EXPERTS = ("XGBoost", "MLP")
SPLITS = ("train", "validation", "test")


def robust(d: np.ndarray) -> tuple[float, float]:
    """Robust scatter and median of d, ignoring NaN."""
    return robust_scatter(d), float(np.nanmedian(d))


def evaluate(truth, truth_err, pred, pred_err=None) -> dict:
    """Scatter, bias, star count and (where pred_err is given) the fraction of stars within
    1 sigma = sqrt(pred_err^2 + truth_err^2) of the truth, per label. Each argument is a
    {label: [N]} dict."""
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
    boot = robust_scatter(da[rows], axis=1) / robust_scatter(db[rows], axis=1)       # [B]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(ratio), float(lo), float(hi)


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="paper-layout HDF5 with a split column")
    p.add_argument("--model", required=True, help="a saved lamfast model folder")
    p.add_argument("--xgb-trees", type=int, default=2000, help="most XGBoost rounds per fit")
    p.add_argument("--xgb-patience", type=int, default=200,
                   help="XGBoost rounds without a better validation scatter before stopping")
    p.add_argument("--mlp-epochs", type=int, default=30, help="most MLP epochs per fit")
    p.add_argument("--mlp-patience", type=int, default=8,
                   help="MLP epochs without a better validation score before stopping")
    p.add_argument("--threads", type=int, default=1, help="threads of the expert fits")
    p.add_argument("--reuse-search", action="store_true",
                   help="fit only the configurations in OUT/accuracy_experts.json")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of each ratio")
    p.add_argument("--max-teff", type=float, default=7000.0,
                   help="also report stars with APOGEE Teff below this (the paper's regime)")
    p.add_argument("--out", default=str(RESULTS), help="folder for the results")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from lamfast.io.paper_hdf5 import read_paper_hdf5
    from lamfast.model import LAM

    args = _arguments(argv)
    cat = read_paper_hdf5(args.data)
    split = cat.extra["split"]
    stars = dict(zip(SPLITS, (cat.rows(split == s) for s in (0, 1, 2))))
    experts, timing, search_log = _experts(args, stars["train"], stars["validation"])
    scored = {name: _complete(c) for name, c in stars.items()}   # lamfast needs every input
    test = scored["test"]
    truth = {k: test.column(k).astype(np.float64) for k in LABELS}
    truth_err = {k: test.errors[:, test.columns.index(k)].astype(np.float64) for k in LABELS}

    model = LAM.load(args.model)
    t0 = time.perf_counter()
    lam_pred, lam_err = _predict(model, test)
    timing["lamfast predict s"] = time.perf_counter() - t0
    preds = {"lamfast": {"test": lam_pred}}
    for name, expert in experts.items():
        preds[name] = {"test": expert.predict(test.values, test.columns)}
    for split_name in ("train", "validation"):  # a model far better on its training stars overfits
        preds["lamfast"][split_name] = _predict(model, scored[split_name])[0]
        for name, expert in experts.items():
            preds[name][split_name] = expert.predict(scored[split_name].values, scored[split_name].columns)
    by_split = {name: {s: _split_scatter(scored[s], p[s]) for s in SPLITS} for name, p in preds.items()}

    rows = []
    subsets = {"all complete-input test stars": np.ones(len(test), bool),
               f"APOGEE Teff < {args.max_teff:g} K": truth["teff"] < args.max_teff}
    for subset, sel in subsets.items():
        cut = lambda d: {k: v[sel] for k, v in d.items()}
        for name, p in preds.items():
            err = cut(lam_err) if name == "lamfast" else None
            rows.append({"model": name, "stars": subset, **evaluate(cut(truth), cut(truth_err),
                                                                    cut(p["test"]), err)})
    ratios = {name: {k: scatter_ratio(truth[k], lam_pred[k], preds[name]["test"][k], n_boot=args.n_boot)
                     for k in LABELS} for name in experts}
    for r in rows[: len(preds)]:  # the all-stars rows carry the by-split scatter and ratios
        for k in LABELS:
            r.update({f"{k}_{s}_scatter": by_split[r["model"]][s][k] for s in ("train", "validation")})
            if r["model"] in ratios:
                r.update(dict(zip((f"{k}_ratio", f"{k}_ratio_lo", f"{k}_ratio_hi"), ratios[r["model"]][k])))
    _write(args, rows, ratios, by_split, truth, {n: p["test"] for n, p in preds.items()},
           experts, timing, search_log, len(stars["train"]))
    return {"rows": rows, "ratios": ratios, "by_split": by_split["lamfast"], "by_split_all": by_split,
            "timing": timing, "search_log": search_log}


def _experts(args, train, val) -> tuple[dict, dict, list]:
    """{name: fitted expert}, {what: seconds}, the search log (rows with an ``expert``)."""
    from lamfast.baselines.mlp import MLPExpert, tune_mlp
    from lamfast.baselines.xgboost import XGBoostExpert, tune_xgboost

    tr, va = (train.values, train.columns), (val.values, val.columns)
    xgb_kw = dict(max_rounds=args.xgb_trees, patience=args.xgb_patience, threads=args.threads)
    mlp_kw = dict(max_epochs=args.mlp_epochs, patience=args.mlp_patience, threads=args.threads)
    timing, log = {}, []
    t0 = time.perf_counter()
    if args.reuse_search:
        chosen = json.loads((Path(args.out) / "accuracy_experts.json").read_text())
        xgb = XGBoostExpert(n_estimators=args.xgb_trees, threads=args.threads,
                            label_params=chosen["XGBoost"])
        xgb.fit(*tr, eval_set=va, early_stopping_rounds=args.xgb_patience)
        timing["XGBoost fit s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mlp = MLPExpert(**chosen["MLP"], **mlp_kw).fit(*tr, validation=va)
        timing["MLP fit s"] = time.perf_counter() - t0
        return {"XGBoost": xgb, "MLP": mlp}, timing, log
    xgb, xgb_log = tune_xgboost(tr, va, **xgb_kw)
    timing["XGBoost search s"] = time.perf_counter() - t0
    timing["XGBoost fit s"] = sum(r["seconds"] for r in xgb_log if r["chosen"])
    t0 = time.perf_counter()
    mlp, mlp_log = tune_mlp(tr, va, **mlp_kw)
    timing["MLP search s"] = time.perf_counter() - t0
    timing["MLP fit s"] = sum(r["seconds"] for r in mlp_log if r["chosen"])
    log = [{"expert": "XGBoost", **r} for r in xgb_log] + [{"expert": "MLP", **r} for r in mlp_log]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_experts.json").write_text(json.dumps(
        {"XGBoost": xgb.label_params, "MLP": mlp.config()}, indent=1) + "\n")
    return {"XGBoost": xgb, "MLP": mlp}, timing, log


def _complete(cat):
    """The stars of cat with every headline input."""
    return cat.rows(np.isfinite(cat.select(list(HEADLINE_INPUTS)).values).all(axis=1))


def _predict(model, cat) -> tuple[dict, dict]:
    """lamfast's labels and errors [N] from the headline inputs of cat."""
    from lamfast.infer import predict

    x = cat.select(list(HEADLINE_INPUTS))
    # fp32, the reference: the same table on every CPU (auto is bf16 on some; the precision
    # gate, benchmarks/precision_gate.py, judges bf16 against it)
    table = predict(model, x.values, x.columns, request=list(LABELS), device="cpu", precision="fp32")
    return ({k: np.asarray(table[k], dtype=np.float64) for k in LABELS},
            {k: np.asarray(table[f"{k}_error"], dtype=np.float64) for k in LABELS})


def _split_scatter(cat, pred) -> dict:
    return {k: robust(cat.column(k).astype(np.float64) - pred[k])[0] for k in LABELS}


def _shown(model: str) -> str:
    """The model as the table names it: repo-relative inside the checkout, else its folder
    name (results never carry a path of the machine they were made on)."""
    path = Path(model).resolve()
    repo = Path(__file__).resolve().parents[1]
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else path.name


def _write(args, rows, ratios, by_split, truth, test_preds, experts, timing, search_log, n_train):
    info = stamp("cpu")  # before writing: rewriting a tracked result must not mark the commit dirty
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "accuracy.csv", rows)
    if search_log:
        _write_csv(out / "accuracy_search.csv", search_log)
    lines = ["## Accuracy on real stars: APOGEE DR17 x Gaia DR3 XP (test split)", "",
             " | ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"model: `{_shown(args.model)}`; data: `{Path(args.data).name}` ({n_train:,} training "
             f"stars); experts tuned on the validation split and fit on the training split with "
             f"{args.threads} thread(s); lamfast predicted the test stars in "
             f"{timing['lamfast predict s']:.1f} s.", "",
             "| model | stars | Teff scatter [K] | logg scatter [dex] | [M/H] scatter [dex] | "
             "Teff bias | logg bias | [M/H] bias | within 1 sigma (Teff/logg/[M/H]) | n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = "/".join(f"{r[f'{k}_within_1sigma']:.2f}" for k in LABELS) if "teff_within_1sigma" in r else "n/a"
        lines.append(f"| {r['model']} | {r['stars']} | {r['teff_scatter']:.1f} | {r['logg_scatter']:.3f} | "
                     f"{r['m_h_scatter']:.3f} | {r['teff_bias']:.1f} | {r['logg_bias']:.3f} | "
                     f"{r['m_h_bias']:.3f} | {cal} | {r['teff_n']} |")
    for name, v in PAPER.items():
        lines.append(f"| {name} | paper test set (397k/44k stars) | {v['teff']} | {v['logg']} | "
                     f"{v['m_h']} | | | | | |")
    lines += ["", "Calibration: the fraction of stars whose truth lies within 1 sigma (predicted error "
              "and APOGEE error in quadrature; 0.68 if calibrated); the experts predict no errors (n/a).",
              "", f"lamfast / expert scatter on all complete-input test stars, with a 95% paired-bootstrap "
              f"interval ({args.n_boot} resamples of the test stars, seed 0; below 1: lamfast is better):", "",
              "| label | " + " | ".join(f"lamfast / {n}" for n in ratios) + " |",
              "|---|" + "---|" * len(ratios)]
    for k in LABELS:
        lines.append(f"| {NAMES[k]} | " + " | ".join(
            "{:.3f} [{:.3f}, {:.3f}]".format(*ratios[n][k]) for n in ratios) + " |")
    lines += ["", "lamfast and expert scatter by split, complete-input stars (Teff [K] / logg / [M/H] [dex]; a model that "
              "fits its training stars much better than the others overfits):", "",
              "| model | " + " | ".join(SPLITS) + " |", "|---|---|---|---|"]
    for name, s in by_split.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{s[p]['teff']:.1f} / {s[p]['logg']:.3f} / {s[p]['m_h']:.3f}" for p in SPLITS) + " |")
    lines += ["", *_expert_lines(args, experts, timing, search_log),
              "", "![one-to-one plots and Kiel diagram](accuracy.png)", ""]
    (out / "accuracy.md").write_text("\n".join(lines))
    print("\n".join(lines))
    _plot(out / "accuracy.png", truth, test_preds)


def _expert_lines(args, experts, timing, search_log) -> list[str]:
    """The experts' chosen configurations and training times, as markdown lines."""
    xgb, mlp = experts["XGBoost"], experts["MLP"]
    fits = {name: sum(r["expert"] == name for r in search_log) for name in EXPERTS}
    how = ("refit of the configurations chosen by an earlier search (`--reuse-search`)"
           if args.reuse_search else "logged coordinate search on the validation split "
           "(every configuration tried: `accuracy_search.csv`)")
    lines = [f"Experts, {how}; training time on {args.threads} CPU thread(s):", "",
             "| expert | chosen on validation | search | fit of the chosen configuration |",
             "|---|---|---|---|"]
    rounds = xgb.rounds()
    chosen = "; ".join(f"{NAMES[k]}: depth {p['max_depth']}, lr {p['learning_rate']}, min child weight "
                       f"{p['min_child_weight']}, {rounds[k]} rounds" for k, p in xgb.label_params.items())
    search = lambda n: (f"{fits[n]} fits, {timing[f'{n} search s']:.0f} s" if f"{n} search s" in timing else "-")
    lines.append(f"| XGBoost (squared error; rounds by early stopping on the validation robust scatter, "
                 f"patience {args.xgb_patience}, at most {args.xgb_trees}) | {chosen} | {search('XGBoost')} | "
                 f"{timing['XGBoost fit s']:.0f} s |")
    c = mlp.config()
    lines.append(f"| MLP (AdamW, batch {mlp.batch_size}, at most {mlp.max_epochs} epochs, early stopping "
                 f"patience {mlp.patience}) | {c['depth']}x{c['width']} GELU, {c['loss']} loss, "
                 f"{c['schedule']} lr schedule, best epoch {mlp.best_epoch + 1} | {search('MLP')} | "
                 f"{timing['MLP fit s']:.0f} s |")
    lines += ["", "lamfast was not trained here: the shipped model's training (712 CPU epochs, 492 min on "
              "2 threads, then 2 x 2.3 min on one H100) is in README's Training section."]
    return lines


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def _plot(path, truth, preds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(preds), 4, figsize=(17, 4.1 * len(preds)))
    lims = {"teff": (3000, 8000), "logg": (-0.5, 5.5), "m_h": (-2.5, 0.7)}
    for row, (name, pred) in enumerate(preds.items()):
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
