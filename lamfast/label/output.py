"""The output of a labelling job: merging the parts into one file, and reading it back.

**Output** (Parquet, HDF5, or a HATS catalogue folder partitioned as a HATS input is:
:mod:`lamfast.label.hats_output`; written atomically). One row per input row, in input order:
``source_id`` int64, ``input_file`` int32 (index into the metadata's ``inputs``),
``input_row`` int64, ``<name>`` and ``<name>_error`` float32 per requested token (physical
units, :func:`lamfast.units.unit_of`), ``no_input`` bool (the star has no usable input
token: its predictions are NaN; it is never dropped), and where an input is a Gaia XP
file or a Parquet file in e-/s, ``no_g`` bool (the star has no G: its XP coefficients
could not be gnormed and were missing; it was labelled from its other inputs). Metadata (JSON; Parquet schema key /
HDF5 file attribute ``lamfast_label``): model name and sha256 of its weights, lamfast
version, request, units, input columns, inputs, precision, devices used, the plan and its
digest, ``photometry`` (each photometry file and the stars joined from it; empty without)
and ``no_g_rows`` (Gaia XP rows without G, whose coefficients count as missing).

Both files are astropy tables: ``astropy.table.Table.read(OUT)`` gives the columns with
their units and descriptions, and the metadata but the plan as ``meta["lamfast_label"]``.
Parquet carries astropy's ``table_meta_yaml`` header in its schema metadata; HDF5 is one
compound dataset ``labels`` (astropy's ``write_table_hdf5`` layout with ``serialize_meta``:
the header in ``labels.__table_column_meta__``), gzip-compressed with the shuffle filter in
chunks of about :data:`HDF5_CHUNK_BYTES`, never more rows than the file has.

:func:`merge` (``lamfast label --merge OUT``) first checks that every unit of the plan has
its part in ``OUT.parts`` (intact: the sha256 recorded when it was written, :mod:`.parts`;
and the unit it claims to be), then writes
``OUT`` in plan order, :data:`WRITE_ROWS` rows at a time (bounded memory).
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._version import __version__
from ..atomic import atomic_path
from ..units import unit_of
from .lock import output_lock
from .parts import part_problem, remove_part, write_error
from .plan import PLAN_FILE, LabelPlan, part_path, parts_dir, read_plan
from .summary import LabelSummary
from .table import (FLAG_COLUMN, METADATA_KEY, NO_G_COLUMN, arrow_fields, column_dtypes, output_columns,
                    part_columns, unit_and_description)

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5",
                  ".hats": "hats", "": "hats"}   # HATS: a catalogue folder (lamfast.label.hats_output)
WRITE_ROWS = 65536                    # rows per Parquet row group / HDF5 write of the output
HDF5_TABLE = "labels"                 # the compound dataset of an HDF5 output
HDF5_CHUNK_BYTES = 1 << 20            # HDF5 chunk size to aim at (fewer rows if the file is smaller)
# Libraries that writing a format needs (module, pip package); astropy writes the headers.
_WRITERS = {"parquet": (("pyarrow.parquet", "pyarrow"), ("astropy.table", "astropy")),
            "hdf5": (("h5py", "h5py"), ("astropy.table", "astropy")),
            "hats": (("hats", "lamfast[hats]"), ("pyarrow.parquet", "pyarrow"))}


def merge(output: str | os.PathLike, *, keep_parts: bool = False, overwrite: bool = False) -> LabelSummary:
    """Check that every work unit in ``OUT.parts`` is done exactly once, then write ``output``
    (atomically, in plan order) and remove ``OUT.parts`` (unless ``keep_parts``).

    Raises FileExistsError if ``output`` exists and not ``overwrite``, and ValueError
    naming the missing units (or a part that does not match its unit), before anything is
    written.
    """
    output = Path(output)
    check_writer(output)
    with output_lock(output):      # re-entrant: a labelling job that merges already holds it
        return _merge(output, keep_parts, overwrite)


def _merge(output: Path, keep_parts: bool, overwrite: bool) -> LabelSummary:
    t0 = time.perf_counter()
    fmt = check_writer(output)
    check_overwrite(output, overwrite)
    parts = parts_dir(output)
    plan = read_plan(parts)
    check_output_plan(output, plan)
    check_coverage(plan, parts)
    rows = flagged = no_g = 0
    joined = np.zeros(len(plan.photometry), np.int64)
    devices: set[str] = set()
    with_no_g = "xp" in plan.formats   # and any e-/s Parquet input: its parts have no_g
    for i in range(len(plan.units)):  # first pass: check every part (small arrays only)
        n, f, device, g, j = _check_part(parts, i, plan)
        rows, flagged, no_g, joined = rows + n, flagged + f, no_g + (g or 0), joined + j
        with_no_g |= g is not None
        devices.add(device)
    metadata = _output_metadata(plan, rows, flagged, sorted(devices), no_g, joined, with_no_g)
    try:
        if fmt == "hats":
            from .hats_output import write_hats_output

            write_hats_output(output, plan, parts, metadata)
        else:
            _write_file(output, fmt, plan, parts, metadata, rows)
    except OSError as e:
        raise write_error(output, e, f"rerun with --resume (resume=True) or lamfast label --merge OUT; "
                                     f"the parts in {parts} are kept") from e
    if not keep_parts:
        _remove_parts(parts, len(plan.units))
    summary = LabelSummary(output, units_total=len(plan.units), units_skipped=len(plan.units),
                           output_rows=rows, output_flagged=flagged, output_no_g=no_g)
    summary.wall_s = summary.timings["merge"] = time.perf_counter() - t0
    return summary


def _write_file(output: Path, fmt: str, plan: LabelPlan, parts: Path, metadata: dict, rows: int) -> None:
    """Write the parts of ``plan`` in order into the Parquet or HDF5 file ``output``, atomically."""
    with atomic_path(output) as tmp:   # a failed write (a full disk) leaves no partial OUT
        writer = (_ParquetWriter if fmt == "parquet" else _HDF5Writer)(str(tmp), plan.request, metadata, rows)
        try:
            for i, unit in enumerate(plan.units):
                with np.load(part_path(parts, i)) as z:
                    writer.append({k: z[k] for k in z.files}, unit.file)
        finally:
            writer.close()


def check_coverage(plan: LabelPlan, parts: Path) -> None:
    """Every unit of the plan has its part, and nothing else is there; else ValueError."""
    expected = {part_path(parts, i).name for i in range(len(plan.units))}
    present = {p.name for p in parts.glob("unit-*.npz")}
    missing = sorted(int(name[5:11]) for name in expected - present)
    if missing:
        listed = "; ".join(plan.describe(i) for i in missing[:5])
        raise ValueError(f"{parts}: {len(missing)} of {len(plan.units)} work units have no result yet "
                         f"(e.g. {listed}); run the missing shards (or rerun with --resume) before merging")
    stale = sorted(present - expected)
    if stale:
        raise ValueError(f"{parts}: parts that are not in the plan: {stale[:5]}; the folder is corrupt")


def output_format(output: Path) -> str:
    """``"parquet"``, ``"hdf5"`` or ``"hats"`` (a catalogue folder: no suffix, or ``.hats``)
    from the output's name (ValueError for any other suffix)."""
    fmt = OUTPUT_FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise ValueError(f"output {output}: name must end in one of "
                         f"{sorted(k for k in OUTPUT_FORMATS if k)}, or have no suffix (a HATS catalogue folder)")
    return fmt


