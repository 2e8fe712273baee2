"""Faults that must lose nothing (issue 21): a full disk while writing a part or the output,
a Dask worker killed mid-partition and a scheduler lost mid-run, two jobs on one output, a
part corrupted on disk, a corrupt model folder. Each case ends with the output of an
uninterrupted run, byte for byte (0 rows lost, none twice)."""

import errno
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest
from _label_data import save_tiny_model, write_inputs
from conftest import same_lamfast

import lamfast
import lamfast.cli
from lamfast.label import (checksum_path, lock_path, merge, part_path, part_problem, parts_dir,
                           read_output)

run_module = importlib.import_module("lamfast.label.run")
parts_module = importlib.import_module("lamfast.label.parts")
output_module = importlib.import_module("lamfast.label.output")
pytestmark = pytest.mark.usefixtures("single_torch_thread")
N_UNITS, N_ROWS = 6, 400          # write_inputs with chunk_rows 60: 3 + 3 units


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    paths, cats = write_inputs(folder)
    save_tiny_model(folder / "model", cats[0])
    refs = {}
    for suffix in (".parquet", ".h5"):
        refs[suffix] = folder / f"reference{suffix}"
        run(paths, refs[suffix], folder / "model")
    return SimpleNamespace(folder=folder, model=folder / "model", paths=paths, refs=refs)


def run(paths, out, model, **kw):
    kw.setdefault("chunk_rows", 60)
    kw.setdefault("progress", False)
    return lamfast.label(paths, model=model, output=out, device="cpu", **kw)


def cli_args(setup, out, *extra):
    return ["label", *map(str, setup.paths), "--model", str(setup.model), "--output", str(out),
            "--chunk-rows", "60", "--device", "cpu", "--no-progress", *extra]


def assert_identical(out, reference):
    """Byte-identical files (so every row and value), and the same rows by reading them."""
    a, meta_a = read_output(out)
    b, meta_b = read_output(reference)
    assert meta_a == meta_b and len(a["source_id"]) == N_ROWS
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])
    assert out.read_bytes() == reference.read_bytes()


def committed_parts(out, killed_writers: bool = False):
    """Indices of the parts in OUT.parts; each must be intact (never a partial one).
    ``killed_writers``: a process was SIGKILLed while it may have been writing a part (no
    cleanup runs then), so its temporary file may be there; it is never a part."""
    parts = parts_dir(out)
    found = sorted(int(p.name[5:11]) for p in parts.glob("unit-*.npz"))
    for i in found:
        assert part_problem(part_path(parts, i)) is None, f"unit {i}: {part_problem(part_path(parts, i))}"
    if not killed_writers:
        assert not list(parts.glob(".*.tmp-*")), "a temporary file was left behind"
    return found


# ---- 1. disk full -------------------------------------------------------------------------

