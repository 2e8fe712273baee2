"""Inference: a trained LAM + a request list -> physical predictions of packed batches.

The one inference path of lamfast: :func:`predict` (``lamfast.predict``), :func:`lamfast.label`,
the Dask workers of :mod:`lamfast.distributed` and the benchmarks all go through
:class:`Predictor`. It calls only the model's public ``forward`` (standardised units) and
``normalizer.unstandardize``.

A chunk of stars is handled in two steps so that the CPU part can run on a background
thread while the device computes the previous chunk:

1. :meth:`Predictor.prepare` (numpy only): drop stars without tokens (their predictions
   are NaN, they are never dropped from the output), sort the rest by set length when
   lengths vary, and cut them into micro-batches of ``batch_size`` stars. Padded code
   paths (the CPU attention) then pad each micro-batch only to its own longest set.
2. :meth:`Predictor.run`: forward pass per micro-batch, unstandardise, scatter back into
   input order.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .batch import Batch
from .model import LAM
from .resources import DEFAULT_MODEL, WEIGHTS_FILE, resolve_model

PRECISIONS = ("auto", "fp32", "bf16")
ORDERS = ("information", "given")


# ---- the model and its predictions -------------------------------------------------------

def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> LAM:
    """The :class:`lamfast.LAM` named ``"default"`` (shipped) or saved at a path, in eval mode."""
    return LAM.load(name_or_path, device=device).eval()


_SHARED: dict = {}                 # (model folder, version, device) -> LAM, per process
_SHARED_LOCK = threading.Lock()


def shared_model(folder: str | os.PathLike, device: str, version) -> LAM:
    """The model at ``folder`` loaded once per process, ``version`` (its sha256, or its
    weights file's size and mtime: a retrained model is loaded again) and device, and
    shared by every caller of the process: the tasks of a Dask worker, the partitions of
    ``map_partitions(lamfast.label_frame)``."""
    key = (str(folder), version, str(resolve_device(device)))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_model(folder, device=key[2])
        return _SHARED[key]


def model_hash(name_or_path: str | os.PathLike) -> str:
    """sha256 (hex) of the model's weights file: what exactly produced a labelled catalogue."""
    h = hashlib.sha256()
    with open(resolve_model(name_or_path) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def predict(model: LAM, values, columns: Sequence[str] | None = None,
            request: Sequence[str] = ("teff", "logg", "m_h"), *, order: str = "information",
            batch_size: int | None = None, device: str | torch.device = "auto",
            max_tokens: int | None = None, threads: int | None = None, precision: str = "auto"):
    """Predict tokens of many stars with ``model``, in physical units (via :class:`Predictor`).

    Parameters
    ----------
    model : lamfast.LAM with a normalizer; it moves to ``device`` (its train/eval mode is
        restored afterwards).
    values : [N, V] array of real numbers (any float or int dtype), an astropy Table or a
        pandas DataFrame; raw (not standardised) catalogue values, NaN or masked = missing.
        They are standardised in float64, then handed to the model in float32.
    columns : V token names of the array's columns; for a table, the columns to use
        (default: every column named after a token of the model's vocabulary).
    request : token names to predict for every star.
    order : which present values a star keeps when it has more than ``max_tokens``:
        ``"information"`` (default) orders the columns as :func:`lamfast.label` does,
        scalars first, then XP coefficients by rising order
        (:func:`lamfast.vocab.by_information`), so a full XP star keeps its colours and
        bp0..27, rp0..27; ``"given"`` keeps the first ones in ``columns`` order.
    batch_size : stars per forward pass (memory is bounded by it); default 256 on
        CPU, 4096 on GPUs (:func:`default_batch_size`).
    device : ``"auto"`` (CUDA if available), or any torch device.
    max_tokens : keep at most this many present values per star, in ``order``; default
        ``model.config.context_length``, the set size the model was trained on. A warning
        says how many stars were cut.
    threads : tokenizer threads (default :func:`lamfast.get_num_threads`).
    precision : ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 on CUDA and on CPUs with bf16
        GEMMs, fp32 on other CPUs: :func:`resolve_precision`).

    Input columns the model cannot use, tokens it has no normalisation stats for (e.g.
    ``g_fakemag`` in the shipped model), are dropped with a warning naming them, as
    :func:`lamfast.label` leaves them out.

    Returns
    -------
    astropy.table.Table
        One row per star in input order (none for N = 0): ``<name>`` and ``<name>_error``
        per request (value = mu*scale + median, error = sqrt(exp(logvar))*scale, float64,
        with the unit and description of :mod:`lamfast.units`) and ``no_input`` (True
        where a star has no valid value; its predictions are NaN).
    """
    from astropy.table import Column, Table

    from .columns import InputTable, model_input_columns
    from .tokenizer import tokenize
    from .units import description_of, unit_of

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    inputs = InputTable(values, columns, model.vocab)
    was_training = model.training
    predictor = Predictor(model, request, device=device, precision=precision, batch_size=batch_size)
    usable = model_input_columns(model, ())             # every token with stats, most informative first
    kept = set(inputs.columns) & set(usable)
    columns = [c for c in (usable if order == "information" else inputs.columns) if c in kept]
    dropped = [c for c in inputs.columns if c not in kept]
    if dropped:
        warnings.warn(f"input columns dropped: {dropped} (this model has no normalisation stats for them)",
                      stacklevel=2)
    if not columns:
        raise ValueError(f"none of the columns {inputs.columns[:6]} is an input the model can use")
    if max_tokens is None:
        max_tokens = model.config.context_length
    ids = model.vocab.ids(columns)
    center, scale = model.normalizer.center[ids], model.normalizer.scale[ids]        # float64 [V]
    n, r = inputs.n_rows, len(predictor.request)
    value, error = np.empty((n, r)), np.empty((n, r))
    no_input = np.empty(n, dtype=bool)
    cut = 0
    chunk = max(predictor.batch_size, 65536)  # tokenize in large slabs; the predictor cuts micro-batches
    try:
        for start in range(0, n, chunk):
            raw = inputs.rows(start, start + chunk, columns)                        # float64 [n, V]
            # Standardised in float64, as the authors do: float32 would round a value
            # to 2**-24 of its size before its median is taken away.
            batch = tokenize(((raw - center) / scale).astype(np.float32), columns, max_tokens=max_tokens,
                             vocab=model.vocab, threads=threads)
            cut += int(np.count_nonzero(np.count_nonzero(~np.isnan(raw), axis=1) > max_tokens))
            prepared = predictor.prepare(batch)
            stop = start + batch.n_stars
            value[start:stop], error[start:stop] = predictor.run(prepared)
            no_input[start:stop] = prepared.no_input
    finally:
        model.train(was_training)
    if cut:
        warnings.warn(f"{cut} of {n} stars have more than {max_tokens} present values; the model sees "
                      f"the first {max_tokens} in {order!r} order (max_tokens, order)", stacklevel=2)
    table = Table()
    for j, name in enumerate(predictor.request):
        for col, data in ((name, value[:, j]), (f"{name}_error", error[:, j])):
            table[col] = Column(data, unit=unit_of(col), description=description_of(col))
    table["no_input"] = Column(no_input, description="no valid input value: predictions are NaN")
    return table


def check_request(model, request: str | Sequence[str]) -> list[str]:
    """The request as a list, after checking the model can predict each token in physical units."""
    if model.normalizer is None:
        raise ValueError("this model has no normalizer: predicting needs per-token stats")
    request = [request] if isinstance(request, str) else list(request)
    if not request:
        raise ValueError("request at least one token name")
    model.vocab.ids(request)                 # unknown names -> ValueError naming the first
    if len(set(request)) != len(request):
        raise ValueError(f"request lists a token twice: {request}")
    model.normalizer.has_stats(request)
    return request


# ---- device and precision ----------------------------------------------------------------

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for but CUDA is not available")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> bf16 on CUDA and on CPUs whose oneDNN runs bf16 GEMMs (AVX-512 BF16,
    AMX: :func:`lamfast.model.cpu_runs_bf16_gemms`), fp32 on other CPUs. bf16 passes the
    precision gate on real stars (:mod:`lamfast.precision_gate`, README) and is the faster
    path on those machines; on an AVX2-only CPU it would be several times slower."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        from .model import cpu_runs_bf16_gemms

        return "bf16" if device.type == "cuda" or cpu_runs_bf16_gemms() else "fp32"
    return precision


# ---- predicting ------------------------------------------------------------------------

@dataclass
class PreparedChunk:
    """A tokenized chunk cut into device-sized pieces (see :meth:`Predictor.prepare`)."""

    n_stars: int
    order: np.ndarray          # [M] int64 chunk positions of the stars with tokens, run order
    micro: list[Batch]         # micro-batches covering ``order`` consecutively
    no_input: np.ndarray       # [N] bool, star has no token (predictions NaN)


def default_batch_size(device: torch.device) -> int:
    """Stars per forward pass when none is given: 256 on CPU, where a micro-batch's
    activations stay in cache (lam-2024 on 2 threads: 1.14x the stars/s of 4096-star
    batches, 1.5x on one thread; the stock model gains more), 4096 on accelerators."""
    return 256 if device.type == "cpu" else 4096


class Predictor:
    """Predict ``request`` tokens of packed star batches with ``model``, in physical units.

    Parameters
    ----------
    model : lamfast.LAM with a normalizer; moved to ``device`` and set to eval mode.
    request : token names to predict for every star.
    device : ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:N"``.
    precision : ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (:func:`resolve_precision`).
    batch_size : stars per forward pass (bounds activation memory); default
        :func:`default_batch_size` of the device.
    sort_by_length : order stars by set length before cutting micro-batches (only done
        when lengths vary; outputs are scattered back to input order).
    """

    def __init__(self, model, request: Sequence[str] = ("teff", "logg", "m_h"), *,
                 device: str | torch.device = "auto", precision: str = "auto",
                 batch_size: int | None = None, sort_by_length: bool = True):
        self.request = check_request(model, request)
        self.request_ids = model.vocab.ids(self.request)               # [R] int32
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = default_batch_size(self.device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.precision = resolve_precision(precision, self.device)
        self.sort_by_length = sort_by_length
        self.model = model.to(self.device).eval()
        r = len(self.request_ids)
        # Requests are the same for every star: the largest target arrays, sliced per micro-batch.
        self._target_id = torch.from_numpy(np.tile(self.request_ids, self.batch_size)).to(self.device)
        self._cu_targets = torch.arange(0, self.batch_size * r + 1, r, dtype=torch.int32, device=self.device)

    # ---- step 1: CPU ----------------------------------------------------------------

    def prepare(self, batch: Batch) -> PreparedChunk:
        """Drop empty sets, sort by length where lengths vary, cut into micro-batches."""
        lengths = batch.seqlens().astype(np.int64)                        # [N]
        no_input = lengths == 0
        order = np.flatnonzero(~no_input)
        if self.sort_by_length and order.size and lengths[order].min() != lengths[order].max():
            order = order[np.argsort(lengths[order], kind="stable")]
        cu = batch.cu_seqlens.astype(np.int64)
        micro = []
        for m0 in range(0, order.size, self.batch_size):
            stars = order[m0:m0 + self.batch_size]
            micro.append(_gather(batch, cu, lengths, stars))
        return PreparedChunk(batch.n_stars, order, micro, no_input)

    # ---- step 2: device ---------------------------------------------------------------

    def run(self, chunk: PreparedChunk) -> tuple[np.ndarray, np.ndarray]:
        """-> value, error float64 [N, R] in input order (NaN for stars without input)."""
        r = len(self.request_ids)
        mu = np.full((chunk.n_stars, r), np.nan)
        logvar = np.full((chunk.n_stars, r), np.nan)
        done = 0
        with torch.inference_mode(), self._autocast():
            for mb in chunk.micro:
                m, s = self._forward(mb)
                rows = chunk.order[done:done + mb.n_stars]
                mu[rows], logvar[rows] = m, s
                done += mb.n_stars
        return self.model.normalizer.unstandardize(mu, self.request_ids[None, :], np.sqrt(np.exp(logvar)))

    def __call__(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """prepare + run: value, error float64 [N, R] in input order."""
        return self.run(self.prepare(batch))

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _forward(self, mb: Batch) -> tuple[np.ndarray, np.ndarray]:
        n, r = mb.n_stars, len(self.request_ids)
        token_id = torch.from_numpy(mb.token_id).to(self.device, non_blocking=True)
        value = torch.from_numpy(mb.value).to(self.device, non_blocking=True)
        cu_seqlens = torch.from_numpy(mb.cu_seqlens).to(self.device, non_blocking=True)
        mu, logvar = self.model(token_id, value, cu_seqlens, mb.max_seqlen,
                                self._target_id[:n * r], self._cu_targets[:n + 1], r)
        return (mu.float().view(n, r).cpu().numpy().astype(np.float64),
                logvar.float().view(n, r).cpu().numpy().astype(np.float64))


def _gather(batch: Batch, cu: np.ndarray, lengths: np.ndarray, stars: np.ndarray) -> Batch:
    """The packed sub-batch of ``stars`` (chunk positions, any order)."""
    sub_len = lengths[stars]
    sub_cu = np.zeros(stars.size + 1, dtype=np.int64)
    np.cumsum(sub_len, out=sub_cu[1:])
    if stars.size and np.all(np.diff(stars) == 1):        # a contiguous run: plain slices
        t0, t1 = cu[stars[0]], cu[stars[-1] + 1]
        token_id, value = batch.token_id[t0:t1], batch.value[t0:t1]
    else:  # token k of the sub-batch is token k - sub_cu[star] + cu[star] of the chunk
        index = np.arange(sub_cu[-1]) + np.repeat(cu[stars] - sub_cu[:-1], sub_len)
        token_id, value = batch.token_id[index], batch.value[index]
    return Batch(np.ascontiguousarray(token_id), np.ascontiguousarray(value),
                 sub_cu.astype(np.int32), int(sub_len.max(initial=0)))
