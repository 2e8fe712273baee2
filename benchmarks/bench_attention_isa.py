"""The C++ CPU attention kernels of each instruction-set build (avx512, avx2, baseline)
that this CPU runs, side by side on the models' shapes.

The build is chosen once per process (``LAMFAST_CPU_ISA``), so each build runs in its own
child process; the children of all builds take turns, round after round, and each
reports the median of its repeats; the table gives the median over rounds. Ratios are to
the avx2 build (and the baseline), measured in the same rounds.

Cases: B sets with the learned bias slot, one thread.
* ``label``   self-attention of 63-token sets (the headline inputs of labelling);
* ``train``   self-attention, set lengths uniform in [1, 64];
* ``decoder`` 3 requested tokens per star against 63 keys.
Head configs: lam-small's (8x8, 4x16, 2x32) and lam-2024's (16x8, 8x16, 4x32).
Useful FLOP: 4*H*D*Lq*(Lk+1) per set forward (x3.5 for forward+backward).

    python -m benchmarks.bench_attention_isa [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from .common import write_table

HEADS = ((8, 8), (4, 16), (2, 32), (16, 8), (8, 16), (4, 32))


def _lengths(case: str, n: int, rng):
    import numpy as np

    if case == "label":
        return np.full(n, 63), np.full(n, 63)
    if case == "train":
        lq = rng.integers(1, 65, n)
        return lq, lq
    return np.full(n, 3), np.full(n, 63)   # decoder


def _time_heads(lq, lk, heads: int, dim: int, repeats: int, rng) -> list[tuple[str, float, float]]:
    """(mode, median seconds, useful FLOP) of forward and forward+backward on sets of
    lq queries and lk keys (int [B] each), H x D = heads x dim, in this process's build."""
    import time

    import numpy as np

    from lamfast import _core

    cu = lambda x: np.concatenate([[0], np.cumsum(x)]).astype(np.int32)
    cu_q, cu_k = cu(lq), cu(lk)
    make = lambda t: rng.standard_normal((t, heads, dim), dtype=np.float32)
    q, k, v = make(int(lq.sum())), make(int(lk.sum())), make(int(lk.sum()))
    bk, bv = make(1)[0], make(1)[0]
    out, lse, dout = np.empty_like(q), np.empty(q.shape[:2], np.float32), make(len(q))
    dq, dk, dv, dbk, dbv = (np.empty_like(x) for x in (q, k, v, bk, bv))
    scale = dim ** -0.5

    def forward():
        _core.attention_forward(q, k, v, cu_q, cu_k, bk, bv, scale, out, lse, 1)

    def forward_backward():
        forward()
        _core.attention_backward(dout, q, k, v, out, lse, cu_q, cu_k, bk, bv, scale, dq, dk, dv,
                                 dbk, dbv, 1)

    flop = float(4 * heads * dim * (lq * (lk + 1.0)).sum())
    result = []
    for mode, fn, factor in (("fwd", forward, 1.0), ("fwd+bwd", forward_backward, 3.5)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        result.append((mode, statistics.median(times), flop * factor))
    return result


def child(sets: int, repeats: int) -> list[dict]:
    """Times of every case in this process's build: [{case, heads, dim, mode, seconds, flop}]."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for case in ("label", "train", "decoder"):
        lq, lk = _lengths(case, sets, rng)
        for heads, dim in HEADS:
            for mode, seconds, flop in _time_heads(lq, lk, heads, dim, repeats, rng):
                rows.append({"case": case, "heads": heads, "dim": dim, "mode": mode,
                             "seconds": seconds, "flop": flop})
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 sets, 2 rounds (< 1 min)")
    p.add_argument("--sets", type=int, default=None, help="sets per case (default 4096; quick 256)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of all builds (default 5; quick 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case in a child")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sets = args.sets or (256 if args.quick else 4096)
    if args.child:
        print(json.dumps(child(sets, args.repeats)))
        return []
    rounds = args.rounds or (2 if args.quick else 5)
    from lamfast import _core

    isas = _core.attention_isas()
    times: dict[tuple, list[float]] = {}
    flop: dict[tuple, float] = {}
    for r in range(rounds):
        for isa in isas:
            env = {**os.environ, "LAMFAST_CPU_ISA": isa, "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, "-m", "benchmarks.bench_attention_isa", "--child", isa,
                   "--sets", str(sets), "--repeats", str(args.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            for row in json.loads(done.stdout.strip().splitlines()[-1]):
                key = (row["case"], row["heads"], row["dim"], row["mode"], isa)
                times.setdefault(key, []).append(row["seconds"])
                flop[key] = row["flop"]
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    rows = []
    for (case, heads, dim, mode, isa), ts in times.items():
        t = statistics.median(ts)
        others = {other: statistics.median(times[(case, heads, dim, mode, other)]) / t
                  for other in ("avx2", "baseline") if (case, heads, dim, mode, other) in times}
        rows.append({"case": case, "heads_x_dim": f"{heads}x{dim}", "mode": mode, "isa": isa,
                     "sets": sets, "ms": t * 1e3, "sets_per_s": sets / t,
                     "gflop_per_s": flop[(case, heads, dim, mode, isa)] / t / 1e9,
                     "vs_avx2": others.get("avx2", float("nan")),
                     "vs_baseline": others.get("baseline", float("nan"))})
    write_table("attention_isa", rows, title="CPU attention kernels: one build per instruction set",
                notes=(f"{sets} sets a case, one thread, the learned bias slot; median over {rounds} "
                       f"interleaved rounds of each build's median of {args.repeats} calls. vs_avx2, "
                       "vs_baseline: that build's time over this one's (higher: this one faster)."),
                quick=args.quick, extra_stamp={"builds": " ".join(isas), "rounds": rounds})
    return rows


if __name__ == "__main__":
    main()
