import numpy as np
import pytest

from lamfast.io import gaia_photometry
from lamfast.io.photometry import g_fakemag


def _table(rng, n):
    t = {"source_id": rng.integers(1, 2**62, size=n, dtype=np.int64),
         "phot_g_mean_mag": rng.uniform(6, 20, n), "phot_bp_mean_mag": rng.uniform(6, 21, n),
         "phot_rp_mean_mag": rng.uniform(5, 19, n),
         "phot_bp_mean_flux_over_error": rng.uniform(5, 3000, n),
         "phot_rp_mean_flux_over_error": rng.uniform(5, 3000, n),
         "parallax": rng.normal(1, 2, n), "parallax_error": rng.uniform(0.01, 0.5, n),
         "ruwe": rng.uniform(0.8, 3, n), "j_m": rng.uniform(5, 16, n), "h_m": rng.uniform(5, 15, n),
         "ks_m": rng.uniform(5, 15, n), "j_msigcom": rng.uniform(0.01, 0.1, n),
         "h_msigcom": rng.uniform(0.01, 0.1, n), "ks_msigcom": rng.uniform(0.01, 0.1, n)}
    t["phot_bp_mean_mag"][0] = np.nan  # no BP photometry
    return t


def test_tokens_and_errors(rng):
    t = _table(rng, 13)
    cat = gaia_photometry(t)
    assert cat.columns == ["bprp", "jh", "jk", "g_fakemag"]
    assert np.array_equal(cat.source_id, t["source_id"])
    f32 = np.float32
    assert np.array_equal(cat.column("bprp"), (t["phot_bp_mean_mag"] - t["phot_rp_mean_mag"]).astype(f32),
                          equal_nan=True)
    assert np.isnan(cat.values[0, 0])
    assert np.array_equal(cat.column("jh"), (t["j_m"] - t["h_m"]).astype(f32))
    assert np.array_equal(cat.column("jk"), (t["j_m"] - t["ks_m"]).astype(f32))
    assert np.array_equal(cat.column("g_fakemag"),
                          g_fakemag(t["parallax"], t["phot_g_mean_mag"]).astype(f32))
    k = 2.5 / np.log(10)
    want = np.hypot(k / t["phot_bp_mean_flux_over_error"], k / t["phot_rp_mean_flux_over_error"])
    assert np.allclose(cat.errors[:, 0], want, rtol=1e-6)
    assert np.allclose(cat.errors[:, 2], np.hypot(t["j_msigcom"], t["ks_msigcom"]), rtol=1e-6)
    assert np.allclose(cat.errors[:, 3], t["parallax_error"] * 10 ** (0.2 * t["phot_g_mean_mag"]),
                       rtol=1e-6)
    for name in ("phot_g_mean_mag", "ruwe", "parallax", "phot_rp_mean_flux_over_error", "j_m"):
        assert np.array_equal(cat.extra[name], t[name], equal_nan=True)


def test_astropy_masked_table_and_partial_columns(rng):
    from astropy.table import MaskedColumn, Table

    t = _table(rng, 6)
    table = Table({k: v for k, v in t.items() if not k.startswith(("j_", "h_", "ks_", "phot_bp"))})
    table["phot_g_mean_mag"] = MaskedColumn(t["phot_g_mean_mag"], mask=[0, 1, 0, 0, 0, 0])
    cat = gaia_photometry(table)
    assert cat.columns == ["g_fakemag"]  # no BP, no 2MASS: only what can be built
    assert np.isnan(cat.values[1, 0]) and np.isfinite(cat.values[0, 0])


def test_errors(rng):
    t = _table(rng, 3)
    with pytest.raises(ValueError, match="source_id"):
        gaia_photometry({k: v for k, v in t.items() if k != "source_id"})
    with pytest.raises(ValueError, match="no photometric token"):
        gaia_photometry({"source_id": t["source_id"], "ruwe": t["ruwe"]})
    with pytest.raises(ValueError, match="shape"):
        gaia_photometry({**t, "phot_g_mean_mag": np.ones(2)})
