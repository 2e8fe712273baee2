"""Lazy photometry files of lamfast.io.photometry_join: files that declare their source_id
range (archive-style HEALPix names, Parquet statistics) are read only for the lookups that
need them, cached within a byte budget, and join exactly as the resident (eager) join."""

import re
import threading
import warnings

import numpy as np
import pytest
from test_photometry_join import GAIA, GAIA_COLS, TMASS, _table, _write

from lamfast.io.photometry_file import (
    LEVEL8_SHIFT,
    declared_range,
    open_photometry_file,
)
from lamfast.io.photometry_join import PhotometryJoin

PIXELS = 12 * 4**8      # HEALPix level 8


def _stars(rng, n, pixels=(0, PIXELS)):
    """n distinct source_ids in level-8 pixels pixels[0]..pixels[1]-1, shuffled."""
    pix = rng.integers(*pixels, n)
    ids = (pix << LEVEL8_SHIFT) + rng.integers(0, 1 << LEVEL8_SHIFT, n)
    return np.unique(ids)[rng.permutation(len(np.unique(ids)))]


def _split(ids, k, rng=None):
    """Up to k contiguous level-8 pixel ranges (first, last) covering every pixel, cut at
    random stars of ``ids`` (rng) or at every len/k-th star (about as many stars each)."""
    pix = np.sort(ids >> LEVEL8_SHIFT)
    cuts = (np.arange(1, k) * len(pix) // k if rng is None
            else np.sort(rng.choice(np.arange(1, len(pix)), k - 1, replace=False)))
    edges = [0, *(int(pix[c]) for c in cuts), PIXELS]
    return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _name(prefix, first, last, suffix):
    return f"{prefix}_{first:06d}-{last:06d}{suffix}"


def _files_by_range(t, ranges, folder, prefix, suffixes):
    """The rows of table ``t`` in each pixel range, one archive-named file each (formats cycling)."""
    pix = np.asarray(t["source_id"]) >> LEVEL8_SHIFT
    paths = []
    for k, (a, b) in enumerate(ranges):
        rows = t[(pix >= a) & (pix <= b)]
        paths.append(_write(rows, folder / _name(prefix, a, b, suffixes[k % len(suffixes)])))
    return paths


def test_declared_ranges(rng, tmp_path):
    """Pixels A..B of the name are source_ids A << 43 .. ((B + 1) << 43) - 1; Parquet by its
    statistics (or its source_id column without them); other names and VOTable declare none."""
    t = _table(rng, [5 << LEVEL8_SHIFT, (7 << LEVEL8_SHIFT) - 1])
    for suffix in (".csv.gz", ".fits", ".ecsv"):
        path = _write(t, tmp_path / _name("GaiaSource", 5, 6, suffix))
        assert declared_range(open_photometry_file(path))[:2] == (5 << 43, (7 << 43) - 1)
    assert declared_range(open_photometry_file(_write(t, tmp_path / "gaia.csv"))) is None
    assert declared_range(open_photometry_file(_write(t, tmp_path / _name("g", 5, 6, ".xml")))) is None
    assert declared_range(open_photometry_file(_write(t, tmp_path / "g_000009-000008.csv"))) is None   # not a range
    import pyarrow.parquet as pq

    ids = rng.integers(1, 2**62, 37)
    whole = pq.read_table(_write(_table(rng, ids), tmp_path / "one.parquet"))
    pq.write_table(whole, tmp_path / "s.parquet", row_group_size=10)   # four row groups
    pq.write_table(whole, tmp_path / "n.parquet", write_statistics=False)
    for name, how in (("s.parquet", "statistics"), ("n.parquet", "column")):
        lo, hi, what = declared_range(open_photometry_file(tmp_path / name))
        assert (lo, hi) == (ids.min(), ids.max()) and how in what


