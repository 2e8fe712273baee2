"""``lamfast task generate|inpaint|loci|extinction|all``: run the paper's other tasks."""

from __future__ import annotations

import json

from .report import TASKS


MAX_STARS = 2000   # --max-stars when --catalog is given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "task", help="run the paper's other tasks (generate XP, inpaint, loci, extinction)",
        description="Run the paper's tasks beyond labelling on a model: generate Gaia XP "
                    "spectra from Teff, logg and [M/H], inpaint missing XP coefficients, trace "
                    "the stellar loci it learned (giant branch, main sequence) and derive its "
                    "extinction curve. Each task writes a PNG and its numbers to OUT/tasks.json "
                    "and OUT/tasks.md, scored on the bundled 1,000-star sample or on stars of a "
                    "--catalog file.")
    p.add_argument("name", choices=(*TASKS, "all"), help="which task ('all' = the four)")
    p.add_argument("--model", default="default", help="'default' or a saved model folder")
    p.add_argument("--catalog", default=None,
                   help="paper-layout HDF5 to score on (default: the bundled 1,000-star sample)")
    p.add_argument("--split", type=int, default=None, choices=(0, 1, 2),
                   help="with --catalog: keep only rows of this split (0 train, 1 validation, 2 test)")
    p.add_argument("--max-stars", type=int, default=None, metavar="N",
                   help=f"with --catalog: use at most N stars, an even subset (default: {MAX_STARS})")
    p.add_argument("--out", default="lamfast-tasks", help="output folder (PNGs, tasks.json, tasks.md)")
    p.add_argument("--teff", type=float, help="generate: also write the spectrum of this Teff [K]")
    p.add_argument("--logg", type=float, help="generate: logg [dex] of that star")
    p.add_argument("--m-h", type=float, help="generate: [M/H] [dex] of that star")
    p.add_argument("--logebv", type=float, help="generate: ln E(B-V) of that star (optional)")
    p.set_defaults(func=_main, _parser=p)


def _check_args(args) -> None:
    """--split and --max-stars pick rows of --catalog; without it they would be ignored."""
    alone = [flag for flag, value in (("--split", args.split), ("--max-stars", args.max_stars))
             if value is not None]
    if alone and args.catalog is None:
        args._parser.error(f"{' and '.join(alone)} need{'s' if len(alone) == 1 else ''} --catalog "
                           "(the bundled sample is always scored whole)")
    if args.max_stars is not None and args.max_stars < 1:
        args._parser.error(f"--max-stars must be at least 1, got {args.max_stars}")
    star = [flag for flag, value in (("--teff", args.teff), ("--logg", args.logg), ("--m-h", args.m_h),
                                     ("--logebv", args.logebv)) if value is not None]
    if star and args.name != "generate":
        args._parser.error(f"{', '.join(star)}: only `lamfast task generate` writes a spectrum")
    if star and (args.teff is None or args.logg is None or args.m_h is None):
        args._parser.error("the generated spectrum needs all of --teff, --logg and --m-h")


def _main(args) -> int:
    _check_args(args)
    import numpy as np

    from .common import as_model
    from .report import run_all

    model = as_model(args.model)
    catalog = None
    if args.catalog is not None:
        from ..io.paper_hdf5 import read_paper_hdf5

        catalog = read_paper_hdf5(args.catalog)
        if args.split is not None:
            if "split" not in catalog.extra:
                raise ValueError(f"{args.catalog} has no split column")
            catalog = catalog.rows(np.asarray(catalog.extra["split"]) == args.split)
        max_stars = MAX_STARS if args.max_stars is None else args.max_stars
        if len(catalog) > max_stars:   # an even, reproducible subset
            catalog = catalog.rows(np.linspace(0, len(catalog) - 1, max_stars).astype(int))
    results = run_all(model, args.out, catalog, TASKS if args.name == "all" else (args.name,))
    if args.name == "generate" and args.teff is not None:
        _write_one_spectrum(model, args)
    print((__import__("pathlib").Path(args.out) / "tasks.md").read_text())
    print(f"numbers: {args.out}/tasks.json; plots: {args.out}/*.png")
    return 0 if results else 1


def _write_one_spectrum(model, args) -> None:
    import numpy as np

    from .generate import generate_xp

    if args.logg is None or args.m_h is None:
        raise ValueError("--teff needs --logg and --m-h too")
    g = generate_xp(model, args.teff, args.logg, args.m_h, logebv=args.logebv)
    path = f"{args.out}/generated_spectrum.csv"
    np.savetxt(path, np.column_stack([g.wavelength_nm, g.flux[0], g.flux_error[0]]), delimiter=",",
               header=f"teff={args.teff} logg={args.logg} m_h={args.m_h} logebv={args.logebv}\n"
                      "wavelength_nm,flux,flux_error  (W m^-2 nm^-1 per e-/s of G-band flux)")
    print(f"generated spectrum -> {path}")
    print(json.dumps({"coefficients_bp0_4": g.coefficients[0, :5].tolist()}))
