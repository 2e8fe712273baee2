"""lamfast.label: row order and coverage, shards + merge, resume after SIGKILL, flags, metadata, errors."""

import hashlib
import signal
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from _label_data import EMPTY_ROWS, REQUEST, save_tiny_model, synthetic_catalog, write_inputs
from conftest import same_lamfast

import lamfast
import lamfast.cli
from lamfast.io.paper_hdf5 import read_paper_hdf5
from lamfast.io.parquet import read_parquet, write_parquet
from lamfast.label import (
    check_coverage,
    merge,
    model_input_columns,
    parts_dir,
    read_output,
    read_output_metadata,
    read_plan,
)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Folder, model folder, model and input paths shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("label")
    paths, cats = write_inputs(folder)
    model = save_tiny_model(folder / "model", cats[0])
    return SimpleNamespace(folder=folder, model_dir=folder / "model", model=model, paths=paths)


def run(inputs, out, model, **kw):
    kw.setdefault("chunk_rows", 60)
    kw.setdefault("progress", False)
    return lamfast.label(inputs, model=model, output=out, device="cpu", **kw)


def expected(model, paths, columns=None):
    """Predictions of each whole file through lamfast.predict (one slab: other batching)."""
    cats = [read_parquet(paths[0]), read_paper_hdf5(paths[1])]
    out = []
    for k, cat in enumerate(cats):
        cols = columns or [c for c in model_input_columns(model, REQUEST) if c in cat.columns]
        with warnings.catch_warnings():   # stars of >64 values are cut, as label cuts them
            warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ stars have more than")
            table = lamfast.predict(model, cat.select(cols).values, cols, REQUEST, device="cpu", batch_size=10_000,
                                    precision="fp32")
        out.append((k, cat.source_id, table))
    return out


def test_rows_in_input_order_with_predictions(setup, tmp_path):
    folder, model_dir, model, paths = setup.folder, setup.model_dir, setup.model, setup.paths
    summary = run([str(folder / "*.parquet"), paths[1], paths[0]], tmp_path / "out.parquet", model_dir,
                  batch_size=37, precision="fp32")   # against fp32 predictions (auto is bf16 on some CPUs)
    cols, meta = read_output(tmp_path / "out.parquet")
    want = expected(model, paths)
    n = sum(len(sid) for _, sid, _ in want)
    assert summary.rows == summary.output_rows == len(cols["source_id"]) == n == 400  # a.parquet once
    assert summary.units_done == summary.units_total == 3 + 3   # 50-row groups gathered to >= 60 rows; 60-row ranges
    assert not parts_dir(tmp_path / "out.parquet").exists()
    np.testing.assert_array_equal(cols["source_id"], np.concatenate([sid for _, sid, _ in want]))
    np.testing.assert_array_equal(cols["input_file"], np.repeat([0, 1], [230, 170]))
    np.testing.assert_array_equal(cols["input_row"], np.concatenate([np.arange(230), np.arange(170)]))
    flags = np.concatenate([np.asarray(t["no_input"]) for _, _, t in want])
    np.testing.assert_array_equal(cols["no_input"], flags)
    assert list(np.flatnonzero(flags)) == [3, 150, 230 + 3, 230 + 150] == [r + o for o in (0, 230) for r in EMPTY_ROWS]
    assert summary.flagged == meta["flagged_rows"] == 4
    for name in REQUEST:
        for suffix in ("", "_error"):
            got, ref = cols[name + suffix], np.concatenate([np.asarray(t[name + suffix]) for _, _, t in want])
            assert got.dtype == np.float32
            assert np.isnan(got[flags]).all() and np.isfinite(got[~flags]).all()
            np.testing.assert_allclose(got[~flags], ref[~flags], rtol=2e-5, atol=1e-5 * np.abs(ref[~flags]).max())


def test_hdf5_output_metadata_and_columns(setup, tmp_path):
    model_dir, model, paths = setup.model_dir, setup.model, setup.paths
    columns = ["bprp", "jh", "jk"] + [f"bp{i}" for i in range(5)] + [f"rp{i}" for i in range(5)]
    run(paths, tmp_path / "out.h5", model_dir, columns=columns, request=["teff", "logebv"], precision="fp32")
    cols, meta = read_output(tmp_path / "out.h5")
    assert list(cols) == ["source_id", "input_file", "input_row", "teff", "teff_error", "logebv",
                          "logebv_error", "no_input"]
    sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert meta["model_sha256"] == sha and meta["model"] == "model"
    assert meta["lamfast_version"] == lamfast.__version__
    assert meta["request"] == ["teff", "logebv"] and meta["units"]["teff"] == "K"
    assert meta["input_columns"] == columns and meta["computed_with"] == ["cpu/fp32"]
    assert meta["inputs"] == [str(p.resolve()) for p in paths] and meta["rows"] == 400
    assert meta["plan"]["request"] == ["teff", "logebv"]
    # Same predictions as predict on those columns.
    cat = read_parquet(paths[0])
    table = lamfast.predict(model, cat.select(columns).values, columns, ["teff", "logebv"], device="cpu",
                            precision="fp32")
    np.testing.assert_allclose(cols["logebv"][:230], table["logebv"], rtol=2e-5, equal_nan=True)


