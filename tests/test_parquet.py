import numpy as np
import pytest

from lamfast.io import Catalog, read_parquet, write_parquet


def random_catalog(rng, n, columns):
    values = rng.normal(size=(n, len(columns))).astype(np.float32)
    errors = rng.uniform(0, 1, size=values.shape).astype(np.float32)
    values[rng.random(values.shape) < 0.2] = np.nan
    errors[rng.random(values.shape) < 0.1] = np.nan
    extra = {"phot_g_mean_mag": rng.uniform(5, 20, n), "ruwe": rng.uniform(0.8, 2, n).astype(np.float32),
             "apogee_id": np.array([f"2M{i:08d}" for i in range(n)]),
             "tag": np.array([b"x%d" % i for i in range(n)]), "label_blanked": rng.random(n) < 0.5,
             "bp_n_relevant_bases": rng.integers(-1, 56, n).astype(np.int32)}
    meta = {"path": "somewhere.csv", "units": {"teff": "K"}, "bits": [19, 23]}
    return Catalog(columns, values, errors, rng.integers(0, 2**62, n, dtype=np.int64), meta, extra)


def assert_same_catalog(a, b):
    assert a.columns == b.columns
    assert np.array_equal(a.values, b.values, equal_nan=True) and b.values.dtype == np.float32
    assert np.array_equal(a.errors, b.errors, equal_nan=True)
    assert np.array_equal(a.source_id, b.source_id) and b.source_id.dtype == np.int64
    assert a.meta == b.meta
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        assert b.extra[k].dtype == np.asarray(a.extra[k]).dtype, k
        assert np.array_equal(a.extra[k], b.extra[k], equal_nan=a.extra[k].dtype.kind == "f"), k


XP = [f"bp{i}" for i in range(55)] + [f"rp{i}" for i in range(55)]


@pytest.mark.parametrize("layout", ["lists", "columns"])
@pytest.mark.parametrize("n", [1, 23])
@pytest.mark.parametrize("columns", [XP + ["bprp", "jh", "jk", "teff"],
                                     ["teff", "bp0", "bp1", "bp2", "logg"],  # short XP run
                                     ["rp0", "rp2", "m_h"]])                   # not a run
def test_round_trip_exact(rng, tmp_path, layout, n, columns):
    cat = random_catalog(rng, n, columns)
    write_parquet(cat, tmp_path / "c.parquet", layout=layout, row_group_size=7)
    back = read_parquet(tmp_path / "c.parquet")
    assert_same_catalog(cat, back)



def test_read_row_groups(rng, tmp_path):
    cat = random_catalog(rng, 23, XP + ["jh", "teff"])
    write_parquet(cat, tmp_path / "c.parquet", row_group_size=7)   # groups of 7, 7, 7, 2 rows
    assert_same_catalog(cat.rows(slice(7, 21)), read_parquet(tmp_path / "c.parquet", row_groups=[1, 2]))
    assert_same_catalog(cat.rows(slice(21, 23)), read_parquet(tmp_path / "c.parquet", row_groups=[3]))
    assert len(read_parquet(tmp_path / "c.parquet", row_groups=[])) == 0
    with pytest.raises(ValueError, match="row group 4 outside 0..3"):
        read_parquet(tmp_path / "c.parquet", row_groups=[4])

def test_list_columns_in_file(rng, tmp_path):
    import pyarrow.parquet as pq

    cat = random_catalog(rng, 5, XP + ["teff"])
    write_parquet(cat, tmp_path / "c.parquet")
    schema = pq.read_schema(tmp_path / "c.parquet")
    import pyarrow as pa

    typ = schema.field("bp_coefficients").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 55
    assert typ.value_type == pa.float32()
    assert "rp_coefficient_errors" in schema.names and "teff_err" in schema.names
    assert "bp0" not in schema.names
    sub = read_parquet(tmp_path / "c.parquet", columns=["teff", "rp3"])
    assert sub.columns == ["teff", "rp3"]
    assert np.array_equal(sub.values, cat.select(["teff", "rp3"]).values, equal_nan=True)
    with pytest.raises(ValueError, match="no token column"):
        read_parquet(tmp_path / "c.parquet", columns=["logg"])


