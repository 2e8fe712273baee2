"""lamfast.infer (predict's inputs and outputs; Predictor: sorting, micro-batches, precision;
model resolution) and the prefetch thread."""

import hashlib
import threading
import time
import warnings

import astropy.units as u
import numpy as np
import pytest
import torch
from _label_data import TINY
from astropy.table import MaskedColumn, Table

import lamfast
from lamfast import LAM, Normalizer
from lamfast._prefetch import prefetch
from lamfast.batch import Batch
from lamfast.infer import (Predictor, _gather, default_batch_size, load_model, model_hash, predict, resolve_device,
                           resolve_precision)
from lamfast.resources import default_model_path, resolve_model, sample_catalogue_path
from lamfast.vocab import by_information

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


def _quiet_predict(*args, **kwargs):
    """predict, with warnings as errors: the inputs of these tests need no column dropped or cut."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return predict(*args, device="cpu", **kwargs)


def _same(a, b, names=("teff", "teff_error")):
    for name in names:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-6, equal_nan=True)


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
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("fused, want", [((torch.float32, torch.bfloat16), "bf16"), ((torch.float32,), "fp32")])
def test_auto_precision_on_cpu_follows_the_bf16_gemms(monkeypatch, fused, want):
    """bf16 where oneDNN runs bf16 GEMMs (AVX-512 BF16, AMX: faster, and it passes the
    precision gate), fp32 where it does not (AVX2 only: bf16 would be several times slower)."""
    import lamfast.model

    monkeypatch.setattr(lamfast.model, "_FUSED_DTYPES", fused)
    assert resolve_precision("auto", torch.device("cpu")) == want
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_model_resolution(rng, tmp_path, monkeypatch):
    model = _model(rng)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.training and loaded.normalizer == model.normalizer
    assert model_hash(tmp_path / "m") == hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()
    for load in (load_model, LAM.load):    # the message names what can be loaded
        with pytest.raises(FileNotFoundError, match="no such folder .pass 'default' or a folder written by LAM.save"):
            load(tmp_path / "nothing")
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


# ---- predict: what it takes and what it returns ------------------------------------------

def test_predict_drops_columns_without_stats_with_a_warning(rng):
    """Issue 19: a column the model has no stats for (g_fakemag, made by the gaia_source
    reader from parallax) is left out, as label leaves it out, instead of failing."""
    model = _model(rng)
    x = _ragged(rng, 30)
    extra = np.column_stack([x, rng.normal(size=(30, 2))]).astype(np.float32)
    with pytest.warns(UserWarning, match=r"dropped: \['g_fakemag', 'bp9'\] \(this model has no normalisation"):
        got = predict(model, extra, COLUMNS + ["g_fakemag", "bp9"], ["teff"], device="cpu")
    _same(got, _quiet_predict(model, x, COLUMNS, ["teff"]))
    with pytest.raises(ValueError, match="none of the columns"), pytest.warns(UserWarning, match="dropped"):
        predict(model, extra[:, -2:], ["g_fakemag", "bp9"], ["teff"], device="cpu")
    with pytest.raises(ValueError, match="unknown column 'magic'"):   # a misspelt name is an error
        predict(model, x[:, :2], ["bp0", "magic"], ["teff"], device="cpu")


@pytest.mark.skipif(not (default_model_path() / "config.json").is_file(), reason="no default model installed")
def test_predict_orders_a_full_xp_star_by_information():
    """Issue 19: a full Gaia XP star (bp0..54, rp0..54 + colours) keeps the values label
    keeps (scalars, bp0..27, rp0..27), not the first 64 in the caller's order."""
    from lamfast.io.paper_hdf5 import read_paper_hdf5

    model = lamfast.load("default")
    cat = read_paper_hdf5(sample_catalogue_path(), slice(0, 60))
    columns = [c for c in cat.columns if c not in ("teff", "logg", "m_h")]   # bp0..54, rp0..54, bprp, ..., g_fakemag
    values = cat.select(columns).values
    with pytest.warns(UserWarning, match=r"g_fakemag"), pytest.warns(UserWarning, match="60 of 60 stars"):
        got = predict(model, values, columns, ["teff", "logg"], device="cpu")
        given = predict(model, values, columns, ["teff", "logg"], order="given", device="cpu")
    ordered = [c for c in by_information(columns) if c != "g_fakemag"]
    with pytest.warns(UserWarning, match="60 of 60 stars"):
        want = predict(model, cat.select(ordered).values, ordered, ["teff", "logg"], order="given", device="cpu")
    _same(got, want, ["teff", "teff_error", "logg"])
    assert np.nanmax(np.abs(np.asarray(given["teff"]) - np.asarray(want["teff"]))) > 100   # rp9.. and bprp lost
    with pytest.raises(ValueError, match="order must be one of"):
        predict(model, values, columns, order="vocabulary")


