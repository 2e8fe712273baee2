"""Photometry files joined to Gaia XP rows by ``source_id``, at the archive's scale:
:class:`PhotometryJoin`, :func:`read_xp_joined` (Gaia XP_CONTINUOUS files) and
:func:`read_parquet_joined` (Parquet catalogues, lamfast's gnorm or the archive's e-/s).

The Gaia archive's XP_CONTINUOUS table holds no photometry: G (for gnorm), BP-RP and the
2MASS magnitudes come from ``gaia_source`` and the 2MASS best-neighbour tables. Each
photometry file (any table lamfast reads: CSV/ECSV/FITS/VOTable, gzipped or not, Parquet)
gives some of the columns of :data:`USED_COLUMNS` under their archive names; several files
may give different columns (gaia_source, 2MASS) or the same columns for different stars
(the bulk download's GaiaSource_*.csv.gz). Rows may come in any order.

**Memory.** A file is read once, keeping only ``source_id`` and the used columns it has;
each column is kept in float32 where that loses nothing (archive photometry is float32),
else float64. Files with the same set of columns are concatenated and sorted once by
source_id (``np.argsort``); every lookup is then ``np.searchsorted``. Kept per photometry
star: 8 bytes (source_id) + 4 or 8 per column + 4 (which file, only where a group has
several files). The archive's gaia_source with G, BP-RP, BP, RP, their flux_over_error and
parallax (float64) + parallax_error is 8 + 7 x 4 + 8 = 44 bytes a star, ~9.7 GB for its
220M stars that have XP spectra. While loading, the peak adds 16 bytes a star (the sort
order and the unsorted ids) and the one file being read, as float64 (8 bytes per column and
star; the bulk download's files are ~65k stars each). A lookup of N XP rows sorts them
(O(N log N)), then costs O(N log M) and N x (columns) float64 temporaries.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .gaia_photometry import gaia_photometry

SOURCE_ID = "source_id"
# Columns a photometry file may give (archive names); any one of KNOWN_COLUMNS makes it useful.
KNOWN_COLUMNS = ("phot_g_mean_mag", "bp_rp", "phot_bp_mean_mag", "phot_rp_mean_mag",
                 "j_m", "h_m", "ks_m", "parallax")
USED_COLUMNS = KNOWN_COLUMNS + ("phot_bp_mean_flux_over_error", "phot_rp_mean_flux_over_error",
                                "parallax_error", "j_msigcom", "h_msigcom", "ks_msigcom")
MAGNITUDES = ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag", "j_m", "h_m", "ks_m")
MAG_RANGE = (0.0, 25.0)      # a magnitude outside it is likely a flux (a warning, kept as given)
G_COLUMN = "phot_g_mean_mag"


@dataclass
class _Group:
    """Files with the same columns, their rows sorted by source_id (each id once)."""

    files: list[int]                   # indices into PhotometryJoin.paths
    source_id: np.ndarray              # int64 [M], sorted, unique
    columns: dict[str, np.ndarray]     # name -> float32/float64 [M]
    file_of_row: np.ndarray | None     # int32 [M]: position in ``files`` (None: one file)

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row int64 [N], found bool [N]) of each id (row is garbage where not found)."""
        if len(self.source_id) == 0:
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        row = np.minimum(np.searchsorted(self.source_id, ids), len(self.source_id) - 1)
        return row, self.source_id[row] == ids


