"""The HDF5 layout of Leung & Bovy 2024's training/testing files, read and written.

Layout (N stars; NaN = missing)::

    gaia_source_id      int64 [N]
    2mass_designation   S16   [N, 1]
    split               int8  [N]        lamfast's addition: 0 train, 1 validation, 2 test
    source_row          int64 [N]        lamfast's addition (optional): row in the file built from
    raw/xp_coeffs, raw/xp_coeffs_err              float [N, 110]  BP 0-54 then RP 0-54, e-/s
    raw/xp_coeffs_gnorm, raw/xp_coeffs_gnorm_err  float [N, 110]  divided by the G flux
    raw/xp_relevancy                              bool  [N, 110]
    raw/{bprp, jh, jk, g_fakemag, logc19, parallax, teff, logg, m_h}(_err)  float [N]
    raw/phot_g_mean_mag                           float [N]

Units: the names say them (``xp_coeffs``: e-/s, ``xp_coeffs_gnorm``: gnorm); lamfast's
writer also sets the attribute ``lamfast.xp_units`` ("flux" / "gnorm") on each of the four
coefficient datasets. The reader takes ``raw/xp_coeffs_gnorm`` and checks it: an attribute
other than "gnorm", or bp0/rp0 of the rows read off the gnorm scale, gives a ValueError
(:mod:`lamfast.io.xp_units`).

``logc19`` is the ``logebv`` token. Reading applies the authors' training-script
conventions: the relevancy of coefficient 51 is copied to 52-54 (and 106 to 107-109)
before irrelevant coefficients are blanked; optionally NaN label errors become 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ..vocab import PAPER_TOKENS, XP
from .catalog import Catalog
from .photometry import g_flux
from .xp_units import XP_UNITS_KEY, check_units_name, check_xp_scale

# token name -> dataset name in group "raw" (the scalar tokens)
SCALAR_DATASETS = {"bprp": "bprp", "jh": "jh", "jk": "jk", "teff": "teff", "logg": "logg",
                   "m_h": "m_h", "logebv": "logc19", "g_fakemag": "g_fakemag"}
EXTRA_DATASETS = ("parallax", "parallax_err", "phot_g_mean_mag")  # side columns, not tokens
SPLIT_NAMES = ("train", "validation", "test")
_FILL = {51: (52, 53, 54), 106: (107, 108, 109)}  # relevancy copied from -> to


def read_paper_hdf5(path: str | os.PathLike, rows: slice | None = None, *, relevancy: bool = True,
                    nan_label_errors_to_zero: bool = False) -> Catalog:
    """Read a file in the paper's layout into a :class:`Catalog`.

    Parameters
    ----------
    path : the HDF5 file.
    rows : a contiguous row range (``slice(start, stop)``) to read only part of the file.
    relevancy : blank coefficients flagged irrelevant in ``raw/xp_relevancy`` (after copying
        the relevancy of coefficient 51 to 52-54 and 106 to 107-109, as the authors do).
    nan_label_errors_to_zero : replace NaN errors of the scalar tokens (bprp ... g_fakemag)
        by 0 where the value is present (the authors' training convention).

    Returns
    -------
    Catalog with columns ``PAPER_TOKENS`` (bp0..bp54, rp0..rp54, bprp, jh, jk, teff, logg,
    m_h, logebv, g_fakemag), float32 values/errors (errors from the ``_err`` twins; NaN
    where the file has none), source_id from ``gaia_source_id``, and extra columns
    ``2mass_designation`` (str), ``parallax``, ``parallax_err``, ``phot_g_mean_mag`` and
    ``split`` and ``source_row`` when present. Datasets other than ``gaia_source_id`` and
    ``raw/xp_coeffs_gnorm`` are optional (all NaN when absent; listed in
    ``meta["missing_datasets"]``).
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as f:
        n_total = _require(f, path, "gaia_source_id").shape[0]
        start, stop = _row_range(rows, n_total)
        raw = _require(f, path, "raw")
        coeffs = _require(raw, path, "xp_coeffs_gnorm", "raw/")
        if coeffs.ndim != 2 or coeffs.shape != (n_total, len(XP)):
            raise ValueError(f"{path}: raw/xp_coeffs_gnorm must be [{n_total}, {len(XP)}], got {coeffs.shape}")
        declared = coeffs.attrs.get(XP_UNITS_KEY)
        if declared is not None and check_units_name(declared, f"{path}: raw/xp_coeffs_gnorm") != "gnorm":
            raise ValueError(f"{path}: raw/xp_coeffs_gnorm declares {XP_UNITS_KEY}={declared!r}; "
                             "this dataset must hold gnorm coefficients (e-/s go to raw/xp_coeffs)")
        missing = []

        def read(name, shape_tail=()):
            if name not in raw:
                missing.append(f"raw/{name}")
                return None
            ds = raw[name]
            if ds.shape != (n_total,) + shape_tail:
                raise ValueError(f"{path}: raw/{name} must have shape {(n_total,) + shape_tail}, got {ds.shape}")
            return ds[start:stop]

        n = stop - start
        values = np.full((n, len(PAPER_TOKENS)), np.nan, dtype=np.float32)
        errors = np.full_like(values, np.nan)
        values[:, :len(XP)] = coeffs[start:stop]
        for j in (0, len(XP) // 2):   # bp0, rp0
            check_xp_scale(values[:, j], "gnorm", f"{path}: dataset 'raw/xp_coeffs_gnorm' (rows {start}:{stop})",
                           XP[j], "the paper's layout keeps gnorm coefficients in raw/xp_coeffs_gnorm",
                           "Write e-/s coefficients to raw/xp_coeffs and their gnorm (divided by the G flux) "
                           "here, e.g. with lamfast.io.paper_hdf5.write_paper_hdf5 from lamfast.io.xp_catalog.")
        err = read("xp_coeffs_gnorm_err", (len(XP),))
        if err is not None:
            errors[:, :len(XP)] = err
        if relevancy:
            rel = read("xp_relevancy", (len(XP),))
            if rel is not None:
                rel = np.asarray(rel, dtype=bool).copy()
                for src, dst in _FILL.items():
                    rel[:, list(dst)] = rel[:, [src]]
                values[:, :len(XP)][~rel] = np.nan
                errors[:, :len(XP)][~rel] = np.nan
        for j, token in enumerate(PAPER_TOKENS[len(XP):], start=len(XP)):
            v = read(SCALAR_DATASETS[token])
            if v is not None:
                values[:, j] = v
            e = read(SCALAR_DATASETS[token] + "_err")
            if e is not None:
                errors[:, j] = e
        extra = {}
        for name in EXTRA_DATASETS:
            v = read(name)
            if v is not None:
                extra[name] = np.asarray(v, dtype=np.float64)
        if "2mass_designation" in f:
            tmass = np.asarray(f["2mass_designation"][start:stop])
            tmass = tmass[:, 0] if tmass.ndim == 2 else tmass            # [N, 1] in the paper's files
            extra["2mass_designation"] = np.char.decode(tmass, "ascii", "replace").astype(str)
        if "split" in f:
            extra["split"] = np.asarray(f["split"][start:stop], dtype=np.int8)
        if "source_row" in f:
            extra["source_row"] = np.asarray(f["source_row"][start:stop], dtype=np.int64)
        source_id = np.asarray(f["gaia_source_id"][start:stop], dtype=np.int64)
    if nan_label_errors_to_zero:
        scalars = errors[:, len(XP):]
        scalars[np.isnan(scalars) & ~np.isnan(values[:, len(XP):])] = 0.0
    meta = {"source": path, "rows": (start, stop), "layout": "paper_hdf5",
            "missing_datasets": missing, "split_names": SPLIT_NAMES}
    return Catalog(list(PAPER_TOKENS), values, errors, source_id, meta, extra)


def iter_paper_hdf5(path: str | os.PathLike, chunk_rows: int = 65536, **kwargs) -> Iterator[Catalog]:
    """Stream a file as consecutive :class:`Catalog` chunks of ``chunk_rows`` stars."""
    import h5py

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with h5py.File(os.fspath(path), "r") as f:
        n = _require(f, os.fspath(path), "gaia_source_id").shape[0]
    for start in range(0, n, chunk_rows):
        yield read_paper_hdf5(path, slice(start, min(n, start + chunk_rows)), **kwargs)


class PaperHDF5Writer:
    """Write the paper's layout chunk by chunk (datasets grow as chunks are appended).

    >>> with PaperHDF5Writer("out.h5") as w:          # doctest: +SKIP
    ...     for cat in chunks:
    ...         w.append(cat)

    Each catalogue needs the 110 XP token columns (gnorm units: bp0/rp0 off that scale
    give a ValueError); the scalar tokens are optional (NaN when absent). ``extra`` may
    hold ``phot_g_mean_mag`` (then raw ``xp_coeffs`` = gnorm x G flux are written too),
    ``parallax(_err)``,
    ``2mass_designation``, ``split`` (0 train, 1 validation, 2 test; -1 when absent) and
    ``source_row`` (row of the star in the file the catalogue was built from).
    """

    def __init__(self, path: str | os.PathLike, *, chunk_rows: int = 4096, compression: str = "gzip",
                 compression_level: int = 4, attrs: dict | None = None):
        import h5py

        self.path = os.fspath(path)
        self.chunk_rows = max(1, int(chunk_rows))
        self._compress = {"compression": compression, "shuffle": True}
        if compression == "gzip":
            self._compress["compression_opts"] = compression_level
        self._file = h5py.File(self.path, "w")
        self._file.attrs["layout"] = "Leung & Bovy 2024 training file (paper_hdf5), written by lamfast"
        self._file.attrs["split_names"] = ",".join(SPLIT_NAMES)
        for k, v in (attrs or {}).items():
            self._file.attrs[k] = v
        self.n_rows = 0

    def _dataset(self, name, tail, dtype, fill):
        if name not in self._file:
            self._file.create_dataset(name, shape=(0,) + tail, maxshape=(None,) + tail, dtype=dtype,
                                      chunks=(self.chunk_rows,) + tail, fillvalue=fill, **self._compress)
        return self._file[name]

    def _put(self, name, data, dtype=np.float32, fill=np.nan):
        data = np.asarray(data)
        ds = self._dataset(name, data.shape[1:], dtype, fill)
        ds.resize(self.n_rows + len(data), axis=0)
        ds[self.n_rows:] = data

    def append(self, catalog: Catalog) -> None:
        n = len(catalog)
        if n == 0:
            return
        idx = {c: i for i, c in enumerate(catalog.columns)}
        missing_xp = [c for c in XP if c not in idx]
        if missing_xp:
            raise ValueError(f"{self.path}: catalogue lacks XP columns {missing_xp[:3]}... "
                             "(the paper layout needs all 110)")
        xp_cols = [idx[c] for c in XP]
        coeffs, coeff_err = catalog.values[:, xp_cols], catalog.errors[:, xp_cols]
        for j in (0, len(XP) // 2):
            check_xp_scale(coeffs[:, j], "gnorm", f"writing {self.path}: catalogue column {XP[j]!r}", XP[j],
                           "a Catalog holds gnorm coefficients and raw/xp_coeffs_gnorm is declared so",
                           "Convert the archive's e-/s with lamfast.io.xp_catalog (divides by the G flux).")
        nan = np.full(n, np.nan, dtype=np.float32)
        self._put("gaia_source_id", catalog.source_id, np.int64, 0)
        tmass = catalog.extra.get("2mass_designation", np.full(n, ""))
        self._put("2mass_designation", np.char.encode(np.asarray(tmass, dtype=str), "ascii").astype("S16")[:, None],
                  "S16", b"")
        self._put("split", catalog.extra.get("split", np.full(n, -1)), np.int8, -1)
        if "source_row" in catalog.extra:
            self._put("source_row", catalog.extra["source_row"], np.int64, -1)
        g_mag = np.asarray(catalog.extra.get("phot_g_mean_mag", nan), dtype=np.float64)
        gf = g_flux(g_mag)[:, None]
        for name, data, units in (("xp_coeffs", coeffs * gf, "flux"), ("xp_coeffs_err", coeff_err * gf, "flux"),
                                  ("xp_coeffs_gnorm", coeffs, "gnorm"), ("xp_coeffs_gnorm_err", coeff_err, "gnorm")):
            self._put(f"raw/{name}", data)
            self._file[f"raw/{name}"].attrs[XP_UNITS_KEY] = units
        self._put("raw/xp_relevancy", ~np.isnan(coeffs), bool, False)
        for token, name in SCALAR_DATASETS.items():
            j = idx.get(token)
            self._put(f"raw/{name}", nan if j is None else catalog.values[:, j])
            self._put(f"raw/{name}_err", nan if j is None else catalog.errors[:, j])
        for name in EXTRA_DATASETS:
            self._put(f"raw/{name}", catalog.extra.get(name, nan), np.float64)
        self.n_rows += n

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_paper_hdf5(path: str | os.PathLike, catalog: Catalog, **kwargs) -> None:
    """Write one :class:`Catalog` in the paper's layout (see :class:`PaperHDF5Writer`)."""
    with PaperHDF5Writer(path, **kwargs) as w:
        for start in range(0, max(len(catalog), 1), w.chunk_rows):
            w.append(catalog.rows(slice(start, start + w.chunk_rows)))
        if len(catalog) == 0:  # still a valid, empty file
            w._put("gaia_source_id", np.empty(0, np.int64), np.int64, 0)
            w._put("raw/xp_coeffs_gnorm", np.empty((0, len(XP)), np.float32))
            w._file["raw/xp_coeffs_gnorm"].attrs[XP_UNITS_KEY] = "gnorm"


def _require(group, path, name, prefix=""):
    if name not in group:
        raise ValueError(f"{path}: required dataset {prefix}{name!r} is missing "
                         "(not a file in the paper's HDF5 layout?)")
    return group[name]


def _row_range(rows, n_total):
    if rows is None:
        return 0, n_total
    if not isinstance(rows, slice) or rows.step not in (None, 1):
        raise ValueError(f"rows must be a contiguous slice(start, stop), got {rows!r}")
    start, stop, _ = rows.indices(n_total)
    return start, max(start, stop)
