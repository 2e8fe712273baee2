"""Delimited text tables as the Gaia archive writes them (CSV, ECSV; plain or gzipped):
the header (column names, delimiter) and the data as chunks of whole lines.

Reading is streamed in chunks of whole lines so that memory stays bounded on the
archive's bulk files. :func:`stream_chunks` (the parsers' reader) reads into two reused
buffers, the next chunk read and decompressed in a background thread (zlib, isal and file
reads release the GIL) while the current one is parsed: no chunk is copied or freshly
allocated (fresh pages cost as much as inflating them). :func:`read_chunks` yields bytes
that stay valid (the plain reference readers use it). On gzipped files decompression,
not parsing, is the bottleneck: where the optional package ``isal`` is installed its
igzip (about 3x faster than zlib, same results) is used.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
ECSV_MAGIC = b"# %ECSV"

_gzip_backend: str | None = None  # None = isal if installed, else the standard library


def set_gzip_backend(name: str | None) -> None:
    """Choose the gzip decompressor: "zlib" (standard library), "isal" or None (isal if
    installed, else zlib)."""
    global _gzip_backend
    if name not in (None, "zlib", "isal"):
        raise ValueError(f"gzip backend must be 'zlib', 'isal' or None, got {name!r}")
    if name == "isal":
        import isal.igzip  # noqa: F401  (fail now, not at the first read)
    _gzip_backend = name


def gzip_backend() -> str:
    """The decompressor in use: "isal" or "zlib"."""
    if _gzip_backend is not None:
        return _gzip_backend
    try:
        import isal.igzip  # noqa: F401
        return "isal"
    except ImportError:
        return "zlib"


def _gzip_errors() -> tuple:
    errors = (EOFError, gzip.BadGzipFile, zlib.error)
    try:
        from isal import isal_zlib
        errors += (isal_zlib.error,)
    except ImportError:
        pass
    return errors


@dataclass(frozen=True)
class TextHeader:
    """What a CSV/ECSV header says about the data lines that follow it."""

    names: list[str]        # column names in file order
    delimiter: str          # one character
    datatypes: dict         # ECSV: name -> {"datatype", "subtype", ...}; CSV: {}
    header_lines: int       # lines before the first data line (0-based line of data)
    header_bytes: int       # bytes before the first data line


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: str | Path):
    """Binary file object of the (decompressed) content."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic != GZIP_MAGIC:
        return f
    if gzip_backend() == "isal":
        from isal import igzip
        return igzip.IGzipFile(fileobj=f, mode="rb")
    return gzip.GzipFile(fileobj=f, mode="rb")


def read_chunks(path: str | Path, chunk_bytes: int = 8 << 20,
                skip_bytes: int = 0) -> Iterator[bytes]:
    """Yield the content after ``skip_bytes`` as chunks of whole lines (each ends with
    '\\n' except possibly the last). Raises ValueError naming the file on a truncated or
    corrupt gzip stream."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    try:
        with open_binary(path) as f:
            if skip_bytes:
                f.read(skip_bytes)
            pending: list[bytes] = []  # the start of a line not yet complete
            pending_bytes, want = 0, chunk_bytes
            while True:
                block = f.read(want)
                if not block:
                    break
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # no line ends here: read more, growing geometrically
                    pending.append(block)
                    pending_bytes += len(block)
                    want = max(chunk_bytes, pending_bytes)
                    continue
                chunk = b"".join(pending + [block[:cut]]) if pending else (
                    block if cut == len(block) else block[:cut])
                pending = [block[cut:]] if cut < len(block) else []
                pending_bytes, want = len(block) - cut, chunk_bytes
                yield chunk
            if pending:
                yield b"".join(pending)
    except _gzip_errors() as e:
        raise ValueError(f"{path}: truncated or corrupt gzip stream ({e})") from None


def stream_chunks(path: str | Path, chunk_bytes: int = 8 << 20,
                  skip_bytes: int = 0) -> Iterator[memoryview]:
    """The content after ``skip_bytes`` as chunks of whole lines (as :func:`read_chunks`:
    each ends with '\\n' except possibly the last), plain or gzipped, the next chunk read
    in a background thread while the caller uses the current one.

    Each chunk is a view of one of two reused buffers, released when the next chunk is
    asked for: use it (or copy it) before. Errors as :func:`read_chunks`.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    with open(path, "rb", buffering=0) as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        lines = _LineBuffers(_gzip_reader(raw) if gzipped else raw, chunk_bytes, path)
        pool = ThreadPoolExecutor(1, thread_name_prefix="lamfast-read")
        pending = pool.submit(lines.next_chunk, skip_bytes)
        try:
            while (chunk := pending.result()) is not None:
                pending = pool.submit(lines.next_chunk)   # fills the other buffer meanwhile
                try:
                    yield chunk
                finally:
                    chunk.release()   # its buffer is refilled next: no view may outlive this
        finally:
            pool.shutdown()   # the read in flight (stopped early or failed) ends first
            if pending.exception() is None and pending.result() is not None:
                pending.result().release()
            lines.close()


