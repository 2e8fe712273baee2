"""lamfast.io.text_table.stream_chunks: the parsers' reader (reused buffers, read ahead in
a thread) gives the bytes gzip/plain reading gives, cut after line ends, and the same
errors as read_chunks."""

import gzip

import numpy as np
import pytest

from lamfast.io import text_table
from lamfast.io.text_table import read_chunks, stream_chunks

BACKENDS = ["zlib"] + (["isal"] if text_table.gzip_backend() == "isal" else [])


@pytest.fixture(params=BACKENDS)
def backend(request):
    text_table.set_gzip_backend(request.param)
    yield request.param
    text_table.set_gzip_backend(None)


def random_lines(rng, n: int, longest: int = 300) -> bytes:
    """n lines of random printable bytes, lengths 0..longest, maybe no final line end."""
    lengths = rng.integers(0, longest, n)
    lines = [bytes(rng.integers(32, 127, k, dtype=np.uint8)) for k in lengths]
    text = b"\n".join(lines)
    return text + b"\n" if rng.random() < 0.5 else text


def chunks_of(path, chunk_bytes, skip=0) -> list[bytes]:
    return [bytes(c) for c in stream_chunks(path, chunk_bytes, skip)]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 97, 4096, 1 << 20])
@pytest.mark.parametrize("gz", [False, True])
def test_same_bytes_cut_after_line_ends(rng, tmp_path, backend, chunk_bytes, gz):
    text = random_lines(rng, int(rng.integers(50, 400)))
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(text, compresslevel=int(rng.integers(1, 10))) if gz else text)
    skip = int(rng.integers(0, 200))
    chunks = chunks_of(path, chunk_bytes, skip)
    assert b"".join(chunks) == text[skip:]
    assert all(c.endswith(b"\n") for c in chunks[:-1]) and all(chunks)   # whole lines
    assert b"".join(chunks) == b"".join(read_chunks(path, chunk_bytes, skip))


def test_several_members_and_zero_padding(rng, tmp_path, backend):
    parts = [random_lines(rng, 30) + b"\n" for _ in range(3)]
    path = tmp_path / "m.csv.gz"
    path.write_bytes(b"".join(gzip.compress(p) for p in parts) + b"\x00" * 5)
    assert b"".join(chunks_of(path, 512)) == b"".join(parts)


def test_empty_inputs(tmp_path, backend):
    (tmp_path / "e.csv").write_bytes(b"")
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(b""))
    (tmp_path / "h.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    assert chunks_of(tmp_path / "e.csv", 64) == []
    assert chunks_of(tmp_path / "e.csv.gz", 64) == []
    assert chunks_of(tmp_path / "h.csv.gz", 64, skip=4) == []
    assert chunks_of(tmp_path / "h.csv.gz", 64, skip=100) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "crc"])
def test_damaged_gzip_names_the_file(rng, tmp_path, backend, damage):
    z = gzip.compress(random_lines(rng, 200) + b"\n")
    z = {"truncate": z[:len(z) // 2], "garbage": z + b"garbage",
         "crc": z[:-8] + bytes([z[-8] ^ 1]) + z[-7:]}[damage]
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(z)
    with pytest.raises(ValueError, match=r"bad\.csv\.gz: truncated or corrupt gzip"):
        chunks_of(path, 256)


def test_chunk_is_released_when_the_next_is_asked_for(rng, tmp_path, backend):
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(random_lines(rng, 300, longest=50) + b"\n"))
    it = stream_chunks(path, 128)
    first = next(it)
    copy = bytes(first)
    second = next(it)
    with pytest.raises(ValueError):   # a released view: never stale bytes
        bytes(first)
    assert copy and bytes(second) and copy != bytes(second)
    it.close()   # stopping early ends the read-ahead and closes the file