class PhotometryJoin:
    """Photometry files loaded once, looked up by source_id for every work unit.

    Parameters
    ----------
    paths : the photometry files (see the module doc for their columns and memory).

    Attributes
    ----------
    columns : the used columns that some file gives, sorted.

    Raises
    ------
    FileNotFoundError, or ValueError naming the file (and the row or id where there is
    one): no source_id column, ids that are not integers or are missing, none of
    :data:`KNOWN_COLUMNS`, a non-numeric column, a source_id given twice with different
    values (in one file or in two files of the same columns). A magnitude outside
    :data:`MAG_RANGE` gives a RuntimeWarning with the count (fluxes where magnitudes are
    expected?); its values are used as given.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [str(p) for p in paths]
        by_columns: dict[tuple[str, ...], list[tuple[int, np.ndarray, dict]]] = {}
        for k, path in enumerate(self.paths):
            ids, cols = read_photometry_file(path)
            by_columns.setdefault(tuple(sorted(cols)), []).append((k, ids, cols))
        self.groups = [_build_group(self.paths, members) for members in by_columns.values()]
        self.columns = sorted({c for g in self.groups for c in g.columns})

    def __len__(self) -> int:
        return sum(len(g.source_id) for g in self.groups)

    def lookup(self, ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The photometry of stars ``ids`` (int64 [N], any order, repeats allowed).

        Returns
        -------
        columns : name -> float64 [N] for every column some file gives (NaN where no file
            has the star).
        joined : int64 [F]: how many of the N stars each photometry file gave.

        ValueError naming both files and the id if two files of different column sets
        give one star different values of the same column.
        """
        ids = np.asarray(ids, np.int64)
        n = len(ids)
        order = np.argsort(ids, kind="stable")   # sorted queries: ~3x faster searches and gathers
        ids = ids[order]
        joined = np.zeros(len(self.paths), np.int64)
        out: dict[str, np.ndarray] = {}
        have: dict[str, np.ndarray] = {}
        for g in self.groups:
            row, found = g.find(ids)
            hit = row[found]
            if g.file_of_row is None:
                joined[g.files[0]] += len(hit)
            else:
                joined[g.files] += np.bincount(g.file_of_row[hit], minlength=len(g.files))
            for name, col in g.columns.items():
                v = np.full(n, np.nan)
                v[found] = col[hit]
                if name in out:
                    self._check_agree(name, ids, out[name], v, have[name] & found)
                    out[name] = np.where(found, v, out[name])
                    have[name] = have[name] | found   # a new array: columns of one group share ``found``
                else:
                    out[name], have[name] = v, found
        for name, v in out.items():   # back to the order asked
            out[name] = np.empty_like(v)
            out[name][order] = v
        return out, joined

    def _check_agree(self, name: str, ids, a: np.ndarray, b: np.ndarray, both: np.ndarray) -> None:
        bad = np.flatnonzero(both & ~_same(a, b))
        if bad.size:
            sid = int(ids[bad[0]])
            holders = [self.paths[f] for f in self._files_with(sid, name)]
            raise ValueError(f"photometry: source_id {sid} has {name} {a[bad[0]]} in one file and "
                             f"{b[bad[0]]} in another ({', '.join(holders)}); give each star's "
                             f"{name} once")

    def _files_with(self, sid: int, name: str) -> list[int]:
        files = []
        for g in self.groups:
            row, found = g.find(np.array([sid], np.int64))
            if found[0] and name in g.columns:
                files.append(g.files[0 if g.file_of_row is None else int(g.file_of_row[row[0]])])
        return files


def photometry_tokens(columns) -> list[str]:
    """The tokens (bprp, jh, jk, g_fakemag) that photometry files giving ``columns`` (of
    :data:`USED_COLUMNS`) add to a catalogue, by :func:`lamfast.io.gaia_photometry`'s rules."""
    empty = {c: np.zeros(0) for c in columns}
    return gaia_photometry({**empty, SOURCE_ID: np.zeros(0, np.int64)}, need_tokens=False).columns


def read_xp_joined(path: str | os.PathLike, join: PhotometryJoin, *, n_coefficients: int = 55,
                   **kwargs) -> tuple[Catalog, np.ndarray]:
    """One Gaia XP_CONTINUOUS file with its stars' photometry from ``join``: the same
    Catalog as :func:`lamfast.io.read_catalog` ``(path, photometry=T)`` with ``T`` the
    photometry tables in memory (rows in the XP file's order, every row kept).

    G comes from the photometry where it has the star, else from the XP file's own
    ``phot_g_mean_mag`` column if it has one. A star without G cannot be gnormed: its XP
    coefficients are missing (NaN); its colours are kept.

    Returns
    -------
    catalog : bp0.. rp0.. (gnorm) then bprp, jh, jk, g_fakemag as the photometry allows.
    joined : int64 [F] stars of this file found in each photometry file.
    """
    from .dispatch import read_catalog

    return _read_joined(join, lambda lookup: read_catalog(path, format="xp", photometry=lookup,
                                                          n_coefficients=n_coefficients, **kwargs))