def check_output_plan(output: Path, plan: LabelPlan) -> None:
    """ValueError before computing if ``plan``'s inputs cannot make ``output`` (a HATS
    output needs one HATS catalogue as the inputs, :func:`lamfast.label.hats_output.check_hats_plan`)."""
    if output_format(output) == "hats":
        from .hats_output import check_hats_plan

        check_hats_plan(output, plan)


def check_writer(output: Path) -> str:
    """The output's format (:func:`output_format`), once the libraries that write it import
    (ModuleNotFoundError saying what to install otherwise): a job fails before computing."""
    fmt = output_format(output)
    for module, package in _WRITERS[fmt]:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ModuleNotFoundError(f"writing {output.name} needs {package}, which does not import "
                                      f"({e}): pip install {package}") from e
    return fmt


def check_overwrite(output: Path, overwrite: bool) -> None:
    """FileExistsError if ``output`` exists and may not be replaced (a HATS output: also
    with ``overwrite`` if it is not a labels catalogue lamfast wrote)."""
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite (overwrite=True) to replace it, or "
                              "--resume (resume=True) to keep it if it was made with the same plan")
    if output.exists() and output_format(output) == "hats":
        from .hats_output import check_replaceable

        check_replaceable(output)


def finished_output(output: Path, plan: LabelPlan) -> dict | None:
    """The metadata of ``output`` if it is the merged result of exactly this plan; None if
    ``output`` does not exist. ValueError saying what differs if it is the output of
    another plan (a resumed job never replaces it)."""
    if not output.exists():
        return None
    meta = read_output_metadata(output)
    if meta is None:
        raise ValueError(f"cannot resume: {output} exists and is not a lamfast label output")
    try:
        diff = plan.differences(LabelPlan.from_dict(meta["plan"]))
    except (KeyError, TypeError, ValueError):  # an older lamfast wrote it
        diff = ["the output records no plan of this lamfast version"]
    if diff:
        raise ValueError(f"cannot resume: {output} was made with a different plan: {'; '.join(diff)}; "
                         "rerun with that plan's settings, or without --resume and with --overwrite "
                         "to replace it")
    return meta


