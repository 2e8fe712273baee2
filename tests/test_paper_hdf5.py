import h5py
import numpy as np
import pytest

from lamfast.io import Catalog
from lamfast.io.paper_hdf5 import PaperHDF5Writer, iter_paper_hdf5, read_paper_hdf5, write_paper_hdf5
from lamfast.vocab import PAPER_TOKENS


def _catalog(rng, n):
    values = rng.normal(size=(n, len(PAPER_TOKENS))).astype(np.float32)
    errors = np.abs(rng.normal(size=values.shape)).astype(np.float32)
    scalars = values[:, 110:]
    scalars[rng.random(scalars.shape) < 0.2] = np.nan
    for band in (0, 55):                             # blanked beyond n_relevant_bases
        n_relevant = rng.integers(0, 56, n)
        values[:, band:band + 55][np.arange(55) >= n_relevant[:, None]] = np.nan
    errors[~np.isfinite(values)] = np.nan
    errors[rng.random(values.shape) < 0.1] = np.nan  # unknown errors of present values
    extra = {"phot_g_mean_mag": rng.uniform(8, 17, n), "parallax": rng.normal(1, 0.3, n),
             "parallax_err": rng.uniform(0.01, 0.1, n), "split": rng.integers(0, 3, n).astype(np.int8),
             "2mass_designation": np.array([f"{i:08d}+{i:07d}" for i in range(n)])}
    return Catalog(list(PAPER_TOKENS), values, errors, rng.integers(0, 2**62, n), {}, extra)


def test_round_trip(tmp_path, rng):
    cat = _catalog(rng, 23)
    path = tmp_path / "train.h5"
    write_paper_hdf5(path, cat, chunk_rows=5)
    back = read_paper_hdf5(path)
    assert back.columns == list(PAPER_TOKENS)
    np.testing.assert_array_equal(back.values, cat.values)
    np.testing.assert_array_equal(back.errors, cat.errors)
    np.testing.assert_array_equal(back.source_id, cat.source_id)
    for k, v in cat.extra.items():
        np.testing.assert_array_equal(back.extra[k], v, err_msg=k)
    assert back.meta["missing_datasets"] == []
    with h5py.File(path) as f:  # the paper's raw datasets, chunked and compressed
        raw = f["raw"]
        assert raw["xp_coeffs_gnorm"].chunks == (5, 110) and raw["xp_coeffs_gnorm"].compression == "gzip"
        assert f["2mass_designation"].shape == (23, 1) and f["2mass_designation"].dtype == "S16"
        np.testing.assert_array_equal(raw["logc19"][:], cat.column("logebv"))
        gflux = 10 ** ((25.6873668671 - cat.extra["phot_g_mean_mag"]) / 2.5)
        np.testing.assert_allclose(raw["xp_coeffs"][:, 3], cat.column("bp3") * gflux, rtol=1e-6)
        np.testing.assert_array_equal(raw["xp_relevancy"][:], np.isfinite(cat.values[:, :110]))


def test_row_ranges_and_streaming(tmp_path, rng):
    cat = _catalog(rng, 17)
    path = tmp_path / "t.h5"
    with PaperHDF5Writer(path, chunk_rows=4) as w:   # appended in uneven pieces
        for s in (slice(0, 3), slice(3, 11), slice(11, 17)):
            w.append(cat.rows(s))
    part = read_paper_hdf5(path, slice(5, 12))
    np.testing.assert_array_equal(part.values, cat.values[5:12])
    np.testing.assert_array_equal(part.source_id, cat.source_id[5:12])
    chunks = list(iter_paper_hdf5(path, chunk_rows=6))
    assert [len(c) for c in chunks] == [6, 6, 5]
    np.testing.assert_array_equal(np.concatenate([c.errors for c in chunks]), cat.errors)
    assert len(read_paper_hdf5(path, slice(20, 30))) == 0
    with pytest.raises(ValueError, match="contiguous"):
        read_paper_hdf5(path, slice(0, 10, 2))


