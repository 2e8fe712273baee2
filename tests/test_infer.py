"""lamfast.infer (Predictor: sorting, micro-batches, precision; model resolution) and the prefetch thread."""

import hashlib
import threading
import time

import numpy as np
import pytest
import torch
from _label_data import TINY

import lamfast
from lamfast import LAM, Normalizer
from lamfast._prefetch import prefetch
from lamfast.batch import Batch
from lamfast.infer import (Predictor, _gather, default_batch_size, load_model, model_hash, predict, resolve_device,
                           resolve_precision)
from lamfast.resources import default_model_path, resolve_model

COLUMNS = ["bp0", "bp1", "bp2", "bp3", "rp0", "rp1", "rp2", "jh", "jk", "bprp", "logebv"]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _model(rng):
    values = rng.normal(size=(50, len(COLUMNS) + 2)).astype(np.float32)
    model = LAM(TINY, normalizer=Normalizer.fit(values, COLUMNS + ["teff", "logg"]))
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _ragged(rng, n):
    """Stars with 0..V tokens (varied lengths, some empty)."""
    values = rng.normal(size=(n, len(COLUMNS))).astype(np.float32)
    values[rng.random(values.shape) < rng.uniform(0, 0.9, size=(n, 1))] = np.nan
    values[rng.choice(n, size=n // 10, replace=False)] = np.nan
    return values


@pytest.mark.parametrize("n", [1, 7, 61])
def test_gather_matches_a_plain_loop(rng, n):
    batch = lamfast.tokenize(_ragged(rng, n), COLUMNS)
    cu = batch.cu_seqlens.astype(np.int64)
    lengths = np.diff(cu)
    for stars in (rng.permutation(n)[: max(1, n // 2)], np.arange(n // 3, n)):
        got = _gather(batch, cu, lengths, stars)
        want_ids = [batch.token_id[cu[s]:cu[s + 1]] for s in stars]
        assert np.array_equal(got.token_id, np.concatenate(want_ids))
        assert np.array_equal(got.value, np.concatenate([batch.value[cu[s]:cu[s + 1]] for s in stars]))
        assert np.array_equal(np.diff(got.cu_seqlens), lengths[stars]) and got.cu_seqlens.dtype == np.int32
        assert got.max_seqlen == lengths[stars].max()


@pytest.mark.parametrize("n, batch_size", [(1, 1), (13, 4), (97, 32)])
def test_sorted_micro_batches_equal_one_plain_pass(rng, n, batch_size):
    model = _model(rng)
    batch = lamfast.tokenize(_ragged(rng, n), COLUMNS, normalizer=model.normalizer)
    fast = Predictor(model, ["teff", "logg"], device="cpu", batch_size=batch_size)
    plain = Predictor(model, ["teff", "logg"], device="cpu", batch_size=10_000, sort_by_length=False)
    prepared = fast.prepare(batch)
    lengths = batch.seqlens()
    assert np.array_equal(prepared.no_input, lengths == 0)
    assert np.all(np.diff(lengths[prepared.order]) >= 0)            # sorted by set length
    assert sorted(prepared.order) == list(np.flatnonzero(lengths))    # every non-empty star once
    (v1, e1), (v2, e2) = fast.run(prepared), plain(batch)
    assert v1.shape == (n, 2) and np.isnan(v1[lengths == 0]).all() and np.isnan(e1[lengths == 0]).all()
    ok = lengths > 0
    np.testing.assert_allclose(v1[ok], v2[ok], rtol=1e-5, atol=1e-5 * np.abs(v2[ok]).max())
    np.testing.assert_allclose(e1[ok], e2[ok], rtol=1e-5)


def test_bf16_close_to_fp32_and_empty_batch(rng):
    model = _model(rng)
    batch = lamfast.tokenize(_ragged(rng, 40), COLUMNS, normalizer=model.normalizer)
    v32, _ = Predictor(model, ["teff"], device="cpu", precision="fp32")(batch)
    v16, _ = Predictor(model, ["teff"], device="cpu", precision="bf16")(batch)
    ok = ~np.isnan(v32[:, 0])
    scale = model.normalizer.scale[model.vocab.id("teff")]
    assert np.abs(v16[ok] - v32[ok]).max() < 0.1 * scale     # bf16 has ~3 significant digits
    empty = Batch(np.empty(0, np.int32), np.empty(0, np.float32), np.zeros(1, np.int32), 0)
    value, error = Predictor(model, ["teff"], device="cpu")(empty)
    assert value.shape == error.shape == (0, 1)


def test_predictor_errors(rng):
    model = _model(rng)
    with pytest.raises(ValueError, match="unknown column 'tef'"):
        Predictor(model, ["tef"])
    with pytest.raises(ValueError, match="no normalisation stats for column 'm_h'"):
        Predictor(model, ["teff", "m_h"])
    with pytest.raises(ValueError, match="twice"):
        Predictor(model, ["teff", "teff"])
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(model, ["teff"], batch_size=0)
    assert Predictor(model, ["teff"], device="cpu").batch_size == default_batch_size(torch.device("cpu")) == 256
    assert Predictor(model, ["teff"], device="cpu", batch_size=7).batch_size == 7
    assert default_batch_size(torch.device("cuda")) == 4096
    with pytest.raises(ValueError, match="no normalizer"):
        Predictor(LAM(TINY), ["teff"])
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert resolve_device("auto") == torch.device("cpu")


def test_model_resolution(rng, tmp_path, monkeypatch):
    model = _model(rng)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.training and loaded.normalizer == model.normalizer
    assert model_hash(tmp_path / "m") == hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model(tmp_path / "empty")
    monkeypatch.setattr("lamfast.resources.default_model_path", lambda: tmp_path / "m")
    assert resolve_model("default") == tmp_path / "m"
    monkeypatch.setattr("lamfast.resources.default_model_path", lambda: tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no default model is installed"):
        load_model("default")


def test_the_default_model_loads_by_name(monkeypatch, tmp_path):
    """One way to name the shipped model: "default", for LAM.load and lamfast.load alike."""
    if not (default_model_path() / "config.json").is_file():
        pytest.skip("no default model in this installation")
    assert lamfast.load is lamfast.load_model and lamfast.predict is predict
    by_class, by_function = LAM.load("default"), lamfast.load("default")
    assert not by_function.training and by_class.config == by_function.config
    assert by_class.normalizer == by_function.normalizer
    for (name, a), (_, b) in zip(by_class.state_dict().items(), by_function.state_dict().items()):
        assert torch.equal(a, b), name
    monkeypatch.setattr("lamfast.resources.default_model_path", lambda: tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no default model is installed"):
        LAM.load("default")


def test_prefetch_order_errors_and_early_stop():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetch([], depth=1)) == []

    def failing():
        yield 1
        raise RuntimeError("broken reader")

    got = []
    with pytest.raises(RuntimeError, match="broken reader"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for x in prefetch(endless(), depth=2):
        if x == 3:
            break
    time.sleep(0.1)
    assert threading.active_count() == before and len(produced) <= 3 + 1 + 2 + 1
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([1], depth=0))
