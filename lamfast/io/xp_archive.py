"""Readers (and the text writer) of Gaia DR3 XP_CONTINUOUS (BP/RP basis-function
coefficients) as the Gaia archive delivers it: CSV ("(v1, v2, ...)" arrays), ECSV
("[v1,v2,...]" arrays), FITS (variable-length arrays) and VOTable (arraysize="*"), each
plain or gzipped. They return :class:`lamfast.io.xp_continuous.XpContinuous`.

The text formats are parsed by the C++ core (``lamfast._core.parse_xp_text_into``),
streamed in chunks of whole lines straight into the file's arrays (sized from the first
chunk's rows per byte); :func:`read_xp_continuous_reference` does the same with the
``csv`` module and ``float`` as the plain oracle. FITS and VOTable go through astropy.
All formats of the same stars give identical arrays: coefficients float64, errors,
correlations and standard deviations float32 (the archive's types).

Units: these files hold the archive's e-/s and are read as such, never rescaled here
(``meta["xp_units"] == "flux"``); :func:`lamfast.io.xp_continuous.xp_catalog` divides by
the G flux. :func:`lamfast.io.read_catalog` checks the values are on the e-/s scale
(:func:`lamfast.io.xp_continuous.check_xp_continuous_scale`).

Gaia data: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO.
"""

from __future__ import annotations

import contextlib
import csv
import io
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .xp_continuous import BANDS, N_BASES, N_CORRELATIONS, XpContinuous

TEXT_FORMATS = ("csv", "ecsv")
FORMATS = TEXT_FORMATS + ("fits", "votable")
# 2 MB: inflating the next chunk overlaps parsing this one from the first few MB of a file
# on (8 MB: the first chunk of the benchmark's 8.6 MB files was inflated alone); CPU time
# the same (benchmarks/bench_convert.py).
CHUNK_BYTES = 2 << 20
REQUIRED = ("source_id",) + tuple(f"{b}_{c}" for b in BANDS
                                  for c in ("coefficients", "coefficient_errors"))

# Field kinds understood by csrc/xp_text.hpp (XpFieldKind).
_SKIP, _SOURCE_ID, _COEF, _ERR, _CORR, _NREL, _STD, _EXTRA = range(8)
_BAND_KINDS = {"coefficients": _COEF, "coefficient_errors": _ERR,
               "coefficient_correlations": _CORR, "n_relevant_bases": _NREL,
               "standard_deviation": _STD}
_CORE_ERRORS = {1: "field count", 2: "not a number", 3: "array length", 4: "not an array",
                5: "unterminated quote", 6: "empty source_id"}


