"""Simulation speed: the 8x8 GEMM engine on Verilator against Amaranth's simulator, through the project's API.

Prints one JSON object. For each operand width (the 16-bit default and int8, the width the design notes
measured), both backends run :func:`wavefabric.sim.gemm.simulate_gemm` on the 8x8 engine:

- ``verilator``: the full PWG-sized GEMM (128 x 192) @ (192 x 1024), 393k cycles, built once (``compile_seconds``,
  a fresh build in an empty cache) and then run again from the cache: ``cycles_per_second`` is simulated cycles
  over the model's run time (stimulus and result file I/O included, compile time excluded);
- ``amaranth``: a smaller GEMM of the same engine, (16 x 64) @ (64 x 32), in Amaranth's simulator;
- ``speedup``: the ratio of the two rates. Both runs are checked bit-exact and cycle-exact.

Usage: ``python benchmarks/verilator.py [--quick]`` (``--quick``: 16-bit only).
"""

from __future__ import annotations

import argparse
import os
import tempfile

from report import publish, table

from wavefabric.model.fixed import QFormat
from wavefabric.sim.gemm import simulate_gemm
from wavefabric.sim.verilator import CACHE_ENV, verilator_version

FULL = (128, 1024, 192)
SMALL = (16, 32, 64)
FORMATS = {"int16": (QFormat(16, 14), QFormat(16, 12)), "int8": (QFormat(8, 6), QFormat(8, 4))}


def measure(name: str, weight: QFormat, act: QFormat) -> dict:
    m, n, k = FULL
    runs = [simulate_gemm(8, 8, m, n, k, weight=weight, act=act, backend="verilator") for _ in range(2)]
    small = simulate_gemm(8, 8, *SMALL, weight=weight, act=act, backend="amaranth")
    for run in [*runs, small]:
        if not run["bit_exact"] or run["cycles"] != run["model_cycles"]:
            raise RuntimeError(f"{name}: a run is not bit-exact or cycle-exact: {run}")
    return {
        "weight": str(weight), "act": str(act),
        "verilator": {"gemm": FULL, "cycles": runs[1]["cycles"], "compile_seconds": runs[0]["compile_seconds"],
                      "cached_compile_seconds": runs[1]["compile_seconds"],
                      "cycles_per_second": runs[1]["cycles_per_second"]},
        "amaranth": {"gemm": SMALL, "cycles": small["cycles"], "cycles_per_second": small["cycles_per_second"]},
        "speedup": runs[1]["cycles_per_second"] / small["cycles_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16-bit operands only")
    args = parser.parse_args()
    formats = {"int16": FORMATS["int16"]} if args.quick else FORMATS
    # An empty cache, so that the first build's time is a real compile time.
    with tempfile.TemporaryDirectory(prefix="wavefabric-bench-") as cache:
        os.environ[CACHE_ENV] = cache
        results = {name: measure(name, *fmt) for name, fmt in formats.items()}
    result = {"verilator": verilator_version(), "target_cycles_per_second": 1_000_000, **results}
    rows = [{"operands": name, "Verilator cycles/s": f"{r['verilator']['cycles_per_second']:,.0f}",
             "compile s (empty cache)": f"{r['verilator']['compile_seconds']:.1f}",
             "compile s (cached)": f"{r['verilator']['cached_compile_seconds']:.1f}",
             "Amaranth cycles/s": f"{r['amaranth']['cycles_per_second']:,.0f}", "speed-up": f"{r['speedup']:,.0f}x"}
            for name, r in results.items()]
    publish("verilator", "Simulation speed: Verilator against Amaranth's simulator", result,
            f"The 8x8 GEMM engine through `simulate_gemm(..., backend=...)`: Verilator {result['verilator']} runs "
            "the full (128 x 192) @ (192 x 1024) GEMM (393,236 cycles; compile time excluded, stimulus and result "
            "I/O included), Amaranth's simulator a (16 x 64) @ (64 x 32) one; both bit-exact and cycle-exact. "
            "Target: 1 M cycles/s.\n\n" + table(rows, list(rows[0])) + "\n\nThe model is evaluated twice per "
            "cycle (the handshakes are combinational), and Verilator recomputes all logic that depends on a "
            "top-level input at every evaluation. That logic is kept small: the Verilator build has no reset "
            "input (it would reach every register's next state), and the array's global stall depends only on "
            "registers (the engine's skid register in front of `c`), not on `c.ready`.")

if __name__ == "__main__":
    main()
