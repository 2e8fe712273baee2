"""The paper's tasks beyond labelling, each one model call away (Leung & Bovy 2024, Sec. 5).

- :func:`generate_xp` (``generate.py``): Teff, logg, [M/H] (+ extinction, colours) -> the
  110 XP coefficients with uncertainties -> a sampled 336-1020 nm spectrum with errors.
- :func:`inpaint` (``inpaint.py``): a star with some coefficients -> the others.
- :func:`trace_locus`, :func:`trace_branch` (``loci.py``): sweep one quantity, predict
  others (or solve for a self-consistent one) -> learned loci; :func:`giant_branch`,
  :func:`main_sequence` trace the two branches of the Kiel diagram.
- :func:`extinction_curve` (``extinction.py``): d(generated spectrum)/d E(B-V) -> the
  extinction curve the model learned, next to a standard law.

``lamfast task <name>`` runs each on a model and writes a PNG and numbers;
``lamfast demo`` runs all four on the default model.
"""

from .extinction import (
           ExtinctionCurve,
           ccm89_odonnell94,
           extinction_curve,
           magnitude_slope,
)
from .generate import GeneratedXP, generate_xp
from .inpaint import LinearBaseline, inpaint
from .loci import (
           Locus,
           giant_branch,
           locus_scatter,
           main_sequence,
           trace_branch,
           trace_locus,
)

__all__ = ["ExtinctionCurve", "GeneratedXP", "LinearBaseline", "Locus", "ccm89_odonnell94",
           "extinction_curve", "generate_xp", "giant_branch", "inpaint", "locus_scatter",
           "magnitude_slope", "main_sequence", "trace_branch", "trace_locus"]
