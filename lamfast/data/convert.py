"""``lamfast data convert``: Gaia XP_CONTINUOUS archive files to the gnorm Parquet that
labelling reads, once, so that every later labelling job reads Parquet instead of text.

Each input ``X.csv.gz`` (any archive format :func:`lamfast.io.read_catalog` reads as
"xp") becomes ``DIR/X.parquet``: the Catalog that ``lamfast label X --photometry ...``
reads for that file (:func:`lamfast.io.photometry_join.read_xp_joined`; without
photometry :func:`lamfast.io.read_catalog`): source_id, the gnorm coefficients, the
photometry tokens (bprp, jh, jk, g_fakemag as the files allow) and ``phot_g_mean_mag``
(NaN where a star has no G: its coefficients are missing). Other archive columns are not
kept: labelling reads none of them.

**Resume.** Every output is written atomically; its Parquet metadata (``lamfast`` key,
``meta["converted_from"]``) records the input's resolved path, size and mtime and the
photometry files' (same three each). A rerun skips an output whose record matches, and
converts again an input (or photometry set) that changed.

**Threads.** Files are converted ``threads`` at a time (default min(4, cores)) in a
thread pool: gzip inflation and the C++ parser release the GIL; each file's parser gets
cores // threads threads.

**HATS.** ``--format hats`` writes the same columns as one HATS catalogue partitioned by the
HEALPix pixel of each Gaia source_id, through these per-file outputs
(:mod:`lamfast.data.convert_hats`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..io.catalog import Catalog

RECORD_KEY = "converted_from"
DEFAULT_MAX_THREADS = 4
# Float coefficients hardly compress (zstd saves 19% over none); snappy writes ~1.5x
# faster than zstd for 12% more bytes, and every Parquet reader has it.
COMPRESSION = "snappy"


@dataclass
class ConvertSummary:
    """What one :func:`convert` call did: outputs written and skipped (already converted);
    for a HATS output (:func:`lamfast.data.convert_hats.convert_hats`) the outputs are its
    per-input parts, and ``catalog`` the catalogue folder."""

    converted: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    stars: int = 0                 # rows written (skipped files not counted)
    seconds: float = 0.0
    catalog: Path | None = None    # the HATS catalogue written or found up to date
    partitions: int = 0            # partitions written to it (0: it was up to date, nothing done)

    def __str__(self) -> str:
        if self.catalog is not None and not self.partitions:
            return f"the HATS catalogue {self.catalog} is up to date: nothing to convert"
        rate = f", {self.stars / self.seconds:,.0f} stars/s" if self.seconds > 0 and self.stars else ""
        text = (f"converted {len(self.converted)} file(s) ({self.stars:,} stars{rate} in "
                f"{self.seconds:.1f} s); {len(self.skipped)} already converted, skipped")
        return text + (f"; wrote the HATS catalogue {self.catalog} ({self.partitions} partitions)"
                       if self.catalog is not None else "")


def output_path(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``out_dir/<name without .gz and its extension>.parquet``."""
    name = Path(path).name.removesuffix(".gz")
    return Path(out_dir) / f"{name.rsplit('.', 1)[0] if '.' in name else name}.parquet"


