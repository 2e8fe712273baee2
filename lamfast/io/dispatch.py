"""One entry point for every catalogue file lamfast reads: :func:`read_catalog`."""

from __future__ import annotations

import importlib
from pathlib import Path

from .catalog import Catalog

CATALOG_FORMATS = ("xp", "apogee", "parquet", "paper_hdf5")
_XP_SUFFIXES = ("csv", "ecsv", "xml", "vot", "votable")


def detect_catalog_format(path: str | Path) -> str:
    """'xp' (Gaia XP_CONTINUOUS in any archive format), 'apogee' (allStar FITS),
    'parquet' or 'paper_hdf5', from the name (a '.gz' suffix ignored) and, for FITS,
    the table's column names."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix in ("h5", "hdf5"):
        return "paper_hdf5"
    if suffix in _XP_SUFFIXES:
        return "xp"
    if suffix in ("fits", "fit", "fts"):
        names = _fits_column_names(path)
        if "BP_COEFFICIENTS" in names:
            return "xp"
        if {"APOGEE_ID", "TEFF"} <= names:
            return "apogee"
        raise ValueError(f"{path}: a FITS table that is neither Gaia XP_CONTINUOUS "
                         "(bp_coefficients) nor APOGEE allStar (APOGEE_ID, TEFF)")
    raise ValueError(f"{path}: cannot tell the format from the name; pass format= one of "
                     f"{CATALOG_FORMATS}")


def _fits_column_names(path) -> set[str]:
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU):
                return {n.upper() for n in hdu.columns.names}
    return set()


def read_catalog(path: str | Path, *, format: str | None = None, photometry=None,
                 **kwargs) -> Catalog:
    """Read any supported catalogue file into a :class:`Catalog`.

    Parameters
    ----------
    path : the file. Formats (``format`` or detected by :func:`detect_catalog_format`):

        - ``"xp"``: Gaia XP_CONTINUOUS (CSV/ECSV/FITS/VOTable, plain or gzipped; always
          the archive's e-/s) -> bp0..bp54, rp0..rp54 in gnorm units, plus
          ``photometry``'s tokens. ``kwargs`` go to
          :func:`~lamfast.io.xp_archive.read_xp_continuous` (``n_coefficients`` to
          :func:`~lamfast.io.xp_continuous.xp_catalog`).
        - ``"apogee"``: allStar FITS (:func:`~lamfast.io.apogee.read_apogee_allstar`).
        - ``"parquet"``: :func:`~lamfast.io.parquet.read_parquet`: gnorm or e-/s as the
          file's ``lamfast.xp_units`` metadata says (none: e-/s, the archive's).
        - ``"paper_hdf5"``: the authors' HDF5 layout
          (:func:`~lamfast.io.paper_hdf5.read_paper_hdf5`; ``rows=slice(a, b)`` reads part).

        Whatever the format, the catalogue holds gnorm coefficients; values whose scale
        contradicts the file's units give a ValueError naming the file and column
        (:mod:`lamfast.io.xp_units`).
    photometry : for "xp": a Catalog (e.g. from
        :func:`~lamfast.io.gaia_photometry.gaia_photometry`), a table with Gaia/2MASS
        columns, or a file astropy reads; joined by source_id. (Or a row-by-row lookup,
        as :func:`~lamfast.io.xp_continuous.xp_catalog` takes it.) G (phot_g_mean_mag) is
        needed to gnorm e-/s coefficients; it may instead be a column of the file itself.
        (For a Parquet file of e-/s without G: ``read_parquet(path, photometry=Catalog)``.)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = format or detect_catalog_format(path)
    if fmt not in CATALOG_FORMATS:
        raise ValueError(f"format must be one of {CATALOG_FORMATS}, got {fmt!r}")
    if photometry is not None and fmt != "xp":
        raise ValueError(f"photometry= applies to XP files only, not {fmt!r} (a Parquet file: "
                         "read_parquet(path, photometry=gaia_photometry(table)))")
    if fmt == "xp":
        return _read_xp(path, _photometry_catalog(photometry), **kwargs)
    if fmt == "apogee":
        from .apogee import read_apogee_allstar
        return read_apogee_allstar(path, **kwargs)
    if fmt == "parquet":
        from .parquet import read_parquet
        return read_parquet(path, **kwargs)
    try:
        module = importlib.import_module("lamfast.io.paper_hdf5")
    except ModuleNotFoundError:
        raise ValueError("the paper HDF5 reader (lamfast.io.paper_hdf5) is not part of "
                         "this installation") from None
    return module.read_paper_hdf5(path, **kwargs)


def _photometry_catalog(photometry) -> Catalog | None:
    """``photometry=`` as a Catalog (a Catalog, a table, or a file astropy reads)."""
    if photometry is None or isinstance(photometry, Catalog) or callable(photometry):
        return photometry
    from .gaia_photometry import gaia_photometry

    if isinstance(photometry, (str, Path)):
        from astropy.table import Table
        photometry = Table.read(photometry)
    return gaia_photometry(photometry)


def _read_xp(path: Path, photometry, n_coefficients: int = 55, **kwargs) -> Catalog:
    from .xp_archive import read_xp_continuous
    from .xp_continuous import check_gnorm_scale, check_xp_continuous_scale, xp_catalog

    extra = list(kwargs.pop("extra_columns", ()))
    if "phot_g_mean_mag" not in extra and "phot_g_mean_mag" in _xp_column_names(path, kwargs):
        extra.append("phot_g_mean_mag")  # e.g. GaiaXPy's reduced files carry G
    xp = read_xp_continuous(path, extra_columns=extra, **kwargs)
    check_xp_continuous_scale(xp)
    cat = xp_catalog(xp, photometry=photometry, n_coefficients=n_coefficients)
    check_gnorm_scale(cat, str(path))
    return cat


def _xp_column_names(path: Path, kwargs) -> set[str]:
    """Column names of an XP file where cheap to get (text header, FITS header)."""
    from .xp_archive import detect_format

    fmt = kwargs.get("format") or detect_format(path)
    if fmt in ("csv", "ecsv"):
        from .text_table import read_header
        return set(read_header(path, fmt).names)
    if fmt == "fits":
        return {n.lower() for n in _fits_column_names(path)}
    return set()
