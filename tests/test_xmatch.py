"""lamfast.xmatch against its brute-force numpy reference, scipy's cKDTree on unit
vectors and astropy (match_to_catalog_sky, search_around_sky, apply_space_motion)."""

from pathlib import Path

import numpy as np
import pytest

from lamfast import cli
from lamfast.xmatch import (Index, Match, match, match_reference, one_to_one, propagate,
                            propagate_reference, unit_vectors)

SEP_TOL = 1e-6  # arcsec


# ------------------------------------------------------------------------------------
# skies


def random_sky(rng, n):
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def cap(rng, n, ra0, dec0, radius_deg):
    """n points uniform in a cap around (ra0, dec0); RA wrapped into [0, 360)."""
    u = unit_vectors([ra0], [dec0])[0]
    east = np.array([-np.sin(np.radians(ra0)), np.cos(np.radians(ra0)), 0.0])
    north = np.cross(u, east)
    rho = np.radians(radius_deg) * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    v = (np.cos(rho)[:, None] * u + np.sin(rho)[:, None]
         * (np.cos(phi)[:, None] * east + np.sin(phi)[:, None] * north))
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    return ra, np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))


def scenario(name, rng):
    """(ra1, dec1, ra2, dec2, radius_arcsec) with a fair number of pairs."""
    if name == "random":
        return (*random_sky(rng, 400), *random_sky(rng, 700), 4 * 3600.0)
    if name == "clump":  # dense: many candidates per cell, many ties of rank
        ra1, dec1 = cap(rng, 300, 123.4, -41.0, 20 / 3600)
        ra2, dec2 = cap(rng, 500, 123.4, -41.0, 20 / 3600)
        return ra1, dec1, ra2, dec2, 2.0
    if name == "ra_wrap":
        ra1, dec1 = cap(rng, 300, 0.0, 10.0, 0.05)
        ra2, dec2 = cap(rng, 500, 359.99, 10.0, 0.05)
        return ra1, dec1, ra2, dec2, 20.0
    if name == "north_pole":
        ra1, dec1 = cap(rng, 300, 10.0, 90.0, 0.05)
        ra2, dec2 = cap(rng, 500, 200.0, 89.99, 0.05)
        dec2[:3] = 90.0  # exactly at the pole, at arbitrary RA
        return ra1, dec1, ra2, dec2, 30.0
    if name == "south_pole":
        ra1, dec1 = cap(rng, 300, 0.0, -90.0, 0.05)
        ra2, dec2 = cap(rng, 500, 90.0, -89.98, 0.08)
        dec1[:2] = -90.0
        return ra1, dec1, ra2, dec2, 30.0
    if name == "zone_edges":  # every point exactly on a 0.01 degree zone boundary
        ra1, ra2 = rng.uniform(40, 40.2, 300), rng.uniform(40, 40.2, 500)
        dec1 = rng.integers(-10, 10, 300) * 0.01 - 60.0
        dec2 = rng.integers(-10, 10, 500) * 0.01 - 60.0 + rng.choice([-1e-13, 0, 1e-13], 500)
        return ra1, dec1, ra2, dec2, 40.0
    raise KeyError(name)


SCENARIOS = ["random", "clump", "ra_wrap", "north_pole", "south_pole", "zone_edges"]
MODES = [("nearest", 1), ("nearest", 3), ("all", 1), ("best", 1)]


def assert_same(a: Match, b: Match):
    np.testing.assert_array_equal(a.idx1, b.idx1)
    np.testing.assert_array_equal(a.idx2, b.idx2)
    np.testing.assert_array_equal(np.isnan(a.sep_arcsec), np.isnan(b.sep_arcsec))
    np.testing.assert_allclose(a.sep_arcsec, b.sep_arcsec, rtol=0, atol=SEP_TOL)
    assert a.idx1.dtype == a.idx2.dtype == np.int64 and a.sep_arcsec.dtype == np.float64


# ------------------------------------------------------------------------------------
# against the reference


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("mode,k", MODES)
def test_matches_reference(name, mode, k, rng):
    ra1, dec1, ra2, dec2, radius = scenario(name, rng)
    got = match(ra1, dec1, ra2, dec2, radius, mode=mode, k=k, threads=2)
    want = match_reference(ra1, dec1, ra2, dec2, radius, mode=mode, k=k)
    assert (want.idx2 >= 0).sum() > 20, "scenario has too few pairs to test anything"
    assert_same(got, want)


@pytest.mark.parametrize("zone_height_arcsec", [1.0, 7.3, 36.0, 900.0, 36000.0])
@pytest.mark.parametrize("name", ["random", "ra_wrap", "north_pole", "zone_edges"])
def test_any_zone_height_gives_the_same_pairs(name, zone_height_arcsec, rng):
    ra1, dec1, ra2, dec2, radius = scenario(name, rng)
    want = match_reference(ra1, dec1, ra2, dec2, radius, mode="all")
    index = Index(ra2, dec2, zone_height_arcsec=zone_height_arcsec)
    assert_same(index.query(ra1, dec1, radius, mode="all"), want)


def test_ra_outside_0_360_is_wrapped(rng):
    ra1, dec1, ra2, dec2, radius = scenario("ra_wrap", rng)
    shifted1 = np.where(rng.random(len(ra1)) < 0.5, ra1 - 360.0, ra1)  # in [-360, 360)
    shifted2 = np.where(ra2 > 180, ra2 - 360.0, ra2)  # in (-180, 180]
    assert_same(match(shifted1, dec1, shifted2, dec2, radius, mode="all"),
                match(ra1, dec1, ra2, dec2, radius, mode="all"))