def read_parquet_joined(path: str | os.PathLike, join: PhotometryJoin, *,
                        row_groups: list[int] | None = None) -> tuple[Catalog, np.ndarray]:
    """Row groups of a Parquet catalogue with their stars' photometry from ``join``: the
    Catalog of :func:`lamfast.io.read_parquet` ``(path, row_groups=..., photometry=T)``
    with ``T`` the photometry of its stars (rows in the file's order, every row kept).

    Coefficients in e-/s are gnormed with G from the photometry where it has the star,
    else with the file's own ``phot_g_mean_mag``; a star without either gets missing
    (NaN) coefficients. A token the photometry would add that the file already has (e.g.
    ``bprp``) gives a ValueError naming the file and the column: which one to trust is
    the user's choice, never a silent one.

    Returns
    -------
    catalog : the file's tokens, then those of the photometry (bprp, jh, jk, g_fakemag as
        it allows).
    joined : int64 [F] rows of these row groups found in each photometry file.
    """
    from .parquet import read_parquet

    return _read_joined(join, lambda lookup: read_parquet(path, row_groups=row_groups, photometry=lookup))


def _read_joined(join: PhotometryJoin, read) -> tuple[Catalog, np.ndarray]:
    """``read(lookup)`` (a reader given the row-by-row photometry of its rows' source_ids,
    the one join mechanism of both formats), and the stars found in each photometry file."""
    joined = [np.zeros(len(join.paths), np.int64)]   # set by the lookup, which the reader calls once

    def lookup(ids: np.ndarray) -> Catalog:   # every row counts, repeats too
        columns, joined[0] = join.lookup(ids)
        return gaia_photometry({SOURCE_ID: ids, **columns}, need_tokens=False)

    cat = read(lookup)
    cat.meta["photometry"] = {**cat.meta.get("photometry", {}), "files": join.paths}
    return cat, joined[0]


# ---- reading one photometry file ------------------------------------------------------------

