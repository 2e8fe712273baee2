"""The output of a labelling job: merging the parts into one file, and reading it back.

**Output** (Parquet or HDF5, written atomically). One row per input row, in input order:
``source_id`` int64, ``input_file`` int32 (index into the metadata's ``inputs``),
``input_row`` int64, ``<name>`` and ``<name>_error`` float32 per requested token (physical
units), ``no_input`` bool (the star has no usable input token: its predictions are NaN; it
is never dropped). Metadata (JSON; Parquet schema key / HDF5 file attribute
``lamfast_label``): model name and sha256 of its weights, lamfast version, request, units,
input columns, inputs, precision, devices used, plan digest.

:func:`merge` (``lamfast label --merge OUT``) first checks that every unit of the plan has
its part in ``OUT.parts`` (and that each part is the unit it claims to be), then writes
``OUT`` in plan order, :data:`WRITE_ROWS` rows at a time (bounded memory).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._version import __version__
from ..atomic import atomic_path
from .plan import PLAN_FILE, LabelPlan, part_path, parts_dir, read_plan
from .summary import LabelSummary

METADATA_KEY = "lamfast_label"
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5"}
FLAG_COLUMN = "no_input"
WRITE_ROWS = 65536                    # rows per Parquet row group / HDF5 chunk of the output

# Physical units of the outputs (paper conventions); XP coefficients are divided by the
# star's G-band flux in e-/s ("gnorm").
UNITS = {"teff": "K", "logg": "dex (log10 g in cm s^-2)", "m_h": "dex", "bprp": "mag",
         "jh": "mag", "jk": "mag", "logebv": "ln(E(B-V) / mag)",
         "g_fakemag": "parallax [mas] * 10**(0.2 G)"}
UNITS.update({f"{band}{i}": "gnorm (per G-band e-/s)" for band in ("bp", "rp") for i in range(55)})


def merge(output: str | os.PathLike, *, keep_parts: bool = False) -> LabelSummary:
    """Check that every work unit in ``OUT.parts`` is done exactly once, then write ``output``
    (atomically, in plan order) and remove ``OUT.parts`` (unless ``keep_parts``).

    Raises ValueError naming the missing units (or a part that does not match its unit)
    before anything is written.
    """
    t0 = time.perf_counter()
    output = Path(output)
    fmt = output_format(output)
    parts = parts_dir(output)
    plan = read_plan(parts)
    check_coverage(plan, parts)
    rows = flagged = 0
    devices: set[str] = set()
    for i in range(len(plan.units)):  # first pass: check every part (small arrays only)
        n, f, device = _check_part(parts, i, plan)
        rows, flagged = rows + n, flagged + f
        devices.add(device)
    metadata = _output_metadata(plan, rows, flagged, sorted(devices))
    with atomic_path(output) as tmp:
        writer = (_ParquetWriter if fmt == "parquet" else _HDF5Writer)(str(tmp), plan.request, metadata)
        try:
            for i, unit in enumerate(plan.units):
                with np.load(part_path(parts, i)) as z:
                    writer.append({k: z[k] for k in z.files}, unit.file)
        finally:
            writer.close()
    if not keep_parts:
        _remove_parts(parts, len(plan.units))
    summary = LabelSummary(output, units_total=len(plan.units), units_skipped=len(plan.units),
                           output_rows=rows, output_flagged=flagged)
    summary.wall_s = summary.timings["merge"] = time.perf_counter() - t0
    return summary


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
    """``"parquet"`` or ``"hdf5"`` from the output's name (ValueError for any other suffix)."""
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ValueError(f"output {output}: name must end in one of {sorted(OUTPUT_FORMATS)}")
    return fmt


def finished_output(output: Path, plan: LabelPlan) -> dict | None:
    """The metadata of ``output`` if it is the merged result of exactly this plan."""
    meta = read_output_metadata(output) if output.is_file() else None
    return meta if meta and meta.get("plan_digest") == plan.digest() else None


def read_output(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, metadata) of a file written by :func:`lamfast.label` / :func:`merge`:
    ``source_id``, ``input_file``, ``input_row``, ``<name>``, ``<name>_error`` per request
    and ``no_input``, each [N]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if output_format(path) == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
        columns = {c: table[c].to_numpy() for c in table.column_names}
    else:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get(METADATA_KEY)
            columns = {c: f[c][()] for c in f}
    if raw is None:
        raise ValueError(f"{path}: not written by lamfast label (no {METADATA_KEY!r} metadata)")
    meta = json.loads(raw)
    return {c: columns[c] for c in _columns(meta["request"])}, meta


def read_output_metadata(path: str | os.PathLike) -> dict | None:
    """The metadata of a labelled file, or None if it is missing or not one."""
    path = Path(path)
    try:
        if output_format(path) == "parquet":
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

