"""Catalog <-> Parquet (pyarrow), exact round trip.

Layout. ``source_id`` int64; token columns as float32 ``<token>`` with ``<token>_err``;
with ``layout="lists"`` (default) the XP tokens bp0..bp{k-1} / rp0..rp{k-1} become
fixed-size list columns ``bp_coefficients`` / ``bp_coefficient_errors`` (float32[k]);
``extra`` columns keep their names. The catalogue's column order, ``meta`` and extra
dtypes are stored as JSON in the schema metadata (key ``lamfast``). Files written
elsewhere are read by the same naming rules.

Units of the XP coefficients. The Gaia archive's XP_CONTINUOUS exports use the same
column names for its e-/s values, so the units are declared, never guessed from names:
the schema (key-value) metadata key ``lamfast.xp_units`` is ``"gnorm"`` (divided by the G
flux in e-/s; every file :func:`write_parquet` writes) or ``"flux"`` (e-/s). A file
without it is taken as the archive's e-/s (one with the ``lamfast`` key but without
``lamfast.xp_units``, from an earlier lamfast, as gnorm; one with neither key as
``default_xp_units`` where the caller knows better, e.g. a HATS catalogue's
``lamfast_xp_units`` for partitions rewritten by a tool that drops key-value metadata) and
gnormed on reading with each star's G: a ``phot_g_mean_mag`` column beside the coefficients or ``photometry=``; where
``{bp,rp}_n_relevant_bases`` columns exist, coefficients beyond them are blanked, as
:func:`lamfast.io.read_xp_continuous` does. Values contradicting the units give a
ValueError naming the file and column (:mod:`lamfast.io.xp_units`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .catalog import Catalog, join_rows
from .photometry import g_flux
from .xp_units import DESCRIPTION, XP_UNITS_KEY, check_units_name, check_xp_scale

METADATA_KEY = b"lamfast"
UNITS_KEY = XP_UNITS_KEY.encode()
G_COLUMN = "phot_g_mean_mag"
_LIST_SUFFIX, _LIST_ERR_SUFFIX = "_coefficients", "_coefficient_errors"
_XP_PREFIXES = ("bp", "rp")
_XP_TOKEN = re.compile("(bp|rp)[0-9]+")


def _xp_runs(columns: list[str]) -> dict[str, list[int]]:
    """prefix -> catalogue indices of prefix0..prefix{k-1}, where those appear in order."""
    runs = {}
    for prefix in _XP_PREFIXES:
        idx = [i for i, c in enumerate(columns) if re.fullmatch(f"{prefix}[0-9]+", c)]
        if idx and [columns[i] for i in idx] == [f"{prefix}{k}" for k in range(len(idx))]:
            runs[prefix] = idx
    return runs


def write_parquet(catalog: Catalog, path: str | Path, *, layout: str = "lists",
                  compression: str = "zstd", row_group_size: int = 65536) -> None:
    """Write ``catalog`` to ``path`` (see the module doc for the layout); XP coefficients
    (gnorm, as in every Catalog) are declared ``lamfast.xp_units = "gnorm"``.

    Raises ValueError if ``meta`` is not JSON-serialisable, names collide (an extra
    column named like a token or ``<token>_err``) or bp0/rp0 are not on the gnorm scale
    (e-/s put in a Catalog without :func:`lamfast.io.xp_catalog`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout not in ("lists", "columns"):
        raise ValueError(f"layout must be 'lists' or 'columns', got {layout!r}")
    for token in ("bp0", "rp0"):
        if token in catalog.columns:
            check_xp_scale(catalog.column(token), "gnorm", f"writing {path}: catalogue column {token!r}",
                           token, "a Catalog holds gnorm coefficients and write_parquet declares them so",
                           "Convert the archive's e-/s with lamfast.io.xp_catalog (divides by the G flux).")
    runs = _xp_runs(catalog.columns) if layout == "lists" else {}
    in_runs = {i for idx in runs.values() for i in idx}
    arrays = {"source_id": pa.array(catalog.source_id, pa.int64())}
    for prefix, idx in runs.items():
        k = len(idx)
        for suffix, table in ((_LIST_SUFFIX, catalog.values), (_LIST_ERR_SUFFIX, catalog.errors)):
            flat = pa.array(np.ascontiguousarray(table[:, idx]).ravel(), pa.float32())
            arrays[prefix + suffix] = pa.FixedSizeListArray.from_arrays(flat, k)
    for i, c in enumerate(catalog.columns):
        if i not in in_runs:
            arrays[c] = pa.array(catalog.values[:, i], pa.float32())
            arrays[c + "_err"] = pa.array(catalog.errors[:, i], pa.float32())
    extra_dtypes = {}
    for name, a in catalog.extra.items():
        if name in arrays:
            raise ValueError(f"extra column {name!r} collides with a token column")
        a = np.asarray(a)
        extra_dtypes[name] = a.dtype.str
        arrays[name] = pa.array(a.astype(str) if a.dtype.kind == "U" else a)
    try:
        info = json.dumps({"version": 1, "columns": catalog.columns, "meta": catalog.meta,
                           "extra": extra_dtypes, "layout": layout})
    except TypeError as e:
        raise ValueError(f"Catalog.meta must be JSON-serialisable to go to Parquet ({e})") from None
    metadata = {METADATA_KEY: info.encode()}
    if any(_XP_TOKEN.fullmatch(c) for c in catalog.columns):
        metadata[UNITS_KEY] = b"gnorm"
    table = pa.table(arrays).replace_schema_metadata(metadata)
    # no dictionary pages: star values (coefficients, ids) hardly repeat, and building the
    # dictionary was ~9x the rest of the write (benchmarks/bench_convert.py)
    pq.write_table(table, path, compression=compression, row_group_size=row_group_size, use_dictionary=False)


def read_parquet(path: str | Path, *, columns: list[str] | None = None,
                 row_groups: list[int] | None = None, photometry: Catalog | None = None,
                 xp_units: str | None = None, default_xp_units: str | None = None) -> Catalog:
    """Read a Parquet file written by :func:`write_parquet` (or following its naming:
    ``source_id``; float columns named by vocabulary tokens with ``_err`` twins;
    ``bp_coefficients``-style fixed-size lists). Other columns go to ``extra``.

    ``columns``: only these token columns (default: all).
    ``row_groups``: only these row groups, in this order (default: the whole file); the
    unit of chunked reading (``pyarrow.parquet.ParquetFile(path).metadata`` lists them).
    ``photometry``: a Catalog (e.g. from :func:`lamfast.io.gaia_photometry`) joined by
    source_id, or a callable giving the rows' photometry (see :func:`table_catalog`): its G (``extra["phot_g_mean_mag"]``) gnorms e-/s coefficients where it
    has the star (else the file's own ``phot_g_mean_mag``), its tokens are appended.
    ``xp_units``: "gnorm" or "flux" overrides the file's ``lamfast.xp_units``.
    ``default_xp_units``: "gnorm" or "flux", the units of a file that declares none (no
    ``lamfast.xp_units`` and no ``lamfast`` key); None: e-/s (see :func:`parquet_xp_units`).

    The XP coefficients come back in gnorm units whatever the file holds (see the
    module doc); a star without G then gets NaN coefficients (missing, never mis-scaled).

    A cell that is not a number gives a ValueError naming the file, the column and the
    first such row (a row of the file, also when reading row groups); so do e-/s
    coefficients without G, and values whose scale contradicts the units.
    """
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if row_groups is None:
        table = pq.read_table(path)
        row_of = int  # rows of the table are the rows of the file
    else:
        file = pq.ParquetFile(path)
        bad = [g for g in row_groups if not 0 <= g < file.num_row_groups]
        if bad:
            raise ValueError(f"{path}: row group {bad[0]} outside 0..{file.num_row_groups - 1}")
        table = file.read_row_groups(list(row_groups))
        row_of = functools.partial(_file_row, file.metadata, list(row_groups))
    return table_catalog(table, path, row_of=row_of, columns=columns, photometry=photometry, xp_units=xp_units,
                         default_xp_units=default_xp_units)


def table_catalog(table, path, *, row_of=int, columns: list[str] | None = None,
                  photometry: Catalog | Callable[[np.ndarray], Catalog] | None = None,
                  xp_units: str | None = None, default_xp_units: str | None = None) -> Catalog:
    """A pyarrow Table in lamfast's Parquet naming as a Catalog: :func:`read_parquet` once
    the rows are read (``path`` names the table in errors, ``row_of`` maps a table row to
    the row to name there). ``photometry`` as read_parquet takes it, or a callable that
    gets the rows' source_id (int64 [N]) and returns their photometry Catalog row by row
    (:meth:`lamfast.io.photometry_join.PhotometryJoin.lookup`: no second join); ``xp_units``
    and ``default_xp_units`` as read_parquet takes them."""
    units, why = parquet_xp_units(table.schema, path, xp_units, default_xp_units)
    xp_dtype = np.float64 if units == "flux" else np.float32  # e-/s divided in float64, as xp_catalog
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    info = json.loads(raw) if raw else {}
    names = table.column_names
    if "source_id" not in names:
        raise ValueError(f"{path}: no 'source_id' column")
    n = table.num_rows
    tokens: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    origin: dict[str, str] = {}   # XP token read -> the file's column holding it
    used = {"source_id"}
    for prefix in _XP_PREFIXES:
        name = prefix + _LIST_SUFFIX
        if name in names:
            values = _fixed_list(table[name], path, name, row_of, xp_dtype)
            err_name = prefix + _LIST_ERR_SUFFIX
            errors = (_fixed_list(table[err_name], path, err_name, row_of, xp_dtype) if err_name in names
                      else np.full_like(values, np.nan))
            if errors.shape != values.shape:
                raise ValueError(f"{path}: {err_name} has {errors.shape[1]} values per row, "
                                 f"{name} has {values.shape[1]}")
            for k in range(values.shape[1]):
                tokens[f"{prefix}{k}"] = (values[:, k], errors[:, k])
                origin[f"{prefix}{k}"] = name
            used |= {name, err_name}
    token_names = parquet_token_columns(table.schema)
    for c in token_names:
        if c in tokens:
            continue
        if c not in names:
            raise ValueError(f"{path}: token column {c!r} listed in the metadata is missing")
        dtype = xp_dtype if _XP_TOKEN.fullmatch(c) else np.float32
        errors = (_numbers(_cells(table[c + "_err"]), path, c + "_err", row_of, dtype)
                  if c + "_err" in names else np.full(n, np.nan, dtype))
        tokens[c] = (_numbers(_cells(table[c]), path, c, row_of, dtype), errors)
        if _XP_TOKEN.fullmatch(c):
            origin[c] = c
        used |= {c, c + "_err"}
    order = info.get("columns") or list(tokens)
    dtypes = info.get("extra", {})
    extra = {}
    for name in names:
        if name in used:
            continue
        a = table[name].to_numpy(zero_copy_only=False)
        if name in dtypes:
            a = a.astype(np.dtype(dtypes[name]))
        extra[name] = a
    source_id = table["source_id"].to_numpy().astype(np.int64)
    meta = info.get("meta", {"path": str(path)})
    joined = None
    if photometry is not None:
        joined = photometry(source_id) if callable(photometry) else join_rows(photometry, source_id)
        clash = [c for c in joined.columns if c in tokens]
        if clash:
            raise ValueError(f"{path}: photometry= gives token column(s) {clash} the file already has")
        tokens.update({c: (joined.values[:, j], joined.errors[:, j]) for j, c in enumerate(joined.columns)})
        order = order + joined.columns
        meta = {**meta, "photometry": joined.meta}
    _check_scale(tokens, origin, units, why, path)
    # e-/s -> gnorm for the XP tokens returned (reading only teff needs no G)
    xp = {c: origin[c] for c in (origin if columns is None else columns) if c in origin}
    if xp and units == "flux":
        g = _g_mag(table, joined, path, row_of, why, sorted(set(xp.values())))
        _to_gnorm(tokens, list(xp), g, extra)
        _check_scale(tokens, xp, "gnorm", f"they were divided by the G flux from {G_COLUMN}", path,
                     fix=f"{G_COLUMN} must be each star's Gaia G magnitude [mag] (a flux or another band gives this).")
        extra[G_COLUMN] = g
        meta = {**meta, "xp_units": "gnorm", "xp_units_in_file": "flux"}
    if joined is not None:
        extra.update({k: a for k, a in joined.extra.items() if k not in extra})
    if columns is not None:
        unknown = [c for c in columns if c not in tokens]
        if unknown:
            raise ValueError(f"{path}: no token column(s) {unknown}")
        order = list(columns)
    values = np.stack([tokens[c][0] for c in order], axis=1) if order else np.zeros((n, 0), np.float32)
    errors = np.stack([tokens[c][1] for c in order], axis=1) if order else np.zeros((n, 0), np.float32)
    return Catalog(order, np.ascontiguousarray(values, np.float32),
                   np.ascontiguousarray(errors, np.float32), source_id, meta, extra)


def parquet_xp_units(schema, path, override: str | None = None,
                     default: str | None = None) -> tuple[str, str]:
    """("gnorm" or "flux", why) of the XP coefficients of a Parquet file, from its pyarrow
    ``schema`` (``pyarrow.parquet.read_schema(path)``: no data is read).

    The first that applies: ``override``; the file's ``lamfast.xp_units``; gnorm for a
    file of an earlier lamfast (the ``lamfast`` key alone); ``default``, the units its
    source declares for files without either key (a HATS catalogue's
    ``lamfast_xp_units``); the archive's e-/s. A file's own key wins over ``default``,
    silently, even where they differ: it is the more local declaration (and the scale
    check still guards the values).
    """
    where = str(path)
    if override is not None:
        return check_units_name(override, where), f"xp_units={override!r} was given"
    metadata = schema.metadata or {}
    if UNITS_KEY in metadata:
        units = check_units_name(metadata[UNITS_KEY], f"{where}: schema metadata")
        return units, f"the file's schema metadata declares {XP_UNITS_KEY}={units!r}"
    if METADATA_KEY in metadata:
        return "gnorm", (f"the file was written by an earlier lamfast (schema metadata key 'lamfast' "
                         f"without {XP_UNITS_KEY}), whose Parquet files hold gnorm")
    if default is not None:
        units = check_units_name(default, f"{where}: default_xp_units")
        return units, (f"the file has no {XP_UNITS_KEY} schema metadata, and {units!r} was given for "
                       "such files (default_xp_units; in lamfast label, the lamfast_xp_units of the "
                       "file's HATS catalogue, in its hats.properties)")
    return "flux", (f"the file has no {XP_UNITS_KEY} schema metadata, so its coefficients are taken "
                    "as the Gaia archive's e-/s")


def parquet_token_columns(schema) -> list[str]:
    """The scalar-layout token columns :func:`read_parquet` reads from a file with this
    pyarrow ``schema`` (no data read): its lamfast metadata's, else the vocabulary tokens
    among the column names (the XP list columns not included)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return (json.loads(raw) if raw else {}).get("columns") or _scalar_tokens(schema.names)


def check_parquet_xp_units(path: str | Path, *, photometry: bool = False,
                           default_xp_units: str | None = None) -> str:
    """The units of a Parquet file's XP coefficients from its schema alone (cheap: for a
    job to fail before computing; ``default_xp_units`` as read_parquet takes it);
    ValueError if they are e-/s and neither the file has a phot_g_mean_mag column nor
    ``photometry`` (G from elsewhere) is promised."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    units, why = parquet_xp_units(schema, path, default=default_xp_units)
    xp = [c for c in schema.names if c in ("bp_coefficients", "rp_coefficients") or _XP_TOKEN.fullmatch(c)]
    if xp and units == "flux" and G_COLUMN not in schema.names and not photometry:
        raise ValueError(_no_g_message(path, why, xp, photometry=False))
    return units


