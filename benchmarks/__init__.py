"""lamfast benchmark suite: `python -m benchmarks` runs every benchmark this machine can."""
