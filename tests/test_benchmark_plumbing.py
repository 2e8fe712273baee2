"""The benchmark suite's shared plumbing: result files, stamps and the one-command runner.

No timings here: these check where results land and what they carry, using a fake
benchmark module so the test stays fast."""

from __future__ import annotations

import csv
import importlib
import os
import sys
import time
import types

import numpy as np
import pytest

from conftest import REPO

# benchmarks/ is not installed: reach it in the checkout. Appended, not prepended, so the
# installed lamfast (with its compiled core) still wins over the source tree's.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from benchmarks import __main__ as runner  # noqa: E402
from benchmarks import common  # noqa: E402


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    return tmp_path / common.device_slug("cpu")


def read_csv(path):
    lines = path.read_text().splitlines()
    header = [ln[2:].split(": ", 1) for ln in lines if ln.startswith("# ")]
    body = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    return dict(header), body


def test_write_table_quick_never_overwrites_full(results, rng):
    rows = [{"candidate": f"c{i}", "seconds": float(rng.uniform(0.1, 2)), "n": int(i)}
            for i in range(3)]
    full = common.write_table("thing", rows, title="A thing", notes="why it matters")
    quick = common.write_table("thing", rows[:1], quick=True,
                               extra_stamp={"threads": 7, "rows_from": "random rows"})
    assert (full.name, quick.name) == ("thing.md", "thing-quick.md")
    assert sorted(p.name for p in results.iterdir()) == [
        "thing-quick.csv", "thing-quick.md", "thing.csv", "thing.md"]

    stamp, body = read_csv(results / "thing.csv")
    assert {"device", "commit", "python", "numpy", "date"} <= set(stamp)
    assert "threads" not in stamp
    assert [r["candidate"] for r in body] == ["c0", "c1", "c2"]
    assert [float(r["seconds"]) for r in body] == [r["seconds"] for r in rows]
    text = full.read_text()
    assert text.startswith("## A thing\n") and "why it matters" in text
    assert f"| c2 | {rows[2]['seconds']:.4g} | 2 |" in text

    stamp, body = read_csv(results / "thing-quick.csv")
    assert (stamp["threads"], stamp["rows_from"]) == ("7", "random rows")
    assert len(body) == 1
    assert quick.read_text().startswith("## thing (quick)\n")


def test_write_table_without_rows_keeps_the_stamp(results):
    md = common.write_table("empty", [])
    stamp, body = read_csv(results / "empty.csv")
    assert "commit" in stamp and body == []
    assert "device:" in md.read_text()


def test_cpu_results_are_filed_under_the_cpu_model_and_cores(results, monkeypatch):
    """Tables from different CPUs land in different folders, stamped with the CPU's bf16 paths."""
    cpuinfo = {"model name": "Intel(R) Xeon(R) Platinum 8480+",
               "flags": "fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16"}
    monkeypatch.setattr(common, "_cpuinfo", cpuinfo.get)
    monkeypatch.setattr(common, "usable_cores", lambda: 56)
    assert common.device_slug("cpu") == "cpu-intel-r-xeon-r-platinum-8480-56cores"
    md = common.write_table("thing", [{"x": 1.0}])
    assert md.parent == results.parent / "cpu-intel-r-xeon-r-platinum-8480-56cores"
    stamp, _ = read_csv(md.with_suffix(".csv"))
    assert stamp["device"] == "Intel(R) Xeon(R) Platinum 8480+ (56 cores)"
    assert stamp["cpu_isa"] == "avx2 avx512f avx512_bf16 amx_bf16"
    cpuinfo.update({"model name": "AMD EPYC 7B13", "flags": "fpu avx2"})
    assert common.device_slug("cpu") == "cpu-amd-epyc-7b13-56cores"
    assert common.stamp("cpu")["cpu_isa"] == "avx2"
    # a VM naming Zen 3 and Zen 4 alike: the ISA keeps them apart
    cpuinfo.update({"model name": "AMD EPYC", "flags": "fpu avx2"})
    assert common.device_slug("cpu") == "cpu-amd-epyc-avx2-56cores"
    cpuinfo["flags"] = "fpu avx2 avx512f avx512_bf16"
    assert common.device_slug("cpu") == "cpu-amd-epyc-avx512bf16-56cores"
    cpuinfo.clear()  # no /proc/cpuinfo: the platform's name, the ISA unknown
    monkeypatch.setattr(common.platform, "processor", lambda: "arm")
    assert common.device_slug("cpu") == "cpu-arm-baseline-56cores" and common.stamp("cpu")["cpu_isa"] == "unknown"