def test_foreign_file(rng, tmp_path):
    """A file written without lamfast (its gnorm units declared): variable lists,
    token-named scalars, other columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 4
    coef = rng.normal(size=(n, 3)).astype(np.float32)
    t = pa.table({"source_id": pa.array(np.arange(n), pa.int64()),
                  "bp_coefficients": pa.array(list(coef)),
                  "teff": rng.uniform(4000, 6000, n), "teff_err": rng.uniform(10, 50, n),
                  "ra": rng.uniform(0, 360, n)})
    pq.write_table(t.replace_schema_metadata({b"lamfast.xp_units": b"gnorm"}), tmp_path / "f.parquet")
    cat = read_parquet(tmp_path / "f.parquet")
    assert cat.columns == ["bp0", "bp1", "bp2", "teff"]
    assert np.array_equal(cat.values[:, :3], coef)
    assert np.isnan(cat.errors[:, :3]).all()
    assert list(cat.extra) == ["ra"]
    ragged = pa.table({"source_id": pa.array([1, 2, 3], pa.int64()),
                       "rp_coefficients": pa.array([[1.0, 2.0], [], [3.0]])})  # [] = missing band
    pq.write_table(ragged, tmp_path / "r.parquet")
    with pytest.raises(ValueError, match=r"r.parquet: row 2, column 'rp_coefficients': 1 values"):
        read_parquet(tmp_path / "r.parquet")
    pq.write_table(pa.table({"teff": [1.0]}), tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="no 'source_id'"):
        read_parquet(tmp_path / "n.parquet")


def test_write_errors(rng, tmp_path):
    cat = random_catalog(rng, 3, ["teff"])
    bad = Catalog(cat.columns, cat.values, cat.errors, cat.source_id, {"f": object()}, {})
    with pytest.raises(ValueError, match="JSON"):
        write_parquet(bad, tmp_path / "x.parquet")
    clash = Catalog(cat.columns, cat.values, cat.errors, cat.source_id, {}, {"teff_err": np.ones(3)})
    with pytest.raises(ValueError, match="collides"):
        write_parquet(clash, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="layout"):
        write_parquet(cat, tmp_path / "x.parquet", layout="wide")
    empty = random_catalog(rng, 0, ["teff", "bp0"])
    write_parquet(empty, tmp_path / "e.parquet")
    assert_same_catalog(empty, read_parquet(tmp_path / "e.parquet"))


def test_non_numeric_cell_names_file_column_and_row(rng, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    teff = [str(4000 + i) for i in range(12)]
    teff[9] = "x"
    bp = [[1.0, 2.0]] * 12
    table = pa.table({"source_id": pa.array(range(12), pa.int64()), "teff": teff, "logg": [1.5] * 12,
                      "bp_coefficients": pa.array(bp, pa.list_(pa.float32(), 2))}
                     ).replace_schema_metadata({b"lamfast.xp_units": b"gnorm"})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=4)
    with pytest.raises(ValueError, match=r"c.parquet: row 9, column 'teff': 'x' is not a number"):
        read_parquet(tmp_path / "c.parquet")
    with pytest.raises(ValueError, match=r"c.parquet: row 9, column 'teff': 'x' is not a number"):
        read_parquet(tmp_path / "c.parquet", row_groups=[0, 2])       # rows of the file, not of the read
    ok = read_parquet(tmp_path / "c.parquet", row_groups=[1])
    np.testing.assert_array_equal(ok.column("teff"), [4004, 4005, 4006, 4007])  # numbers as text still read
    bad = [["1", "2"]] * 12
    bad[6] = ["3", "?"]
    pq.write_table(table.set_column(3, "bp_coefficients", pa.array(bad, pa.list_(pa.string(), 2)))
                   .set_column(1, "teff", pa.array([1.0] * 12)), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match=r"d.parquet: row 6, column 'bp_coefficients': '\?' is not a number"):
        read_parquet(tmp_path / "d.parquet")


def test_default_xp_units_for_files_that_declare_none(rng, tmp_path):
    """default_xp_units (a HATS catalogue's lamfast_xp_units): the units of a file with neither
    lamfast.xp_units nor the lamfast key; a file's own declaration wins; the scale still checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lamfast.io.parquet import check_parquet_xp_units
    from lamfast.io.photometry import g_flux

    n, k = 37, 13
    gnorm = (rng.normal(size=(n, 2 * k)) * 0.01).astype(np.float32)
    gnorm[:, [0, k]] = rng.uniform(0.01, 0.3, (n, 2))                 # bp0, rp0 on the gnorm scale
    g = rng.uniform(9, 19, n)

    def bare(name, coefficients, metadata=None):
        table = pa.table({"source_id": pa.array(rng.permutation(n), pa.int64()),
                          "bp_coefficients": pa.array(list(coefficients[:, :k])),
                          "rp_coefficients": pa.array(list(coefficients[:, k:])), "phot_g_mean_mag": g})
        pq.write_table(table.replace_schema_metadata(metadata), tmp_path / name, row_group_size=10)
        return tmp_path / name

    def xp(cat):
        return cat.values[:, [cat.columns.index(f"{b}{i}") for b in ("bp", "rp") for i in range(k)]]

    plain = bare("plain.parquet", gnorm)
    flux = bare("flux.parquet", gnorm * g_flux(g)[:, None])
    cat = read_parquet(plain, default_xp_units="gnorm")
    assert np.array_equal(xp(cat), gnorm) and "xp_units_in_file" not in cat.meta
    assert np.array_equal(xp(read_parquet(plain, row_groups=[3, 1], default_xp_units="gnorm")),
                          gnorm[np.r_[30:37, 10:20]])
    assert check_parquet_xp_units(plain, default_xp_units="gnorm") == "gnorm"
    assert check_parquet_xp_units(plain) == "flux"                       # none given: the archive's e-/s
    with pytest.raises(ValueError, match=r"plain\.parquet: column 'bp_coefficients': the median \|bp0\|"):
        read_parquet(plain)
    for default in ("flux", None):                                        # e-/s, gnormed with the file's G
        cat = read_parquet(flux, default_xp_units=default)
        assert np.allclose(xp(cat), gnorm, rtol=1e-6, atol=0) and cat.meta["xp_units_in_file"] == "flux"
    with pytest.raises(ValueError, match=r"flux\.parquet: .*'gnorm' was given for such files \(default_xp_units"):
        read_parquet(flux, default_xp_units="gnorm")
    # the file's own declaration wins, whatever the default: lamfast.xp_units, or an earlier lamfast's key
    keyed = bare("keyed.parquet", gnorm * g_flux(g)[:, None], {b"lamfast.xp_units": b"flux"})
    earlier = bare("earlier.parquet", gnorm, {b"lamfast": b"{}"})
    assert np.allclose(xp(read_parquet(keyed, default_xp_units="gnorm")), gnorm, rtol=1e-6, atol=0)
    assert np.array_equal(xp(read_parquet(earlier, default_xp_units="flux")), gnorm)
    assert check_parquet_xp_units(keyed, default_xp_units="gnorm") == "flux"
    with pytest.raises(ValueError, match=r"plain\.parquet: default_xp_units: XP units 'jansky' unknown"):
        read_parquet(plain, default_xp_units="jansky")
