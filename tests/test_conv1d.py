# amaranth: UnusedElaboratable=no
"""ResidualEngine: bit-exact against pwg.residual_layer_fixed, cycle-exact against perf.pwg_layer_cycles."""

import dataclasses

import numpy as np
import pytest

from wavefabric.model.perf import pwg_gate_lanes, pwg_layer_cycles
from wavefabric.model.pwg import MAX_SHIFT, PWG_NUMERICS, LayerShifts
from wavefabric.rtl.conv1d import ResidualEngine
from wavefabric.sim.pwg import (
    LayerJob,
    from_block_rows,
    layer_streams,
    random_residual_layer,
    random_upsample_table,
    run_residual_layer,
    run_residual_layers,
    simulate_pwg_layer,
    table_beats,
)
from wavefabric.sim.streams import run_streams, vcd_hint

SMALL = {"residual": 4, "gate": 8, "skip": 4}


def check(result: dict, cycles_equal: bool = True) -> None:
    name = (f"pwg_layer_d{result['dilation']}_f{result['frames']}_{result['rows']}x{result['cols']}"
            f"_seed{result['seed']}")
    hint = f"seed {result['seed']}; {vcd_hint(name)}"
    assert result["bit_exact"], hint
    if cycles_equal:
        assert result["cycles"] == result["model_cycles"], hint


# Dilations 1 and 4 (taps inside a block, across blocks), partial row tiles (rows not dividing G or S + R_ch),
# kernel 1 and 5, one column, a wider gate unit, the fewest frames (both edge rows of the table, one block per
# frame), a last layer (no out 1x1, also with a partial skip tile).
CASES = [
    dict(dilation=1, frames=2, rows=2, cols=4, hop=8, **SMALL),
    dict(dilation=2, frames=3, rows=2, cols=4, hop=4, residual=8, gate=16, skip=8),  # last 1x1 GEMM not waiting
    dict(dilation=4, frames=3, rows=2, cols=4, hop=8, **SMALL),
    dict(dilation=4, frames=5, rows=3, cols=4, hop=8, residual=5, gate=6, skip=3),
    dict(dilation=3, frames=4, rows=4, cols=2, hop=8, kernel_size=5, residual=3, gate=10, skip=2),
    dict(dilation=1, frames=3, rows=2, cols=1, hop=3, kernel_size=1, **SMALL),
    dict(dilation=2, frames=4, rows=2, cols=4, hop=8, gate_lanes=4, **SMALL),
    dict(dilation=1, frames=2, rows=2, cols=4, hop=4, **SMALL),
    dict(dilation=1, frames=3, rows=3, cols=8, hop=8, residual=6, gate=12, skip=5),
    dict(dilation=1, frames=3, rows=2, cols=2, hop=4, residual=2, gate=4, skip=2, gate_lanes=1),  # gate just in time
    dict(dilation=2, frames=3, rows=2, cols=4, hop=8, last=True, **SMALL),
    dict(dilation=1, frames=2, rows=3, cols=4, hop=8, last=True, residual=5, gate=6, skip=4),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_layer_bit_exact_and_cycles_equal_model(case, backend):
    check(simulate_pwg_layer(seed=len(CASES) + case["frames"], **case, backend=backend))


def test_dilation_512_both_edges(backend):
    # T > 2 * 512 + cols: blocks that see the left padding, the right padding and neither.
    check(simulate_pwg_layer(512, 70, 2, 2, seed=7, residual=2, gate=4, skip=2, hop=16, backend=backend))


@pytest.mark.parametrize("seed, dilation, frames", [(0, 1, 2), (1, 4, 3), (2, 64, 19)])
def test_random_stalls_on_every_stream(seed, dilation, frames, backend):
    result = simulate_pwg_layer(dilation, frames, 2, 4, seed=seed, p_valid=0.6, p_ready=0.5, **SMALL,
                                backend=backend)
    check(result, cycles_equal=False)
    assert result["cycles"] > result["model_cycles"]


def test_full_scale_saturates_bit_exact(backend):
    """Weights, aux terms, table and signals over their whole ranges: h, y and x_next saturate; the skip sum
    wraps nowhere."""
    num = PWG_NUMERICS
    rng = np.random.default_rng(11)
    engine = ResidualEngine(2, 4, **SMALL, hop=8, max_dilation=2, max_frames=3)
    layer = random_residual_layer(rng, 4, 8, 4, 3, 2, num)
    w, a = num.weight, num.act
    layer = dataclasses.replace(layer, conv=rng.integers(w.min_int, w.max_int, layer.conv.shape),
                                out=np.full(layer.out.shape, w.max_int))
    table = random_upsample_table(rng, engine)
    table = dataclasses.replace(table, weights=np.where(rng.random(table.weights.shape) < 0.5, w.max_int, w.min_int))
    job = LayerJob(layer, rng.choice([a.min_int, a.max_int], (4, 24)),
                   rng.choice([a.min_int, a.max_int], (8, 3)), np.full((4, 24), a.max_int * 29))
    run = run_residual_layer(engine, job, table, name="pwg_layer_full_scale", backend=backend)
    x_ref, skip_ref = job.model(table, num)
    assert np.isin(x_ref, [a.min_int, a.max_int]).mean() > 0.2  # the case does saturate
    assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, job.skip_in + skip_ref)
    assert run.framing_ok


