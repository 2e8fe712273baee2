import numpy as np
import pytest

from lamfast.baselines.mlp import MLPExpert, tune_mlp
from lamfast.stats import robust_scatter
from lamfast.vocab import HEADLINE_INPUTS

COLS = list(HEADLINE_INPUTS) + ["teff", "logg"]


def _table(rng, n, noise=0.05, missing=0.0):
    """[N, 63 + 2]: inputs and two labels, smooth functions of a few inputs."""
    x = rng.normal(size=(n, len(HEADLINE_INPUTS)))
    teff = 5000 + 400 * x[:, 0] - 200 * np.tanh(x[:, 61]) + rng.normal(0, 400 * noise, n)
    logg = 3 + 0.5 * np.tanh(x[:, 30]) + rng.normal(0, 0.5 * noise, n)
    x[rng.random(x.shape) < missing] = np.nan
    return np.concatenate([x, teff[:, None], logg[:, None]], 1)


def test_learns_smooth_labels_with_missing_inputs_and_labels(rng):
    table = _table(rng, 2000, missing=0.05)
    table[:600, -1] = np.nan                          # logg unknown for 30% of stars
    train, val, test = table[:1400], table[1400:1700], table[1700:]
    model = MLPExpert(labels=["teff", "logg"], width=64, depth=2, max_epochs=40, batch_size=64,
                      lr=3e-3).fit(train, COLS, validation=(val, COLS))
    assert len(model.flagged) == len(HEADLINE_INPUTS)  # every input had gaps: every one has a flag
    pred = model.predict(test, COLS)
    assert all(np.isfinite(p).all() for p in pred.values())
    for i, k in enumerate(("teff", "logg")):
        truth = test[:, len(HEADLINE_INPUTS) + i]
        assert robust_scatter(truth - pred[k]) < 0.3 * robust_scatter(truth)
    assert model.history[model.best_epoch] == min(model.history)


def test_missing_input_is_told_apart_from_a_median_value(rng):
    # the label jumps when bp0 is missing; a network that saw only "0 = median" could not tell
    table = _table(rng, 3000, noise=0.01)[:, : len(HEADLINE_INPUTS) + 1]
    gone = rng.random(3000) < 0.3
    table[gone, 0] = np.nan
    table[:, -1] = np.where(gone, 6000.0, 5000.0 + 10 * np.nan_to_num(table[:, 0]))
    model = MLPExpert(labels=["teff"], width=32, depth=2, max_epochs=30, batch_size=64,
                      lr=3e-3).fit(table[:2500], COLS[:-1], validation=(table[2500:], COLS[:-1]))
    pred = model.predict(table[2500:], COLS[:-1])["teff"]
    assert np.all(np.abs(pred - table[2500:, -1])[gone[2500:]] < 100)


def test_early_stopping_keeps_the_best_validation_epoch(rng):
    # few noisy stars and a wide net: validation gets worse after a while, so it stops
    table = _table(rng, 1300, noise=1.0)
    model = MLPExpert(labels=["teff", "logg"], width=256, depth=3, loss="mse", schedule="plateau",
                      lr=3e-3, max_epochs=200, patience=5, batch_size=32)
    model.fit(table[:300], COLS, validation=(table[300:], COLS))
    assert len(model.history) < 200 and len(model.history) == model.best_epoch + 1 + 5
    # the kept weights are those of the best epoch: scoring them again gives its score
    pred = model.predict(table[300:], COLS)
    z = [(table[300:, len(HEADLINE_INPUTS) + i] - pred[k] - 0) / model.y_scale[i]
         for i, k in enumerate(("teff", "logg"))]
    assert np.mean([robust_scatter(d) for d in z]) == pytest.approx(min(model.history), rel=1e-4)


def test_search_picks_the_validation_best_and_is_seeded():
    # 150 noisy stars of a linear relation: the wide shallow net fits its training stars
    # best, the deeper one does better on validation (seed 0; checked below)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, len(HEADLINE_INPUTS)))
    teff = 5000 + 400 * x[:, 0] + rng.normal(0, 400, 1000)
    logg = 3 + 0.5 * x[:, 30] + rng.normal(0, 0.5, 1000)
    table = np.concatenate([x, teff[:, None], logg[:, None]], 1)
    train, val = (table[:150], COLS), (table[150:], COLS)
    kw = dict(labels=["teff", "logg"], grid={"width": (4, 256), "depth": (1, 3)},
              start={"width": 4, "depth": 1}, max_epochs=25, patience=5, batch_size=32, log=None)
    expert, log = tune_mlp(train, val, **kw)
    chosen = [r for r in log if r["chosen"]]
    assert len(chosen) == 1 and chosen[0] is min(log, key=lambda r: r["val_scatter"])
    assert min(log, key=lambda r: r["train_teff"]) is not chosen[0]         # not picked by train
    assert {k: chosen[0][k] for k in ("width", "depth")} == {"width": expert.width, "depth": expert.depth}
    pred = expert.predict(*val)                      # the returned model is the chosen one
    assert robust_scatter(val[0][:, -2] - pred["teff"]) == pytest.approx(chosen[0]["val_teff"])
    again, log2 = tune_mlp(train, val, **kw)                                 # fixed seeds
    assert [r["val_scatter"] for r in log2] == [r["val_scatter"] for r in log]


def test_clear_errors(rng):
    table = _table(rng, 20)
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPExpert(loss="l1")
    with pytest.raises(ValueError, match="input columns missing"):
        MLPExpert().fit(table[:, 1:], COLS[1:])
    with pytest.raises(ValueError, match=r"label columns missing from the table: \['m_h'\]"):
        MLPExpert().fit(table, COLS)
    with pytest.raises(RuntimeError, match="before fit"):
        MLPExpert().predict(table, COLS)
