"""`lamfast xmatch A B --radius 1.0 --mode best --out pairs.parquet`: cross-match two
tables on the sky and write the pairs (idx1, idx2, sep_arcsec).

Tables are read by file name: Parquet with pyarrow, FITS / CSV / ECSV / VOTable with
astropy (both imported only here); only the named columns are loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

_ASTROPY_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".csv": "ascii.csv",
                    ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable",
                    ".votable": "votable"}


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2") and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def read_columns(path, columns: list[str]) -> dict[str, np.ndarray]:
    """Named columns of a table file as float64 arrays (masked cells -> NaN)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such table: {path}")
    suffix = _suffix(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        _check_present(path, columns, names)
        table = pq.read_table(path, columns=columns)
        return {c: _as_float(path, c, table.column(c).to_numpy(zero_copy_only=False))
                for c in columns}
    if suffix not in _ASTROPY_FORMATS:
        raise ValueError(f"{path}: unknown table format {suffix!r} (use .parquet, .fits, "
                         ".csv, .ecsv or .vot/.xml)")
    from astropy.table import Table

    table = Table.read(path, format=_ASTROPY_FORMATS[suffix])
    _check_present(path, columns, table.colnames)
    return {c: _as_float(path, c, np.ma.filled(np.ma.asarray(table[c]).astype(np.float64),
                                                  np.nan)) for c in columns}


def _check_present(path, columns, names) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")


def _as_float(path, column, values) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {column!r} is not numeric") from None


def write_pairs(path, pairs) -> None:
    """Write a Match as columns idx1, idx2, sep_arcsec (Parquet, FITS, CSV or ECSV)."""
    path = Path(path)
    cols = {"idx1": pairs.idx1, "idx2": pairs.idx2, "sep_arcsec": pairs.sep_arcsec}
    suffix = _suffix(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(cols), path)
        return
    if suffix not in _ASTROPY_FORMATS:
        raise ValueError(f"{path}: unknown output format {suffix!r}")
    from astropy.table import Table

    Table(cols).write(path, format=_ASTROPY_FORMATS[suffix], overwrite=True)


def _epoch(value: str | None, table: dict[str, np.ndarray], name: str):
    """An epoch given as a number (Julian years) or as a column name."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        if value not in table:
            raise ValueError(f"{name} {value!r} is neither a number nor a loaded column") from None
        return table[value]


def run(args) -> int:
    from .xmatch import match

    if bool(args.pmra1) != bool(args.pmdec1):
        raise ValueError("--pmra1 and --pmdec1 go together")
    cols1 = [args.ra1, args.dec1]
    if args.pmra1:
        cols1 += [args.pmra1, args.pmdec1]
    if args.epoch1 is not None and not _is_number(args.epoch1):
        cols1.append(args.epoch1)  # per-row epochs
    t1 = read_columns(args.table1, cols1)
    t2 = read_columns(args.table2, [args.ra2, args.dec2])
    t0 = time.perf_counter()
    pairs = match(t1[args.ra1], t1[args.dec1], t2[args.ra2], t2[args.dec2], args.radius,
                  mode=args.mode, k=args.k,
                  pmra1=t1[args.pmra1] if args.pmra1 else None,
                  pmdec1=t1[args.pmdec1] if args.pmra1 else None,
                  epoch1=_epoch(args.epoch1, t1, "--epoch1"),
                  epoch2=args.epoch2,
                  threads=args.threads)
    seconds = time.perf_counter() - t0
    write_pairs(args.out, pairs)
    matched = int((pairs.idx2 >= 0).sum())
    print(f"{args.mode}: {matched} pairs from {len(t1[args.ra1])} x {len(t2[args.ra2])} rows "
          f"within {args.radius}\" in {seconds:.3f} s -> {args.out}")
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def add_parser(sub) -> None:
    p = sub.add_parser("xmatch", help="cross-match two tables on the sky",
                       description=__doc__.splitlines()[0])
    p.add_argument("table1", help="catalogue 1 (Parquet, FITS, CSV, ECSV or VOTable)")
    p.add_argument("table2", help="catalogue 2, the one indexed")
    p.add_argument("--radius", type=float, required=True, help="match radius (arcsec)")
    p.add_argument("--mode", choices=("nearest", "all", "best"), default="nearest")
    p.add_argument("--k", type=int, default=1, help="neighbours per row in nearest mode")
    p.add_argument("--out", required=True, help="output table (.parquet, .fits, .csv, .ecsv)")
    p.add_argument("--ra1", default="ra", help="RA column of table 1 (degrees)")
    p.add_argument("--dec1", default="dec", help="Dec column of table 1 (degrees)")
    p.add_argument("--ra2", default="ra", help="RA column of table 2 (degrees)")
    p.add_argument("--dec2", default="dec", help="Dec column of table 2 (degrees)")
    p.add_argument("--pmra1", help="proper motion column in RA*cos(dec) of table 1 (mas/yr)")
    p.add_argument("--pmdec1", help="proper motion column in Dec of table 1 (mas/yr)")
    p.add_argument("--epoch1", help="epoch of table 1 (Julian years) or a column name")
    p.add_argument("--epoch2", type=float, help="epoch of table 2 (Julian years)")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)
