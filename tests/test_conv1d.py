# amaranth: UnusedElaboratable=no
"""ResidualEngine: bit-exact against pwg.residual_layer_fixed, cycle-exact against perf.pwg_layer_cycles."""

import dataclasses

import numpy as np
import pytest

from wavefabric.model.perf import pwg_gate_lanes, pwg_layer_cycles
from wavefabric.model.pwg import PWG_NUMERICS, residual_layer_fixed
from wavefabric.rtl.conv1d import ResidualEngine
from wavefabric.sim.pwg import (
    from_block_rows,
    layer_streams,
    random_residual_layer,
    run_residual_layer,
    run_residual_layers,
    simulate_pwg_layer,
)
from wavefabric.sim.streams import run_streams, vcd_hint

SMALL = {"residual": 4, "gate": 8, "skip": 4, "aux": 4}


def check(result: dict, cycles_equal: bool = True) -> None:
    name = (f"pwg_layer_d{result['dilation']}_t{result['t']}_{result['rows']}x{result['cols']}"
            f"_seed{result['seed']}")
    hint = f"seed {result['seed']}; {vcd_hint(name)}"
    assert result["bit_exact"], hint
    if cycles_equal:
        assert result["cycles"] == result["model_cycles"], hint


# Dilations 1 and 4 (taps inside a block, across blocks), T not a multiple of cols, partial row tiles (rows not
# dividing G or S + R_ch), kernel 1 and 5, one column, a wider gate unit, one block only.
CASES = [
    dict(dilation=1, t=13, rows=2, cols=4, **SMALL),
    dict(dilation=2, t=12, rows=2, cols=4, residual=8, gate=16, skip=8, aux=10),  # last 1x1 GEMM not waiting
    dict(dilation=4, t=20, rows=2, cols=4, **SMALL),
    dict(dilation=4, t=37, rows=3, cols=4, residual=5, gate=6, skip=3, aux=2),
    dict(dilation=3, t=30, rows=4, cols=2, kernel_size=5, residual=3, gate=10, skip=2, aux=3),
    dict(dilation=1, t=9, rows=2, cols=1, kernel_size=1, **SMALL),
    dict(dilation=2, t=30, rows=2, cols=4, gate_lanes=4, **SMALL),
    dict(dilation=1, t=3, rows=2, cols=4, **SMALL),
    dict(dilation=1, t=21, rows=3, cols=8, residual=6, gate=12, skip=5, aux=7),
    dict(dilation=1, t=12, rows=2, cols=2, residual=2, gate=4, skip=2, aux=3, gate_lanes=1),  # gate just in time
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_layer_bit_exact_and_cycles_equal_model(case, backend):
    check(simulate_pwg_layer(seed=len(CASES) + case["t"], **case, backend=backend))


def test_dilation_512_both_edges(backend):
    # T > 2 * 512 + cols: blocks that see the left padding, the right padding and neither.
    check(simulate_pwg_layer(512, 1100, 2, 2, seed=7, residual=2, gate=4, skip=2, aux=2, backend=backend))


@pytest.mark.parametrize("seed, dilation, t", [(0, 1, 19), (1, 4, 26), (2, 64, 150)])
def test_random_stalls_on_every_stream(seed, dilation, t, backend):
    result = simulate_pwg_layer(dilation, t, 2, 4, seed=seed, p_valid=0.6, p_ready=0.5, **SMALL, backend=backend)
    check(result, cycles_equal=False)
    assert result["cycles"] > result["model_cycles"]


def test_full_scale_saturates_bit_exact(backend):
    """Weights and signals over their whole ranges: h, y and x_next saturate; the skip sum wraps nowhere."""
    num = PWG_NUMERICS
    rng = np.random.default_rng(11)
    engine = ResidualEngine(2, 4, max_dilation=2, max_t=24, **SMALL)
    layer = random_residual_layer(rng, 4, 8, 4, 4, 3, 2, num)
    w, a = num.weight, num.act
    layer = dataclasses.replace(layer, conv=rng.integers(w.min_int, w.max_int, layer.conv.shape),
                                out=np.full(layer.out.shape, w.max_int))
    x = rng.choice([a.min_int, a.max_int], (4, 24))
    c = rng.integers(a.min_int, a.max_int, (4, 24), endpoint=True)
    skip_in = np.full((4, 24), a.max_int * 29)
    run = run_residual_layer(engine, layer, x, c, skip_in, name="pwg_layer_full_scale", backend=backend)
    x_ref, skip_ref = residual_layer_fixed(x, c, layer, num)
    assert np.isin(x_ref, [a.min_int, a.max_int]).mean() > 0.2  # the case does saturate
    assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, skip_in + skip_ref)
    assert run.framing_ok