def read_output(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, metadata) of a file written by :func:`lamfast.label` / :func:`merge`:
    ``source_id``, ``input_file``, ``input_row``, ``<name>``, ``<name>_error`` per request
    and ``no_input``, each [N]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = output_format(path)
    if fmt == "hats":
        from .hats_output import read_hats_output

        return read_hats_output(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
        columns = {c: table[c].to_numpy() for c in table.column_names}
    else:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get(METADATA_KEY)
            if HDF5_TABLE in f:
                table = f[HDF5_TABLE][()]
                columns = {c: np.ascontiguousarray(table[c]) for c in table.dtype.names}
            else:  # one dataset per column: files of lamfast before the astropy layout
                columns = {c: f[c][()] for c in f}
    if raw is None:
        raise ValueError(f"{path}: not written by lamfast label (no {METADATA_KEY!r} metadata)")
    meta = json.loads(raw)
    return {c: columns[c] for c in output_columns(meta["request"], meta.get("no_g_column") is not None)}, meta


def read_output_metadata(path: str | os.PathLike) -> dict | None:
    """The metadata of a labelled file, or None if it is missing or not one."""
    path = Path(path)
    try:
        fmt = output_format(path)
        if fmt == "hats":
            from .hats_output import read_hats_metadata

            return read_hats_metadata(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY.encode())
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get(METADATA_KEY)
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError):
        return None


# ---- metadata, checking and removing parts ----------------------------------------------

def _output_metadata(plan: LabelPlan, rows: int, flagged: int, devices: list[str], no_g: int,
                     joined: np.ndarray, with_no_g: bool) -> dict:
    """The metadata stored in the output file of ``plan`` (see the module doc); ``with_no_g``:
    the output has the no_g column."""
    photometry = [{"file": p, "stars_joined": int(n)} for p, n in zip(plan.photometry, joined)]
    return {"lamfast_version": __version__, "model": plan.model, "model_sha256": plan.model_sha256,
            "request": plan.request, "units": {n: unit_of(n) for n in plan.request},
            "input_columns": plan.columns if plan.columns is not None else "auto (every input token of the model)",
            "max_tokens": plan.max_tokens, "precision": plan.precision, "computed_with": devices,
            "inputs": plan.inputs, "rows": rows, "flagged_rows": flagged,
            "flag_column": FLAG_COLUMN, "plan": plan.to_dict(), "plan_digest": plan.digest(),
            "photometry": photometry, "no_g_rows": no_g,
            "no_g_column": NO_G_COLUMN if with_no_g else None}


def _check_part(parts: Path, i: int, plan: LabelPlan) -> tuple[int, int, str, int | None, np.ndarray]:
    """(rows, flagged rows, device/precision, rows without G (None: the part has no no_g, its
    XP coefficients were not e-/s), int64 [F] rows joined from each photometry file) of unit
    i's part, after checking it is unit i."""
    path = part_path(parts, i)
    unit = plan.units[i]
    problem = part_problem(path)
    if problem is not None:
        raise ValueError(f"{path}: corrupt part ({problem}); it is never merged: rerun lamfast label "
                         "with --resume (resume=True) to compute it again, then merge")
    try:
        with np.load(path) as z:
            ids, rows, no_input, device = z["unit"], z["input_row"], z["no_input"], str(z["computed_with"])
            # parts of units not gnormed on reading (or of jobs without photometry) have neither
            no_g = int(z["no_g"].sum()) if "no_g" in z.files else None
            joined = z["photometry_joined"] if "photometry_joined" in z.files else np.zeros(0, np.int64)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: unreadable part ({e}); delete it and rerun with --resume") from None
    n = len(rows)
    if list(ids) != [i, unit.file, unit.start]:
        raise ValueError(f"{path}: holds unit {list(ids)}, expected {[i, unit.file, unit.start]}")
    if unit.n_rows is not None and n != unit.n_rows:
        raise ValueError(f"{path}: {n} rows, but {plan.describe(i)} has {unit.n_rows}")
    if not np.array_equal(rows, unit.start + np.arange(n)):
        raise ValueError(f"{path}: input rows are not {unit.start}..{unit.start + n - 1} in order")
    if len(joined) != len(plan.photometry):
        raise ValueError(f"{path}: counts of {len(joined)} photometry files, the plan has {len(plan.photometry)}")
    return n, int(no_input.sum()), device, no_g, joined


