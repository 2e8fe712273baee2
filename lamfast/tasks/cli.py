"""``lamfast task generate|inpaint|loci|extinction|all``: run the paper's other tasks."""

from __future__ import annotations

import json

from .report import TASKS


def add_parser(sub) -> None:
    p = sub.add_parser("task", help="run the paper's other tasks (generate XP, inpaint, loci, extinction)")
    p.add_argument("name", choices=(*TASKS, "all"), help="which task ('all' = the four)")
    p.add_argument("--model", default="default", help="'default' or a saved model folder")
    p.add_argument("--catalog", default=None,
                   help="paper-layout HDF5 to score on (default: the bundled 1,000-star sample)")
    p.add_argument("--split", type=int, default=None,
                   help="keep only rows of this split (0 train, 1 validation, 2 test)")
    p.add_argument("--max-stars", type=int, default=2000, help="use at most this many stars")
    p.add_argument("--out", default="lamfast-tasks", help="output folder (PNGs, tasks.json, tasks.md)")
    p.add_argument("--teff", type=float, help="generate: also write the spectrum of this Teff [K]")
    p.add_argument("--logg", type=float, help="generate: logg [dex] of that star")
    p.add_argument("--m-h", type=float, help="generate: [M/H] [dex] of that star")
    p.add_argument("--logebv", type=float, help="generate: ln E(B-V) of that star (optional)")
    p.set_defaults(func=_main)


def _main(args) -> int:
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
        if len(catalog) > args.max_stars:   # an even, reproducible subset
            catalog = catalog.rows(np.linspace(0, len(catalog) - 1, args.max_stars).astype(int))
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