def consecutive_jobs(rng, layers, residual=4, gate=8, skip=4, aux=4):
    """``(layer, x, c, skip_in)`` of layers chained as in the generator (``x_next`` feeding ``x``, skips summed)
    for ``layers`` = ``[(dilation, T), ...]``, and each layer's expected ``(x_next, skip_out)``."""
    num = PWG_NUMERICS
    t = max(t for _, t in layers)
    span = 4 << num.act.frac
    x, c = rng.integers(-span, span, (residual, t)), rng.integers(-span, span, (aux, t))
    skips = rng.integers(num.act.min_int, num.act.max_int, (skip, t))
    jobs, expected = [], []
    for dilation, t in layers:  # T may only shrink: a layer takes a prefix of the previous x_next
        layer = random_residual_layer(rng, residual, gate, skip, aux, 3, dilation, num)
        job = (layer, x[:, :t], c[:, :t], skips[:, :t])
        x_next, skip_sum = residual_layer_fixed(*job[1:3], layer, num)
        jobs.append(job)
        expected.append((x_next, job[3] + skip_sum))
        x, skips = x_next, job[3] + skip_sum
    return jobs, expected


# Three layers of SMALL on 2x4, and a 4x2 array whose last 1x1 tile has three padding rows, which leave the array
# after the layer's last output.
CHAINS = [
    dict(rows=2, cols=4, sizes=SMALL, layers=[(8, 30), (1, 30), (2, 17)]),
    dict(rows=4, cols=2, sizes=dict(residual=3, gate=10, skip=2, aux=3), layers=[(3, 12), (1, 12)]),
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: f"{c['rows']}x{c['cols']}")
def test_consecutive_layers_load_weights_ahead(chain, backend):
    """One engine, layers back to back (x_next feeding x), each with its own T and dilation: every layer's
    weights and biases load while the previous layer runs, and every layer takes the cycle model's count."""
    seed = 5
    rows, cols, sizes, layers = chain["rows"], chain["cols"], chain["sizes"], chain["layers"]
    engine = ResidualEngine(rows, cols, max_dilation=max(d for d, _ in layers), max_t=layers[0][1], **sizes)
    jobs, expected = consecutive_jobs(np.random.default_rng(seed), layers, **sizes)
    name = f"pwg_layers_consecutive_{rows}x{cols}"
    runs = run_residual_layers(engine, jobs, name=name, backend=backend)
    hint = f"seed {seed}; {vcd_hint(name)}"
    times = runs[0].streams.times
    end = 0  # the cycle after the previous layer's last output
    for n, (run, (layer, x, *_), (x_ref, skip_ref)) in enumerate(zip(runs, jobs, expected, strict=True)):
        assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, skip_ref), hint
        assert run.framing_ok, hint
        assert run.cycles == pwg_layer_cycles(rows, cols, x.shape[1], layer.dilation, **sizes,
                                              gate_lanes=engine.gate_lanes), hint
        if n:  # the layer's last weight and bias arrived before the previous layer ended
            assert times["w"][(n + 1) * engine.weight_beats - 1] < end, hint
            assert times["bias"][(n + 1) * engine.bias_beats - 1] < end, hint
        end += run.cycles


def test_weights_loaded_ahead_save_the_load_behind_a_slow_source(backend):
    """Every input valid half the time: a layer whose weights loaded during the previous layer starts its first
    block at the array's pace, one whose weights wait for the previous layer (as with a single weight buffer)
    at the weight source's pace, so it takes longer."""
    seed = 9
    engine = ResidualEngine(2, 4, max_dilation=4, max_t=16, **SMALL)
    jobs, expected = consecutive_jobs(np.random.default_rng(seed), [(2, 16), (1, 16)])
    cycles = {}
    for ahead in (True, False):
        name = f"pwg_layers_weights_ahead_{ahead}"
        hint = f"seed {seed}; {vcd_hint(name)}"
        runs = run_residual_layers(engine, jobs, seed=seed, p_valid=0.5, weights_ahead=ahead, name=name,
                                   backend=backend)
        for run, (x_ref, skip_ref) in zip(runs, expected, strict=True):
            assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, skip_ref), hint
            assert run.framing_ok, hint
        cycles[ahead] = [run.cycles for run in runs]
    hint = f"seed {seed}; cycles with weights ahead {cycles[True]}, without {cycles[False]}"
    assert cycles[True][0] == cycles[False][0], hint  # the first layer is the same run
    assert all(a < b for a, b in zip(cycles[True][1:], cycles[False][1:], strict=True)), hint


