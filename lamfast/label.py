"""Label whole catalogues with a trained LAM: :func:`label` and ``lamfast label``.

**Work plan.** The inputs (files or globs, any format :func:`lamfast.io.read_catalog`
reads) are cut into *work units* = (file, row range), enumerated deterministically: files
in the order given (a glob expands sorted; a file named twice counts once), rows in
chunks of ``chunk_rows`` where the format allows it (the paper's HDF5: row ranges;
Parquet: whole row groups, grouped up to ``chunk_rows``). Other formats (Gaia archive XP
files, APOGEE allStar) are read whole: one unit per file. The plan (inputs and their
sizes, units, model hash, request, ...) is kept in ``OUT.parts/plan.json``; every job
writing into ``OUT.parts`` must have the same plan.

**Execution.** Units are read and tokenized on a background thread, ``prefetch`` units
ahead of the device, and each unit's predictions are written atomically to
``OUT.parts/unit-NNNNNN.npz`` (temporary file + fsync + rename). ``resume=True`` skips units
whose part exists, so a job killed at any moment (even ``kill -9``) and rerun with
``resume`` produces the same output as an uninterrupted run. ``shard=(K, N)`` takes units
K, K+N, K+2N, ... (0 <= K < N): N independent jobs (e.g. a SLURM array) cover the plan
exactly once. A run without ``shard`` then merges; after sharded runs :func:`merge`
(``lamfast label --merge OUT``) checks that every unit has its part and writes ``OUT``.

**Output** (Parquet or HDF5, written atomically). One row per input row, in input order:
``source_id`` int64, ``input_file`` int32 (index into the metadata's ``inputs``),
``input_row`` int64, ``<name>`` and ``<name>_error`` float32 per requested token (physical
units), ``no_input`` bool (the star has no usable input token: its predictions are NaN; it
is never dropped). Metadata (JSON; Parquet schema key / HDF5 file attribute
``lamfast_label``): model name and sha256 of its weights, lamfast version, request, units,
input columns, inputs, precision, devices used, plan digest.

**Memory bound** (independent of the catalogue size): at most ``prefetch + 2`` units live
at once (queued, being read, being predicted), each about ``chunk_rows x (8 C + 8 V)``
bytes for the reader's catalogue (C catalogue columns, values and errors in float32) and
its V input columns, plus the packed tokens (8 bytes per token), plus the activations of
one micro-batch of ``batch_size`` stars, plus the merge's 65,536-row write buffer. For the
paper's HDF5 layout (C = 118) with the defaults (chunk_rows 65,536, prefetch 2) that is
about 4 x 65,536 x ~2.4 kB = 0.6 GB beyond the model. A file that can only be read whole
is one unit, so its own size bounds memory instead.

Test hook: the environment variable ``LAMFAST_LABEL_UNIT_SLEEP`` (seconds) makes the job
sleep after each unit it writes, so tests can kill it between units.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path

METADATA_KEY = "lamfast_label"
PLAN_FILE = "plan.json"
PLAN_VERSION = 1
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5"}
FLAG_COLUMN = "no_input"
WRITE_ROWS = 65536                    # rows per Parquet row group / HDF5 chunk of the output
UNIT_SLEEP_ENV = "LAMFAST_LABEL_UNIT_SLEEP"

# Physical units of the outputs (paper conventions); XP coefficients are divided by the
# star's G-band flux in e-/s ("gnorm").
UNITS = {"teff": "K", "logg": "dex (log10 g in cm s^-2)", "m_h": "dex", "bprp": "mag",
         "jh": "mag", "jk": "mag", "logebv": "ln(E(B-V) / mag)",
         "g_fakemag": "parallax [mas] * 10**(0.2 G)"}
UNITS.update({f"{band}{i}": "gnorm (per G-band e-/s)" for band in ("bp", "rp") for i in range(55)})


# ---- the plan ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkUnit:
    """Rows ``start:stop`` of input file ``file`` (``stop`` None: the whole file)."""

    file: int
    start: int = 0
    stop: int | None = None
    row_groups: tuple[int, int] | None = None     # Parquet: row groups [g0, g1)

    @property
    def n_rows(self) -> int | None:
        return None if self.stop is None else self.stop - self.start


@dataclass
class LabelPlan:
    """Everything that determines the output; identical for every job sharing OUT.parts."""

    inputs: list[str]              # absolute paths
    formats: list[str]             # read_catalog format per input
    sizes: list[int]               # bytes per input (a changed file changes the plan)
    units: list[WorkUnit]
    request: list[str]
    columns: list[str] | None      # input token columns; None = every one the model knows
    model: str                     # model name ("default" or the folder's name)
    model_sha256: str
    precision: str                 # as asked ("auto", "fp32", "bf16")
    max_tokens: int
    chunk_rows: int

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["units"] = [[u.file, u.start, u.stop, list(u.row_groups) if u.row_groups else None]
                      for u in self.units]
        return {"version": PLAN_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> LabelPlan:
        d = dict(d)
        if d.pop("version", None) != PLAN_VERSION:
            raise ValueError(f"label plan version is not {PLAN_VERSION}")
        d["units"] = [WorkUnit(f, s, e, tuple(g) if g else None) for f, s, e, g in d["units"]]
        return cls(**d)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def describe(self, i: int) -> str:
        u = self.units[i]
        rows = "all rows" if u.stop is None else f"rows {u.start}:{u.stop}"
        return f"unit {i} ({Path(self.inputs[u.file]).name}, {rows})"


def expand_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Files and globs -> existing files, in order (a glob sorted), each once."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: dict[Path, None] = {}
    for item in inputs:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"no file matches {text!r}")
        else:
            matches = [text]
        for m in matches:
            path = Path(m)
            if not path.is_file():
                raise FileNotFoundError(f"no such input file: {m}")
            files.setdefault(path.resolve(), None)
    if not files:
        raise ValueError("no input file given")
    return list(files)


def plan_units(paths: Sequence[Path], chunk_rows: int) -> tuple[list[str], list[WorkUnit]]:
    """Formats and work units of the files (every row in exactly one unit, in order)."""
    from .io.dispatch import detect_catalog_format

    formats, units = [], []
    for k, path in enumerate(paths):
        fmt = detect_catalog_format(path)
        formats.append(fmt)
        if fmt == "paper_hdf5":
            n = _hdf5_rows(path)
            units += [WorkUnit(k, a, min(n, a + chunk_rows)) for a in range(0, n, chunk_rows)] or [WorkUnit(k, 0, 0)]
        elif fmt == "parquet":
            units += _parquet_units(k, path, chunk_rows)
        else:
            units.append(WorkUnit(k))
    return formats, units


def _hdf5_rows(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        if "gaia_source_id" not in f:
            raise ValueError(f"{path}: no 'gaia_source_id' dataset (not in the paper's HDF5 layout)")
        return int(f["gaia_source_id"].shape[0])


def _parquet_units(k: int, path: Path, chunk_rows: int) -> list[WorkUnit]:
    """Consecutive row groups, gathered until a unit holds >= chunk_rows rows."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    units, g0, start, rows = [], 0, 0, 0
    for g in range(meta.num_row_groups):
        rows += meta.row_group(g).num_rows
        if rows - start >= chunk_rows or g == meta.num_row_groups - 1:
            units.append(WorkUnit(k, start, rows, (g0, g + 1)))
            g0, start = g + 1, rows
    return units or [WorkUnit(k, 0, 0, (0, 0))]


