"""glibc malloc settings for reading archive files: freed buffers kept for reuse.

Reading a Gaia archive file allocates a few MB-sized arrays per chunk and file (parser
outputs, the gnorm tables, Arrow's write buffers) and frees them soon after. glibc's
default policy mmaps every block over 128 KiB and unmaps it on free, and trims the heap
top as soon as 128 KiB are free, so each new array is fresh pages the kernel faults in
and zeroes: ~10% of ``lamfast data convert``'s CPU time on 8 files
(benchmarks/bench_convert.py). glibc raises both thresholds itself as it sees large
frees, up to a 32 MiB mmap threshold and a 64 MiB trim threshold; :func:`keep_freed_memory`
sets those final values from the start. The cost: up to 64 MiB of freed heap per malloc
arena stays with the process instead of going back to the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

MMAP_THRESHOLD = 32 << 20   # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD   # what glibc's dynamic policy sets with it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # malloc.h
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_lock = threading.Lock()
_set: bool | None = None   # None: not tried yet


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (once per process; see the module doc).
    Leaves them alone where the user set malloc options in the environment or the C
    library is not glibc. Returns whether they are set."""
    global _set
    with _lock:
        if _set is None:
            _set = _mallopt_thresholds()
        return _set


def _mallopt_thresholds() -> bool:
    if any(k in os.environ for k in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):   # not glibc (macOS): its own policy
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
