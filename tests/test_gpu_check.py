"""benchmarks/gpu_check.sh in its dry mode: every phase of the GPU run, on the CPU.

GPU time comes rarely, so the script must not fail there for a plumbing reason. One dry
run (~2 min on 2 busy cores) checks the phases ran and printed their times, the tables
have rows, $OUT keeps to what comes back from a GPU machine (<= 8 files, none over
16 MiB), a phase that fails (FAIL_PHASE) costs only its own table, and a phase out of
budget keeps the rows it measured. Deselect with ``-k "not gpu_check"``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO, same_lamfast

pytestmark = [
    pytest.mark.skipif(os.environ.get("LAMFAST_GPU_CHECK") == "1",
                       reason="run by gpu_check.sh itself: no dry run inside the real one"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "timeout", "tar")),
                       reason="needs bash, coreutils' timeout and tar"),
    pytest.mark.timeout(600),  # the dry run (the module's fixture) takes 2-4 min on 2 busy cores
]

BENCH_PHASES = ("attention", "model", "label", "train")
PHASES = ("env", "install", "tests", *BENCH_PHASES, "summary", "pack")
FAILING = "train"


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-out")
    scratch = tmp_path_factory.mktemp("scratch")
    results_before = _tree(REPO / "benchmarks" / "results")
    kw = same_lamfast(REPO)
    env = {**kw["env"], "OUT": str(out), "PY": sys.executable, "DRY": "1", "TMPDIR": str(scratch),
           "FAIL_PHASE": FAILING,       # fails on purpose: the others must keep their tables
           "BENCH_BUDGET_attention": "1"}   # runs out of budget after its first case: keeps what it measured
    env.pop("TRITON_INTERPRET", None)  # the script sets it itself
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=420, cwd=REPO, env=env)
    tables = {}
    with tarfile.open(out / "results.tar.gz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                tables[os.path.basename(m.name)] = tar.extractfile(m).read().decode()
    return proc, out, tables, results_before


def _rows(text):
    return list(csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("# ")))


def test_every_phase_ran_and_printed_its_time(dry_run):
    proc, out, _, _ = dry_run
    printed = [ln for ln in proc.stdout.splitlines() if ln.startswith("phase ")]
    recorded = (out / "phases.txt").read_text()
    for name in PHASES:
        line = next((ln for ln in printed if ln.split()[1] == name), None)
        assert line is not None, f"phase {name} printed nothing:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        assert line in recorded and " s (budget " in line, line
        status = line.split(None, 2)[2]
        if name == FAILING:
            assert status.startswith("failed (exit 3)"), line
        elif name == "attention":  # out of its own budget: it stopped itself
            assert status.startswith("ok"), line
        else:
            assert status.startswith("ok"), line
    assert proc.returncode != 0  # a failed phase fails the script, at the end
    assert "DRY RUN" in recorded and "total " in recorded


def test_out_holds_what_comes_back_from_a_gpu_machine(dry_run):
    _, out, _, _ = dry_run
    files = [p for p in out.rglob("*")]
    assert all(p.is_file() for p in files) and len(files) <= 8, files
    assert {p.name for p in files} == {"gpu.txt", "phases.txt", "install.log", "tests.log", "bench.log",
                                       "results.tar.gz"}
    assert all(p.stat().st_size < 16 * 2**20 for p in files)


def test_tables_have_rows_and_the_failed_phase_costs_only_its_own(dry_run):
    _, out, tables, _ = dry_run
    assert set(tables) == {"SUMMARY.md", *(f"{n}.{x}" for n in BENCH_PHASES if n != FAILING for x in ("md", "csv"))}
    assert all(name.endswith((".md", ".csv")) for name in tables)  # tables only: no checkpoints, no data
    for name in BENCH_PHASES:
        if name != FAILING:
            assert _rows(tables[f"{name}.csv"]), name
            assert "Dry run" in tables[f"{name}.md"] and "Partial" not in tables[f"{name}.md"], name
    assert "missing: train" in tables["SUMMARY.md"]
    assert "failing on purpose (FAIL_PHASE=train)" in (out / "bench.log").read_text()


def test_rows_say_what_needs_cuda_and_what_ran_out_of_budget(dry_run):
    _, _, tables, _ = dry_run
    attention = _rows(tables["attention.csv"])
    status = {(r["candidate"], r["status"]) for r in attention}
    assert ("sdpa-padded-cudnn", "skipped: needs CUDA") in status
    assert any(r["candidate"] == "lamfast-triton" and r["status"] == "ok" for r in attention)  # interpreted
    assert any(r["status"] == "skipped: time budget" for r in attention)  # BENCH_BUDGET_attention=1
    assert any(r["status"] == "ok" for r in attention)
    model = _rows(tables["model.csv"])
    assert {r["candidate"] for r in model} == {"lamfast", "stock", "stock-compile"}
    assert {r["status"] for r in model} == {"ok"}
    label = _rows(tables["label.csv"])
    assert {r["pipeline"] for r in label} == {"stock fp32", "lamfast fp32", "lamfast bf16"}
    assert all(float(r["model_frac"]) > 0 for r in label)


def test_dry_run_leaves_the_committed_results_alone(dry_run):
    *_, results_before = dry_run
    assert _tree(REPO / "benchmarks" / "results") == results_before
