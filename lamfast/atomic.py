"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader (or a resumed job) therefore sees either the old file or the complete new
one, never a torn write, even if the process is killed with SIGKILL mid-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path to write; on success it is renamed onto ``path``.

    >>> with atomic_path("out.parquet") as tmp:
    ...     table.write(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows opening a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish_folder(new: Path, out: Path) -> None:
    """Make folder ``new`` appear as ``out`` at once: every file and folder under ``new``
    on disk first, then ``new`` renamed onto ``out``. An existing ``out`` (the caller has
    checked that it may be replaced) is renamed aside first and deleted once the new one is
    in place."""
    for root, _, names in os.walk(new):
        for name in names:
            with open(Path(root) / name, "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.rename(out, old)
    os.rename(new, out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)
