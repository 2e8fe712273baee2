"""lamfast label (issue 19): no silent overwrite, --resume refuses a changed plan (each field),
no empty OUT.parts left by a failed run, missing libraries found before computing, --help."""

import dataclasses
import importlib
import os
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from _label_data import save_tiny_model, synthetic_catalog, write_inputs

import lamfast
import lamfast.cli
from lamfast.label import (
    LabelPlan,
    ensure_plan,
    finished_output,
    parts_dir,
    read_output,
    read_output_metadata,
    read_plan,
)

run_module = importlib.import_module("lamfast.label.run")  # where run_units finds _load_unit
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("label-safety")
    paths, cats = write_inputs(folder)
    save_tiny_model(folder / "model", cats[0])
    save_tiny_model(folder / "other-model", cats[0], seed=1)
    return SimpleNamespace(folder=folder, model_dir=folder / "model", paths=paths)


@pytest.fixture
def inputs(setup, tmp_path):
    """Copies of the inputs that a test may change."""
    copies = [tmp_path / p.name for p in setup.paths]
    for p, c in zip(setup.paths, copies):
        shutil.copy2(p, c)
    return copies


def run(inputs, out, model, **kw):
    kw.setdefault("chunk_rows", 60)
    kw.setdefault("progress", False)
    return lamfast.label(inputs, model=model, output=out, device="cpu", **kw)


def cli(*args):
    return lamfast.cli.main(["label", *map(str, args), "--chunk-rows", "60", "--device", "cpu", "--no-progress"])


def spy_units(monkeypatch, fail_at=None):
    """Record the units read (and fail at unit ``fail_at``); returns the list of indices."""
    real, seen = run_module._load_unit, []

    def load(plan, i, predictor, threads, *rest):
        seen.append(i)
        if i == fail_at:
            raise RuntimeError("injected failure")
        return real(plan, i, predictor, threads, *rest)

    monkeypatch.setattr(run_module, "_load_unit", load)
    return seen


# ---- 1. overwrite ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.parquet", "out.h5"])
def test_finished_output_is_not_overwritten(setup, tmp_path, monkeypatch, name):
    model, paths, out = setup.model_dir, setup.paths, tmp_path / name
    run(paths, out, model)
    before = out.read_bytes()
    seen = spy_units(monkeypatch)
    with pytest.raises(FileExistsError, match=r"out\.(parquet|h5) exists; pass --overwrite"):
        run(paths, out, model, request=["teff"])
    assert cli(*paths, "--model", model, "--output", out) == 2
    assert seen == [] and out.read_bytes() == before and not parts_dir(out).exists()
    assert cli(*paths, "--model", model, "--output", out, "--request", "teff", "--overwrite") == 0
    assert read_output_metadata(out)["request"] == ["teff"]


def test_merge_does_not_overwrite(setup, tmp_path):
    model, paths, out = setup.model_dir, setup.paths, tmp_path / "out.parquet"
    run(paths, out, model)
    with pytest.raises(FileExistsError):
        run(paths, out, model, shard=(0, 1))
    run(paths, out, model, shard=(0, 1), request=["teff"], overwrite=True)
    assert lamfast.cli.main(["label", "--merge", str(out)]) == 2
    assert read_output_metadata(out)["request"] == ["teff", "logg", "m_h"] and parts_dir(out).exists()
    assert lamfast.cli.main(["label", "--merge", str(out), "--overwrite"]) == 0
    assert read_output_metadata(out)["request"] == ["teff"] and not parts_dir(out).exists()


# ---- 2. resume with a changed plan ----------------------------------------------------------

def changed(plan: LabelPlan) -> dict:
    """A changed value for every field of the plan."""
    return {"inputs": plan.inputs[:1], "formats": ["csv", *plan.formats[1:]],
            "sizes": [plan.sizes[0] + 1, *plan.sizes[1:]], "mtimes": [plan.mtimes[0] + 1, *plan.mtimes[1:]], "units": plan.units[:-1], "request": ["teff"],
            "columns": ["bprp"], "model": "other", "model_sha256": "0" * 64, "precision": "bf16",
            "max_tokens": plan.max_tokens + 1, "chunk_rows": plan.chunk_rows + 1,
            "photometry": ["phot.fits"], "photometry_sizes": [1], "photometry_mtimes": [1],
            "hats": [{"catalog": "gaia_xp", "name": "xp", "inputs": [0], "pixels": [[0, 1]], "ra_column": "ra",
                      "dec_column": "dec", "healpix_column": "_healpix_29", "healpix_order": 29,
                      "xp_units": None}]}


