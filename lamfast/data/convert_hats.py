"""``lamfast data convert XP... --out DIR --format hats``: the converted stars as a HATS
catalogue (LSDB's HEALPix-partitioned Parquet) that ``lamfast label DIR`` and
``lsdb.read_hats(DIR)`` read.

**Pixels from source_id.** A Gaia source_id holds the star's HEALPix level-12 nested pixel
(``source_id >> 35``), so each star's pixel at every order up to 12 is known without a
position. The spatial index column hats expects, ``_healpix_29`` (a level-29 nested index),
is derived from it: the star's place inside its level-12 pixel is unknown, so every star
of a level-12 pixel gets that pixel's first level-29 index (``pixel12 * 4**17``). A
source_id outside ``0 <= source_id >> 35 < 12 * 4**12`` is refused, naming the file and row.

**Positions.** The XP_CONTINUOUS files hold no positions, and the photometry join keeps only
the columns labelling uses, so ``ra``/``dec`` (float64, degrees; ``hats_col_ra``/
``hats_col_dec``) are the centre of each star's level-12 pixel (0.86 arcmin across on average;
the star is within 0.9 arcmin of it), not the star's position; ``hats.properties`` says so
(``lamfast_positions``). Join to gaia_source by source_id for true positions.

**Partitions.** The stars per level-8 pixel are counted, then hats' own
``generate_alignment`` picks the largest pixels (orders 0-8) of at most ``max_rows`` stars
(default 250,000; Gaia DR3's 220 million XP stars are 290,000 per level-3 pixel on
average, so all-sky partitions are mostly of orders 3 to 6), a pixel whose siblings are
empty kept alone at its own order. Rows of a partition are sorted by
source_id (so by ``_healpix_29``); a star in two inputs is two rows, as in the flat convert.

**Columns** of every partition file: ``source_id``, ``ra``, ``dec``, the columns of the flat
convert (:mod:`lamfast.data.convert`: gnorm coefficient lists and errors, photometry tokens,
``phot_g_mean_mag``), ``_healpix_29``. The XP units are declared twice: in every partition
file's schema metadata (``lamfast.xp_units = "gnorm"``, as the flat convert writes them)
and in ``hats.properties`` (``lamfast_xp_units=gnorm``).

**Resume.** Each input is first converted to ``DIR.parts/<stem>.parquet`` by the flat
convert (atomic, resumable per file: a rerun skips the parts already converted from the
same files). The catalogue is then built from the parts in a temporary folder beside
``DIR`` and renamed onto it, so no reader sees half of it, and the parts are removed.
``DIR/lamfast_convert.json`` records the inputs (path, size, mtime), the photometry and
``max_rows``: a rerun with the same finds ``DIR`` up to date and does nothing; after a change
every input is converted again from its text (the parts are gone). An existing ``DIR`` that
this convert did not write is never replaced.

**Memory.** Three passes over the parts: (1) their source_id columns, counted per level-8
pixel (a 6 MB histogram; hats' alignment of it takes ~0.2 GB); (2) each part read whole
(one input file's rows, about 1 kB per star) and split by partition into fragment files;
(3) per partition its fragments read, sorted and written. The peak is about twice the
larger of one input's rows and one partition's rows (``max_rows`` stars: ~0.5 GB at the
default), never the whole catalogue. Disk: the parts, plus the fragments and the
catalogue while it is built (about three times the catalogue's size at the peak).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._version import __version__
from ..atomic import publish_folder
from ..io.hats import XP_UNITS_PROPERTY
from ..io.xp_units import XP_UNITS_KEY
from .convert import (
    COMPRESSION,
    RECORD_KEY,
    ConvertSummary,
    convert,
    input_records,
    output_path,
)

PIXEL_SHIFT = 35                   # Gaia: source_id >> 35 is the level-12 nested HEALPix pixel
SOURCE_ID_ORDER = 12
N_PIXELS_12 = 12 * 4**SOURCE_ID_ORDER
HISTOGRAM_ORDER = 8                # counts per level-8 pixel choose the partitions
DEFAULT_MAX_ROWS = 250_000
SPATIAL_INDEX_COLUMN, SPATIAL_INDEX_ORDER = "_healpix_29", 29
RA_COLUMN, DEC_COLUMN = "ra", "dec"
METADATA_FILE = "lamfast_convert.json"
POSITIONS_PROPERTY = "lamfast_positions"
POSITIONS = "centres of the stars' HEALPix level-12 pixels from source_id (within 0.9 arcmin), not their positions"
ROW_GROUP = 65536


def parts_folder(out: str | os.PathLike) -> Path:
    """``DIR.parts``: the per-input Parquet parts of the HATS catalogue ``DIR`` until it is written."""
    out = Path(out)
    return out.with_name(f"{out.name}.parts")


def check_gaia_ids(source_id: np.ndarray, path) -> None:
    """ValueError naming ``path`` and the first row whose source_id (int64 [N], one per row
    of the file) holds no HEALPix level-12 pixel (negative, or ``source_id >> 35 >= 12 * 4**12``)."""
    ids = np.asarray(source_id, np.int64)
    bad = np.flatnonzero((ids < 0) | ((ids >> PIXEL_SHIFT) >= N_PIXELS_12))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{path}: data row {i + 1}: source_id {ids[i]} is not a Gaia source_id "
                         f"(source_id >> {PIXEL_SHIFT} must be a HEALPix level-12 pixel, 0..{N_PIXELS_12 - 1}); "
                         f"a HATS catalogue is partitioned by it ({bad.size} such row(s) in the file)")


def spatial_index(source_id: np.ndarray) -> np.ndarray:
    """int64 [N] ``_healpix_29`` of Gaia source_ids [N]: the first level-29 index of each
    star's level-12 pixel (the place inside that pixel is unknown)."""
    return (np.asarray(source_id, np.int64) >> PIXEL_SHIFT) << (2 * (SPATIAL_INDEX_ORDER - SOURCE_ID_ORDER))


