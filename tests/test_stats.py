import numpy as np
import pytest

from lamfast.stats import robust_scatter


def test_matches_astropy_mad_std_ignoring_nan(rng):
    mad_std = pytest.importorskip("astropy.stats").mad_std
    x = rng.normal(3.0, 2.0, size=(501, 7))
    x[rng.random(x.shape) < 0.1] = np.nan
    np.testing.assert_allclose(robust_scatter(x, axis=0), mad_std(x, axis=0, ignore_nan=True), rtol=1e-5)  # 1.4826 vs astropy's 1.482602...
    column = x[:, 2]
    assert robust_scatter(column) == pytest.approx(mad_std(column, ignore_nan=True), rel=1e-5)
    assert robust_scatter(column) == pytest.approx(robust_scatter(x, axis=0)[2], rel=1e-12)


def test_nothing_finite_gives_nan():
    assert np.isnan(robust_scatter(np.array([np.nan, np.inf])))
    assert np.isnan(robust_scatter(np.array([])))
