"""One job per output: the lock file ``OUT.lock`` beside the output.

A whole job (:func:`lamfast.label` without ``shard``, :func:`lamfast.distributed.label_distributed`)
and :func:`lamfast.label.merge` hold an exclusive ``flock`` on ``OUT.lock`` for as long
as they run; a shard job (``shard=K/N``) holds a shared one, so the N shards of a plan run
together while a whole job or a merge of the same output is refused (and refuses them).
A second job is refused at once (:class:`OutputLockedError`, naming the lock and the
output), never waits and never interleaves its parts with the first one's. The kernel
drops a flock when its process dies, even by SIGKILL: a crashed job never leaves a stale
lock. The file is removed by the last holder (the inode is checked after locking, so a job
that locked a file just removed retries on the new one). Within one process the lock is
re-entrant (merge inside a labelling job); it does not separate threads of one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

_HELD: dict[Path, list] = {}           # lock path -> [fd, shared, depth], this process's locks
_HELD_LOCK = threading.Lock()


class OutputLockedError(RuntimeError):
    """Another job holds the lock of this output."""


def lock_path(output: str | os.PathLike) -> Path:
    """``OUT.lock``: the lock file of the output ``OUT``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, *, shared: bool = False):
    """Hold the lock of ``output`` for the ``with`` block (OutputLockedError if another
    process holds it in a conflicting mode)."""
    path = lock_path(output).absolute()
    with _HELD_LOCK:
        held = _HELD.get(path)
        if held is not None and held[1] and not shared:
            raise OutputLockedError(f"{path}: this process already holds the lock of {output} "
                                    "for a shard job; a whole job or merge cannot run inside it")
        if held is None:
            _HELD[path] = held = [_acquire(path, Path(output), shared), shared, 0]
        held[2] += 1
    try:
        yield path
    finally:
        with _HELD_LOCK:
            held[2] -= 1
            if held[2] == 0:
                del _HELD[path]
                _release(path, held[0])


def _acquire(path: Path, output: Path, shared: bool) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputLockedError(
                f"another lamfast label job{holder} is writing {output}: it holds the lock {path}; "
                "wait for it to finish (a crashed job releases it at once), or choose another "
                "output") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:            # else: the last holder removed this file meanwhile; lock the new one
            break
        os.close(fd)
    if not shared:
        with contextlib.suppress(OSError):   # the pid is only for the message (a full disk is fine)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _release(path: Path, fd: int) -> None:
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # nobody else holds it: remove it
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (process {pid})"
    return ""
