"""The paper's expert baseline: one gradient-boosted tree model per label, trained on
exactly the task (XP coefficients + colours -> Teff, logg, [M/H]).

Leung & Bovy 2024 compare against XGBoost on the inputs bp0..29, rp0..29, jh, jk, bprp
(their 50.7 K, 0.13 dex, 0.08 dex). :func:`tune_xgboost` chooses each label's tree depth,
learning rate and minimum child weight on the validation split from a small grid, and its
number of rounds by early stopping on that split, and logs every configuration it tried.
Rounds are chosen by the validation *robust scatter* (1.4826 MAD, the metric the accuracy
table reports), not by RMSE: RMSE is ruled by a few outliers (hot stars) and stops Teff
after ~250 rounds, while the scatter of the bulk keeps falling for thousands.
xgboost is imported only when a model is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..normalization import Normalizer
from ..stats import robust_scatter
from ..vocab import HEADLINE_INPUTS, LABELS, Vocab

# The search (lamfast.baselines.search) starts from xgboost's own defaults and moves one
# parameter at a time, in every direction (shallower/deeper trees, more pruning, slower
# learning): 5 fits a label,
# minutes on one CPU thread for 32k stars, where the full 3x2x2 grid would take an hour.
SEARCH_START = {"max_depth": 6, "min_child_weight": 1, "learning_rate": 0.3}
SEARCH_GRID = {"max_depth": (4, 6, 8), "min_child_weight": (1, 10), "learning_rate": (0.3, 0.1)}


class XGBoostExpert:
    """One boosted-tree regressor (``xgboost.train``, squared error) per label on standardised
    inputs (NaN = missing: each split learns a default direction for it). Stars whose label
    is missing are left out of that label's fit.

    Parameters
    ----------
    inputs, labels : token names.
    n_estimators : most trees per label (paper: 2000); early stopping may keep fewer.
    learning_rate, max_depth, min_child_weight : booster parameters of every label.
    label_params : {label: {parameter: value}} overriding those for one label (what
        :func:`tune_xgboost` chose).
    threads : xgboost threads (default 1: reproducible and polite on shared machines).
    params : further xgboost booster parameters.
    """

    def __init__(self, inputs: Sequence[str] = HEADLINE_INPUTS,
                 labels: Sequence[str] = LABELS, *, n_estimators: int = 2000,
                 learning_rate: float = 0.05, max_depth: int = 6, min_child_weight: float = 1,
                 label_params: dict | None = None, threads: int | None = 1, seed: int = 0,
                 **params):
        from .._threads import resolve_threads

        self.inputs, self.labels = list(inputs), list(labels)
        self.n_estimators = n_estimators
        self.params = dict(objective="reg:squarederror", eta=learning_rate, max_depth=max_depth,
                           min_child_weight=min_child_weight, tree_method="hist",
                           nthread=resolve_threads(threads), seed=seed, **params)
        self.label_params = {k: dict(v) for k, v in (label_params or {}).items()}
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
        """Fit on a table holding the input and label columns (float32 [N, V]).

        eval_set : (values [M, V], columns) of validation stars; with early_stopping_rounds,
            each label keeps the rounds of least validation robust scatter, stopping once
            that many rounds in a row brought no improvement.
        """
        import xgboost

        values = np.asarray(values, dtype=np.float32)
        raw = self._raw_inputs(values, columns)
        self.normalizer = Normalizer.fit(raw, self.inputs, Vocab.paper().extend(self.inputs))
        x = self.normalizer.standardize(raw, self.inputs)
        ev = None
        if eval_set is not None:
            ev = (self._inputs(eval_set[0], eval_set[1]), np.asarray(eval_set[0], np.float32),
                  list(eval_set[1]))
        for label in self.labels:
            y = _label(values, columns, label, "training table")
            known = np.isfinite(y)
            if known.sum() < 2:
                raise ValueError(f"label {label!r} has fewer than 2 known values")
            evals = []
            if ev is not None:
                ev_y = _label(ev[1], ev[2], label, "validation table")
                ok = np.isfinite(ev_y)
                evals = [(xgboost.DMatrix(ev[0][ok], ev_y[ok]), "validation")]
            stop = early_stopping_rounds if evals else None
            booster = xgboost.train(
                {**self.params, **_booster_names(self.label_params.get(label, {})),
                 "disable_default_eval_metric": 1},
                xgboost.DMatrix(x[known], y[known]), self.n_estimators, evals=evals,
                custom_metric=_scatter_metric, early_stopping_rounds=stop, verbose_eval=verbose)
            # keep only the rounds early stopping chose, so predict needs no bookkeeping
            self.models[label] = booster[: booster.best_iteration + 1] if stop else booster
        return self

    def predict(self, values: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """{label: float64 [N] prediction} in physical units."""
        if not self.models:
            raise RuntimeError("XGBoostExpert.predict called before fit")
        import xgboost

        x = xgboost.DMatrix(self._inputs(values, columns))
        return {label: m.predict(x).astype(np.float64) for label, m in self.models.items()}

    def rounds(self) -> dict[str, int]:
        """{label: trees kept}."""
        return {label: m.num_boosted_rounds() for label, m in self.models.items()}


def tune_xgboost(train: tuple[np.ndarray, Sequence[str]], validation: tuple[np.ndarray, Sequence[str]],
                 *, inputs: Sequence[str] = HEADLINE_INPUTS, labels: Sequence[str] = LABELS,
                 grid: dict | None = None, start: dict | None = None, max_rounds: int = 2000,
                 patience: int = 200, threads: int | None = 1, seed: int = 0,
                 log: Callable[[str], None] | None = print) -> tuple[XGBoostExpert, list[dict]]:
    """Choose each label's booster on the validation split; only train and validation
    stars are seen, so the test split stays out of the choice.

    A coordinate search, per label: from ``start`` (default :data:`SEARCH_START`), each
    parameter of ``grid`` ({parameter: values}, default :data:`SEARCH_GRID`) in turn takes
    each of its values, the others held at the best so far. Every configuration is fit on
    ``train`` ((values [N, V], columns)) with early stopping on ``validation`` (``patience``
    rounds, at most ``max_rounds``), and the label keeps the configuration of least
    validation robust scatter of all it tried (ties: the one tried first).

    Returns
    -------
    expert : an :class:`XGBoostExpert` holding the chosen booster of every label.
    search_log : one dict per (label, configuration tried): its parameters, rounds kept,
        train and validation robust scatter, fit seconds, and ``chosen``.
    """
    from .search import coordinate_search

    grid = SEARCH_GRID if grid is None else grid
    start = {**SEARCH_START, **(start or {})}
    expert = XGBoostExpert(inputs, labels, n_estimators=max_rounds, threads=threads, seed=seed)
    search_log = []
    for label in labels:
        def fit(config, label=label):
            one = XGBoostExpert(inputs, [label], n_estimators=max_rounds, threads=threads,
                                seed=seed, **config)
            t0 = time.perf_counter()
            one.fit(*train, eval_set=validation, early_stopping_rounds=patience)
            seconds = time.perf_counter() - t0
            return ({"rounds": one.rounds()[label], "train_scatter": _scatter_of(one, train, label),
                     "val_scatter": _scatter_of(one, validation, label), "seconds": seconds}, one)

        best, one, rows = coordinate_search(start, grid, fit, log and (
            lambda r, label=label: log(f"xgboost {label}: " + _row_text(r))))
        search_log += [{"label": label, **r} for r in rows]
        expert.models[label] = one.models[label]
        expert.label_params[label] = best
        expert.normalizer = one.normalizer  # fitted on the same training stars every time
    return expert, search_log


def _booster_names(config: dict) -> dict:
    """The xgboost names of a configuration (learning_rate is xgboost's eta)."""
    return {("eta" if k == "learning_rate" else k): v for k, v in config.items()}


def _label(values: np.ndarray, columns: Sequence[str], label: str, what: str) -> np.ndarray:
    columns = list(columns)
    if label not in columns:
        raise ValueError(f"label column {label!r} missing from the {what}")
    return values[:, columns.index(label)]


def _scatter_metric(predt: np.ndarray, dmatrix) -> tuple[str, float]:
    """Early-stopping metric: robust scatter of the residuals (lower is better)."""
    return "robust_scatter", robust_scatter(dmatrix.get_label() - predt)


def _scatter_of(expert: XGBoostExpert, table: tuple[np.ndarray, Sequence[str]], label: str) -> float:
    y = _label(np.asarray(table[0], np.float64), table[1], label, "table")
    return robust_scatter(y - expert.predict(*table)[label])


def _row_text(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                    if k != "chosen")