def _output_metadata(plan: LabelPlan, rows: int, flagged: int, devices: list[str]) -> dict:
    """The metadata stored in the output file of ``plan`` (see the module doc)."""
    return {"lamfast_version": __version__, "model": plan.model, "model_sha256": plan.model_sha256,
            "request": plan.request, "units": {n: UNITS.get(n, "") for n in plan.request},
            "input_columns": plan.columns if plan.columns is not None else "auto (every input token of the model)",
            "max_tokens": plan.max_tokens, "precision": plan.precision, "computed_with": devices,
            "inputs": plan.inputs, "rows": rows, "flagged_rows": flagged,
            "flag_column": FLAG_COLUMN, "plan_digest": plan.digest()}


def _check_part(parts: Path, i: int, plan: LabelPlan) -> tuple[int, int, str]:
    """(rows, flagged rows, device/precision) of unit i's part, after checking it is unit i."""
    path = part_path(parts, i)
    unit = plan.units[i]
    try:
        with np.load(path) as z:
            ids, rows, no_input, device = z["unit"], z["input_row"], z["no_input"], str(z["computed_with"])
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: unreadable part ({e}); delete it and rerun with --resume") from None
    n = len(rows)
    if list(ids) != [i, unit.file, unit.start]:
        raise ValueError(f"{path}: holds unit {list(ids)}, expected {[i, unit.file, unit.start]}")
    if unit.n_rows is not None and n != unit.n_rows:
        raise ValueError(f"{path}: {n} rows, but {plan.describe(i)} has {unit.n_rows}")
    if not np.array_equal(rows, unit.start + np.arange(n)):
        raise ValueError(f"{path}: input rows are not {unit.start}..{unit.start + n - 1} in order")
    return n, int(no_input.sum()), device


def _remove_parts(parts: Path, n_units: int) -> None:
    for i in range(n_units):
        part_path(parts, i).unlink(missing_ok=True)
    (parts / PLAN_FILE).unlink(missing_ok=True)
    for tmp in parts.glob(".*.tmp-*"):  # temporaries of jobs killed mid-write (atomic_path names)
        tmp.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:  # something else lives there: leave it
        pass


# ---- the writers ----------------------------------------------------------------------------

def _columns(request: Sequence[str]) -> list[str]:
    return ["source_id", "input_file", "input_row"] + [c for r in request for c in (r, f"{r}_error")] + [FLAG_COLUMN]


def _part_columns(part: dict, file_index: int, request: Sequence[str]) -> dict:
    n = len(part["source_id"])
    cols = {"source_id": part["source_id"], "input_file": np.full(n, file_index, np.int32),
            "input_row": part["input_row"]}
    for j, r in enumerate(request):
        cols[r], cols[f"{r}_error"] = part["value"][:, j], part["error"][:, j]
    cols[FLAG_COLUMN] = part["no_input"].astype(bool)
    return cols


class _Buffered:
    """Collects parts and writes them WRITE_ROWS rows at a time (bounded memory)."""

    def __init__(self, request):
        self.request = list(request)
        self.buffer: list[dict] = []
        self.buffered = 0

    def append(self, part: dict, file_index: int) -> None:
        self.buffer.append(_part_columns(part, file_index, self.request))
        self.buffered += len(part["source_id"])
        if self.buffered >= WRITE_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.write({c: np.concatenate([b[c] for b in self.buffer]) for c in _columns(self.request)})
        self.buffer, self.buffered = [], 0


class _ParquetWriter(_Buffered):
    def __init__(self, path, request, metadata: dict):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(request)
        fields = [pa.field("source_id", pa.int64()), pa.field("input_file", pa.int32()),
                  pa.field("input_row", pa.int64())]
        fields += [pa.field(c, pa.float32()) for r in self.request for c in (r, f"{r}_error")]
        fields.append(pa.field(FLAG_COLUMN, pa.bool_()))
        self.schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata)})
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
    def __init__(self, path, request, metadata: dict):
        import h5py

        super().__init__(request)
        self.file = h5py.File(path, "w")
        self.file.attrs[METADATA_KEY] = json.dumps(metadata)
        dtypes = {"source_id": np.int64, "input_file": np.int32, "input_row": np.int64, FLAG_COLUMN: bool}
        for c in _columns(self.request):
            ds = self.file.create_dataset(c, shape=(0,), maxshape=(None,), chunks=(WRITE_ROWS,),
                                          dtype=dtypes.get(c, np.float32))
            base = c.removesuffix("_error")
            if base in metadata["units"]:
                ds.attrs["unit"] = metadata["units"][base]
        self.rows = 0

    def write(self, cols: dict) -> None:
        n = len(cols["source_id"])
        for c, a in cols.items():
            ds = self.file[c]
            ds.resize(self.rows + n, axis=0)
            ds[self.rows:] = a
        self.rows += n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.file.close()
