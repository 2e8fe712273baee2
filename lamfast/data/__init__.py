"""Datasets: the real APOGEE x Gaia XP benchmark set, a synthetic generator, splits."""

from .apogee_xp import build_apogee_xp
from .split import hash_split
from .synthetic import make_synthetic

__all__ = ["build_apogee_xp", "hash_split", "make_synthetic"]
