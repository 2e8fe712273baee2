"""The columns of a labels table, whatever file holds it: names, dtypes, units and
descriptions, and one part's rows as those columns (:mod:`.output` and :mod:`.hats_output`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..units import description_of, unit_of

METADATA_KEY = "lamfast_label"
FLAG_COLUMN = "no_input"
NO_G_COLUMN = "no_g"                  # in outputs of jobs with Gaia XP (or e-/s Parquet) inputs
_FIXED_DTYPES = {"source_id": np.int64, "input_file": np.int32, "input_row": np.int64, FLAG_COLUMN: np.bool_,
                 NO_G_COLUMN: np.bool_}
_DESCRIPTIONS = {"source_id": "source_id of the input row",
                 "input_file": "index of the input file in the metadata's inputs",
                 "input_row": "row of the input file (0-based)",
                 FLAG_COLUMN: "the star has no usable input value: its predictions are NaN",
                 NO_G_COLUMN: "Gaia XP row without G (phot_g_mean_mag): its XP coefficients could not be "
                              "gnormed and were missing; labelled from its other inputs"}


def output_columns(request: Sequence[str], no_g: bool = False) -> list[str]:
    """The labels table's columns, in order, for the requested tokens."""
    return (["source_id", "input_file", "input_row"] + [c for r in request for c in (r, f"{r}_error")]
            + [FLAG_COLUMN] + ([NO_G_COLUMN] if no_g else []))


def part_columns(part: dict, file_index: int, request: Sequence[str], no_g: bool) -> dict:
    """One part's arrays (``np.load`` of ``unit-NNNNNN.npz``) as the table's columns, each [n]."""
    n = len(part["source_id"])
    cols = {"source_id": part["source_id"], "input_file": np.full(n, file_index, np.int32),
            "input_row": part["input_row"]}
    for j, r in enumerate(request):
        cols[r], cols[f"{r}_error"] = part["value"][:, j], part["error"][:, j]
    cols[FLAG_COLUMN] = part["no_input"].astype(bool)
    if no_g:   # a part without no_g is of a file not gnormed on reading (or of a lamfast before the column)
        cols[NO_G_COLUMN] = part["no_g"].astype(bool) if "no_g" in part else np.zeros(n, bool)
    return cols


def column_dtypes(columns: Sequence[str]) -> list[tuple[str, type]]:
    """(name, numpy dtype) of each column: the bookkeeping columns' own, float32 for labels."""
    return [(c, _FIXED_DTYPES.get(c, np.float32)) for c in columns]


def arrow_fields(columns: Sequence[str]) -> list:
    """pyarrow fields of the columns, each with its unit (where it has one) and description
    in the field metadata: the schema of every Parquet file of labels."""
    import pyarrow as pa

    fields = []
    for c, dtype in column_dtypes(columns):
        unit, description = unit_and_description(c)
        info = {"description": description} | ({} if unit is None else {"unit": unit})
        fields.append(pa.field(c, pa.from_numpy_dtype(dtype), metadata=info))
    return fields


def unit_and_description(column: str) -> tuple[str | None, str]:
    """(astropy unit string, or None for the bookkeeping columns; description) of a column."""
    if column in _FIXED_DTYPES:
        return None, _DESCRIPTIONS[column]
    return unit_of(column), description_of(column)
