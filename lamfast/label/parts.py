"""Committing part files with a checksum, and checking them before they are trusted.

A unit's part ``OUT.parts/unit-NNNNNN.npz`` is written to a temporary file; its sha256 and
size go to the sidecar ``unit-NNNNNN.npz.sha256`` (atomically); then the fsync'ed
temporary file is renamed onto the part. That rename is the commit: anyone looking at the
folder meanwhile (a resumed shard, a retried Dask task) sees the part missing or done,
never half-committed. A part counts as *done* only when its sidecar exists and the file
still has that size and sha256, so a part truncated or changed on disk (a bit flip, a
partial copy, a job killed mid-commit) is computed again by ``resume`` and refused by
``merge``, never merged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import warnings
from pathlib import Path

from ..atomic import atomic_path, atomic_write_bytes

CHECKSUM_SUFFIX = ".sha256"
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def checksum_path(part: Path) -> Path:
    """The sidecar of ``part`` that records its sha256 and size."""
    return part.with_name(part.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def commit_part(part: Path, write) -> None:
    """Write ``part`` with ``write(file object)`` and commit it with its checksum (the
    sidecar first, then the rename of the finished file: see the module docstring).

    A failure (a full disk included) leaves neither a partial part nor a sidecar: OSError
    naming the part and saying how to go on."""
    remove_part(part)                              # an old part or sidecar never vouches for the new one
    try:
        with atomic_path(part) as tmp:
            with open(tmp, "wb") as f:
                write(f)
            record = {"sha256": file_sha256(tmp), "size": tmp.stat().st_size}
            atomic_write_bytes(checksum_path(part), json.dumps(record).encode())
    except OSError as e:
        remove_part(part)                          # nothing half-committed is left
        raise write_error(part, e, "rerun with --resume (resume=True) to compute the rest; the "
                                   "finished parts are kept") from e


def write_error(path: Path, e: OSError, then: str) -> OSError:
    """The OSError of a failed write of ``path``: what failed, why, and what to do then."""
    full = is_disk_full(e)
    why = "the disk is full (no space left on device)" if full else (e.strerror or str(e))
    free = "free some space, then " if full else ""
    return OSError(errno.ENOSPC if full else e.errno, f"writing {path} failed: {why}; {free}{then}")


def part_problem(part: Path) -> str | None:
    """None if ``part`` is a committed, intact part; else why it is not (missing, no checksum,
    truncated, changed on disk)."""
    if not part.is_file():
        return "missing"
    try:
        record = json.loads(checksum_path(part).read_text())
        sha, size = str(record["sha256"]), int(record["size"])
    except FileNotFoundError:
        return f"no checksum ({checksum_path(part).name}): it was never committed"
    except (OSError, ValueError, TypeError, KeyError):
        return f"unreadable checksum file {checksum_path(part).name}"
    actual = part.stat().st_size
    if actual != size:
        return f"truncated or changed on disk: {actual} bytes, {size} when it was written"
    if file_sha256(part) != sha:
        return "changed on disk: its sha256 differs from the one recorded when it was written"
    return None


def part_done(part: Path) -> bool:
    """``part`` is committed and intact (:func:`part_problem`); a corrupt one is removed with
    a RuntimeWarning naming it, so that the job computes its unit again."""
    problem = part_problem(part)
    if problem is None:
        return True
    if problem != "missing":
        warnings.warn(f"{part}: {problem}; computing the unit again", RuntimeWarning, stacklevel=2)
        remove_part(part)
    return False


def remove_part(part: Path) -> None:
    """Remove a part and its checksum (missing ones are fine)."""
    part.unlink(missing_ok=True)
    checksum_path(part).unlink(missing_ok=True)


def is_disk_full(e: BaseException) -> bool:
    """``e`` says the disk is full (errno ENOSPC/EDQUOT; pyarrow and h5py only say it in
    the message)."""
    return isinstance(e, OSError) and (e.errno in DISK_FULL or "no space left on device" in str(e).lower()
                                       or "disk quota exceeded" in str(e).lower())

