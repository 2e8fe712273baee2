"""Shared plumbing of the benchmark scripts: timing, the device/version stamp, and
writing one result table as CSV + markdown under benchmarks/results/<device>/.

<device> names the hardware, so tables from different machines never overwrite or pass
for each other: the GPU model (``nvidia-h100-80gb-hbm3``), or the CPU model and the cores
the run could use (``cpu-amd-epyc-2cores``, ``cpu-intel-r-xeon-r-platinum-8480-56cores``)."""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Largest batch of stars the stock padded model gets on a GPU: its SDPA picks cuDNN on an
# H100, whose attention graph fails to run at 65,536 stars (torch 2.11) and runs at 8,192.
STOCK_GPU_BATCH = 8192


# CPU features that pick the bf16 kernel paths (AMX tiles, AVX-512 BF16, AVX2 only).
BF16_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _cpuinfo(key: str) -> str | None:
    """The first ``key`` entry of /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model as the OS names it (/proc/cpuinfo "model name")."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_isa() -> str:
    """Which of :data:`BF16_FLAGS` this CPU has, space-separated ("" where unknown)."""
    flags = set((_cpuinfo("flags") or "").split())
    return " ".join(f for f in BF16_FLAGS if f in flags)


def slug(text: str) -> str:
    """Lower-case letters and digits, runs of anything else as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def device_name(device: str = "cpu") -> str:
    """Human name of the device: GPU model for CUDA, CPU model + usable cores otherwise."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({usable_cores()} cores)"


def device_slug(device: str = "cpu") -> str:
    """Folder name for results: the GPU model ('nvidia-h100-80gb-hbm3') or
    'cpu-<CPU model>-<usable cores>cores' ('cpu-intel-r-xeon-r-platinum-8480-56cores').

    A virtual machine may name its CPU by make alone ('AMD EPYC' for Zen 3 and Zen 4
    alike); such a name, without a model number, gets the CPU's best matrix/vector ISA
    added ('cpu-amd-epyc-avx2-2cores', 'cpu-amd-epyc-avx512bf16-2cores'), so two CPUs of
    one name never share a folder."""
    if str(device).startswith("cuda"):
        return slug(device_name(device))
    name = slug(cpu_name())
    if not any(ch.isdigit() for ch in name):
        name += f"-{isa_tag()}"
    return f"cpu-{name}-{usable_cores()}cores"


def isa_tag() -> str:
    """The best of this CPU's bf16/SIMD levels: amx, avx512bf16, avx512, avx2 or baseline."""
    flags = set((_cpuinfo("flags") or "").split())
    for tag, flag in (("amx", "amx_bf16"), ("avx512bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return tag
    return "baseline"


def git_commit() -> str:
    """Short commit of this checkout (+ "-dirty"); LAMFAST_COMMIT names it where the
    benchmarks run from a copy without .git (e.g. a GPU machine handed the working tree)."""
    if os.environ.get("LAMFAST_COMMIT"):
        return os.environ["LAMFAST_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stamp(device: str = "cpu") -> dict:
    """Where and with what a result was measured."""
    import numpy

    info = {"device": device_name(device)}
    if not str(device).startswith("cuda"):  # the bf16 paths a CPU result ran on
        info["cpu_isa"] = cpu_isa() or "unknown"
    info.update({"python": platform.python_version(), "numpy": numpy.__version__,
                 "commit": git_commit(),
                 "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    for mod in ("torch", "triton", "lamfast"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # optional in a given environment
            pass
    return info


def median_time(fn, repeats: int = 5, warmup: int = 1, sync=None) -> float:
    """Median wall seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def result_stem(name: str, quick: bool = False) -> str:
    """File stem of a result: quick runs get their own files so they never overwrite full ones."""
    return f"{name}-quick" if quick else name


def write_table(name: str, rows: list[dict], device: str = "cpu", title: str = "",
                notes: str = "", *, quick: bool = False,
                extra_stamp: dict | None = None) -> Path:
    """Print rows as a table and write results/<device>/<name>[-quick].{csv,md}.

    Parameters
    ----------
    name : result name, the benchmark module's name without ``bench_``.
    rows : one dict per table row, all with the same keys (the columns, in order).
    device : "cpu" or a CUDA device; picks the results folder and the stamp's device.
    title, notes : markdown heading and the text printed above the table.
    quick : a ``--quick`` run; written to ``<name>-quick.*``.
    extra_stamp : benchmark-specific stamp entries (thread counts, data source, versions
        of the libraries compared), appended to the common stamp.

    Returns
    -------
    Path of the markdown file.
    """
    out = RESULTS / device_slug(device)
    out.mkdir(parents=True, exist_ok=True)
    info = {**stamp(device), **(extra_stamp or {})}
    stem = result_stem(name, quick)
    keys = list(rows[0]) if rows else []
    with open(out / f"{stem}.csv", "w", newline="") as f:
        f.write("".join(f"# {k}: {v}\n" for k, v in info.items()))
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    def fmt(x):  # 4 significant digits, but whole numbers (not 1.2e+05) for large rates
        if not isinstance(x, float):
            return str(x)
        return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"
    lines = [f"## {title or name}" + (" (quick)" if quick else ""), "",
             " | ".join(f"{k}: {v}" for k, v in info.items()), ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(text)
    print(text)
    return out / f"{stem}.md"


def torch_device(name: str = "auto", threads: int = 2):
    """The torch device a model benchmark runs on ("auto": CUDA if available); on the
    CPU, torch gets ``threads`` threads so runs on shared machines are comparable."""
    import torch

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    return device


def model_bench_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """Flags shared by the model benchmarks: --presets, --repeats, --threads, --device, --quick."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["lam-2024", "lam-small"])
    p.add_argument("--repeats", type=int, default=None, help="timed runs per candidate")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch and lamfast)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p