def _check_scale(tokens, origin, units, why, path, fix=None) -> None:
    """ValueError if bp0 or rp0 of ``tokens`` contradict ``units`` (see lamfast.io.xp_units)."""
    if fix is None and units == "gnorm":
        fix = (f"If they are e-/s, declare {XP_UNITS_KEY}='flux' in the schema metadata (in Python: "
               f"read_parquet(..., xp_units='flux')) and give each star's G ({G_COLUMN} column).")
    elif fix is None:
        fix = (f"If they are gnorm already, write the file with lamfast.io.write_parquet, or add "
               f"{XP_UNITS_KEY}='gnorm' to its schema metadata (pyarrow: table.replace_schema_metadata("
               f"{{**(table.schema.metadata or {{}}), b'{XP_UNITS_KEY}': b'gnorm'}}) before "
               f"pq.write_table; in Python: read_parquet(..., xp_units='gnorm')).")
    for token in ("bp0", "rp0"):
        if token in origin:
            check_xp_scale(tokens[token][0], units, f"{path}: column {origin[token]!r}", token, why, fix)


def _g_mag(table, joined, path, row_of, why, xp_columns: list[str]) -> np.ndarray:
    """float64 [N] G [mag] per row: photometry's where it has a value, else the file's
    (``why``, ``xp_columns``: the units and the columns to gnorm, for the error)."""
    own = G_COLUMN in table.column_names
    g = (_numbers(_cells(table[G_COLUMN]), path, G_COLUMN, row_of, np.float64) if own
         else np.full(table.num_rows, np.nan))
    if joined is not None and G_COLUMN in joined.extra:
        theirs = np.asarray(joined.extra[G_COLUMN], dtype=np.float64)
        g = np.where(np.isnan(theirs), g, theirs)
    elif not own:
        raise ValueError(_no_g_message(path, why, xp_columns, photometry=joined is not None))
    return g


