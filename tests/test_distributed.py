"""lamfast.distributed on an in-process LocalCluster of 2 workers: same output as a local
job, a partition that fails once is retried, a rerun skips finished partitions."""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
from _label_data import save_tiny_model, synthetic_catalog

import lamfast
import lamfast.cli
from lamfast.io import write_parquet
from lamfast.io.paper_hdf5 import write_paper_hdf5
from lamfast.label import parts_dir, read_output

pytest.importorskip("distributed", reason="dask.distributed is the optional [dask] extra")
run_module = importlib.import_module("lamfast.label.run")  # where run_units finds _load_unit
from lamfast.distributed import label_distributed


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    paths = []
    for k, n in enumerate((90, 130, 70)):   # three partitions, two formats
        cat = synthetic_catalog(n, seed=10 + k)
        if k % 2:
            paths.append(folder / f"p{k}.h5")
            write_paper_hdf5(paths[-1], cat)
        else:
            paths.append(folder / f"p{k}.parquet")
            write_parquet(cat, paths[-1], row_group_size=40)
    save_tiny_model(folder / "model", synthetic_catalog(200, seed=9))
    reference = folder / "local.parquet"
    lamfast.label(paths, model=folder / "model", output=reference, chunk_rows=50, device="cpu",
                  progress=False)
    return SimpleNamespace(folder=folder, paths=paths, reference=reference)


def assert_same_output(a, b):
    ca, ma = read_output(a)
    cb, mb = read_output(b)
    assert ma == mb
    for c in ca:
        np.testing.assert_array_equal(ca[c], cb[c])


def inject_failures(monkeypatch, flags):
    """Make unit 1 of partition 1 fail while a flag file exists (removed by the first failure
    if it is a 'once' flag); returns the list of failures seen."""
    real = run_module._load_unit
    failures = []

    def flaky(plan, i, predictor, threads, *rest):
        first = next(j for j, u in enumerate(plan.units) if u.file == 1)
        if i == first + 1:
            if flags["once"].exists():
                flags["once"].unlink()
                failures.append(i)
                raise RuntimeError("injected failure")
            if flags["always"].exists():
                failures.append(i)
                raise RuntimeError("injected permanent failure")
        return real(plan, i, predictor, threads, *rest)

    monkeypatch.setattr(run_module, "_load_unit", flaky)
    return failures


def run(paths, out, folder, **kw):
    return label_distributed(paths, model=folder / "model", output=out, chunk_rows=50, device="cpu",
                             workers=2, processes=False, progress=False, **kw)


def test_failed_partition_is_retried(setup, tmp_path, monkeypatch):
    folder, paths, reference = setup.folder, setup.paths, setup.reference
    flags = {"once": tmp_path / "fail-once", "always": tmp_path / "fail-always"}
    flags["once"].touch()
    failures = inject_failures(monkeypatch, flags)
    summary = run(paths, tmp_path / "out.parquet", folder, retries=1)
    assert len(failures) == 1 and not flags["once"].exists()
    # 2 + 3 + 1 units; the retry of partition 1 skipped its first unit (done by the failed try).
    assert summary.units_total == 6 and summary.units_done == 5 and summary.units_skipped == 1
    assert summary.rows == 290 - 50
    assert summary.output_rows == 290 and not parts_dir(tmp_path / "out.parquet").exists()
    assert_same_output(tmp_path / "out.parquet", reference)


def test_rerun_skips_finished_partitions(setup, tmp_path, monkeypatch):
    folder, paths, reference = setup.folder, setup.paths, setup.reference
    flags = {"once": tmp_path / "fail-once", "always": tmp_path / "fail-always"}
    flags["always"].touch()
    failures = inject_failures(monkeypatch, flags)
    out = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match=r"1 partition\(s\) failed after 1 retries, e.g. .*p1.h5"):
        run(paths, out, folder, retries=1)
    assert len(failures) == 2                                   # first try + one retry
    done = sorted(p.name for p in parts_dir(out).glob("unit-*.npz"))
    assert done == ["unit-000000.npz", "unit-000001.npz", "unit-000002.npz",
                    "unit-000005.npz"]                          # partition 1 kept its finished unit
    flags["always"].unlink()
    summary = run(paths, out, folder, resume=True)
    assert summary.units_skipped == 3 + 1 and summary.units_done == 2 and summary.rows == 50 + 30
    cols, _ = read_output(out)
    ref, _ = read_output(reference)
    for c in cols:
        np.testing.assert_array_equal(cols[c], ref[c])


def test_cli_workers(setup, tmp_path, monkeypatch):
    folder, paths, reference = setup.folder, setup.paths, setup.reference
    from lamfast import distributed

    real = distributed.label_distributed
    monkeypatch.setattr(distributed, "label_distributed",
                        lambda *a, **kw: real(*a, processes=False, **kw))  # in-process workers: fast
    out = tmp_path / "out.parquet"
    args = ["label", *map(str, paths), "--model", str(folder / "model"), "--output", str(out),
            "--chunk-rows", "50", "--device", "cpu", "--workers", "2", "--no-progress"]
    assert lamfast.cli.main(args) == 0
    assert_same_output(out, reference)
    assert lamfast.cli.main(args + ["--shard", "0/2"]) == 2           # sharding is for separate jobs
    with pytest.raises(ValueError, match="exactly one of"):
        label_distributed(paths, model=folder / "model", output=out, workers=2, scheduler="tcp://x:1")
    with pytest.raises(ValueError, match="unknown column 'tef'"):
        run(paths, out, folder, request=["tef"], overwrite=True)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run(paths, out, folder)
    with pytest.raises(ValueError, match=r"was made with a different plan: request: \['teff'\] now"):
        run(paths, out, folder, request=["teff"], resume=True)
    assert run(paths, out, folder, resume=True).units_done == 0
