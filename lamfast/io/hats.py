"""HATS catalogues (LSDB's HEALPix-partitioned Parquet) as inputs: a catalogue folder -> its
partition files and their pixels.

A HATS catalogue is a folder with ``hats.properties``, ``partition_info.csv`` and one
Parquet file per HEALPix pixel (``dataset/Norder=K/Dir=D/Npix=P.parquet``, or a folder of
files where ``hats_npix_suffix`` is ``/``); a HATS *collection* (``collection.properties``,
as ``lsdb``'s ``write_catalog`` makes) stands for its primary catalogue. The ``hats``
package lists them (``pip install "lamfast[hats]"``); lamfast then reads each partition
file as the Parquet input it is (:func:`lamfast.io.read_parquet`: token and list columns,
XP units declared by the file's ``lamfast.xp_units`` metadata, else the archive's e-/s),
so a labelling job cuts a HATS catalogue into work units partition by partition, and
photometry may come from a HATS catalogue as well.

A catalogue may also declare its XP units for all its partitions in ``hats.properties``
(``lamfast_xp_units``, as ``lamfast data convert --format hats`` writes it beside each
file's ``lamfast.xp_units``): :attr:`HatsCatalog.xp_units`, the units of the partition
files that lack the key (rewritten by a tool that drops Parquet key-value metadata); a
file's own key wins. ``lamfast label`` reads such files in the catalogue's units
(:meth:`lamfast.label.LabelPlan.default_xp_units`; in Python,
``read_parquet(path, default_xp_units=catalog.xp_units)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROPERTIES_FILES = ("hats.properties", "properties")      # a catalogue (older hats: "properties")
COLLECTION_FILE = "collection.properties"
OBJECT_TYPES = ("object", "source")   # catalogues of rows; margins, indexes, associations are not inputs
XP_UNITS_PROPERTY = "lamfast_xp_units"   # hats.properties: the units of every partition's XP coefficients


@dataclass(frozen=True)
class HatsCatalog:
    """The partition files of one HATS catalogue, in the catalogue's pixel order."""

    path: str                        # the catalogue folder (a collection's primary catalogue)
    name: str
    files: list[str]                 # partition files (a pixel may have several)
    pixels: list[tuple[int, int]]    # (order, pixel) of each file
    ra_column: str | None
    dec_column: str | None
    healpix_column: str | None       # the spatial index column (hats: _healpix_29)
    healpix_order: int | None
    xp_units: str | None = None      # hats.properties' lamfast_xp_units ("gnorm" or "flux"), if declared


def is_hats(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding a HATS catalogue or collection."""
    path = Path(path)
    return path.is_dir() and any((path / f).is_file() for f in (*PROPERTIES_FILES, COLLECTION_FILE))


def read_hats_catalog(path: str | os.PathLike) -> HatsCatalog:
    """The partitions of the HATS catalogue (or collection) at ``path``.

    Raises ModuleNotFoundError naming the extra if ``hats`` does not import, and ValueError
    naming the folder if it is not a catalogue of rows (a margin, index or association
    catalogue), a partition file it lists is missing, or its ``lamfast_xp_units`` is neither
    "gnorm" nor "flux".
    """
    from .xp_units import check_units_name

    hats = import_hats(f"reading the HATS catalogue {path}")
    try:
        catalog = hats.read_hats(str(path))
    except Exception as e:  # noqa: BLE001 - hats raises many kinds on a broken folder
        raise ValueError(f"{path}: not a readable HATS catalogue ({type(e).__name__}: {e})") from None
    catalog = getattr(catalog, "main_catalog", catalog)      # a collection -> its primary catalogue
    info = catalog.catalog_info
    kind = str(getattr(info.catalog_type, "value", info.catalog_type))
    if kind not in OBJECT_TYPES:
        raise ValueError(f"{path}: a HATS {kind} catalogue; lamfast labels object or source catalogues "
                         "(for a collection, give its folder: its primary catalogue is read)")
    base = Path(str(catalog.catalog_base_dir))
    suffix = getattr(info, "npix_suffix", None) or ".parquet"
    files, pixels = [], []
    for pixel in catalog.get_healpix_pixels():
        where = Path(str(hats.io.pixel_catalog_file(base, pixel, npix_suffix=suffix)))
        found = sorted(where.glob("*.parquet")) if where.is_dir() else [where]
        if not found or not all(f.is_file() for f in found):
            raise ValueError(f"{path}: partition_info lists pixel (order {pixel.order}, pixel {pixel.pixel}) "
                             f"but {where} has no Parquet file")
        files += [str(f) for f in found]
        pixels += [(int(pixel.order), int(pixel.pixel))] * len(found)
    units = info.extra_dict().get(XP_UNITS_PROPERTY)
    if units is not None:
        units = check_units_name(units, f"{base / PROPERTIES_FILES[0]}: {XP_UNITS_PROPERTY}")
    return HatsCatalog(path=str(base), name=str(info.catalog_name), files=files, pixels=pixels, xp_units=units,
                       ra_column=info.ra_column, dec_column=info.dec_column,
                       healpix_column=info.healpix_column,
                       healpix_order=None if info.healpix_order is None else int(info.healpix_order))


def import_hats(why: str):
    """The ``hats`` module, or ModuleNotFoundError saying what to install for ``why``."""
    try:
        import hats
    except ImportError as e:
        raise ModuleNotFoundError(f"{why} needs the hats package, which does not import ({e}): "
                                  'pip install "lamfast[hats]"') from e
    return hats