def read_unit(plan: LabelPlan, unit: WorkUnit):
    """The :class:`lamfast.io.Catalog` of one work unit."""
    path = plan.inputs[unit.file]
    fmt = plan.formats[unit.file]
    if fmt == "paper_hdf5":
        from .io.paper_hdf5 import read_paper_hdf5

        cat = read_paper_hdf5(path, slice(unit.start, unit.stop))
    elif fmt == "parquet":
        from .io.parquet import read_parquet

        cat = read_parquet(path, row_groups=list(range(*unit.row_groups)))
    else:
        from .io.dispatch import read_catalog

        cat = read_catalog(path, format=fmt)
    if unit.n_rows is not None and len(cat) != unit.n_rows:
        raise ValueError(f"{path}: expected {unit.n_rows} rows at {unit.start}:{unit.stop}, read "
                         f"{len(cat)} (did the file change since the plan was made?)")
    return cat


def parts_dir(output: str | os.PathLike) -> Path:
    """``OUT.parts``: the folder of per-unit results beside the output file."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def part_path(parts: Path, i: int) -> Path:
    return parts / f"unit-{i:06d}.npz"


def ensure_plan(parts: Path, plan: LabelPlan) -> None:
    """Store the plan in ``parts``, or check that the one stored there is the same if
    results of it exist (ValueError otherwise)."""
    path = parts / PLAN_FILE
    if path.is_file() and any(parts.glob("unit-*.npz")):  # a plan without results may be replaced
        stored = LabelPlan.from_dict(json.loads(path.read_text()))
        if stored.digest() != plan.digest():
            raise ValueError(f"{parts} holds work of a different labelling plan (inputs, model, "
                             "request, columns or chunking differ); delete it or choose another output")
        return
    parts.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(plan.to_dict(), indent=1))


def read_plan(parts: Path) -> LabelPlan:
    path = parts / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nothing to merge: {path} does not exist (run lamfast label first)")
    return LabelPlan.from_dict(json.loads(path.read_text()))


# ---- running units ------------------------------------------------------------------------

@dataclass
class LabelSummary:
    """What a labelling job did. ``rows``/``flagged`` count the units computed by this job."""

    output: Path | None            # the final file (None for a shard: merge pending)
    rows: int = 0
    flagged: int = 0               # rows without usable input (NaN predictions)
    units_done: int = 0
    units_skipped: int = 0         # already finished (resume)
    units_total: int = 0           # in the whole plan
    output_rows: int | None = None  # rows in the final file (None until merged)
    output_flagged: int | None = None
    wall_s: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(("read", "tokenize", "model", "write", "merge"), 0.0))

    @property
    def stars_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        where = (f"-> {self.output} ({self.output_rows:,} rows, {self.output_flagged:,} flagged)"
                 if self.output else "(shard: run lamfast label --merge OUT when all shards are done)")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        return (f"labelled {self.rows:,} stars ({self.flagged:,} flagged: no usable input) in "
                f"{self.units_done} units ({self.units_skipped} already done, {self.units_total} in "
                f"the plan) in {self.wall_s:.2f} s = {self.stars_per_s:,.0f} stars/s {where}\n"
                f"  stage seconds (read/tokenize overlap the model): {stages}")


@dataclass
class _Loaded:
    index: int
    source_id: np.ndarray
    input_row: np.ndarray
    prepared: object                # infer.PreparedChunk
    read_s: float
    tokenize_s: float


def _input_matrix(cat, plan: LabelPlan, model, path: str) -> tuple[np.ndarray, list[str]]:
    """float32 [N, V] values of the input token columns of one unit, and their names."""
    if plan.columns is None:
        have = set(cat.columns)
        columns = [c for c in model_input_columns(model, plan.request) if c in have]
        if not columns:
            raise ValueError(f"{path}: none of its columns ({', '.join(cat.columns[:6])}, ...) is an "
                             "input token of the model")
        index = [cat.columns.index(c) for c in columns]
        return np.ascontiguousarray(cat.values[:, index]), columns
    present = {c: j for j, c in enumerate(cat.columns)}
    if not any(c in present for c in plan.columns):
        raise ValueError(f"{path}: has none of the input columns {plan.columns[:6]}")
    values = np.full((len(cat), len(plan.columns)), np.nan, dtype=np.float32)
    for k, c in enumerate(plan.columns):   # a column the file lacks stays missing (NaN)
        if c in present:
            values[:, k] = cat.values[:, present[c]]
    return values, list(plan.columns)


def model_input_columns(model, request: Sequence[str]) -> list[str]:
    """Tokens the model has normalisation stats for, minus the requested ones, most
    informative first (:func:`lamfast.vocab.by_information`: the context cut keeps them)."""
    from .vocab import by_information

    center = model.normalizer.center
    return by_information(t for t in model.vocab.tokens
                          if np.isfinite(center[model.vocab.id(t)]) and t not in request)


def _load_unit(plan: LabelPlan, i: int, predictor, threads: int | None) -> _Loaded:
    from .batch import Batch
    from .tokenizer import tokenize

    unit, path = plan.units[i], plan.inputs[plan.units[i].file]
    t0 = time.perf_counter()
    cat = read_unit(plan, unit)
    t1 = time.perf_counter()
    values, columns = _input_matrix(cat, plan, predictor.model, path)
    if len(cat):
        batch = tokenize(values, columns, max_tokens=plan.max_tokens, normalizer=predictor.model.normalizer,
                         vocab=predictor.model.vocab, threads=threads)
    else:
        batch = Batch(np.empty(0, np.int32), np.empty(0, np.float32), np.zeros(1, np.int32), 0)
    prepared = predictor.prepare(batch)
    t2 = time.perf_counter()
    rows = unit.start + np.arange(len(cat), dtype=np.int64)
    return _Loaded(i, cat.source_id, rows, prepared, t1 - t0, t2 - t1)


def run_units(plan: LabelPlan, indices: Sequence[int], predictor, parts: Path, *, resume: bool,
              progress: bool = True, prefetch_depth: int = 2, threads: int | None = None) -> LabelSummary:
    """Compute the units ``indices`` of ``plan`` into ``parts`` (skipping finished ones if
    ``resume``). The model runs on this thread; reading and tokenizing on a background one."""
    from ._prefetch import prefetch

    if threads is None and predictor.device.type == "cpu":
        threads = 1  # the model needs the cores; tokenizing is ~1% of its cost, and
        #              oversubscribed OpenMP threads of torch slow down many-fold
    t_start = time.perf_counter()
    summary = LabelSummary(None, units_total=len(plan.units))
    pending = [i for i in indices if not (resume and part_path(parts, i).is_file())]
    summary.units_skipped = len(indices) - len(pending)
    sizes = [plan.units[i].n_rows for i in pending]
    bar = _progress_bar(None if None in sizes else sum(sizes), progress)
    sleep = float(os.environ.get(UNIT_SLEEP_ENV, "0") or 0)
    computed_with = f"{predictor.device.type}/{predictor.precision}"
    try:
        for loaded in prefetch((_load_unit(plan, i, predictor, threads) for i in pending), prefetch_depth):
            t0 = time.perf_counter()
            value, error = predictor.run(loaded.prepared)
            t1 = time.perf_counter()
            no_input = loaded.prepared.no_input
            _write_part(part_path(parts, loaded.index), loaded.index, plan.units[loaded.index],
                        loaded.source_id, loaded.input_row, value, error, no_input, computed_with)
            t2 = time.perf_counter()
            tm = summary.timings
            tm["read"] += loaded.read_s
            tm["tokenize"] += loaded.tokenize_s
            tm["model"] += t1 - t0
            tm["write"] += t2 - t1
            summary.rows += len(no_input)
            summary.flagged += int(no_input.sum())
            summary.units_done += 1
            bar.update(len(no_input))
            if sleep:
                time.sleep(sleep)
    finally:
        bar.close()
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _progress_bar(total, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="star", unit_scale=True, disable=not enabled, desc="labelling",
                dynamic_ncols=True, smoothing=0.1)


def _write_part(path: Path, index: int, unit: WorkUnit, source_id, input_row, value, error, no_input,
                computed_with: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, unit=np.array([index, unit.file, unit.start], dtype=np.int64),
                 source_id=np.asarray(source_id, np.int64), input_row=input_row,
                 value=value.astype(np.float32), error=error.astype(np.float32), no_input=no_input,
                 computed_with=np.array(computed_with))


# ---- merging ------------------------------------------------------------------------------

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


def merge(output: str | os.PathLike, *, keep_parts: bool = False) -> LabelSummary:
    """Check that every work unit in ``OUT.parts`` is done exactly once, then write ``output``
    (atomically, in plan order) and remove ``OUT.parts`` (unless ``keep_parts``).

    Raises ValueError naming the missing units (or a part that does not match its unit)
    before anything is written.
    """
    t0 = time.perf_counter()
    output = Path(output)
    fmt = _output_format(output)
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


def _output_format(output: Path) -> str:
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ValueError(f"output {output}: name must end in one of {sorted(OUTPUT_FORMATS)}")
    return fmt


def _output_metadata(plan: LabelPlan, rows: int, flagged: int, devices: list[str]) -> dict:
    from . import __version__

    return {"lamfast_version": __version__, "model": plan.model, "model_sha256": plan.model_sha256,
            "request": plan.request, "units": {n: UNITS.get(n, "") for n in plan.request},
            "input_columns": plan.columns if plan.columns is not None else "auto (every input token of the model)",
            "max_tokens": plan.max_tokens, "precision": plan.precision, "computed_with": devices,
            "inputs": plan.inputs, "rows": rows, "flagged_rows": flagged,
            "flag_column": FLAG_COLUMN, "plan_digest": plan.digest()}


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


def read_output(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, metadata) of a file written by :func:`label` / :func:`merge`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if _output_format(path) == "parquet":
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
        if _output_format(path) == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY.encode())
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get(METADATA_KEY)
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError):
        return None


# ---- the entry points -------------------------------------------------------------------

def make_plan(inputs, model: str | os.PathLike, lam, request: Sequence[str], columns: Sequence[str] | None,
              precision: str, chunk_rows: int) -> LabelPlan:
    """The deterministic plan of a labelling job (inputs expanded, units enumerated)."""
    from .infer import DEFAULT_MODEL, model_hash, resolve_model

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    paths = expand_inputs(inputs)
    formats, units = plan_units(paths, int(chunk_rows))
    name = DEFAULT_MODEL if str(model) == DEFAULT_MODEL else resolve_model(model).name
    return LabelPlan(inputs=[str(p) for p in paths], formats=formats, sizes=[p.stat().st_size for p in paths],
                     units=units, request=list(request), columns=check_input_columns(lam, columns, request),
                     model=name, model_sha256=model_hash(model), precision=precision,
                     max_tokens=lam.config.context_length, chunk_rows=int(chunk_rows))


def check_input_columns(lam, columns: Sequence[str] | None, request: Sequence[str]) -> list[str] | None:
    """None (auto) or the validated list of input token columns."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    if not columns:
        raise ValueError("columns: give at least one input token (or None for every one the model knows)")
    lam.vocab.ids(columns)                      # unknown names -> ValueError naming them
    lam.normalizer.has_stats(columns)
    both = [c for c in columns if c in request]
    if both:
        raise ValueError(f"columns {both} are both inputs and requested outputs")
    if len(set(columns)) != len(columns):
        raise ValueError(f"columns lists a token twice: {columns}")
    return columns


