"""lamfast benchmark suite: `python -m benchmarks` runs every benchmark this machine can."""

import sys
from pathlib import Path

# `python -m benchmarks.X` from a checkout puts the checkout first on sys.path, and its
# lamfast/ has no compiled _core unless it was built in place (cmake): then the benchmarks
# import the installed lamfast instead of failing on the source tree's.
_ROOT = Path(__file__).resolve().parents[1]
if not any((_ROOT / "lamfast").glob("_core*.so")):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]
