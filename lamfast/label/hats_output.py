"""The output of a labelling job as a HATS catalogue, partitioned as its input catalogue is.

``lamfast label CATALOG --output LABELS`` (``LABELS`` without a suffix, or ending in
``.hats``), where the inputs are one HATS catalogue (:mod:`lamfast.io.hats`), writes
``LABELS`` as a HATS catalogue of the same pixels: per input pixel one Parquet file of the
same rows in the same order, holding the input's position columns (its ``ra``/``dec``
columns as ``hats.properties`` names them, where present) after ``source_id``, then the
columns of a Parquet output (:mod:`lamfast.label.output`: ``input_file``, ``input_row``,
``<token>``/``<token>_error``, ``no_input``, ``no_g``), then the input's spatial index
(``_healpix_29``). ``lsdb.read_hats(LABELS)`` reads it, and it joins back to the input by
source_id pixel by pixel (``catalog.join(labels, left_on="source_id", right_on="source_id")``).

The metadata a Parquet output keeps in its schema (model, request, units, plan, counts)
is ``LABELS/lamfast_label.json``; ``hats.properties`` names the model and the request
too. The catalogue is written whole into a temporary folder beside ``LABELS`` and then
renamed onto it, so a reader (or a resumed job) never sees half of it; replacing an
existing ``LABELS`` (``overwrite``) renames it aside first and deletes it last.

Memory: one pixel's rows at a time (HATS keeps partitions small: ``hats_max_rows``).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._version import __version__
from ..atomic import publish_folder
from ..io.hats import import_hats
from .plan import LabelPlan, part_path
from .table import METADATA_KEY, arrow_fields, output_columns, part_columns

METADATA_FILE = f"{METADATA_KEY}.json"
ROW_GROUP = 65536


def check_hats_plan(output: Path, plan: LabelPlan) -> dict:
    """The plan's one HATS catalogue that ``output`` is partitioned by; ValueError if the
    inputs are not exactly one HATS catalogue's partitions (nothing to partition by)."""
    names = ", ".join(Path(p).name for p in plan.inputs[:3]) + (", ..." if len(plan.inputs) > 3 else "")
    if len(plan.hats) != 1 or sorted(plan.hats[0]["inputs"]) != list(range(len(plan.inputs))):
        raise ValueError(f"output {output}: a HATS catalogue (a name without a suffix, or ending in .hats) "
                         "is partitioned as its input, so the inputs must be one HATS catalogue and "
                         f"nothing else; they are {len(plan.hats)} HATS catalogue(s) and "
                         f"{len(plan.inputs)} file(s) ({names}). Write .parquet or .h5 instead.")
    return plan.hats[0]


def check_replaceable(output: Path) -> None:
    """FileExistsError unless the existing ``output`` is a labels catalogue lamfast wrote:
    ``overwrite`` replaces a labelling job's output, never some other folder (or a file)."""
    if output.is_dir() and read_hats_metadata(output) is not None:
        return
    kind = "a folder" if output.is_dir() else "a file"
    raise FileExistsError(f"{output} exists and is {kind} that lamfast label did not write (no {METADATA_FILE}); "
                          "overwrite replaces only a HATS labels catalogue: choose another output or move it away")