def _gzip_reader(raw):
    """A reader (with readinto) of the decompressed content of the open file ``raw``."""
    if gzip_backend() == "isal":
        from isal import igzip, isal_zlib

        if hasattr(isal_zlib, "_GzipReader"):   # igzip's own reader: inflates into our buffer
            return isal_zlib._GzipReader(raw, 1 << 17)
        return igzip.IGzipFile(fileobj=raw, mode="rb")
    return gzip.GzipFile(fileobj=raw, mode="rb")


class _BufferPool:
    """Read buffers kept for the next file: a fresh 8 MB buffer costs its page faults
    (the kernel zeroes every page), about as much as inflating 8 MB. Keeps at most
    ``keep`` buffers (those of concurrent readers)."""

    def __init__(self, keep: int = 8):
        self.keep, self.free, self.lock = keep, [], threading.Lock()

    def take(self, size: int) -> bytearray:
        with self.lock:
            for i, buf in enumerate(self.free):
                if len(buf) == size:
                    return self.free.pop(i)
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        with self.lock:
            self.free.append(buf)
            del self.free[:-self.keep]   # the oldest go


_buffers = _BufferPool()


class _LineBuffers:
    """Two buffers filled in turn from ``source`` (anything with readinto), each cut after
    its last line end; the partial line after the cut starts the other buffer."""

    def __init__(self, source, chunk_bytes: int, path):
        self.source, self.path, self.chunk_bytes = source, path, chunk_bytes
        self.buffers = [_buffers.take(chunk_bytes), _buffers.take(chunk_bytes)]
        self.turn = 0
        self.carry = b""   # the start of a line not yet complete
        self.eof = False

    def close(self) -> None:
        """Hands the buffers back for the next file (no chunk of them may be in use)."""
        for buf in self.buffers:
            if len(buf) == self.chunk_bytes:   # not one grown for a long line
                _buffers.give(buf)
        self.buffers = []

    def next_chunk(self, skip_bytes: int = 0) -> memoryview | None:
        """The next chunk of whole lines (after skipping ``skip_bytes``), None at the end."""
        try:
            return self._next(skip_bytes)
        except _gzip_errors() as e:
            raise ValueError(f"{self.path}: truncated or corrupt gzip stream ({e})") from None

    def _next(self, skip_bytes: int) -> memoryview | None:
        buf = self.buffers[self.turn]
        with memoryview(buf) as view:
            while skip_bytes > 0 and not self.eof:
                got = self.source.readinto(view[:min(skip_bytes, len(buf))])
                self.eof, skip_bytes = not got, skip_bytes - got
        if len(buf) <= len(self.carry):   # a line longer than a chunk: room for it and more
            buf = bytearray(2 * len(self.carry))
        buf[:len(self.carry)] = self.carry
        fill = len(self.carry)
        while True:
            while fill < len(buf) and not self.eof:
                with memoryview(buf) as view:
                    got = self.source.readinto(view[fill:])
                self.eof, fill = not got, fill + got
            cut = fill if self.eof else buf.rfind(b"\n", 0, fill) + 1
            if cut or self.eof:
                break
            grown = bytearray(2 * len(buf))   # no line end in the whole buffer yet
            grown[:fill] = buf   # full: fill == len(buf)
            buf = grown
        self.buffers[self.turn], self.turn = buf, self.turn ^ 1
        self.carry = bytes(memoryview(buf)[cut:fill])
        return memoryview(buf)[:cut] if cut else None