def consecutive_jobs(rng, layers, residual=4, gate=8, skip=4, table=None, shifts=None):
    """:class:`LayerJob` s of layers chained as in the generator (``x_next`` feeding ``x``, skips summed) for
    ``layers`` = ``[(dilation, frames, kind), ...]`` (kind: "", "last" or "relu": an output layer, fed
    ``relu`` of the skip sum as in the generator, with zero skip_in), and each layer's expected
    ``(x_next, skip_out)``. ``shifts``: each layer's :class:`LayerShifts` (default: the uniform formats')."""
    num = PWG_NUMERICS
    frames = layers[0][1]
    hop = table.weights.shape[1]
    span = 4 << num.act.frac
    x = rng.integers(-span, span, (residual, frames * hop))
    skips = rng.integers(num.act.min_int, num.act.max_int, (skip, frames * hop))
    jobs, expected = [], []
    for n, (dilation, frames, kind) in enumerate(layers):
        t = frames * hop
        layer = random_residual_layer(rng, residual, gate, skip, 3, dilation, num)
        if kind == "relu":
            x = np.clip(skips[:residual], 0, num.act.max_int)
            skips = np.zeros_like(skips)
        job = LayerJob(layer, x[:, :t], rng.integers(-span, span, (gate, frames)), skips[:, :t],
                       last=kind != "", relu=kind == "relu", shifts=shifts[n] if shifts else None)
        x_next, skip_sum = job.model(table, num)
        jobs.append(job)
        expected.append((x_next, job.skip_in + skip_sum))
        x, skips = x_next, job.skip_in + skip_sum
    return jobs, expected


# Three layers of SMALL on 2x4 then the generator's last residual layer and its output layer, and a 4x2 array
# whose last 1x1 tile has three padding rows, which leave the array after the layer's last output.
CHAINS = [
    dict(rows=2, cols=4, hop=4, sizes=SMALL, layers=[(8, 5, ""), (1, 5, ""), (2, 5, ""), (1, 5, "last"),
                                                     (1, 5, "relu")]),
    dict(rows=4, cols=2, hop=4, sizes=dict(residual=3, gate=10, skip=2), layers=[(3, 3, ""), (1, 3, "last")]),
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: f"{c['rows']}x{c['cols']}")
def test_consecutive_layers_load_weights_ahead(chain, backend):
    """One engine, layers of one job back to back (x_next feeding x), each with its own dilation and kind: every
    layer's weights, biases and aux terms load while the previous layer runs, and every layer takes the cycle
    model's count."""
    seed = 5
    rows, cols, hop, sizes, layers = chain["rows"], chain["cols"], chain["hop"], chain["sizes"], chain["layers"]
    engine = ResidualEngine(rows, cols, **sizes, hop=hop, max_dilation=max(d for d, *_ in layers),
                            max_frames=layers[0][1])
    rng = np.random.default_rng(seed)
    table = random_upsample_table(rng, engine)
    jobs, expected = consecutive_jobs(rng, layers, **sizes, table=table)
    name = f"pwg_layers_consecutive_{rows}x{cols}"
    runs = run_residual_layers(engine, jobs, table, name=name, backend=backend)
    hint = f"seed {seed}; {vcd_hint(name)}"
    times = runs[0].streams.times
    end = 0  # the cycle after the previous layer's last output
    loads = max(layers[0][1] * engine.gate_tiles, engine.table_beats)
    for n, (run, job, (x_ref, skip_ref)) in enumerate(zip(runs, jobs, expected, strict=True)):
        assert (job.last or np.array_equal(run.x_next, x_ref)) and np.array_equal(run.skip_out, skip_ref), hint
        assert run.framing_ok, hint
        assert run.cycles == pwg_layer_cycles(rows, cols, job.a.shape[1], hop, job.layer.dilation, **sizes,
                                              gate_lanes=engine.gate_lanes, last=job.last,
                                              loads=0 if n else loads), hint
        if n:  # the layer's last weight, bias and aux word arrived before the previous layer ended
            assert times["w"][(n + 1) * engine.weight_beats - 1] < end, hint
            assert times["bias"][(n + 1) * engine.bias_beats - 1] < end, hint
            assert times["cond"][sum(j.a.shape[1] for j in jobs[:n + 1]) * engine.gate_tiles - 1] < end, hint
        end += run.cycles


