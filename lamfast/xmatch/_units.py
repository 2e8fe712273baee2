"""astropy inputs, recognised by duck typing: ``Quantity`` / ``Column`` with a unit and
``Time`` epochs as plain numbers in lamfast.xmatch's units (astropy.units is imported
only when an object with a unit is seen)."""

from __future__ import annotations

import numpy as np


def _is_coord(x) -> bool:
    """An astropy SkyCoord or coordinate frame."""
    return hasattr(x, "transform_to") and hasattr(x, "represent_as")


def _is_time(x) -> bool:
    """An astropy Time."""
    return hasattr(x, "jyear") and hasattr(x, "jd1")


_KINDS = {"deg": "angle", "arcsec": "angle", "mas/yr": "angular velocity"}


def _in_unit(x, unit: str, name: str):
    """``x`` as plain numbers in ``unit`` when it carries a unit (a Quantity, or a table
    Column whose ``unit`` is set); anything else is returned as is (already in ``unit``)."""
    have = getattr(x, "unit", None)
    if have is None or _is_coord(x):
        return x
    import astropy.units as u

    kind = _KINDS[unit]
    try:
        have = u.Unit(have)
        if isinstance(x, u.Quantity):
            return x.to_value(unit)
        values = (np.ma.filled(np.ma.asarray(x, dtype=np.float64), np.nan)
                  if np.ma.isMaskedArray(x) else np.asarray(x, dtype=np.float64))
        return have.to(unit, values)
    except (u.UnitsError, ValueError, TypeError):
        raise ValueError(f"{name} has unit {str(have) or 'dimensionless'!r}, which is not "
                         f"an {kind} unit (give {unit}, or any {kind} unit)") from None


def _epoch_years(epoch, name: str):
    """An epoch in Julian years: a number or array as is, a Time (its ``jyear``), or a
    Quantity in years (``2016 * u.yr``)."""
    if epoch is None:
        return None
    if _is_time(epoch):
        return np.asarray(epoch.jyear, dtype=np.float64)
    have = getattr(epoch, "unit", None)
    if have is None:
        return epoch
    import astropy.units as u

    try:
        have = u.Unit(have)
        years = have.to(u.yr) == 1.0
    except (u.UnitsError, ValueError, TypeError):
        years = False
    if not years:
        raise ValueError(f"{name} has unit {str(have) or 'dimensionless'!r}: give epochs in "
                         "Julian years (a number, a Quantity in yr) or as an astropy Time")
    values = epoch.value if isinstance(epoch, u.Quantity) else epoch
    return np.asarray(np.ma.filled(values, np.nan) if np.ma.isMaskedArray(values) else values,
                      dtype=np.float64)
