# amaranth: UnusedElaboratable=no
"""SystolicArray: tiles of sums bit-exact, double-buffered timing, stalls, parameter checks."""

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat, accumulator_width
from wavefabric.rtl.systolic import SystolicArray
from wavefabric.sim.streams import run_streams, vcd_hint

W16, A16 = QFormat(16, 14), QFormat(16, 12)


def run_tiles(array, a_tiles, b_tiles, *, seed=0, p_valid=1.0, p_ready=1.0, name="systolic"):
    """Stream tiles (a: R x K, b: K x C each) through ``array``; return sums, input and output transfer cycles."""
    beats = [{"a": a[:, k].tolist(), "b": b[k].tolist(), "first": k == 0, "last": k == a.shape[1] - 1}
             for a, b in zip(a_tiles, b_tiles, strict=True) for k in range(a.shape[1])]
    run = run_streams(array, {"i": beats}, {"o": array.rows * len(a_tiles)}, seed=seed, p_valid=p_valid,
                      p_ready=p_ready, name=name)
    rows = run.outputs["o"]
    assert [(r["first"], r["last"]) for r in rows] == [(i == 0, i == array.rows - 1)
                                                      for _ in a_tiles for i in range(array.rows)]
    sums = np.array([r["data"] for r in rows], dtype=np.int64).reshape(len(a_tiles), array.rows, array.cols)
    return sums, run.times["i"].tolist(), run.times["o"].tolist()


def random_tiles(rng, rows, cols, ks, weight=W16, act=A16):
    a = [rng.integers(weight.min_int, weight.max_int, (rows, k), endpoint=True) for k in ks]
    b = [rng.integers(act.min_int, act.max_int, (k, cols), endpoint=True) for k in ks]
    return a, b


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_random_tiles_bit_exact_and_back_to_back(rows, cols):
    seed = rows * 10 + cols
    rng = np.random.default_rng(seed)
    ks = [5, 7, 6]
    a, b = random_tiles(rng, rows, cols, ks)
    array = SystolicArray(rows, cols, max_k=8)
    name = f"systolic_{rows}x{cols}_seed{seed}"
    sums, t_in, t_out = run_tiles(array, a, b, name=name)
    for t in range(len(ks)):
        assert np.array_equal(sums[t], a[t] @ b[t]), f"tile {t}, seed {seed}; {vcd_hint(name)}"
    # Operands stream without a gap; each tile's rows leave `latency` cycles after its last k-step, one a cycle.
    assert t_in == list(range(sum(ks)))
    lasts = np.cumsum(ks) - 1
    assert t_out == [last + array.latency + r for last in lasts for r in range(rows)], f"seed {seed}"


@pytest.mark.parametrize("rows, cols, k", [(3, 2, 1), (2, 4, 2), (4, 4, 3), (1, 1, 1)])
def test_short_reductions_are_spaced_by_tile_period(rows, cols, k):
    rng = np.random.default_rng(k)
    a, b = random_tiles(rng, rows, cols, [k] * 4)
    array = SystolicArray(rows, cols, max_k=4)
    sums, t_in, t_out = run_tiles(array, a, b)
    assert all(np.array_equal(sums[t], a[t] @ b[t]) for t in range(4))
    lasts = t_in[k - 1::k]
    assert lasts == [k - 1 + t * max(k, array.tile_period) for t in range(4)]
    assert t_out[::rows] == [last + array.latency for last in lasts]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stalls_lose_nothing(seed):
    rng = np.random.default_rng(seed)
    rows, cols = [(2, 3), (3, 2), (3, 3)][seed - 1]
    ks = [int(k) for k in rng.integers(1, 7, 5)]
    a, b = random_tiles(rng, rows, cols, ks)
    name = f"systolic_stalls_seed{seed}"
    sums, _, _ = run_tiles(SystolicArray(rows, cols, max_k=8), a, b, seed=seed, p_valid=0.6, p_ready=0.4,
                           name=name)
    for t in range(len(ks)):
        assert np.array_equal(sums[t], a[t] @ b[t]), f"tile {t}, seed {seed}; {vcd_hint(name)}"


def test_full_scale_and_zero_operands_at_the_narrowest_accumulator():
    weight, act, k = QFormat(8, 6), QFormat(8, 4), 6
    array = SystolicArray(2, 2, weight, act, max_k=k)
    assert array.acc_width == accumulator_width(weight, act, k)
    full_a = np.full((2, k), weight.min_int)
    full_b = np.full((k, 2), act.min_int)
    mixed_b = np.full((k, 2), act.max_int)
    zeros_a, zeros_b = np.zeros((2, k), dtype=np.int64), np.zeros((k, 2), dtype=np.int64)
    a = [full_a, full_a, zeros_a, full_a]
    b = [full_b, mixed_b, full_b, zeros_b]
    sums, _, _ = run_tiles(array, a, b)
    for t in range(4):
        assert np.array_equal(sums[t], a[t] @ b[t])
    assert sums[0, 0, 0] == k * weight.min_int * act.min_int  # the largest sum there is: no overflow


@pytest.mark.parametrize("kwargs, name", [
    ({"rows": 0}, "rows"),
    ({"cols": -1}, "cols"),
    ({"rows": 2.0}, "rows"),
    ({"weight": QFormat(26, 14)}, "weight width"),
    ({"act": QFormat(26, 12)}, "act width"),
    ({"weight": QFormat(19, 14), "act": QFormat(19, 12)}, "weight width 19 and act width 19"),
    ({"weight": (16, 14)}, "weight must be a QFormat"),
    ({"max_k": 0}, "max_k"),
    ({"acc_width": 40}, "acc_width"),
    ({"acc_width": 49}, "acc_width"),
])
def test_bad_parameters(kwargs, name):
    params = {"rows": 2, "cols": 2, "max_k": 4096} | kwargs
    with pytest.raises(ValueError, match=name):
        SystolicArray(**params)


def test_multiplier_shapes_that_fit():
    assert SystolicArray(1, 1, QFormat(25, 20), QFormat(18, 12), max_k=2).acc_width <= 48
    assert SystolicArray(1, 1, QFormat(18, 14), QFormat(25, 12), max_k=2).acc_width <= 48
