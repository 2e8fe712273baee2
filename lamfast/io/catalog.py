"""The one in-memory form of a catalogue that every reader returns and
:func:`lamfast.tokenize` takes: named columns of values and errors, NaN = missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Catalog:
    """N stars x V named token columns.

    columns   : V token names (vocabulary names, e.g. "bp0", "jh", "teff")
    values    : float32 [N, V], NaN = missing
    errors    : float32 [N, V], NaN = unknown
    source_id : int64 [N] (Gaia DR3 source_id where known, else a row id)
    meta      : free-form provenance (file names, units, flags)
    extra     : named [N] side columns that are not tokens (ra, dec, phot_g_mean_mag, split...)
    """

    columns: list[str]
    values: np.ndarray
    errors: np.ndarray
    source_id: np.ndarray
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.columns = list(self.columns)
        n, v = len(self.source_id), len(self.columns)
        for name, a in (("values", self.values), ("errors", self.errors)):
            if a.shape != (n, v) or a.dtype != np.float32:
                raise ValueError(f"Catalog.{name} must be float32 [{n}, {v}], got {a.dtype} {a.shape}")
        if self.source_id.dtype != np.int64:
            raise ValueError(f"Catalog.source_id must be int64, got {self.source_id.dtype}")
        for name, a in self.extra.items():
            if len(a) != n:
                raise ValueError(f"Catalog.extra[{name!r}] has {len(a)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.source_id)

    def column(self, name: str) -> np.ndarray:
        """float32 [N] values of one token column."""
        return self.values[:, self._index(name)]

    def select(self, columns: Sequence[str]) -> Catalog:
        """The same stars restricted to (and ordered by) ``columns``."""
        idx = [self._index(c) for c in columns]
        return Catalog(list(columns), self.values[:, idx], self.errors[:, idx],
                       self.source_id, dict(self.meta), dict(self.extra))

    def rows(self, index) -> Catalog:
        """A subset of stars (slice, boolean mask or integer index)."""
        return Catalog(self.columns, self.values[index], self.errors[index],
                       self.source_id[index], dict(self.meta),
                       {k: np.asarray(a)[index] for k, a in self.extra.items()})

    def _index(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise KeyError(f"column {name!r} not in catalogue (has {len(self.columns)} "
                           f"columns: {', '.join(self.columns[:5])}, ...)") from None


def join_rows(catalog: Catalog, source_id: np.ndarray) -> Catalog:
    """The rows of ``catalog`` (e.g. photometry) with these ``source_id`` [N], in their
    order; an id it lacks gives an all-missing row (NaN values, NaN float extras).
    ValueError if ``catalog`` has an id twice."""
    return _take_rows(catalog, _join_index(source_id, catalog.source_id))


def _join_index(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """int64 [len(target)]: row of ``source`` with the same id, -1 where none."""
    if len(source) == 0:
        return np.full(len(target), -1, np.int64)
    order = np.argsort(source, kind="stable")
    sorted_ids = source[order]
    dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if dup.size:
        raise ValueError(f"photometry has duplicate source_id {dup[0]}")
    pos = np.minimum(np.searchsorted(sorted_ids, target), len(source) - 1)
    return np.where(sorted_ids[pos] == target, order[pos], -1).astype(np.int64)


def _take_rows(cat: Catalog, index: np.ndarray) -> Catalog:
    """Rows of ``cat`` by index; -1 gives an all-missing row (NaN values, NaN floats)."""
    missing = index < 0
    safe = np.where(missing, 0, index)
    if len(cat) == 0:
        values = np.full((len(index), len(cat.columns)), np.nan, np.float32)
        return Catalog(cat.columns, values, values.copy(), np.full(len(index), -1, np.int64),
                       dict(cat.meta), {k: np.full(len(index), np.nan) for k in cat.extra})
    values = cat.values[safe]
    errors = cat.errors[safe]
    values[missing] = np.nan
    errors[missing] = np.nan
    extra = {}
    for k, a in cat.extra.items():
        a = np.asarray(a)[safe]
        if missing.any():
            a = a.astype(np.float64) if a.dtype.kind in "iub" else a
            if a.dtype.kind == "f":
                a[missing] = np.nan
        extra[k] = a
    return Catalog(cat.columns, values, errors, cat.source_id[safe], dict(cat.meta), extra)