def test_split_files_join_as_one_resident_file(rng, tmp_path):
    """Gaia photometry in archive-named CSV.gz/FITS/ECSV files and 2MASS in Parquet files of
    other ranges, XP units of any ids: every lookup equals the eager join of all rows."""
    ids = _stars(rng, 3001)
    t = _table(rng, ids)
    gaia = _files_by_range(t[GAIA_COLS], _split(ids, 7, rng), tmp_path, "GaiaSource", [".csv.gz", ".fits", ".ecsv"])
    tm = t[["source_id", *TMASS]][rng.random(len(t)) < 0.6]
    tmass = _files_by_range(tm, _split(ids, 5, rng), tmp_path, "tmass", [".parquet"])
    lazy = PhotometryJoin(gaia + tmass, cache_bytes=100_000)   # a few files
    nf = len(gaia + tmass)
    assert not lazy.groups and len(lazy.lazy) == nf and sum(lazy.reads) == 0 and len(lazy) == 0
    eager = PhotometryJoin([_write(t[GAIA_COLS], tmp_path / "all_gaia.csv"), _write(tm, tmp_path / "all_tmass.fits")])
    assert lazy.columns == eager.columns == sorted(GAIA + TMASS)
    file_ids = [open_photometry_file(p).read_used()[0] for p in gaia + tmass]
    unknown = _stars(rng, 50)
    xp = np.concatenate([ids, unknown, ids[:20]])[rng.permutation(len(ids) + 70)]
    xp = xp[np.argsort(xp >> LEVEL8_SHIFT, kind="stable")]   # units in HEALPix order, as the archive's
    for a in range(0, len(xp), 333):
        unit = xp[a:a + 333]
        got, joined = lazy.lookup(unit)
        want, want_joined = eager.lookup(unit)
        assert set(got) == set(want)
        for c in want:
            assert np.array_equal(got[c], want[c], equal_nan=True), c
        assert joined[:len(gaia)].sum() == want_joined[0] and joined[len(gaia):].sum() == want_joined[1]
        assert joined.tolist() == [np.isin(unit, f).sum() for f in file_ids]   # each file gave its stars
    assert lazy.reads == [1] * nf   # HEALPix order: each file read once
    empty, joined = lazy.lookup(np.zeros(0, np.int64))
    assert set(empty) == set(lazy.columns) and not joined.any()


def test_only_the_files_of_the_asked_range_are_read(rng, tmp_path):
    ids = _stars(rng, 400)
    t = _table(rng, ids)
    ranges = _split(ids, 6, rng)
    files = _files_by_range(t[GAIA_COLS], ranges, tmp_path, "GaiaSource", [".csv.gz"])
    join = PhotometryJoin(files)
    pix = ids >> LEVEL8_SHIFT
    a, b = ranges[3]
    inside = ids[(pix >= a) & (pix <= b)][:9]
    cols, joined = join.lookup(inside)
    assert join.reads == [0, 0, 0, 1, 0, 0] and np.isfinite(cols["phot_g_mean_mag"]).all()
    assert joined.tolist() == [0, 0, 0, len(inside), 0, 0]
    # a star of no file, inside file 1's range: file 1 is read, the star is NaN
    ghost = [s for s in (ranges[1][0] << LEVEL8_SHIFT) + np.arange(3) if s not in ids][:1]
    cols, joined = join.lookup(np.concatenate([ghost, inside[:2]]))
    assert join.reads == [0, 1, 0, 1, 0, 0] and np.isnan(cols["bp_rp"][0]) and joined.tolist() == [0, 0, 0, 2, 0, 0]


