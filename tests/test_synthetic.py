import numpy as np
import pytest

from lamfast.data.synthetic import make_synthetic, model_bprp, model_coefficients
from lamfast.reference_stats import xp_prior
from lamfast.vocab import PAPER_TOKENS


def test_deterministic_from_seed():
    a, b, c = make_synthetic(300, seed=7), make_synthetic(300, seed=7), make_synthetic(300, seed=8)
    np.testing.assert_array_equal(a.catalog.values, b.catalog.values)
    np.testing.assert_array_equal(a.catalog.errors, b.catalog.errors)
    np.testing.assert_array_equal(a.catalog.source_id, b.catalog.source_id)
    assert not np.array_equal(a.truth.values, c.truth.values, equal_nan=True)


def test_ranges_and_scales():
    s = make_synthetic(2000, seed=1)
    lab = s.labels
    assert 3500 <= lab["teff"].min() and lab["teff"].max() <= 7500
    assert 0 <= lab["logg"].min() and lab["logg"].max() <= 5
    assert np.mean(lab["logg"][lab["giant"]]) < 3 < np.mean(lab["logg"][~lab["giant"]])
    assert -2 <= lab["m_h"].min() and lab["m_h"].max() <= 0.5
    assert s.catalog.columns == list(PAPER_TOKENS) and s.catalog.values.dtype == np.float32
    assert (s.catalog.source_id % 128 == 0).all() and len(np.unique(s.catalog.source_id)) == 2000
    # coefficients on the paper's gnorm scale: population medians near the paper's
    mean, std = xp_prior()
    z = (np.median(s.truth.values[:, :110], axis=0) - mean) / std
    assert np.abs(z).max() < 0.5
    # noise: present values scatter around the truth by about their errors
    present = np.isfinite(s.catalog.values)
    pull = ((s.catalog.values - s.truth.values) / s.truth.errors)[present]
    assert 0.9 < np.std(pull) < 1.1
    # heteroscedastic: faint stars have larger coefficient errors
    g = s.labels["g_mag"]
    assert np.nanmedian(s.truth.errors[g > 15, 1]) > 3 * np.nanmedian(s.truth.errors[g < 10, 1])


def test_smooth_dependence_on_labels():
    teff = np.linspace(3600, 7400, 40)
    ones = np.ones_like(teff)
    bprp = model_bprp(teff, 4.5 * ones, 0 * ones, 0 * ones)
    assert np.all(np.diff(bprp) < 0)                           # hotter -> bluer
    assert abs(model_bprp([5772.0], [4.44], [0.0], [0.0])[0] - 0.82) < 1e-9
    reddened = model_bprp(teff, 4.5 * ones, 0 * ones, 0.5 * ones)
    assert np.all(reddened > bprp)                             # dust reddens
    c = model_coefficients(teff, 4.5 * ones, 0 * ones, 0 * ones)
    _, std = xp_prior()
    step = np.abs(np.diff(c, axis=0)) / std                    # 100 K steps: small changes
    big = np.abs(c[-1] - c[0]) / std                           # whole range: large changes
    assert step.max() < 0.25 * big.max() and big.max() > 1
    s = make_synthetic(1000, seed=3, extinction=False)
    bprp_col = s.truth.column("bprp")
    rank = lambda a: np.argsort(np.argsort(a))
    assert np.corrcoef(rank(s.labels["teff"]), rank(bprp_col))[0, 1] < -0.95   # Spearman


def test_missingness_like_real_data():
    s = make_synthetic(3000, seed=2)
    v = s.catalog.values
    col = {t: j for j, t in enumerate(PAPER_TOKENS)}
    no_teff = np.isnan(v[:, col["teff"]])
    assert 0.29 < no_teff.mean() < 0.38
    np.testing.assert_array_equal(no_teff, np.isnan(v[:, col["logg"]]))
    for b, band in enumerate(("bp", "rp")):
        n_rel = s.labels[f"n_relevant_{band}"]
        assert n_rel.min() < 40 and (n_rel == 55).any()        # varies, as in DR3
        block = v[:, 55 * b:55 * (b + 1)]
        np.testing.assert_array_equal(np.isfinite(block).sum(axis=1), n_rel)   # a trailing gap
        assert np.isfinite(block[np.arange(len(v)), n_rel - 1]).all()
    assert np.all(np.isnan(s.catalog.errors) == np.isnan(v))
    assert np.isfinite(s.truth.values).all()


def test_bad_and_empty():
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic(-1)
    with pytest.raises(ValueError, match="label_missing"):
        make_synthetic(5, label_missing=1.5)
    empty = make_synthetic(0)
    assert len(empty.catalog) == 0 and empty.catalog.values.shape == (0, len(PAPER_TOKENS))


def test_cli_writes_the_paper_layout(tmp_path, capsys):
    from lamfast.cli import main
    from lamfast.io.paper_hdf5 import read_paper_hdf5

    out = tmp_path / "synth.h5"
    assert main(["data", "synthetic", str(out), "--stars", "50", "--seed", "4"]) == 0
    back = read_paper_hdf5(out)
    ref = make_synthetic(50, seed=4).catalog
    np.testing.assert_array_equal(back.values, ref.values)
    np.testing.assert_array_equal(back.source_id, ref.source_id)
    assert "50 synthetic stars" in capsys.readouterr().out
