"""The work plan of a labelling job: work units, shards, and the plan kept in ``OUT.parts``.

The inputs (files or globs, any format :func:`lamfast.io.read_catalog` reads) are cut into
*work units* = (file, row range), enumerated deterministically: files in the order given
(a glob expands sorted; a file named twice counts once; a HATS catalogue folder expands to
its partition files in the catalogue's pixel order, :mod:`lamfast.io.hats`, each a Parquet
input, so no unit spans two partitions), rows in chunks of ``chunk_rows``
where the format allows it (the paper's HDF5: row ranges; Parquet: whole row groups,
grouped up to ``chunk_rows``). Other formats (Gaia archive XP files, APOGEE allStar) are
read whole: one unit per file.

The plan (inputs with their sizes and modification times, units, model hash, request,
photometry files with their sizes and modification times, ...) is kept in
``OUT.parts/plan.json``; every job writing into ``OUT.parts`` must have the same plan
(:meth:`LabelPlan.differences` says what differs), and unit i's result is
``OUT.parts/unit-<i:06d>.npz`` (its checksum beside it, :mod:`.parts`). ``shard=(K, N)`` takes units K, K+N,
K+2N, ... (0 <= K < N): N independent jobs (e.g. a SLURM array) cover the plan exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .parts import write_error

PLAN_FILE = "plan.json"
PLAN_VERSION = 2
_PER_FILE = ("formats", "sizes", "mtimes")   # fields with one entry per input
_PER_PHOTOMETRY = ("photometry_sizes", "photometry_mtimes")   # one entry per photometry file


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
    mtimes: list[int]              # modification time per input, ns (a file rewritten in place, same size)
    units: list[WorkUnit]
    request: list[str]
    columns: list[str] | None      # input token columns; None = every one the model knows
    model: str                     # model name ("default" or the folder's name)
    model_sha256: str
    precision: str                 # as asked ("auto", "fp32", "bf16")
    max_tokens: int
    chunk_rows: int
    # Photometry files joined to the XP and Parquet inputs by source_id (absolute paths), their sizes
    # and mtimes; empty without photometry (plans of earlier lamfast versions read as such).
    photometry: list[str] = field(default_factory=list)
    photometry_sizes: list[int] = field(default_factory=list)
    photometry_mtimes: list[int] = field(default_factory=list)
    # HATS catalogues among the inputs: per catalogue its folder, name, the indices of its
    # partition files in ``inputs``, their (order, pixel), the position columns (what a HATS
    # output is partitioned by, :mod:`lamfast.label.hats_output`) and its lamfast_xp_units
    # (None: not declared; the units of its partition files without lamfast.xp_units); empty without.
    hats: list[dict] = field(default_factory=list)

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
        # HATS entries of earlier lamfast versions: no catalogue units (they read each file's key only)
        d["hats"] = [{"xp_units": None, **entry} for entry in d.get("hats", [])]
        return cls(**d)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, earlier: LabelPlan) -> list[str]:
        """What differs from the plan ``earlier``, one phrase per field (empty: the same plan).

        Per-file fields (formats, sizes, mtimes) are compared file by file when both plans
        have the same inputs; with other inputs, the inputs themselves are the difference
        (the same for the photometry files).
        """
        out = []
        for f in dataclasses.fields(self):
            now, then = getattr(self, f.name), getattr(earlier, f.name)
            if (now == then or (f.name in _PER_FILE and self.inputs != earlier.inputs)
                    or (f.name in _PER_PHOTOMETRY and self.photometry != earlier.photometry)):
                continue
            if f.name in _PER_FILE:
                out += [f"{f.name[:-1]} of {path}: {a} now, {b} before"
                        for path, a, b in zip(self.inputs, now, then) if a != b]
            elif f.name in _PER_PHOTOMETRY and len(now) == len(then) == len(self.photometry):
                what = f.name.removeprefix("photometry_")[:-1]
                out += [f"{what} of photometry file {path}: {a} now, {b} before"
                        for path, a, b in zip(self.photometry, now, then) if a != b]
            elif f.name == "photometry":
                out.append(f"photometry files: {now or 'none'} now, {then or 'none'} before")
            elif f.name == "hats":
                out += _hats_differences(now, then)
            elif f.name == "units":
                out.append(f"work units: {len(now)} now, {len(then)} before"
                           + (" (other row ranges)" if len(now) == len(then) else ""))
            else:
                out.append(f"{f.name}: {now!r} now, {then!r} before")
        return out

    def default_xp_units(self, file: int) -> str | None:
        """The XP units of input ``file`` where the file itself declares none: its HATS
        catalogue's lamfast_xp_units (None: not in a HATS catalogue, or none declared)."""
        return self._hats_xp_units.get(file)

    @functools.cached_property
    def _hats_xp_units(self) -> dict[int, str]:
        return hats_xp_units(self.hats)

    def describe(self, i: int) -> str:
        u = self.units[i]
        rows = "all rows" if u.stop is None else f"rows {u.start}:{u.stop}"
        return f"unit {i} ({Path(self.inputs[u.file]).name}, {rows})"