def detect_format(path: str | Path) -> str:
    """'csv', 'ecsv', 'fits' or 'votable' from the name (a '.gz' suffix ignored), else
    from the first bytes of the (decompressed) content."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    by_suffix = {"csv": "csv", "ecsv": "ecsv", "fits": "fits", "fit": "fits", "fts": "fits",
                 "xml": "votable", "vot": "votable", "votable": "votable"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    from .text_table import ECSV_MAGIC, open_binary

    with open_binary(path) as f:
        head = f.read(512)
    if head.startswith(ECSV_MAGIC):
        return "ecsv"
    if head.startswith(b"SIMPLE"):
        return "fits"
    if head.lstrip().startswith((b"<?xml", b"<VOTABLE")):
        return "votable"
    return "csv"


def _resolve_format(path, fmt: str | None) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return fmt


def read_xp_continuous(path: str | Path, *, correlations: bool = False,
                       blank_irrelevant: bool = True, extra_columns: Sequence[str] = (),
                       format: str | None = None, threads: int | None = None,
                       chunk_bytes: int = CHUNK_BYTES) -> XpContinuous:
    """Read one Gaia archive XP_CONTINUOUS file (CSV/ECSV/FITS/VOTable, plain or gzip).

    Parameters
    ----------
    path : file name; the format comes from its extension (or ``format``).
    correlations : also read the [N, 1485] coefficient correlations (slower, 14x more
        numbers than the coefficients).
    blank_irrelevant : NaN the coefficients (and errors) beyond n_relevant_bases, as the
        paper does. False keeps every coefficient.
    extra_columns : further scalar numeric columns to carry, e.g. ("phot_g_mean_mag",),
        returned as float64 [N] in ``extra`` (missing cells NaN).
    threads : C++ parser threads (default :func:`lamfast.get_num_threads`).
    chunk_bytes : gzipped text is decompressed and parsed in chunks of about this many
        bytes, the next one inflated while this one is parsed (a plain file is
        memory-mapped and parsed whole).

    Returns
    -------
    XpContinuous

    Raises
    ------
    ValueError
        Truncated gzip, a required column (source_id, {bp,rp}_coefficients,
        {bp,rp}_coefficient_errors; correlations if asked) missing, a bad cell; the
        message names the file, the line and row, and the column.
    """
    from .._threads import resolve_threads

    fmt = _resolve_format(path, format)
    threads = resolve_threads(threads)
    if fmt in TEXT_FORMATS:
        xp = _read_text(path, fmt, correlations, extra_columns, threads, chunk_bytes)
    else:
        xp = _read_astropy(path, fmt, correlations, extra_columns)
    if blank_irrelevant:
        xp.blank_irrelevant()
    return xp


def read_xp_continuous_reference(path: str | Path, *, correlations: bool = False,
                                 blank_irrelevant: bool = True,
                                 extra_columns: Sequence[str] = (), format: str | None = None,
                                 threads: int | None = None,
                                 chunk_bytes: int = CHUNK_BYTES) -> XpContinuous:
    """Plain-Python version of :func:`read_xp_continuous` (``csv`` module and ``float``
    for the text formats; FITS/VOTable as there). Same result, bit for bit."""
    fmt = _resolve_format(path, format)
    if fmt in TEXT_FORMATS:
        xp = _read_text_reference(path, fmt, correlations, extra_columns)
    else:
        xp = _read_astropy(path, fmt, correlations, extra_columns)
    if blank_irrelevant:
        xp.blank_irrelevant()
    return xp


def read_xp_continuous_many(paths: Sequence[str | Path], *, workers: int | None = None,
                            threads: int | None = None, **kwargs) -> XpContinuous:
    """Read several archive files (e.g. the bulk download: thousands of gzipped ECSV
    files) into one result, stars in file order.

    Decompressing one gzip stream cannot be split over cores, so files are read
    ``workers`` at a time (default: one per thread), each parsed with
    ``threads // workers`` threads. Other keyword arguments as
    :func:`read_xp_continuous`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .._threads import resolve_threads

    paths = list(paths)
    if not paths:
        raise ValueError("no files given")
    threads = resolve_threads(threads)
    workers = min(len(paths), resolve_threads(workers) if workers is not None else threads)
    per_file = max(1, threads // workers)

    def read(p):
        return read_xp_continuous(p, threads=per_file, **kwargs)

    if workers == 1:
        parts = [read(p) for p in paths]
    else:  # decompression and parsing release the GIL
        with ThreadPoolExecutor(workers, thread_name_prefix="lamfast-file") as pool:
            parts = list(pool.map(read, paths))
    return XpContinuous.concatenate(parts, meta={"paths": [str(p) for p in paths],
                                                 **{k: v for k, v in parts[0].meta.items()
                                                    if k != "path"}})


# ---- text formats ----------------------------------------------------------------------

def _field_plan(names: list[str], path, correlations: bool, extra_columns: Sequence[str]):
    """(kinds, bands, indices) per file column for the C++ parser."""
    missing = [c for c in REQUIRED if c not in names]
    if correlations:
        missing += [f"{b}_coefficient_correlations" for b in BANDS
                    if f"{b}_coefficient_correlations" not in names]
    missing += [c for c in extra_columns if c not in names]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing} (the file has "
                         f"{len(names)} columns: {', '.join(names[:8])}"
                         f"{', ...' if len(names) > 8 else ''})")
    extra_index = {c: i for i, c in enumerate(extra_columns)}
    if len(extra_index) != len(extra_columns):
        raise ValueError(f"duplicate extra_columns: {list(extra_columns)}")
    kinds = np.zeros(len(names), np.int32)
    bands = np.zeros(len(names), np.int32)
    indices = np.zeros(len(names), np.int32)
    for i, name in enumerate(names):
        if name in extra_index:
            kinds[i], indices[i] = _EXTRA, extra_index[name]
        elif name == "source_id":
            kinds[i] = _SOURCE_ID
        elif name[:3] in ("bp_", "rp_") and name[3:] in _BAND_KINDS:
            kind = _BAND_KINDS[name[3:]]
            if kind != _CORR or correlations:
                kinds[i], bands[i] = kind, BANDS.index(name[:2])
    return kinds, bands, indices


