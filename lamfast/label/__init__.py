"""Label whole catalogues with a trained LAM: :func:`label` and ``lamfast label``.

A job cuts its inputs into work units (:mod:`.plan`), computes each unit into a part file
in ``OUT.parts`` (:mod:`.run`), then merges the parts into one Parquet or HDF5 file
(:mod:`.output`), or a HATS catalogue partitioned as a HATS input (:mod:`.hats_output`); :mod:`.parts` checksums every part, :mod:`.lock` keeps one job per
output; :mod:`.cli` is the command line and :mod:`lamfast.distributed` runs the
units on a Dask cluster. A job killed at any moment and rerun with ``resume`` gives the
same output; ``shard=(K, N)`` splits the units over N independent jobs. Your own
scheduler can drive the same steps: :func:`check_writer` and :func:`check_overwrite` up
front, :func:`output_lock` held for the job, :func:`make_plan`, :func:`parts_dir` and :func:`ensure_plan` (or :func:`parts_folder`),
:func:`photometry_join` once (shared by the calls), :func:`run_units` per batch of units, then :func:`merge`.

``lamfast.label`` (the attribute of the package) is the function :func:`label`; its other
names are reached with ``from lamfast.label import ...``.
"""

from .output import (FLAG_COLUMN, HDF5_TABLE, METADATA_KEY, NO_G_COLUMN, OUTPUT_FORMATS, WRITE_ROWS, check_coverage,
                     check_output_plan, check_overwrite, check_writer, finished_output, merge, output_format, read_output,
                     read_output_metadata)
from .lock import OutputLockedError, lock_path, output_lock
from .parts import checksum_path, part_done, part_problem, remove_part
from .plan import (PLAN_FILE, PLAN_VERSION, LabelPlan, WorkUnit, check_input_columns, ensure_plan, expand_inputs,
                   make_plan, parse_shard, part_path, parts_dir, parts_folder, plan_units, read_plan, shard_units)
from .run import UNIT_SLEEP_ENV, label, model_input_columns, photometry_join, read_unit, run_units
from .summary import LabelSummary

__all__ = [
    "FLAG_COLUMN", "HDF5_TABLE", "LabelPlan", "LabelSummary", "METADATA_KEY", "NO_G_COLUMN", "OUTPUT_FORMATS", "PLAN_FILE",
    "OutputLockedError", "checksum_path", "lock_path", "output_lock", "part_done", "part_problem", "remove_part",
    "PLAN_VERSION", "UNIT_SLEEP_ENV", "WRITE_ROWS", "WorkUnit", "check_coverage", "check_input_columns",
    "check_output_plan", "check_overwrite", "check_writer", "ensure_plan", "expand_inputs", "finished_output", "label", "make_plan",
    "merge", "model_input_columns", "output_format", "parse_shard", "part_path", "parts_dir", "parts_folder",
    "photometry_join", "plan_units", "read_output", "read_output_metadata", "read_plan", "read_unit", "run_units", "shard_units",
]
