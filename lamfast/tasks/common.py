"""What the task modules share: model resolution, array predictions, robust statistics."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..vocab import XP

XP_TOKENS = XP                      # bp0..bp54, rp0..rp54: the order lamfast.xp expects
GAUSSIAN_MEDIAN_ABS_Z = 0.6744897501960817   # median |z| of a unit normal: calibrated errors


def as_model(model):
    """A :class:`lamfast.LAM` (returned as is), ``"default"`` or a model folder (loaded, eval)."""
    if isinstance(model, (str, os.PathLike)):
        from ..infer import load_model

        return load_model(model)
    if not hasattr(model, "vocab"):
        raise ValueError(f"model must be a lamfast.LAM, 'default' or a model folder, got {type(model).__name__}")
    return model


def predict_arrays(model, values: np.ndarray, columns: Sequence[str], request: Sequence[str],
                   *, device: str = "cpu", batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as arrays: value, error float64 [N, R] (physical units, request order).

    ``model`` is a :class:`lamfast.LAM` (predicting through :func:`lamfast.predict`) or a
    stand-in with a ``predict(values, columns, request, **kwargs)`` method returning the
    same columns (the tasks' tests use stand-ins of exactly known predictions). Values go
    to ``predict`` as given: it standardises them in float64."""
    from ..infer import predict

    args = (values, list(columns), list(request))
    kwargs = dict(device=device, batch_size=batch_size)
    table = model.predict(*args, **kwargs) if hasattr(model, "predict") else predict(model, *args, **kwargs)
    value = np.stack([np.asarray(table[r], dtype=np.float64) for r in request], axis=1)
    error = np.stack([np.asarray(table[f"{r}_error"], dtype=np.float64) for r in request], axis=1)
    return value, error


def inputs_from(n: int, given: Mapping[str, object]) -> tuple[np.ndarray, list[str]]:
    """Broadcast named inputs (scalars or [N] arrays; None = not given) to a float64 [N, V] block."""
    columns, blocks = [], []
    for name, v in given.items():
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.ndim > 1 or (a.ndim == 1 and len(a) != n):
            raise ValueError(f"input {name!r} must be a scalar or have {n} values, got shape {a.shape}")
        columns.append(name)
        blocks.append(np.broadcast_to(a, (n,)))
    if not columns:
        raise ValueError("give at least one input quantity")
    return np.stack(blocks, axis=1), columns


def common_length(**arrays) -> int:
    """The one length of the non-scalar inputs (1 if all are scalars)."""
    lengths = {k: np.asarray(v).shape[0] for k, v in arrays.items() if v is not None and np.ndim(v) == 1}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs have different lengths: {lengths}")
    return next(iter(lengths.values()), 1)


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix), then free it."""
    from ..atomic import atomic_path

    if tight:
        fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or None)
    pyplot().close(fig)
    return path
