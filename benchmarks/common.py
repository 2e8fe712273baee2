"""Shared plumbing of the benchmark scripts: timing, the device/version stamp, and
writing one result table as CSV + markdown under benchmarks/results/<device>/."""

from __future__ import annotations

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


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str = "cpu") -> str:
    """Human name of the device: GPU model for CUDA, CPU model + usable cores otherwise."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cpu_name()} ({cores} cores)"


def device_slug(device: str = "cpu") -> str:
    """Folder name for results: e.g. 'cpu-2cores' or 'nvidia-h100-80gb-hbm3'."""
    if str(device).startswith("cuda"):
        return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"cpu-{cores}cores"


def git_commit() -> str:
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

    info = {"device": device_name(device), "python": platform.python_version(),
            "numpy": numpy.__version__, "commit": git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
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


def write_table(name: str, rows: list[dict], device: str = "cpu", title: str = "",
                notes: str = "") -> Path:
    """Print rows as a table and write results/<device>/<name>.{csv,md}; returns the .md."""
    out = RESULTS / device_slug(device)
    out.mkdir(parents=True, exist_ok=True)
    info = stamp(device)
    keys = list(rows[0]) if rows else []
    with open(out / f"{name}.csv", "w", newline="") as f:
        f.write("".join(f"# {k}: {v}\n" for k, v in info.items()))
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda x: f"{x:.4g}" if isinstance(x, float) else str(x)
    lines = [f"## {title or name}", "",
             " | ".join(f"{k}: {v}" for k, v in info.items()), ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    print(text)
    return out / f"{name}.md"