@pytest.mark.parametrize("port, beat, flag", [("x", 5, "first"), ("c", -1, "last"), ("skip_in", 3, "last"),
                                              ("w", 0, "first"), ("bias", -1, "last")])
def test_framing_error_on_each_input_is_sticky(port, beat, flag, backend):
    """An input beat whose first / last disagree with the engine's count sets ``error``, which stays set to the
    end; the layer is computed as usual."""
    seed = 17
    rng = np.random.default_rng(seed)
    engine = ResidualEngine(2, 4, max_dilation=4, max_t=32, **SMALL)
    layer = random_residual_layer(rng, **SMALL, kernel_size=3, dilation=2, num=PWG_NUMERICS)
    x, c, skip_in = (rng.integers(-2000, 2000, (4, 10)) for _ in range(3))
    inputs, outputs = layer_streams(engine, layer, x, c, skip_in)
    inputs[port][beat][flag] = not inputs[port][beat][flag]
    name = f"pwg_layer_framing_{port}"
    hint = f"seed {seed}; {vcd_hint(name)}"
    run = run_streams(engine, inputs, outputs, {"t": 10, "dilation": 2}, seed=seed, p_valid=0.7, p_ready=0.7,
                      tail=1, name=name, backend=backend)
    assert run.flags["error"] == 1, hint
    x_ref, skip_ref = residual_layer_fixed(x, c, layer, PWG_NUMERICS)
    x_next, ok_x = from_block_rows(run.outputs["x_next"], 4, 10, 4)
    skip_out, ok_s = from_block_rows(run.outputs["skip_out"], 4, 10, 4)
    assert np.array_equal(x_next, x_ref) and np.array_equal(skip_out, skip_in + skip_ref) and ok_x and ok_s, hint


def test_verilator_runs_like_amaranth():
    """The exported Verilog on Verilator: back-to-back layers with their weights loaded ahead, and a framing
    error, cycle for cycle and value for value as on Amaranth's simulator."""
    seed = 19
    engine = ResidualEngine(2, 4, max_dilation=4, max_t=32, **SMALL)  # as test_verilator's, sharing its builds
    jobs, _ = consecutive_jobs(np.random.default_rng(seed), [(1, 20), (4, 9)])
    runs = [run_residual_layers(engine, jobs, seed=seed, p_valid=0.6, p_ready=0.6, backend=backend)
            for backend in ("amaranth", "verilator")]
    assert [run.cycles for run in runs[0]] == [run.cycles for run in runs[1]], f"seed {seed}"
    layer, x, c, skip_in = jobs[0]
    inputs, outputs = layer_streams(engine, layer, x, c, skip_in)
    inputs["w"][7]["last"] = True
    errors = [run_streams(engine, inputs, outputs, {"t": 20, "dilation": 1}, seed=seed, p_valid=0.6, p_ready=0.6,
                          tail=1, backend=backend, vivado_verilog=backend == "verilator")
              for backend in ("amaranth", "verilator")]
    for a, b in ((runs[0][0].streams, runs[1][0].streams), errors):
        assert a.outputs == b.outputs and a.flags == b.flags and a.cycles == b.cycles, f"seed {seed}"
        assert all(np.array_equal(a.times[s], b.times[s]) for s in a.times), f"seed {seed}: transfer cycles differ"
    assert runs[0][0].streams.flags["error"] == 0 and errors[0].flags["error"] == 1, f"seed {seed}"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), "rows must be an integer >= 1"),
    (dict(rows=2, cols=6), "cols must be a power of two"),
    (dict(rows=2, cols=4, gate=7), "gate must be an even integer"),
    (dict(rows=2, cols=4, kernel_size=4), "kernel_size must be an odd integer"),
    (dict(rows=2, cols=4, residual=0), "residual must be an integer >= 1"),
    (dict(rows=2, cols=4, max_dilation=0), "max_dilation must be an integer >= 1"),
    (dict(rows=2, cols=4, gate_lanes=3), "gate_lanes must be a power of two from 1"),
    (dict(rows=2, cols=4, gate_lanes=8), "gate_lanes must be a power of two from 1"),
    (dict(rows=4, cols=8, residual=1, gate=8, skip=1, aux=1), "the gate unit cannot keep up"),
    (dict(rows=2, cols=4, numerics=None), "numerics must be a Numerics"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualEngine(**kwargs)


def test_ljspeech_sizes_elaborate_with_one_gate_lane():
    engine = ResidualEngine(8, 8)
    assert engine.gate_lanes == pwg_gate_lanes(8, 8, 64, 128, 64, 80, 3) == 1
    assert engine.k_gate == 3 * 64 + 80 and engine.weight_beats == 16 * 272 + 16 * 64