def read_header(path: str | Path, fmt: str) -> TextHeader:
    """Parse the header of a CSV (first non-comment line = names) or ECSV file (YAML
    header in '# ' lines, then the names line, which must agree with it)."""
    with open_binary(path) as f:
        try:
            lines = _header_lines(f, path)
        except _gzip_errors() as e:
            raise ValueError(f"{path}: truncated or corrupt gzip stream ({e})") from None
    comments = [raw for raw in lines[:-1] if raw.startswith(b"#")]
    names_line = _decode(lines[-1], path, len(lines)).rstrip("\r\n")
    header_bytes = sum(len(raw) for raw in lines)
    if fmt == "ecsv":
        if not lines[0].startswith(ECSV_MAGIC):
            raise ValueError(f"{path}: not an ECSV file (first line must start with '# %ECSV')")
        meta = _ecsv_yaml(comments, path)
        delimiter = meta.get("delimiter", " ")
        if not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii():
            raise ValueError(f"{path}: delimiter must be one ASCII character, got {delimiter!r}")
        columns = meta["datatype"]
        if not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in columns):
            raise ValueError(f"{path}: every ECSV 'datatype' entry must be a mapping with a "
                             "'name'")
        datatypes = {d["name"]: d for d in columns}
        names = _split_names(names_line, delimiter, path)
        yaml_names = [d["name"] for d in columns]
        if names != yaml_names:
            raise ValueError(f"{path}: ECSV names line {names} does not match the header's "
                             f"columns {yaml_names}")
    else:
        delimiter, datatypes = ",", {}
        names = _split_names(names_line, delimiter, path)
    if len(delimiter) != 1:
        raise ValueError(f"{path}: delimiter must be one character, got {delimiter!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate column names {dupes}")
    return TextHeader(names, delimiter, datatypes, len(lines), header_bytes)


def _header_lines(f, path) -> list[bytes]:
    """Lines up to and including the first non-comment, non-blank line (the names)."""
    lines = []
    for raw in f:
        lines.append(raw)
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            return lines
    raise ValueError(f"{path}: no header line with column names")


def _decode(raw: bytes, path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: line {line}: header is not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None


def _split_names(line: str, delimiter: str, path) -> list[str]:
    reader = csv.reader(io.StringIO(line), delimiter=delimiter,
                        skipinitialspace=delimiter == " ")
    try:
        return [n.strip() for n in next(reader, [])]
    except csv.Error as e:  # e.g. a lone '\r' inside the names line
        raise ValueError(f"{path}: cannot split the column names line ({e})") from None


def _ecsv_yaml(comments: list[bytes], path) -> dict:
    text = "\n".join(_decode(raw, path, i + 2).rstrip("\r\n")[2:]
                      for i, raw in enumerate(comments[1:]))
    try:
        meta = _load_yaml(text)
    except ValueError as e:
        raise ValueError(f"{path}: bad ECSV YAML header ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("datatype"), list):
        raise ValueError(f"{path}: ECSV header has no 'datatype' list")
    return meta


@functools.lru_cache(maxsize=8)
def _load_yaml(text: str):
    """Parsed YAML, cached: the files of a bulk download share one header, and parsing
    it costs more than a small file's data. Callers must not modify the result."""
    import yaml  # lazily: astropy's dependency, only needed for ECSV

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        """Safe YAML that keeps unknown tags (astropy writes e.g. !astropy.units.Unit
        in column meta) as plain data instead of failing."""

    def generic(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", generic)
    Loader.add_multi_constructor("tag:", generic)
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None
