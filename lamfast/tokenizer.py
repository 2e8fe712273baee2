"""Catalogue columns -> packed ragged token sets, in C++ (`tokenize`) and numpy
(`tokenize_reference`, the plain oracle with the same signature and exact output)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from ._threads import resolve_threads
from .batch import Batch
from .columns import check_columns, find_bad_cell, raise_bad_cell
from .normalization import Normalizer
from .vocab import Vocab


def _prepare(values, columns, errors, max_tokens, normalizer, vocab):
    vocab = vocab or (normalizer.vocab if normalizer else Vocab.paper())
    values, errors, ids = check_columns(values, columns, errors, vocab)
    if max_tokens is None:
        max_tokens = len(columns)
    if not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative int or None, got {max_tokens!r}")
    center, inv_scale = normalizer.center_inv_scale(columns) if normalizer else (None, None)
    return values, errors, ids, int(min(max_tokens, len(columns))), center, inv_scale


def tokenize(values: np.ndarray, columns: Sequence[str], *, errors: np.ndarray | None = None,
             max_tokens: int | None = None, normalizer: Normalizer | None = None,
             vocab: Vocab | None = None, threads: int | None = None) -> Batch:
    """Pack the finite cells of a catalogue table into ragged token sets.

    Parameters
    ----------
    values : float32 [N, V]
        One column per token name in ``columns``; NaN = missing.
    columns : V token names of ``vocab`` (default: the normalizer's, else the paper's).
    errors : float32 [N, V], optional
        Input uncertainties, carried along as ``Batch.error`` (NaN allowed).
    max_tokens : int, optional
        Cap on tokens per star: the **first** ``max_tokens`` present values in column
        order are kept (put the columns you value most first). Default: no cap.
    normalizer : Normalizer, optional
        If given, values become (x - median) / scale and errors error / scale.
    threads : int, optional
        C++ threads (default :func:`lamfast.get_num_threads`).

    Returns
    -------
    Batch
        ``token_id`` int32 [T], ``value`` float32 [T], ``cu_seqlens`` int32 [N+1],
        ``max_seqlen``; star i's tokens are in column order. A star with no value has
        an empty set (``cu_seqlens`` repeats), never dropped.

    Raises
    ------
    ValueError
        Unknown or duplicate column, wrong dtype/shape, N or V zero, or +/-inf in a
        cell (the message names its column and row).
    """
    values, errors, ids, max_tokens, center, inv_scale = _prepare(
        values, columns, errors, max_tokens, normalizer, vocab)
    out = _core.tokenize(values, errors, ids, center, inv_scale, max_tokens,
                         resolve_threads(threads))
    if out[0] is not None:
        raise_bad_cell(out[0], columns)
    _, token_id, value, error, cu = out
    return Batch(token_id, value, cu, int(np.diff(cu).max(initial=0)), error)


def tokenize_reference(values: np.ndarray, columns: Sequence[str], *,
                       errors: np.ndarray | None = None, max_tokens: int | None = None,
                       normalizer: Normalizer | None = None, vocab: Vocab | None = None,
                       threads: int | None = None) -> Batch:
    """Plain numpy boolean-mask version of :func:`tokenize` (same output, bit for bit)."""
    values, errors, ids, max_tokens, center, inv_scale = _prepare(
        values, columns, errors, max_tokens, normalizer, vocab)
    bad = find_bad_cell(values, errors)
    if bad is not None:
        raise_bad_cell(bad, columns)
    keep = ~np.isnan(values)
    if max_tokens < values.shape[1]:
        keep &= np.cumsum(keep, axis=1) <= max_tokens
    seqlens = keep.sum(axis=1)
    cu = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(seqlens, out=cu[1:])
    if center is not None:
        values = (values - center) * inv_scale
        errors = errors * inv_scale if errors is not None else None
    token_id = np.broadcast_to(ids, values.shape)[keep]
    error = errors[keep] if errors is not None else None
    return Batch(token_id, values[keep], cu, int(seqlens.max(initial=0)), error)