def test_every_plan_field_is_compared(setup, tmp_path):
    model, paths, out = setup.model_dir, setup.paths, tmp_path / "out.parquet"
    run(paths, out, model)
    meta = read_output_metadata(out)
    plan = LabelPlan.from_dict(meta["plan"])
    assert finished_output(out, plan) == meta
    changes = changed(plan)
    assert set(changes) == {f.name for f in dataclasses.fields(LabelPlan)}   # a new field needs a case here
    parts = tmp_path / "parts"
    parts.mkdir()
    ensure_plan(parts, plan)
    (parts / "unit-000000.npz").write_bytes(b"a finished part")
    phrase = {"formats": "format of ", "sizes": "size of ", "mtimes": "mtime of ", "units": "work units: ",
              "photometry": "photometry files: ", "hats": "HATS catalogues: gaia_xp (1 partition files) now, none"}
    for name, value in changes.items():
        other = dataclasses.replace(plan, **{name: value})
        assert other.differences(plan)[0].startswith(phrase.get(name, f"{name}: ")), name
        assert plan.differences(dataclasses.replace(plan)) == []
        with pytest.raises(ValueError, match="cannot resume: .*out.parquet was made with a different plan: "):
            finished_output(out, other)
        with pytest.raises(ValueError, match="holds work of a different labelling plan: "):
            ensure_plan(parts, other)
    assert read_plan(parts) == plan                                          # the stored plan stays


@pytest.mark.parametrize("change, message", [
    ("request", r"request: \['teff'\] now, \['teff', 'logg', 'm_h'\] before"),
    ("columns", r"columns: \['bprp', 'jh'\] now, None before"),
    ("chunk_rows", r"work units: 5 now, 6 before; chunk_rows: 100 now, 60 before"),
    ("precision", r"precision: 'fp32' now, 'auto' before"),
    ("model", r"model: 'other-model' now, 'model' before; model_sha256: '[0-9a-f]{64}' now"),
    ("inputs", r"inputs: \[.*b.h5'\] now, \[.*a.parquet', .*b.h5'\] before"),
    ("mtime", r"mtime of .*b.h5: [0-9]+ now, [0-9]+ before"),
    ("size", r"size of .*a.parquet: [0-9]+ now, [0-9]+ before"),
])
@pytest.mark.parametrize("stage", ["finished", "parts"])
def test_resume_refuses_a_changed_plan(setup, inputs, tmp_path, monkeypatch, change, message, stage):
    model, out = setup.model_dir, tmp_path / "out.parquet"
    run(inputs, out, model, **({"shard": (0, 2)} if stage == "parts" else {}))
    done = out.read_bytes() if stage == "finished" else sorted(parts_dir(out).glob("unit-*"))
    kw = {"request": dict(request=["teff"]), "columns": dict(columns=["bprp", "jh"]),
          "chunk_rows": dict(chunk_rows=100), "precision": dict(precision="fp32"),
          "model": dict(model=setup.folder / "other-model")}.get(change, {})
    if change == "inputs":
        inputs = inputs[1:]
    elif change == "mtime":
        os.utime(inputs[1], ns=(os.stat(inputs[1]).st_atime_ns, os.stat(inputs[1]).st_mtime_ns + 10**9))
    elif change == "size":
        from lamfast.io.parquet import write_parquet

        write_parquet(synthetic_catalog(230, seed=1), inputs[0], row_group_size=50, compression="gzip")
    seen = spy_units(monkeypatch)
    where = "was made with a different plan" if stage == "finished" else "holds work of a different labelling plan"
    with pytest.raises(ValueError, match=f"{where}: (.*; )?{message}"):
        run(inputs, out, kw.pop("model", model), resume=True, **kw)
    assert seen == []
    if stage == "finished":
        assert out.read_bytes() == done
    else:
        assert sorted(parts_dir(out).glob("unit-*")) == done and not out.exists()


