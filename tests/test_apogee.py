import numpy as np
import pytest

from lamfast.io import read_apogee_allstar


def write_allstar(path, rng, n, *, with_m_h=True, extra_hdus=True):
    """A small file laid out like DR17 allStar HDU 1 (names and FITS types of the datamodel)."""
    from astropy.io import fits

    f32 = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    teff, logg = f32(3500, 7000), f32(0, 5)
    teff[1] = np.nan        # ASPCAP failed
    logg[2] = -9999.0       # old-style sentinel
    j, h, k = f32(6, 14), f32(5, 13), f32(5, 13)
    h[3] = 99.999           # no 2MASS H
    aspcap = np.zeros(n, np.int64)
    aspcap[4] = 1 << 19     # M_H_BAD
    aspcap[5] = 1 << 23     # STAR_BAD
    aspcap[6] = 1 << 16     # TEFF_BAD: not one of the paper's bits
    starflag = np.zeros(n, np.int64)
    starflag[7] = 1 << 3
    extratarg = np.zeros(n, np.int32)
    extratarg[8] = 1 << 4   # duplicate
    cols = [
        fits.Column("APOGEE_ID", "30A", array=np.array([f"2M{i:016d}" for i in range(n)])),
        fits.Column("TELESCOPE", "8A", array=np.array(["apo25m"] * n)),
        fits.Column("EXTRATARG", "J", array=extratarg),
        fits.Column("J", "E", array=j), fits.Column("J_ERR", "E", array=f32(0.01, 0.05)),
        fits.Column("H", "E", array=h), fits.Column("H_ERR", "E", array=f32(0.01, 0.05)),
        fits.Column("K", "E", array=k), fits.Column("K_ERR", "E", array=f32(0.01, 0.05)),
        fits.Column("SNR", "E", array=f32(20, 500)),
        fits.Column("STARFLAG", "K", array=starflag),
        fits.Column("GAIAEDR3_SOURCE_ID", "K", array=rng.integers(1, 2**62, n)),
        fits.Column("ASPCAPFLAG", "K", array=aspcap),
        fits.Column("TEFF", "E", array=teff), fits.Column("TEFF_ERR", "E", array=f32(5, 100)),
        fits.Column("LOGG", "E", array=logg), fits.Column("LOGG_ERR", "E", array=f32(0.01, 0.1)),
        fits.Column("FE_H", "E", array=f32(-2, 0.5)), fits.Column("FE_H_ERR", "E", array=f32(0.005, 0.05)),
    ]
    if with_m_h:
        cols += [fits.Column("M_H", "E", array=f32(-2, 0.5)),
                 fits.Column("M_H_ERR", "E", array=f32(0.005, 0.05))]
    hdus = [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]
    if extra_hdus:
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.zeros(2))]))
    fits.HDUList(hdus).writeto(path)
    return fits.getdata(path, 1)


def test_labels_flags_and_colours(rng, tmp_path):
    n = 11
    raw = write_allstar(tmp_path / "allStar.fits", rng, n)
    cat = read_apogee_allstar(tmp_path / "allStar.fits")
    assert cat.columns == ["teff", "logg", "m_h", "jh", "jk"] and len(cat) == n
    assert cat.meta["m_h_from"] == "M_H"
    assert np.array_equal(cat.source_id, raw["GAIAEDR3_SOURCE_ID"])
    blanked = np.zeros(n, bool)
    blanked[[4, 5, 7]] = True
    assert np.array_equal(cat.extra["label_blanked"], blanked)
    labels = cat.values[:, :3]
    assert np.isnan(labels[blanked]).all() and np.isnan(cat.errors[blanked, :3]).all()
    assert np.isnan(labels[1, 0]) and np.isnan(labels[2, 1])  # NaN and -9999 -> missing
    ok = ~blanked
    ok[[1, 2]] = False
    assert np.array_equal(labels[ok], np.stack([raw["TEFF"], raw["LOGG"], raw["M_H"]], 1)[ok])
    assert np.array_equal(cat.errors[ok, 0], raw["TEFF_ERR"][ok])
    jh = (raw["J"].astype(np.float64) - raw["H"]).astype(np.float32)
    jh[3] = np.nan  # H = 99.999 is no measurement
    assert np.array_equal(cat.column("jh"), jh, equal_nan=True)
    assert np.isfinite(cat.column("jk")).all()  # colours are not blanked by ASPCAP flags
    want = np.hypot(raw["J_ERR"].astype(np.float64), raw["K_ERR"]).astype(np.float32)
    assert np.array_equal(cat.errors[:, 4], want)
    assert cat.extra["apogee_id"][0] == "2M0000000000000000"
    assert cat.extra["telescope"][0] == "apo25m"


def test_options(rng, tmp_path):
    raw = write_allstar(tmp_path / "a.fits", rng, 10)
    fe = read_apogee_allstar(tmp_path / "a.fits", metallicity="fe_h", blank_flagged=False)
    assert fe.meta["m_h_from"] == "FE_H"
    assert np.array_equal(fe.column("m_h"), raw["FE_H"])
    assert not fe.extra["label_blanked"].any()
    only_star = read_apogee_allstar(tmp_path / "a.fits", aspcapflag_bits=(), starflag_mask=-1)
    assert np.flatnonzero(only_star.extra["label_blanked"]).tolist() == [7]
    teff_bad = read_apogee_allstar(tmp_path / "a.fits", aspcapflag_bits=(16,), starflag_mask=0)
    assert np.flatnonzero(teff_bad.extra["label_blanked"]).tolist() == [6]
    primary = read_apogee_allstar(tmp_path / "a.fits", primary_only=True)
    assert len(primary) == 9 and raw["GAIAEDR3_SOURCE_ID"][8] not in primary.source_id
    write_allstar(tmp_path / "b.fits", rng, 10, with_m_h=False)
    auto = read_apogee_allstar(tmp_path / "b.fits")
    assert auto.meta["m_h_from"] == "FE_H"


def test_errors(rng, tmp_path):
    write_allstar(tmp_path / "b.fits", rng, 10, with_m_h=False)
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['M_H', 'M_H_ERR'\]"):
        read_apogee_allstar(tmp_path / "b.fits", metallicity="m_h")
    with pytest.raises(ValueError, match="metallicity"):
        read_apogee_allstar(tmp_path / "b.fits", metallicity="alpha")
    with pytest.raises(ValueError, match="not a binary table"):
        read_apogee_allstar(tmp_path / "b.fits", hdu=0)
    with pytest.raises(ValueError, match="bit must be in 0..63"):
        read_apogee_allstar(tmp_path / "b.fits", aspcapflag_bits=(64,))
    with pytest.raises(FileNotFoundError):
        read_apogee_allstar(tmp_path / "none.fits")
