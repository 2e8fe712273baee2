"""Robust statistics shared by training logs, the demo, the tasks and the benchmarks."""

from __future__ import annotations

import numpy as np


def robust_scatter(x, axis=None):
    """1.4826 * median absolute deviation (astropy's mad_std), ignoring NaN.

    axis=None: a float over the finite values (NaN when there are none); otherwise the
    scatter along ``axis`` as an array over the other axes."""
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        x = x[np.isfinite(x)]
        return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return 1.4826 * np.nanmedian(np.abs(x - med), axis=axis)