def _no_g_message(path, why, columns, photometry: bool) -> str:
    where = "the file has no 'phot_g_mean_mag' column" + (" and photometry= has no G" if photometry else "")
    names = ", ".join(columns[:4]) + (f", ... ({len(columns)} columns)" if len(columns) > 4 else "")
    return (f"{path}: the XP coefficients ({names}) are in {DESCRIPTION['flux']} ({why}); "
            f"gnorming them needs each star's G magnitude, but {where}. Add a {G_COLUMN} column "
            f"(Gaia G [mag]) beside the coefficients, or in Python pass read_parquet(path, photometry="
            f"gaia_photometry(table)) (a table with source_id and {G_COLUMN}). If "
            f"they are gnorm already, declare {XP_UNITS_KEY}='gnorm' in the schema metadata "
            "(lamfast.io.write_parquet does).")


def _to_gnorm(tokens, xp: list[str], g_mag: np.ndarray, extra: dict) -> None:
    """e-/s -> gnorm in place (float32), as xp_catalog: blank beyond {bp,rp}_n_relevant_bases
    where the file has them (the archive readers' default), then divide by the G flux."""
    with np.errstate(over="ignore", divide="ignore"):  # a G that is no magnitude: checked next
        scale = 1.0 / g_flux(g_mag)  # NaN G -> NaN coefficients
    for c in xp:
        values, errors = tokens[c]
        n_rel = extra.get(f"{c[:2]}_n_relevant_bases")
        if n_rel is not None:
            n_rel = np.asarray(n_rel, dtype=np.float64)  # nulls -> NaN: unknown, kept
            irrelevant = (int(c[2:]) >= n_rel) & (n_rel >= 0)
            values, errors = np.where(irrelevant, np.nan, values), np.where(irrelevant, np.nan, errors)
        with np.errstate(over="ignore", invalid="ignore"):
            tokens[c] = ((values * scale).astype(np.float32),
                         (errors.astype(np.float64) * scale).astype(np.float32))