def test_shards_cover_exactly_once_and_merge_checks(setup, tmp_path):
    model_dir, paths = setup.model_dir, setup.paths
    run(paths, tmp_path / "whole.parquet", model_dir)
    out = tmp_path / "out.parquet"
    done = [run(paths, out, model_dir, shard=f"{k}/3") for k in (2, 0)]
    assert [s.output for s in done] == [None, None] and not out.exists()
    assert [s.units_done for s in done] == [2, 2]  # 6 units: 0,3 | 1,4 | 2,5
    with pytest.raises(ValueError, match=r"2 of 6 work units have no result yet .*unit 1 \(a.parquet, rows 100:200\)"):
        merge(out)
    assert lamfast.cli.main(["label", "--merge", str(out)]) == 2      # the CLI reports it, exit 2
    run(paths, out, model_dir, shard=(1, 3))
    plan = read_plan(parts_dir(out))
    check_coverage(plan, parts_dir(out))
    assert lamfast.cli.main(["label", "--merge", str(out)]) == 0
    a, meta_a = read_output(out)
    b, meta_b = read_output(tmp_path / "whole.parquet")
    assert meta_a == meta_b
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])


def test_merge_rejects_wrong_parts(setup, tmp_path):
    model_dir, paths = setup.model_dir, setup.paths
    out = tmp_path / "out.h5"
    run(paths, out, model_dir, shard=(0, 1))
    parts = parts_dir(out)
    (parts / "unit-000001.npz").replace(parts / "unit-000009.npz")   # unit 1 gone, a stranger there
    with pytest.raises(ValueError, match=r"1 of 6 work units have no result yet"):
        merge(out)
    (parts / "unit-000009.npz").replace(parts / "unit-000002.npz")   # unit 1's rows posing as unit 2
    (parts / "unit-000001.npz").write_bytes(b"torn")
    with pytest.raises(ValueError, match="unit-000001.npz: corrupt part .truncated"):
        merge(out)
    run(paths, out, model_dir, shard=(0, 1))                           # recompute: fixed again
    (parts / "unit-000009.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not in the plan"):
        merge(out)
    (parts / "unit-000009.npz").unlink()
    merge(out)
    assert read_output_metadata(out)["rows"] == 400 and not parts.exists()


def test_resume_after_sigkill_equals_uninterrupted_run(setup, tmp_path):
    model_dir, paths = setup.model_dir, setup.paths
    out = tmp_path / "killed.parquet"
    cmd = [sys.executable, "-m", "lamfast.cli", "label", *map(str, paths), "--model", str(model_dir),
           "--output", str(out), "--chunk-rows", "60", "--device", "cpu", "--no-progress"]
    kw = same_lamfast(tmp_path)
    kw["env"].update(LAMFAST_LABEL_UNIT_SLEEP="1.0", OMP_NUM_THREADS="1")
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    parts = parts_dir(out)
    deadline = time.monotonic() + 60
    while not list(parts.glob("unit-*.npz")):
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "no part written within 60 s"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    n_done = len(list(parts.glob("unit-*.npz")))
    assert 1 <= n_done < 6 and not out.exists()
    summary = run(paths, out, model_dir, resume=True)
    assert summary.units_skipped == n_done and summary.units_done == 6 - n_done
    run(paths, tmp_path / "clean.parquet", model_dir)
    a, meta_a = read_output(out)
    b, meta_b = read_output(tmp_path / "clean.parquet")
    assert meta_a == meta_b
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])
    assert not parts.exists()   # leftovers of the killed job cleaned up
    # A resumed run of a finished output does nothing.
    again = run(paths, out, model_dir, resume=True)
    assert again.units_done == 0 and again.units_skipped == 6 and again.output_rows == 400


def test_xp_archive_file_is_one_unit(realdata, setup, tmp_path):
    model_dir, paths = setup.model_dir, setup.paths
    xp = realdata / "gaiaxpy_tests" / "18Sco-XP-spectra.csv"
    summary = run([xp, paths[1]], tmp_path / "out.parquet", model_dir)
    cols, meta = read_output(tmp_path / "out.parquet")
    assert summary.units_total == 1 + 3 and meta["rows"] == 1 + 170
    assert cols["input_file"][0] == 0 and cols["input_row"][0] == 0 and not cols["no_input"][0]
    assert np.isfinite(cols["teff"][0])


