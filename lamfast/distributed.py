"""Label many partitions (files) on a dask.distributed cluster (optional extra ``[dask]``).

The driver makes the same plan as :func:`lamfast.label` and stores it in ``OUT.parts``;
then one task per partition (input file) computes that file's work units with
:func:`lamfast.label.run_units`, each unit written atomically as in a local job: only the
public steps of :mod:`lamfast.label`, the ones any scheduler of your own would use. A task
skips units already done, so a retried task (``retries``) only redoes what its failed
attempt had not finished, and a rerun with ``resume=True`` after a crash of anything
(worker, scheduler, driver) submits only unfinished partitions. When all tasks are done
the driver merges: coverage checked, output written atomically.

GPUs: with ``gpus_per_worker=G`` each worker advertises the resource ``GPU=G`` and every
partition task asks for ``GPU=1``, so a worker runs at most G partitions at once. Give
each worker its own GPUs (``CUDA_VISIBLE_DEVICES``, as dask-cuda's ``LocalCUDACluster``
does); a task uses ``device`` ("auto": the worker's first visible GPU).

dask is imported only inside these functions, so ``import lamfast`` never needs it; a job
checks that it imports (and the output's writer library) before loading the model.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from .label import (LabelPlan, LabelSummary, check_output_plan, check_overwrite, check_writer, finished_output, make_plan, merge,
                    output_lock, part_done, part_path, parts_dir, parts_folder, remove_part, run_units)

_JOIN: dict = {}                   # "key", "join": the photometry join of this worker (one at a time)
_JOIN_LOCK = threading.Lock()


def label_distributed(inputs, *, model: str | os.PathLike = "default",
                      request: Sequence[str] = ("teff", "logg", "m_h"), output: str | os.PathLike,
                      columns: Sequence[str] | None = None, batch_size: int | None = None, device: str = "auto",
                      precision: str = "auto", resume: bool = False, overwrite: bool = False,
                      chunk_rows: int = 65536,
                      scheduler: str | None = None, workers: int | None = None, processes: bool = True,
                      threads_per_worker: int = 1, gpus_per_worker: int = 0, retries: int = 2,
                      threads: int | None = None, progress: bool = True, client=None,
                      photometry=None) -> LabelSummary:
    """:func:`lamfast.label` on a Dask cluster, one task per input file.

    Parameters (beyond those of :func:`lamfast.label`)
    --------------------------------------------------
    scheduler : address of a running scheduler (``tcp://host:8786``), or
    workers : start a ``LocalCluster`` of this many workers (``processes``,
        ``threads_per_worker`` as in ``LocalCluster``), or
    client : an existing ``distributed.Client``.
    gpus_per_worker : > 0: workers advertise ``GPU=gpus_per_worker`` (LocalCluster) and each
        task asks for ``GPU=1``.
    retries : times Dask reruns a failed partition before giving up.
    photometry : as :func:`lamfast.label`; every worker loads the photometry once (cached
        per worker process while the job's files are the same) and shares it among its tasks.

    Raises ModuleNotFoundError (what to install) if dask.distributed does not import.

    Returns
    -------
    LabelSummary of the whole job (counters summed over the tasks; stage seconds are
    summed over workers, so they can exceed the wall time).
    """

    if sum(x is not None for x in (scheduler, workers, client)) != 1:
        raise ValueError("give exactly one of scheduler=ADDRESS, workers=N or client=")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    if not isinstance(gpus_per_worker, int) or gpus_per_worker < 0:
        raise ValueError(f"gpus_per_worker must be a non-negative int, got {gpus_per_worker!r}")
    check_dask()
    t0 = time.perf_counter()
    output = Path(output)
    check_writer(output)  # a bad name or a missing writer fails before the model loads
    with output_lock(output):  # one job per output, held by the driver for the whole job
        return _label_distributed(inputs, model, request, output, columns, batch_size, device, precision,
                                  resume, overwrite, chunk_rows, t0, progress, retries,
                                  cluster=dict(scheduler=scheduler, workers=workers, client=client,
                                               processes=processes, threads_per_worker=threads_per_worker,
                                               gpus_per_worker=gpus_per_worker), threads=threads,
                                  photometry=photometry)


def _label_distributed(inputs, model, request, output: Path, columns, batch_size, device, precision, resume,
                       overwrite, chunk_rows, t0, progress, retries, *, cluster: dict,
                       threads, photometry) -> LabelSummary:
    from .infer import load_model

    if not resume:
        check_overwrite(output, overwrite)
    lam = load_model(model)                        # on the driver: validation and the plan only
    plan = make_plan(inputs, model, lam, request, columns, precision, chunk_rows, photometry)
    check_output_plan(output, plan)
    del lam
    if resume:
        meta = finished_output(output, plan)
        if meta is not None:
            summary = LabelSummary.already_merged(output, len(plan.units), meta)
            summary.wall_s = time.perf_counter() - t0
            return summary
    with parts_folder(parts_dir(output), plan) as parts:
        summary = _label_on_cluster(
            plan, parts, model, resume=resume, cluster=cluster, retries=retries, progress=progress,
            task_kwargs=dict(device=device, precision=precision, batch_size=batch_size, threads=threads))
        summary.add_merge(merge(output, overwrite=overwrite))
    summary.wall_s = time.perf_counter() - t0
    return summary


def check_dask() -> None:
    """ModuleNotFoundError saying which extra to install if dask.distributed does not import."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise ModuleNotFoundError(f"running on a Dask cluster (--workers, --scheduler) needs dask.distributed, "
                                  f'which does not import ({e}): pip install "lamfast[dask]"') from e


def _label_on_cluster(plan: LabelPlan, parts: Path, model, *, resume: bool, cluster: dict, retries: int,
                      progress: bool, task_kwargs: dict) -> LabelSummary:
    """Compute the unfinished partitions of ``plan`` into ``parts`` (no merge) on the cluster
    that ``cluster`` (the scheduler/workers/client arguments of :func:`label_distributed`) names."""
    from .resources import resolve_model

    summary = LabelSummary(None, units_total=len(plan.units), photometry=list(plan.photometry),
                           photometry_joined=[0] * len(plan.photometry))
    by_file: dict[int, list[int]] = {}
    for i, unit in enumerate(plan.units):
        if not resume:  # a fresh run: forget earlier results (tasks skip what exists)
            remove_part(part_path(parts, i))
        by_file.setdefault(unit.file, []).append(i)
    pending = {f: u for f, u in by_file.items() if not all([part_done(part_path(parts, i)) for i in u])}
    summary.units_skipped = sum(len(u) for f, u in by_file.items() if f not in pending)

    own_cluster, client, gpus = None, cluster["client"], cluster["gpus_per_worker"]
    if client is None:
        from distributed import Client, LocalCluster

        if cluster["workers"] is not None:
            own_cluster = LocalCluster(n_workers=cluster["workers"], threads_per_worker=cluster["threads_per_worker"],
                                       processes=cluster["processes"], dashboard_address=None,
                                       resources={"GPU": gpus} if gpus else None)
            client = Client(own_cluster)
        else:
            client = Client(cluster["scheduler"])
    try:
        _run_tasks(client, plan, pending, str(resolve_model(model)), parts, summary, retries=retries,
                   gpu=gpus > 0, progress=progress, task_kwargs=task_kwargs)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
    return summary


def label_partition(plan_dict: dict, units: Sequence[int], model_path: str, parts: str, *,
                    device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                    threads: int | None = None) -> dict:
    """One Dask task: compute ``units`` (one input file's) of the plan into ``parts``,
    skipping those already done. Returns the job counters of :class:`LabelSummary`."""
    from .infer import Predictor, shared_model

    plan = LabelPlan.from_dict(plan_dict)
    lam = shared_model(model_path, device, plan.model_sha256)  # once per worker process
    predictor = Predictor(lam, plan.request, device=device, precision=precision, batch_size=batch_size)
    s = run_units(plan, units, predictor, Path(parts), resume=True, progress=False, threads=threads,
                  photometry=_photometry(plan))
    return {"rows": s.rows, "flagged": s.flagged, "units_done": s.units_done,
            "units_skipped": s.units_skipped, "timings": s.timings, "no_g": s.no_g,
            "photometry_joined": s.photometry_joined}


def _photometry(plan: LabelPlan):
    """The plan's photometry join of this worker, loaded once per process and kept while
    the plan's photometry files (paths, sizes, mtimes) stay the same: tasks share it, and
    a job with other files replaces it (one held at a time bounds the worker's memory)."""
    if not plan.photometry:
        return None
    from .label import photometry_join

    key = (tuple(plan.photometry), tuple(plan.photometry_sizes), tuple(plan.photometry_mtimes))
    with _JOIN_LOCK:
        if _JOIN.get("key") != key:
            _JOIN.clear()                       # free the old one before loading the new
            _JOIN.update(key=key, join=photometry_join(plan))
        return _JOIN["join"]


def _run_tasks(client, plan, pending: dict, model_path: str, parts: Path, summary: LabelSummary, *,
               retries: int, gpu: bool, progress: bool, task_kwargs: dict) -> None:
    from concurrent.futures import CancelledError
    from distributed import as_completed
    from tqdm.auto import tqdm

    plan_dict = plan.to_dict()
    run = f"{plan.digest()[:12]}-{uuid.uuid4().hex[:8]}"  # unique: never a cached result of a past run
    futures = {}
    for f, units in pending.items():
        future = client.submit(label_partition, plan_dict, units, model_path, str(parts), **task_kwargs,
                               key=f"lamfast-label-{run}-{f}", retries=retries, pure=False,
                               resources={"GPU": 1} if gpu else None)
        futures[future] = f
    failed = []
    with tqdm(total=len(futures), unit="partition", disable=not progress, desc="labelling") as bar:
        for future in as_completed(futures):
            try:
                stats = future.result()
            except CancelledError as e:  # the scheduler went away (or the client closed)
                raise RuntimeError(f"lost the Dask scheduler while labelling ({type(e).__name__}: {e}); "
                                   "finished units are kept, rerun with resume to do the rest") from e
            except Exception as e:  # after Dask's retries (a worker killed too often: KilledWorker)
                failed.append((plan.inputs[futures[future]], e))
                continue
            finally:
                bar.update(1)
            for k in ("rows", "flagged", "units_done", "units_skipped", "no_g"):
                setattr(summary, k, getattr(summary, k) + stats[k])
            summary.photometry_joined = [a + b for a, b in zip(summary.photometry_joined, stats["photometry_joined"])]
            for k, v in stats["timings"].items():
                summary.timings[k] += v
    if failed:
        path, error = failed[0]
        raise RuntimeError(f"{len(failed)} partition(s) failed after {retries} retries, e.g. {path}: "
                           f"{type(error).__name__}: {error}; finished units are kept, rerun with "
                           "resume to do the rest") from error