def test_ties_go_to_the_smaller_row(rng):
    ra2, dec2 = cap(rng, 50, 30.0, 30.0, 0.01)
    ra2, dec2 = np.repeat(ra2, 3), np.repeat(dec2, 3)  # each position three times
    ra1, dec1 = ra2[::3] + 1e-5, dec2[::3]
    near = match(ra1, dec1, ra2, dec2, 1.0, k=3)
    assert_same(near, match_reference(ra1, dec1, ra2, dec2, 1.0, k=3))
    np.testing.assert_array_equal(near.idx2.reshape(-1, 3), np.arange(150).reshape(-1, 3))
    best = match(ra2, dec2, ra2, dec2, 0.0, mode="best")  # identical rows pair up in order
    np.testing.assert_array_equal(best.idx1, best.idx2)
    assert_same(best, match_reference(ra2, dec2, ra2, dec2, 0.0, mode="best"))


@pytest.mark.parametrize("radius_deg", [89.0, 91.0, 179.0, 180.0])
def test_radius_up_to_half_the_sky(radius_deg, rng):
    ra1, dec1 = random_sky(rng, 40)
    ra2, dec2 = random_sky(rng, 60)
    for mode, k in [("all", 1), ("nearest", 7)]:
        got = match(ra1, dec1, ra2, dec2, radius_deg * 3600, mode=mode, k=k)
        assert_same(got, match_reference(ra1, dec1, ra2, dec2, radius_deg * 3600, mode=mode, k=k))
    if radius_deg == 180.0:
        assert len(got.idx1) == 40 * 7 and (got.idx2 >= 0).all()


