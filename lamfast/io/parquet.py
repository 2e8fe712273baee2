"""Catalog <-> Parquet (pyarrow), exact round trip.

Layout. ``source_id`` int64; token columns as float32 ``<token>`` with ``<token>_err``;
with ``layout="lists"`` (default) the XP tokens bp0..bp{k-1} / rp0..rp{k-1} become
fixed-size list columns ``bp_coefficients`` / ``bp_coefficient_errors`` (float32[k],
gnorm units, as in the catalogue); ``extra`` columns keep their names. The catalogue's
column order, ``meta`` and extra dtypes are stored as JSON in the schema metadata
(key ``lamfast``). Files written elsewhere are read by the same naming rules.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from .catalog import Catalog

METADATA_KEY = b"lamfast"
_LIST_SUFFIX, _LIST_ERR_SUFFIX = "_coefficients", "_coefficient_errors"
_XP_PREFIXES = ("bp", "rp")


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
    """Write ``catalog`` to ``path`` (see the module doc for the layout).

    Raises ValueError if ``meta`` is not JSON-serialisable or names collide (an extra
    column named like a token or ``<token>_err``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout not in ("lists", "columns"):
        raise ValueError(f"layout must be 'lists' or 'columns', got {layout!r}")
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
    table = pa.table(arrays).replace_schema_metadata({METADATA_KEY: info.encode()})
    pq.write_table(table, path, compression=compression, row_group_size=row_group_size)


def read_parquet(path: str | Path, *, columns: list[str] | None = None,
                 row_groups: list[int] | None = None) -> Catalog:
    """Read a Parquet file written by :func:`write_parquet` (or following its naming:
    ``source_id``; float columns named by vocabulary tokens with ``_err`` twins;
    ``bp_coefficients``-style fixed-size lists). Other columns go to ``extra``.

    ``columns``: only these token columns (default: all).
    ``row_groups``: only these row groups, in this order (default: the whole file); the
    unit of chunked reading (``pyarrow.parquet.ParquetFile(path).metadata`` lists them).

    A cell that is not a number gives a ValueError naming the file, the column and the
    first such row (a row of the file, also when reading row groups).
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
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    info = json.loads(raw) if raw else {}
    names = table.column_names
    if "source_id" not in names:
        raise ValueError(f"{path}: no 'source_id' column")
    n = table.num_rows
    tokens: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    used = {"source_id"}
    for prefix in _XP_PREFIXES:
        name = prefix + _LIST_SUFFIX
        if name in names:
            values = _fixed_list(table[name], path, name, row_of)
            err_name = prefix + _LIST_ERR_SUFFIX
            errors = (_fixed_list(table[err_name], path, err_name, row_of) if err_name in names
                      else np.full_like(values, np.nan))
            if errors.shape != values.shape:
                raise ValueError(f"{path}: {err_name} has {errors.shape[1]} values per row, "
                                 f"{name} has {values.shape[1]}")
            for k in range(values.shape[1]):
                tokens[f"{prefix}{k}"] = (values[:, k], errors[:, k])
            used |= {name, err_name}
    token_names = info.get("columns") or _scalar_tokens(names)
    for c in token_names:
        if c in tokens:
            continue
        if c not in names:
            raise ValueError(f"{path}: token column {c!r} listed in the metadata is missing")
        errors = (_float32(table[c + "_err"], path, c + "_err", row_of) if c + "_err" in names
                  else np.full(n, np.nan, np.float32))
        tokens[c] = (_float32(table[c], path, c, row_of), errors)
        used |= {c, c + "_err"}
    order = info.get("columns") or list(tokens)
    if columns is not None:
        unknown = [c for c in columns if c not in tokens]
        if unknown:
            raise ValueError(f"{path}: no token column(s) {unknown}")
        order = list(columns)
    values = np.stack([tokens[c][0] for c in order], axis=1) if order else np.zeros((n, 0), np.float32)
    errors = np.stack([tokens[c][1] for c in order], axis=1) if order else np.zeros((n, 0), np.float32)
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
    return Catalog(order, np.ascontiguousarray(values, np.float32),
                   np.ascontiguousarray(errors, np.float32), source_id, meta, extra)


def _float32(column, path, name: str, row_of) -> np.ndarray:
    """float32 [N] of a column (numbers, or text of numbers; null: NaN)."""
    return _numbers(column.to_numpy(zero_copy_only=False), path, name, row_of)


def _numbers(values: np.ndarray, path, name: str, row_of) -> np.ndarray:
    """float32 of ``values``; else ValueError naming the file, the column and the first bad
    row (``row_of``: index into ``values`` -> row of the file)."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError):  # text cells (or text with nulls): find the first bad one
        pass
    out = np.empty(len(values), np.float32)
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


def _fixed_list(column, path, name, row_of) -> np.ndarray:
    """float32 [N, k] from a (fixed-size) list column; every row must have k values."""
    import pyarrow as pa

    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if pa.types.is_fixed_size_list(column.type):
        k = column.type.list_size
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        k = int(lengths[0]) if len(lengths) else 0
        if np.any(lengths != k):
            row = int(np.flatnonzero(lengths != k)[0])
            raise ValueError(f"{path}: row {row}, column {name!r}: {lengths[row]} values, "
                             f"expected {k}")
    else:
        raise ValueError(f"{path}: column {name!r} is {column.type}, not a list column")
    if column.null_count:
        raise ValueError(f"{path}: column {name!r} has null rows (use NaN for missing)")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return _numbers(flat, path, name, lambda j: row_of(j // k)).reshape(len(column), k)


def _scalar_tokens(names: list[str]) -> list[str]:
    """Vocabulary tokens among the column names (files without lamfast metadata)."""
    from ..vocab import PAPER_TOKENS

    return [c for c in names if c in PAPER_TOKENS]
