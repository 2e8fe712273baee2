"""Run every benchmark this machine can run and write a summary.

    python -m benchmarks [--quick] [--only tokenizer xmatch ...]
    python -m benchmarks --summarize [--only attention model ...]   # no runs: tables already written


Each `benchmarks/bench_<name>.py` exposes `main(argv)`; it picks CPU or GPU candidates
itself and writes results/<device>/<name>.{csv,md} (<name>-quick.* with --quick). This
runner concatenates the markdown of the run into results/<device>/SUMMARY.md; on a GPU
machine that includes the CPU-only benchmarks, whose tables land in the CPU's folder.
``--summarize`` runs nothing: it concatenates the tables already there (what
benchmarks/gpu_check.sh does after running each benchmark as a phase of its own).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from .common import RESULTS, device_slug, result_stem, stamp


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens)")
    p.add_argument("--only", nargs="*", choices=available(), help="run just these")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing; write SUMMARY.md from the tables already written")
    args = p.parse_args(argv)
    device = args.device
    if device is None:
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    out = RESULTS / device_slug(device)
    folders = [out, RESULTS / device_slug("cpu")]
    sections, failed = [], []
    if args.summarize:
        return summarize(args.only or available(), out, folders, device, args.quick)
    for name in args.only or available():
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        started = time.time()
        try:
            importlib.import_module(f"benchmarks.bench_{name}").main(
                (["--quick"] if args.quick else []))
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        # The table this run wrote (a stale one from an earlier run would mislead).
        written = [md for md in (f / f"{result_stem(name, args.quick)}.md" for f in folders)
                   if md.exists() and md.stat().st_mtime >= started - 1]
        if not written:  # a benchmark that ran but wrote no table is a broken one
            failed.append(f"{name} (wrote no {result_stem(name, args.quick)}.md)")
            continue
        sections.append(written[0].read_text())
        print(f"({name}: {time.perf_counter() - t0:.0f} s)")
    info = stamp(device)
    head = ["# lamfast benchmark summary", "",
            " | ".join(f"{k}: {v}" for k, v in info.items()), "",
            f"mode: {'quick' if args.quick else 'full'}"
            + (f"; failed: {', '.join(failed)}" if failed else ""), ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "SUMMARY.md").write_text("\n".join(head) + "\n" + "\n".join(sections))
    print(f"summary: {out / 'SUMMARY.md'}")
    return 1 if failed else 0


def summarize(names, out, folders, device, quick) -> int:
    """SUMMARY.md of the tables already written (newest of the device's and the CPU's folder)."""
    sections, missing = [], []
    for name in names:
        found = [md for md in (f / f"{result_stem(name, quick)}.md" for f in folders) if md.exists()]
        if found:
            sections.append(max(found, key=lambda md: md.stat().st_mtime).read_text())
        else:
            missing.append(name)
    info = stamp(device)
    head = ["# lamfast benchmark summary", "",
            " | ".join(f"{k}: {v}" for k, v in info.items()), "",
            f"mode: {'quick' if quick else 'full'}, tables of separate runs"
            + (f"; missing: {', '.join(missing)}" if missing else ""), ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "SUMMARY.md").write_text("\n".join(head) + "\n" + "\n".join(sections))
    print(f"summary: {out / 'SUMMARY.md'}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    return 0  # a missing table is its own benchmark's failure, already reported


if __name__ == "__main__":
    sys.exit(main())