def write_hats_output(output: Path, plan: LabelPlan, parts: Path, metadata: dict) -> None:
    """Write the labels of ``plan`` (every part in ``parts``, checked) as the HATS catalogue ``output``."""
    hats = import_hats(f"writing the HATS catalogue {output}")
    from hats.catalog import PartitionInfo, TableProperties
    from hats.pixel_math import HealpixPixel

    entry = check_hats_plan(output, plan)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)    # left by a killed job of this pid
    try:
        pixels, counts, positions = [], [], None
        units_of: dict[int, list[int]] = {}
        for i, u in enumerate(plan.units):
            units_of.setdefault(u.file, []).append(i)
        for pixel, files in _files_by_pixel(entry):
            table, positions = _pixel_table(plan, parts, entry, {k: units_of[k] for k in files}, metadata)
            target = Path(str(hats.io.pixel_catalog_file(tmp, HealpixPixel(*pixel))))
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_table(table, target)
            pixels.append(HealpixPixel(*pixel))
            counts.append(table.num_rows)
        hats.io.write_parquet_metadata(tmp)
        info = PartitionInfo(pixels)
        info.write_to_file(tmp / "partition_info.csv")
        properties = {
            "catalog_name": output.name.removesuffix(".hats"), "catalog_type": "object",
            "total_rows": int(sum(counts)), "healpix_column": entry["healpix_column"],
            "healpix_order": entry["healpix_order"], "npix_suffix": ".parquet",
            "hats_max_rows": int(max(counts)), "moc_sky_fraction": float(info.calculate_fractional_coverage()),
            "hats_order": int(info.get_highest_order()),
            "hats_builder": f"lamfast v{__version__}, hats v{getattr(hats, '__version__', '?')}",
            "hats_creation_date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MUTC"),
            "lamfast_model": f"{plan.model} (sha256 {plan.model_sha256})",
            "lamfast_request": ",".join(plan.request), "lamfast_input_catalog": entry["catalog"]}
        if positions:
            properties["ra_column"], properties["dec_column"] = positions
        TableProperties(**properties).to_properties_file(tmp)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        if output.exists():
            check_replaceable(output)
        publish_folder(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_hats_output(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, metadata) of a HATS labels catalogue, its pixels in order (as
    :func:`lamfast.label.read_output` gives them for a Parquet output)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hats = import_hats(f"reading the HATS catalogue {path}")
    meta = read_hats_metadata(path)
    if meta is None:
        raise ValueError(f"{path}: not written by lamfast label (no {METADATA_FILE})")
    catalog = hats.read_hats(str(path))
    names = output_columns(meta["request"], meta.get("no_g_column") is not None)
    tables = [pq.read_table(str(hats.io.pixel_catalog_file(catalog.catalog_base_dir, p)), columns=names)
              for p in catalog.get_healpix_pixels()]
    table = pa.concat_tables(tables)
    return {c: table[c].to_numpy() for c in names}, meta


def read_hats_metadata(path: Path) -> dict | None:
    """The metadata of a HATS labels catalogue, or None if it is not one."""
    try:
        return json.loads((Path(path) / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None


# ---- one pixel ------------------------------------------------------------------------------

def _files_by_pixel(entry: dict):
    """((order, pixel), [input file indices]) in the catalogue's order (a pixel may have several files)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, pixel in zip(entry["inputs"], entry["pixels"]):
        groups.setdefault(tuple(pixel), []).append(k)
    return groups.items()


def _pixel_table(plan: LabelPlan, parts: Path, entry: dict, files: dict[int, list[int]], metadata: dict):
    """The output table of one pixel (``files``: its input files -> their units, in order),
    and the (ra, dec) column names carried, if the input has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    no_g = metadata.get("no_g_column") is not None
    labels, inputs = [], []
    wanted = [c for c in (entry["ra_column"], entry["dec_column"]) if c]
    for k, units in files.items():
        path = plan.inputs[k]
        file = pq.ParquetFile(path)
        have = file.schema_arrow.names
        positions = [c for c in wanted if c in have]
        index = [entry["healpix_column"]] if entry["healpix_column"] in have else []
        source = file.read(columns=["source_id", *positions, *index])
        computed = []
        for i in units:
            with np.load(part_path(parts, i)) as z:
                computed.append(part_columns({n: z[n] for n in z.files}, k, plan.request, no_g))
        ids = np.concatenate([b["source_id"] for b in computed])
        if not np.array_equal(ids, source["source_id"].to_numpy()):
            raise ValueError(f"{path}: its source_ids are not those its labels were computed for "
                             "(did the file change since the plan was made?)")
        inputs.append(source)
        labels += computed
    source = pa.concat_tables(inputs, promote_options="permissive")
    fields = arrow_fields(output_columns(plan.request, no_g))
    carried = [c for c in wanted if c in source.column_names]
    arrays = [pa.array(np.concatenate([b[f.name] for b in labels]), f.type) for f in fields]
    for j, c in enumerate(carried):          # positions right after source_id, as in the input
        fields.insert(1 + j, source.schema.field(c))
        arrays.insert(1 + j, source[c].combine_chunks())
    if entry["healpix_column"] in source.column_names:
        fields.append(source.schema.field(entry["healpix_column"]))
        arrays.append(source[entry["healpix_column"]].combine_chunks())
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), carried if len(carried) == 2 else None


def _write_table(table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP, use_dictionary=False)

