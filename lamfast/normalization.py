"""Per-token robust standardisation: x -> (x - median) / (1.4826 * MAD).

Stats are stored by token id (index 0 = padding), as in the authors' ``norm_config``
(``_input_mean``/``_input_std``/``_input_standardized``, 119 entries for the paper).
Tokens that are not standardised keep center 0 and scale 1.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import numpy as np

from .vocab import Vocab

MAD_TO_SIGMA = 1.4826


class Normalizer:
    """center[id], scale[id] float64 arrays over a vocabulary; NaN center = no stats."""

    def __init__(self, vocab: Vocab, center: np.ndarray, scale: np.ndarray):
        center = np.asarray(center, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        if center.shape != (len(vocab),) or scale.shape != (len(vocab),):
            raise ValueError(f"stats must have {len(vocab)} entries (one per token id incl. "
                             f"padding), got center {center.shape}, scale {scale.shape}")
        known = np.isfinite(center)
        if np.any(known & ~(np.isfinite(scale) & (scale > 0))):
            bad = [vocab.name(i) for i in np.flatnonzero(known & ~(scale > 0))]
            raise ValueError(f"scale must be positive and finite; bad for tokens {bad}")
        self.vocab, self.center, self.scale = vocab, center, scale

    @classmethod
    def identity(cls, vocab: Vocab) -> Normalizer:
        return cls(vocab, np.zeros(len(vocab)), np.ones(len(vocab)))

    @classmethod
    def fit(cls, values: np.ndarray, columns: Sequence[str], vocab: Vocab | None = None,
            base: Normalizer | None = None) -> Normalizer:
        """Median and 1.4826*MAD per column, ignoring NaN.

        values: [N, V] with one column per name. Tokens absent from ``columns`` keep the
        stats of ``base`` (or none). A column whose MAD is 0 falls back to its standard
        deviation, then 1, so that standardising never divides by zero.
        """
        vocab = vocab or (base.vocab if base else Vocab.paper())
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(columns):
            raise ValueError(f"values must be [N, {len(columns)}], got {values.shape}")
        center = base.center.copy() if base else np.full(len(vocab), np.nan)
        scale = base.scale.copy() if base else np.full(len(vocab), np.nan)
        center[0], scale[0] = 0.0, 1.0
        for j, name in enumerate(columns):
            col = values[:, j]
            col = col[np.isfinite(col)]
            if col.size == 0:
                raise ValueError(f"column {name!r} has no finite value to fit its stats on")
            med = np.median(col)
            mad = MAD_TO_SIGMA * np.median(np.abs(col - med))
            if not mad > 0:
                mad = np.std(col) if np.std(col) > 0 else 1.0
            center[vocab.id(name)], scale[vocab.id(name)] = med, mad
        return cls(vocab, center, scale)

    def has_stats(self, columns: Sequence[str]) -> None:
        """Raise ValueError naming the first column without stats."""
        for name in columns:
            if not np.isfinite(self.center[self.vocab.id(name)]):
                raise ValueError(f"no normalisation stats for column {name!r}")

    def center_inv_scale(self, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """float32 [V] center and 1/scale for the given columns (the C++ cores' form)."""
        self.has_stats(columns)
        ids = self.vocab.ids(columns)
        return (self.center[ids].astype(np.float32),
                (1.0 / self.scale[ids]).astype(np.float32))

    def standardize(self, values: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """[N, V] float32, exactly as the C++ tokenizer computes it."""
        center, inv_scale = self.center_inv_scale(columns)
        return (np.asarray(values, dtype=np.float32) - center) * inv_scale

    def unstandardize(self, x, token_id, error=None):
        """Physical value (and error) of standardised outputs for token ids (same shape)."""
        token_id = np.asarray(token_id)
        c, s = self.center[token_id], self.scale[token_id]
        value = np.asarray(x, dtype=np.float64) * s + c
        return value if error is None else (value, np.asarray(error, dtype=np.float64) * s)

    # ---- persistence --------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"tokens": self.vocab.to_list(),
                "center": [None if not np.isfinite(c) else float(c) for c in self.center],
                "scale": [None if not np.isfinite(s) else float(s) for s in self.scale]}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        as_array = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=np.float64)
        return cls(Vocab(d["tokens"]), as_array(d["center"]), as_array(d["scale"]))

    @classmethod
    def from_reference_config(cls, config: dict | str | os.PathLike) -> Normalizer:
        """From the authors' ``config.json`` (a path or its parsed dict).

        Uses ``tokenizer_config.vocab_tokens`` for the vocabulary when present and
        ``norm_config._input_mean/_input_std`` indexed by token id.
        """
        if not isinstance(config, dict):
            with open(config) as f:
                config = json.load(f)
        norm = config["norm_config"]
        tok = config.get("tokenizer_config", {})
        if "vocabs" in tok:  # names, with ids in vocab_tokens (1..118 for the paper)
            ids = tok.get("vocab_tokens", range(1, len(tok["vocabs"]) + 1))
            by_id = dict(zip(ids, tok["vocabs"]))
            if sorted(by_id) != list(range(1, len(by_id) + 1)):
                raise ValueError("tokenizer_config.vocab_tokens must be the ids 1..N")
            vocab = Vocab(by_id[i] for i in range(1, len(by_id) + 1))
        else:
            vocab = Vocab.paper()
        mean = np.asarray(norm["_input_mean"], dtype=np.float64).ravel()
        std = np.asarray(norm["_input_std"], dtype=np.float64).ravel()
        if "_input_standardized" in norm:
            flag = np.asarray(norm["_input_standardized"], dtype=bool).ravel()
            mean, std = np.where(flag, mean, 0.0), np.where(flag, std, 1.0)
        return cls(vocab, mean, std)

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Normalizer:
        """From a table with columns vocab, token, mean, std, standardized (one row per id)."""
        with open(path, newline="") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: int(r["token"]))
        if [int(r["token"]) for r in rows] != list(range(len(rows))):
            raise ValueError(f"{path}: token ids must run 0..{len(rows) - 1} without gaps")
        flag = np.array([r["standardized"].strip().lower() == "true" for r in rows])
        mean = np.where(flag, [float(r["mean"]) for r in rows], 0.0)
        std = np.where(flag, [float(r["std"]) for r in rows], 1.0)
        return cls(Vocab(r["vocab"] for r in rows[1:]), mean, std)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Normalizer) and self.vocab == other.vocab
                and np.array_equal(self.center, other.center, equal_nan=True)
                and np.array_equal(self.scale, other.scale, equal_nan=True))
