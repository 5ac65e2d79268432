# amaranth: UnusedElaboratable=no
"""ResidualEngine: bit-exact against pwg.residual_layer_fixed, cycle-exact against perf.pwg_layer_cycles."""

import dataclasses

import numpy as np
import pytest

from wavefabric.model.perf import pwg_gate_lanes, pwg_layer_cycles
from wavefabric.model.pwg import PWG_NUMERICS, residual_layer_fixed
from wavefabric.rtl.conv1d import ResidualEngine
from wavefabric.sim.pwg import random_residual_layer, run_residual_layer, run_residual_layers, simulate_pwg_layer
from wavefabric.sim.streams import vcd_hint

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


def test_consecutive_layers_change_t_and_dilation():
    """One engine, three layers back to back (x_next feeding x), each with its own T and dilation."""
    num = PWG_NUMERICS
    rng = np.random.default_rng(5)
    engine = ResidualEngine(2, 4, max_dilation=8, max_t=30, **SMALL)
    span = 4 << num.act.frac
    jobs, expected = [], []
    x = rng.integers(-span, span, (4, 30))
    c = rng.integers(-span, span, (4, 30))
    skips = np.zeros((4, 30), dtype=np.int64)
    for dilation in (8, 1, 2):
        layer = random_residual_layer(rng, 4, 8, 4, 4, 3, dilation, num)
        x_next, skip = residual_layer_fixed(x, c, layer, num)
        jobs.append((layer, x, c, skips))
        expected.append((x_next, skips + skip))
        x, skips = x_next, skips + skip
    jobs[2] = (jobs[2][0], jobs[2][1][:, :17], c[:, :17], jobs[2][3][:, :17])  # a shorter last layer
    expected[2] = tuple(v[:, :17] for v in residual_layer_fixed(jobs[2][1], c[:, :17], jobs[2][0], num))
    expected[2] = (expected[2][0], jobs[2][3] + expected[2][1])
    runs = run_residual_layers(engine, jobs, name="pwg_layers_consecutive")
    for run, (x_ref, skip_ref) in zip(runs, expected, strict=True):
        assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, skip_ref) and run.framing_ok
    assert runs[0].cycles == pwg_layer_cycles(2, 4, 30, 8, gate_lanes=engine.gate_lanes, **SMALL)


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
