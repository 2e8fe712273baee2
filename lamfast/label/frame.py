"""Label one pandas DataFrame in memory: the per-partition function of LSDB and Dask.

``catalog.map_partitions(lamfast.label_frame)`` labels a catalogue partition by partition
on whatever cluster the caller's dataframe library runs: each call takes a frame of token
columns and returns it with the predictions beside them, rows untouched. The model is
loaded once per process (and per device) and shared by the calls of all its threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..units import unit_of

def label_frame(df, model="default", request: Sequence[str] = ("teff", "logg", "m_h"), *,
                columns: Sequence[str] | None = None, device: str = "auto", precision: str = "auto",
                batch_size: int | None = None):
    """``df`` with the model's predictions of ``request`` added as columns, rows unchanged.

    Parameters
    ----------
    df : pandas.DataFrame, one row per star; its columns named after tokens of the
        model's vocabulary (``bp0..bp54``, ``rp0..rp54``, ``bprp``, ``jh``, ``jk``, ...)
        are the inputs, raw catalogue values with NaN or NA = missing, as
        :func:`lamfast.predict` reads them. Other columns are carried through.
    model : ``"default"`` (the shipped model), a model folder written by
        :meth:`lamfast.LAM.save` (loaded once per process and device), or a loaded
        :class:`lamfast.LAM`.
    request : token names to predict for every star.
    columns : the input columns (default: every column named after a token).
    device, precision, batch_size : as :func:`lamfast.predict`.

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
    table = predict(lam, df, columns, request, device=device, precision=precision, batch_size=batch_size)
    added = pd.DataFrame({c: np.asarray(table[c], dtype=bool if c == "no_input" else np.float64) for c in names},
                         index=df.index)
    out = pd.concat([df, added], axis=1)
    out.attrs = {**df.attrs, "units": {**df.attrs.get("units", {}),
                                        **{c: unit_of(c) for c in names if c != "no_input"}}}
    return out


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