def test_lru_budget_evicts_and_big_files_stay(rng, tmp_path):
    ids = _stars(rng, 900)
    t = _table(rng, ids)
    ranges = _split(ids, 3)   # ~300 stars each
    files = _files_by_range(t[GAIA_COLS], ranges, tmp_path, "GaiaSource", [".parquet"])
    pix = ids >> LEVEL8_SHIFT
    one = [ids[(pix >= a) & (pix <= b)][:3] for a, b in ranges]   # 3 stars of each file
    sizes = [int(((pix >= a) & (pix <= b)).sum()) for a, b in ranges]
    assert len(ranges) == 3 and 2 * min(sizes) > max(sizes) + 1
    per_star = 8 + 4 * 5 + 8   # source_id, five float32 columns, parallax float64
    roomy = PhotometryJoin(files)
    tight = PhotometryJoin(files, cache_bytes=max(n * per_star for n in sizes) + 1)   # one file
    for j in (0, 1, 0, 2, 0):
        roomy.lookup(one[j])
        tight.lookup(one[j])
    assert roomy.reads == [1, 1, 1] and len(roomy) == len(ids)
    assert tight.reads == [3, 1, 1] and len(tight) == sizes[0]   # evicted by 1, by 2; holds file 0
    both = tight.lookup(np.concatenate([one[1], one[2]]))[1]     # one lookup's files are all kept
    assert tight.reads == [3, 2, 2] and both.tolist() == [0, 3, 3] and len(tight) == sizes[1] + sizes[2]
    kept = PhotometryJoin(files, cache_bytes=0)   # bigger than the budget: kept once read
    for j in (0, 1, 0, 1):
        kept.lookup(one[j])
    assert kept.reads == [1, 1, 0] and len(kept) == sizes[0] + sizes[1]
    got, _ = kept.lookup(np.concatenate(one))
    want, _ = PhotometryJoin([_write(t[GAIA_COLS], tmp_path / "all.csv")]).lookup(np.concatenate(one))
    assert all(np.array_equal(got[c], want[c]) for c in want) and kept.reads == [1, 1, 1]


def test_overlapping_ranges_catch_conflicting_duplicates(rng, tmp_path):
    ids = _stars(rng, 60, (100, 140))
    t = _table(rng, ids)
    pix = ids >> LEVEL8_SHIFT
    a = _write(t[GAIA_COLS][pix < 125], tmp_path / _name("GaiaSource", 100, 124, ".csv.gz"))
    shared = ids[(pix >= 115) & (pix < 125)][:2]
    b_rows = t[GAIA_COLS][np.isin(ids, shared) | (pix >= 125)]   # shares two stars of a's range
    b = _write(b_rows, tmp_path / "b.parquet")                     # statistics: 115..139 or so
    join = PhotometryJoin([a, b])
    same, joined = join.lookup(shared)   # the same values in both files: fine, counted by each
    assert joined.tolist() == [2, 2] and np.isfinite(same["phot_g_mean_mag"]).all()
    b_rows["phot_g_mean_mag"][np.isin(b_rows["source_id"], shared[1])] += 0.5
    join = PhotometryJoin([a, _write(b_rows, tmp_path / "b2.parquet")])
    join.lookup(shared[:1])
    with pytest.raises(ValueError, match=rf"source_id {shared[1]} has phot_g_mean_mag .* in another "
                                         r"\(.*GaiaSource_000100-000124\.csv\.gz, .*b2\.parquet\)"):
        join.lookup(np.concatenate([ids[pix >= 125][:3], shared]))
    twice = t[GAIA_COLS][[0, 1, 1]]
    twice["bp_rp"][2] += 1
    path = _write(twice, tmp_path / _name("GaiaSource", 0, PIXELS - 1, ".ecsv"))
    join = PhotometryJoin([path])   # within one lazy file: when it is read
    with pytest.raises(ValueError, match=rf"GaiaSource_000000-786431\.ecsv: source_id {ids[1]} is given "
                                         "twice with different bp_rp"):
        join.lookup(ids[:1])