def test_layers_take_their_shifts_at_run_time(backend):
    """Each layer of a chain narrows by its own shifts (a checkpoint's formats), the smallest and largest legal
    among them: bit-exact layer after layer, the shifts changing between layers as the generator changes them."""
    seed = 29
    layers = [(2, 2, ""), (1, 2, ""), (4, 2, "last"), (1, 2, "relu")]
    shifts = [LayerShifts(10, 15, 12), LayerShifts(MAX_SHIFT, 0, 14), LayerShifts(16, 9, 13), LayerShifts(0, 20, 0)]
    engine = ResidualEngine(2, 4, **SMALL, hop=4, max_dilation=4, max_frames=2)
    rng = np.random.default_rng(seed)
    table = random_upsample_table(rng, engine)
    jobs, expected = consecutive_jobs(rng, layers, **SMALL, table=table, shifts=shifts)
    name = "pwg_layers_shifts"
    runs = run_residual_layers(engine, jobs, table, seed=seed, p_valid=0.7, p_ready=0.7, name=name,
                               backend=backend)
    for run, job, (x_ref, skip_ref) in zip(runs, jobs, expected, strict=True):
        assert (job.last or np.array_equal(run.x_next, x_ref)) and np.array_equal(run.skip_out, skip_ref), \
            f"seed {seed}; {vcd_hint(name)}"


def test_weights_loaded_ahead_save_the_load_behind_a_slow_source(backend):
    """Every input valid half the time: a layer whose weights loaded during the previous layer starts its first
    block at the array's pace, one whose weights wait for the previous layer (as with a single weight buffer)
    at the weight source's pace, so it takes longer."""
    seed = 9
    engine = ResidualEngine(2, 4, **SMALL, hop=4, max_dilation=4, max_frames=4)
    rng = np.random.default_rng(seed)
    table = random_upsample_table(rng, engine)
    jobs, expected = consecutive_jobs(rng, [(2, 4, ""), (1, 4, "")], table=table)
    cycles = {}
    for ahead in (True, False):
        name = f"pwg_layers_weights_ahead_{ahead}"
        hint = f"seed {seed}; {vcd_hint(name)}"
        runs = run_residual_layers(engine, jobs, table, seed=seed, p_valid=0.5, weights_ahead=ahead, name=name,
                                   backend=backend)
        for run, (x_ref, skip_ref) in zip(runs, expected, strict=True):
            assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, skip_ref), hint
            assert run.framing_ok, hint
        cycles[ahead] = [run.cycles for run in runs]
    hint = f"seed {seed}; cycles with weights ahead {cycles[True]}, without {cycles[False]}"
    assert cycles[True][0] == cycles[False][0], hint  # the first layer is the same run
    assert all(a < b for a, b in zip(cycles[True][1:], cycles[False][1:], strict=True)), hint


def _one_layer(seed: int):
    rng = np.random.default_rng(seed)
    engine = ResidualEngine(2, 4, **SMALL, hop=4, max_dilation=4, max_frames=8)
    table = random_upsample_table(rng, engine)
    job = LayerJob(random_residual_layer(rng, **SMALL, kernel_size=3, dilation=2, num=PWG_NUMERICS),
                   rng.integers(-2000, 2000, (4, 12)), rng.integers(-2000, 2000, (8, 3)),
                   rng.integers(-2000, 2000, (4, 12)))
    inputs, outputs = layer_streams(engine, job)
    inputs["table"] = table_beats(engine, table)
    return engine, table, job, inputs, outputs


@pytest.mark.parametrize("port, beat, flag", [("x", 5, "first"), ("cond", -1, "last"), ("skip_in", 3, "last"),
                                              ("w", 0, "first"), ("bias", -1, "last"), ("table", 2, "first")])