def convert(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
            photometry: Sequence[str | os.PathLike] | None = None, threads: int | None = None,
            overwrite: bool = False, progress: bool = True,
            validate: Callable[[Catalog, Path], None] | None = None) -> ConvertSummary:
    """Convert Gaia XP_CONTINUOUS files to gnorm Parquet, one output per input.

    Parameters
    ----------
    inputs : archive files (CSV/ECSV/FITS/VOTable, plain or gzipped).
    out_dir : folder of the outputs (created); ``<input stem>.parquet`` each.
    photometry : photometry files joined by source_id, as ``lamfast label --photometry``
        (:class:`lamfast.io.photometry_join.PhotometryJoin`, loaded once). None: G must be
        a column of each input.
    threads : files converted at once (default min(4, cores)).
    overwrite : convert every input even where its output is up to date.
    progress : a tqdm bar over files.
    validate : called with each input's Catalog and path before its output is written; an
        error it raises stops the conversion (as a bad cell does). The HATS convert checks
        the source_ids here (:func:`lamfast.data.convert_hats.check_gaia_ids`).

    Returns
    -------
    ConvertSummary

    Raises
    ------
    FileNotFoundError or ValueError naming the file: an input missing or not an XP
    archive file, two inputs with the same output name, a photometry file's problem, a bad
    cell (the parser's file, line and column). Outputs finished before the error are kept.
    """
    from .._threads import _available_cores, resolve_threads
    from ..io.dispatch import detect_catalog_format

    t0 = time.perf_counter()
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ValueError("convert: no input files given")
    outputs = [output_path(p, out_dir) for p in inputs]
    _check_inputs(inputs, outputs, detect_catalog_format)
    join = None
    if photometry:
        from ..io.photometry_join import PhotometryJoin

        join = PhotometryJoin(photometry)
    records = input_records(inputs, photometry)
    summary = ConvertSummary()
    todo = []
    for path, out, record in zip(inputs, outputs, records):
        if not overwrite and _up_to_date(out, record):
            summary.skipped.append(out)
        else:
            todo.append((path, out, record))
    workers = min(len(todo), resolve_threads(threads) if threads is not None
                  else min(DEFAULT_MAX_THREADS, _available_cores())) or 1
    per_file = max(1, _available_cores() // workers)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for out, n in _run(todo, join, per_file, workers, progress, validate):
        summary.converted.append(out)
        summary.stars += n
    summary.converted.sort(key=outputs.index)   # input order, not the order they finished in
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_inputs(inputs: list[Path], outputs: list[Path], detect) -> None:
    """Every input an XP archive file, no two of one output name (before any work)."""
    seen: dict[Path, Path] = {}
    for path, out in zip(inputs, outputs):
        if not path.is_file():
            raise FileNotFoundError(f"no such input file: {path}")
        if detect(path) != "xp":
            raise ValueError(f"{path} is not a Gaia XP_CONTINUOUS archive "
                             "file (CSV/ECSV/FITS/VOTable, plain or .gz)")
        if out in seen:
            raise ValueError(f"{seen[out]} and {path} would both be written to "
                             f"{out}; convert them to different --out folders")
        seen[out] = path


def input_records(inputs: Sequence[Path], photometry: Sequence[str | os.PathLike] | None) -> list[dict]:
    """Per input, what its output is converted from (``meta["converted_from"]``): the input's
    and the photometry files' resolved path, size and mtime."""
    phot_record = [_file_record(p) for p in (photometry or [])]
    return [{"input": _file_record(p), "photometry": phot_record} for p in inputs]


def _file_record(path) -> dict:
    """Resolved path, size and mtime (ns) of a file: what a changed file changes."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _up_to_date(out: Path, record: dict) -> bool:
    """The output exists and was converted from exactly ``record``'s files."""
    if not out.is_file():
        return False
    import pyarrow.parquet as pq

    from ..io.parquet import METADATA_KEY

    try:
        raw = (pq.read_schema(out).metadata or {}).get(METADATA_KEY)
    except Exception:   # a file that is not Parquet (or torn by another writer): convert again
        return False
    return bool(raw) and json.loads(raw).get("meta", {}).get(RECORD_KEY) == record


def _run(todo, join, per_file: int, workers: int, progress: bool, validate):
    """Yield (output, stars) of each converted file as it finishes; the first error
    cancels the files not started and is raised."""
    from tqdm.auto import tqdm

    if not todo:
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="lamfast-convert") as pool, \
            tqdm(total=len(todo), unit="file", disable=not progress, desc="converting") as bar:
        pending = {pool.submit(_convert_one, path, out, record, join, per_file, validate)
                   for path, out, record in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
                bar.update()
                yield f.result()


def _convert_one(path: Path, out: Path, record: dict, join, threads: int, validate) -> tuple[Path, int]:
    """Read ``path`` as labelling does, write its Catalog to ``out`` atomically."""
    from ..atomic import atomic_path
    from ..io import read_catalog, write_parquet
    from ..io.photometry_join import read_xp_joined

    try:
        cat = (read_xp_joined(path, join, threads=threads)[0] if join is not None
               else read_catalog(path, threads=threads))
        extra = {"phot_g_mean_mag": cat.extra["phot_g_mean_mag"]}   # the only side column labelling uses
        cat.extra = extra
        if validate is not None:
            validate(cat, path)
        cat.meta = {**cat.meta, RECORD_KEY: record}
        with atomic_path(out) as tmp:
            write_parquet(cat, tmp, compression=COMPRESSION)
    except Exception as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: {e}") from e
    return out, len(cat)
