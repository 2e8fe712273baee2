import json

import numpy as np
import pytest

from lamfast import Normalizer, Vocab
from lamfast.vocab import PAPER_TOKENS


def test_paper_ids_match_design():
    v = Vocab.paper()
    assert len(v) == 119
    assert [v.id(f"bp{i}") for i in (0, 54)] == [1, 55]
    assert [v.id(f"rp{i}") for i in (0, 54)] == [56, 110]
    assert [v.id(t) for t in ("bprp", "jh", "jk", "teff", "logg", "m_h", "logebv", "g_fakemag")] \
        == list(range(111, 119))
    assert v.name(0) == "<pad>" and v.name(114) == "teff"


def test_extend_keeps_old_ids():
    v = Vocab.paper()
    w = v.extend(["ebv_sfd", "teff", "w1mag"])
    assert all(w.id(t) == v.id(t) for t in PAPER_TOKENS)
    assert (w.id("ebv_sfd"), w.id("w1mag")) == (119, 120)


def test_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown column 'tef'"):
        Vocab.paper().ids(["teff", "tef"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "b", "a"])


def test_fit_is_median_and_mad(rng):
    x = rng.normal(3.0, 2.0, size=(20001, 2))
    x[::7, 1] = np.nan
    n = Normalizer.fit(x, ["teff", "logg"])
    for j, name in enumerate(["teff", "logg"]):
        col = x[:, j][~np.isnan(x[:, j])]
        med = np.median(col)
        assert n.center[n.vocab.id(name)] == pytest.approx(med)
        assert n.scale[n.vocab.id(name)] == pytest.approx(1.4826 * np.median(np.abs(col - med)))
    assert np.isnan(n.center[n.vocab.id("jh")])  # never fitted
    with pytest.raises(ValueError, match="no normalisation stats for column 'jh'"):
        n.standardize(np.ones((1, 1), np.float32), ["jh"])


def test_standardize_roundtrip(rng):
    x = rng.normal(size=(50, 3)).astype(np.float32) * [500, 1, 0.3] + [5000, 3, 0]
    cols = ["teff", "logg", "m_h"]
    n = Normalizer.fit(x, cols)
    z = n.standardize(x, cols)
    back = n.unstandardize(z, n.vocab.ids(cols)[None, :].repeat(50, 0))
    np.testing.assert_allclose(back, x, rtol=1e-5)


def test_save_load_roundtrip(rng, tmp_path):
    n = Normalizer.fit(rng.normal(size=(100, 2)), ["jh", "jk"])
    path = tmp_path / "norm.json"
    path.write_text(json.dumps(n.to_dict()))
    assert Normalizer.from_dict(json.loads(path.read_text())) == n


def test_reference_stats_from_csv_and_config_agree(realdata, tmp_path):
    csv_path = realdata / "lam_reference" / "lam_input_norm_stats.csv"
    from_csv = Normalizer.from_csv(csv_path)
    assert from_csv.vocab == Vocab.paper()
    # Write the same numbers in the authors' config.json form and read that.
    import csv
    rows = list(csv.DictReader(open(csv_path)))
    config = {"tokenizer_config": {"vocabs": [r["vocab"] for r in rows[1:]],
                                   "vocab_tokens": [int(r["token"]) for r in rows[1:]]},
              "norm_config": {"_input_mean": [float(r["mean"]) for r in rows],
                              "_input_std": [float(r["std"]) for r in rows],
                              "_input_standardized": [r["standardized"] == "True" for r in rows]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    from_cfg = Normalizer.from_reference_config(tmp_path / "config.json")
    assert from_cfg == from_csv
    teff = from_csv.vocab.id("teff")
    assert 4000 < from_csv.center[teff] < 5500 and 300 < from_csv.scale[teff] < 800
    assert (from_csv.center[0], from_csv.scale[0]) == (0.0, 1.0)


def test_by_information_puts_scalars_then_low_order_coefficients_first():
    from lamfast.vocab import PAPER_TOKENS, by_information

    order = by_information(PAPER_TOKENS)
    assert sorted(order) == sorted(PAPER_TOKENS)
    assert order[:8] == ["bprp", "jh", "jk", "teff", "logg", "m_h", "logebv", "g_fakemag"]
    assert order[8:14] == ["bp0", "rp0", "bp1", "rp1", "bp2", "rp2"]
    # the 64-token context of a full star keeps the headline inputs but bp28/rp28, bp29/rp29
    assert set(order[:64]) >= {"bprp", "jh", "jk"} and set(order[8:64]) == {
        f"{b}{i}" for b in ("bp", "rp") for i in range(28)}
    assert by_information(["rp3", "jk", "bp10", "x"]) == ["jk", "x", "rp3", "bp10"]
