"""The paper's expert baseline: one gradient-boosted tree model per label, trained on
exactly the task (XP coefficients + colours -> Teff, logg, [M/H]).

Leung & Bovy 2024 compare against XGBoost on the inputs bp0..29, rp0..29, jh, jk, bprp
(their 50.7 K, 0.13 dex, 0.08 dex). xgboost is imported only when a model is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..normalization import Normalizer
from ..vocab import HEADLINE_INPUTS, LABELS, Vocab



class XGBoostExpert:
    """One boosted-tree regressor (``xgboost.train``, squared error) per label on standardised inputs (NaN = missing,
    which trees handle natively). Stars whose label is missing are left out of that
    label's fit.

    Parameters
    ----------
    inputs, labels : token names.
    n_estimators : trees per label (paper: 2000).
    threads : xgboost threads (default: lamfast's thread count).
    params : further xgboost booster parameters.
    """

    def __init__(self, inputs: Sequence[str] = HEADLINE_INPUTS,
                 labels: Sequence[str] = LABELS, *, n_estimators: int = 2000,
                 learning_rate: float = 0.05, max_depth: int = 6, threads: int | None = None,
                 seed: int = 0, **params):
        from .._threads import resolve_threads

        self.inputs, self.labels = list(inputs), list(labels)
        self.n_estimators = n_estimators
        self.params = dict(objective="reg:squarederror", eta=learning_rate,
                           max_depth=max_depth, tree_method="hist",
                           nthread=resolve_threads(threads), seed=seed, **params)
        self.models: dict = {}
        self.normalizer: Normalizer | None = None

    def _raw_inputs(self, values: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(columns)}
        missing = [c for c in self.inputs if c not in index]
        if missing:
            raise ValueError(f"input columns missing from the table: {missing}")
        return np.asarray(values, dtype=np.float32)[:, [index[c] for c in self.inputs]]

    def _inputs(self, values: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        return self.normalizer.standardize(self._raw_inputs(values, columns), self.inputs)

    def fit(self, values: np.ndarray, columns: Sequence[str],
            eval_set: tuple[np.ndarray, Sequence[str]] | None = None,
            early_stopping_rounds: int | None = None, verbose: bool = False) -> XGBoostExpert:
        """Fit on a table holding the input and label columns (float32 [N, V])."""
        import xgboost

        values = np.asarray(values, dtype=np.float32)
        index = {c: i for i, c in enumerate(columns)}
        raw = self._raw_inputs(values, columns)
        self.normalizer = Normalizer.fit(raw, self.inputs, Vocab.paper().extend(self.inputs))
        x = self.normalizer.standardize(raw, self.inputs)
        if eval_set is not None:
            ev_values, ev_columns = np.asarray(eval_set[0], dtype=np.float32), eval_set[1]
            ev_x = self._inputs(ev_values, ev_columns)
        for label in self.labels:
            if label not in index:
                raise ValueError(f"label column {label!r} missing from the table")
            y = values[:, index[label]]
            known = np.isfinite(y)
            if known.sum() < 2:
                raise ValueError(f"label {label!r} has fewer than 2 known values")
            evals = []
            if eval_set is not None:
                ev_y = ev_values[:, list(ev_columns).index(label)]
                ok = np.isfinite(ev_y)
                evals = [(xgboost.DMatrix(ev_x[ok], ev_y[ok]), "validation")]
            self.models[label] = xgboost.train(
                self.params, xgboost.DMatrix(x[known], y[known]), self.n_estimators,
                evals=evals, early_stopping_rounds=early_stopping_rounds if evals else None,
                verbose_eval=verbose)
        return self

    def predict(self, values: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """{label: float64 [N] prediction} in physical units."""
        if not self.models:
            raise RuntimeError("XGBoostExpert.predict called before fit")
        import xgboost

        x = xgboost.DMatrix(self._inputs(values, columns))
        out = {}
        for label, m in self.models.items():
            best = getattr(m, "best_iteration", None)  # set when early stopping ran
            rounds = (0, best + 1) if best is not None else (0, 0)
            out[label] = m.predict(x, iteration_range=rounds).astype(np.float64)
        return out
