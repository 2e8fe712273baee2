"""Positional sky cross-match between two catalogues, in C++ (:func:`match`,
:class:`Index`) and numpy (:func:`match_reference`, the brute-force oracle with the same
signature and the same output).

Positions are unit vectors; a pair matches when its chord c = |u1 - u2| is at most
2 sin(r/2), and its separation is 2 asin(c/2), exact to ~1e-11 arcsec at any angle (an
arccos of the dot product loses everything below ~10 mas). Catalogue 2 is indexed once
(declination zones cut into RA cells, see ``csrc/xmatch.hpp``) and catalogue 1 streams
through the index, optionally moved to the index's epoch with its proper motions.

Ties (equal separations) are broken by the smaller row index, so every result is a pure
function of the inputs: the same for any thread count and any chunking of catalogue 1.

Units: plain numbers are degrees (positions), arcseconds (radius), mas/yr (proper
motions) and Julian years (epochs). astropy objects are converted: a ``SkyCoord`` (or a
coordinate frame with data) in place of an ``ra, dec`` pair, ``Quantity`` (or a table
``Column`` with a unit) in any angle / angular-velocity unit, ``Time`` epochs. astropy is
never imported unless such an object is passed: they are recognised by their attributes.

Modules: :mod:`.index` is the C++ path (:func:`match`, :class:`Index`,
:func:`one_to_one`, :func:`propagate`), :mod:`.reference` the plain numpy references
beside it (:func:`match_reference`, :func:`propagate_reference`, :func:`unit_vectors`),
:mod:`.inputs` the argument handling both share and the result type :class:`Match`, and
:mod:`._units` the duck-typed astropy conversion.
"""

from .index import Index, match, one_to_one, propagate
from .inputs import MAX_RADIUS_ARCSEC, MODES, Match
from .reference import match_reference, propagate_reference, unit_vectors

__all__ = [
    "MAX_RADIUS_ARCSEC", "MODES", "Index", "Match", "match", "match_reference", "one_to_one",
    "propagate", "propagate_reference", "unit_vectors",
]
