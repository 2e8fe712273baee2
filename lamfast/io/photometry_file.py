"""Reading one photometry file of :mod:`lamfast.io.photometry_join`: its header checks
(:func:`check_photometry_file`), its used columns (:func:`read_photometry_file`) and the
source_id range it declares without reading its data (:func:`declared_range`).

Formats: Parquet and CSV/ECSV (gzipped or not) through pyarrow, only the used columns
converted; FITS and VOTable through astropy. Columns are matched case-insensitively under
their Gaia archive names.

**Declared ranges.** Gaia source_ids encode position: ``source_id >> 35`` is the star's
HEALPix level-12 nested pixel, so ``source_id >> 43`` is its level-8 pixel. The archive's
bulk download names each file by the level-8 pixels it holds, inclusive
(``GaiaSource_000000-003111.csv.gz``): pixels A..B are the source_ids
``A << 43 .. ((B + 1) << 43) - 1`` (:func:`declared_range`; :func:`first_source_id` reads
one row to check such a name cheaply). A Parquet file declares its range by the min/max
statistics of its source_id row groups (or, without them, by its source_id column, the one
column then read); a Parquet file sorted by source_id (each row group's ids above the
previous one's) declares the range of each run of its row groups (:func:`parquet_chunks`),
which a lookup then reads alone.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SOURCE_ID = "source_id"
# Columns a photometry file may give (archive names); any one of KNOWN_COLUMNS makes it useful.
KNOWN_COLUMNS = ("phot_g_mean_mag", "bp_rp", "phot_bp_mean_mag", "phot_rp_mean_mag",
                 "j_m", "h_m", "ks_m", "parallax")
USED_COLUMNS = KNOWN_COLUMNS + ("phot_bp_mean_flux_over_error", "phot_rp_mean_flux_over_error",
                                "parallax_error", "j_msigcom", "h_msigcom", "ks_msigcom")
MAGNITUDES = ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag", "j_m", "h_m", "ks_m")
MAG_RANGE = (0.0, 25.0)      # a magnitude outside it is likely a flux (a warning, kept as given)
G_COLUMN = "phot_g_mean_mag"

LEVEL8_SHIFT = 35 + 2 * (12 - 8)     # source_id >> 43: the HEALPix level-8 nested pixel
LEVEL8_PIXELS = 12 * 4**8
PARQUET_CHUNK_ROWS = 1 << 16   # a sorted Parquet file is read in runs of row groups of this many rows
# the bulk download's "_NNNNNN-MMMMMM." (level-8 pixels, inclusive) before the format suffix
_HEALPIX_NAME = re.compile(r"_(\d{6})-(\d{6})\.[^_]*$")


def declared_range(source: PhotometrySource) -> tuple[int, int, str] | None:
    """(lo, hi, what declares it): the source_ids ``lo..hi`` (inclusive) that a photometry
    file (:func:`open_photometry_file`) holds by its Parquet statistics or, for CSV/ECSV
    and FITS, by its name (archive-style HEALPix level-8 range), without reading its data
    (Parquet without statistics: its source_id column). None where the file declares none
    (it must then be read to be known), where its Parquet source_id is not an integer type
    (the read names the error), and for VOTable (read whole by its header check)."""
    path = source.path
    if source.kind == "parquet":
        return _parquet_range(path, source.column(SOURCE_ID))
    m = _HEALPIX_NAME.search(path.name)
    if m is None or source.kind == "votable":
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if not a <= b < LEVEL8_PIXELS:
        return None
    return (a << LEVEL8_SHIFT, ((b + 1) << LEVEL8_SHIFT) - 1,
            f"its name (HEALPix level-8 pixels {m.group(1)}-{m.group(2)})")


def first_source_id(source: PhotometrySource) -> int | None:
    """The source_id of the first data row of a CSV/ECSV or plain FITS file, read alone
    (None for other formats, a file of no rows, or a first id that is no integer: the
    file's read names that error)."""
    k = source.names.index(source.column(SOURCE_ID))
    if source.kind == "text":
        from .text_table import open_binary

        with open_binary(source.path) as f:
            f.read(source.header.header_bytes)
            line = next((raw for raw in f if raw.strip() and not raw.lstrip().startswith(b"#")), None)
        if line is None:
            return None
        cells = line.decode("utf-8", "replace").strip().split(source.header.delimiter)
        try:
            return int(cells[k])
        except (IndexError, ValueError):
            return None
    if source.kind == "fits" and not source.path.name.lower().endswith(".gz"):   # memory-mapped: one row read
        from astropy.io import fits

        with fits.open(source.path, memmap=True) as hdul:
            hdu = next(h for h in hdul[1:] if isinstance(h, fits.BinTableHDU))
            data = hdu.data
            if data is None or len(data) == 0 or data.dtype[k].kind not in "iu":
                return None
            return int(data.field(k)[0])
    return None


def parquet_chunks(source: PhotometrySource) -> list[tuple[int, int, list[int], int]] | None:
    """(lo, hi, row groups, first row) of runs of consecutive row groups of a Parquet file
    sorted by source_id (each row group's ids above the previous one's, by its statistics),
    each run of at least :data:`PARQUET_CHUNK_ROWS` rows but the last: the parts of one file
    that a lookup reads alone. None where the file is not so sorted (or declares no range)."""
    stats = _parquet_stats(source.path, source.column(SOURCE_ID), read_ids=False)
    if not stats or stats[0] is None or any(a[3] >= b[2] for a, b in zip(stats[0], stats[0][1:])):
        return None
    chunks, row = [], 0
    for group, rows, lo, hi, start in stats[0]:
        if chunks and row < PARQUET_CHUNK_ROWS:
            chunks[-1][1], chunks[-1][2] = hi, chunks[-1][2] + [group]
        else:
            chunks.append([lo, hi, [group], start])
            row = 0
        row += rows
    return [tuple(c) for c in chunks]


def _parquet_range(path: Path, sid: str) -> tuple[int, int, str] | None:
    stats = _parquet_stats(path, sid)
    if stats is None:
        return None
    groups, ids = stats
    if groups is not None:
        return min(g[2] for g in groups), max(g[3] for g in groups), "its Parquet statistics of source_id"
    import pyarrow.compute as pc

    mm = pc.min_max(ids)   # no statistics: its source_id column, read once
    if mm["min"].as_py() is None or mm["max"].as_py() > np.iinfo(np.int64).max:
        return None
    return int(mm["min"].as_py()), int(mm["max"].as_py()), "its source_id column (read at the start)"


def _parquet_stats(path: Path, sid: str, read_ids: bool = True):
    """None (no rows, ids not integers), or ([(row group, rows, min, max, first row)] of
    its non-empty row groups by their statistics, None) or, where some row group has none,
    (None, the source_id column if ``read_ids`` else None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    md = pf.metadata
    field = pf.schema_arrow.field(sid)
    leaves = [md.schema.column(i).path for i in range(md.num_columns)]
    if md.num_rows == 0 or not pa.types.is_integer(field.type) or sid not in leaves:
        return None
    j, groups, start = leaves.index(sid), [], 0
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        st = rg.column(j).statistics
        if rg.num_rows and (st is None or not st.has_min_max):
            return None, pq.read_table(path, columns=[sid]).column(0) if read_ids else None
        if rg.num_rows:
            if int(st.max) > np.iinfo(np.int64).max:   # uint64 beyond int64: the read names it
                return None
            groups.append((r, rg.num_rows, int(st.min), int(st.max), start))
        start += rg.num_rows
    return groups, None


def read_photometry_file(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(source_id int64 [M], used column -> float32/float64 [M]) of one photometry file, in
    file order; columns matched case-insensitively, each float32 where that is exact.
    Errors and warnings as :class:`lamfast.io.photometry_join.PhotometryJoin`'s."""
    return open_photometry_file(path).read_used()


def check_photometry_file(path: str | os.PathLike) -> list[str]:
    """The used columns (:data:`USED_COLUMNS`) of a photometry file, from its header where
    the format has one; FileNotFoundError or ValueError (no source_id, none of
    :data:`KNOWN_COLUMNS`) naming the file. Reads no data of CSV, ECSV and Parquet files."""
    return open_photometry_file(path).used


def open_photometry_file(path: str | os.PathLike) -> PhotometrySource:
    """The file after the header checks of :func:`check_photometry_file`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such photometry file: {path}")
    source = PhotometrySource(path)
    names = source.names
    for name in names:
        source.lower.setdefault(name.lower(), name)
    listed = f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
    if SOURCE_ID not in source.lower:
        raise ValueError(f"photometry file {path}: no {SOURCE_ID!r} column (it has {listed}); the "
                         "join needs the Gaia DR3 source_id of every row")
    source.used = [c for c in USED_COLUMNS if c in source.lower]
    if not any(c in KNOWN_COLUMNS for c in source.used):
        raise ValueError(f"photometry file {path}: none of the photometry columns lamfast uses "
                         f"({', '.join(KNOWN_COLUMNS)}; Gaia archive names) is there; it has {listed}")
    return source


class PhotometrySource:
    """One photometry file: its column names, then the named columns read as numbers.
    Parquet and CSV/ECSV through pyarrow (only the named columns are converted); FITS and
    VOTable through astropy. ``lower`` (lower-case name -> the file's name) and ``used``
    (its :data:`USED_COLUMNS`) are set by :func:`open_photometry_file`."""

    def __init__(self, path: Path):
        self.path = path
        self.lower: dict[str, str] = {}
        self.used: list[str] = []
        self.row0 = 0      # the file row of the first row read (errors name file rows)
        name = path.name.lower().removesuffix(".gz")
        suffix = name.rsplit(".", 1)[-1] if "." in name else ""
        if suffix in ("parquet", "pq"):
            import pyarrow.parquet as pq

            self.kind, self.names = "parquet", list(pq.read_schema(path).names)
        elif suffix in ("csv", "ecsv"):
            from .text_table import ECSV_MAGIC, open_binary, read_header

            with open_binary(path) as f:   # the bulk download's GaiaSource_*.csv.gz are ECSV
                ecsv = f.read(len(ECSV_MAGIC)) == ECSV_MAGIC
            self.kind, self.header = "text", read_header(path, "ecsv" if ecsv else "csv")
            self.names = self.header.names
        elif suffix in ("fits", "fit", "fts"):
            self.kind, self.table, self.names = "fits", None, _fits_names(path)   # read in read()
        elif suffix in ("xml", "vot", "votable"):
            from astropy.table import Table

            self.kind, self.table = "votable", Table.read(path, format="votable")
            self.names = list(self.table.colnames)
        else:
            raise ValueError(f"photometry file {path}: cannot tell the format from the name (.csv, "
                             ".ecsv, .fits, .xml/.vot, each optionally .gz, or .parquet)")

    def column(self, name: str) -> str:
        """The file's name of column ``name`` (of :data:`USED_COLUMNS` or source_id)."""
        return self.lower[name]

    def read_used(self, row_groups: Sequence[int] | None = None,
                  first_row: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(source_id int64 [M], used column -> float32/float64 [M]) in file order, each
        column float32 where that is exact; a RuntimeWarning for magnitudes off MAG_RANGE.
        ``row_groups`` (Parquet only): just these, which start at row ``first_row``."""
        self.row0 = first_row
        ids, raw = self.read(self.lower[SOURCE_ID], [self.lower[c] for c in self.used], row_groups)
        cols = {c: _compact(raw[self.lower[c]]) for c in self.used}
        for c in MAGNITUDES:
            if c in cols:
                _warn_range(self.path, c, cols[c])
        return ids, cols

    def read(self, sid_name: str, names: list[str],
             row_groups: Sequence[int] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(ids int64 [M], name -> float32/float64 [M], NaN = missing)."""
        if self.kind in ("fits", "votable"):
            return self._read_astropy(sid_name, names)
        import pyarrow as pa

        table = self._read_arrow([sid_name] + names, row_groups)
        ids = self._ids(table.column(sid_name), sid_name)
        cols = {}
        for name in names:
            col = table.column(name)
            if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
                bad = _first_non_number(col.cast(pa.string()).to_pylist())
                raise ValueError(f"photometry file {self.path}: column {name!r} is not numeric ({col.type}"
                                 + (f"; e.g. row {bad[0] + self.row0}: {bad[1]!r})" if bad else ")"))
            a = np.asarray(col.cast(pa.float64()).to_numpy(), np.float64)
            # a column the file declares float32 (ECSV datatype, Parquet type) is float32, as astropy reads it
            cols[name] = a.astype(np.float32) if self._declared_float32(name, col.type) else a
        return ids, cols

    def _declared_float32(self, name: str, arrow_type) -> bool:
        import pyarrow as pa

        if self.kind == "text":
            return (self.header.datatypes.get(name) or {}).get("datatype") == "float32"
        return arrow_type == pa.float32()

    def _read_arrow(self, names: list[str], row_groups: Sequence[int] | None = None):
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            if row_groups is not None:
                return pq.ParquetFile(self.path).read_row_groups(list(row_groups), columns=names)
            return pq.read_table(self.path, columns=names)
        import pyarrow as pa

        types = {n: pa.float64() for n in names[1:]}   # a cell that is no number fails (named below)
        try:
            return self._read_text(names, types)
        except pa.ArrowInvalid as e:
            for k, name in enumerate(names):   # which column and row failed: read it as text
                cells = self._read_text([name], {name: pa.string()}).column(name).to_pylist()
                bad = _first_non_number(cells, integer=k == 0)
                if bad is not None:
                    what = "an integer" if k == 0 else "a number"
                    raise ValueError(f"photometry file {self.path}: row {bad[0]} (data rows from 0): "
                                     f"{name} {bad[1]!r} is not {what}") from None
            raise ValueError(f"photometry file {self.path}: {e}") from None

    def _read_text(self, names: list[str], types: dict):
        """Columns ``names`` of the data lines (the header skipped by its byte count, so a
        YAML header of any content is never parsed as CSV)."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        from .text_table import open_binary

        h = self.header
        with open_binary(self.path) as f:
            f.read(h.header_bytes)
            if not f.peek(1):   # a header without data lines: pyarrow calls that an error
                return pa.table({n: pa.array([], types.get(n, pa.int64())) for n in names})
            return pcsv.read_csv(f, read_options=pcsv.ReadOptions(column_names=h.names, block_size=16 << 20),
                                 parse_options=pcsv.ParseOptions(delimiter=h.delimiter),
                                 convert_options=pcsv.ConvertOptions(include_columns=names, column_types=types))

    def _ids(self, col, name: str) -> np.ndarray:
        import pyarrow as pa

        if len(col) == 0:      # a file of no rows: its ids have no type to check
            return np.zeros(0, np.int64)
        if not pa.types.is_integer(col.type):
            bad = _first_non_number(col.cast(pa.string()).to_pylist(), integer=True)
            where = f"; e.g. row {bad[0]}: {bad[1]!r}" if bad else ""
            raise ValueError(f"photometry file {self.path}: column {name!r} must hold integer Gaia "
                             f"source_ids, it holds {col.type}{where}")
        if col.null_count:
            row = int(np.flatnonzero(np.asarray(col.is_null().to_numpy()))[0]) + self.row0
            raise ValueError(f"photometry file {self.path}: row {row} (data rows from 0) has no {name}")
        return _int64_ids(self.path, np.asarray(col.to_numpy()), name, self.row0)

    def _read_astropy(self, sid_name: str, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.table is None:
            from astropy.table import Table

            self.table = Table.read(self.path, format="fits", memmap=True)   # only the used columns are copied
        sid = self.table[sid_name]
        if sid.dtype.kind not in "iu":
            raise ValueError(f"photometry file {self.path}: column {sid_name!r} must hold integer Gaia "
                             f"source_ids, it holds {sid.dtype.name}")
        mask = np.ma.getmaskarray(np.ma.asarray(sid))
        if mask.any():
            raise ValueError(f"photometry file {self.path}: row {int(np.flatnonzero(mask)[0])} has no "
                             f"{sid_name}")
        ids = _int64_ids(self.path, np.asarray(sid), sid_name)
        cols = {}
        for name in names:
            col = np.ma.asarray(self.table[name])
            if col.dtype.kind not in "fiub":
                raise ValueError(f"photometry file {self.path}: column {name!r} is not numeric ({col.dtype.name})")
            # float32 stays float32 (exact); masked cells are NaN
            cols[name] = col.astype(np.float32 if col.dtype == np.float32 else np.float64).filled(np.nan)
        return ids, cols


def _fits_names(path: Path) -> list[str]:
    """Column names of the first binary table of a FITS file, from its header."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU):
                return list(hdu.columns.names)
    raise ValueError(f"photometry file {path}: no binary table in this FITS file")


def _first_non_number(cells: list, integer: bool = False) -> tuple[int, str] | None:
    """(row, text) of the first cell that is not a number (an integer if ``integer``;
    null cells are numbers, missing, unless ``integer``), or None."""
    for i, cell in enumerate(cells):
        if cell is None and not integer:
            continue
        try:
            int(cell) if integer else float(cell)
        except (TypeError, ValueError):
            return i, str(cell)
    return None


def _int64_ids(path: Path, a: np.ndarray, name: str, row0: int = 0) -> np.ndarray:
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"photometry file {path}: column {name!r} has ids beyond int64 (row "
                         f"{int(np.argmax(a > np.iinfo(np.int64).max)) + row0})")
    return a.astype(np.int64, copy=False)


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 where that keeps every value (archive photometry is float32), else float64."""
    if a.dtype == np.float32:
        return a
    a32 = a.astype(np.float32)
    return a32 if _same(a32.astype(np.float64), a).all() else a.astype(np.float64, copy=False)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equal, NaN equal to NaN."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _warn_range(path: Path, name: str, a: np.ndarray) -> None:
    lo, hi = MAG_RANGE
    with np.errstate(invalid="ignore"):
        bad = int(np.count_nonzero((a < lo) | (a > hi)))
    if bad:
        warnings.warn(f"photometry file {path}: {bad} of {len(a)} values of {name} are outside "
                      f"{lo:g}-{hi:g} mag (fluxes where magnitudes are expected?); they are used as given",
                      RuntimeWarning, stacklevel=5)
