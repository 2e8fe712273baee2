"""The precision gate: may a faster arithmetic (bf16, another kernel path) stand in for fp32?

A low-precision path changes every prediction a little; what users care about is whether
the labels stay as good and whether a star moves by a noticeable part of its own error
bar, not the largest difference in kelvin. Per label the gate asks, against the same
model in fp32 on the same stars:

* scatter: robust scatter (:func:`lamfast.stats.robust_scatter`) of truth - prediction at
  most ``1 + SCATTER_TOLERANCE`` times fp32's. One-sided: a path that happens to score a
  little better is no loss (on an AMX Xeon the shipped model's Teff scatter is 1.05% lower
  in bf16), and a path that moves stars a lot is caught by the shift test below.
* bias: the median of truth - prediction moves by at most ``BIAS_TOLERANCE`` of fp32's
  scatter (a relative change of a bias near zero would mean nothing).
* shift: the 99th percentile over stars of |low - fp32| / sigma_fp32, sigma_fp32 the
  model's own predicted error, at most ``SHIFT_TOLERANCE``.
* no star loses its prediction (finite in fp32, not finite in low precision).

The noise floor of the scatter and bias. A robust scatter of N stars cannot resolve 1%
when every star moves a little: on the 1,000 shipped test stars, the shipped model's bf16
differences with random signs move the Teff scatter by -0.8% to +2.5% (95% of draws).
So the scatter and bias tolerances are each widened to the ``NULL_QUANTILE`` percentile
of the same statistic under that null (``null_draws`` sign flips of the actual
differences, seeded): what rounding noise of exactly this size does to the score on
these stars. A systematic loss (predictions moved away from the truth) still fails,
and the size of the differences is bounded by the shift test. ``null_draws=0`` gives
the bare tolerances.

Scatter and bias use the stars with a finite truth; the shift uses every star with a
finite fp32 prediction (it needs no truth).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .stats import robust_scatter

SCATTER_TOLERANCE = 0.01   # low-precision scatter at most 1% above fp32's
BIAS_TOLERANCE = 0.01      # |bias change| at most 1% of fp32's scatter
SHIFT_TOLERANCE = 0.25     # p99 of |low - fp32| at most 0.25 of the predicted error
SHIFT_PERCENTILE = 99.0
NULL_DRAWS = 1000          # sign-flip draws of the noise floor
# Percentile of the null the scatter/bias tolerances widen to: 6 checks (3 labels) of a
# path with no systematic loss fail together ~3% of the time where the stars are too few.
NULL_QUANTILE = 99.5


@dataclass(frozen=True)
class LabelGate:
    """The gate's numbers for one label (see the module docstring)."""

    label: str
    n_scored: int           # stars with finite truth and fp32 prediction (scatter, bias)
    n_shift: int            # stars with a finite fp32 prediction (shift)
    n_lost: int             # finite in fp32, not finite in low precision
    scatter_fp32: float
    scatter_low: float
    bias_fp32: float
    bias_low: float
    shift_p99: float        # p99 of |low - fp32| / sigma_fp32
    error_p99: float        # p99 of |sigma_low / sigma_fp32 - 1|; reported, not gated (NaN: none given)
    scatter_allowed: float  # max(1 + SCATTER_TOLERANCE, noise floor of the ratio)
    bias_allowed: float     # max(BIAS_TOLERANCE, noise floor of the bias shift)

    @property
    def scatter_ratio(self) -> float:
        return self.scatter_low / self.scatter_fp32

    @property
    def bias_shift(self) -> float:
        """|bias_low - bias_fp32| in units of fp32's scatter."""
        return abs(self.bias_low - self.bias_fp32) / self.scatter_fp32

    def failures(self) -> list[str]:
        """Why this label fails the gate; empty when it passes."""
        why = []
        if self.n_lost:
            why.append(f"{self.label}: {self.n_lost} stars lose their prediction")
        if not self.scatter_ratio <= self.scatter_allowed:
            why.append(f"{self.label}: scatter {self.scatter_low:.4g} is {self.scatter_ratio:.4f}x "
                       f"fp32's {self.scatter_fp32:.4g} (at most {self.scatter_allowed:.4f}x)")
        if not self.bias_shift <= self.bias_allowed:
            why.append(f"{self.label}: bias moves {self.bias_fp32:.4g} -> {self.bias_low:.4g}, "
                       f"{self.bias_shift:.4f} of the scatter (at most {self.bias_allowed:.4f})")
        if not self.shift_p99 <= SHIFT_TOLERANCE:
            why.append(f"{self.label}: p{SHIFT_PERCENTILE:g} |low - fp32| is {self.shift_p99:.3g} "
                       f"of the predicted error (at most {SHIFT_TOLERANCE:g})")
        return why

    @property
    def passed(self) -> bool:
        return not self.failures()

    def row(self) -> dict:
        """The label's numbers as one flat table row."""
        return {"label": self.label, "stars": self.n_scored,
                "scatter_fp32": self.scatter_fp32, "scatter_low": self.scatter_low,
                "scatter_ratio": self.scatter_ratio, "scatter_allowed": self.scatter_allowed,
                "bias_fp32": self.bias_fp32, "bias_low": self.bias_low,
                "bias_shift_of_scatter": self.bias_shift, "bias_allowed": self.bias_allowed,
                "shift_p99_of_sigma": self.shift_p99, "error_p99_rel": self.error_p99,
                "lost": self.n_lost, "passed": self.passed}


