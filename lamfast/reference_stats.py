"""The per-token statistics of the paper's training set, shipped as package data.

Source: Leung & Bovy 2024, ``henrysky/astroNN_stars_foundation`` ``model_torch/config.json``
(``norm_config._input_mean/_input_std``; MIT licence, (c) Henry Leung). XP entries are in
G-flux-normalised ("gnorm") units. See ``lamfast/resources/README.md``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from .normalization import Normalizer
from .vocab import Vocab

STATS_FILE = "lam2024_norm_stats.json"


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    text = resources.files("lamfast.resources").joinpath(STATS_FILE).read_text()
    d = json.loads(text)
    mean = np.array(d["mean"], dtype=np.float64)
    std = np.array(d["std"], dtype=np.float64)
    mean.flags.writeable = std.flags.writeable = False  # cached: shared by every caller
    return tuple(d["tokens"]), mean, std


def paper_norm_stats() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(token names [118], mean [118], std [118]) of the paper's training set, ids 1..118."""
    return _load()


def paper_normalizer() -> Normalizer:
    """The paper's :class:`Normalizer` (119 entries by token id, id 0 = padding)."""
    tokens, mean, std = _load()
    return Normalizer(Vocab(tokens), np.concatenate([[0.0], mean]), np.concatenate([[1.0], std]))


def xp_prior() -> tuple[np.ndarray, np.ndarray]:
    """Population mean and std [110] of the gnorm XP coefficients (BP 0-54, then RP 0-54)."""
    tokens, mean, std = _load()
    expected = tuple(f"bp{i}" for i in range(55)) + tuple(f"rp{i}" for i in range(55))
    if tokens[:110] != expected:
        raise ValueError(f"{STATS_FILE}: the first 110 tokens must be bp0..bp54, rp0..rp54")
    return mean[:110].copy(), std[:110].copy()