def make_plan(inputs, model: str | os.PathLike, lam, request: Sequence[str], columns: Sequence[str] | None,
              precision: str, chunk_rows: int, photometry=None) -> LabelPlan:
    """The deterministic plan of a labelling job (inputs expanded, units enumerated).

    Parameters
    ----------
    inputs : a file, a glob, or a list of them.
    model : ``"default"`` or a model folder; ``lam`` is that model, loaded.
    request, columns : as :func:`lamfast.label` takes them (checked against ``lam``).
    precision : as asked (``"auto"`` stays ``"auto"``: the plan does not depend on devices).
    chunk_rows : rows per work unit where the format can be read in parts.
    photometry : None, or photometry files (or globs) to join to the Gaia XP and Parquet
        inputs by source_id (:mod:`lamfast.io.photometry_join`); ValueError if no input is
        one of those.

    Every check that needs no data is done here, so that a job fails before computing:
    photometry file headers, and each Parquet input's XP units (:func:`check_parquet_inputs`).
    """
    from ..infer import check_request, model_hash
    from ..resources import DEFAULT_MODEL, resolve_model

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    request = check_request(lam, request)
    paths, catalogs = expand_catalogs(inputs)
    formats, units = plan_units(paths, int(chunk_rows))
    name = DEFAULT_MODEL if str(model) == DEFAULT_MODEL else resolve_model(model).name
    stats = [p.stat() for p in paths]
    phot = expand_inputs(photometry, what="photometry file") if photometry is not None else []   # HATS too
    if phot and not {"xp", "parquet"} & set(formats):
        raise ValueError("photometry files are joined to Gaia XP_CONTINUOUS and Parquet inputs only, and "
                         f"no input is one (formats: {sorted(set(formats))})")
    phot_columns: set[str] = set()
    if phot:
        from ..io.photometry_join import check_photometry_file

        for p in phot:   # headers only: every job (and the Dask driver) fails before computing
            phot_columns.update(check_photometry_file(p))
    hats = [_hats_entry(c, paths) for c in catalogs]
    units_of = hats_xp_units(hats)
    check_parquet_inputs(paths, formats, phot_columns, bool(phot),
                         default_xp_units=[units_of.get(k) for k in range(len(paths))])
    phot_stats = [p.stat() for p in phot]
    return LabelPlan(inputs=[str(p) for p in paths], formats=formats, sizes=[s.st_size for s in stats],
                     mtimes=[s.st_mtime_ns for s in stats], units=units, request=request,
                     columns=check_input_columns(lam, columns, request),
                     model=name, model_sha256=model_hash(model), precision=precision,
                     max_tokens=lam.config.context_length, chunk_rows=int(chunk_rows),
                     photometry=[str(p) for p in phot], photometry_sizes=[s.st_size for s in phot_stats],
                     photometry_mtimes=[s.st_mtime_ns for s in phot_stats],
                     hats=hats)