def _text_error(path, names, err, row_offset, header_lines) -> ValueError:
    row, line, field_index, code, found, text = err
    text = text.decode("utf-8", "replace")
    where = f"{path}: line {header_lines + line + 1} (data row {row_offset + row})"
    if code == 1:  # field count
        return ValueError(f"{where}: the row has {found} fields, the header names "
                          f"{len(names)} ({', '.join(names[:3])}, ...)")
    column = names[field_index] if 0 <= field_index < len(names) else "?"
    where += f", column {column!r}"
    if code == 2:
        what = f"cannot read {text!r} as a number"
        if column.endswith(("coefficients", "errors", "correlations")):
            what += f" (array element {found})"
        return ValueError(f"{where}: {what}")
    if code == 3:
        expected = N_CORRELATIONS if column.endswith("correlations") else N_BASES
        return ValueError(f"{where}: {found} values, expected {expected}")
    if code == 4:
        return ValueError(f"{where}: {text!r} is not an array like (v1, v2, ...) or [v1,v2,...]")
    if code == 5:
        return ValueError(f"{where}: unterminated quote in {text!r}")
    if code == 6:
        return ValueError(f"{where}: empty source_id")
    return ValueError(f"{where}: {_CORE_ERRORS.get(code, 'bad cell')}")


def _read_text(path, fmt, correlations, extra_columns, threads, chunk_bytes) -> XpContinuous:
    from .. import _core
    from .._malloc import keep_freed_memory
    from .text_table import read_header

    keep_freed_memory()   # this read's MB-sized arrays and the next file's: reused pages
    header = read_header(path, fmt)
    kinds, bands, indices = _field_plan(header.names, path, correlations, extra_columns)
    arrays = _empty_arrays(correlations, len(extra_columns))
    rows, lines, text_bytes = 0, header.header_lines, _text_size(path) - header.header_bytes
    with _data_chunks(path, header.header_bytes, chunk_bytes) as chunks:
        for chunk in chunks:
            while True:   # parsed straight into the file's arrays: no parts to concatenate
                err, n, n_lines = _core.parse_xp_text_into(chunk, kinds, bands, indices, header.delimiter,
                                                           arrays, rows, threads)
                if n_lines >= 0:
                    break
                arrays = _grown(arrays, rows, _capacity(rows + n, len(chunk), text_bytes, arrays))
            if err is not None:
                raise _text_error(path, header.names, err, rows, lines)
            rows += n
            lines += n_lines
    return _from_arrays(_trimmed(arrays, rows), extra_columns, path, fmt)


def _text_size(path) -> int:
    """Bytes of the (inflated) text, for the first guess of the row count: a plain file's
    size; a gzip file's trailer (ISIZE: the size mod 2^32) unless that wrapped (less than
    the compressed size), then 3x the compressed size (the archive's CSV inflates ~2.2x)."""
    size = os.path.getsize(path)
    from .text_table import is_gzip

    if size < 18 or not is_gzip(path):
        return size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        inflated = int.from_bytes(f.read(4), "little")
    return inflated if inflated >= size else 3 * size