def test_every_benchmark_imports_as_a_package_module():
    names = runner.available()
    assert {"io", "xmatch", "xp", "attention", "tokenizer"} <= set(names)
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        assert callable(module.main), name


def fake_benchmark(name, writes=True, fail=False):
    def main(argv):
        if fail:
            raise RuntimeError("broken benchmark")
        if writes:
            common.write_table(name, [{"x": 1.5}], title=f"fake {name}", quick="--quick" in argv)
        return 0
    return types.SimpleNamespace(main=main)


def test_runner_summarises_this_runs_quick_tables_only(results, monkeypatch):
    monkeypatch.setattr(runner, "available", lambda: ["good", "silent", "broken"])
    monkeypatch.setitem(sys.modules, "benchmarks.bench_good", fake_benchmark("good"))
    monkeypatch.setitem(sys.modules, "benchmarks.bench_silent",
                        fake_benchmark("silent", writes=False))
    monkeypatch.setitem(sys.modules, "benchmarks.bench_broken",
                        fake_benchmark("broken", fail=True))
    # Full results and an old quick result must stay out of a quick summary.
    for name in ("good", "silent", "broken"):
        common.write_table(name, [{"x": 2.5}], title=f"full {name}")
    stale = common.write_table("silent", [{"x": 3.5}], title="stale silent", quick=True)
    os.utime(stale, (time.time() - 3600,) * 2)

    assert runner.main(["--quick", "--device", "cpu"]) == 1
    assert (results / "good-quick.md").exists()
    summary = (results / "SUMMARY.md").read_text()
    assert "mode: quick; failed: silent (wrote no silent-quick.md), broken" in summary
    assert "## fake good (quick)" in summary
    assert "full " not in summary and "stale" not in summary


