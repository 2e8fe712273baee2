"""Comparison baselines (stock implementations that lamfast is measured against)."""
