"""lamfast data convert: archive XP files -> the gnorm Parquet labelling reads; labels
identical to labelling the archive files with --photometry; resume by input size+mtime."""

import os
import warnings

import numpy as np
import pytest
from _label_data import assert_same_labels
from test_photometry_join import _photometry_of, _real_xp

import lamfast
import lamfast.cli
from lamfast.data.convert import convert, output_path
from lamfast.io import read_parquet
from lamfast.io.photometry_join import PhotometryJoin, read_xp_joined
from lamfast.label import read_output

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_converted_parquet_labels_as_the_archive_files(realdata, model_dir, rng, tmp_path):
    xp = _real_xp(realdata)
    files, ids = _photometry_of(realdata, rng, tmp_path)
    s = convert(xp, tmp_path / "pq", photometry=files, threads=2, progress=False)
    outs = [output_path(p, tmp_path / "pq") for p in xp]
    assert s.converted == outs and s.skipped == [] and s.stars == len(ids)
    for path, out in zip(xp, outs):   # the Catalog labelling reads, bit for bit
        want, _ = read_xp_joined(path, PhotometryJoin(files))
        got = read_parquet(out)
        assert got.columns == want.columns and np.array_equal(got.source_id, want.source_id)
        assert np.array_equal(got.values, want.values, equal_nan=True)
        assert np.array_equal(got.errors, want.errors, equal_nan=True)
        assert list(got.extra) == ["phot_g_mean_mag"]
        assert np.array_equal(got.extra["phot_g_mean_mag"], want.extra["phot_g_mean_mag"], equal_nan=True)
    kw = dict(model=model_dir, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
        lamfast.label(xp, photometry=files, output=tmp_path / "archive.parquet", **kw)
        lamfast.label(outs, output=tmp_path / "converted.parquet", **kw)
    want, _ = read_output(tmp_path / "archive.parquet")
    got, _ = read_output(tmp_path / "converted.parquet")
    assert np.array_equal(got["source_id"], ids) and np.array_equal(want["source_id"], ids)
    assert_same_labels(got, want)
    assert np.array_equal(got["no_input"], want["no_input"]) and np.isfinite(got["teff"][[0, 2]]).all()


def test_rerun_skips_touched_input_reconverts(realdata, rng, tmp_path, capsys):
    xp = _real_xp(realdata)
    files, _ = _photometry_of(realdata, rng, tmp_path)
    out = tmp_path / "pq"
    convert(xp, out, photometry=files, progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = convert(xp, out, photometry=files, progress=False)
    assert again.converted == [] and len(again.skipped) == 3 and again.stars == 0
    touched = tmp_path / xp[1].name
    touched.write_bytes(xp[1].read_bytes())   # a copy: the input's path and mtime change
    inputs = [xp[0], touched, xp[2]]
    s = convert(inputs, out, photometry=files, progress=False)
    assert s.converted == [output_path(touched, out)] and len(s.skipped) == 2
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # touched: converted again
    assert convert(inputs, out, photometry=files, progress=False).converted == [output_path(touched, out)]
    assert [p.name for p in convert(inputs, out, photometry=files[:1], progress=False).converted] == \
        [output_path(p, out).name for p in inputs]   # another photometry set: all again
    assert len(convert(inputs, out, photometry=files[:1], overwrite=True, progress=False).converted) == 3
    unchanged = output_path(xp[0], out)
    assert unchanged.stat().st_mtime_ns != mtimes[unchanged]   # rewritten by the last two calls
    assert sorted(p.name for p in out.iterdir()) == sorted(output_path(p, out).name for p in xp)   # no temporaries
    assert lamfast.cli.main(["data", "convert", *map(str, inputs), "--photometry", *map(str, files[:1]),
                             "--out", str(out), "--no-progress"]) == 0
    assert "converted 0 file(s)" in capsys.readouterr().out


def test_bad_inputs_name_the_file(realdata, rng, tmp_path, capsys):
    xp = _real_xp(realdata)
    files, _ = _photometry_of(realdata, rng, tmp_path)
    lines = xp[0].read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines[:2]) + lines[2].replace("(", "(x", 1))
    with pytest.raises(ValueError, match=r"bad\.csv"):
        convert([xp[0], bad], tmp_path / "pq", photometry=files, threads=1, progress=False)
    assert not (tmp_path / "pq" / "bad.parquet").exists()
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        convert([tmp_path / "nope.csv"], tmp_path / "pq", progress=False)
    with pytest.raises(ValueError, match=r"would both be written to .*XP_CONTINUOUS_RAW\.parquet"):
        convert([xp[0], realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.ecsv"], tmp_path / "pq", progress=False)
    with pytest.raises(ValueError, match=r"XP_CONTINUOUS_RAW\.csv.*phot_g_mean_mag"):   # no G anywhere
        convert(xp[:1], tmp_path / "noG", progress=False)
    assert lamfast.cli.main(["data", "convert", str(bad), "--out", str(tmp_path / "pq"), "--no-progress"]) == 2
    assert "bad.csv" in capsys.readouterr().err
