"""Checks shared by every entry point that takes catalogue columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .vocab import Vocab


def check_columns(values, columns: Sequence[str], errors, vocab: Vocab):
    """Validate a catalogue table; return (values, errors, token_ids) ready for C++.

    values: float32 [N, V], NaN = missing; errors: None or float32 [N, V]; columns: V
    names of the vocabulary. Raises ValueError naming what is wrong.
    """
    ids = vocab.ids(columns)
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if list(columns).count(c) > 1})
        raise ValueError(f"duplicate columns: {dupes}")
    values = _check_array("values", values, len(columns))
    if errors is not None:
        errors = _check_array("errors", errors, len(columns))
        if errors.shape != values.shape:
            raise ValueError(f"errors shape {errors.shape} != values shape {values.shape}")
    return values, errors, ids


def _check_array(what: str, a, n_columns: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise ValueError(f"{what} must be float32, got {a.dtype} (use .astype(np.float32))")
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N stars, V columns], got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{what} has no rows (N = 0)")
    if a.shape[1] != n_columns:
        raise ValueError(f"{what} has {a.shape[1]} columns but {n_columns} names were given")
    if n_columns == 0:
        raise ValueError(f"{what} has no columns (V = 0)")
    return np.ascontiguousarray(a)


def raise_bad_cell(bad, columns: Sequence[str], row_offset: int = 0):
    row, col, in_errors = bad
    where = "errors" if in_errors else "values"
    raise ValueError(f"infinite value in {where}: column {columns[col]!r}, row {row + row_offset}"
                     " (use NaN for missing values)")


def find_bad_cell(values: np.ndarray, errors: np.ndarray | None):
    """First (row, col, in_errors) holding +/-inf, scanning row by row, values before
    errors (an error counts only where its value is present), as the C++ cores do."""
    bad_v = np.isinf(values)
    bad_e = np.isinf(errors) & ~np.isnan(values) if errors is not None else np.zeros_like(bad_v)
    rows = np.flatnonzero(bad_v.any(axis=1) | bad_e.any(axis=1))
    if rows.size == 0:
        return None
    row = int(rows[0])
    if bad_v[row].any():
        return row, int(np.flatnonzero(bad_v[row])[0]), False
    return row, int(np.flatnonzero(bad_e[row])[0]), True