def test_framing_error_on_each_input_is_sticky(port, beat, flag, backend):
    """An input beat whose first / last disagree with the engine's count sets ``error``, which stays set to the
    end; the layer is computed as usual."""
    seed = 17
    engine, table, job, inputs, outputs = _one_layer(seed)
    inputs[port][beat][flag] = not inputs[port][beat][flag]
    name = f"pwg_layer_framing_{port}"
    hint = f"seed {seed}; {vcd_hint(name)}"
    run = run_streams(engine, inputs, outputs, {"frames": 3, "dilation": 2}, seed=seed, p_valid=0.7,
                      p_ready=0.7, tail=1, name=name, backend=backend)
    assert run.flags["error"] == 1, hint
    x_ref, skip_ref = job.model(table, PWG_NUMERICS)
    x_next, ok_x = from_block_rows(run.outputs["x_next"], 4, 12, 4)
    skip_out, ok_s = from_block_rows(run.outputs["skip_out"], 4, 12, 4)
    assert np.array_equal(x_next, x_ref) and np.array_equal(skip_out, job.skip_in + skip_ref) and ok_x and ok_s, hint


def test_verilator_runs_like_amaranth():
    """The exported Verilog on Verilator: back-to-back layers (the last one a last layer) with their weights
    loaded ahead, and a framing error, cycle for cycle and value for value as on Amaranth's simulator."""
    seed = 19
    engine = ResidualEngine(2, 4, **SMALL, hop=4, max_dilation=4, max_frames=8)  # as test_verilator's
    rng = np.random.default_rng(seed)
    table = random_upsample_table(rng, engine)
    jobs, _ = consecutive_jobs(rng, [(1, 5, ""), (4, 5, "last")], table=table)
    runs = [run_residual_layers(engine, jobs, table, seed=seed, p_valid=0.6, p_ready=0.6, backend=backend)
            for backend in ("amaranth", "verilator")]
    assert [run.cycles for run in runs[0]] == [run.cycles for run in runs[1]], f"seed {seed}"
    _, _, _, inputs, outputs = _one_layer(seed)
    inputs["w"][7]["last"] = True
    errors = [run_streams(engine, inputs, outputs, {"frames": 3, "dilation": 2}, seed=seed, p_valid=0.6,
                          p_ready=0.6, tail=1, backend=backend, vivado_verilog=backend == "verilator")
              for backend in ("amaranth", "verilator")]
    for a, b in ((runs[0][0].streams, runs[1][0].streams), errors):
        assert a.outputs == b.outputs and a.flags == b.flags and a.cycles == b.cycles, f"seed {seed}"
        assert all(np.array_equal(a.times[s], b.times[s]) for s in a.times), f"seed {seed}: transfer cycles differ"
    assert runs[0][0].streams.flags["error"] == 0 and errors[0].flags["error"] == 1, f"seed {seed}"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), "rows must be an integer >= 1"),
    (dict(rows=2, cols=6), "cols must be a power of two dividing hop = 256"),
    (dict(rows=2, cols=4, hop=6), "cols must be a power of two dividing hop = 6"),
    (dict(rows=2, cols=4, gate=7), "gate must be an even integer"),
    (dict(rows=2, cols=4, kernel_size=4), "kernel_size must be an odd integer"),
    (dict(rows=2, cols=4, residual=0), "residual must be an integer >= 1"),
    (dict(rows=2, cols=4, max_dilation=0), "max_dilation must be an integer >= 1"),
    (dict(rows=2, cols=4, max_frames=1), r"max_frames must be at least max\(1, 2 \* cond_edge\) = 2"),
    (dict(rows=2, cols=4, cond_offset=5), "cond_offset must be an integer from 0 to 4"),
    (dict(rows=2, cols=4, gate_lanes=3), "gate_lanes must be a power of two from 1"),
    (dict(rows=2, cols=4, gate_lanes=8), "gate_lanes must be a power of two from 1"),
    (dict(rows=4, cols=8, residual=1, gate=8, skip=1, cond_taps=1, cond_offset=0), "the gate unit cannot keep up"),
    (dict(rows=2, cols=4, numerics=None), "numerics must be a Numerics"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualEngine(**kwargs)


def test_ljspeech_sizes_elaborate_with_one_gate_lane():
    engine = ResidualEngine(8, 8)
    assert engine.gate_lanes == pwg_gate_lanes(8, 8, 64, 128, 64, 5, 3) == 1
    assert engine.k_gate == 3 * 64 + 5 and engine.weight_beats == 16 * 192 + 16 * 64
    assert engine.table_beats == 3 * 32 * 5