@dataclass(frozen=True)
class GateResult:
    """The gate over every label: passes when each label does."""

    labels: dict[str, LabelGate]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.labels.values())

    def failures(self) -> list[str]:
        return [why for g in self.labels.values() for why in g.failures()]

    def rows(self) -> list[dict]:
        return [g.row() for g in self.labels.values()]


def precision_gate(truth: Mapping[str, np.ndarray], fp32: Mapping[str, np.ndarray],
                   fp32_error: Mapping[str, np.ndarray], low: Mapping[str, np.ndarray],
                   low_error: Mapping[str, np.ndarray] | None = None, *,
                   null_draws: int = NULL_DRAWS) -> GateResult:
    """Judge low-precision predictions against fp32 ones of the same model on the same stars.

    Parameters
    ----------
    truth : label -> [N] reference labels (e.g. APOGEE); NaN = unknown for that star.
    fp32, fp32_error : label -> [N] fp32 predictions and predicted errors (sigma > 0
        wherever the prediction is finite).
    low : label -> [N] low-precision predictions of the same stars in the same order.
    low_error : label -> [N] its predicted errors, optional (reported, not gated).
    null_draws : sign-flip draws of the noise floor of scatter and bias (0: none).

    Returns
    -------
    GateResult, one :class:`LabelGate` per label of ``truth``, in its order.
    """
    if isinstance(null_draws, bool) or not isinstance(null_draws, (int, np.integer)) or null_draws < 0:
        raise ValueError(f"null_draws must be an int >= 0, got {null_draws!r}")
    return GateResult({k: _label_gate(k, truth, fp32, fp32_error, low, low_error, null_draws)
                       for k in truth})


def predict_labels(model, values: np.ndarray, columns, labels, precision: str,
                   device: str = "cpu") -> tuple[dict, dict]:
    """Predictions and predicted errors of ``labels`` in one precision, for the gate.

    Parameters
    ----------
    model : lamfast.LAM with a normalizer.
    values : [N, V] raw catalogue values of ``columns`` (as :func:`lamfast.predict`).
    labels : names to predict.
    precision : ``"fp32"`` or ``"bf16"`` (as :class:`lamfast.infer.Predictor`).

    Returns
    -------
    value, error : label -> [N] float64.
    """
    from .infer import predict

    table = predict(model, values, columns, request=list(labels), device=device, precision=precision)
    return ({k: np.asarray(table[k], dtype=np.float64) for k in labels},
            {k: np.asarray(table[f"{k}_error"], dtype=np.float64) for k in labels})