def test_tiny_separations_are_exact():
    ra0, dec0 = 150.0, 2.0
    offsets_mas = np.array([0.01, 0.1, 1.0, 10.0, 1000.0])
    dec2 = dec0 + offsets_mas / 3.6e6
    got = match(np.full(5, ra0), np.full(5, dec0), np.full(5, ra0), dec2, 2.0, k=5)
    np.testing.assert_allclose(got.sep_arcsec[:5], offsets_mas / 1000.0, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------
# against scipy and astropy


@pytest.mark.parametrize("name", SCENARIOS)
def test_against_ckdtree(name, rng):
    from scipy.spatial import cKDTree

    ra1, dec1, ra2, dec2, radius = scenario(name, rng)
    if name == "random":  # bigger here: the reference is brute force, the tree is not
        ra1, dec1, ra2, dec2, radius = (*random_sky(rng, 20000), *random_sky(rng, 30000), 300.0)
    chord = 2 * np.sin(np.radians(radius / 3600) / 2)
    u1, u2 = unit_vectors(ra1, dec1), unit_vectors(ra2, dec2)
    tree = cKDTree(u2)
    d, j = tree.query(u1, k=2, distance_upper_bound=chord)
    j = np.where(np.isfinite(d), j, -1)
    near = match(ra1, dec1, ra2, dec2, radius, k=2)
    np.testing.assert_array_equal(near.idx2.reshape(-1, 2), j)
    sep = np.degrees(2 * np.arcsin(np.minimum(d, 2) / 2)) * 3600  # d = inf: no neighbour
    np.testing.assert_allclose(near.sep_arcsec.reshape(-1, 2)[j >= 0], sep[j >= 0], atol=SEP_TOL)
    pairs = tree.query_ball_point(u1, chord)
    want = sorted((i, jj) for i, js in enumerate(pairs) for jj in js)
    got = match(ra1, dec1, ra2, dec2, radius, mode="all")
    assert sorted(zip(got.idx1.tolist(), got.idx2.tolist())) == want
    assert len(want) > 20


@pytest.mark.parametrize("name", ["random", "clump", "ra_wrap", "north_pole", "south_pole"])
def test_against_astropy(name, rng):
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    ra1, dec1, ra2, dec2, radius = scenario(name, rng)
    if name == "random":
        ra1, dec1, ra2, dec2, radius = (*random_sky(rng, 5000), *random_sky(rng, 8000), 600.0)
    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    j, sep, _ = c1.match_to_catalog_sky(c2)
    sep = sep.to_value(u.arcsec)
    within = sep <= radius
    near = match(ra1, dec1, ra2, dec2, radius)
    np.testing.assert_array_equal(near.idx2, np.where(within, j, -1))
    np.testing.assert_allclose(near.sep_arcsec[within], sep[within], rtol=0, atol=SEP_TOL)
    i1, i2, sep2, _ = search_around_sky(c1, c2, radius * u.arcsec)
    order = np.lexsort((i2, i1))
    got = match(ra1, dec1, ra2, dec2, radius, mode="all")
    order_got = np.lexsort((got.idx2, got.idx1))
    np.testing.assert_array_equal(got.idx1[order_got], i1[order])
    np.testing.assert_array_equal(got.idx2[order_got], i2[order])
    np.testing.assert_allclose(got.sep_arcsec[order_got], sep2.to_value(u.arcsec)[order],
                               rtol=0, atol=SEP_TOL)
    assert within.sum() > 20


def pm_sample(rng, n):
    ra, dec = random_sky(rng, n)
    dec[:4] = [90.0, -90.0, 89.99999, -89.9999]  # at and next to the poles
    ra[:4] = [0.0, 123.0, 359.9999, 45.0]
    pmra, pmdec = rng.normal(0, 300, n), rng.normal(0, 300, n)
    pmra[4:8] *= 100  # tens of arcsec per year
    return ra, dec, pmra, pmdec


def test_propagation_against_astropy(rng):
    import warnings

    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    ra, dec, pmra, pmdec = pm_sample(rng, 2000)
    epoch1 = rng.uniform(2014, 2018, len(ra))
    c = SkyCoord(ra * u.deg, dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr,
                 pm_dec=pmdec * u.mas / u.yr, obstime=Time(epoch1, format="jyear"))
    with warnings.catch_warnings():  # ERFA: "distance overridden" (no parallax given)
        warnings.simplefilter("ignore")
        moved = c.apply_space_motion(new_obstime=Time(2000.0, format="jyear"))
    ra_p, dec_p = propagate(ra, dec, pmra, pmdec, epoch1, 2000.0)
    sep = SkyCoord(ra_p * u.deg, dec_p * u.deg).separation(moved).to_value(u.arcsec)
    assert sep.max() < SEP_TOL
    ra_r, dec_r = propagate_reference(ra, dec, pmra, pmdec, epoch1, 2000.0)
    sep_r = SkyCoord(ra_p * u.deg, dec_p * u.deg).separation(
        SkyCoord(ra_r * u.deg, dec_r * u.deg)).to_value(u.arcsec)
    assert sep_r.max() < SEP_TOL
    assert ((ra_p >= 0) & (ra_p < 360)).all()


def test_match_with_proper_motion(rng):
    ra, dec, pmra, pmdec = pm_sample(rng, 500)
    pmra[10:20] = np.nan  # no proper motion: matched where catalogued
    pmdec[15:25] = np.nan
    ra2, dec2 = propagate_reference(ra, dec, np.nan_to_num(pmra), np.nan_to_num(pmdec),
                                    2016.0, 2000.0)
    ra2[10:25], dec2[10:25] = ra[10:25], dec[10:25]
    kw = dict(pmra1=pmra, pmdec1=pmdec, epoch1=2016.0, epoch2=2000.0)
    got = match(ra, dec, ra2, dec2, 0.01, **kw)
    np.testing.assert_array_equal(got.idx2, np.arange(500))
    assert got.sep_arcsec.max() < 1e-6
    assert match(ra, dec, ra2, dec2, 0.01).idx2[4:8].max() == -1  # the fast movers
    for mode in ("nearest", "all", "best"):
        assert_same(match(ra, dec, ra2, dec2, 60.0, mode=mode, **kw),
                    match_reference(ra, dec, ra2, dec2, 60.0, mode=mode, **kw))
    per_row = np.full(500, 2016.0)
    assert_same(match(ra, dec, ra2, dec2, 0.01, pmra1=pmra, pmdec1=pmdec, epoch1=per_row,
                      epoch2=2000.0), got)


# ------------------------------------------------------------------------------------
# determinism, streaming, edge cases


def test_thread_count_and_chunking_do_not_matter(rng):
    ra2, dec2 = random_sky(rng, 30000)
    near_ra = ra2[:8000] + rng.normal(0, 0.1, 8000)
    near_dec = dec2[:8000] + rng.normal(0, 0.1, 8000)
    far_ra, far_dec = random_sky(rng, 9001)
    ra1 = np.concatenate([near_ra % 360.0, far_ra])  # about half the rows have neighbours
    dec1 = np.concatenate([np.clip(near_dec, -90, 90), far_dec])
    index = Index(ra2, dec2)
    for mode, k in [("nearest", 1), ("nearest", 4), ("all", 1)]:
        base = index.query(ra1, dec1, 900.0, mode=mode, k=k, threads=1)
        assert (base.idx2 >= 0).sum() > 5000
        for threads in (2, 3, 8):
            assert_same(index.query(ra1, dec1, 900.0, mode=mode, k=k, threads=threads), base)
        cuts = [0, 1, 2500, 2501, 11111, len(ra1)]
        chunks = [index.query(ra1[a:b], dec1[a:b], 900.0, mode=mode, k=k, row_offset=a,
                              threads=2) for a, b in zip(cuts[:-1], cuts[1:])]
        assert_same(Match(*(np.concatenate(c) for c in zip(*chunks))), base)
        if mode == "all":  # streaming best: one_to_one over the pairs of all chunks
            streamed = one_to_one(Match(*(np.concatenate(c) for c in zip(*chunks))))
            assert_same(streamed, index.query(ra1, dec1, 900.0, mode="best", threads=3))


@pytest.mark.parametrize("mode,k", MODES)
def test_empty_catalogues(mode, k, rng):
    ra, dec = random_sky(rng, 7)
    empty = np.zeros(0)
    for args in [(empty, empty, ra, dec), (ra, dec, empty, empty), (empty, empty, empty, empty)]:
        got = match(*args, 1.0, mode=mode, k=k)
        n1 = len(args[0])
        expect_rows = n1 * k if mode == "nearest" else 0
        assert len(got.idx1) == len(got.idx2) == len(got.sep_arcsec) == expect_rows
        assert (got.idx2 == -1).all()
        assert_same(got, match_reference(*args, 1.0, mode=mode, k=k))


def bad_call(**change):
    rng = np.random.default_rng(1)
    kw = dict(ra1=rng.uniform(0, 360, 5), dec1=rng.uniform(-90, 90, 5),
              ra2=rng.uniform(0, 360, 6), dec2=rng.uniform(-90, 90, 6), radius_arcsec=1.0)
    kw.update(change)
    return match(**kw)


@pytest.mark.parametrize("change,message", [
    (dict(ra1=[1.0, 2.0, np.nan, 3.0, 4.0]), r"ra1\[2\] = nan"),
    (dict(dec2=[0.0, 0.0, 0.0, 90.5, 0.0, 0.0]), r"dec2\[3\] = 90.5 .*\[-90, 90\]"),
    (dict(ra2=[0.0, 0.0, 0.0, 0.0, 0.0, 361.0]), r"ra2\[5\] = 361.0"),
    (dict(dec1=[0.0, -np.inf, 0.0, 0.0, 0.0]), r"dec1\[1\]"),
    (dict(dec1=[0.0, 0.0]), "ra1 and dec1 differ in length"),
    (dict(ra2=np.zeros((6, 1))), "ra2 must be 1-D"),
    (dict(radius_arcsec=-1.0), "radius_arcsec"),
    (dict(radius_arcsec=np.nan), "radius_arcsec"),
    (dict(mode="closest"), "mode must be one of"),
    (dict(k=0), "k must be a positive int"),
    (dict(k=2, mode="all"), "k applies to mode='nearest' only"),
    (dict(pmra1=np.zeros(5)), "pmra1 and pmdec1 go together"),
    (dict(pmra1=np.zeros(5), pmdec1=np.zeros(5), epoch1=2016.0), "need both epoch1 and epoch2"),
    (dict(pmra1=np.zeros(4), pmdec1=np.zeros(5), epoch1=2016.0, epoch2=2000.0),
     "pmra1 must have shape"),
    (dict(pmra1=np.zeros(5), pmdec1=[0, 0, np.inf, 0, 0], epoch1=2016.0, epoch2=2000.0),
     r"pmdec1\[2\] = inf"),
    (dict(pmra1=[0, 1e300, 0, 0, 0], pmdec1=np.zeros(5), epoch1=2016.0, epoch2=2000.0),
     r"pmra1\[1\] = 1e\+300 is infinite, or moves the row by over 1e15 mas"),
    (dict(pmra1=np.zeros(5), pmdec1=np.zeros(5), epoch1=[2016.0, 2016.0, np.nan, 2016.0, 2016.0],
          epoch2=2000.0), r"epoch1\[2\] = nan"),
    (dict(pmra1=np.zeros(5), pmdec1=np.zeros(5), epoch1=np.zeros(3), epoch2=2000.0),
     "epoch1 must be"),
    (dict(epoch2=[2000.0, 2001.0]), "epoch2 must be one finite epoch"),
])
def test_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        bad_call(**change)


def test_index_rejects_bad_input():
    with pytest.raises(ValueError, match=r"dec\[1\] = 95.0"):
        Index([1.0, 2.0], [0.0, 95.0])
    with pytest.raises(ValueError, match="zone_height_arcsec"):
        Index([1.0], [0.0], zone_height_arcsec=0.5)
    index = Index([1.0], [0.0])
    with pytest.raises(ValueError, match="row_offset"):
        index.query([1.0], [0.0], 1.0, row_offset=-1)
    with pytest.raises(ValueError, match=r"ra\[0\] = inf"):
        index.query([np.inf], [0.0], 1.0)


# ------------------------------------------------------------------------------------
# command line


def test_cli_on_parquet_and_csv(tmp_path, rng, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table

    ra1, dec1, ra2, dec2, radius = scenario("ra_wrap", rng)
    pm = rng.normal(0, 5, (2, len(ra1)))
    epoch = rng.uniform(2015, 2017, len(ra1))
    pq.write_table(pa.table({"RA_ICRS": ra1, "DE_ICRS": dec1, "pmra": pm[0], "pmdec": pm[1],
                             "ref_epoch": epoch}), tmp_path / "a.parquet")
    Table({"ra": ra2, "dec": dec2}).write(tmp_path / "b.csv", format="ascii.csv")
    out = tmp_path / "pairs.parquet"
    argv = ["xmatch", str(tmp_path / "a.parquet"), str(tmp_path / "b.csv"), "--radius",
            str(radius), "--mode", "best", "--out", str(out), "--ra1", "RA_ICRS", "--dec1",
            "DE_ICRS", "--pmra1", "pmra", "--pmdec1", "pmdec", "--epoch1", "ref_epoch",
            "--epoch2", "2000"]
    assert cli.main(argv) == 0
    assert "best:" in capsys.readouterr().out
    table = pq.read_table(out)
    want = match(ra1, dec1, ra2, dec2, radius, mode="best", pmra1=pm[0], pmdec1=pm[1],
                 epoch1=epoch, epoch2=2000.0)
    assert len(want.idx1) > 20
    np.testing.assert_array_equal(table["idx1"].to_numpy(), want.idx1)
    np.testing.assert_array_equal(table["idx2"].to_numpy(), want.idx2)
    np.testing.assert_array_equal(table["sep_arcsec"].to_numpy(), want.sep_arcsec)
    # a column that is not there: one clear line, exit status 2
    assert cli.main(["xmatch", str(tmp_path / "a.parquet"), str(tmp_path / "b.csv"),
                     "--radius", "1", "--out", str(tmp_path / "x.csv")]) == 2
    assert "no column 'ra'" in capsys.readouterr().err


def test_cli_writes_fits(tmp_path, rng):
    from astropy.table import Table

    ra1, dec1, ra2, dec2, radius = scenario("north_pole", rng)
    Table({"ra": ra1, "dec": dec1}).write(tmp_path / "a.fits")
    Table({"ra": ra2, "dec": dec2}).write(tmp_path / "b.ecsv")
    assert cli.main(["xmatch", str(tmp_path / "a.fits"), str(tmp_path / "b.ecsv"), "--radius",
                     str(radius), "--mode", "nearest", "--k", "2",
                     "--out", str(tmp_path / "p.fits")]) == 0
    table = Table.read(tmp_path / "p.fits")
    want = match(ra1, dec1, ra2, dec2, radius, k=2)
    np.testing.assert_array_equal(table["idx2"], want.idx2)


# ------------------------------------------------------------------------------------
# units: SkyCoord, Quantity, Time


def offset_pairs(rng, n, sep_arcsec, ra0=210.0, dec0=-35.0):
    """Catalogue 2 = catalogue 1 moved by exactly sep_arcsec in random directions."""
    ra1, dec1 = cap(rng, n, ra0, dec0, 0.5)
    u = unit_vectors(ra1, dec1)
    east = np.stack([-np.sin(np.radians(ra1)), np.cos(np.radians(ra1)), np.zeros(n)], axis=1)
    north = np.cross(u, east)
    phi = rng.uniform(0, 2 * np.pi, n)
    rho = np.radians(sep_arcsec / 3600)
    v = (np.cos(rho) * u + np.sin(rho) * (np.cos(phi)[:, None] * east
                                          + np.sin(phi)[:, None] * north))
    ra2 = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    return ra1, dec1, ra2, np.degrees(np.arcsin(v[:, 2]))


@pytest.mark.parametrize("mode,k", MODES)
def test_skycoord_inputs_give_the_same_pairs(mode, k, rng):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra1, dec1, ra2, dec2, radius = scenario("clump", rng)
    want = match(ra1, dec1, ra2, dec2, radius, mode=mode, k=k)
    assert (want.idx2 >= 0).sum() > 20
    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    assert_same(match(c1, c2, radius, mode=mode, k=k), want)
    assert_same(match(c1, c2, radius_arcsec=radius * u.arcsec, mode=mode, k=k), want)
    assert_same(match(c1, ra2, dec2, radius, mode=mode, k=k), want)  # either side alone
    assert_same(match(ra1, dec1, c2, radius, mode=mode, k=k), want)
    assert_same(match_reference(c1, c2, radius, mode=mode, k=k), want)
    # another frame: converted to ICRS (.icrs), not read as ICRS numbers
    g1, g2 = c1.galactic, c2.galactic
    assert not np.allclose(g1.l.deg, ra1)
    assert_same(match(g1, g2, radius, mode=mode, k=k), want)
    index = Index(g2)
    assert_same(index.query(c1, radius * u.arcsec, mode=mode, k=k), want)


def test_radian_quantities_are_converted_not_read_as_degrees(rng):
    import astropy.units as u

    ra1, dec1, ra2, dec2 = offset_pairs(rng, 300, 0.36)
    want = match(ra1, dec1, ra2, dec2, 1.0)
    np.testing.assert_array_equal(want.idx2, np.arange(300))
    np.testing.assert_allclose(want.sep_arcsec, 0.36, atol=1e-6)
    rad = [np.radians(a) * u.rad for a in (ra1, dec1, ra2, dec2)]
    got = match(*rad, 1.0)  # read as degrees, the separations would be 0.0063"
    assert_same(got, want)
    np.testing.assert_allclose(got.sep_arcsec, 0.36, atol=1e-6)
    assert (match(*rad, 0.3).idx2 == -1).all()  # 0.36" pairs are outside 0.3"
    assert_same(match_reference(*rad, 1.0), want)
    for mode in ("all", "best"):
        assert_same(match(*rad, 1.0, mode=mode), match(ra1, dec1, ra2, dec2, 1.0, mode=mode))
    assert_same(Index(rad[2], rad[3]).query(rad[0], rad[1], 1.0), want)
    # mixed units, and table columns that carry a unit
    from astropy.table import Table

    t = Table({"ra": rad[0], "dec": (dec1 * 60) * u.arcmin})
    assert t["ra"].unit == u.rad
    assert_same(match(Table(t, masked=False)["ra"], t["dec"], ra2 * u.deg, dec2, 1.0), want)


def test_quantity_radius_in_any_angle_unit(rng):
    import astropy.units as u

    ra1, dec1, ra2, dec2, _ = scenario("random", rng)
    for radius, arcsec in [(40 * u.arcmin, 2400.0), (1.5 * u.deg, 5400.0),
                           (np.radians(2.0) * u.rad, 7200.0), (3000 * u.arcsec, 3000.0)]:
        want = match(ra1, dec1, ra2, dec2, arcsec, mode="all")
        assert len(want.idx1) > 3
        assert_same(match(ra1, dec1, ra2, dec2, radius, mode="all"), want)
        assert_same(match_reference(ra1, dec1, ra2, dec2, radius, mode="all"), want)
        assert_same(Index(ra2, dec2).query(ra1, dec1, radius, mode="all"), want)
    # 1 degree is not 1 arcsec
    assert (len(match(ra1, dec1, ra2, dec2, 1 * u.deg, mode="all").idx1)
            > len(match(ra1, dec1, ra2, dec2, 1.0, mode="all").idx1))
    with pytest.raises(ValueError, match=r"radius_arcsec must be in \[0, 648000\]"):
        match(ra1, dec1, ra2, dec2, 181 * u.deg)
    index = Index(ra2, dec2, zone_height_arcsec=0.2 * u.deg)
    assert index.zone_height_arcsec == pytest.approx(720.0)


def quantity_call(**change):
    import astropy.units as u

    rng = np.random.default_rng(7)
    kw = dict(ra1=rng.uniform(0, 360, 5) * u.deg, dec1=rng.uniform(-90, 90, 5) * u.deg,
              ra2=rng.uniform(0, 360, 6), dec2=rng.uniform(-90, 90, 6), radius_arcsec=1.0,
              pmra1=rng.normal(0, 5, 5) * u.mas / u.yr, pmdec1=rng.normal(0, 5, 5),
              epoch1=2016.0, epoch2=2000.0)
    kw.update(change)
    return match(**kw)


@pytest.mark.parametrize("argument,value,unit", [
    ("ra1", "m", "m"), ("dec1", "s", "s"), ("ra2", "km", "km"), ("dec2", "", "dimensionless"),
    ("radius_arcsec", "kg", "kg"), ("pmra1", "mas", "mas"), ("pmdec1", "deg / m", "deg / m"),
    ("epoch1", "d", "d"), ("epoch2", "deg", "deg")])
def test_a_quantity_of_the_wrong_kind_is_refused(argument, value, unit):
    import astropy.units as u

    base = quantity_call()  # the same call with proper units works
    assert len(base.idx1) == 5
    rng = np.random.default_rng(8)
    n = 6 if argument.endswith("2") else 5
    x = (2000.0 if argument == "epoch2" else 2016.0 if argument == "epoch1"
         else 1.0 if argument == "radius_arcsec" else rng.uniform(0, 10, n)) * u.Unit(value)
    with pytest.raises(ValueError, match=rf"^{argument} has unit '{unit}'"):
        quantity_call(**{argument: x})
    for fn in (match, match_reference):
        with pytest.raises(ValueError, match=argument):
            kw = dict(ra1=np.ones(5), dec1=np.ones(5), ra2=np.ones(6), dec2=np.ones(6),
                      radius_arcsec=1.0, pmra1=np.ones(5), pmdec1=np.ones(5), epoch1=2016.0,
                      epoch2=2000.0)
            kw[argument] = x
            fn(**kw)


def test_index_and_propagate_refuse_non_angles(rng):
    import astropy.units as u

    ra, dec = random_sky(rng, 10)
    with pytest.raises(ValueError, match="^dec has unit 'm'"):
        Index(ra, dec * u.m)
    with pytest.raises(ValueError, match="^zone_height_arcsec has unit 's'"):
        Index(ra, dec, zone_height_arcsec=10 * u.s)
    with pytest.raises(ValueError, match="^radius_arcsec has unit 'km'"):
        Index(ra, dec).query(ra, dec, 1 * u.km)
    with pytest.raises(ValueError, match="^pmdec has unit 'mas'"):
        propagate(ra, dec, np.zeros(10), np.zeros(10) * u.mas, 2016.0, 2000.0)


def test_skycoord_proper_motions_and_obstime_are_used(rng):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    ra, dec, pmra, pmdec = pm_sample(rng, 400)
    ra2, dec2 = propagate_reference(ra, dec, pmra, pmdec, 2016.0, 2000.0)
    want = match(ra, dec, ra2, dec2, 0.01, pmra1=pmra, pmdec1=pmdec, epoch1=2016.0,
                 epoch2=2000.0)
    np.testing.assert_array_equal(want.idx2, np.arange(400))
    j2016, j2000 = Time(2016.0, format="jyear"), Time(2000.0, format="jyear")
    gaia = SkyCoord(ra * u.deg, dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr,
                    pm_dec=pmdec * u.mas / u.yr, obstime=j2016)
    old = SkyCoord(ra2 * u.deg, dec2 * u.deg, obstime=j2000)
    assert_same(match(gaia, old, 0.01), want)
    assert_same(match_reference(gaia, old, 0.01), want)
    assert_same(match(gaia, SkyCoord(ra2 * u.deg, dec2 * u.deg), 0.01, epoch2=2000.0), want)
    assert_same(match(gaia, ra2, dec2, 0.01, epoch2=j2000), want)
    assert_same(match(gaia, old, 0.01, epoch1=2016.0), want)  # agrees with obstime
    assert_same(Index(old).query(gaia, 0.01), want)
    # in another frame, the proper motions are rotated with the positions
    assert_same(match(gaia.galactic, old, 0.01), want)
    # per-row obstime, Time and Quantity epochs with arrays
    per_row = SkyCoord(ra * u.deg, dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr,
                       pm_dec=pmdec * u.mas / u.yr, obstime=Time(np.full(400, 2016.0),
                                                                   format="jyear"))
    assert_same(match(per_row, old, 0.01), want)
    assert_same(match(ra, dec, ra2, dec2, 0.01, pmra1=pmra * u.mas / u.yr,
                      pmdec1=(pmdec / 1000) * u.arcsec / u.yr, epoch1=2016.0 * u.yr,
                      epoch2=j2000), want)
    # propagate takes the coordinate whole
    ra_p, dec_p = propagate(gaia, 2000.0)
    ra_r, dec_r = propagate(ra, dec, pmra, pmdec, 2016.0, 2000.0)
    np.testing.assert_allclose(ra_p, ra_r, atol=1e-10)
    np.testing.assert_allclose(dec_p, dec_r, atol=1e-10)
    ra_q, _ = propagate_reference(gaia, epoch_to=j2000)
    np.testing.assert_allclose(ra_q, ra_p, atol=1e-9)
    # without the motions the fast movers are lost: they were not ignored above
    assert (match(SkyCoord(ra * u.deg, dec * u.deg), old, 0.01).idx2[4:8] == -1).all()


def test_skycoord_proper_motions_are_never_dropped_silently(rng):
    import warnings

    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    ra, dec, pmra, pmdec = pm_sample(rng, 50)
    pm = dict(pm_ra_cosdec=pmra * u.mas / u.yr, pm_dec=pmdec * u.mas / u.yr)
    moving = SkyCoord(ra * u.deg, dec * u.deg, **pm)
    still = SkyCoord(ra * u.deg, dec * u.deg)
    with pytest.raises(ValueError, match="coord1 carries proper motions, which need both"):
        match(moving, still, 1.0)  # no epochs
    with pytest.raises(ValueError, match="coord1 carries proper motions, which need both"):
        match(moving, still, 1.0, epoch1=2016.0)
    with pytest.raises(ValueError, match="coord carries proper motions, which need both"):
        Index(still, epoch=2000.0).query(moving, 1.0)
    with pytest.raises(ValueError, match="give them once"):
        match(moving, still, 1.0, pmra1=pmra, pmdec1=pmdec, epoch1=2016.0, epoch2=2000.0)
    dated = SkyCoord(ra * u.deg, dec * u.deg, obstime=Time(2016.0, format="jyear"), **pm)
    with pytest.raises(ValueError, match="epoch1 and coord1.obstime disagree"):
        match(dated, still, 1.0, epoch1=2015.5, epoch2=2000.0)
    with pytest.raises(ValueError, match="coord carries no proper motions"):
        propagate(still, 2000.0)
    # catalogue 2's motions are not applied: a warning when they would have mattered
    with pytest.warns(UserWarning, match="coord2 carries proper motions, which are not applied"):
        match(still, dated, 1.0, epoch1=2000.0)
    with pytest.warns(UserWarning, match="coord carries proper motions, which are not applied"):
        Index(dated).query(ra, dec, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        match(still, dated, 1.0, epoch1=2016.0)  # same epoch: nothing lost
        match(dated, dated, 1.0)  # catalogue 1 moves to catalogue 2's epoch


def test_astropy_is_imported_only_when_an_astropy_object_is_given(tmp_path):
    import subprocess
    import sys

    code = """
import sys
sys.modules["astropy"] = None  # any import of astropy fails
import numpy as np
import pyarrow as pa, pyarrow.parquet as pq
from lamfast import cli
from lamfast.xmatch import Index, match, match_reference, propagate
rng = np.random.default_rng(11)
ra, dec = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
m = match(ra, dec, ra + 1e-5, dec, 1.0, pmra1=np.zeros(50), pmdec1=np.zeros(50),
          epoch1=2016.0, epoch2=2000.0)
assert (m.idx2 == np.arange(50)).all()
match_reference(ra, dec, ra, dec, 1.0)
Index(ra, dec).query(ra, dec, 1.0)
propagate(ra, dec, np.zeros(50), np.zeros(50), 2016.0, 2000.0)
pq.write_table(pa.table({"ra": ra, "dec": dec, "source_id": np.arange(50)}), sys.argv[1])
assert cli.main(["xmatch", sys.argv[1], sys.argv[1], "--radius", "1", "--out", sys.argv[2]]) == 0
assert "astropy.units" not in sys.modules
"""
    from conftest import same_lamfast

    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.parquet"),
                             str(tmp_path / "p.parquet")], capture_output=True, text=True,
                            **same_lamfast(tmp_path))  # the lamfast under test, not the checkout's
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------
# command line: ids and units


def test_cli_writes_ids_and_the_separation_unit(tmp_path, rng, capsys):
    import json

    import astropy.units as u
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table, meta

    ra1, dec1, ra2, dec2 = offset_pairs(rng, 200, 0.36)
    ra2[:15] += 0.01  # no counterpart within 1"
    gaia_ids = rng.integers(2**58, 2**62, 200)  # past 2**53: must not go through float64
    apogee_ids = np.array([f"2M{i:08d}+{j:07d}" for i, j in
                           zip(rng.integers(0, 10**8, 200), rng.integers(0, 10**7, 200))])
    pq.write_table(pa.table({"ra": ra1, "dec": dec1, "source_id": gaia_ids}),
                   tmp_path / "gaia.parquet")
    t2 = Table({"RA": np.radians(ra2) * u.rad, "DEC": np.radians(dec2) * u.rad,
                "APOGEE_ID": apogee_ids})
    t2.write(tmp_path / "apogee.fits")
    out = tmp_path / "pairs.parquet"
    assert cli.main(["xmatch", str(tmp_path / "gaia.parquet"), str(tmp_path / "apogee.fits"),
                     "--radius", "1", "--ra2", "RA", "--dec2", "DEC", "--id2", "APOGEE_ID",
                     "--out", str(out)]) == 0
    assert "id1 = source_id, id2 = APOGEE_ID" in capsys.readouterr().out
    want = match(ra1, dec1, ra2, dec2, 1.0)  # RA, DEC in radians were converted
    assert (want.idx2 >= 0).sum() == 185
    table = pq.read_table(out)
    assert table.column_names == ["idx1", "idx2", "sep_arcsec", "id1", "id2"]
    np.testing.assert_array_equal(table["idx2"].to_numpy(), want.idx2)
    np.testing.assert_allclose(table["sep_arcsec"].to_numpy(), want.sep_arcsec, atol=1e-9)
    assert table["id1"].type == pa.int64()
    np.testing.assert_array_equal(table["id1"].to_numpy(), gaia_ids)
    found = want.idx2 >= 0
    id2 = np.array(table["id2"].to_pylist(), dtype=object)
    np.testing.assert_array_equal(id2[found], apogee_ids[want.idx2[found]])
    assert all(v is None for v in id2[~found])  # null where nothing matched
    # the unit, where readers look for it
    field = table.schema.field("sep_arcsec")
    assert field.metadata[b"unit"] == b"arcsec"
    header = meta.get_header_from_yaml(
        table.schema.metadata[b"table_meta_yaml"].decode().split("\n"))
    units = {c["name"]: c.get("unit") for c in header["datatype"]}
    assert units == {"idx1": None, "idx2": None, "sep_arcsec": "arcsec", "id1": None,
                     "id2": None}
    assert json.loads(json.dumps(header["datatype"]))  # plain data
    try:
        import pandas  # noqa: F401  (astropy's Parquet reader needs it)
    except ImportError:
        pass
    else:
        back = Table.read(out)
        assert back["sep_arcsec"].unit == u.arcsec
    # FITS and ECSV output carry the unit too; ids masked where nothing matched
    for name in ("pairs.fits", "pairs.ecsv"):
        assert cli.main(["xmatch", str(tmp_path / "gaia.parquet"),
                         str(tmp_path / "apogee.fits"), "--radius", "1", "--ra2", "RA",
                         "--dec2", "DEC", "--id2", "APOGEE_ID",
                         "--out", str(tmp_path / name)]) == 0
        back = Table.read(tmp_path / name)
        assert back["sep_arcsec"].unit == u.arcsec
        np.testing.assert_array_equal(back["id1"], gaia_ids)
        assert back["id1"].dtype.kind == "i"
        id2 = np.ma.getmaskarray(back["id2"])
        np.testing.assert_array_equal(id2, ~found)
        np.testing.assert_array_equal(np.asarray(back["id2"], dtype=str)[found],
                                      apogee_ids[want.idx2[found]])


def test_cli_ids_default_to_source_id(tmp_path, rng):
    import pyarrow.parquet as pq
    from astropy.table import Table

    ra1, dec1, ra2, dec2 = offset_pairs(rng, 120, 0.5)
    ids1, ids2 = rng.permutation(10**6)[:120], rng.permutation(10**6)[:120]
    Table({"ra": ra1, "dec": dec1, "SOURCE_ID": ids1}).write(tmp_path / "a.ecsv")
    Table({"ra": ra2, "dec": dec2, "source_id": ids2, "name": ids2.astype(str)}).write(
        tmp_path / "b.fits")
    Table({"ra": ra2, "dec": dec2}).write(tmp_path / "c.csv")
    out = tmp_path / "p.parquet"
    assert cli.main(["xmatch", str(tmp_path / "a.ecsv"), str(tmp_path / "b.fits"),
                     "--radius", "1", "--mode", "best", "--out", str(out)]) == 0
    table = pq.read_table(out)
    want = match(ra1, dec1, ra2, dec2, 1.0, mode="best")
    np.testing.assert_array_equal(table["id1"].to_numpy(), ids1[want.idx1])
    np.testing.assert_array_equal(table["id2"].to_numpy(), ids2[want.idx2])
    assert table.schema.field("id1").metadata[b"description"] == b"SOURCE_ID of a.ecsv"
    # no source_id: only row indices for that side
    assert cli.main(["xmatch", str(tmp_path / "a.ecsv"), str(tmp_path / "c.csv"),
                     "--radius", "1", "--out", str(out)]) == 0
    assert pq.read_table(out).column_names == ["idx1", "idx2", "sep_arcsec", "id1"]
    # an explicit id column must exist
    assert cli.main(["xmatch", str(tmp_path / "a.ecsv"), str(tmp_path / "c.csv"),
                     "--radius", "1", "--id2", "name", "--out", str(out)]) == 2


def test_cli_refuses_a_position_column_that_is_not_an_angle(tmp_path, rng, capsys):
    import astropy.units as u
    from astropy.table import Table

    ra, dec = random_sky(rng, 20)
    Table({"ra": ra * u.deg, "dec": dec * u.m}).write(tmp_path / "a.ecsv")
    assert cli.main(["xmatch", str(tmp_path / "a.ecsv"), str(tmp_path / "a.ecsv"),
                     "--radius", "1", "--out", str(tmp_path / "p.csv")]) == 2
    assert "a.ecsv: column 'dec' has unit 'm', which is not an angle unit" in (
        capsys.readouterr().err)
