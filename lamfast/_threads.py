"""Thread count used by the C++ cores (tokenizer, sampler, cross-match, parsers)."""

from __future__ import annotations

import os
from contextlib import contextmanager

_threads: int | None = None


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_num_threads(n: int | None) -> None:
    """Threads for lamfast's C++ cores; None = all cores this process may use."""
    global _threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"number of threads must be a positive int or None, got {n!r}")
    _threads = n


def get_num_threads() -> int:
    if _threads is not None:
        return _threads
    env = os.environ.get("LAMFAST_NUM_THREADS")
    return int(env) if env else _available_cores()


def resolve_threads(threads: int | None) -> int:
    if threads is None:
        return get_num_threads()
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return threads


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n for the duration (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