def _remove_parts(parts: Path, n_units: int) -> None:
    for i in range(n_units):
        remove_part(part_path(parts, i))
    (parts / PLAN_FILE).unlink(missing_ok=True)
    for tmp in parts.glob(".*.tmp-*"):  # temporaries of jobs killed mid-write (atomic_path names)
        tmp.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:  # something else lives there: leave it
        pass


# ---- the writers ----------------------------------------------------------------------------

class _Buffered:
    """Collects parts and writes them WRITE_ROWS rows at a time (bounded memory)."""

    def __init__(self, request, metadata: dict):
        self.request = list(request)
        self.no_g = metadata.get("no_g_column") is not None
        self.columns = output_columns(self.request, self.no_g)
        self.buffer: list[dict] = []
        self.buffered = 0

    def append(self, part: dict, file_index: int) -> None:
        self.buffer.append(part_columns(part, file_index, self.request, self.no_g))
        self.buffered += len(part["source_id"])
        if self.buffered >= WRITE_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.write({c: np.concatenate([b[c] for b in self.buffer]) for c in self.columns})
        self.buffer, self.buffered = [], 0


def _astropy_header(columns: Sequence[str], metadata: dict) -> list[str]:
    """astropy's YAML table header (dtypes, units, descriptions, metadata but the plan),
    made by astropy from an empty table of the output's columns."""
    import astropy.units as u
    from astropy.table import Column, Table
    from astropy.table.meta import get_yaml_from_table

    table = Table()
    for c, dtype in column_dtypes(columns):
        unit, description = unit_and_description(c)
        table[c] = Column(np.zeros(0, dtype), unit=None if unit is None else u.Unit(unit), description=description)
    table.meta[METADATA_KEY] = {k: v for k, v in metadata.items() if k != "plan"}
    return get_yaml_from_table(table)


class _ParquetWriter(_Buffered):
    def __init__(self, path, request, metadata: dict, rows: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(request, metadata)
        self.schema = pa.schema(arrow_fields(self.columns), metadata={METADATA_KEY: json.dumps(metadata),
                                                  "table_meta_yaml": "\n".join(_astropy_header(self.columns, metadata))})
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows = 0

    def write(self, cols: dict) -> None:
        import pyarrow as pa

        self.writer.write_table(pa.table(cols, schema=self.schema), row_group_size=WRITE_ROWS)
        self.rows += len(cols["source_id"])

    def close(self) -> None:
        self.flush()
        if self.rows == 0:  # still a valid file with the schema
            self.writer.write_table(self.schema.empty_table())
        self.writer.close()


class _HDF5Writer(_Buffered):
    """One compound dataset of ``rows`` rows (known before writing: no resizing)."""

    def __init__(self, path, request, metadata: dict, rows: int):
        import h5py
        from astropy.io.misc.hdf5 import meta_path

        super().__init__(request, metadata)
        self.dtype = np.dtype(column_dtypes(self.columns))
        self.file = h5py.File(path, "w")
        self.file.attrs[METADATA_KEY] = json.dumps(metadata)
        chunk = max(1, min(rows, HDF5_CHUNK_BYTES // self.dtype.itemsize))
        # maxshape: an empty table still needs a chunk of one row
        self.table = self.file.create_dataset(HDF5_TABLE, shape=(rows,), maxshape=(max(rows, 1),),
                                              dtype=self.dtype, chunks=(chunk,), compression="gzip",
                                              compression_opts=4, shuffle=True)
        # Variable-length lines: a fixed-width string array would pad every line to the longest.
        header = np.array([h.encode() for h in _astropy_header(self.columns, metadata)], dtype=object)
        self.file.create_dataset(meta_path(HDF5_TABLE), data=header, dtype=h5py.string_dtype("ascii"))
        self.rows = 0

    def write(self, cols: dict) -> None:
        n = len(cols["source_id"])
        block = np.empty(n, self.dtype)
        for c, a in cols.items():
            block[c] = a
        self.table[self.rows:self.rows + n] = block
        self.rows += n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.file.close()
