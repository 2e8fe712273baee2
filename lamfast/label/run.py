"""Running a labelling job: :func:`label`, and :func:`run_units`, which computes work units
into ``OUT.parts`` (also the task body of :mod:`lamfast.distributed`).

**Execution.** Units are read and tokenized on a background thread, ``prefetch`` units
ahead of the device, and each unit's predictions are written atomically to
``OUT.parts/unit-NNNNNN.npz`` (temporary file + fsync + rename), then its sha256 to
``unit-NNNNNN.npz.sha256`` (:mod:`.parts`). ``resume=True`` skips units whose part exists
with that checksum (a truncated or changed part is computed again), so a job killed at any moment (even ``kill -9``) and rerun with
``resume`` produces the same output as an uninterrupted run; a resumed job whose plan
differs from the one its parts (or its finished output) were made with refuses, saying
what differs. A run without ``shard`` then
merges (:func:`lamfast.label.merge`); after sharded runs ``lamfast label --merge OUT``
checks that every unit has its part and writes ``OUT``. An existing ``OUT`` is replaced only
with ``overwrite``. Whatever a job needs (the output's writer library, the model, the
inputs) is checked before the first unit is computed, and a job that fails before any part
is finished removes the ``OUT.parts`` it created.

**Memory bound** (independent of the catalogue size): at most ``prefetch + 2`` units live
at once (queued, being read, being predicted), each about ``chunk_rows x (8 C + 8 V)``
bytes for the reader's catalogue (C catalogue columns, values and errors in float32) and
its V input columns, plus the packed tokens (8 bytes per token), plus the activations of
one micro-batch of ``batch_size`` stars, plus the merge's 65,536-row write buffer. For the
paper's HDF5 layout (C = 118) with the defaults (chunk_rows 65,536, prefetch 2) that is
about 4 x 65,536 x ~2.4 kB = 0.6 GB beyond the model. A file that can only be read whole
is one unit, so its own size bounds memory instead.

**Photometry** (``photometry=[FILE, ...]``, ``--photometry``): the Gaia archive's XP
files hold no photometry, so G (for gnorm), BP-RP, the 2MASS magnitudes and the parallax
are joined to the XP inputs (and to Parquet inputs: to gnorm an archive-style e-/s file
without G, or to add colours to lamfast's gnorm files) by source_id from these files
(:class:`lamfast.io.photometry_join.PhotometryJoin`, made once per job, or once per Dask
worker, and shared by every unit. A file that declares its source_id range, by its Parquet
statistics or by the archive's HEALPix range in its name, is read only by the units that
need its stars and then cached; the cache, 1 GB by default, bounds that memory. Other files
are kept whole, at ~44 bytes per star for gaia_source's columns. See that module.). Stars a file lacks get its tokens missing, never
dropped; a star without G keeps its colours but its XP coefficients cannot be gnormed and
count as missing (the output's ``no_g`` column, counted in the summary and the metadata's
``no_g_rows``).

Test hook: the environment variable ``LAMFAST_LABEL_UNIT_SLEEP`` (seconds) makes the job
sleep after each unit it writes, so tests can kill it between units.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..columns import model_input_columns
from .lock import output_lock
from .output import check_output_plan, check_overwrite, check_writer, finished_output, merge
from .plan import LabelPlan, WorkUnit, make_plan, parse_shard, part_path, parts_dir, parts_folder, shard_units
from .parts import commit_part, part_done
from .summary import LabelSummary

UNIT_SLEEP_ENV = "LAMFAST_LABEL_UNIT_SLEEP"


def label(inputs, *, model: str | os.PathLike = "default", request: Sequence[str] = ("teff", "logg", "m_h"),
          output: str | os.PathLike, columns: Sequence[str] | None = None, batch_size: int | None = None,
          device: str = "auto", precision: str = "auto", shard=None, resume: bool = False,
          overwrite: bool = False, chunk_rows: int = 65536, prefetch: int = 2, threads: int | None = None,
          progress: bool = True, photometry=None) -> LabelSummary:
    """Label catalogue files with a trained model, file to file (see :mod:`lamfast.label`).

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
    precision : ``"fp32"``, ``"bf16"`` (autocast), ``"auto"`` (bf16 on CUDA and on CPUs with
        bf16 GEMMs, AVX-512 BF16 or AMX; fp32 on other CPUs).
    shard : ``(K, N)`` or ``"K/N"``: compute only units K, K+N, ... and do not merge.
    resume : skip units already done (and return at once if ``output`` is already the
        merged result of the same plan). ValueError saying what differs if the parts in
        ``OUT.parts`` or the finished ``output`` were made with another plan.
    overwrite : replace an existing ``output`` (else FileExistsError, unless ``resume``
        finds it finished with the same plan).
    chunk_rows : rows per work unit where the format can be read in parts.
    prefetch : units read and tokenized ahead of the model (memory: see the module doc).
    threads : tokenizer threads (default: 1 when the model runs on the CPU, which needs the
        cores, else :func:`lamfast.get_num_threads`).
    progress : show a tqdm bar with stars/s.
    photometry : files (or globs) of Gaia photometry keyed by ``source_id`` (any table
        lamfast reads), joined to the Gaia XP_CONTINUOUS and Parquet inputs: ``phot_g_mean_mag`` (gnorm),
        ``bp_rp`` or ``phot_bp_mean_mag``/``phot_rp_mean_mag``, 2MASS ``j_m``/``h_m``/``ks_m``,
        ``parallax`` (see :mod:`lamfast.io.photometry_join`). Part of the plan: ``resume``
        refuses a changed set.

    Returns
    -------
    LabelSummary: rows and flagged rows computed, units done/skipped, wall time,
    throughput, per-stage seconds, stars without G and stars joined from each photometry file.

    Raises :class:`lamfast.label.lock.OutputLockedError` if another job is writing
    ``output``, and OSError naming the file (finished parts kept) if a write fails, e.g.
    on a full disk.
    """
    t0 = time.perf_counter()
    output = Path(output)
    check_writer(output)  # a bad name or a missing writer fails before the model loads
    shard = parse_shard(shard)
    with output_lock(output, shared=shard is not None):   # one job per output (shards share it)
        return _label(inputs, model, request, output, columns, batch_size, device, precision, shard, resume,
                      overwrite, chunk_rows, prefetch, threads, progress, photometry, t0)


def _label(inputs, model, request, output: Path, columns, batch_size, device, precision, shard, resume,
           overwrite, chunk_rows, prefetch, threads, progress, photometry, t0) -> LabelSummary:
    from ..infer import Predictor, load_model

    if not resume:
        check_overwrite(output, overwrite)
    lam = load_model(model)
    predictor = Predictor(lam, request, device=device, precision=precision, batch_size=batch_size)
    plan = make_plan(inputs, model, lam, predictor.request, columns, precision, chunk_rows, photometry)
    check_output_plan(output, plan)
    if resume:
        meta = finished_output(output, plan)
        if meta is not None:
            summary = LabelSummary.already_merged(output, len(plan.units), meta)
            summary.wall_s = time.perf_counter() - t0
            return summary
    join = photometry_join(plan)   # bad photometry fails before OUT.parts is made
    with parts_folder(parts_dir(output), plan) as parts:
        summary = run_units(plan, shard_units(len(plan.units), shard), predictor, parts, resume=resume,
                            progress=progress, prefetch_depth=prefetch, threads=threads, photometry=join)
        if shard is None:
            summary.add_merge(merge(output, overwrite=overwrite))
    summary.wall_s = time.perf_counter() - t0
    return summary


def run_units(plan: LabelPlan, indices: Sequence[int], predictor, parts: Path, *, resume: bool,
              progress: bool = True, prefetch_depth: int = 2, threads: int | None = None,
              photometry=None) -> LabelSummary:
    """Compute the units ``indices`` of ``plan`` into ``parts`` (skipping finished ones if
    ``resume``). The model runs on this thread; reading and tokenizing on a background one.

    Parameters
    ----------
    plan : the job's plan, already stored in ``parts`` (:func:`lamfast.label.ensure_plan`).
    indices : units to compute, e.g. :func:`lamfast.label.shard_units` of a shard.
    predictor : :class:`lamfast.infer.Predictor` of the plan's model and request.
    parts : the parts folder (:func:`lamfast.label.parts_dir` of the output).
    photometry : the plan's :func:`photometry_join` (loaded here if the plan has
        photometry files and none is given; pass it to share one between calls).

    Returns
    -------
    LabelSummary of the units computed here (``output`` None: nothing is merged).
    """
    from .._prefetch import prefetch

    if threads is None and predictor.device.type == "cpu":
        threads = 1  # the model needs the cores; tokenizing is ~1% of its cost, and
        #              oversubscribed OpenMP threads of torch slow down many-fold
    t_start = time.perf_counter()
    if photometry is None:
        photometry = photometry_join(plan)
    summary = LabelSummary(None, units_total=len(plan.units), photometry=list(plan.photometry),
                           photometry_joined=[0] * len(plan.photometry))
    pending = [i for i in indices if not (resume and part_done(part_path(parts, i)))]
    summary.units_skipped = len(indices) - len(pending)
    sizes = [plan.units[i].n_rows for i in pending]
    bar = _progress_bar(None if None in sizes else sum(sizes), progress)
    sleep = float(os.environ.get(UNIT_SLEEP_ENV, "0") or 0)
    computed_with = f"{predictor.device.type}/{predictor.precision}"
    try:
        for loaded in prefetch((_load_unit(plan, i, predictor, threads, photometry) for i in pending),
                               prefetch_depth):
            t0 = time.perf_counter()
            value, error = predictor.run(loaded.prepared)
            t1 = time.perf_counter()
            no_input = loaded.prepared.no_input
            _write_part(part_path(parts, loaded.index), loaded.index, plan.units[loaded.index], loaded,
                        value, error, computed_with)
            t2 = time.perf_counter()
            tm = summary.timings
            tm["read"] += loaded.read_s
            tm["tokenize"] += loaded.tokenize_s
            tm["model"] += t1 - t0
            tm["write"] += t2 - t1
            summary.rows += len(no_input)
            summary.flagged += int(no_input.sum())
            if loaded.no_g is not None:
                summary.no_g += int(loaded.no_g.sum())
            if loaded.joined is not None:
                summary.photometry_joined = [a + int(b) for a, b in zip(summary.photometry_joined, loaded.joined)]
            summary.units_done += 1
            bar.update(len(no_input))
            if sleep:
                time.sleep(sleep)
    finally:
        bar.close()
    summary.wall_s = time.perf_counter() - t_start
    return summary


def read_unit(plan: LabelPlan, unit: WorkUnit, photometry=None):
    """The :class:`lamfast.io.Catalog` of one work unit; an XP or Parquet unit of a plan
    with photometry files is joined to ``photometry`` (the plan's :func:`photometry_join`,
    loaded here if None), its ``meta["photometry_joined"]`` the stars found in each file
    (int64 [F]). A Parquet file without lamfast.xp_units is read in the units its HATS
    catalogue declares, if it does (:meth:`LabelPlan.default_xp_units`)."""
    path = plan.inputs[unit.file]
    fmt = plan.formats[unit.file]
    if fmt in ("xp", "parquet") and plan.photometry:
        from ..io.photometry_join import read_parquet_joined, read_xp_joined

        join = photometry if photometry is not None else photometry_join(plan)
        if fmt == "xp":
            cat, joined = read_xp_joined(path, join)
        else:
            cat, joined = read_parquet_joined(path, join, row_groups=list(range(*unit.row_groups)),
                                              default_xp_units=plan.default_xp_units(unit.file))
        cat.meta["photometry_joined"] = joined
    elif fmt == "paper_hdf5":
        from ..io.paper_hdf5 import read_paper_hdf5

        cat = read_paper_hdf5(path, slice(unit.start, unit.stop))
    elif fmt == "parquet":
        from ..io.parquet import read_parquet

        cat = read_parquet(path, row_groups=list(range(*unit.row_groups)),
                           default_xp_units=plan.default_xp_units(unit.file))
    else:
        from ..io.dispatch import read_catalog

        cat = read_catalog(path, format=fmt)
    if unit.n_rows is not None and len(cat) != unit.n_rows:
        raise ValueError(f"{path}: expected {unit.n_rows} rows at {unit.start}:{unit.stop}, read "
                         f"{len(cat)} (did the file change since the plan was made?)")
    return cat


def photometry_join(plan: LabelPlan):
    """The :class:`lamfast.io.photometry_join.PhotometryJoin` of the plan's photometry
    files (None if it has none); ValueError if a file changed since the plan was made."""
    if not plan.photometry:
        return None
    from ..io.photometry_join import PhotometryJoin

    for path, size, mtime in zip(plan.photometry, plan.photometry_sizes, plan.photometry_mtimes):
        st = Path(path).stat()
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise ValueError(f"photometry file {path} changed since the labelling plan was made "
                             f"({st.st_size} bytes now, {size} in the plan)")
    return PhotometryJoin(plan.photometry)


# ---- one unit -------------------------------------------------------------------------------

@dataclass
class _Loaded:
    index: int
    source_id: np.ndarray
    input_row: np.ndarray
    prepared: object                # infer.PreparedChunk
    read_s: float
    tokenize_s: float
    no_g: np.ndarray | None         # bool [N]: rows without G (coefficients missing); None: not e-/s XP
    joined: np.ndarray | None       # int64 [F]: rows found in each photometry file; None: no photometry


def _load_unit(plan: LabelPlan, i: int, predictor, threads: int | None, photometry) -> _Loaded:
    from ..batch import Batch
    from ..tokenizer import tokenize

    unit, path = plan.units[i], plan.inputs[plan.units[i].file]
    t0 = time.perf_counter()
    cat = read_unit(plan, unit, photometry)
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
    # the no_g flag where the XP coefficients were e-/s, gnormed on reading with each star's G
    gnormed = plan.formats[unit.file] == "xp" or cat.meta.get("xp_units_in_file") == "flux"
    no_g = np.isnan(cat.extra["phot_g_mean_mag"]) if gnormed else None
    joined = cat.meta.get("photometry_joined", np.zeros(len(plan.photometry), np.int64)) if plan.photometry else None
    return _Loaded(i, cat.source_id, rows, prepared, t1 - t0, t2 - t1, no_g, joined)


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


def _write_part(path: Path, index: int, unit: WorkUnit, loaded: _Loaded, value, error, computed_with: str) -> None:
    extra = {}   # only where they apply: parts of other jobs stay as they were
    if loaded.no_g is not None:
        extra["no_g"] = np.asarray(loaded.no_g, bool)
    if loaded.joined is not None:
        extra["photometry_joined"] = np.asarray(loaded.joined, np.int64)
    commit_part(path, lambda f: np.savez(
        f, unit=np.array([index, unit.file, unit.start], dtype=np.int64),
        source_id=np.asarray(loaded.source_id, np.int64), input_row=loaded.input_row,
        value=value.astype(np.float32), error=error.astype(np.float32), no_input=loaded.prepared.no_input,
        computed_with=np.array(computed_with), **extra))


def _progress_bar(total, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="star", unit_scale=True, disable=not enabled, desc="labelling",
                dynamic_ncols=True, smoothing=0.1)
