import numpy as np
import pytest
import torch

from lamfast import LAM, LAMConfig
from lamfast.average import average_models
from lamfast.cli import main
from lamfast.infer import predict
from lamfast.reference_stats import paper_normalizer

TINY = LAMConfig(width=16, encoder_heads=(2,), encoder_ffn=(32,), decoder_heads=(2,),
                 decoder_ffn=(24,), head_mlp=(20,))


def _saved(folder, seed, config=TINY):
    torch.manual_seed(seed)
    model = LAM(config, normalizer=paper_normalizer())
    model.save(folder)
    return model


def test_every_weight_is_the_mean(tmp_path):
    models = [_saved(tmp_path / str(s), s) for s in (1, 2, 3)]
    soup = average_models([tmp_path / str(s) for s in (1, 2, 3)])
    for name, w in soup.state_dict().items():
        mean = sum(m.state_dict()[name] for m in models) / 3
        torch.testing.assert_close(w, mean, rtol=0, atol=1e-6)
    assert soup.normalizer == models[0].normalizer


def test_a_model_averaged_with_itself_predicts_the_same(tmp_path, rng):
    model = _saved(tmp_path / "m", 4)
    main(["average", str(tmp_path / "soup"), str(tmp_path / "m"), str(tmp_path / "m")])
    soup = LAM.load(tmp_path / "soup")
    x = rng.normal(size=(20, 3)).astype(np.float32)
    a = predict(model, x, ["bp0", "bp1", "jh"], request=["teff"], device="cpu")
    b = predict(soup, x, ["bp0", "bp1", "jh"], request=["teff"], device="cpu")
    np.testing.assert_array_equal(np.asarray(a["teff"]), np.asarray(b["teff"]))


def test_refuses_other_architectures_and_a_single_model(tmp_path):
    _saved(tmp_path / "a", 1)
    _saved(tmp_path / "b", 2, LAMConfig(**{**TINY.to_dict(), "head_mlp": (24,)}))
    with pytest.raises(ValueError, match="architecture differs"):
        average_models([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="at least two"):
        average_models([tmp_path / "a"])
