"""Label one pandas DataFrame in memory: the per-partition function of LSDB and Dask.

``catalog.map_partitions(lamfast.label_frame)`` labels a catalogue partition by partition
on whatever cluster the caller's dataframe library runs: each call takes a frame of token
columns (or the Gaia archive's XP coefficient lists with G beside them, as LSDB's Gaia
catalogues hold them) and returns it with the predictions beside them, rows untouched. The model is
loaded once per process (and per device) and shared by the calls of all its threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..units import unit_of

# The archive's XP columns a frame may hold instead of bp0..bp54 / rp0..rp54, read as a Parquet
# file's (lamfast.io.parquet): coefficient lists, their errors, the relevant bases (G gnorms them).
XP_LIST_COLUMNS = ("bp_coefficients", "rp_coefficients", "bp_coefficient_errors", "rp_coefficient_errors",
                   "bp_n_relevant_bases", "rp_n_relevant_bases")


def label_frame(df, model="default", request: Sequence[str] = ("teff", "logg", "m_h"), *,
                columns: Sequence[str] | None = None, device: str = "auto", precision: str = "auto",
                batch_size: int | None = None, xp_units: str = "flux"):
    """``df`` with the model's predictions of ``request`` added as columns, rows unchanged.

    Parameters
    ----------
    df : pandas.DataFrame, one row per star; its columns named after tokens of the
        model's vocabulary (``bp0..bp54``, ``rp0..rp54``, ``bprp``, ``jh``, ``jk``, ...)
        are the inputs, raw catalogue values with NaN or NA = missing, as
        :func:`lamfast.predict` reads them. Instead of bp0.. and rp0.., the frame may hold
        the archive's ``bp_coefficients``/``rp_coefficients`` lists (None for a missing
        band; ``*_n_relevant_bases`` honoured as the archive readers do) in ``xp_units``,
        gnormed with each star's ``phot_g_mean_mag`` column where they are e-/s. Other
        columns are carried through.
    model : ``"default"`` (the shipped model), a model folder written by
        :meth:`lamfast.LAM.save` (loaded once per process and device), or a loaded
        :class:`lamfast.LAM`.
    request : token names to predict for every star.
    columns : the input columns (default: every column named after a token).
    device, precision, batch_size : as :func:`lamfast.predict`.
    xp_units : ``"flux"`` (e-/s, the archive's; default) or ``"gnorm"``: the units of the
        coefficient lists (values contradicting them: ValueError naming the column).

    Returns
    -------
    pandas.DataFrame
        ``df``'s columns, index and row order, then per request ``<token>`` and
        ``<token>_error`` (float64 [N]) and ``no_input`` (bool [N], True where a star has
        no valid input; its predictions are NaN). ``attrs["units"]`` maps each new
        column to its astropy unit string ("" = dimensionless). An empty frame gives an
        empty frame with these columns (Dask's and LSDB's ``meta``).

    Raises
    ------
    ValueError
        ``df`` already has a column of that name (the message names it), or any input
        error of :func:`lamfast.predict` (unknown request, a column that is not numbers).
    """
    import pandas as pd

    from ..infer import predict

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"label_frame takes a pandas DataFrame, got {type(df).__name__}")
    request = [request] if isinstance(request, str) else list(request)
    names = [c for r in request for c in (r, f"{r}_error")] + ["no_input"]
    taken = [c for c in names if c in df.columns]
    if taken:
        raise ValueError(f"the frame already has a column {taken[0]!r}, which label_frame would write; "
                         "rename or drop it first (an input of that name would also be predicted from itself)")
    lam = _model(model, device)
    table = predict(lam, _token_frame(df, xp_units), columns, request, device=device, precision=precision,
                    batch_size=batch_size)
    added = pd.DataFrame({c: np.asarray(table[c], dtype=bool if c == "no_input" else np.float64) for c in names},
                         index=df.index)
    out = pd.concat([df, added], axis=1)
    out.attrs = {**df.attrs, "units": {**df.attrs.get("units", {}),
                                        **{c: unit_of(c) for c in names if c != "no_input"}}}
    return out


def _token_frame(df, xp_units: str):
    """``df`` with its XP coefficient lists (if any) as gnorm columns bp0.., rp0.. instead."""
    import pandas as pd
    import pyarrow as pa

    from ..io.parquet import G_COLUMN, table_catalog
    from ..io.xp_continuous import N_BASES

    lists = [c for c in XP_LIST_COLUMNS if c in df.columns]
    if not any(c.endswith("_coefficients") for c in lists):
        return df
    both = [c for c in df.columns if c in ("bp0", "rp0")]
    if both:
        raise ValueError(f"the frame has both coefficient lists and the column {both[0]!r}; keep one of the two")
    keep = lists + ([G_COLUMN] if G_COLUMN in df.columns else [])
    ids = df["source_id"].to_numpy(np.int64) if "source_id" in df.columns else np.arange(len(df), dtype=np.int64)
    table = pa.Table.from_pandas(df[keep], preserve_index=False).append_column("source_id", pa.array(ids))
    cat = table_catalog(table, "the frame given to label_frame", xp_units=xp_units)
    coefficients = pd.DataFrame(index=df.index)
    for band in (c[:2] for c in lists if c.endswith("_coefficients")):
        # a band missing for every row (an empty frame: Dask's and LSDB's meta) has no list
        # length to read: the archive's 55 coefficients, all missing
        for name in [c for c in cat.columns if c.startswith(band) and c[2:].isdigit()] or [
                f"{band}{k}" for k in range(N_BASES)]:
            coefficients[name] = cat.column(name) if name in cat.columns else np.float32(np.nan)
    return pd.concat([df.drop(columns=keep), coefficients], axis=1)


def _model(model, device: str):
    """A loaded model as is; a name or folder: the process's shared model of that folder,
    weights file (size, mtime: a retrained model is reloaded) and device."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    from ..infer import shared_model
    from ..resources import WEIGHTS_FILE, resolve_model

    folder = resolve_model(model).resolve()
    stat = (folder / WEIGHTS_FILE).stat()
    return shared_model(folder, device, (stat.st_size, stat.st_mtime_ns))