def parse_shard(shard) -> tuple[int, int] | None:
    """None, (K, N) or "K/N" -> (K, N) with 0 <= K < N."""
    if shard is None:
        return None
    try:
        k, n = (int(x) for x in (shard.split("/") if isinstance(shard, str) else shard))
    except (ValueError, TypeError):
        raise ValueError(f"shard must be K/N (0 <= K < N), got {shard!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")
    return k, n


def shard_units(n_units: int, shard: tuple[int, int] | None) -> list[int]:
    """Units of shard K of N: K, K+N, K+2N, ... (round robin: shards get similar work)."""
    if shard is None:
        return list(range(n_units))
    k, n = shard
    return list(range(k, n_units, n))


def finished_output(output: Path, plan: LabelPlan) -> dict | None:
    """The metadata of ``output`` if it is the merged result of exactly this plan."""
    meta = read_output_metadata(output) if output.is_file() else None
    return meta if meta and meta.get("plan_digest") == plan.digest() else None


def label(inputs, *, model: str | os.PathLike = "default", request: Sequence[str] = ("teff", "logg", "m_h"),
          output: str | os.PathLike, columns: Sequence[str] | None = None, batch_size: int | None = None,
          device: str = "auto", precision: str = "auto", shard=None, resume: bool = False,
          chunk_rows: int = 65536, prefetch: int = 2, threads: int | None = None,
          progress: bool = True) -> LabelSummary:
    """Label catalogue files with a trained model, file to file (see the module doc).

    Parameters
    ----------
    inputs : a file, a glob, or a list of them (any format ``read_catalog`` reads).
    model : ``"default"`` (the shipped model) or a folder written by ``LAM.save``.
    request : token names to predict for every star.
    output : ``.parquet`` or ``.h5`` file; results of units go to ``OUT.parts/`` first.
    columns : input token columns; default every column of a file that the model has
        normalisation stats for, except the requested ones, scalars first and then XP
        coefficients by rising order (:func:`lamfast.vocab.by_information`). The first
        ``max_tokens`` (the model's context length) present values of a star, in this
        order, are used. A
        listed column that a file lacks counts as missing for its stars.
    batch_size : stars per forward pass (bounds device memory); default 256 on CPU, 4096
        on GPUs (:func:`lamfast.infer.default_batch_size`).
    device : ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:N"``.
    precision : ``"fp32"``, ``"bf16"`` (autocast), ``"auto"`` (bf16 on CUDA, fp32 on CPU).
    shard : ``(K, N)`` or ``"K/N"``: compute only units K, K+N, ... and do not merge.
    resume : skip units already done (and return at once if ``output`` is already the
        merged result of the same plan).
    chunk_rows : rows per work unit where the format can be read in parts.
    prefetch : units read and tokenized ahead of the model (memory: see the module doc).
    threads : tokenizer threads (default: 1 when the model runs on the CPU, which needs the
        cores, else :func:`lamfast.get_num_threads`).
    progress : show a tqdm bar with stars/s.

    Returns
    -------
    LabelSummary: rows and flagged rows computed, units done/skipped, wall time,
    throughput, per-stage seconds.
    """
    from .infer import Predictor, load_model

    t0 = time.perf_counter()
    output = Path(output)
    _output_format(output)
    shard = parse_shard(shard)
    lam = load_model(model)
    predictor = Predictor(lam, request, device=device, precision=precision, batch_size=batch_size)
    plan = make_plan(inputs, model, lam, predictor.request, columns, precision, chunk_rows)
    if resume and shard is None:
        meta = finished_output(output, plan)
        if meta is not None:
            return LabelSummary(output, units_skipped=len(plan.units), units_total=len(plan.units),
                                output_rows=meta["rows"], output_flagged=meta["flagged_rows"],
                                wall_s=time.perf_counter() - t0)
    parts = parts_dir(output)
    ensure_plan(parts, plan)
    summary = run_units(plan, shard_units(len(plan.units), shard), predictor, parts, resume=resume,
                        progress=progress, prefetch_depth=prefetch, threads=threads)
    if shard is None:
        merged = merge(output)
        summary.output, summary.output_rows, summary.output_flagged = output, merged.output_rows, merged.output_flagged
        summary.timings["merge"] = merged.wall_s
    summary.wall_s = time.perf_counter() - t0
    return summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="label catalogue files with a trained model (streaming, resumable, sharded)",
        description="Predict tokens (default Teff, logg, [M/H]) of every star of catalogue files. "
                    "Resumable per work unit; --shard K/N splits the work over N jobs, then "
                    "`lamfast label --merge OUT` checks coverage and writes OUT.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="catalogue files or globs (quote globs)")
    p.add_argument("--model", default="default", help="'default' or a model folder written by LAM.save")
    p.add_argument("--request", nargs="+", default=["teff", "logg", "m_h"], metavar="TOKEN")
    p.add_argument("--columns", nargs="+", default=None, metavar="TOKEN",
                   help="input token columns (default: every column the model knows, minus the requested)")
    p.add_argument("--output", "-o", help="OUT.parquet or OUT.h5")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--batch-size", type=int, default=None,
                   help="stars per forward pass (default 256 on CPU, 4096 on GPUs)")
    p.add_argument("--chunk-rows", type=int, default=65536, help="rows per work unit")
    p.add_argument("--shard", default=None, metavar="K/N", help="do units K, K+N, ... only (0 <= K < N)")
    p.add_argument("--resume", action="store_true", help="skip work units already done")
    p.add_argument("--merge", metavar="OUT", help="merge the finished shards of OUT (no INPUT)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask.distributed scheduler")
    p.add_argument("--workers", type=int, metavar="N", help="run on a local Dask cluster of N workers")
    p.add_argument("--gpus-per-worker", type=int, default=0,
                   help="Dask: GPUs per worker; each partition then takes one GPU")
    p.add_argument("--retries", type=int, default=2, help="Dask: retries of a failed partition")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    if args.merge:
        if args.inputs or args.output:
            raise ValueError("--merge OUT takes no INPUT and no --output")
        print(merge(args.merge))
        return 0
    if not args.inputs:
        raise ValueError("give at least one INPUT file (or --merge OUT)")
    if not args.output:
        raise ValueError("--output OUT.parquet|OUT.h5 is required")
    common = dict(model=args.model, request=args.request, output=args.output, columns=args.columns,
                  batch_size=args.batch_size, device=args.device, precision=args.precision,
                  resume=args.resume, chunk_rows=args.chunk_rows, progress=not args.no_progress)
    if args.scheduler or args.workers:
        if args.shard:
            raise ValueError("--shard is for independent jobs; with Dask the cluster shares the work")
        from .distributed import label_distributed

        summary = label_distributed(args.inputs, scheduler=args.scheduler, workers=args.workers,
                                    gpus_per_worker=args.gpus_per_worker, retries=args.retries, **common)
    else:
        summary = label(args.inputs, shard=args.shard, **common)
    print(summary)
    return 0