def test_a_sorted_parquet_file_is_read_by_parts(rng, tmp_path, monkeypatch):
    """One Parquet file sorted by source_id (row groups of 50 rows): its runs of row groups
    are read alone, by the lookups that need them; an unsorted file is one part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lamfast.io import photometry_file

    monkeypatch.setattr(photometry_file, "PARQUET_CHUNK_ROWS", 120)   # 3 row groups a part
    ids = np.sort(_stars(rng, 997))
    t = _table(rng, ids)[GAIA_COLS]
    table = pq.read_table(_write(t, tmp_path / "one.parquet"))
    pq.write_table(table, tmp_path / "sorted.parquet", row_group_size=50)   # 20 row groups
    join = PhotometryJoin([tmp_path / "sorted.parquet"])
    assert [f.row_groups for f in join.lazy] == [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(6)] + [[18, 19]]
    eager = PhotometryJoin([_write(t, tmp_path / "all.fits")])
    query = np.concatenate([ids[460:470], ids[470:480] + 1])   # rows 460-479: part 3 (rows 450-599)
    got, joined = join.lookup(query)
    want, _ = eager.lookup(query)
    assert all(np.array_equal(got[c], want[c], equal_nan=True) for c in want)
    assert join.reads == [1] and joined.tolist() == [10] and len(join) == 150
    got, _ = join.lookup(ids[::-1])
    assert all(np.array_equal(got[c], eager.lookup(ids[::-1])[0][c]) for c in want) and join.reads == [7]   # part 3 cached
    shuffled = table.take(rng.permutation(len(ids)))
    pq.write_table(shuffled, tmp_path / "unsorted.parquet", row_group_size=50)
    assert len(PhotometryJoin([tmp_path / "unsorted.parquet"]).lazy) == 1
    # errors name the row of the file; a star twice across a row-group boundary: one part
    sid = table.column("source_id").to_pylist()
    sid[777] = None
    pq.write_table(table.set_column(0, "source_id", pa.array(sid, pa.int64())), tmp_path / "null.parquet",
                   row_group_size=50)
    join = PhotometryJoin([tmp_path / "null.parquet"])
    join.lookup(ids[:5])
    with pytest.raises(ValueError, match=r"null\.parquet: row 777 \(data rows from 0\) has no source_id"):
        join.lookup(ids[776:777])
    twice = pa.concat_tables([table.slice(0, 50), table.slice(49, 1), table.slice(50)])
    g = twice.column("phot_g_mean_mag").to_pylist()
    g[50] += 1.0
    twice = twice.set_column(1, "phot_g_mean_mag", pa.array(g, pa.float32()))
    pq.write_table(twice, tmp_path / "twice.parquet", row_group_size=50)   # row 49 again at row 50
    join = PhotometryJoin([tmp_path / "twice.parquet"])
    assert len(join.lazy) == 1
    with pytest.raises(ValueError, match=rf"twice\.parquet: source_id {ids[49]} is given twice with different "
                                         "phot_g_mean_mag"):
        join.lookup(ids[:1])


def test_wrongly_named_file_is_an_error_not_missing_stars(rng, tmp_path):
    ids = _stars(rng, 30, (200, 260))
    stray = (260 << LEVEL8_SHIFT) + int(rng.integers(0, 1 << LEVEL8_SHIFT))   # just past the name's range
    ids = np.insert(ids, 5, stray)
    path = _write(_table(rng, ids)[GAIA_COLS], tmp_path / _name("GaiaSource", 200, 259, ".csv.gz"))
    join = PhotometryJoin([path])
    with pytest.raises(ValueError, match=rf"GaiaSource_000200-000259\.csv\.gz: row 5 \(data rows from 0\) "
                                         rf"has source_id {stray}, outside the range {200 << 43}\.\."
                                         rf"{(260 << 43) - 1} that its name \(HEALPix level-8 "
                                         r"pixels 000200-000259\) declares \(1 of these 31 rows"):
        join.lookup(ids[:1])
    assert join.lookup(np.array([stray]))[1].tolist() == [0]   # not in the range: the file is not read
    elsewhere = _table(rng, _stars(rng, 12, (300, 310)))[GAIA_COLS]   # all of its stars off its name
    for suffix in (".csv.gz", ".fits", ".ecsv"):   # its first row is checked at construction
        path = _write(elsewhere, tmp_path / _name("GaiaSource", 200, 259, suffix))
        with pytest.raises(ValueError, match=rf"GaiaSource_000200-000259{re.escape(suffix)}: row 0 "
                                             rf"\(data rows from 0\) has source_id {elsewhere['source_id'][0]}, "
                                             r"outside the range .* declares; its stars would be missed"):
            PhotometryJoin([path])


def test_lazy_files_fail_headers_at_construction_data_at_lookup(rng, tmp_path):
    t = _table(rng, [(7 << LEVEL8_SHIFT) + 3, (7 << LEVEL8_SHIFT) + 4])
    with pytest.raises(ValueError, match=r"GaiaSource_000007-000007\.csv: no 'source_id' column"):
        PhotometryJoin([_write(t[["phot_g_mean_mag", "bp_rp"]], tmp_path / _name("GaiaSource", 7, 7, ".csv"))])
    with pytest.raises(ValueError, match=r"tmass_000001-000002\.fits: none of the photometry columns"):
        PhotometryJoin([_write(t[["source_id", "parallax_error"]], tmp_path / _name("tmass", 1, 2, ".fits"))])
    bad = tmp_path / _name("GaiaSource", 7, 7, ".csv")
    bad.write_text(f"source_id,phot_g_mean_mag\n{(7 << 43) + 3},12\n{(7 << 43) + 4},bright\n")
    flux = _table(rng, [(9 << LEVEL8_SHIFT) + 1, (9 << LEVEL8_SHIFT) + 5])
    flux["phot_g_mean_mag"][0] = 3.4e4
    fluxed = _write(flux, tmp_path / "flux.parquet")   # its statistics: pixel 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        join = PhotometryJoin([bad, fluxed])   # no data read yet: no error, no warning
    with pytest.raises(ValueError, match=r"GaiaSource_000007-000007\.csv: row 1 .*'bright' is not a number"):
        join.lookup(np.array([(7 << 43) + 3]))
    with pytest.warns(RuntimeWarning, match=r"flux\.parquet: 1 of 2 values of phot_g_mean_mag"):
        join.lookup(np.asarray(flux["source_id"]))


def test_threads_share_one_join(rng, tmp_path):
    ids = _stars(rng, 2000)
    t = _table(rng, ids)
    files = _files_by_range(t[GAIA_COLS], _split(ids, 9, rng), tmp_path, "GaiaSource", [".parquet", ".csv"])
    join = PhotometryJoin(files, cache_bytes=30_000)   # ~3 of the 9 files
    by_pixel = ids[np.argsort(ids >> LEVEL8_SHIFT)]
    units = [by_pixel[a:a + 150] for a in rng.integers(0, len(ids) - 150, 24)]   # one or two files each
    want = PhotometryJoin([_write(t[GAIA_COLS], tmp_path / "all.fits")])
    got, errors = {}, []

    def work(k):
        try:
            for j in range(k, len(units), 4):
                got[j] = join.lookup(units[j])[0]
        except Exception as e:   # reported below: a thread's error must fail the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(got) == len(units)
    for j, unit in enumerate(units):
        w = want.lookup(unit)[0]
        assert all(np.array_equal(got[j][c], w[c], equal_nan=True) for c in w), j
    assert sum(join.reads) > 9   # files were evicted and read again


def test_label_with_archive_split_photometry_equals_one_file(realdata, model_dir, rng, tmp_path):
    """lamfast.label of the real XP files with their photometry split into archive-named
    CSV.gz (Gaia) and Parquet (2MASS) files of HEALPix ranges equals the same photometry
    as one resident file each."""
    from astropy.table import Table
    from test_photometry_join import _photometry_of, _real_xp

    import lamfast
    from lamfast.label import read_output

    files, ids = _photometry_of(realdata, rng, tmp_path)
    gaia, tmass = Table.read(files[0]), Table.read(files[1], format="ascii.csv")
    gaia_files = _files_by_range(gaia, _split(np.unique(ids), 3, rng), tmp_path, "GaiaSource", [".csv.gz"])
    split = gaia_files + _files_by_range(tmass, _split(np.unique(ids), 2, rng), tmp_path, "tmass", [".parquet"])
    kw = dict(model=model_dir, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        one = lamfast.label(_real_xp(realdata), photometry=files, output=tmp_path / "one.parquet", **kw)
        many = lamfast.label(_real_xp(realdata), photometry=split, output=tmp_path / "many.parquet", **kw)
    a, _ = read_output(tmp_path / "one.parquet")
    b, _ = read_output(tmp_path / "many.parquet")
    assert list(a) == list(b) and np.array_equal(b["source_id"], ids)
    for c in a:
        assert np.array_equal(a[c], b[c], equal_nan=True), c
    n_gaia = len(gaia_files)
    assert one.photometry_joined == [7, 3] and sum(many.photometry_joined[:n_gaia]) == 7
    assert sum(many.photometry_joined[n_gaia:]) == 3 and many.no_g == one.no_g == 3
