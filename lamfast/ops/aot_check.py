"""Compile every shipped Triton kernel configuration for a GPU target without a GPU.

Compile errors, register counts and spills show up on any machine (CI included):

    python -m lamfast.ops.aot_check [--arch 90] [--jobs 2] [--json]

Triton reads TRITON_INTERPRET when kernels are defined, so run this in a process where it
is unset (the tests start it as a subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor


def _resource_usage(cubin: bytes) -> dict:
    """Registers, local memory (spills) and stack bytes per thread, from cuobjdump."""
    import triton.backends.nvidia as nvidia

    tool = os.path.join(os.path.dirname(nvidia.__file__), "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    usage = {key.lower(): int(re.search(rf"\b{key}:(\d+)", text).group(1))
             for key in ("REG", "LOCAL", "STACK", "SHARED")}
    # Our kernels call no functions, so any stack frame or local memory holds spills.
    return {"registers": usage["reg"], "spill_bytes": usage["local"] + usage["stack"],
            "shared_bytes": usage["shared"]}


def _compile_one(job):
    from .attention_triton import compile_for_target

    backward, dtype, has_bias, cfg, arch = job
    row = {"kernel": "bwd" if backward else "fwd", "dtype": str(dtype).replace("torch.", ""),
           "has_bias": has_bias, **cfg.__dict__, "arch": arch}
    try:
        compiled = compile_for_target(backward, dtype, has_bias, cfg, arch)
        row.update(_resource_usage(compiled.asm["cubin"]), ok=True)
    except Exception as e:  # report every failing configuration, not just the first
        row.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000])
    return row


def check_all(arch: int = 90, jobs: int = 2, quick: bool = False) -> list[dict]:
    """Compile each shipped configuration; ``quick`` skips the ones whose code is a subset
    of another's (no-bias variants, bf16 which lowers like fp16)."""
    import torch

    from .attention_triton import shipped_configs

    configs = (shipped_configs((torch.float32, torch.float16), (True,)) if quick
               else shipped_configs())
    todo = [(*c, arch) for c in configs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_compile_one, todo))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (90 = H100)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fp32/fp16 with bias only")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    rows = check_all(args.arch, args.jobs, args.quick)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            detail = (f"regs {r['registers']:3d} spill {r['spill_bytes']} B" if r["ok"]
                      else r["error"].splitlines()[0])
            print(f"{r['kernel']} {r['dtype']:8s} bias={r['has_bias']!s:5s} "
                  f"M{r['block_m']} N{r['block_n']} D{r['block_d']} w{r['num_warps']}: {detail}")
    return 0 if all(r["ok"] and r["spill_bytes"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
