import numpy as np
import pytest

from lamfast.baselines.search import coordinate_search
from lamfast.stats import robust_scatter
from lamfast.vocab import HEADLINE_INPUTS


def _table(rng, n, noise=0.5, missing=0.0):
    """[N, 63 + 1] inputs + one label 'teff' that depends additively on three inputs."""
    x = rng.normal(size=(n, len(HEADLINE_INPUTS))).astype(np.float32)
    y = x[:, 0] + 0.5 * x[:, 1] - 0.5 * x[:, 2] + rng.normal(0, noise, n)
    x[rng.random(x.shape) < missing] = np.nan
    return np.concatenate([x, y[:, None]], 1).astype(np.float32), list(HEADLINE_INPUTS) + ["teff"]


def test_coordinate_search_keeps_the_validation_best_of_all_it_tried():
    # train scatter favours depth 8 everywhere; validation favours depth 4 with lr 0.1
    val = {(4, 0.3): 1.0, (6, 0.3): 1.2, (8, 0.3): 1.1, (4, 0.1): 0.9}
    calls = []

    def fit(c):
        calls.append((c["max_depth"], c["learning_rate"]))
        key = calls[-1]
        return {"val_scatter": val[key], "train_scatter": 0.1 if key[0] == 8 else 0.5}, key

    best, model, rows = coordinate_search({"max_depth": 6, "learning_rate": 0.3},
                                          {"max_depth": (4, 6, 8), "learning_rate": (0.3, 0.1)}, fit)
    assert best == {"max_depth": 4, "learning_rate": 0.1} and model == (4, 0.1)
    assert len(calls) == len(set(calls)) == 4          # each configuration fit once
    assert [r["chosen"] for r in rows] == [False, False, False, True]
    assert min(rows, key=lambda r: r["train_scatter"])["max_depth"] == 8   # not picked by train
    with pytest.raises(ValueError, match="without a start value"):
        coordinate_search({"max_depth": 6}, {"eta": (0.1,)}, fit)


xgb = pytest.importorskip("xgboost", reason="xgboost is an optional extra ([baselines])")
from lamfast.baselines.xgboost import XGBoostExpert, tune_xgboost  # noqa: E402


def test_learns_a_smooth_relation_and_ignores_missing_labels(rng):
    n = 3000
    x = rng.normal(size=(n, len(HEADLINE_INPUTS))).astype(np.float32)
    teff = 5000 + 400 * x[:, 0] - 200 * x[:, 61] + rng.normal(0, 20, n)
    logg = 3 + 0.5 * np.tanh(x[:, 30]) + rng.normal(0, 0.02, n)
    x[rng.random(x.shape) < 0.05] = np.nan  # trees must cope with missing inputs
    labels = np.stack([teff, logg], 1).astype(np.float32)
    labels[: n // 3, 1] = np.nan
    table = np.concatenate([x, labels], 1)
    cols = list(HEADLINE_INPUTS) + ["teff", "logg"]
    model = XGBoostExpert(labels=["teff", "logg"], n_estimators=100, learning_rate=0.2,
                          threads=1).fit(table[:2500], cols)
    pred = model.predict(table[2500:], cols)
    assert np.all(np.isfinite(pred["teff"])) and np.all(np.isfinite(pred["logg"]))
    assert np.std(pred["teff"] - teff[2500:]) < 0.3 * np.std(teff)
    assert np.std(pred["logg"] - logg[2500:]) < 0.6 * np.std(logg)


def test_early_stopping_keeps_the_rounds_of_least_validation_scatter(rng):
    train, cols = _table(rng, 800, noise=1.0)
    val, _ = _table(rng, 800, noise=1.0)
    kw = dict(labels=["teff"], n_estimators=400, learning_rate=0.3, max_depth=6, threads=1)
    stopped = XGBoostExpert(**kw).fit(train, cols, eval_set=(val, cols), early_stopping_rounds=20)
    full = XGBoostExpert(**kw).fit(train, cols)
    rounds = stopped.rounds()["teff"]
    assert rounds < 100 and full.rounds()["teff"] == 400          # noisy: stops long before 400
    scatter = lambda m: robust_scatter(val[:, -1] - m.predict(val, cols)["teff"])
    assert scatter(stopped) < scatter(full)
    # no earlier or later cut of the full run's first rounds does better on validation
    booster = full.models["teff"]
    dval = xgb.DMatrix(stopped._inputs(val, cols))
    curve = [robust_scatter(val[:, -1] - booster[:r].predict(dval)) for r in range(1, rounds + 21)]
    assert int(np.argmin(curve)) + 1 == rounds


def test_search_picks_the_validation_best_and_never_the_train_best(rng):
    # few noisy stars: deep trees fit the training stars best and the validation stars worst
    train, cols = _table(rng, 300, noise=1.0, missing=0.05)
    val, _ = _table(rng, 2000, noise=1.0, missing=0.05)
    expert, log = tune_xgboost((train, cols), (val, cols), labels=["teff"], max_rounds=300,
                               patience=20, grid={"max_depth": (1, 3, 10), "min_child_weight": (1,),
                                                  "learning_rate": (0.3,)}, log=None)
    chosen = [r for r in log if r["chosen"]]
    assert len(chosen) == 1 and chosen[0] == min(log, key=lambda r: r["val_scatter"])
    assert min(log, key=lambda r: r["train_scatter"]) is not chosen[0]
    assert expert.label_params["teff"]["max_depth"] == chosen[0]["max_depth"]
    assert expert.rounds()["teff"] == chosen[0]["rounds"]
    pred = expert.predict(val, cols)["teff"]       # the returned model is the chosen one
    assert np.isfinite(pred).all()
    assert robust_scatter(val[:, -1] - pred) == pytest.approx(chosen[0]["val_scatter"])


def test_clear_errors(rng):
    table = rng.normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="input columns missing"):
        XGBoostExpert(threads=1).fit(table, ["bp0", "jh", "teff"])
    with pytest.raises(RuntimeError, match="before fit"):
        XGBoostExpert(threads=1).predict(table, ["bp0", "jh", "teff"])
    full, cols = _table(np.random.default_rng(0), 20)
    with pytest.raises(ValueError, match="'logg' missing from the training table"):
        XGBoostExpert(labels=["logg"], threads=1).fit(full, cols)


def test_paired_bootstrap_interval_covers_a_known_ratio():
    from benchmarks.accuracy import scatter_ratio

    # errors share a common part, so pairing matters; true ratio sqrt(1.64 / 1.16)
    true, covered, excludes_one = np.sqrt(1.64 / 1.16), 0, 0
    for seed in range(40):
        r = np.random.default_rng(seed)
        common = r.normal(size=1500)
        truth = r.normal(size=1500)
        a = truth + common + r.normal(0, 0.8, 1500)
        b = truth + common + r.normal(0, 0.4, 1500)
        ratio, lo, hi = scatter_ratio(truth, a, b, n_boot=300, seed=seed)
        assert lo < ratio < hi
        covered += lo < true < hi
        excludes_one += lo > 1
    assert covered >= 34 and excludes_one == 40       # ~95% coverage; 1.19 is told from 1