def _capacity(needed: int, chunk_len: int, text_bytes: int, arrays: dict) -> int:
    """Rows to allocate for ``needed``: the first time (empty ``arrays``) the first
    chunk's rows per byte scaled to the whole text (+2%), reserving at most 4 bytes of
    arrays per byte of text beyond what is needed (short first lines must not reserve a
    huge table); later 1.5x. A wrong guess costs copies, never a wrong result."""
    capacity = len(arrays["source_id"])
    if capacity > 0:
        return max(needed, capacity + capacity // 2)
    if chunk_len >= text_bytes:   # the whole text in one chunk
        return needed
    row_bytes = sum(a.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in arrays.values())
    guess = int(needed * 1.02 * text_bytes / chunk_len) + 16
    return max(needed, min(guess, needed + 4 * text_bytes // row_bytes))


def _grown(arrays: dict, rows: int, capacity: int) -> dict:
    """``arrays`` with room for ``capacity`` rows, the first ``rows`` kept."""
    out = _empty_arrays(arrays.keys() >= {"bp_coefficient_correlations"}, arrays["extra"].shape[1], capacity)
    for k, a in arrays.items():
        out[k][:rows] = a[:rows]
    return out


def _trimmed(arrays: dict, rows: int) -> dict:
    """The first ``rows`` rows: views where the guess was close, else compact copies (an
    overestimate does not stay allocated)."""
    slack = len(arrays["source_id"]) - rows
    if slack <= max(64, rows // 16):
        return {k: a[:rows] for k, a in arrays.items()}
    return {k: a[:rows].copy() for k, a in arrays.items()}


@contextlib.contextmanager
def _data_chunks(path, skip_bytes: int, chunk_bytes: int):
    """Chunks of whole data lines. A gzipped file is decompressed into reused buffers in
    a background thread, one chunk ahead of the parser
    (:func:`lamfast.io.text_table.stream_chunks`). A plain file is memory-mapped and
    parsed in one piece: its pages cost no memory, so nothing bounds it, and one piece
    spares concatenating the parts' arrays (the parser's threads fault its pages in in
    parallel; faster than reading it into a buffer)."""
    from .text_table import is_gzip, stream_chunks

    if is_gzip(path):
        chunks = stream_chunks(path, chunk_bytes, skip_bytes)
        try:
            yield chunks
        finally:
            chunks.close()
        return
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= skip_bytes:
            yield iter(())
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view, \
                view[skip_bytes:] as data:
            yield iter([data])


def _empty_arrays(correlations: bool, n_extra: int, rows: int = 0) -> dict:
    """Uninitialised output arrays of ``rows`` rows (the parser writes every cell of a row,
    NaN or -1 where the file lacks the value)."""
    out = {"source_id": np.empty(rows, np.int64), "extra": np.empty((rows, n_extra))}
    for b in BANDS:
        out[f"{b}_coefficients"] = np.empty((rows, N_BASES))
        out[f"{b}_coefficient_errors"] = np.empty((rows, N_BASES), np.float32)
        out[f"{b}_n_relevant_bases"] = np.empty(rows, np.int32)
        out[f"{b}_standard_deviation"] = np.empty(rows, np.float32)
        if correlations:
            out[f"{b}_coefficient_correlations"] = np.empty((rows, N_CORRELATIONS), np.float32)
    return out


def _from_arrays(arrays: dict, extra_columns, path, fmt) -> XpContinuous:
    extra = arrays.pop("extra")
    arrays.setdefault("bp_coefficient_correlations", None)
    arrays.setdefault("rp_coefficient_correlations", None)
    return XpContinuous(**arrays,
                        extra={c: extra[:, i].copy() for i, c in enumerate(extra_columns)},
                        meta={"path": str(path), "format": fmt, "xp_units": "flux"})


def _read_text_reference(path, fmt, correlations, extra_columns) -> XpContinuous:
    from .text_table import read_chunks, read_header

    header = read_header(path, fmt)
    names = header.names
    kinds, bands, indices = _field_plan(names, path, correlations, extra_columns)
    text = b"".join(read_chunks(path, skip_bytes=header.header_bytes)).decode("utf-8")
    reader = csv.reader(io.StringIO(text), delimiter=header.delimiter,
                        skipinitialspace=header.delimiter == " ")
    cols = {k: [] for k in _empty_arrays(correlations, len(extra_columns))}
    row = 0
    last_line = 0
    for cells in reader:
        first_line, last_line = last_line + 1, reader.line_num  # a record may span lines
        if not cells or all(not c.strip() for c in cells):
            continue
        where = f"{path}: line {header.header_lines + first_line} (data row {row})"
        if len(cells) != len(names):
            raise ValueError(f"{where}: the row has {len(cells)} fields, the header names "
                             f"{len(names)} ({', '.join(names[:3])}, ...)")
        extra = np.full(len(extra_columns), np.nan)
        present = set()
        for cell, name, kind, band, index in zip(cells, names, kinds, bands, indices):
            cw = f"{where}, column {name!r}"
            b = BANDS[band]
            if kind == _SOURCE_ID:
                if not cell.strip():
                    raise ValueError(f"{cw}: empty source_id")
                cols["source_id"].append(_ref_int(cell, cw))
            elif kind in (_COEF, _ERR, _CORR):
                n = N_CORRELATIONS if kind == _CORR else N_BASES
                key = f"{b}_" + ("coefficients", "coefficient_errors",
                                 "coefficient_correlations")[kind - _COEF]
                cols[key].append(_ref_array(cell, n, cw))
                present.add(key)
            elif kind == _NREL:
                cols[f"{b}_n_relevant_bases"].append(_ref_int(cell, cw) if cell.strip() else -1)
                present.add(f"{b}_n_relevant_bases")
            elif kind == _STD:
                cols[f"{b}_standard_deviation"].append(_ref_float(cell, cw))
                present.add(f"{b}_standard_deviation")
            elif kind == _EXTRA:
                extra[index] = _ref_float(cell, cw)
        for key, values in cols.items():  # columns absent from the file: empty values
            if key not in ("source_id", "extra") and key not in present:
                values.append(_empty_value(key))
        cols["extra"].append(extra)
        row += 1
    empty = _empty_arrays(correlations, len(extra_columns))
    arrays = {k: np.array(v, dtype=empty[k].dtype).reshape((row,) + empty[k].shape[1:])
              for k, v in cols.items()}
    return _from_arrays(arrays, extra_columns, path, fmt)


def _empty_value(key: str):
    if key.endswith("n_relevant_bases"):
        return -1
    if key.endswith("correlations"):
        return np.full(N_CORRELATIONS, np.nan)
    if key.endswith(("coefficients", "errors")):
        return np.full(N_BASES, np.nan)
    return np.nan


def _ref_float(cell: str, where: str) -> float:
    s = cell.strip()
    if not s:
        return np.nan
    if s.lower() == "null":
        return np.nan
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{where}: cannot read {s!r} as a number") from None


def _ref_int(cell: str, where: str) -> int:
    try:
        return int(cell.strip())
    except ValueError:
        raise ValueError(f"{where}: cannot read {cell.strip()!r} as a number") from None


def _ref_array(cell: str, n: int, where: str) -> np.ndarray:
    s = cell.strip()
    if s and not (len(s) >= 2 and (s[0], s[-1]) in (("(", ")"), ("[", "]"))):
        raise ValueError(f"{where}: {s!r} is not an array like (v1, v2, ...) or [v1,v2,...]")
    inner = s[1:-1].strip()
    if not inner:
        return np.full(n, np.nan)
    items = inner.split(",")
    values = [_ref_float(x, where) if x.strip() else _ref_bad(x, where) for x in items]
    if len(values) != n:
        raise ValueError(f"{where}: {len(values)} values, expected {n}")
    return np.array(values)


def _ref_bad(x: str, where: str):
    raise ValueError(f"{where}: cannot read {x.strip()!r} as a number")


# ---- writing the archive's text layout -------------------------------------------------

def write_xp_continuous(xp: XpContinuous, path: str | Path, *, format: str | None = None) -> None:
    """Write ``xp`` (e-/s, as every XpContinuous) as the archive does: CSV with
    "(v1, v2, ...)" arrays or ECSV with "[v1,v2,...]" arrays (gzipped if the name ends in
    .gz). Numbers are written in their shortest round-trip form (float32 columns as
    float32), so reading the file back gives the same arrays; a band whose coefficients
    are all NaN is written as empty cells.
    Meant for subsets, tests and benchmarks: this writer is plain Python."""
    import gzip

    fmt = format or detect_format(path)
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"write_xp_continuous writes {TEXT_FORMATS}, got {fmt!r}")
    columns = ["source_id"]
    for b in BANDS:
        columns += [f"{b}_standard_deviation", f"{b}_coefficients", f"{b}_coefficient_errors"]
        if getattr(xp, f"{b}_coefficient_correlations") is not None:
            columns.append(f"{b}_coefficient_correlations")
        columns.append(f"{b}_n_relevant_bases")
    columns += list(xp.extra)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as f:
        if fmt == "ecsv":
            f.write(_ecsv_header(xp, columns))
        f.write(",".join(columns) + "\n")
        for i in range(len(xp)):
            f.write(",".join(_format_cell(xp, c, i, fmt) for c in columns) + "\n")


_ECSV_TYPES = {"source_id": ("int64", None), "coefficients": ("string", "float64[null]"),
               "coefficient_errors": ("string", "float32[null]"),
               "coefficient_correlations": ("string", "float32[null]"),
               "n_relevant_bases": ("int16", None), "standard_deviation": ("float32", None)}


def _ecsv_header(xp: XpContinuous, columns: list[str]) -> str:
    lines = ["# %ECSV 1.0", "# ---", "# delimiter: ','", "# datatype:"]
    for c in columns:
        datatype, subtype = _ECSV_TYPES.get(c[3:] if c[:3] in ("bp_", "rp_") else c,
                                            ("float64", None))
        lines += ["# -", f"#   name: {c}", f"#   datatype: {datatype}"]
        if subtype:
            lines.append(f"#   subtype: '{subtype}'")
    return "\n".join(lines) + "\n"


def _format_cell(xp: XpContinuous, column: str, i: int, fmt: str) -> str:
    if column in xp.extra:
        v = xp.extra[column][i]
        return "" if np.isnan(v) else repr(float(v))
    a = getattr(xp, column)[i]
    if column == "source_id":
        return str(int(a))
    if column.endswith("n_relevant_bases"):
        return "" if a < 0 else str(int(a))
    if np.ndim(a) == 0:
        return "" if np.isnan(a) else str(a)
    if np.isnan(a).all():
        return ""
    # float32 scalars print their shortest float32 form; float64 via repr(float).
    items = [repr(float(v)) for v in a] if a.dtype == np.float64 else [str(v) for v in a]
    items = ["NaN" if t == "nan" else t for t in items]
    return '"(' + ", ".join(items) + ')"' if fmt == "csv" else '"[' + ",".join(items) + ']"'


# ---- FITS / VOTable --------------------------------------------------------------------

def _read_astropy(path, fmt, correlations, extra_columns) -> XpContinuous:
    from astropy.table import Table

    try:
        table = Table.read(path, format=fmt)
    except (EOFError, OSError) as e:
        raise ValueError(f"{path}: cannot read as {fmt} ({e})") from None
    names = list(table.colnames)
    _field_plan(names, path, correlations, extra_columns)  # same column checks
    n = len(table)
    ids = np.ma.asarray(table["source_id"])
    if np.ma.is_masked(ids):
        row = int(np.flatnonzero(np.ma.getmaskarray(ids))[0])
        raise ValueError(f"{path}: row {row}, column 'source_id': empty source_id")
    out = {"source_id": np.asarray(ids.filled(0), dtype=np.int64)}
    for b in BANDS:
        out[f"{b}_coefficients"] = _stack(table, f"{b}_coefficients", N_BASES, np.float64, path)
        out[f"{b}_coefficient_errors"] = _stack(table, f"{b}_coefficient_errors", N_BASES,
                                                np.float32, path)
        if correlations:
            out[f"{b}_coefficient_correlations"] = _stack(
                table, f"{b}_coefficient_correlations", N_CORRELATIONS, np.float32, path)
        out[f"{b}_n_relevant_bases"] = _scalar(table, f"{b}_n_relevant_bases", np.int32, -1, path)
        out[f"{b}_standard_deviation"] = _scalar(table, f"{b}_standard_deviation", np.float32,
                                                 np.nan, path)
    extra = np.full((n, len(extra_columns)), np.nan)
    for i, c in enumerate(extra_columns):
        extra[:, i] = _scalar(table, c, np.float64, np.nan, path)
    out["extra"] = extra
    return _from_arrays(out, extra_columns, path, fmt)


def _scalar(table, name: str, dtype, fill, path) -> np.ndarray:
    """A scalar column as a plain [N] array (masked -> ``fill``; absent -> all ``fill``)."""
    if name not in table.colnames:
        return np.full(len(table), fill, dtype)
    try:
        return np.asarray(np.ma.asarray(table[name]).astype(dtype).filled(fill))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {name!r} is not numeric") from None


def _stack(table, name: str, n: int, dtype, path) -> np.ndarray:
    """A variable-length (or fixed) array column -> [N, n]; empty/masked rows -> NaN."""
    col = table[name]
    out = np.full((len(col), n), np.nan, dtype)
    if col.dtype != object:  # fixed-length arrays
        if col.ndim != 2 or col.shape[1] != n:
            raise ValueError(f"{path}: column {name!r} has shape {col.shape[1:]}, "
                             f"expected ({n},)")
        out[:] = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
        return out
    for i, cell in enumerate(col):
        if cell is None or cell is np.ma.masked:
            continue
        a = np.ma.filled(np.ma.asarray(cell, dtype=np.float64), np.nan).ravel()
        if a.size == 0:
            continue
        if a.size != n:
            raise ValueError(f"{path}: row {i}, column {name!r}: {a.size} values, expected {n}")
        out[i] = a
    return out
