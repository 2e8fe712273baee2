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