def pixel_centres(source_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) float64 [N] in degrees: the centre of each source_id's level-12 pixel."""
    from cdshealpix.nested import healpix_to_lonlat

    if len(source_id) == 0:
        return np.zeros(0), np.zeros(0)
    lon, lat = healpix_to_lonlat(np.asarray(source_id, np.int64) >> PIXEL_SHIFT, SOURCE_ID_ORDER)
    return np.asarray(lon.deg, np.float64), np.asarray(lat.deg, np.float64)


def convert_hats(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 photometry: Sequence[str | os.PathLike] | None = None, threads: int | None = None,
                 overwrite: bool = False, progress: bool = True,
                 max_rows: int = DEFAULT_MAX_ROWS) -> ConvertSummary:
    """Convert Gaia XP_CONTINUOUS files to one HATS catalogue ``out`` (see the module doc).

    Parameters
    ----------
    inputs, photometry, threads, progress : as :func:`lamfast.data.convert.convert`.
    out : the catalogue folder (``lsdb.read_hats(out)``, ``lamfast label out``).
    overwrite : convert every input and write the catalogue even where they are up to date.
    max_rows : most stars per partition (a level-8 pixel with more is an error).

    Returns
    -------
    ConvertSummary: the parts converted and skipped, ``catalog`` = ``out``, ``partitions``
    written (0 if ``out`` was up to date).

    Raises
    ------
    What :func:`~lamfast.data.convert.convert` raises; ValueError naming the file and row
    of a source_id that is not a Gaia one, or naming two inputs whose columns differ;
    FileExistsError if ``out`` exists and is not a catalogue this convert wrote.
    """
    import time

    from ..io.hats import import_hats

    import_hats(f"writing the HATS catalogue {out}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive int, got {max_rows!r}")
    t0 = time.perf_counter()
    out, inputs = Path(out), [Path(p) for p in inputs]
    record = {RECORD_KEY: input_records(inputs, photometry), "max_rows": int(max_rows)}
    if out.exists():
        existing = read_convert_metadata(out)
        if existing is None:
            raise FileExistsError(f"{out} exists and is not a HATS catalogue that lamfast data convert wrote "
                                  f"(no {METADATA_FILE}); choose another --out or move it away")
        if not overwrite and {k: existing.get(k) for k in record} == record:
            return ConvertSummary(catalog=out, seconds=time.perf_counter() - t0)
    parts = parts_folder(out)
    summary = convert(inputs, parts, photometry=photometry, threads=threads, overwrite=overwrite,
                      progress=progress, validate=lambda cat, path: check_gaia_ids(cat.source_id, path))
    files = [output_path(p, parts) for p in inputs]
    summary.partitions = write_catalog(files, inputs, out, record, int(max_rows), progress)
    summary.catalog = out
    shutil.rmtree(parts, ignore_errors=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def read_convert_metadata(path: str | os.PathLike) -> dict | None:
    """``lamfast_convert.json`` of a catalogue this convert wrote, or None if it is not one."""
    try:
        return json.loads((Path(path) / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_catalog(parts: list[Path], inputs: list[Path], out: Path, record: dict, max_rows: int,
                  progress: bool) -> int:
    """Build the catalogue ``out`` from the flat ``parts`` [one per input] (atomically);
    the number of partitions."""
    import hats
    from hats.catalog import PartitionInfo, TableProperties
    from hats.pixel_math import HealpixPixel

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)    # left by a killed run of this pid
    try:
        schema = _common_schema(parts, inputs)
        pixels, bin_partition = _partitions(_histogram(parts, inputs), max_rows)
        fragments = _split(parts, bin_partition, tmp / "fragments", progress)
        counts = [_write_partition(fragments / str(d), tmp, HealpixPixel(*pixels[d]), schema)
                  for d in _bar(range(len(pixels)), progress, "writing partitions")]
        shutil.rmtree(fragments)
        hats.io.write_parquet_metadata(tmp)
        info = PartitionInfo([HealpixPixel(*p) for p in pixels])
        info.write_to_file(tmp / "partition_info.csv")
        TableProperties(
            catalog_name=out.name.removesuffix(".hats"), catalog_type="object", total_rows=int(sum(counts)),
            ra_column=RA_COLUMN, dec_column=DEC_COLUMN, healpix_column=SPATIAL_INDEX_COLUMN,
            healpix_order=SPATIAL_INDEX_ORDER, npix_suffix=".parquet", hats_max_rows=int(max_rows),
            moc_sky_fraction=float(info.calculate_fractional_coverage()), hats_order=int(info.get_highest_order()),
            hats_builder=f"lamfast v{__version__}, hats v{getattr(hats, '__version__', '?')}",
            hats_creation_date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MUTC"),
            **{XP_UNITS_PROPERTY: "gnorm", POSITIONS_PROPERTY: POSITIONS}).to_properties_file(tmp)
        (tmp / METADATA_FILE).write_text(json.dumps({**record, "xp_units": "gnorm", "positions": POSITIONS,
                                                     "lamfast_version": __version__}, indent=1))
        publish_folder(tmp, out)  # an existing catalogue: checked to be a convert's above
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(pixels)


# ---- the passes ------------------------------------------------------------------------------

def _common_schema(parts: list[Path], inputs: list[Path]):
    """The parts' schema, its lamfast ``meta`` what all parts agree on (an input's path, format
    and record are in lamfast_convert.json, not in every partition); ValueError naming two
    inputs whose columns differ (a catalogue has one schema)."""
    import pyarrow.parquet as pq

    from ..io.parquet import METADATA_KEY

    schemas = [pq.read_schema(p) for p in parts]
    for k, s in enumerate(schemas[1:], 1):
        if not s.equals(schemas[0], check_metadata=False):
            raise ValueError(f"{inputs[0]} and {inputs[k]} give different columns ({schemas[0].names} and "
                             f"{s.names}): one HATS catalogue has one schema; convert them to different --out")
    metas = [json.loads(s.metadata[METADATA_KEY])["meta"] for s in schemas]
    metadata = dict(schemas[0].metadata)
    info = json.loads(metadata[METADATA_KEY])
    info["meta"] = {k: v for k, v in metas[0].items() if k != RECORD_KEY and all(m.get(k) == v for m in metas)}
    metadata[METADATA_KEY] = json.dumps(info).encode()
    assert metadata.get(XP_UNITS_KEY.encode()) == b"gnorm", "the flat convert declares its units"
    return schemas[0].with_metadata(metadata)


def _histogram(parts: list[Path], inputs: list[Path]) -> np.ndarray:
    """int64 [12 * 4**8]: stars per level-8 pixel (pass 1: source_id columns only; the ids
    checked again, for parts converted before, by a convert without the check)."""
    import pyarrow.parquet as pq

    counts = np.zeros(12 * 4**HISTOGRAM_ORDER, np.int64)
    for p, path in zip(parts, inputs):
        ids = pq.read_table(p, columns=["source_id"])["source_id"].to_numpy()
        check_gaia_ids(ids, path)
        counts += np.bincount(_level8(ids), minlength=counts.size)
    return counts


def _level8(source_id: np.ndarray) -> np.ndarray:
    return (np.asarray(source_id, np.int64) >> PIXEL_SHIFT) >> (2 * (SOURCE_ID_ORDER - HISTOGRAM_ORDER))


def _partitions(histogram: np.ndarray, max_rows: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(the partitions' (order, pixel), int64 [12 * 4**8]: each level-8 pixel's partition, -1 if empty)."""
    from hats.pixel_math.partition_stats import generate_alignment

    if not histogram.any():
        raise ValueError("no stars to write: the inputs have no rows")
    if histogram.max() > max_rows:
        raise ValueError(f"{histogram.max()} stars in one level-{HISTOGRAM_ORDER} HEALPix pixel (pixel "
                         f"{histogram.argmax()}), more than max_rows={max_rows}: give a larger maximum")
    alignment = generate_alignment(histogram, highest_order=HISTOGRAM_ORDER, lowest_order=0,
                                   threshold=max_rows, drop_empty_siblings=True)
    index: dict[tuple[int, int], int] = {}
    bin_partition = np.full(histogram.size, -1, np.int64)
    for b in np.flatnonzero(histogram):
        order, pixel, _ = alignment[b]
        bin_partition[b] = index.setdefault((int(order), int(pixel)), len(index))
    return list(index), bin_partition


def _split(parts: list[Path], bin_partition: np.ndarray, folder: Path, progress: bool) -> Path:
    """Pass 2: each part's rows to ``folder/<partition>/<part number>.parquet`` (one part in memory)."""
    import pyarrow.parquet as pq

    for k, p in enumerate(_bar(parts, progress, "partitioning")):
        table = pq.read_table(p).replace_schema_metadata(None)
        dest = bin_partition[_level8(table["source_id"].to_numpy())]
        order = np.argsort(dest, kind="stable")        # rows of one partition together, in file order
        dest = dest[order]
        starts = np.flatnonzero(np.r_[True, dest[1:] != dest[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(dest)]):
            target = folder / str(dest[a]) / f"{k:06d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.take(order[a:b]), target, compression=COMPRESSION, use_dictionary=False)
    return folder


def _write_partition(fragments: Path, catalog: Path, pixel, schema) -> int:
    """Pass 3: one partition's fragments (in input order) sorted by source_id (stable), with
    ra, dec after source_id and _healpix_29 last, to its HATS file; its row count."""
    import hats
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f) for f in sorted(fragments.iterdir())])
    table = table.take(pa.compute.sort_indices(table, [("source_id", "ascending")]))
    ids = table["source_id"].to_numpy()
    ra, dec = pixel_centres(ids)
    table = table.add_column(1, pa.field(RA_COLUMN, pa.float64()), pa.array(ra))
    table = table.add_column(2, pa.field(DEC_COLUMN, pa.float64()), pa.array(dec))
    table = table.append_column(pa.field(SPATIAL_INDEX_COLUMN, pa.int64()), pa.array(spatial_index(ids)))
    table = table.replace_schema_metadata(schema.metadata)
    target = Path(str(hats.io.pixel_catalog_file(catalog, pixel)))
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression=COMPRESSION, row_group_size=ROW_GROUP, use_dictionary=False)
    shutil.rmtree(fragments)
    return table.num_rows


def _bar(items, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, unit="file" if desc == "partitioning" else "partition", disable=not progress, desc=desc)