def test_empty_file_gives_empty_output(setup, tmp_path):
    model_dir = setup.model_dir
    from lamfast.io.paper_hdf5 import write_paper_hdf5

    write_paper_hdf5(tmp_path / "empty.h5", synthetic_catalog(0, seed=3))
    for out in ("out.parquet", "out.h5"):
        summary = run([tmp_path / "empty.h5"], tmp_path / out, model_dir)
        cols, meta = read_output(tmp_path / out)
        assert summary.rows == 0 and meta["rows"] == 0 and len(cols["teff"]) == 0


def test_bad_input(setup, tmp_path, monkeypatch):
    model_dir, paths = setup.model_dir, setup.paths
    out = tmp_path / "out.parquet"
    with pytest.raises(ValueError, match="unknown column 'tef'"):
        run(paths, out, model_dir, request=["tef"])
    with pytest.raises(FileNotFoundError, match="no such input file: .*nope.h5"):
        run([paths[0], tmp_path / "nope.h5"], out, model_dir)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        run([str(tmp_path / "*.parquet")], out, model_dir)
    with pytest.raises(FileNotFoundError, match="model 'no-model': no such folder"):
        run(paths, out, "no-model")
    monkeypatch.setattr("lamfast.resources.default_model_path", lambda: tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no default model is installed"):
        run(paths, out, "default")
    with pytest.raises(ValueError, match="must end in one of"):
        run(paths, tmp_path / "out.csv", model_dir)
    with pytest.raises(ValueError, match="shard must be K/N with 0 <= K < N, got 3/3"):
        run(paths, out, model_dir, shard="3/3")
    with pytest.raises(ValueError, match=r"columns \['teff'\] are both inputs and requested"):
        run(paths, out, model_dir, columns=["bp0", "teff"])
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        run(paths, out, model_dir, chunk_rows=0)
    labels_only = synthetic_catalog(20, seed=4).select(["teff", "logg"])
    write_parquet(labels_only, tmp_path / "labels.parquet")
    with pytest.raises(ValueError, match="labels.parquet: has none of the input columns"):
        run([tmp_path / "labels.parquet"], out, model_dir, columns=["bprp"], request=["teff"])
    with pytest.raises(ValueError, match="labels.parquet: none of its columns .* is an input token"):
        run([tmp_path / "labels.parquet"], tmp_path / "out2.parquet", model_dir, request=["teff", "logg"])
    # A second job into the same OUT.parts with another plan is refused.
    run(paths, out, model_dir, shard=(0, 2))
    with pytest.raises(ValueError, match="holds work of a different labelling plan"):
        run(paths, out, model_dir, shard=(1, 2), request=["teff"])
    assert lamfast.cli.main(["label", str(paths[0]), "--model", str(model_dir), "--output", str(out),
                             "--request", "tef", "--no-progress"]) == 2
    assert lamfast.cli.main(["label", "--model", str(model_dir), "--output", str(out)]) == 2



@pytest.mark.parametrize("name", ["out.parquet", "out.h5"])
def test_output_is_an_astropy_table_with_units(setup, tmp_path, name):
    import astropy.units as u
    from astropy.table import Table

    model_dir, paths, out = setup.model_dir, setup.paths, tmp_path / name
    run(paths, out, model_dir, request=["teff", "logg", "m_h", "logebv"])
    table = Table.read(out)
    cols, meta = read_output(out)
    assert table.colnames == list(cols)
    for c in cols:
        np.testing.assert_array_equal(np.asarray(table[c]), cols[c])
    for c in ("", "_error"):
        assert table["teff" + c].unit == u.K
        assert table["logg" + c].unit == u.dex and table["m_h" + c].unit == u.dex
        assert table["logebv" + c].unit == u.dimensionless_unscaled
    assert table["logg"].description == "log10 of the surface gravity in cm s^-2"
    assert table["teff_error"].description.startswith("uncertainty")
    assert table["source_id"].unit is None and table["no_input"].dtype == bool
    provenance = table.meta["lamfast_label"]
    assert provenance["model_sha256"] == meta["model_sha256"] and provenance["request"] == meta["request"]
    assert provenance["lamfast_version"] == lamfast.__version__ and "plan" not in provenance


def test_hdf5_output_is_compressed_in_chunks_sized_to_the_data(setup, tmp_path):
    import h5py

    model_dir, paths, out = setup.model_dir, setup.paths, tmp_path / "out.h5"
    run(paths, out, model_dir)
    with h5py.File(out) as f:
        assert list(f) == ["labels", "labels.__table_column_meta__"]   # astropy's layout
        table = f["labels"]
        assert table.shape == (400,) and table.chunks == (400,)
        assert table.compression == "gzip" and table.shuffle
    parquet = tmp_path / "out.parquet"
    run(paths, parquet, model_dir)
    assert out.stat().st_size < 2 * parquet.stat().st_size
