"""LAM on packed sets vs the stock padded PyTorch model; persistence; predict."""

import json

import numpy as np
import pytest
import torch

import lamfast
from lamfast import LAM, LAMConfig, Normalizer, Vocab
from lamfast.baselines.stock_model import StockLAM, pad_batch
from lamfast.model import to_reference_name

PAPER = Vocab.paper()
TINY = LAMConfig(width=32, encoder_heads=(4, 2), encoder_ffn=(64, 32), decoder_heads=(4, 2, 1),
                 decoder_ffn=(48, 24, 12), head_mlp=(40, 20), dropout=0.0)


def _perturbed(model, rng, scale=0.05):
    """Weights off their init (LayerNorm gains, zero biases...) so nothing is trivially equal."""
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _stars(rng, n, columns, missing=0.5, empty_rows=(0, 5)):
    values = rng.normal(size=(n, len(columns))).astype(np.float32)
    values[rng.random(values.shape) < missing] = np.nan
    for row in empty_rows:
        if row < n:
            values[row] = np.nan  # a star with zero valid tokens
    return values


def _random_normalizer(rng, vocab=PAPER):
    center = rng.normal(size=len(vocab))
    scale = rng.uniform(0.5, 3.0, size=len(vocab))
    center[0], scale[0] = 0.0, 1.0
    return Normalizer(vocab, center, scale)


def _packed(model, batch, request_ids):
    n, r = batch.n_stars, len(request_ids)
    t = batch.to_torch()
    return model(t["token_id"], t["value"], t["cu_seqlens"], batch.max_seqlen,
                 torch.from_numpy(np.tile(request_ids, n)), torch.arange(0, n * r + 1, r, dtype=torch.int32), r)


def _stock(stock, batch, request_ids):
    values, tokens = pad_batch(batch)
    mu, logvar = stock.predict_many(torch.from_numpy(values), torch.from_numpy(tokens),
                                    torch.from_numpy(request_ids.astype(np.int64)))
    return mu.reshape(-1), logvar.reshape(-1)


def test_paper_preset_has_the_papers_parameter_count():
    assert LAM("lam-2024").num_parameters() == 8_845_529
    assert sum(p.numel() for p in StockLAM().parameters()) == 8_845_529
    assert len(LAM().reference_state_dict()) == 84


