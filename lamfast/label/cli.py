"""``lamfast label``: the command line of :func:`lamfast.label`, :func:`lamfast.label.merge`
and :func:`lamfast.distributed.label_distributed`."""

from __future__ import annotations

from .output import merge
from .run import label


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
    """Run ``lamfast label`` with the parsed ``args``; prints the summary."""
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
        from ..distributed import label_distributed

        summary = label_distributed(args.inputs, scheduler=args.scheduler, workers=args.workers,
                                    gpus_per_worker=args.gpus_per_worker, retries=args.retries, **common)
    else:
        summary = label(args.inputs, shard=args.shard, **common)
    print(summary)
    return 0
