import numpy as np
import pytest

pytest.importorskip("xgboost", reason="xgboost is an optional extra ([baselines])")

from lamfast.baselines.xgboost import XGBoostExpert  # noqa: E402
from lamfast.vocab import HEADLINE_INPUTS  # noqa: E402


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
    assert np.std(pred["teff"] - teff[2500:]) < 0.3 * np.std(teff)
    assert np.std(pred["logg"] - logg[2500:]) < 0.6 * np.std(logg)


def test_clear_errors(rng):
    table = rng.normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="input columns missing"):
        XGBoostExpert(threads=1).fit(table, ["bp0", "jh", "teff"])
    with pytest.raises(RuntimeError, match="before fit"):
        XGBoostExpert(threads=1).predict(table, ["bp0", "jh", "teff"])
