"""Photometry files joined to Gaia XP rows by ``source_id``, at the archive's scale:
:class:`PhotometryJoin`, :func:`read_xp_joined` (Gaia XP_CONTINUOUS files) and
:func:`read_parquet_joined` (Parquet catalogues, lamfast's gnorm or the archive's e-/s).

The Gaia archive's XP_CONTINUOUS table holds no photometry: G (for gnorm), BP-RP and the
2MASS magnitudes come from ``gaia_source`` and the 2MASS best-neighbour tables. Each
photometry file (any table lamfast reads: CSV/ECSV/FITS/VOTable, gzipped or not, Parquet;
:mod:`lamfast.io.photometry_file`) gives some of the columns of :data:`USED_COLUMNS` under
their archive names; several files may give different columns (gaia_source, 2MASS) or the
same columns for different stars (the bulk download's GaiaSource_*.csv.gz). Rows may come
in any order.

**Resident and lazy files.** Every file's header is checked at construction (no
source_id, none of the known columns: an error before any star is labelled). A file that
declares the source_ids it holds without being read (:func:`lamfast.io.photometry_file.
declared_range`: Parquet by its row-group statistics; CSV/ECSV/FITS named with the bulk
download's HEALPix level-8 range ``_NNNNNN-MMMMMM``) is *lazy*: read only when a lookup
asks for a star in its range, then kept in a cache of recently used files. A Parquet file
sorted by source_id is lazy by parts, runs of its row groups of at least 65,536 rows
(:func:`lamfast.io.photometry_file.parquet_chunks`), each read alone: the sort-merge of
a big sorted table. Other files are *resident*: read at construction and kept. Gaia
source_ids encode position and the archive splits ``XpContinuousMeanSpectrum_*`` and
``GaiaSource_*`` by the same HEALPix ranges, so a work unit (part of one XP file) asks for
the stars of one or two photometry files.

**Memory.** A file is read keeping only ``source_id`` and the used columns it has; each
column is kept in float32 where that loses nothing (archive photometry is float32), else
float64. Resident files with the same set of columns are concatenated and sorted once by
source_id (``np.argsort``); a lazy file is sorted alone when read; every lookup is then
``np.searchsorted``. Kept per photometry star: 8 bytes (source_id) + 4 or 8 per column + 4
(which file, only where a resident group has several files): for gaia_source's G, BP-RP,
BP, RP, their flux_over_error, parallax (float64) and parallax_error, 44 bytes a star,
~9.7 GB for Gaia DR3's 220M XP stars were they all resident. The bound, independent of the
catalogue's size where the photometry is split by HEALPix range as the archive's is:

- the resident files (as above; while they load, +16 bytes a star for the sort);
- the cache: at most ``max(cache_bytes, the lazy files (or parts) of one lookup)``, since a
  lookup's own files are never evicted (default 1 GB: ~40 of the bulk download's GaiaSource
  files, which hold every source of their range, 1.8 billion in 3,386 files: ~0.5M stars,
  ~23 MB kept, a file on average); a lazy file bigger than ``cache_bytes`` alone is
  kept resident once read (as the eager join would hold it) rather than read per lookup;
- per lookup of N rows (each thread's): the sort of its ids and N x (columns) float64
  temporaries, and the one file being read (float64 while read, then compacted).

**Reads.** Work units come in the order of their input files (:mod:`lamfast.label.plan`: a
glob sorts, and the archive's names sort in HEALPix order; a shard takes every N-th unit,
in order; a Dask task is one input file), so each lazy file is read once per job (per
shard, per Dask worker, each of which makes its own join) when each XP file's stars lie in
the few photometry files of its range. A file read more than once (``reads``) means the
stars of the units between its two reads spread over more photometry files than the cache
holds, or that its declared range is wider than its HEALPix share (an unsorted Parquet
file: its statistics span every id, so every lookup needs it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .catalog import Catalog
from .gaia_photometry import gaia_photometry
# the names of reading one file stay importable from here
from .photometry_file import (G_COLUMN, KNOWN_COLUMNS, MAG_RANGE, MAGNITUDES, SOURCE_ID,  # noqa: F401
                              USED_COLUMNS, _same, check_photometry_file, declared_range, first_source_id,
                              open_photometry_file, parquet_chunks, read_photometry_file)

DEFAULT_CACHE_BYTES = 1 << 30    # ~40 of the bulk download's GaiaSource files (~0.5M stars each)


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

    @property
    def nbytes(self) -> int:
        return (self.source_id.nbytes + sum(a.nbytes for a in self.columns.values())
                + (0 if self.file_of_row is None else self.file_of_row.nbytes))


@dataclass
class _LazyFile:
    """A file read only when a lookup asks for a star of its declared source_id range."""

    index: int             # into PhotometryJoin.paths
    lo: int                # its source_ids lo..hi, inclusive
    hi: int
    declared_by: str       # what declares the range, for errors
    columns: tuple         # its used columns, sorted (from its header)
    row_groups: list | None = None   # a sorted Parquet file's part: these row groups only,
    first_row: int = 0               # which start at this row of the file


class PhotometryJoin:
    """Photometry files looked up by source_id for every work unit: resident files loaded
    once, lazy files (a declared source_id range) read when a lookup needs them.

    Parameters
    ----------
    paths : the photometry files (see the module doc for their columns and memory).
    cache_bytes : bytes of lazy files kept after the lookups that read them (least
        recently used evicted first; see the module doc's bound).

    Attributes
    ----------
    columns : the used columns that some file gives, sorted; every lookup returns them all.
    groups : the resident files, by column set (:class:`_Group`).
    lazy : the lazy files (:class:`_LazyFile`), by position in ``paths``.
    reads : int [F]: how many times each file (or a part of a sorted Parquet file) was read
        (resident ones: once).

    Raises
    ------
    FileNotFoundError, or ValueError naming the file (and the row or id where there is
    one): no source_id column, ids that are not integers or are missing, none of
    :data:`KNOWN_COLUMNS`, a non-numeric column, a source_id given twice with different
    values, a lazy file's source_id outside its declared range. A magnitude outside
    :data:`MAG_RANGE` gives a RuntimeWarning with the count (fluxes where magnitudes are
    expected?); its values are used as given. Header errors come at construction, and a
    file named with a range that its first row is not in; the data of a lazy file is
    checked (and warned about) when a lookup reads it: a file misnamed only in rows after
    its first fails when a lookup asks for a star of its named range, and goes unnoticed if
    none does (its stray stars are then not found in it).

    A source_id given twice with different values is an error: within one file always
    (when it is read); across resident files of the same columns at construction; in any
    other two files (different columns sharing one, or one of them lazy) when a lookup asks
    for that star, both files being consulted for it: a lookup consults every resident file
    and every lazy file whose range holds one of its ids, so files with overlapping ranges
    are both read for a star in the overlap.

    Lookups may run from several threads: the cache is guarded by a lock (held while a
    lazy file is read, so one file is never read twice at once).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.paths = [str(p) for p in paths]
        self.cache_bytes = int(cache_bytes)
        self.reads = [0] * len(self.paths)
        self.lazy: list[_LazyFile] = []
        by_columns: dict[tuple[str, ...], list[tuple[int, np.ndarray, dict]]] = {}
        for k, path in enumerate(self.paths):
            source = open_photometry_file(path)
            declared = declared_range(source)
            if declared is None:
                ids, cols = source.read_used()
                self.reads[k] += 1
                by_columns.setdefault(tuple(sorted(cols)), []).append((k, ids, cols))
            elif source.kind == "parquet" and len(chunks := parquet_chunks(source) or []) > 1:
                for lo, hi, row_groups, first_row in chunks:   # sorted: its parts are read alone
                    self.lazy.append(_LazyFile(k, lo, hi, f"the Parquet statistics of its row groups "
                                               f"{row_groups[0]}-{row_groups[-1]}", tuple(sorted(source.used)),
                                               row_groups, first_row))
            else:
                f = _LazyFile(k, *declared, tuple(sorted(source.used)))
                first = first_source_id(source)   # a misnamed file fails here, though never read
                if first is not None:
                    self._check_range(f, np.array([first], np.int64), whole=False)
                self.lazy.append(f)
        self.groups = [_build_group(self.paths, members) for members in by_columns.values()]
        self.columns = sorted({c for g in self.groups for c in g.columns} | {c for f in self.lazy for c in f.columns})
        self._lo = np.array([f.lo for f in self.lazy], np.int64)
        self._hi = np.array([f.hi for f in self.lazy], np.int64)
        self._cache: OrderedDict[int, _Group] = OrderedDict()   # position in ``lazy`` -> its rows
        self._cached_bytes = 0
        self._kept: list[_Group] = []   # lazy files bigger than the cache: resident once read
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Distinct stars per file group held now (resident, cached and kept lazy files)."""
        return sum(len(g.source_id) for g in self._held())

    @property
    def nbytes(self) -> int:
        """Bytes of photometry held now (resident, cached and kept lazy files)."""
        return sum(g.nbytes for g in self._held())

    def _held(self) -> list[_Group]:
        with self._lock:
            return self.groups + self._kept + list(self._cache.values())

    def lookup(self, ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The photometry of stars ``ids`` (int64 [N], any order, repeats allowed).

        Returns
        -------
        columns : name -> float64 [N] for every name of ``columns`` (NaN where no file
            has the star).
        joined : int64 [F]: how many of the N stars each photometry file gave.

        ValueError naming both files and the id if two files give one star different
        values of the same column; the errors of reading a lazy file (see the class doc).
        """
        ids = np.asarray(ids, np.int64)
        n = len(ids)
        order = np.argsort(ids, kind="stable")   # sorted queries: ~3x faster searches and gathers
        ids = ids[order]
        groups = self.groups + self._lazy_groups(ids)
        joined = np.zeros(len(self.paths), np.int64)
        out: dict[str, np.ndarray] = {}
        have: dict[str, np.ndarray] = {}
        for g in groups:
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
                    self._check_agree(groups, name, ids, out[name], v, have[name] & found)
                    out[name] = np.where(found, v, out[name])
                    have[name] = have[name] | found   # a new array: columns of one group share ``found``
                else:
                    out[name], have[name] = v, found
        for name in self.columns:   # back to the order asked; a lazy file not read: its columns NaN
            v = out.get(name)
            out[name] = np.full(n, np.nan) if v is None else np.empty_like(v)
            if v is not None:
                out[name][order] = v
        return out, joined

    def _lazy_groups(self, ids: np.ndarray) -> list[_Group]:
        """The rows of the lazy files whose range holds one of ``ids`` (int64 [N], sorted),
        read where not cached; then the cache evicts, least recently used first, files
        not asked for now until it holds at most ``cache_bytes``."""
        if not self.lazy or not len(ids):
            return []
        groups = []
        with self._lock:   # the ranges too: a file kept resident leaves them
            asked = np.flatnonzero(np.searchsorted(ids, self._lo, "left") < np.searchsorted(ids, self._hi, "right"))
            asked_now = set(asked.tolist())
            for j in asked.tolist():
                g = self._cache.pop(j, None)
                if g is None:
                    g = self._read_lazy(self.lazy[j])
                    if g.nbytes > self.cache_bytes:   # reading it per lookup would cost more than holding it
                        self._kept.append(g)
                        self._lo[j], self._hi[j] = 1, 0   # in no range now: consulted as a resident group
                        continue
                    self._cached_bytes += g.nbytes
                self._cache[j] = g                     # the end: most recently used
                groups.append(g)
                for old in [k for k in self._cache if k not in asked_now]:
                    if self._cached_bytes <= self.cache_bytes:
                        break
                    self._cached_bytes -= self._cache.pop(old).nbytes
            return self._kept + groups

    def _read_lazy(self, f: _LazyFile) -> _Group:
        path = self.paths[f.index]
        source = open_photometry_file(path)
        if tuple(sorted(source.used)) != f.columns:
            raise ValueError(f"photometry file {path}: its columns changed since the join was made "
                             f"({', '.join(f.columns)} then, {', '.join(sorted(source.used))} now)")
        ids, cols = source.read_used(f.row_groups, f.first_row)
        self.reads[f.index] += 1
        self._check_range(f, ids)
        return _build_group(self.paths, [(f.index, ids, cols)])

    def _check_range(self, f: _LazyFile, ids: np.ndarray, whole: bool = True) -> None:
        """ValueError naming the file, the first row of ``ids`` (int64, the file's rows in
        order: all of them if ``whole``, else its first) outside its declared range, and the range."""
        outside = np.flatnonzero((ids < f.lo) | (ids > f.hi))
        if outside.size:
            r = int(outside[0])
            count = f" ({outside.size} of these {len(ids)} rows are)" if whole else ""
            raise ValueError(f"photometry file {self.paths[f.index]}: row {r + f.first_row} (data rows from 0) "
                             f"has source_id "
                             f"{int(ids[r])}, outside the range {f.lo}..{f.hi} that {f.declared_by} declares"
                             f"{count}; its stars would be missed by the lookups of their range: rename the "
                             "file or split it by range")

    def _check_agree(self, groups, name: str, ids, a: np.ndarray, b: np.ndarray, both: np.ndarray) -> None:
        bad = np.flatnonzero(both & ~_same(a, b))
        if bad.size:
            sid = int(ids[bad[0]])
            holders = [self.paths[f] for f in _files_with(groups, sid, name)]
            raise ValueError(f"photometry: source_id {sid} has {name} {a[bad[0]]} in one file and "
                             f"{b[bad[0]]} in another ({', '.join(holders)}); give each star's "
                             f"{name} once")


def _files_with(groups: list[_Group], sid: int, name: str) -> list[int]:
    files = []
    for g in groups:
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
                        row_groups: list[int] | None = None,
                        default_xp_units: str | None = None) -> tuple[Catalog, np.ndarray]:
    """Row groups of a Parquet catalogue with their stars' photometry from ``join``: the
    Catalog of :func:`lamfast.io.read_parquet` ``(path, row_groups=..., photometry=T)``
    with ``T`` the photometry of its stars (rows in the file's order, every row kept).

    Coefficients in e-/s are gnormed with G from the photometry where it has the star,
    else with the file's own ``phot_g_mean_mag``; a star without either gets missing
    (NaN) coefficients. A token the photometry would add that the file already has (e.g.
    ``bprp``) gives a ValueError naming the file and the column: which one to trust is
    the user's choice, never a silent one. ``default_xp_units``: the units of a file that
    declares none (a HATS catalogue's ``lamfast_xp_units``; see :func:`read_parquet`).

    Returns
    -------
    catalog : the file's tokens, then those of the photometry (bprp, jh, jk, g_fakemag as
        it allows).
    joined : int64 [F] rows of these row groups found in each photometry file.
    """
    from .parquet import read_parquet

    return _read_joined(join, lambda lookup: read_parquet(path, row_groups=row_groups, photometry=lookup,
                                                           default_xp_units=default_xp_units))


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
