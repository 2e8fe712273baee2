"""Checks shared by every entry point that takes catalogue columns, and the caller's
catalogue (array or table) read as float64 columns."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .vocab import Vocab, by_information


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


def model_input_columns(model, request: Sequence[str]) -> list[str]:
    """Tokens the model has normalisation stats for, minus the requested ones, most
    informative first (:func:`lamfast.vocab.by_information`: the context cut keeps them)."""
    center = model.normalizer.center
    return by_information(t for t in model.vocab.tokens
                          if np.isfinite(center[model.vocab.id(t)]) and t not in request)


# ---- the caller's catalogue ----------------------------------------------------------------

class InputTable:
    """A catalogue as named columns of real numbers, read in row ranges as float64.

    Parameters
    ----------
    values : [N, V] array of real numbers (any float or int dtype, a masked array, or an
        object array holding only numbers), an astropy Table or a pandas DataFrame.
        Masked cells are NaN (missing).
    columns : V names of an array's columns; for a table, the columns to use (default:
        those whose names are tokens of ``vocab``, the others are not token columns).
    vocab : the model's vocabulary.

    Raises
    ------
    ValueError
        Unknown or duplicate names, a name the table lacks, an array of the wrong shape,
        or cells that are not real numbers (the message names the column).
    """

    def __init__(self, values, columns: Sequence[str] | None, vocab: Vocab):
        if isinstance(columns, str):
            columns = [columns]
        frame = hasattr(values, "iloc") and hasattr(values, "columns")     # a pandas DataFrame
        if frame or hasattr(values, "colnames"):                             # or an astropy Table
            have = [str(c) for c in (values.columns if frame else values.colnames)]
            if columns is None:
                columns = [c for c in have if c in vocab]
            lacking = [c for c in columns if c not in have]
            if lacking:
                raise ValueError(f"the table has no column {lacking[0]!r} (it has {', '.join(have[:8])}, ...)")
            self._table, self._array = values, None
            self.n_rows = len(values)
        else:
            if columns is None:
                raise ValueError("columns: give the names of the array's columns (or pass an astropy "
                                 "Table or a pandas DataFrame, whose names are taken)")
            self._table, self._array = None, np.asanyarray(values)
            if self._array.ndim != 2:
                raise ValueError(f"values must be 2-D [N stars, V columns], got shape {self._array.shape}")
            if self._array.shape[1] != len(columns):
                raise ValueError(f"values has {self._array.shape[1]} columns but {len(columns)} names were given")
            self.n_rows = self._array.shape[0]
        self.columns = list(columns)
        vocab.ids(self.columns)                 # unknown names -> ValueError naming the first
        if len(set(self.columns)) != len(self.columns):
            dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"duplicate columns: {dupes}")
        if not self.columns:
            raise ValueError("no input column: give at least one token column")
        for name in self.columns:   # a text column fails here, before any work (later objects as read)
            _float64(self._column(name)[:1], name)

    def rows(self, start: int, stop: int, names: Sequence[str]) -> np.ndarray:
        """float64 [stop - start, len(names)] values of rows ``start:stop``, NaN = missing."""
        out = np.empty((max(0, min(stop, self.n_rows) - start), len(names)))
        for k, name in enumerate(names):
            out[:, k] = _float64(self._column(name)[start:stop], name, start)
        return out

    def _column(self, name: str):
        if self._array is not None:
            return self._array[:, self.columns.index(name)]
        column = self._table[name]
        return column.array if hasattr(column, "iloc") else column    # pandas: its own nullable arrays


def _float64(cells, name: str, row_offset: int = 0) -> np.ndarray:
    """One column's cells as float64 [n], masked or NA cells NaN; ValueError naming the
    column unless they are real numbers (an object column is checked cell by cell)."""
    if cells.dtype.kind not in "fiuO":
        raise ValueError(f"column {name!r} holds {cells.dtype} values, not real numbers "
                         "(convert it, e.g. with .astype(float); NaN = missing)")
    if hasattr(cells, "to_numpy") and cells.dtype.kind != "O":        # pandas arrays hold pd.NA
        return cells.to_numpy(dtype=np.float64, na_value=np.nan)
    mask = np.ma.getmaskarray(cells) if np.ma.isMaskedArray(cells) else None
    data = np.asarray(np.ma.getdata(cells))                         # a Quantity: its numbers
    if data.dtype.kind == "O":
        bad = next((i for i, x in enumerate(data) if isinstance(x, bool) or not isinstance(x, numbers.Real)), None)
        if bad is not None:
            raise ValueError(f"column {name!r} holds {data[bad]!r} (row {bad + row_offset}), not a number "
                             "(use NaN for missing values)")
    out = data.astype(np.float64)
    if mask is not None:
        out[mask] = np.nan
    return out
