"""``lamfast label``: the command line of :func:`lamfast.label`, :func:`lamfast.label.merge`
and :func:`lamfast.distributed.label_distributed`."""

from __future__ import annotations

import sys

from .lock import OutputLockedError
from .output import merge
from .parts import is_disk_full
from .run import label


def add_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="label catalogue files with a trained model (streaming, resumable, sharded)",
        description="Predict tokens (default Teff, logg, [M/H]) of every star of catalogue files into "
                    "one Parquet or HDF5 file. Resumable per work unit (--resume); --shard K/N splits "
                    "the work over N jobs, then `lamfast label --merge OUT` checks coverage and writes OUT.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="catalogue files or globs (quote globs), or HATS catalogue folders; none with --merge")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", "-o", metavar="OUT",
                       help="required: the output file, OUT.parquet or OUT.h5, or a HATS catalogue folder "
                            "(OUT without a suffix, or OUT.hats: the input's partitioning; the input must be one "
                            "HATS catalogue); work in progress goes to OUT.parts/")
    where.add_argument("--merge", metavar="OUT",
                       help="instead of labelling: merge the finished shards of OUT (no INPUT)")
    p.add_argument("--photometry", nargs="+", default=None, metavar="FILE",
                   help="Gaia photometry keyed by source_id to join to Gaia XP_CONTINUOUS and Parquet inputs "
                        "(files or quoted globs; CSV/ECSV/FITS/VOTable, gzipped or not, Parquet, or HATS "
                        "catalogue folders): "
                        "phot_g_mean_mag (needed to gnorm e-/s coefficients), bp_rp or phot_bp/rp_mean_mag, "
                        "2MASS j_m/h_m/ks_m, parallax (default: none; inputs in e-/s must then carry "
                        "phot_g_mean_mag)")
    p.add_argument("--model", default="default",
                   help="'default' or a model folder written by training (default: the shipped model)")
    p.add_argument("--request", nargs="+", default=["teff", "logg", "m_h"], metavar="TOKEN",
                   help="tokens to predict for every star (default: teff logg m_h)")
    p.add_argument("--columns", nargs="+", default=None, metavar="TOKEN",
                   help="input columns (default: every column the model knows, except the requested ones)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: %(default)s: a GPU if there is one)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="arithmetic of the model (default: %(default)s: bf16 on GPUs and on CPUs with bf16 GEMMs, "
                        "AVX-512 BF16 or AMX; fp32 on other CPUs)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="stars per forward pass (default: 256 on CPUs, 4096 on GPUs)")
    p.add_argument("--chunk-rows", type=int, default=65536, metavar="N",
                   help="rows per work unit, the step of resuming and sharding (default: %(default)s)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="do work units K, K+N, ... only (0 <= K < N) and do not merge (default: all units)")
    p.add_argument("--resume", action="store_true",
                   help="skip work units already done; refused if the settings or inputs changed "
                        "(default: off, every unit is computed)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists (default: off, an existing OUT is an error)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler (default: none, this process); needs "
                        'pip install "lamfast[dask]"')
    p.add_argument("--workers", type=int, metavar="N",
                   help='run on a local Dask cluster of N workers (default: none, this process); needs '
                        'pip install "lamfast[dask]"')
    p.add_argument("--gpus-per-worker", type=int, default=0, metavar="G",
                   help="Dask: GPUs per worker; each partition then takes one GPU (default: %(default)s)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="Dask: retries of a failed partition (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    """Run ``lamfast label`` with the parsed ``args``; prints the summary."""
    try:
        print(_label(args))
    except (FileExistsError, ImportError, OutputLockedError) as e:  # user errors too: one clear line, exit 2
        print(f"lamfast label: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not is_disk_full(e):
            raise
        print(f"lamfast label: error: {e}", file=sys.stderr)   # names the file; finished parts are kept
        return 1
    return 0


def _label(args):
    if args.merge:
        if args.inputs:
            raise ValueError("--merge OUT takes no INPUT")
        return merge(args.merge, overwrite=args.overwrite)
    if not args.inputs:
        raise ValueError("give at least one INPUT file (or --merge OUT)")
    common = dict(model=args.model, request=args.request, output=args.output, columns=args.columns,
                  batch_size=args.batch_size, device=args.device, precision=args.precision,
                  resume=args.resume, overwrite=args.overwrite, chunk_rows=args.chunk_rows,
                  progress=not args.no_progress, photometry=args.photometry)
    if args.scheduler or args.workers:
        if args.shard:
            raise ValueError("--shard is for independent jobs; with Dask the cluster shares the work")
        from ..distributed import label_distributed

        return label_distributed(args.inputs, scheduler=args.scheduler, workers=args.workers,
                                 gpus_per_worker=args.gpus_per_worker, retries=args.retries, **common)
    return label(args.inputs, shard=args.shard, **common)