@pytest.mark.parametrize("lengths", [[5, 1, 7], [0, 2, 2], [9]])
def test_mac_counts_match_torch_flop_counter(lengths):
    """benchmarks.flops counts what torch's FlopCounterMode sees of both models' dense layers
    (their attention is a custom / fused kernel that it does not count)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.flops import forward_macs
    from lamfast import LAM, LAMConfig
    from lamfast.baselines.stock_model import StockLAM

    cfg = LAMConfig(width=16, encoder_heads=(2, 1), encoder_ffn=(32, 16), decoder_heads=(2, 1, 1),
                    decoder_ffn=(24, 12, 8), head_mlp=(20, 10), dropout=0.0)
    lam = LAM(cfg).eval()
    stock = StockLAM.from_lam(lam).eval()
    n, r, width = len(lengths), 2, max(max(lengths), 1)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 110, (n, width), generator=g)
    values = torch.randn(n, width, generator=g)
    valid = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    tokens, values = tokens * valid, values * valid
    cu = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    requests = torch.tensor([114, 115])
    # autograd on: the fused oneDNN path of CPU inference does the same dense math but is
    # invisible to the counter
    with FlopCounterMode(display=False) as packed:
        lam(tokens[valid].int(), values[valid], cu, width, requests.repeat(n).int(),
            torch.arange(0, n * r + 1, r, dtype=torch.int32), r)
    with torch.no_grad(), FlopCounterMode(display=False) as padded:
        stock.predict_many(values, tokens, requests)
    assert packed.get_total_flops() == 2 * forward_macs(cfg, lengths, r, attention=False)
    assert padded.get_total_flops() == 2 * forward_macs(cfg, lengths, r, stock=True, attention=False)
    assert forward_macs(cfg, lengths, r, stock=True) > forward_macs(cfg, lengths, r)


def test_scatter_ratio_interval_separates_real_differences_from_noise(rng):
    from benchmarks.accuracy import scatter_ratio

    truth = rng.normal(size=4000)
    same_a, same_b = truth + rng.normal(size=4000), truth + rng.normal(size=4000)
    r, lo, hi = scatter_ratio(truth, same_a, same_b, n_boot=300)
    assert lo < 1 < hi and lo < r < hi
    better = truth + 0.8 * rng.normal(size=4000)
    r, lo, hi = scatter_ratio(truth, better, same_b, n_boot=300)
    assert hi < 1 and abs(r - 0.8) < 0.05


def test_accuracy_reports_the_test_split_alike_in_its_table_and_by_split(tmp_path):
    pytest.importorskip("xgboost")
    pytest.importorskip("matplotlib")
    from benchmarks.accuracy import main
    from lamfast import LAM, LAMConfig
    from lamfast.data.synthetic import make_synthetic
    from lamfast.io.paper_hdf5 import write_paper_hdf5
    from lamfast.reference_stats import paper_normalizer

    cat = make_synthetic(300, seed=5).catalog
    cat.extra["split"] = (np.arange(300) % 3).astype(np.int8)
    write_paper_hdf5(tmp_path / "data.h5", cat)
    LAM(LAMConfig(width=16, encoder_heads=(2,), encoder_ffn=(16,), decoder_heads=(2,), decoder_ffn=(16,),
                  head_mlp=(16,)), normalizer=paper_normalizer()).save(tmp_path / "model")
    out = main(["--data", str(tmp_path / "data.h5"), "--model", str(tmp_path / "model"),
                "--xgb-trees", "5", "--out", str(tmp_path / "results")])
    assert list(out["by_split"]) == ["train", "validation", "test"]
    test_row = out["rows"][0]
    for k in ("teff", "logg", "m_h"):
        assert out["by_split"]["test"][k] == test_row[f"{k}_scatter"] > 0
        assert np.isfinite(out["by_split"]["train"][k])
    assert "scatter by split" in (tmp_path / "results" / "accuracy.md").read_text()


def test_precision_gate_benchmark_tables_every_precision_with_its_speed(results, tmp_path):
    from benchmarks.precision_gate import main
    from lamfast import LAM, LAMConfig
    from lamfast.data.synthetic import make_synthetic
    from lamfast.io.paper_hdf5 import write_paper_hdf5
    from lamfast.reference_stats import paper_normalizer
    from lamfast.vocab import HEADLINE_INPUTS

    cat = make_synthetic(90, seed=3).catalog
    cat.extra["split"] = (np.arange(90) % 3).astype(np.int8)
    complete = np.isfinite(cat.select(list(HEADLINE_INPUTS)).values).all(axis=1)
    n_test = int(np.count_nonzero(complete & (cat.extra["split"] == 2)))    # of 30 test stars
    write_paper_hdf5(tmp_path / "data.h5", cat)
    LAM(LAMConfig(width=16, encoder_heads=(2,), encoder_ffn=(16,), decoder_heads=(2,), decoder_ffn=(16,),
                  head_mlp=(16,)), normalizer=paper_normalizer()).save(tmp_path / "model")
    assert main(["--data", str(tmp_path / "data.h5"), "--model", str(tmp_path / "model"),
                 "--device", "cpu", "--threads", "1", "--repeats", "1"]) == 0
    stamp, body = read_csv(results / "precision_gate-data.csv")
    assert (stamp["stars"], stamp["data"], stamp["model"]) == (str(n_test), "data.h5", "model")
    assert [(r["precision"], r["label"]) for r in body] == [
        (p, k) for p in ("fp32", "bf16") for k in ("teff", "logg", "m_h")]
    for r in body:
        assert r["gate"] in ("pass", "FAIL") and float(r["stars_per_s"]) > 0
        fast_enough = r["precision"] == "fp32" or float(r["speedup"]) > 1
        passed = all(b["gate"] == "pass" for b in body if b["precision"] == r["precision"])
        assert r["may_be_default"] == ("yes" if passed and fast_enough else "no")
    assert str(tmp_path) not in (results / "precision_gate-data.md").read_text()
