"""The paper's self-supervised training sampler, in C++ (`sample_training`) and numpy
(`sample_training_reference`, same signature, identical output).

Per star and epoch (Leung & Bovy 2024, DESIGN.md section 1): shuffle the star's present
tokens, crop to ``context``, blank ``b ~ U{0..min(max_blank, L-1)}`` trailing ones, and
draw ``n_outputs`` requested tokens among the star's present members of the output
list. Randomness is a pure function of (seed, epoch, star id, slot) via splitmix64, so
the result does not depend on threads, chunking or the order stars are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import _core
from ._threads import resolve_threads
from .batch import TrainingBatch
from .columns import check_columns, find_bad_cell, raise_bad_cell
from .normalization import Normalizer
from .vocab import PAPER_NON_OUTPUTS, Vocab

OutputSpec = Sequence[str] | Mapping[str, int] | None


def output_weights(columns: Sequence[str], outputs: OutputSpec = None) -> np.ndarray:
    """int32 [V] draw weight per column; 0 = never requested.

    outputs: None = the paper's list (every column but bprp and jk), weight 1 each;
    a list of names (weight 1 each); or {name: integer weight} (e.g. labels 20,
    coefficients 1, to request labels more often).
    """
    if outputs is None:
        outputs = [c for c in columns if c not in PAPER_NON_OUTPUTS]
    if not isinstance(outputs, Mapping):
        outputs = dict.fromkeys(outputs, 1)
    w = np.zeros(len(columns), dtype=np.int32)
    index = {c: i for i, c in enumerate(columns)}
    for name, weight in outputs.items():
        if name not in index:
            raise ValueError(f"output token {name!r} is not among the columns")
        if int(weight) != weight or weight < 0 or weight > np.iinfo(np.int32).max:
            raise ValueError(f"output weight of {name!r} must be a non-negative int below "
                             f"2^31, got {weight!r}")
        w[index[name]] = weight
    return w


def _prepare(values, columns, errors, star_ids, outputs, normalizer, vocab,
             context, max_blank, n_outputs, seed, epoch):
    vocab = vocab or (normalizer.vocab if normalizer else Vocab.paper())
    values, errors, ids = check_columns(values, columns, errors, vocab)
    for name, x in (("context", context), ("max_blank", max_blank), ("n_outputs", n_outputs),
                    ("seed", seed), ("epoch", epoch)):
        if not isinstance(x, (int, np.integer)) or x < 0:
            raise ValueError(f"{name} must be a non-negative int, got {x!r}")
        if name in ("seed", "epoch") and x >= 1 << 64:
            raise ValueError(f"{name} must be below 2^64 (it seeds a 64-bit hash), got {x!r}")
    if star_ids is None:
        star_ids = np.arange(len(values), dtype=np.int64)
    star_ids = np.ascontiguousarray(star_ids, dtype=np.int64)
    if star_ids.shape != (len(values),):
        raise ValueError(f"star_ids must be [N={len(values)}], got {star_ids.shape}")
    center, inv_scale = normalizer.center_inv_scale(columns) if normalizer else (None, None)
    return values, errors, ids, star_ids, output_weights(columns, outputs), center, inv_scale


def _clamped(v: int, context: int, max_blank: int, n_outputs: int) -> tuple[int, int, int]:
    """context, max_blank and n_outputs capped at V: the draw is the same (a star has at
    most V tokens, and at most V can be requested), and the C++ core takes int32 counts
    and sizes an [N, n_outputs] scratch table by them."""
    return min(int(context), v), min(int(max_blank), v), min(int(n_outputs), v)


def sample_training(values: np.ndarray, columns: Sequence[str], *,
                    errors: np.ndarray | None = None, epoch: int = 0, seed: int = 0,
                    context: int = 64, max_blank: int = 59, n_outputs: int = 1,
                    outputs: OutputSpec = None, exclude_inputs: bool = False,
                    star_ids: np.ndarray | None = None, normalizer: Normalizer | None = None,
                    vocab: Vocab | None = None, threads: int | None = None) -> TrainingBatch:
    """Draw one epoch of training inputs and requested targets.

    Parameters
    ----------
    values, errors : float32 [N, V]
        Catalogue columns (NaN = missing) and their errors; ``errors`` of requested
        tokens become ``target_error`` (NaN -> 0, as the authors do).
    epoch, seed : the draw is a pure function of (seed, epoch, star id).
    context : crop of the shuffled present tokens (paper: 64).
    max_blank : the crop loses a uniform 0..min(max_blank, L-1) trailing tokens (paper: 59).
    n_outputs : requested tokens per star, drawn without replacement (paper: 1); fewer
        when the star has fewer candidates, none when it has none.
    outputs : output list and weights, see :func:`output_weights`.
    exclude_inputs : never request a token that is also among this draw's inputs.
    star_ids : int64 [N] identity of each star for the random stream (default: row
        index). Pass global row numbers to make chunked calls equal one big call.

    Returns
    -------
    TrainingBatch
        Inputs in column order (a subset of the star's present tokens, at most
        ``context``, at least one when the star has any), and ``target_*`` in draw order.
    """
    values, errors, ids, star_ids, weights, center, inv_scale = _prepare(
        values, columns, errors, star_ids, outputs, normalizer, vocab,
        context, max_blank, n_outputs, seed, epoch)
    context, max_blank, n_outputs = _clamped(values.shape[1], context, max_blank, n_outputs)
    out = _core.sample(values, errors, ids, star_ids, weights, center, inv_scale, int(seed),
                       int(epoch), context, max_blank, n_outputs,
                       bool(exclude_inputs), resolve_threads(threads))
    if out[0] is not None:
        raise_bad_cell(out[0], columns)
    _, in_id, in_value, in_error, cu_in, t_id, t_value, t_error, cu_t = out
    return TrainingBatch(in_id, in_value, cu_in, int(np.diff(cu_in).max(initial=0)), in_error,
                         t_id, t_value, t_error, cu_t, int(np.diff(cu_t).max(initial=0)))


# ---- numpy reference ---------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SLOT = np.uint64(0xD1B54A32D192ED03)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic, as in csrc/hash.hpp)."""
    z = np.asarray(z, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _star_key(seed: int, epoch: int, star: np.ndarray) -> np.ndarray:
    return _mix64(_mix64(_mix64(np.uint64(seed)) ^ np.uint64(epoch)) ^ star.astype(np.uint64))


def _slot_random(key: np.ndarray, slot) -> np.ndarray:
    return _mix64(key ^ (np.asarray(slot, dtype=np.uint64) * _SLOT))


def sample_training_reference(values: np.ndarray, columns: Sequence[str], *,
                              errors: np.ndarray | None = None, epoch: int = 0, seed: int = 0,
                              context: int = 64, max_blank: int = 59, n_outputs: int = 1,
                              outputs: OutputSpec = None, exclude_inputs: bool = False,
                              star_ids: np.ndarray | None = None,
                              normalizer: Normalizer | None = None, vocab: Vocab | None = None,
                              threads: int | None = None) -> TrainingBatch:
    """Vectorised numpy version of :func:`sample_training` (identical output)."""
    values, errors, ids, star_ids, weights, center, inv_scale = _prepare(
        values, columns, errors, star_ids, outputs, normalizer, vocab,
        context, max_blank, n_outputs, seed, epoch)
    bad = find_bad_cell(values, errors)
    if bad is not None:
        raise_bad_cell(bad, columns)
    n, v = values.shape
    context, max_blank, n_outputs = _clamped(v, context, max_blank, n_outputs)
    rows = np.arange(n)
    with np.errstate(over="ignore"):
        key = _star_key(seed, epoch, star_ids)  # [N]
        valid = ~np.isnan(values)
        length = np.minimum(valid.sum(axis=1), context)
        most_blank = np.minimum(max_blank, np.maximum(length - 1, 0)).astype(np.uint64)
        blank = (_slot_random(key, v) % (most_blank + np.uint64(1))).astype(np.int64)
        keep = length - blank  # [N] inputs per star

        # Shuffle = sort by random key; inputs = the first `keep`. A key's low bits hold
        # its column, so keys are unique and the order needs no tie rule.
        column_bits = np.uint64(max(v - 1, 0).bit_length())
        keys = _slot_random(key[:, None], np.arange(v)[None, :])  # [N, V]
        keys = (keys >> column_bits << column_bits) | np.arange(v, dtype=np.uint64)
        keys[~valid] = np.iinfo(np.uint64).max
        order = np.argsort(keys, axis=1)
        rank = np.empty_like(order)
        rank[rows[:, None], order] = np.arange(v)[None, :]
        is_input = valid & (rank < keep[:, None])

        # Targets: sequential weighted draws without replacement, over column order.
        eligible = valid & (weights > 0)[None, :]
        if exclude_inputs:
            eligible &= ~is_input
        w = np.where(eligible, weights[None, :], 0).astype(np.int64)
        picks = np.full((n, n_outputs), -1, dtype=np.int64)
        for j in range(n_outputs):
            total = w.sum(axis=1)
            has = total > 0
            r = _slot_random(key, v + 1 + j) % np.maximum(total, 1).astype(np.uint64)
            pick = np.argmax(np.cumsum(w, axis=1).astype(np.uint64) > r[:, None], axis=1)
            picks[has, j] = pick[has]
            w[rows[has], pick[has]] = 0

    std_values = values if center is None else (values - center) * inv_scale
    std_errors = None
    if errors is not None:
        std_errors = errors if center is None else errors * inv_scale
    target_error = np.where(np.isnan(errors), 0, errors).astype(np.float32) if errors is not None \
        else np.zeros_like(values)
    if center is not None:
        target_error = target_error * inv_scale

    cu_in = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(is_input.sum(axis=1), out=cu_in[1:])
    drawn = picks >= 0
    cu_t = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(drawn.sum(axis=1), out=cu_t[1:])
    t_row, t_col = np.broadcast_to(rows[:, None], picks.shape)[drawn], picks[drawn]
    return TrainingBatch(
        np.broadcast_to(ids, values.shape)[is_input], std_values[is_input], cu_in,
        int(np.diff(cu_in).max(initial=0)),
        std_errors[is_input] if std_errors is not None else None,
        ids[t_col], std_values[t_row, t_col], target_error[t_row, t_col], cu_t,
        int(np.diff(cu_t).max(initial=0)))
