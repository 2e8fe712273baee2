"""Physical units and meanings of every token, as astropy parses them.

One table for every output that carries units: :func:`lamfast.predict`'s astropy Table,
the Parquet and HDF5 files of ``lamfast label``. Each string parses with
``astropy.units.Unit`` ("" is dimensionless); what a unit string cannot say (which
logarithm, the gnorm convention) goes in the description.
"""

from __future__ import annotations

from .vocab import XP

UNITS: dict[str, str] = {
    "teff": "K",
    "logg": "dex",
    "m_h": "dex",
    "bprp": "mag",
    "jh": "mag",
    "jk": "mag",
    "logebv": "",
    "g_fakemag": "mas",
    **{name: "" for name in XP},
}

DESCRIPTIONS: dict[str, str] = {
    "teff": "effective temperature",
    "logg": "log10 of the surface gravity in cm s^-2",
    "m_h": "metallicity [M/H]",
    "bprp": "Gaia BP - RP colour",
    "jh": "2MASS J - H colour",
    "jk": "2MASS J - Ks colour",
    "logebv": "natural log of E(B-V) in mag",
    "g_fakemag": "parallax [mas] * 10**(0.2 G)",
    **{name: "Gaia XP coefficient divided by the G-band flux in e-/s (gnorm)" for name in XP},
}


def unit_of(column: str) -> str:
    """The unit of a token or of its ``<token>_error`` column ("" if dimensionless or unknown)."""
    return UNITS.get(column.removesuffix("_error"), "")


def description_of(column: str) -> str:
    """What a token or its ``<token>_error`` column holds."""
    base = column.removesuffix("_error")
    text = DESCRIPTIONS.get(base, "")
    return f"uncertainty (1 sigma) of the {text}" if column.endswith("_error") and text else text
