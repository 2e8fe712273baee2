"""`lamfast xmatch A B --radius 1.0 --mode best --out pairs.parquet`: cross-match two
tables on the sky and write the pairs (idx1, idx2, sep_arcsec, and id1 / id2).

Tables are read by file name: Parquet with pyarrow, FITS / CSV / ECSV / VOTable with
astropy (both imported only here); only the named columns are loaded. Columns that carry a
unit (FITS TUNIT, ECSV / VOTable units, Parquet field metadata ``unit`` or astropy's
Parquet header) are converted: positions to degrees, proper motions to mas/yr, epochs must
be in years; columns without one are taken as degrees, mas/yr and Julian years.

Output columns: ``idx1``, ``idx2`` (0-based rows; ``idx2 = -1`` where ``nearest`` found
nothing within the radius), ``sep_arcsec`` (float64, unit arcsec: in the Parquet field
metadata and astropy's Parquet header, so ``Table.read`` gives ``u.arcsec``; a unit in
FITS, ECSV and VOTable), and ``id1`` / ``id2``: the ``--id1`` / ``--id2`` column of each
table (default: its ``source_id`` column when it has one, else no id column), null or
masked where ``idx2 = -1``. (astropy's Parquet reader turns null integers into float NaN,
which cannot hold a Gaia source_id: read such a file with pyarrow, or write FITS / ECSV.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

_ASTROPY_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".csv": "ascii.csv",
                    ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable",
                    ".votable": "votable"}
DEFAULT_ID = "source_id"

# units a column may carry that need no conversion (no astropy import for them)
_PLAIN_UNITS = {
    "deg": {"deg", "degree", "degrees"},
    "mas/yr": {"mas/yr", "mas / yr", "mas.yr**-1", "mas yr-1", "mas.a**-1", "mas / a"},
    "yr": {"yr", "year", "a"},
}


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2") and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


class Ids(NamedTuple):
    """One table's id column: ``values`` [N] (int, float or str) and ``mask`` [N] (True:
    no id)."""

    column: str
    values: np.ndarray
    mask: np.ndarray


class Catalogue(NamedTuple):
    """The columns the command needs from one table."""

    path: Path
    columns: dict  # name -> float64 [N] (masked cells -> NaN)
    units: dict  # name -> unit string or None
    ids: Ids | None


def read_columns(path, columns: list[str]) -> dict[str, np.ndarray]:
    """Named columns of a table file as float64 arrays (masked cells -> NaN), as stored
    (units not applied; see :func:`read_catalogue`)."""
    return read_catalogue(path, columns, id_column=False).columns


def read_catalogue(path, columns: list[str], id_column: str | None | bool = None) -> Catalogue:
    """Float columns with their units, and an id column.

    ``id_column``: a column name (it must exist), None for ``source_id`` when the table has
    one (any letter case), False for none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such table: {path}")
    suffix = _suffix(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        names = schema.names
        _check_present(path, columns, names)
        id_name = _id_name(path, id_column, names)
        wanted = list(dict.fromkeys(columns + ([id_name] if id_name else [])))
        table = pq.read_table(path, columns=wanted)
        units = _parquet_units(schema)
        return Catalogue(path, {c: _as_float(path, c, table.column(c).to_numpy(
            zero_copy_only=False)) for c in columns}, {c: units.get(c) for c in columns},
            _arrow_ids(id_name, table.column(id_name)) if id_name else None)
    if suffix not in _ASTROPY_FORMATS:
        raise ValueError(f"{path}: unknown table format {suffix!r} (use .parquet, .fits, "
                         ".csv, .ecsv or .vot/.xml)")
    from astropy.table import Table

    table = Table.read(path, format=_ASTROPY_FORMATS[suffix])
    _check_present(path, columns, table.colnames)
    id_name = _id_name(path, id_column, table.colnames)
    return Catalogue(
        path, {c: _as_float(path, c, np.ma.filled(np.ma.asarray(table[c]).astype(np.float64),
                                                 np.nan)) for c in columns},
        {c: None if table[c].unit is None else str(table[c].unit) for c in columns},
        _astropy_ids(id_name, table[id_name]) if id_name else None)


def _check_present(path, columns, names) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")


def _id_name(path, id_column, names) -> str | None:
    if id_column is False:
        return None
    if id_column is not None:
        _check_present(path, [id_column], names)
        return id_column
    found = [n for n in names if n.lower() == DEFAULT_ID]
    return found[0] if len(found) == 1 else None


def _as_float(path, column, values) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {column!r} is not numeric") from None


def _parquet_units(schema) -> dict[str, str]:
    """Column units: field metadata ``unit``, else astropy's ``table_meta_yaml`` header."""
    units = {}
    meta = schema.metadata or {}
    if b"table_meta_yaml" in meta:
        try:
            from astropy.table import meta as table_meta

            header = table_meta.get_header_from_yaml(
                meta[b"table_meta_yaml"].decode().split("\n"))
            units = {c["name"]: str(c["unit"]) for c in header.get("datatype", [])
                     if c.get("unit") is not None}
        except ImportError:  # no astropy: field metadata only
            pass
    for field in schema:
        if field.metadata and b"unit" in field.metadata:
            units[field.name] = field.metadata[b"unit"].decode()
    return units


def _plain_ids(values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "O":  # strings (or bytes) from Arrow
        values = np.asarray(values.tolist()) if len(values) else values.astype(str)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8")
    if values.dtype.byteorder not in "=|":  # FITS is big-endian; Arrow wants native
        values = values.astype(values.dtype.newbyteorder("="))
    return values


def _arrow_ids(name, column) -> Ids:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    mask = column.is_null().to_numpy(zero_copy_only=False)
    if column.null_count:
        t = column.type
        fill = (0 if pa.types.is_integer(t) else "" if pa.types.is_string(t)
                or pa.types.is_large_string(t) else None)
        if fill is not None:
            column = pc.fill_null(column, pa.scalar(fill, type=t))
    return Ids(name, _plain_ids(column.to_numpy(zero_copy_only=False)), mask)


def _astropy_ids(name, column) -> Ids:
    mask = np.ma.getmaskarray(column)
    values = column.filled() if hasattr(column, "filled") and mask.any() else column
    return Ids(name, _plain_ids(np.asarray(values)), np.asarray(mask, dtype=bool))


def _take(ids: Ids, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ids.values[rows] and its mask, masked where rows is -1."""
    ok = rows >= 0
    if len(ids.values) == 0:
        return np.zeros(len(rows), dtype=ids.values.dtype), np.ones(len(rows), dtype=bool)
    j = np.where(ok, rows, 0)
    return ids.values[j], ~ok | ids.mask[j]


def write_pairs(path, pairs, ids1: Ids | None = None, ids2: Ids | None = None,
                names: tuple[str, str] = ("catalogue 1", "catalogue 2")) -> None:
    """Write a Match as columns idx1, idx2, sep_arcsec (unit arcsec, in the file's
    metadata) and, when given, id1 / id2 (Parquet, FITS, CSV, ECSV or VOTable)."""
    path = Path(path)
    cols = [("idx1", pairs.idx1, None, f"row of {names[0]} (0-based)", None),
            ("idx2", pairs.idx2, None, f"row of {names[1]} (0-based); -1: no match", None),
            ("sep_arcsec", pairs.sep_arcsec, None, "separation on the sky", "arcsec")]
    for out, ids, rows, name in (("id1", ids1, pairs.idx1, names[0]),
                                 ("id2", ids2, pairs.idx2, names[1])):
        if ids is not None:
            values, mask = _take(ids, np.asarray(rows))
            cols.append((out, values, mask, f"{ids.column} of {name}", None))
    suffix = _suffix(path)
    if suffix in (".parquet", ".pq"):
        _write_parquet(path, cols)
        return
    if suffix not in _ASTROPY_FORMATS:
        raise ValueError(f"{path}: unknown output format {suffix!r}")
    import astropy.units as u
    from astropy.table import Column, MaskedColumn, Table

    table = Table()
    for name, values, mask, description, unit in cols:
        kind = MaskedColumn if mask is not None and mask.any() else Column
        extra = {"mask": mask} if kind is MaskedColumn else {}
        table[name] = kind(values, description=description,
                           unit=u.Unit(unit) if unit else None, **extra)
    table.write(path, format=_ASTROPY_FORMATS[suffix], overwrite=True)


def _write_parquet(path: Path, cols) -> None:
    """pyarrow only: units and descriptions as field metadata, plus the astropy Parquet
    header (``table_meta_yaml``) so that astropy's ``Table.read`` restores them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields, header, schema_meta = [], [], [], {}
    for name, values, mask, description, unit in cols:
        array = pa.array(values, mask=mask if mask is not None and mask.any() else None)
        meta = {"description": description, **({"unit": unit} if unit else {})}
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=meta))
        kind = np.asarray(values).dtype
        header.append({"name": name, **({"unit": unit} if unit else {}),
                       "datatype": "string" if kind.kind == "U" else str(kind),
                       "description": description})
        if kind.kind == "U":  # astropy reads strings to this width
            schema_meta[f"table::len::{name}"] = str(max(kind.itemsize // 4, 1))
    schema_meta["table_meta_yaml"] = "datatype:\n" + "".join(
        f"- {json.dumps(h)}\n" for h in header)
    schema = pa.schema(fields, metadata=schema_meta)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def _epoch(value: str | None, cat: Catalogue, name: str):
    """An epoch given as a number (Julian years) or as a column name."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        if value not in cat.columns:
            raise ValueError(f"{name} {value!r} is neither a number nor a loaded column") from None
        return _column(cat, value, "yr")


class _WithUnit:
    """Values with a unit string, for lamfast.xmatch's unit handling (duck-typed)."""

    def __init__(self, values, unit):
        self.values, self.unit = values, unit

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


def _column(cat: Catalogue, name: str, unit: str):
    """A column in ``unit`` (deg, mas/yr or yr) when it carries a unit, else as stored."""
    from .xmatch._units import _epoch_years, _in_unit

    have = cat.units.get(name)
    values = cat.columns[name]
    if have is None or have.strip() in _PLAIN_UNITS[unit]:
        return values
    label = f"{cat.path.name}: column {name!r}"
    if unit == "yr":
        return _epoch_years(_WithUnit(values, have), label)
    return _in_unit(_WithUnit(values, have), unit, label)


def run(args) -> int:
    from .xmatch import match

    if bool(args.pmra1) != bool(args.pmdec1):
        raise ValueError("--pmra1 and --pmdec1 go together")
    cols1 = [args.ra1, args.dec1]
    if args.pmra1:
        cols1 += [args.pmra1, args.pmdec1]
    if args.epoch1 is not None and not _is_number(args.epoch1):
        cols1.append(args.epoch1)  # per-row epochs
    t1 = read_catalogue(args.table1, cols1, args.id1)
    t2 = read_catalogue(args.table2, [args.ra2, args.dec2], args.id2)
    t0 = time.perf_counter()
    pairs = match(_column(t1, args.ra1, "deg"), _column(t1, args.dec1, "deg"),
                  _column(t2, args.ra2, "deg"), _column(t2, args.dec2, "deg"), args.radius,
                  mode=args.mode, k=args.k,
                  pmra1=_column(t1, args.pmra1, "mas/yr") if args.pmra1 else None,
                  pmdec1=_column(t1, args.pmdec1, "mas/yr") if args.pmra1 else None,
                  epoch1=_epoch(args.epoch1, t1, "--epoch1"),
                  epoch2=args.epoch2,
                  threads=args.threads)
    seconds = time.perf_counter() - t0
    write_pairs(args.out, pairs, t1.ids, t2.ids,
                names=(Path(args.table1).name, Path(args.table2).name))
    matched = int((pairs.idx2 >= 0).sum())
    ids = ", ".join(f"{out} = {c.ids.column}" for out, c in (("id1", t1), ("id2", t2)) if c.ids)
    print(f"{args.mode}: {matched} pairs from {len(t1.columns[args.ra1])} x "
          f"{len(t2.columns[args.ra2])} rows within {args.radius}\" in {seconds:.3f} s -> "
          f"{args.out}" + (f" ({ids})" if ids else ""))
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def add_parser(sub) -> None:
    p = sub.add_parser("xmatch", help="cross-match two tables on the sky",
                       description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("table1", help="catalogue 1 (Parquet, FITS, CSV, ECSV or VOTable)")
    p.add_argument("table2", help="catalogue 2, the one indexed")
    p.add_argument("--radius", type=float, required=True, help="match radius (arcsec)")
    p.add_argument("--mode", choices=("nearest", "all", "best"), default="nearest")
    p.add_argument("--k", type=int, default=1, help="neighbours per row in nearest mode")
    p.add_argument("--out", required=True,
                   help="output table (.parquet, .fits, .csv, .ecsv, .vot): idx1, idx2, "
                        "sep_arcsec (unit arcsec), id1, id2")
    p.add_argument("--ra1", default="ra", help="RA column of table 1 (degrees unless it "
                                               "carries a unit)")
    p.add_argument("--dec1", default="dec", help="Dec column of table 1 (degrees)")
    p.add_argument("--ra2", default="ra", help="RA column of table 2 (degrees)")
    p.add_argument("--dec2", default="dec", help="Dec column of table 2 (degrees)")
    p.add_argument("--id1", help=f"id column of table 1, written as id1 (default: "
                                 f"{DEFAULT_ID} when the table has one)")
    p.add_argument("--id2", help=f"id column of table 2, written as id2 (default: "
                                 f"{DEFAULT_ID} when the table has one)")
    p.add_argument("--pmra1", help="proper motion column in RA*cos(dec) of table 1 (mas/yr)")
    p.add_argument("--pmdec1", help="proper motion column in Dec of table 1 (mas/yr)")
    p.add_argument("--epoch1", help="epoch of table 1 (Julian years) or a column name")
    p.add_argument("--epoch2", type=float, help="epoch of table 2 (Julian years)")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)