def test_authors_relevancy_and_error_conventions(tmp_path, rng):
    n = 4
    coeffs = rng.normal(size=(n, 110)).astype(np.float32)
    rel = np.ones((n, 110), dtype=bool)
    rel[0, 52:55] = False          # 51 relevant -> 52..54 become relevant again
    rel[1, 51:55] = False          # 51 irrelevant -> 51..54 blanked
    rel[2, 106] = False            # 106 irrelevant -> 106..109 blanked
    rel[2, 107:110] = True
    rel[3, 20] = False             # an ordinary irrelevant coefficient
    path = tmp_path / "authors.h5"
    with h5py.File(path, "w") as f:
        f["gaia_source_id"] = np.arange(n, dtype=np.int64) * 128
        f["2mass_designation"] = np.array([[b"a"], [b"b"], [b"c"], [b"d"]], dtype="S16")
        raw = f.create_group("raw")
        raw["xp_coeffs_gnorm"] = coeffs
        raw["xp_coeffs_gnorm_err"] = np.abs(coeffs)
        raw["xp_relevancy"] = rel
        raw["teff"] = np.array([4000, np.nan, 5000, 6000], dtype=np.float32)
        raw["teff_err"] = np.array([np.nan, np.nan, 50, np.nan], dtype=np.float32)
    cat = read_paper_hdf5(path, nan_label_errors_to_zero=True)
    v = cat.values[:, :110]
    np.testing.assert_array_equal(v[0], coeffs[0])
    assert np.isnan(v[1, 51:55]).all() and np.isfinite(v[1, :51]).all() and np.isfinite(v[1, 55:]).all()
    assert np.isnan(v[2, 106:110]).all() and np.isfinite(v[2, :106]).all()
    assert np.isnan(v[3, 20]) and np.isnan(cat.errors[3, 20]) and np.isfinite(v[3, 21])
    teff = PAPER_TOKENS.index("teff")
    # NaN label errors -> 0 only where the label exists
    np.testing.assert_array_equal(cat.errors[:, teff], [0, np.nan, 50, 0])
    assert np.isnan(cat.values[:, PAPER_TOKENS.index("jh")]).all()   # absent dataset -> NaN
    assert "raw/jh" in cat.meta["missing_datasets"]
    assert list(cat.extra["2mass_designation"]) == ["a", "b", "c", "d"]
    plain = read_paper_hdf5(path, relevancy=False)
    np.testing.assert_array_equal(plain.values[:, :110], coeffs)
    assert np.isnan(plain.errors[0, teff])


def test_bad_files(tmp_path, rng):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["gaia_source_id"] = np.arange(3, dtype=np.int64)
        f.create_group("raw")["teff"] = np.zeros(3)
    with pytest.raises(ValueError, match="bad.h5.*raw/'?xp_coeffs_gnorm"):
        read_paper_hdf5(path)
    with h5py.File(path, "a") as f:
        f["raw/xp_coeffs_gnorm"] = np.zeros((3, 109))
    with pytest.raises(ValueError, match=r"xp_coeffs_gnorm must be \[3, 110\]"):
        read_paper_hdf5(path)
    with h5py.File(path, "a") as f:
        del f["raw/xp_coeffs_gnorm"]
        f["raw/xp_coeffs_gnorm"] = np.zeros((3, 110))
        f["raw/jh"] = np.zeros(4)
    with pytest.raises(ValueError, match="raw/jh must have shape"):
        read_paper_hdf5(path)
    cat = _catalog(rng, 3).select([f"bp{i}" for i in range(55)])
    with pytest.raises(ValueError, match="lacks XP columns"):
        write_paper_hdf5(tmp_path / "x.h5", cat)


def test_empty_catalogue(tmp_path, rng):
    cat = _catalog(rng, 3).rows(slice(0, 0))
    write_paper_hdf5(tmp_path / "e.h5", cat)
    back = read_paper_hdf5(tmp_path / "e.h5")
    assert len(back) == 0 and back.values.shape == (0, len(PAPER_TOKENS))