def test_resume_of_the_same_plan_finishes_the_parts(setup, inputs, tmp_path):
    model, out = setup.model_dir, tmp_path / "out.h5"
    run(inputs, out, model, shard=(1, 2))
    summary = run(inputs, out, model, resume=True)
    assert summary.units_skipped == 3 and summary.units_done == 3 and summary.output_rows == 400
    assert run(inputs, out, model, resume=True).units_done == 0


# ---- 3. no empty parts folder after a failure -----------------------------------------------

def test_failed_run_removes_the_parts_folder_it_created(setup, tmp_path, monkeypatch):
    model, paths, out = setup.model_dir, setup.paths, tmp_path / "out.parquet"
    spy_units(monkeypatch, fail_at=0)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(paths, out, model)
    assert not parts_dir(out).exists() and not out.exists()
    parts_dir(out).mkdir()            # not this run's folder (another job's?): left as it is
    (parts_dir(out) / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="injected failure"):
        run(paths, out, model)
    assert sorted(p.name for p in parts_dir(out).iterdir()) == ["notes.txt", "plan.json"]


def test_failed_run_keeps_finished_parts(setup, tmp_path, monkeypatch):
    model, paths, out = setup.model_dir, setup.paths, tmp_path / "out.parquet"
    spy_units(monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(paths, out, model, prefetch=1)
    kept = sorted(p.name for p in parts_dir(out).glob("unit-*.npz"))
    assert kept == ["unit-000000.npz", "unit-000001.npz"]
    monkeypatch.undo()
    assert run(paths, out, model, resume=True).units_skipped == 2


# ---- 4. what a run needs, checked before computing ------------------------------------------

@pytest.mark.parametrize("module, file, name", [("h5py", 0, "out.h5"), ("pyarrow.parquet", 1, "out.parquet")])
def test_missing_writer_fails_before_computing(setup, tmp_path, monkeypatch, module, file, name):
    model, out = setup.model_dir, tmp_path / name
    seen = spy_units(monkeypatch)
    monkeypatch.setitem(sys.modules, module, None)               # import fails as if not installed
    package = module.split(".")[0]
    with pytest.raises(ModuleNotFoundError, match=f"writing {name} needs {package}.*pip install {package}"):
        run([setup.paths[file]], out, model)
    assert seen == [] and not parts_dir(out).exists()


def test_missing_dask_fails_before_anything(setup, tmp_path, monkeypatch, capsys):
    from lamfast.distributed import label_distributed

    model, paths, out = setup.model_dir, setup.paths, tmp_path / "out.parquet"
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setattr("lamfast.infer.load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(ModuleNotFoundError, match=r'needs dask.distributed.*pip install "lamfast\[dask\]"'):
        label_distributed(paths, model=model, output=out, workers=2)
    assert cli(*paths, "--model", model, "--output", out, "--workers", "2") == 2
    assert 'pip install "lamfast[dask]"' in capsys.readouterr().err
    assert not parts_dir(out).exists()


# ---- 8. --help --------------------------------------------------------------------------------

def test_help_shows_output_required_and_every_default(capsys):
    with pytest.raises(SystemExit) as e:
        lamfast.cli.main(["label", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "(--output OUT | --merge OUT)" in text.split("\n\n")[0]       # required, in the usage line
    parser = lamfast.cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["label"]
    for action in sub._actions:
        if action.option_strings and action.dest not in ("help", "output", "merge"):
            assert action.help and "(default: " in action.help, action.dest
    with pytest.raises(SystemExit) as e:
        lamfast.cli.main(["label", "x.h5"])
    assert e.value.code == 2
    assert "one of the arguments --output/-o --merge is required" in capsys.readouterr().err


def test_row_order_and_flags_survive_the_new_layout(setup, tmp_path):
    """read_output of the HDF5 and Parquet outputs give the same columns, in input order."""
    model, paths = setup.model_dir, setup.paths
    run(paths, tmp_path / "out.h5", model)
    run(paths, tmp_path / "out.parquet", model)
    a, meta_a = read_output(tmp_path / "out.h5")
    b, meta_b = read_output(tmp_path / "out.parquet")
    assert meta_a == meta_b and list(a) == list(b)
    for c in a:
        assert a[c].dtype == b[c].dtype and a[c].flags.c_contiguous
        np.testing.assert_array_equal(a[c], b[c])
    np.testing.assert_array_equal(a["input_row"], np.concatenate([np.arange(230), np.arange(170)]))
    assert a["no_input"].sum() == 4
