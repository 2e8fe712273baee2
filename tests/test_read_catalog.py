import sys
import types

import numpy as np
import pytest

from lamfast.io import (Catalog, gaia_photometry, read_catalog, read_parquet, write_parquet,
                        write_xp_continuous, xp_catalog)
from lamfast.io.dispatch import detect_catalog_format

from test_apogee import write_allstar
from test_xp_archive import random_xp


def _photometry_table(rng, ids):
    n = len(ids)
    return {"source_id": ids, "phot_g_mean_mag": rng.uniform(6, 18, n),
            "phot_bp_mean_mag": rng.uniform(6, 18, n), "phot_rp_mean_mag": rng.uniform(6, 18, n),
            "parallax": rng.uniform(0.1, 3, n)}


def test_xp_with_photometry(rng, tmp_path):
    xp = random_xp(rng, 9, correlations=False)
    write_xp_continuous(xp, tmp_path / "xp.ecsv.gz")
    table = _photometry_table(rng, xp.source_id[::-1].copy())
    xp.blank_irrelevant()  # what the reader does by default
    want = xp_catalog(xp, photometry=gaia_photometry(table))
    for phot in (gaia_photometry(table), table):
        got = read_catalog(tmp_path / "xp.ecsv.gz", photometry=phot, threads=2)
        assert got.columns == want.columns and got.columns[-2:] == ["bprp", "g_fakemag"]
        assert np.array_equal(got.values, want.values, equal_nan=True)
        assert np.array_equal(got.errors, want.errors, equal_nan=True)
    from astropy.table import Table
    Table(table).write(tmp_path / "phot.fits")
    got = read_catalog(tmp_path / "xp.ecsv.gz", photometry=tmp_path / "phot.fits")
    assert np.array_equal(got.values, want.values, equal_nan=True)
    with pytest.raises(ValueError, match="phot_g_mean_mag"):
        read_catalog(tmp_path / "xp.ecsv.gz")


def test_xp_file_carrying_g(realdata):
    cat = read_catalog(realdata / "gaiaxpy_tests" / "18Sco-XP-spectra.csv", n_coefficients=30)
    assert cat.columns[0] == "bp0" and len(cat.columns) == 60
    assert cat.extra["phot_g_mean_mag"].tolist() == [5.327651]
    assert 0.03 < cat.values[0, 0] < 0.1  # bp0 in gnorm units is ~0.057 for typical stars


def test_xp_fits_and_apogee_fits_detected(realdata, rng, tmp_path):
    assert detect_catalog_format(realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.fits") == "xp"
    write_allstar(tmp_path / "allStar.fits", rng, 10)
    assert detect_catalog_format(tmp_path / "allStar.fits") == "apogee"
    cat = read_catalog(tmp_path / "allStar.fits", metallicity="fe_h")
    assert cat.columns == ["teff", "logg", "m_h", "jh", "jk"] and cat.meta["m_h_from"] == "FE_H"
    xp = read_catalog(realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.fits", photometry={
        "source_id": np.array([5853498713190525696, 5762406957886626816]),
        "phot_g_mean_mag": np.array([8.98, 13.2]), "phot_bp_mean_mag": np.array([11.4, 12.9]),
        "phot_rp_mean_mag": np.array([7.5, 13.3])})
    assert len(xp) == 2 and xp.columns[-1] == "bprp"


def test_parquet_and_hdf5_dispatch(rng, tmp_path, monkeypatch):
    values = rng.normal(size=(4, 2)).astype(np.float32)
    cat = Catalog(["teff", "logg"], values, values, np.arange(4, dtype=np.int64), {"a": 1}, {})
    write_parquet(cat, tmp_path / "c.parquet")
    back = read_catalog(tmp_path / "c.parquet", columns=["logg"])
    assert back.columns == ["logg"] and np.array_equal(back.values[:, 0], values[:, 1])
    assert read_parquet(tmp_path / "c.parquet").meta == {"a": 1}

    (tmp_path / "paper.h5").write_bytes(b"")
    calls = []
    fake = types.ModuleType("lamfast.io.paper_hdf5")
    fake.read_paper_hdf5 = lambda path, **kw: calls.append((path, kw)) or cat
    monkeypatch.setitem(sys.modules, "lamfast.io.paper_hdf5", fake)
    assert read_catalog(tmp_path / "paper.h5", split="train") is cat
    assert calls == [(tmp_path / "paper.h5", {"split": "train"})]
    monkeypatch.setitem(sys.modules, "lamfast.io.paper_hdf5", None)  # module absent
    with pytest.raises(ValueError, match="paper HDF5 reader"):
        read_catalog(tmp_path / "paper.h5")


def test_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_catalog(tmp_path / "none.csv")
    (tmp_path / "x.txt").write_text("a\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_catalog(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="format must be one of"):
        read_catalog(tmp_path / "x.txt", format="txt")
    (tmp_path / "c.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="photometry= applies to XP files only"):
        read_catalog(tmp_path / "c.parquet", photometry={})


def test_paper_hdf5_through_read_catalog(tmp_path):
    from lamfast.data.synthetic import make_synthetic
    from lamfast.io.paper_hdf5 import read_paper_hdf5, write_paper_hdf5

    write_paper_hdf5(tmp_path / "paper.h5", make_synthetic(9, seed=5).catalog)
    whole, part = read_catalog(tmp_path / "paper.h5"), read_catalog(tmp_path / "paper.h5", rows=slice(2, 7))
    direct = read_paper_hdf5(tmp_path / "paper.h5")
    assert whole.columns == direct.columns and np.array_equal(whole.values, direct.values, equal_nan=True)
    assert np.array_equal(part.source_id, direct.source_id[2:7])
