"""A supervised expert: a plain MLP trained for exactly the task (XP coefficients +
colours -> Teff, logg, [M/H]), the second expert next to the boosted trees.

Inputs are those of the XGBoost expert, standardised the same way (training median and
1.4826 MAD per column, :class:`lamfast.normalization.Normalizer`). Missing values: trees
send a NaN down a learned default branch; the network gets the equivalent, a missing
input set to 0 (the training median) plus a 0/1 "missing" input for each column that
has missing values among the training stars (a gap, at prediction time, in a column
that had none reads as the median). Labels are standardised by their training
median and MAD; a star whose label is missing adds nothing to that label's loss (as it is
left out of that label's tree fit).

:func:`tune_mlp` chooses width, depth, loss (Huber or MSE) and learning-rate schedule on
the validation split by a logged coordinate search (:mod:`lamfast.baselines.search`);
each fit stops early on the validation scatter. Fixed seeds, one CPU thread by default.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._threads import torch_threads
from ..normalization import Normalizer
from ..stats import robust_scatter
from ..vocab import HEADLINE_INPUTS, LABELS, Vocab

# From the 63 -> 3x512 -> 3 Huber network; one parameter moves at a time.
SEARCH_START = {"width": 512, "depth": 3, "loss": "huber", "schedule": "cosine"}
SEARCH_GRID = {"width": (256, 512), "depth": (2, 3), "loss": ("huber", "mse"),
               "schedule": ("cosine", "plateau")}
LOSSES = ("huber", "mse")
SCHEDULES = ("cosine", "plateau")


class MLPExpert:
    """One network, GELU hidden layers of equal width, one output per label.

    Parameters
    ----------
    inputs, labels : token names.
    width, depth : hidden units per layer, hidden layers.
    loss : "huber" (delta ``huber_delta`` in standardised label units: residuals beyond
        it count linearly, so a few outliers do not rule the fit) or "mse".
    schedule : "cosine" (lr annealed to 0 over ``max_epochs``) or "plateau" (lr halved
        after 3 epochs without a better validation score).
    lr, weight_decay, batch_size, max_epochs : AdamW and loop settings.
    patience : stop after this many epochs without a better validation score.
    threads, seed : torch threads while fitting/predicting; seed of weights and shuffles.
    """

    def __init__(self, inputs: Sequence[str] = HEADLINE_INPUTS, labels: Sequence[str] = LABELS, *,
                 width: int = 512, depth: int = 3, loss: str = "huber", huber_delta: float = 0.1,
                 schedule: str = "cosine", lr: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 256, max_epochs: int = 40, patience: int = 8,
                 threads: int | None = 1, seed: int = 0):
        from .._threads import resolve_threads

        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.inputs, self.labels = list(inputs), list(labels)
        self.width, self.depth, self.loss, self.huber_delta = width, depth, loss, huber_delta
        self.schedule, self.lr, self.weight_decay = schedule, lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.threads, self.seed = resolve_threads(threads), seed
        self.net: nn.Sequential | None = None
        self.history: list[float] = []        # validation score after each epoch
        self.best_epoch = -1

    # -- data -------------------------------------------------------------------------
    def _columns(self, columns: Sequence[str], names: Sequence[str], what: str) -> list[int]:
        index = {c: i for i, c in enumerate(columns)}
        missing = [c for c in names if c not in index]
        if missing:
            raise ValueError(f"{what} columns missing from the table: {missing}")
        return [index[c] for c in names]

    def _x(self, values: np.ndarray, columns: Sequence[str]) -> torch.Tensor:
        """Network inputs float32 [N, I + M]: standardised values (NaN -> 0) and flags."""
        raw = np.asarray(values, dtype=np.float64)[:, self._columns(columns, self.inputs, "input")]
        z = self.normalizer.standardize(raw, self.inputs)
        bad = ~np.isfinite(z)
        x = np.concatenate([np.where(bad, 0.0, z), bad[:, self.flagged]], axis=1)
        return torch.from_numpy(x.astype(np.float32))

    def _y(self, values: np.ndarray, columns: Sequence[str]) -> torch.Tensor:
        """Standardised labels float32 [N, L] (NaN = missing)."""
        y = np.asarray(values, dtype=np.float64)[:, self._columns(columns, self.labels, "label")]
        return torch.from_numpy(((y - self.y_center) / self.y_scale).astype(np.float32))

    # -- fit ----------------------------------------------------------------------------
    def fit(self, values: np.ndarray, columns: Sequence[str],
            validation: tuple[np.ndarray, Sequence[str]] | None = None) -> MLPExpert:
        """Fit on a table holding the input and label columns ([N, V]); with validation
        ((values [M, V], columns)), keep the epoch of best validation score (mean over
        labels of the robust scatter in standardised units) and stop early."""
        values = np.asarray(values, dtype=np.float64)
        raw = values[:, self._columns(columns, self.inputs, "input")]
        self.normalizer = Normalizer.fit(raw, self.inputs, Vocab.paper().extend(self.inputs))
        self.flagged = np.flatnonzero(~np.isfinite(raw).all(axis=0))      # columns with gaps
        y = values[:, self._columns(columns, self.labels, "label")]
        few = [k for k, n in zip(self.labels, np.isfinite(y).sum(axis=0)) if n < 2]
        if few:
            raise ValueError(f"labels with fewer than 2 known values: {few}")
        self.y_center = np.nanmedian(y, axis=0)
        self.y_scale = robust_scatter(y, axis=0)
        with torch_threads(self.threads):
            torch.manual_seed(self.seed)
            self.net = self._build(len(self.inputs) + len(self.flagged))
            self._train(self._x(values, columns), self._y(values, columns),
                        None if validation is None else
                        (self._x(*validation), self._y(*validation)))
        return self

    def _build(self, n_in: int) -> nn.Sequential:
        layers, n = [], n_in
        for _ in range(self.depth):
            layers += [nn.Linear(n, self.width), nn.GELU()]
            n = self.width
        return nn.Sequential(*layers, nn.Linear(n, len(self.labels)))

    def _loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(y)
        target = torch.where(known, y, pred.detach())
        if self.loss == "huber":
            per = nn.functional.huber_loss(pred, target, reduction="none", delta=self.huber_delta)
        else:
            per = (pred - target) ** 2
        return (per * known).sum() / known.sum().clamp(min=1)

    def _train(self, x: torch.Tensor, y: torch.Tensor, val) -> None:
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = (len(x) + self.batch_size - 1) // self.batch_size
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.max_epochs * steps)
                 if self.schedule == "cosine" else
                 torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3))
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state, self.history = np.inf, None, []
        for epoch in range(self.max_epochs):
            self.net.train()
            for idx in torch.randperm(len(x), generator=gen).split(self.batch_size):
                opt.zero_grad(set_to_none=True)
                self._loss(self.net(x[idx]), y[idx]).backward()
                opt.step()
                if self.schedule == "cosine":
                    sched.step()
            if val is None:
                continue
            score = _score(self._forward(val[0]), val[1])
            self.history.append(score)
            if self.schedule == "plateau":
                sched.step(score)
            if score < best:
                best, best_state, self.best_epoch = score, copy.deepcopy(self.net.state_dict()), epoch
            elif epoch - self.best_epoch >= self.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)

    # -- predict ------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return torch.cat([self.net(b) for b in x.split(8192)]) if len(x) else self.net(x)

    def predict(self, values: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """{label: float64 [N] prediction} in physical units."""
        if self.net is None:
            raise RuntimeError("MLPExpert.predict called before fit")
        with torch_threads(self.threads):
            z = self._forward(self._x(values, columns)).numpy().astype(np.float64)  # [N, L]
        return {k: z[:, i] * self.y_scale[i] + self.y_center[i] for i, k in enumerate(self.labels)}

    def config(self) -> dict:
        """The searched settings of this expert."""
        return {"width": self.width, "depth": self.depth, "loss": self.loss, "schedule": self.schedule}


def tune_mlp(train: tuple[np.ndarray, Sequence[str]], validation: tuple[np.ndarray, Sequence[str]],
             *, inputs: Sequence[str] = HEADLINE_INPUTS, labels: Sequence[str] = LABELS,
             grid: dict | None = None, start: dict | None = None, threads: int | None = 1,
             seed: int = 0, log: Callable[[str], None] | None = print,
             **settings) -> tuple[MLPExpert, list[dict]]:
    """Choose width, depth, loss and schedule on the validation split by a coordinate search
    from ``start`` (default :data:`SEARCH_START`) over ``grid`` (default
    :data:`SEARCH_GRID`). One network predicts every label, so the score is the mean
    over labels of the validation robust scatter in standardised units. Only train and
    validation stars ((values, columns) each) are seen. settings: further
    :class:`MLPExpert` arguments (max_epochs, patience, ...) shared by every fit.

    Returns
    -------
    expert : the fitted :class:`MLPExpert` of the chosen configuration.
    search_log : one dict per configuration tried: its settings, epochs run and best
        epoch, train and validation scatter per label (physical units), the score, fit
        seconds and ``chosen``.
    """
    from .search import coordinate_search

    grid = SEARCH_GRID if grid is None else grid
    start = {**SEARCH_START, **(start or {})}

    def fit(config):
        one = MLPExpert(inputs, labels, threads=threads, seed=seed, **settings, **config)
        t0 = time.perf_counter()
        one.fit(*train, validation=validation)
        seconds = time.perf_counter() - t0
        row = {"epochs": len(one.history), "best_epoch": one.best_epoch,
               "val_scatter": min(one.history)}
        for name, table in (("train", train), ("val", validation)):
            pred = one.predict(*table)
            cols = list(table[1])
            for k in labels:
                row[f"{name}_{k}"] = robust_scatter(np.asarray(table[0], np.float64)[:, cols.index(k)] - pred[k])
        return {**row, "seconds": seconds}, one

    text = lambda r: "mlp: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in r.items() if k != "chosen")
    _, expert, rows = coordinate_search(start, grid, fit, log and (lambda r: log(text(r))))
    return expert, rows


def _score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over labels of the robust scatter of y - pred (standardised units; NaN skipped)."""
    d = (y - pred).numpy().astype(np.float64)
    return float(np.mean([robust_scatter(d[:, i]) for i in range(d.shape[1])]))