def _label_gate(k, truth, fp32, fp32_error, low, low_error, null_draws) -> LabelGate:
    t, f, s, lo = (_column(d, k, name) for d, name in ((truth, "truth"), (fp32, "fp32"),
                                                      (fp32_error, "fp32_error"), (low, "low")))
    for name, x in (("fp32", f), ("fp32_error", s), ("low", lo)):
        if x.shape != t.shape:
            raise ValueError(f"{name}[{k!r}] has shape {x.shape}, truth[{k!r}] {t.shape}: "
                             "give the same stars in the same order")
    has = np.isfinite(f)                                                   # [N]
    bad_sigma = np.flatnonzero(has & ~(s > 0))
    if bad_sigma.size:
        raise ValueError(f"fp32_error[{k!r}] row {bad_sigma[0]} is {s[bad_sigma[0]]!r}: predicted "
                         "errors must be positive where the prediction is finite")
    lost = has & ~np.isfinite(lo)
    kept = has & ~lost
    scored = kept & np.isfinite(t)
    if not scored.any():
        raise ValueError(f"no star has a finite truth and prediction of {k!r}")
    shift = np.abs(lo[kept] - f[kept]) / s[kept]
    error_p99 = float("nan")
    if low_error is not None:
        e = _column(low_error, k, "low_error")
        if e.shape != t.shape:
            raise ValueError(f"low_error[{k!r}] has shape {e.shape}, truth[{k!r}] {t.shape}")
        error_p99 = float(np.percentile(np.abs(e[kept] / s[kept] - 1), SHIFT_PERCENTILE))
    d_fp32 = t[scored] - f[scored]                                         # [M]
    delta = f[scored] - lo[scored]
    # d_low as the null computes it (all signs +1), so a draw equal to the observed
    # configuration scores bit for bit alike (the median of few stars takes few values)
    d_low = d_fp32 + delta
    scatter, bias = robust_scatter(d_fp32), float(np.median(d_fp32))
    ratio_floor, bias_floor = _noise_floor(d_fp32, delta, scatter, bias, null_draws)
    return LabelGate(k, int(scored.sum()), int(has.sum()), int(lost.sum()),
                     scatter, robust_scatter(d_low), bias, float(np.median(d_low)),
                     float(np.percentile(shift, SHIFT_PERCENTILE)), error_p99,
                     max(1 + SCATTER_TOLERANCE, ratio_floor), max(BIAS_TOLERANCE, bias_floor))


def _noise_floor(d: np.ndarray, delta: np.ndarray, scatter: float, bias: float,
                 draws: int) -> tuple[float, float]:
    """The ``NULL_QUANTILE`` percentiles of the scatter ratio and of |bias change| / scatter
    when the differences ``delta`` [M] are added to the residuals ``d`` [M] with random
    signs (0, 0 when ``draws`` is 0)."""
    if draws == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(0)
    step = max(1, (1 << 22) // max(d.size, 1))       # draws per block: ~32 MB of null residuals
    ratio, moved = [], []
    for start in range(0, draws, step):
        signs = rng.choice([-1.0, 1.0], size=(min(step, draws - start), d.size))    # [D, M]
        null = d[None, :] + signs * delta[None, :]
        ratio.append(robust_scatter(null, axis=1) / scatter)                        # [D]
        moved.append(np.abs(np.median(null, axis=1) - bias) / scatter)
    return (float(np.percentile(np.concatenate(ratio), NULL_QUANTILE)),
            float(np.percentile(np.concatenate(moved), NULL_QUANTILE)))


def _column(d: Mapping[str, np.ndarray], k: str, name: str) -> np.ndarray:
    if k not in d:
        raise ValueError(f"{name} has no column {k!r} (it has {sorted(d)})")
    return np.asarray(d[k], dtype=np.float64)