def _cells(column) -> np.ndarray:
    """[N] cells of a column (numbers, or text of numbers; null: None or NaN)."""
    return column.to_numpy(zero_copy_only=False)


def _numbers(values: np.ndarray, path, name: str, row_of, dtype=np.float32) -> np.ndarray:
    """``values`` as ``dtype`` (float32 or float64); else ValueError naming the file, the
    column and the first bad row (``row_of``: index into ``values`` -> row of the file)."""
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError):  # text cells (or text with nulls): find the first bad one
        pass
    out = np.empty(len(values), dtype)
    for i, v in enumerate(values):
        try:
            out[i] = np.nan if v is None else float(v)
        except (ValueError, TypeError):
            raise ValueError(f"{path}: row {row_of(i)}, column {name!r}: {v!r} is not a number") from None
    return out


def _file_row(meta, row_groups: list[int], i: int) -> int:
    """Row ``i`` of the concatenated ``row_groups`` as a row of the file (``meta``: its metadata)."""
    starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    for g in row_groups:
        if i < starts[g + 1] - starts[g]:
            return int(starts[g] + i)
        i -= int(starts[g + 1] - starts[g])
    raise IndexError(i)


def _fixed_list(column, path, name, row_of, dtype=np.float32) -> np.ndarray:
    """``dtype`` [N, k] from a (fixed-size) list column: every row has k values, or none
    (a null or empty list: a missing band, as in the archive's exports) -> NaN."""
    import pyarrow as pa

    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if pa.types.is_null(column.type):   # no value in any row (pandas' empty object column): no length to read
        return np.full((len(column), 0), np.nan, dtype)
    if pa.types.is_fixed_size_list(column.type):
        k = column.type.list_size
        full = ~column.is_null().to_numpy(zero_copy_only=False)
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        full = lengths > 0
        k = int(lengths[full][0]) if full.any() else 0
        if np.any(full & (lengths != k)):
            row = int(np.flatnonzero(full & (lengths != k))[0])
            raise ValueError(f"{path}: row {row_of(row)}, column {name!r}: {lengths[row]} values, "
                             f"expected {k}")
    else:
        raise ValueError(f"{path}: column {name!r} is {column.type}, not a list column")
    rows = np.flatnonzero(full)
    flat = column.flatten().to_numpy(zero_copy_only=False)   # the values of full rows only
    out = np.full((len(column), k), np.nan, dtype)
    out[rows] = _numbers(flat, path, name, lambda j: row_of(int(rows[j // k])), dtype).reshape(len(rows), k)
    return out


def _scalar_tokens(names: list[str]) -> list[str]:
    """Vocabulary tokens among the column names (files without lamfast metadata)."""
    from ..vocab import PAPER_TOKENS

    return [c for c in names if c in PAPER_TOKENS]