def read_photometry_file(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(source_id int64 [M], used column -> float32/float64 [M]) of one photometry file, in
    file order; columns matched case-insensitively, each float32 where that is exact.
    Errors and warnings as :class:`PhotometryJoin`'s."""
    source, lower, used = _checked_source(Path(path))
    ids, raw = source.read(lower[SOURCE_ID], [lower[c] for c in used])
    cols = {c: _compact(raw[lower[c]]) for c in used}
    for c in MAGNITUDES:
        if c in cols:
            _warn_range(source.path, c, cols[c])
    return ids, cols


def check_photometry_file(path: str | os.PathLike) -> list[str]:
    """The used columns (:data:`USED_COLUMNS`) of a photometry file, from its header where
    the format has one; FileNotFoundError or ValueError (no source_id, none of
    :data:`KNOWN_COLUMNS`) naming the file. Reads no data of CSV, ECSV and Parquet files."""
    return _checked_source(Path(path))[2]


def _checked_source(path: Path) -> tuple[_Source, dict[str, str], list[str]]:
    """(the file, lower-case name -> its name, used columns) after the header checks."""
    if not path.is_file():
        raise FileNotFoundError(f"no such photometry file: {path}")
    source = _Source(path)
    names = source.names
    lower = {}
    for name in names:
        lower.setdefault(name.lower(), name)
    listed = f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
    if SOURCE_ID not in lower:
        raise ValueError(f"photometry file {path}: no {SOURCE_ID!r} column (it has {listed}); the "
                         "join needs the Gaia DR3 source_id of every row")
    used = [c for c in USED_COLUMNS if c in lower]
    if not any(c in KNOWN_COLUMNS for c in used):
        raise ValueError(f"photometry file {path}: none of the photometry columns lamfast uses "
                         f"({', '.join(KNOWN_COLUMNS)}; Gaia archive names) is there; it has {listed}")
    return source, lower, used


class _Source:
    """One photometry file: its column names, then the named columns read as numbers.
    Parquet and CSV/ECSV through pyarrow (only the named columns are converted); FITS and
    VOTable through astropy."""

    def __init__(self, path: Path):
        self.path = path
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
            self.kind, self.table, self.names = "astropy", None, _fits_names(path)   # read in read()
        elif suffix in ("xml", "vot", "votable"):
            from astropy.table import Table

            self.kind, self.table = "astropy", Table.read(path, format="votable")
            self.names = list(self.table.colnames)
        else:
            raise ValueError(f"photometry file {path}: cannot tell the format from the name (.csv, "
                             ".ecsv, .fits, .xml/.vot, each optionally .gz, or .parquet)")

    def read(self, sid_name: str, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(ids int64 [M], name -> float32/float64 [M], NaN = missing)."""
        if self.kind == "astropy":
            return self._read_astropy(sid_name, names)
        import pyarrow as pa

        table = self._read_arrow([sid_name] + names)
        ids = self._ids(table.column(sid_name), sid_name)
        cols = {}
        for name in names:
            col = table.column(name)
            if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
                bad = _first_non_number(col.cast(pa.string()).to_pylist())
                raise ValueError(f"photometry file {self.path}: column {name!r} is not numeric ({col.type}"
                                 + (f"; e.g. row {bad[0]}: {bad[1]!r})" if bad else ")"))
            a = np.asarray(col.cast(pa.float64()).to_numpy(), np.float64)
            # a column the file declares float32 (ECSV datatype, Parquet type) is float32, as astropy reads it
            cols[name] = a.astype(np.float32) if self._declared_float32(name, col.type) else a
        return ids, cols

    def _declared_float32(self, name: str, arrow_type) -> bool:
        import pyarrow as pa

        if self.kind == "text":
            return (self.header.datatypes.get(name) or {}).get("datatype") == "float32"
        return arrow_type == pa.float32()

    def _read_arrow(self, names: list[str]):
        if self.kind == "parquet":
            import pyarrow.parquet as pq

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
        import pyarrow.csv as pcsv

        from .text_table import open_binary

        import pyarrow as pa

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
            row = int(np.flatnonzero(np.asarray(col.is_null().to_numpy()))[0])
            raise ValueError(f"photometry file {self.path}: row {row} (data rows from 0) has no {name}")
        return _int64_ids(self.path, np.asarray(col.to_numpy()), name)

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


def _int64_ids(path: Path, a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"photometry file {path}: column {name!r} has ids beyond int64 (row "
                         f"{int(np.argmax(a > np.iinfo(np.int64).max))})")
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


# ---- groups: files of the same columns, sorted once -------------------------------------------

def _build_group(paths: list[str], members: list[tuple[int, np.ndarray, dict]]) -> _Group:
    """Concatenate files of the same columns, sort by source_id, keep each id once
    (ValueError naming the file(s) and the id where two rows of one id differ)."""
    files = [k for k, _, _ in members]
    names = list(members[0][2])
    sizes = [len(m[1]) for m in members]
    ids = np.concatenate([m[1] for m in members])
    members[:] = [(k, None, cols) for k, _, cols in members]   # each file's arrays freed once copied
    order = np.argsort(ids, kind="stable")         # stable: the earlier file's row comes first
    ids = ids[order]
    columns = {}
    for c in names:      # one column at a time: the peak is the kept arrays + one column
        columns[c] = np.concatenate([m[2].pop(c) for m in members])[order]
    file_of_row = None
    if len(members) > 1:
        file_of_row = np.repeat(np.arange(len(members), dtype=np.int32), sizes)[order]
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if dup.size:
        for c in names:
            a = columns[c]
            differ = dup[~_same(a[dup], a[dup + 1])]
            if differ.size:
                i = int(differ[0])
                where = [paths[files[0 if file_of_row is None else int(file_of_row[r])]] for r in (i, i + 1)]
                place = (f"photometry file {where[0]}" if where[0] == where[1]
                         else f"photometry files {where[0]} and {where[1]}")
                raise ValueError(f"{place}: source_id {int(ids[i])} is given twice with different "
                                 f"{c} ({a[i]} and {a[i + 1]})")
        keep = np.ones(len(ids), bool)
        keep[dup + 1] = False
        ids = ids[keep]
        columns = {c: a[keep] for c, a in columns.items()}
        file_of_row = None if file_of_row is None else file_of_row[keep]
    return _Group(files, ids, columns, file_of_row)
