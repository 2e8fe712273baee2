import csv

import numpy as np
import pytest

from lamfast import xp
from lamfast.io.photometry import g_flux
from lamfast.reference_stats import paper_normalizer, paper_norm_stats, xp_prior

# DR3 phot_g_mean_mag of the two XP_CONTINUOUS_RAW stars, rounded as in the realdata README
# (the file itself has no photometry); only sets the scale at which the gnorm prior applies.
G_MAG = {"5853498713190525696": 8.95, "5762406957886626816": 13.2}


def _array(cell: str) -> np.ndarray:
    """'(v1, v2, ...)' -> float array; empty cell -> None (missing band)."""
    cell = cell.strip().strip('"').strip("()[]")
    return np.array([float(v) for v in cell.split(",")]) if cell else None


def _continuous_rows(path):
    """Minimal reader of the archive CSV: source_id -> (coefficients [110], covariance [110, 110])."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            coeffs, cov = np.full(110, np.nan), np.zeros((110, 110))
            for b, band in enumerate(("bp", "rp")):
                c = _array(row[f"{band}_coefficients"])
                if c is None:
                    continue
                sl = slice(55 * b, 55 * (b + 1))
                coeffs[sl] = c
                cov[sl, sl] = xp.covariance_from_correlations(
                    _array(row[f"{band}_coefficient_errors"])[None],
                    _array(row[f"{band}_coefficient_correlations"])[None])[0]
            out[row["source_id"]] = (coeffs, cov, row)
    return out


def _random_coefficients(rng, n):
    mean, std = xp_prior()
    return mean + 0.5 * std * rng.normal(size=(n, 110))


# ---- basis and package data ---------------------------------------------------------------

def test_shipped_basis_is_gaiaxpys():
    pytest.importorskip("gaiaxpy", reason="GaiaXPy not installed: cannot regenerate the basis")
    shipped, fresh = xp.load_basis(), xp.basis_from_gaiaxpy()
    for name in ("wavelength_nm", "design_bp", "design_rp", "merge_bp", "merge_rp"):
        np.testing.assert_array_equal(getattr(shipped, name), getattr(fresh, name), err_msg=name)
    np.testing.assert_array_equal(shipped.wavelength_nm, np.arange(336.0, 1021.0, 2.0))
    np.testing.assert_allclose(shipped.merge_bp + shipped.merge_rp, 1.0)


def test_shipped_norm_stats_match_the_authors_table(realdata):
    from lamfast import Normalizer

    ref = Normalizer.from_csv(realdata / "lam_reference" / "lam_input_norm_stats.csv")
    assert paper_normalizer() == ref
    tokens, mean, std = paper_norm_stats()
    assert len(tokens) == len(mean) == len(std) == 118 and tokens[-1] == "g_fakemag"
    m, s = xp_prior()
    np.testing.assert_array_equal(m, ref.center[1:111])
    np.testing.assert_array_equal(s, ref.scale[1:111])


def test_covariance_from_correlations(rng):
    err = rng.random((3, 55)) + 0.1
    corr = rng.uniform(-0.5, 0.5, size=(3, 1485))
    cov = xp.covariance_from_correlations(err, corr)
    np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2))
    np.testing.assert_allclose(np.einsum("nii->ni", cov), err ** 2)
    lo, hi = np.tril_indices(55, -1)
    np.testing.assert_allclose(cov[:, lo, hi], corr * err[:, lo] * err[:, hi])
    with pytest.raises(ValueError, match="correlations"):
        xp.covariance_from_correlations(err, corr[:, :-1])


# ---- coefficients -> sampled spectra ------------------------------------------------------

def test_sample_matches_archive_sampled_spectra(realdata):
    """XP_SAMPLED_RAW rows 6 and 4 are the two XP_CONTINUOUS_RAW stars (Proxima, the hot star)."""
    folder = realdata / "gaiaxpy_tests"
    cont = _continuous_rows(folder / "XP_CONTINUOUS_RAW.csv")
    with open(folder / "XP_SAMPLED_RAW_dr3int6.csv", newline="") as f:
        sampled = {r["source_id"]: r for r in csv.DictReader(f)}
    pairs = [("5853498713190525696", "6"), ("5762406957886626816", "4")]
    coeffs = np.stack([cont[c][0] for c, _ in pairs])
    cov = np.stack([cont[c][1] for c, _ in pairs])
    flux = np.stack([_array(sampled[s]["flux"]) for _, s in pairs])
    flux_err = np.stack([_array(sampled[s]["flux_error"]) for _, s in pairs])
    out = xp.sample(coeffs, covariance=cov)
    # The archive file holds float32 text: agreement to ~1e-6 relative.
    np.testing.assert_allclose(out.flux, flux, rtol=2e-5, atol=1e-5 * np.abs(flux).max())
    np.testing.assert_allclose(out.error, flux_err, rtol=2e-5)
    np.testing.assert_array_equal(out.wavelength_nm, np.arange(336.0, 1021.0, 2.0))
    ref = xp.sample_reference(coeffs, covariance=cov)
    np.testing.assert_allclose(out.flux, ref.flux, rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(out.error, ref.error, rtol=1e-12)


def test_sample_single_band_like_gaiaxpy(realdata):
    """Empty BP: RP alone, NaN at <= 635 nm (values from GaiaXPy 2.1.5 ``calibrate``)."""
    rows = _continuous_rows(realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    coeffs, cov, _ = rows["5405570973190252288"]
    out = xp.sample(coeffs[None], covariance=cov[None])
    assert np.isnan(out.flux[0, :150]).all() and np.isfinite(out.flux[0, 150:]).all()
    assert np.isnan(out.error[0, :150]).all()
    np.testing.assert_allclose(out.flux[0, -3:], [1.53360240e-18, 4.26572311e-18, 7.58686779e-18], rtol=1e-6)


def test_sample_fast_equals_reference_on_odd_input(rng):
    n = 7
    c = _random_coefficients(rng, n)
    err = rng.random((n, 110)) * 1e-4
    c[1, 40:55] = np.nan             # BP blanked beyond n_relevant_bases
    c[2, :55] = np.nan               # BP missing
    c[3, 55:] = np.nan               # RP missing
    c[4] = np.nan                    # nothing
    a = rng.normal(size=(n, 110, 110)) * 1e-4
    cov = a @ np.swapaxes(a, 1, 2)
    for kwargs in ({}, {"errors": err}, {"covariance": cov}):
        fast, ref = xp.sample(c, **kwargs), xp.sample_reference(c, **kwargs)
        np.testing.assert_allclose(fast.flux, ref.flux, rtol=1e-10, atol=1e-16)
        if kwargs:
            np.testing.assert_allclose(fast.error, ref.error, rtol=1e-10, atol=1e-16)
        else:
            assert fast.error is None and ref.error is None
    out = xp.sample(c, errors=err)
    assert np.isnan(out.flux[4]).all()
    wl = out.wavelength_nm
    assert np.isnan(out.flux[2, wl <= 635]).all() and np.isfinite(out.flux[2, wl > 635]).all()
    assert np.isnan(out.flux[3, wl >= 643]).all() and np.isfinite(out.flux[3, wl < 643]).all()


def test_sample_bad_and_empty_input(rng):
    with pytest.raises(ValueError, match=r"\[N, 110\]"):
        xp.sample(np.zeros((2, 109)))
    c = _random_coefficients(rng, 3)
    c[2, 5] = np.inf
    with pytest.raises(ValueError, match="row 2"):
        xp.sample(c)
    with pytest.raises(ValueError, match="errors"):
        xp.sample(c[:2], errors=np.ones((2, 55)))
    empty = xp.sample(np.empty((0, 110)), errors=np.empty((0, 110)))
    assert empty.flux.shape == (0, 343) and empty.error.shape == (0, 343)


# ---- sampled spectra -> coefficients ------------------------------------------------------

def test_project_fast_equals_reference(rng):
    n = 6
    truth = _random_coefficients(rng, n)
    spectra = xp.sample(truth, errors=np.abs(truth) * 0.01)
    flux = spectra.flux * (1 + 1e-4 * rng.normal(size=spectra.flux.shape))
    flux_err = spectra.error
    flux[1, 100:110] = np.nan        # gaps get zero weight
    flux[4] = np.nan                 # nothing to fit
    for weights in ("relative", "errors"):
        fast = xp.project(flux, flux_err, weights=weights, chunk=4)
        ref = xp.project_reference(flux, flux_err, weights=weights)
        _, std = xp_prior()
        # The normal matrices have cond ~1e12 (weights 1e-5 |f|): two float64 solvers agree
        # to ~1e-5 population sigma, far below any physical scale.
        np.testing.assert_allclose(fast.coefficients / std, ref.coefficients / std, atol=2e-4, rtol=0)
        np.testing.assert_allclose(fast.errors, ref.errors, rtol=1e-5)
        assert np.isnan(fast.coefficients[4]).all() and np.isnan(fast.errors[4]).all()
        assert np.isfinite(fast.coefficients[[0, 1, 2, 3, 5]]).all()
    no_err = xp.project(flux)
    assert no_err.errors is None
    done = []
    xp.project(flux, chunk=4, progress=done.append)
    assert done == [4, 2]


@pytest.mark.parametrize("name, source_id", [
    ("18Sco-XP-spectra.csv", "4345775217221821312"),
    ("XP_CONTINUOUS_RAW.csv", "5853498713190525696"),
    ("XP_CONTINUOUS_RAW.csv", "5762406957886626816"),
])
def test_round_trip_recovers_archive_coefficients(realdata, name, source_id):
    """coefficients -> spectrum -> MAP coefficients on real DR3 stars (gnorm units)."""
    coeffs, cov, row = _continuous_rows(realdata / "gaiaxpy_tests" / name)[source_id]
    g = float(row["phot_g_mean_mag"]) if "phot_g_mean_mag" in row else G_MAG[source_id]
    gf = g_flux(np.array([g]))[0]
    spectra = xp.sample(coeffs[None] / gf, covariance=cov[None] / gf ** 2)
    out = xp.project(spectra.flux, spectra.error)
    archive_err = np.sqrt(np.diag(cov)) / gf
    pull = np.abs(out.coefficients[0] - coeffs / gf) / archive_err
    assert np.median(pull) < 1.0                          # DESIGN: ~0.6 sigma median
    resampled = xp.sample(out.coefficients).flux
    assert np.max(np.abs(resampled - spectra.flux) / spectra.error) < 0.01
    # Posterior errors from the (diagonal) pixel errors: same order as the archive's.
    ratio = out.errors[0] / archive_err
    assert 0.3 < np.median(ratio) < 3.0


def test_fixed_projector_is_exact_for_a_shared_noise_model(rng):
    truth = _random_coefficients(rng, 5)
    flux = xp.sample(truth).flux
    sigma = 1e-3 * np.abs(flux).mean(axis=0) + 1e-6
    proj = xp.FixedProjector.from_noise(sigma)
    exact = xp.project(flux, np.broadcast_to(sigma, flux.shape), weights="errors")
    _, std = xp_prior()
    np.testing.assert_allclose(proj(flux) / std, exact.coefficients / std, atol=1e-6, rtol=0)
    default = xp.FixedProjector.for_spectrum()
    assert default.matrix.shape == (110, 343) and default.offset.shape == (110,)
    bad = flux.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        proj(bad)
    with pytest.raises(ValueError, match="positive"):
        xp.FixedProjector.from_noise(np.zeros(343))


def test_project_bad_and_empty_input(rng):
    flux = xp.sample(_random_coefficients(rng, 3)).flux
    with pytest.raises(ValueError, match="343"):
        xp.project(flux[:, :-1])
    with pytest.raises(ValueError, match="needs flux_error"):
        xp.project(flux, weights="errors")
    with pytest.raises(ValueError, match="weights"):
        xp.project(flux, weights="chi2")
    with pytest.raises(ValueError, match="shape of flux"):
        xp.project(flux, flux[:2])
    bad = flux.copy()
    bad[1, 0] = -np.inf
    with pytest.raises(ValueError, match="row 1"):
        xp.project(bad)
    with pytest.raises(ValueError, match="prior"):
        xp.project(flux, prior=(np.zeros(110), np.zeros(110)))
    empty = xp.project(np.empty((0, 343)), np.empty((0, 343)))
    assert empty.coefficients.shape == (0, 110) and empty.errors.shape == (0, 110)
