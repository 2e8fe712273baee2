"""Deterministic train/validation/test splits by a hash of the Gaia source_id.

Gaia DR3 source_ids of the stars we use are all multiples of 128 (the low bits carry no
randomness), so ``source_id % 10`` puts no star at all in some splits. The splitmix64
finaliser mixes every bit of the id, so the split is uniform, reproducible, and a star
keeps its split whatever file or order it comes in.
"""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic; the same bits as csrc/hash.hpp mix64)."""
    with np.errstate(over="ignore"):  # wrapping is the point
        z = np.asarray(x).astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_split(source_id, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """int8 [N] split of each star: 0 train, 1 validation, 2 test (``SPLIT_NAMES``).

    source_id : int64 [N]; fractions : the three shares (sum 1); seed : another seed gives
    another, equally uniform, split.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    ids = np.asarray(source_id)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"source_id must be integers, got {ids.dtype}")
    h = splitmix64(ids.astype(np.int64).view(np.uint64) ^ splitmix64(np.uint64(seed)))
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53            # uniform in [0, 1)
    return np.searchsorted(np.cumsum(f)[:2], u, side="right").astype(np.int8)