def test_packed_matches_stock_model_fp32(rng):
    """Paper architecture, random weights, random missingness incl. stars with no token."""
    lam = _perturbed(LAM("lam-2024"), rng)
    stock = StockLAM.from_lam(lam).eval()
    columns = list(PAPER.tokens[:55:3]) + ["bprp", "jh", "jk", "g_fakemag"]
    batch = lamfast.tokenize(_stars(rng, 37, columns), columns)
    assert (batch.seqlens() == 0).sum() >= 2
    request = PAPER.ids(["teff", "logg", "m_h", "bp3"])
    with torch.no_grad():
        mu, logvar = _packed(lam, batch, request)
        mu_ref, logvar_ref = _stock(stock, batch, request)
    for got, want in ((mu, mu_ref), (logvar, logvar_ref)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_gradients_match_stock_model(rng):
    """Training path (reference attention autograd) vs MultiheadAttention, small config."""
    lam = _perturbed(LAM(TINY), rng).train()
    stock = StockLAM.from_lam(lam).train()  # dropout 0: train mode is deterministic
    columns = list(PAPER.tokens[:30:2])
    batch = lamfast.tokenize(_stars(rng, 9, columns, empty_rows=(4,)), columns)
    request = PAPER.ids(["teff", "bp2"])
    for model, run in ((lam, _packed), (stock, _stock)):
        mu, logvar = run(model, batch, request)
        (mu.square().sum() + logvar.sin().sum()).backward()
    ours = dict(lam.named_parameters())
    for name, p in stock.named_parameters():
        mine = next(v for k, v in ours.items() if to_reference_name(k) == name).grad
        torch.testing.assert_close(mine.reshape(p.grad.shape), p.grad, rtol=1e-4,
                                   atol=1e-5 * float(p.grad.abs().max()), msg=name)


def test_save_load_round_trip_is_exact(rng, tmp_path):
    vocab = PAPER.extend(["new_token"])
    config = LAMConfig(**{**TINY.to_dict(), "vocab_size": len(vocab)})
    model = _perturbed(LAM(config, vocab, _random_normalizer(rng, vocab)), rng)
    model.save(tmp_path / "m")
    loaded = LAM.load(tmp_path / "m")
    assert loaded.config == model.config and loaded.vocab == vocab
    assert loaded.normalizer == model.normalizer
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "lamfast-lam" and meta["vocab"][-1] == "new_token"


def test_load_rejects_other_formats(rng, tmp_path):
    _write_reference_checkpoint(tmp_path / "ref", StockLAM(TINY), _random_normalizer(rng), PAPER)
    with pytest.raises(ValueError, match="from_reference_checkpoint"):
        LAM.load(tmp_path / "ref")
    (tmp_path / "ref" / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights.pt"):
        LAM.from_reference_checkpoint(tmp_path / "ref")
    (tmp_path / "ref" / "config.json").write_text(json.dumps({"nn_config": {}}))
    with pytest.raises(ValueError, match="norm_config"):
        LAM.from_reference_checkpoint(tmp_path / "ref")
    with pytest.raises(FileNotFoundError, match="config.json"):
        LAM.load(tmp_path / "nowhere")


def _write_reference_checkpoint(folder, stock, normalizer, vocab):
    """A checkpoint folder exactly in the authors' layout (config.json + weights.pt)."""
    folder.mkdir()
    standardized = [False] + [True] * (len(vocab) - 1)
    config = {
        "nn_config": {"backend_framewoark": "torch-2.1.0", "context_length": 64, "embedding_dim": 128,
                      "embedding_activation": "gelu", "encoder_head_num": 16, "encoder_dense_num": 1024,
                      "encoder_dropout_rate": 0.1, "encoder_activation": "gelu", "decoder_head_num": 16,
                      "decoder_dense_num": 3096, "decoder_dropout_rate": 0.1, "decoder_activation": "gelu"},
        "tokenizer_config": {"vocabs": list(vocab.tokens), "vocab_tokens": list(range(1, len(vocab)))},
        "norm_config": {"_input_mean": normalizer.center.tolist(), "_input_std": normalizer.scale.tolist(),
                        "_input_standardized": standardized},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    torch.save({"model_state_dict": stock.state_dict(), "epoch": 7}, folder / "weights.pt")


def test_from_reference_checkpoint(rng, tmp_path):
    stock = _perturbed(StockLAM(), rng)  # the paper's module names and shapes
    assert len(stock.state_dict()) == 84
    assert stock.state_dict()["torch_encoder.encoder_transformer_block_1.attention.bias_k"].shape == (1, 1, 128)
    normalizer = _random_normalizer(rng)
    _write_reference_checkpoint(tmp_path / "ref", stock, normalizer, PAPER)
    lam = LAM.from_reference_checkpoint(tmp_path / "ref").eval()
    assert lam.config == LAMConfig()  # the lam-2024 preset
    assert lam.vocab == PAPER and lam.normalizer == normalizer
    columns = ["bp0", "bp1", "rp0", "rp5", "jh", "jk", "bprp"]
    batch = lamfast.tokenize(_stars(rng, 12, columns), columns)
    request = PAPER.ids(["teff", "m_h"])
    with torch.no_grad():
        for got, want in zip(_packed(lam, batch, request), _stock(stock, batch, request)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_predict_in_physical_units(rng):
    columns = ["bp0", "bp1", "bp2", "rp0", "rp1", "jh", "jk", "bprp"]
    normalizer = _random_normalizer(rng)
    model = _perturbed(LAM(TINY, normalizer=normalizer), rng)
    raw = _stars(rng, 23, columns, empty_rows=(2, 17))
    raw = (raw * 3 + 10).astype(np.float32)
    table = lamfast.predict(model, raw, columns, request=["teff", "logg"], batch_size=5, device="cpu",
                            precision="fp32")   # against the fp32 stock model (auto may be bf16 on CPUs)
    assert table.colnames == ["teff", "teff_error", "logg", "logg_error", "no_input"]
    assert len(table) == 23 and list(np.flatnonzero(table["no_input"])) == [2, 17]
    assert np.isnan(table["teff"][[2, 17]]).all() and np.isnan(table["logg_error"][[2, 17]]).all()
    # By hand: standardise, pad, stock model, unstandardise.
    stock = StockLAM.from_lam(model).eval()
    batch = lamfast.tokenize(raw, columns, normalizer=normalizer)
    request = PAPER.ids(["teff", "logg"])
    with torch.no_grad():
        mu, logvar = (x.reshape(23, 2).double().numpy() for x in _stock(stock, batch, request))
    ok = ~np.asarray(table["no_input"])
    for j, name in enumerate(["teff", "logg"]):
        t = request[j]
        want = mu[:, j] * normalizer.scale[t] + normalizer.center[t]
        want_err = np.sqrt(np.exp(logvar[:, j])) * normalizer.scale[t]
        np.testing.assert_allclose(table[name][ok], want[ok], rtol=1e-5, atol=1e-5 * np.abs(want).max())
        np.testing.assert_allclose(table[f"{name}_error"][ok], want_err[ok], rtol=1e-5)
    # Chunking changes nothing but float rounding (padded block shapes differ).
    whole = lamfast.predict(model, raw, columns, request=["teff", "logg"], batch_size=1000, device="cpu",
                            precision="fp32")
    np.testing.assert_allclose(np.asarray(whole["teff"]), np.asarray(table["teff"]), rtol=1e-5,
                               atol=1e-5 * np.nanmax(np.abs(table["teff"])))


def test_predict_bad_input(rng):
    columns = ["bp0", "jh"]
    raw = _stars(rng, 4, columns, empty_rows=())
    model = LAM(TINY, normalizer=_random_normalizer(rng))
    with pytest.raises(ValueError, match="unknown column 'tef'"):
        lamfast.predict(model, raw, columns, request=["tef"])
    with pytest.raises(ValueError, match="unknown column 'magic'"):
        lamfast.predict(model, raw, ["bp0", "magic"])
    with pytest.raises(ValueError, match="not real numbers"):
        lamfast.predict(model, raw.astype(str), columns)
    with pytest.raises(ValueError, match="batch_size"):
        lamfast.predict(model, raw, columns, batch_size=0)
    with pytest.raises(ValueError, match="no normalizer"):
        lamfast.predict(LAM(TINY), raw, columns)
    no_stats = Normalizer.fit(raw, columns)  # has no stats for teff
    with pytest.raises(ValueError, match="no normalisation stats for column 'teff'"):
        lamfast.predict(LAM(TINY, normalizer=no_stats), raw, columns, request=["teff"])


def test_config_validation():
    with pytest.raises(ValueError, match="unknown preset"):
        LAM("lam-2025")
    with pytest.raises(ValueError, match="not divisible"):
        LAMConfig(width=100, encoder_heads=(16, 8))
    with pytest.raises(ValueError, match="one entry per encoder block"):
        LAMConfig(encoder_heads=(16,))
    with pytest.raises(ValueError, match="vocab_size"):
        LAM(LAMConfig(vocab_size=50))
    with pytest.raises(ValueError, match="unknown LAM config keys"):
        LAMConfig.from_dict({"widht": 3})
    assert LAMConfig.from_dict(LAMConfig().to_dict()) == LAMConfig()


def test_small_preset_matches_stock_model_fp32(rng):
    """lam-small (head dims 8/16/32, all on the C++ CPU kernels) == the stock model."""
    lam = _perturbed(LAM("lam-small"), rng)
    assert lam.num_parameters() == 315_586 and lam.config.width == 64
    stock = StockLAM.from_lam(lam).eval()
    columns = list(PAPER.tokens[:60:2]) + ["bprp", "jh", "jk"]
    batch = lamfast.tokenize(_stars(rng, 19, columns), columns)
    request = PAPER.ids(["teff", "logg", "m_h"])
    with torch.no_grad():
        for got, want in zip(_packed(lam, batch, request), _stock(stock, batch, request)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_predict_warns_when_stars_have_more_values_than_it_sees(rng):
    columns = ["bp0", "bp1", "bp2", "rp0", "rp1", "jh", "jk", "bprp"]
    model = LAM(TINY, normalizer=_random_normalizer(rng))
    raw = rng.normal(size=(6, len(columns))).astype(np.float32)
    raw[:2, 3:] = np.nan                              # 3 values: within a 4-token cut
    with pytest.warns(UserWarning, match="4 of 6 stars have more than 4 present values"):
        lamfast.predict(model, raw, columns, request=["teff"], max_tokens=4, device="cpu")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lamfast.predict(model, raw, columns, request=["teff"], device="cpu")   # context 64: nothing cut


@pytest.mark.skipif(lamfast.model._LINEAR_POINTWISE is None,
                    reason="this torch build has no oneDNN (mkldnn) fused linear")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cpu_inference_matches_the_autograd_path(rng, dtype, monkeypatch):
    """Without autograd on CPU each dense layer (with its bias and GELU) is one oneDNN call;
    values as on the plain path."""
    lam = _perturbed(LAM(TINY), rng)
    real, calls = lamfast.model._LINEAR_POINTWISE, []
    monkeypatch.setattr(lamfast.model, "_LINEAR_POINTWISE", lambda *a: calls.append(1) or real(*a))
    columns = list(PAPER.tokens[:40:3]) + ["jh", "bprp"]
    batch = lamfast.tokenize(_stars(rng, 23, columns), columns)
    request = PAPER.ids(["teff", "logg", "bp3"])
    # 4 per block (q or qkv, out, ffn 1 and 2), the decoder memory's k/v, the head, mu, logvar
    n_dense = 4 * (len(TINY.encoder_ffn) + len(TINY.decoder_ffn)) + 1 + len(TINY.head_mlp) + 2
    if dtype not in lamfast.model._FUSED_DTYPES:  # no oneDNN bf16 on this CPU: F.linear throughout
        n_dense = 0
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        with torch.no_grad():
            fused = _packed(lam, batch, request)
        assert len(calls) == n_dense
        plain = [t.detach() for t in _packed(lam, batch, request)]  # autograd on: F.linear, F.gelu
    assert len(calls) == n_dense
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for got, want in zip(fused, plain):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))
