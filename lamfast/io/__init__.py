"""Catalogue readers and writers. Every reader returns a :class:`Catalog`.

Heavy dependencies (astropy, pyarrow) are imported inside the functions that need them.
"""

from .apogee import read_apogee_allstar
from .catalog import Catalog
from .dispatch import read_catalog
from .gaia_photometry import gaia_photometry
from .parquet import read_parquet, write_parquet
from .xp_archive import read_xp_continuous, read_xp_continuous_many, read_xp_continuous_reference, write_xp_continuous
from .xp_continuous import XpContinuous, xp_catalog

__all__ = [
    "Catalog", "XpContinuous", "gaia_photometry", "read_apogee_allstar", "read_catalog",
    "read_parquet", "read_xp_continuous", "read_xp_continuous_many",
    "read_xp_continuous_reference", "write_parquet", "write_xp_continuous", "xp_catalog",
]