def expand_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike], what: str = "input file") -> list[Path]:
    """Files, globs and HATS catalogue folders -> existing files, in order (a glob sorted, a
    catalogue its partition files), each once (``what`` names them in errors)."""
    return expand_catalogs(inputs, what)[0]


def expand_catalogs(inputs, what: str = "input file") -> tuple[list[Path], list]:
    """:func:`expand_inputs`, and the :class:`lamfast.io.hats.HatsCatalog` of each HATS folder given."""
    from ..io.hats import is_hats, read_hats_catalog

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: dict[Path, None] = {}
    catalogs = []
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
            if is_hats(path):
                catalog = read_hats_catalog(path)
                if catalog.path not in {c.path for c in catalogs}:
                    catalogs.append(catalog)
                for f in catalog.files:
                    files.setdefault(Path(f).resolve(), None)
                continue
            if not path.is_file():
                raise FileNotFoundError(f"no such {what}: {m}" + (
                    " (a folder, but not a HATS catalogue: no hats.properties or collection.properties)"
                    if path.is_dir() else ""))
            files.setdefault(path.resolve(), None)
    if not files:
        raise ValueError(f"no {what} given" + (" (the HATS catalogue has no partitions)" if catalogs else ""))
    return list(files), catalogs


def _hats_entry(catalog, paths: Sequence[Path]) -> dict:
    """The plan's record of one HATS input catalogue (see :attr:`LabelPlan.hats`)."""
    index = {p: k for k, p in enumerate(paths)}
    return {"catalog": str(Path(catalog.path).resolve()), "name": catalog.name,
            "inputs": [index[Path(f).resolve()] for f in catalog.files],
            "pixels": [list(p) for p in catalog.pixels], "ra_column": catalog.ra_column,
            "dec_column": catalog.dec_column, "healpix_column": catalog.healpix_column,
            "healpix_order": catalog.healpix_order, "xp_units": catalog.xp_units}


def hats_xp_units(hats: list[dict]) -> dict[int, str]:
    """Input index -> the lamfast_xp_units of its HATS catalogue, for the plan's ``hats``
    entries that declare them (a file in none: absent)."""
    return {k: entry["xp_units"] for entry in hats if entry.get("xp_units") is not None for k in entry["inputs"]}