def test_predict_takes_any_real_array_standardised_in_float64(rng):
    model = _model(rng)
    x = _ragged(rng, 25)
    want = _quiet_predict(model, x, COLUMNS, ["teff"])
    _same(_quiet_predict(model, x.astype(np.float64), COLUMNS, ["teff"]), want)
    _same(_quiet_predict(model, x.astype(object), COLUMNS, ["teff"]), want)       # objects, all numbers
    masked = np.ma.masked_array(np.nan_to_num(x, nan=7.0), mask=np.isnan(x))      # masked = missing
    _same(_quiet_predict(model, masked, COLUMNS, ["teff"]), want)
    whole = np.nan_to_num(x * 4).astype(np.int16)
    _same(_quiet_predict(model, whole, COLUMNS, ["teff"]), _quiet_predict(model, whole.astype(np.float32), COLUMNS,
                                                                          ["teff"]))
    # A token whose median is far above its scale: float32 would round its values to
    # steps of 2**-10 before the median is taken away; float64 keeps them.
    norm = model.normalizer
    jh = model.vocab.id("jh")
    norm.center[jh], norm.scale[jh] = 1e4, 1e-3
    x64 = x.astype(np.float64)
    x64[:, COLUMNS.index("jh")] = 1e4 + 1e-3 * rng.normal(size=len(x))
    ids = model.vocab.ids(COLUMNS)
    standardised = ((x64 - norm.center[ids]) / norm.scale[ids]).astype(np.float32)
    by_hand, _ = Predictor(model, ["teff"], device="cpu")(lamfast.tokenize(standardised, COLUMNS, vocab=model.vocab))
    got = _quiet_predict(model, x64, COLUMNS, ["teff"], order="given")
    np.testing.assert_allclose(np.asarray(got["teff"]), by_hand[:, 0], rtol=1e-6, equal_nan=True)
    rounded = _quiet_predict(model, x64.astype(np.float32), COLUMNS, ["teff"], order="given")
    assert np.nanmax(np.abs(np.asarray(rounded["teff"]) - by_hand[:, 0])) > 1e-3 * np.nanstd(by_hand)


def test_predict_refuses_what_is_not_a_number(rng):
    model = _model(rng)
    x = _ragged(rng, 6)
    cells = x.astype(object)
    cells[4, 2] = "abc"
    with pytest.raises(ValueError, match=r"column 'bp2' holds 'abc' \(row 4\), not a number"):
        predict(model, cells, COLUMNS, ["teff"], device="cpu")
    with pytest.raises(ValueError, match=r"column 'bp0' holds <U\d+ values, not real numbers"):
        predict(model, x.astype(str), COLUMNS, ["teff"], device="cpu")
    with pytest.raises(ValueError, match="column 'bp0' holds bool values"):
        predict(model, x > 0, COLUMNS, ["teff"], device="cpu")
    table = Table(x, names=COLUMNS)
    table["jh"] = np.array(["red"] * 6)
    with pytest.raises(ValueError, match="column 'jh' holds <U3 values"):
        predict(model, table, request=["teff"], device="cpu")
    with pytest.raises(ValueError, match="columns: give the names"):
        predict(model, x, request=["teff"], device="cpu")
    with pytest.raises(ValueError, match="values must be 2-D"):
        predict(model, x[0], COLUMNS, ["teff"], device="cpu")
    with pytest.raises(ValueError, match="the table has no column 'rp5'"):
        predict(model, Table(x, names=COLUMNS), ["bp0", "rp5"], ["teff"], device="cpu")


def test_predict_takes_astropy_and_pandas_tables(rng):
    """Named columns: ``columns`` optional (the table's token columns), masked cells missing."""
    model = _model(rng)
    x = _ragged(rng, 20)
    x[np.isnan(x)] = 0.5
    missing = rng.random(x.shape) < 0.3
    want = _quiet_predict(model, np.where(missing, np.nan, x), COLUMNS, ["teff"])
    table = Table([MaskedColumn(x[:, j], mask=missing[:, j]) for j in range(len(COLUMNS))], names=COLUMNS)
    table["source_id"] = np.arange(20)              # not a token column: not an input
    table["name"] = ["star"] * 20
    _same(_quiet_predict(model, table, request=["teff"]), want)
    _same(_quiet_predict(model, table, COLUMNS[:5], ["teff"]),
          _quiet_predict(model, np.where(missing, np.nan, x)[:, :5], COLUMNS[:5], ["teff"]))
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({c: pd.array(np.where(missing[:, j], None, x[:, j]), dtype="Float64")
                          for j, c in enumerate(COLUMNS)})
    frame.index = np.arange(100, 120)               # positions, not labels
    frame.insert(0, "designation", "Gaia DR3")
    _same(_quiet_predict(model, frame, request=["teff"]), want)


def test_predict_output_units_and_empty_input(rng):
    model = _model(rng)
    got = _quiet_predict(model, _ragged(rng, 5), COLUMNS, ["teff", "logg"])
    assert got.colnames == ["teff", "teff_error", "logg", "logg_error", "no_input"]
    assert got["teff"].unit == got["teff_error"].unit == u.K
    assert got["logg"].unit == got["logg_error"].unit == u.dex
    assert got["teff"].description == "effective temperature"
    assert got["teff_error"].description == "uncertainty (1 sigma) of the effective temperature"
    for empty in (np.empty((0, len(COLUMNS)), np.float32), Table(names=COLUMNS, dtype=[float] * len(COLUMNS))):
        none = _quiet_predict(model, empty, COLUMNS, ["teff", "logg"])
        assert len(none) == 0 and none.colnames == got.colnames
        assert none["teff"].unit == u.K and none["logg_error"].unit == u.dex and none["no_input"].dtype == bool


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
