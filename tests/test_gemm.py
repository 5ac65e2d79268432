# amaranth: UnusedElaboratable=no
"""GemmEngine: bit-exact against kernels.linear, cycle-exact against perf.gemm_cycles, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics, linear
from wavefabric.model.perf import GEMM_LATENCY_BASE, estimate_gemm, gemm_cycles, gemm_fill_drain_cycles
from wavefabric.rtl.gemm import GemmEngine
from wavefabric.sim.gemm import gemm_beats, gemm_result, run_gemm, simulate_gemm
from wavefabric.sim.streams import run_streams, vcd_hint

W16, A16 = QFormat(16, 14), QFormat(16, 12)


def check(engine, a, b, bias, *, seed=0, name="gemm", backend="amaranth", **stalls):
    """Run one GEMM; assert it is bit-exact and well framed; return the cycle count."""
    run = run_gemm(engine, a, b, bias, seed=seed, name=name, backend=backend, **stalls)
    expected = linear(a, b, bias, Numerics(act=engine.act, weight=engine.weight), engine.out)
    hint = f"seed {seed}; {vcd_hint(name)}"
    assert np.array_equal(run.result, expected), hint
    assert run.framing_ok, hint
    return run.cycles


# Array shapes (square and not, 1x1) and GEMM shapes that divide evenly and do not, K above and below R, C.
CASES = [
    (1, 1, 3, 2, 4),
    (2, 3, 4, 6, 5),
    (2, 3, 5, 7, 4),
    (3, 2, 7, 5, 1),
    (3, 2, 3, 2, 2),
    (4, 4, 8, 8, 6),
    (4, 4, 9, 10, 3),
    (4, 2, 5, 3, 9),
    (8, 8, 12, 20, 10),
    (2, 8, 3, 9, 8),
]


@pytest.mark.parametrize("rows, cols, m, n, k", CASES)
def test_random_bit_exact_and_cycles_equal_model(rows, cols, m, n, k, backend):
    seed = rows * 1000 + m * 100 + n * 10 + k
    result = simulate_gemm(rows, cols, m, n, k, seed=seed, backend=backend)
    hint = f"seed {seed}; {vcd_hint(f'gemm_{rows}x{cols}_{m}x{n}x{k}_seed{seed}')}"
    assert result["bit_exact"], hint
    assert result["cycles"] == result["model_cycles"] == gemm_cycles(rows, cols, m, n, k), hint
    assert result["ideal_cycles"] == m * n * k / (rows * cols)


@pytest.mark.parametrize("seed", range(4))
def test_random_stalls_on_every_stream(seed, backend):
    rows, cols, m, n, k = [(2, 3, 5, 7, 4), (3, 2, 4, 5, 2), (1, 1, 2, 3, 3), (4, 4, 5, 6, 3)][seed]
    result = simulate_gemm(rows, cols, m, n, k, seed=seed, p_valid=0.6, p_ready=0.5, backend=backend)
    assert result["bit_exact"], f"seed {seed}; {vcd_hint(f'gemm_{rows}x{cols}_{m}x{n}x{k}_seed{seed}')}"
    assert result["cycles"] > result["model_cycles"]


def test_full_scale_operands_saturate(backend):
    engine = GemmEngine(2, 3, W16, A16, max_m=3, max_n=4, max_k=5)
    a = np.full((3, 5), W16.min_int)
    b = np.full((5, 4), A16.min_int)
    bias = np.full(3, A16.max_int)
    check(engine, a, b, bias, backend=backend)
    assert np.all(linear(a, b, bias, Numerics(act=A16, weight=W16)) == A16.max_int)
    check(engine, a, -b - 1, np.full(3, A16.min_int), backend=backend)  # min * max: saturates low


def test_zero_operands_give_the_bias():
    engine = GemmEngine(3, 2, W16, A16, max_m=4, max_n=3, max_k=2)
    bias = np.array([-5, 0, 7, A16.min_int])
    check(engine, np.zeros((4, 2), dtype=np.int64), np.zeros((2, 3), dtype=np.int64), bias)


def test_rounding_ties_and_a_narrower_output():
    weight, act, out = QFormat(8, 6), QFormat(8, 4), QFormat(6, 1)
    engine = GemmEngine(2, 2, weight, act, out, max_m=4, max_n=4, max_k=3)
    # Products of +-1 LSB sit exactly on and around the half-LSB ties of the output; big ones saturate.
    a = np.array([[1, -1, 0], [-1, 0, 0], [1, 1, 1], [weight.max_int, weight.max_int, 3]])
    b = np.array([[1, -1, 2, 127], [0, 1, -2, 127], [0, 0, 1, -3]])
    check(engine, a, b, np.array([0, 0, -1, 3]))


def test_bias_wider_than_act():
    engine = GemmEngine(2, 2, W16, A16, bias_width=20, max_m=3, max_n=2, max_k=2)
    rng = np.random.default_rng(7)
    a = rng.integers(-2**15, 2**15, (3, 2))
    b = rng.integers(-2**15, 2**15, (2, 2))
    check(engine, a, b, np.array([2**19 - 1, -2**19, 12345]))


def stream_gemms(engine, m, n, k, beats, count, name):
    """Send ready-made operand beats (a, b, bias lists) through ``engine``; return results, times, error flag."""
    run = run_streams(engine, dict(zip(("a", "b", "bias"), beats, strict=True)), {"c": count},
                      {"m": m, "n": n, "k": k}, tail=1, max_cycles=1000, name=name)
    return run.outputs["c"], run.times["c"].tolist(), run.flags["error"]


def test_two_gemms_back_to_back():
    rows, cols, m, n, k = 2, 2, 3, 3, 2
    rng = np.random.default_rng(11)
    operands = [(rng.integers(-2**15, 2**15, (m, k)), rng.integers(-2**15, 2**15, (k, n)),
                 rng.integers(-2**15, 2**15, m)) for _ in range(2)]
    first, second = (gemm_beats(a, b, bias, rows, cols) for a, b, bias in operands)
    count = -(-n // cols) * m
    engine = GemmEngine(rows, cols, W16, A16, max_m=m, max_n=n, max_k=k)
    beats, times, error = stream_gemms(engine, m, n, k, [x + y for x, y in zip(first, second, strict=True)],
                                       2 * count, "gemm_back_to_back")
    for g, (a, b, bias) in enumerate(operands):
        result, framing_ok = gemm_result(beats[g * count:(g + 1) * count], m, n, rows, cols)
        assert np.array_equal(result, linear(a, b, bias, Numerics(act=A16, weight=W16)))
        assert framing_ok
    assert not error
    # The second GEMM's tiles follow the first's without a gap, max(K, R, C) cycles each like any other.
    assert times[-1] + 1 == gemm_cycles(rows, cols, m, n, k) + 4 * max(k, rows, cols)


def test_wrong_framing_sets_the_error_flag_only():
    rows, cols, m, n, k = 2, 2, 3, 3, 2
    rng = np.random.default_rng(12)
    a, b, bias = rng.integers(-2**15, 2**15, (m, k)), rng.integers(-2**15, 2**15, (k, n)), np.arange(m)
    a_beats, b_beats, bias_beats = gemm_beats(a, b, bias, rows, cols)
    a_beats[1]["first"] = True
    engine = GemmEngine(rows, cols, W16, A16, max_m=m, max_n=n, max_k=k)
    beats, _, error = stream_gemms(engine, m, n, k, [a_beats, b_beats, bias_beats], -(-n // cols) * m,
                                   "gemm_framing_error")
    assert error == 1
    assert np.array_equal(gemm_result(beats, m, n, rows, cols)[0], linear(a, b, bias, Numerics(act=A16, weight=W16)))


def test_cycle_model_figures():
    report = estimate_gemm(8, 8, 128, 1024, 192)
    assert report["tiles"] == 16 * 128
    assert report["model_cycles"] == 2047 * 192 + 192 + 8 + 5 + 8 - 1
    assert report["utilization"] >= 0.99
    assert 0.93 <= report["fill_drain_utilization"] < 0.94
    assert gemm_fill_drain_cycles(8, 8, 128, 1024, 192) == 2048 * 206
    with pytest.raises(ValueError, match="k must be"):
        gemm_cycles(2, 2, 2, 2, 0)
    engine = GemmEngine(3, 5, max_k=8)
    Fragment.get(engine, None)  # elaborated, so its array counts as used
    assert engine.latency == engine.array.latency + 1 == 5 + GEMM_LATENCY_BASE


@pytest.mark.parametrize("kwargs, name", [
    ({"rows": 0}, "rows"),
    ({"cols": 0}, "cols"),
    ({"weight": QFormat(26, 14)}, "weight width"),
    ({"act": "Q4.12"}, "act must be a QFormat"),
    ({"out": 16}, "out must be a QFormat"),
    ({"bias_width": 1}, "bias_width"),
    ({"max_m": 0}, "max_m"),
    ({"max_n": 0}, "max_n"),
    ({"max_k": 0}, "max_k"),
    ({"max_k": 2**17}, "acc_width"),
    ({"acc_width": 20}, "acc_width"),
])
def test_bad_parameters(kwargs, name):
    params = {"rows": 2, "cols": 2} | kwargs
    with pytest.raises(ValueError, match=name):
        GemmEngine(**params)


def test_rounding_constant_wider_than_the_bias():
    weight, act, out = QFormat(8, 7), QFormat(8, 7), QFormat(8, 0)  # rounding constant 2**13, bias 2 bits
    engine = GemmEngine(2, 2, weight, act, out, bias_width=2, max_m=2, max_n=3, max_k=4)
    rng = np.random.default_rng(5)
    check(engine, rng.integers(-128, 128, (2, 4)), rng.integers(-128, 128, (4, 3)), np.array([1, -2]))