def _hats_differences(now: list[dict], then: list[dict]) -> list[str]:
    """What differs between two plans' HATS entries: per catalogue in both, the fields that
    changed (e.g. its lamfast_xp_units); else the catalogues themselves."""
    if [e["catalog"] for e in now] != [e["catalog"] for e in then]:
        return [f"HATS catalogues: {_hats_names(now)} now, {_hats_names(then)} before"]
    out = []
    for a, b in zip(now, then):
        changed = [key for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
        if {"inputs", "pixels"} & set(changed):
            out.append(f"HATS catalogue {a['catalog']}: other partitions ({len(a['inputs'])} files now, "
                       f"{len(b['inputs'])} before)")
        for key in changed:
            if key not in ("inputs", "pixels"):
                name = "lamfast_xp_units (hats.properties)" if key == "xp_units" else key
                out.append(f"HATS catalogue {a['catalog']}: {name} {a.get(key)!r} now, {b.get(key)!r} before")
    return out


def _hats_names(entries: list[dict]) -> str:
    return ", ".join(f"{e['catalog']} ({len(e['inputs'])} partition files)" for e in entries) or "none"


def plan_units(paths: Sequence[Path], chunk_rows: int) -> tuple[list[str], list[WorkUnit]]:
    """Formats and work units of the files (every row in exactly one unit, in order)."""
    from ..io.dispatch import detect_catalog_format

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


def check_parquet_inputs(paths: Sequence[Path], formats: Sequence[str], phot_columns: set[str],
                         photometry: bool = False, default_xp_units: Sequence[str | None] | None = None) -> None:
    """ValueError naming the file, from the Parquet inputs' schemas alone, if one's XP
    coefficients are e-/s with no G to gnorm them (no phot_g_mean_mag column, and none in
    ``phot_columns``, the columns the photometry files give; ``photometry``: the job has
    photometry files, for the message), or if one has a token column that the photometry
    adds (which to trust is the user's choice, never a silent one). ``default_xp_units``:
    per path, the units of a file that declares none (:meth:`LabelPlan.default_xp_units`)."""
    import pyarrow.parquet as pq

    from ..io.parquet import check_parquet_xp_units, parquet_token_columns
    from ..io.photometry_join import G_COLUMN, photometry_tokens

    added = photometry_tokens(phot_columns) if phot_columns else []
    defaults = [None] * len(paths) if default_xp_units is None else default_xp_units
    for path, fmt, default in zip(paths, formats, defaults):
        if fmt != "parquet":
            continue
        both = [c for c in parquet_token_columns(pq.read_schema(path)) if c in added]
        if both:
            raise ValueError(f"{path}: has the token column(s) {both}, which the photometry files also "
                             "give; drop them from the file or leave out the photometry that makes them "
                             "(bprp: bp_rp or phot_bp/rp_mean_mag; jh, jk: 2MASS; g_fakemag: parallax)")
        try:
            check_parquet_xp_units(path, photometry=G_COLUMN in phot_columns, default_xp_units=default)
        except ValueError as e:
            none = "; none of this job's photometry files has phot_g_mean_mag" if photometry else ""
            raise ValueError(f"{e} In lamfast label: give G by a photometry file with source_id and "
                             f"phot_g_mean_mag (--photometry FILE; photometry=[FILE]){none}.") from None


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


# ---- shards ---------------------------------------------------------------------------------

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
    k, n = parse_shard(shard)  # a raw (K, N) is checked too: (-1, 4) would take the last unit
    return list(range(k, n_units, n))


# ---- the parts folder -----------------------------------------------------------------------

def parts_dir(output: str | os.PathLike) -> Path:
    """``OUT.parts``: the folder of per-unit results beside the output file."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def part_path(parts: Path, i: int) -> Path:
    """The result file of unit ``i`` in the parts folder ``parts``."""
    return parts / f"unit-{i:06d}.npz"


def ensure_plan(parts: Path, plan: LabelPlan) -> None:
    """Store the plan in ``parts``, or check that the one stored there is the same if
    results of it exist (ValueError saying what differs otherwise: parts of two plans never mix)."""
    path = parts / PLAN_FILE
    if path.is_file() and any(parts.glob("unit-*.npz")):  # a plan without results may be replaced
        try:
            stored = LabelPlan.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{parts} holds work of a plan this lamfast cannot read ({e}); delete "
                             "it or choose another output") from None
        diff = plan.differences(stored)
        if diff:
            raise ValueError(f"{parts} holds work of a different labelling plan: {'; '.join(diff)}; "
                             "rerun with the settings of that plan, delete the folder, or choose "
                             "another output")
        return
    parts.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(plan.to_dict(), indent=1))
    except OSError as e:
        raise write_error(path, e, "rerun (nothing was computed yet)") from e


@contextlib.contextmanager
def parts_folder(parts: Path, plan: LabelPlan):
    """:func:`ensure_plan`, then run the ``with`` block; if the block fails before any part
    is finished, remove the folder again if this call created it (nothing in it to resume)."""
    created = not parts.exists()
    ensure_plan(parts, plan)
    try:
        yield parts
    except BaseException:
        if created and not any(parts.glob("unit-*.npz")):
            (parts / PLAN_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # another job's files are there: keep it
                parts.rmdir()
        raise


def read_plan(parts: Path) -> LabelPlan:
    """The plan stored in ``parts`` (FileNotFoundError if there is none)."""
    path = parts / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nothing to merge: {path} does not exist (run lamfast label first)")
    return LabelPlan.from_dict(json.loads(path.read_text()))