class _Disk:
    """A disk with ``free`` bytes left for the part files that lamfast.label.parts opens."""

    def __init__(self, free):
        self.free = free
        self.failed = []

    def open(self, path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return io.open(path, mode, *args, **kwargs)
        disk = self

        class FullDisk(io.FileIO):
            def write(self, b):
                b = memoryview(b).cast("B")
                if len(b) > disk.free:             # what fits is written, then ENOSPC
                    super().write(b[:disk.free])
                    disk.free = 0
                    disk.failed.append(path)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.free -= len(b)
                return super().write(b)

        return FullDisk(path, "w")


def test_disk_full_while_writing_a_part(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.parquet"
    disk = _Disk(free=14_000)                      # two 5.9 kB parts fit, the third does not
    monkeypatch.setattr(parts_module, "open", disk.open, raising=False)
    assert lamfast.cli.main(cli_args(setup, out)) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "unit-000002.npz" in err and "rerun with --resume" in err
    assert [str(p) for p in disk.failed] and not out.exists()
    # Only committed, intact parts are there: the half-written third one is gone.
    assert committed_parts(out) == [0, 1]
    assert not part_path(parts_dir(out), 2).exists() and not lock_path(out).exists()
    monkeypatch.undo()                             # space freed
    summary = run(setup.paths, out, setup.model, resume=True)
    assert summary.units_skipped == 2 and summary.units_done == N_UNITS - 2
    assert_identical(out, setup.refs[".parquet"])


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_disk_full_while_writing_the_output(setup, tmp_path, monkeypatch, suffix):
    out = tmp_path / f"out{suffix}"
    writer = output_module._ParquetWriter if suffix == ".parquet" else output_module._HDF5Writer
    real = writer.write
    calls = []

    def write(self, cols):
        calls.append(len(cols["source_id"]))
        if len(calls) == 2:                        # the first 100 rows are written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, cols)

    monkeypatch.setattr(output_module, "WRITE_ROWS", 100)
    monkeypatch.setattr(writer, "write", write)
    with pytest.raises(OSError, match=rf"writing {re.escape(str(out))} failed: the disk is full .*"
                                      r"rerun with --resume .*; the parts in .* are kept"):
        run(setup.paths, out, setup.model)
    assert not out.exists()                        # no torn output a resumed job would take as done
    assert committed_parts(out) == list(range(N_UNITS))
    monkeypatch.undo()
    summary = run(setup.paths, out, setup.model, resume=True)
    assert summary.units_skipped == N_UNITS and summary.units_done == 0 and not parts_dir(out).exists()
    assert_identical(out, setup.refs[suffix])


_TMPFS_SCRIPT = r"""
import json, os, subprocess, sys
disk, out, args, result = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], check=True)
with open(os.path.join(disk, "filler"), "wb") as f:  # leave about 40 kB: some parts, never the output
    f.write(b"x" * (256 - 40) * 1024)
first = subprocess.run([sys.executable, "-m", "lamfast.cli", *args], capture_output=True, text=True)
from lamfast.label import part_problem, parts_dir
parts = sorted(p for p in parts_dir(out).glob("unit-*.npz"))
report = {"rc": first.returncode, "stderr": first.stderr, "parts": [p.name for p in parts],
          "problems": [part_problem(p) for p in parts], "out_exists": os.path.exists(out)}
os.remove(os.path.join(disk, "filler"))             # free space
second = subprocess.run([sys.executable, "-m", "lamfast.cli", *args, "--resume"], capture_output=True, text=True)
report.update(rc2=second.returncode, stderr2=second.stderr)
if second.returncode == 0:
    subprocess.run(["cp", out, result + ".out"], check=True)
json.dump(report, open(result, "w"))
"""


def test_disk_full_on_a_real_small_filesystem(setup, tmp_path):
    """A real ENOSPC: a 256 kB tmpfs in a private mount namespace (root and unshare needed)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=8k tmpfs {tmp_path}"],
                           capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace: {probe.stderr.decode()[:200]}")
    disk = tmp_path / "disk"
    disk.mkdir()
    out, result = disk / "out.parquet", tmp_path / "result.json"
    kw = same_lamfast(tmp_path)
    kw["env"]["OMP_NUM_THREADS"] = "1"
    subprocess.run(["unshare", "-m", sys.executable, "-c", _TMPFS_SCRIPT, str(disk), str(out),
                    json.dumps(cli_args(setup, out)), str(result)], check=True, timeout=120, **kw)
    report = json.loads(result.read_text())
    assert report["rc"] == 1 and "the disk is full" in report["stderr"], report["stderr"]
    assert 1 <= len(report["parts"]) < N_UNITS and report["problems"] == [None] * len(report["parts"])
    assert not report["out_exists"]
    assert report["rc2"] == 0, report["stderr2"]
    copy = tmp_path / "result.json.out"
    copy.rename(tmp_path / "resumed.parquet")
    assert_identical(tmp_path / "resumed.parquet", setup.refs[".parquet"])


# ---- 3. two jobs on one output ----------------------------------------------------------

def test_second_job_on_the_same_output_is_refused(setup, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    kw = same_lamfast(tmp_path)
    kw["env"].update(LAMFAST_LABEL_UNIT_SLEEP="1.5", OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "lamfast.cli", *cli_args(setup, out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    try:
        deadline = time.monotonic() + 60
        while not list(parts_dir(out).glob("unit-*.npz")):
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "no part within 60 s"
            time.sleep(0.05)
        assert lock_path(out).read_text().strip() == str(first.pid)
        # A second process: the CLI with the same output, with --resume, a shard, a merge.
        second = subprocess.run([sys.executable, "-m", "lamfast.cli", *cli_args(setup, out)],
                                capture_output=True, text=True, **kw)
        assert second.returncode == 2
        message = f"another lamfast label job (process {first.pid}) is writing {out}: it holds the lock {lock_path(out)}"
        assert message in second.stderr, second.stderr
        for extra in (["--resume"], ["--resume", "--shard", "0/2"]):
            assert lamfast.cli.main(cli_args(setup, out, *extra)) == 2
            assert f"holds the lock {lock_path(out)}" in capsys.readouterr().err
        assert lamfast.cli.main(["label", "--merge", str(out)]) == 2
        assert f"is writing {out}" in capsys.readouterr().err
        assert first.poll() is None                   # the first job was never disturbed
    finally:
        rc = first.wait(timeout=120)
        first.stderr.close()
    assert rc == 0
    assert not lock_path(out).exists() and not parts_dir(out).exists()
    assert_identical(out, setup.refs[".parquet"])


def test_shards_share_the_lock_and_a_whole_job_is_refused(setup, tmp_path):
    from lamfast.label import OutputLockedError, output_lock

    out = tmp_path / "out.parquet"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from lamfast.label import output_lock
        with output_lock({str(out)!r}, shared=True):
            print("held", flush=True)
            sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, **same_lamfast(tmp_path))
    try:
        assert holder.stdout.readline() == b"held\n"
        with output_lock(out, shared=True):           # another shard: fine
            pass
        with pytest.raises(OutputLockedError, match="holds the lock"):
            with output_lock(out):                    # a whole job or a merge: refused
                pass
    finally:
        holder.communicate(b"", timeout=30)
    with output_lock(out):                            # the holder exited: free again
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


# ---- 4. a part corrupted on disk --------------------------------------------------------

def test_corrupt_part_is_refused_by_merge_and_redone_by_resume(setup, tmp_path, capsys):
    out = tmp_path / "out.h5"
    run(setup.paths, out, setup.model, shard=(0, 1))           # every part, no merge
    parts = parts_dir(out)
    flipped, truncated = part_path(parts, 2), part_path(parts, 4)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x10                               # one bit
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"unit-000002.npz: corrupt part \(changed on disk: its sha256 differs"
                                         r".*never merged: rerun lamfast label with --resume"):
        merge(out)
    assert lamfast.cli.main(["label", "--merge", str(out)]) == 2
    assert "unit-000002.npz: corrupt part" in capsys.readouterr().err and not out.exists()
    with pytest.warns(RuntimeWarning) as warned:
        summary = run(setup.paths, out, setup.model, resume=True)
    assert sorted(str(w.message).split(":")[0] for w in warned) == [str(flipped), str(truncated)]
    assert summary.units_done == 2 and summary.units_skipped == N_UNITS - 2
    assert_identical(out, setup.refs[".h5"])


def test_part_without_checksum_is_not_done(setup, tmp_path):
    """A part whose checksum is lost (deleted, or a part left by an older lamfast) is redone."""
    out = tmp_path / "out.parquet"
    run(setup.paths, out, setup.model, shard=(0, 1))
    checksum_path(part_path(parts_dir(out), 3)).unlink()
    with pytest.raises(ValueError, match=r"unit-000003.npz: corrupt part \(no checksum"):
        merge(out)
    with pytest.warns(RuntimeWarning, match="no checksum"):
        summary = run(setup.paths, out, setup.model, resume=True)
    assert summary.units_done == 1
    assert_identical(out, setup.refs[".parquet"])


def test_commit_is_one_rename_for_a_concurrent_observer(tmp_path, monkeypatch):
    """Whoever checks a part while it is being committed (a resumed shard, a retried Dask
    task: part_done removes a part it finds bad) sees it missing or done, never
    half-committed; so it never removes a part that is being committed."""
    part, seen = tmp_path / "unit-000000.npz", []
    real = parts_module.file_sha256

    def observed_sha256(path):
        seen.append(parts_module.part_done(part))   # mid-commit: the part file is finished
        return real(path)

    monkeypatch.setattr(parts_module, "file_sha256", observed_sha256)
    parts_module.commit_part(part, lambda f: f.write(b"rows" * 1000))
    monkeypatch.undo()
    assert seen == [False] and parts_module.part_done(part)


# ---- 5. a corrupt model folder ----------------------------------------------------------

def _break_truncated(folder):
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return ValueError, rf"{w}: not a readable safetensors file"


def _break_json(folder):
    c = folder / "config.json"
    c.write_text(c.read_text()[:-40])
    return ValueError, rf"{c}: not valid JSON"


def _break_architecture(folder):
    c = folder / "config.json"
    meta = json.loads(c.read_text())
    meta["architecture"]["width"] = 32
    c.write_text(json.dumps(meta))
    return ValueError, rf"{folder / 'model.safetensors'}: weights do not fit the architecture in {c}"


def _break_authors_config(folder):
    c = folder / "config.json"
    c.write_text(json.dumps({"nn_config": {}, "norm_config": {}}))
    return ValueError, rf"{c}: not a lamfast model"


def _break_keys(folder):
    c = folder / "config.json"
    meta = json.loads(c.read_text())
    del meta["vocab"]
    c.write_text(json.dumps(meta))
    return ValueError, rf"{c}: not a valid lamfast model config \(no 'vocab' entry\)"


def _break_list(folder):
    (folder / "config.json").write_text("[1, 2]")
    return ValueError, rf"{folder / 'config.json'}: holds a JSON list"


def _break_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    return FileNotFoundError, rf"missing model.safetensors in {folder}"


@pytest.mark.parametrize("damage", [_break_truncated, _break_json, _break_architecture, _break_authors_config,
                                    _break_keys, _break_list, _break_missing_weights])
def test_corrupt_model_folder_names_the_file(setup, tmp_path, capsys, damage):
    folder = tmp_path / "model"
    shutil.copytree(setup.model, folder)
    kind, message = damage(folder)
    with pytest.raises(kind, match=message) as e:
        lamfast.LAM.load(folder)
    assert type(e.value) is kind and e.value.__cause__ is None   # ours, not a wrapped library error
    out = tmp_path / "out.parquet"
    args = cli_args(setup, out)
    args[args.index("--model") + 1] = str(folder)
    assert lamfast.cli.main(args) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "Traceback" not in err
    assert not parts_dir(out).exists() and not out.exists() and not lock_path(out).exists()


# ---- 2. a Dask worker killed mid-partition, the scheduler lost mid-run ------------------

def _kill_once_plugin(marker):
    """Worker plugin: the first worker to reach the second unit of partition 1 (b.h5)
    after its first unit is committed kills its own process (SIGKILL), once (a marker file).
    Defined here so that cloudpickle sends the class by value to the spawned workers."""
    from distributed import WorkerPlugin

    class KillOnce(WorkerPlugin):
        name = "lamfast-kill-once"

        def setup(self, worker):
            import importlib
            import os
            import signal
            import time
            from pathlib import Path

            from lamfast.label import part_path, part_problem

            run = importlib.import_module("lamfast.label.run")
            real, parts = run._load_unit, Path(marker).parent / "out.parquet.parts"

            def load(plan, i, predictor, threads, *rest):
                first = next(j for j, u in enumerate(plan.units) if u.file == 1)
                if i == first + 1 and os.path.exists(marker):
                    deadline = time.monotonic() + 120
                    # part_problem only looks (part_done would remove a part it finds bad)
                    while part_problem(part_path(parts, first)) is not None:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"unit {first} was not committed within 120 s")
                        time.sleep(0.01)
                    os.unlink(marker)
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(plan, i, predictor, threads, *rest)

            run._load_unit = load

    return KillOnce()


def _dask_inputs(setup):
    return dict(model=setup.model, chunk_rows=60, device="cpu", progress=False)


def test_dask_worker_killed_mid_partition(setup, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [dask] extra")
    from lamfast.distributed import label_distributed

    out, marker = tmp_path / "out.parquet", tmp_path / "kill-once"
    marker.touch()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"OMP_NUM_THREADS": "1"}) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(_kill_once_plugin(str(marker)))
        pids = set(client.run(os.getpid).values())
        summary = label_distributed(setup.paths, output=out, client=client, **_dask_inputs(setup))
        after = set(client.run(os.getpid).values())
    assert not marker.exists() and pids - after, "no worker was killed"
    # Partition 1 (a.parquet: units 0-2, b.h5: 3-5) lost its worker after unit 3 was committed:
    # the rerun of the partition skipped what was committed and did the rest.
    assert summary.units_skipped >= 1 and summary.units_done + summary.units_skipped == N_UNITS
    assert summary.output_rows == N_ROWS and not parts_dir(out).exists()
    assert_identical(out, setup.refs[".parquet"])


def test_dask_scheduler_lost_mid_run_then_resume(setup, tmp_path):
    """The driver, its scheduler and its workers are killed (SIGKILL to the process group)
    mid-run; a rerun with resume on a fresh cluster keeps the committed parts and gives the
    uninterrupted output."""
    pytest.importorskip("distributed", reason="dask.distributed is the optional [dask] extra")
    from lamfast.distributed import label_distributed

    out = tmp_path / "out.parquet"
    kw = same_lamfast(tmp_path)
    kw["env"].update(LAMFAST_LABEL_UNIT_SLEEP="1.0", OMP_NUM_THREADS="1")
    job = subprocess.Popen([sys.executable, "-m", "lamfast.cli", *cli_args(setup, out, "--workers", "2")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kw)
    try:
        deadline = time.monotonic() + 90
        while not list(parts_dir(out).glob("unit-*.npz.sha256")):
            assert job.poll() is None, job.stderr.read().decode()
            assert time.monotonic() < deadline, "no part within 90 s"
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)             # scheduler, nannies and workers with it
        job.wait()
        job.stderr.close()
    time.sleep(0.5)                                    # let the killed processes' last renames land
    done = committed_parts(out, killed_writers=True)   # the other worker may have been mid-write
    assert 1 <= len(done) < N_UNITS and not out.exists()
    summary = label_distributed(setup.paths, output=out, workers=2, processes=False, resume=True,
                                **_dask_inputs(setup))
    assert summary.units_done + summary.units_skipped == N_UNITS and summary.units_skipped >= len(done) - 1
    assert_identical(out, setup.refs[".parquet"])
    assert not parts_dir(out).exists()                 # the merge removed the killed writers' temporaries too
    assert not lock_path(out).exists()                 # the killed job's lock did not outlive it
