# amaranth: UnusedElaboratable=no
"""rtl/matvec.py: MatVecUnit against kernels.linear (+ ReLU), cycles against perf.matvec_op_cycles."""

import numpy as np
import pytest

from wavefabric.model.fixed import shift_round
from wavefabric.model.kernels import Numerics, accumulate, linear, relu
from wavefabric.model.perf import matvec_op_cycles
from wavefabric.rtl.matvec import MatVecUnit
from wavefabric.sim.streams import run_simulation, vcd_hint

NUM = Numerics()


def layout_ops(ops, lanes, simd):
    """Weight memory words ``(depth, P, S)``, bias rows, and each op's bases, packed op after op."""
    words_total = rows_total = 0
    bases = []
    for w, *_ in ops:
        rows, cols = w.shape
        bases.append((words_total, rows_total))
        words_total += -(-rows // lanes) * -(-cols // simd)
        rows_total += rows
    mem = np.zeros((words_total, lanes, simd), np.int64)
    biases = np.zeros(-(-rows_total // simd) * simd, np.int64)
    for (w, b, *_), (wb, bb) in zip(ops, bases, strict=True):
        rows, cols = w.shape
        words, slots = -(-cols // simd), -(-rows // lanes)
        padded = np.zeros((slots * lanes, words * simd), np.int64)
        padded[:rows, :cols] = w
        mem[wb:wb + slots * words] = padded.reshape(slots, lanes, words, simd).transpose(0, 2, 1, 3).reshape(
            -1, lanes, simd)
        biases[bb:bb + rows] = b
    return mem, biases, bases


def run_unit(ops, lanes, simd, shifts, seed=0, p_valid=1.0):
    """Load every op's matrix and bias, run them one after the other with their ``shifts``; return each op's
    rows, cycles and saturation flags.

    ``ops``: ``(w, bias, x, extra, relu)``. Load beats pause at random (``p_valid``). The testbench serves
    ``vec_data`` and ``extra`` one cycle after their addresses, as memories would.
    """
    mem, biases, bases = layout_ops(ops, lanes, simd)
    unit = MatVecUnit(lanes, simd, len(mem), len(biases), max(w.shape[1] for w, *_ in ops),
                      max(w.shape[0] for w, *_ in ops), NUM)
    rng = np.random.default_rng(seed)
    results = []

    async def put(ctx, port, rows):
        for i, row in enumerate(rows):
            ctx.set(port.valid, 0)
            while p_valid < 1 and rng.random() > p_valid:
                await ctx.tick()
            ctx.set(port.valid, 1)
            ctx.set(port.payload, {"data": row.tolist(), "first": i == 0, "last": i == len(rows) - 1})
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def bench(ctx):
        await put(ctx, unit.weights, mem.reshape(-1, simd))
        await put(ctx, unit.biases, biases.reshape(-1, simd))
        for (w, _, x, extra, use_relu), (wb, bb), shift in zip(ops, bases, shifts, strict=True):
            rows, cols = w.shape
            words, slots = -(-cols // simd), -(-rows // lanes)
            xw = np.zeros(words * simd, np.int64)
            xw[:cols] = x
            xw = xw.reshape(words, simd)
            ctx.set(unit.op, {"weight_base": wb, "bias_base": bb, "rows": rows, "slots": slots, "words": words,
                              "shift": shift, "relu": use_relu})
            ctx.set(unit.start, 1)
            got, flags, cycles = {}, {}, 1
            while True:
                addr, row_valid, row = ctx.get(unit.vec_addr), ctx.get(unit.row_valid), ctx.get(unit.row)
                result = ctx.get(unit.result)
                if result["valid"]:
                    got[result["row"]] = result["value"]
                    flags[result["row"]] = result["saturated"]
                    if result["row"] == rows - 1:
                        break
                await ctx.tick()
                cycles += 1
                ctx.set(unit.start, 0)
                ctx.set(unit.vec_data, xw[addr].tolist() if addr < words else [0] * simd)
                ctx.set(unit.extra, int(extra[row]) if row_valid else 0)
            results.append((np.array([got.get(r) for r in range(rows)]), cycles,
                            np.array([flags.get(r) for r in range(rows)], dtype=bool)))
            await ctx.tick()
        assert not ctx.get(unit.error)

    run_simulation(unit, [bench], name="matvec")
    return results


def random_op(rng, rows, cols, use_relu, full_scale=False):
    act, weight = NUM.act, NUM.weight
    if full_scale:
        w = rng.choice([weight.min_int, weight.max_int], (rows, cols))
        x = rng.choice([act.min_int, act.max_int], cols)
    else:
        w = rng.integers(-3000, 3000, (rows, cols))
        x = rng.integers(-16000, 16000, cols)
    return (w, rng.integers(-4000, 4000, rows), x, rng.integers(-4000, 4000, rows), use_relu)


def expected_op(w, b, x, extra, use_relu, shift):
    """The model of one operation: its rows (``linear`` with a run-time shift, then ReLU) and saturation flags."""
    rounded = shift_round(accumulate(w, x, b + extra, shift), shift)
    flags = (rounded > NUM.act.max_int) | (~use_relu & (rounded < NUM.act.min_int))
    rows = linear(w, x, b + extra, NUM, shift=shift)
    return (relu(rows) if use_relu else rows), flags


@pytest.mark.parametrize("seed, lanes, simd, sizes", [
    (0, 4, 4, [(10, 12, False), (7, 3, True), (16, 16, False), (1, 1, True)]),
    (1, 3, 8, [(64, 64, True), (5, 20, False)]),
    (2, 1, 1, [(3, 5, False), (1, 1, False)]),          # smallest unit
    (3, 8, 2, [(9, 4, False), (17, 1, True)]),           # period set by the lanes, not the words
    (5, 1, 1, [(25, 24, False)]),                        # 600 words a lane: 512 in block RAM, 88 distributed
])
def test_matches_linear(seed, lanes, simd, sizes):
    rng = np.random.default_rng(seed)
    ops = [random_op(rng, rows, cols, use_relu) for rows, cols, use_relu in sizes]
    shifts = rng.integers(8, 20, len(ops)).tolist()
    results = run_unit(ops, lanes, simd, shifts, seed, p_valid=0.6)
    for op, shift, (got, cycles, flags) in zip(ops, shifts, results, strict=True):
        expected, expected_flags = expected_op(*op, shift)
        assert np.array_equal(got, expected), f"seed {seed}; {vcd_hint('matvec')}"
        assert np.array_equal(flags, expected_flags)
        assert cycles == matvec_op_cycles(op[0].shape[0], op[0].shape[1], lanes, simd)


def test_edge_values_and_run_time_shift():
    """Full-scale operands saturate both ways (and are flagged); zero gives the bias; the shift is a run-time
    value from 0 to the largest."""
    rng = np.random.default_rng(4)
    full = random_op(rng, 6, 9, False, full_scale=True)
    zero = (np.zeros((6, 9), np.int64), full[1], np.zeros(9, np.int64), full[3], True)
    top = MatVecUnit(2, 4, 64, 16, 9, 6, NUM).max_shift
    ops = [full, zero, full, full]
    shifts = [NUM.acc_frac - NUM.act.frac, 16, 0, top]
    results = run_unit(ops, 2, 4, shifts)
    for op, shift, (got, _, flags) in zip(ops, shifts, results, strict=True):
        expected, expected_flags = expected_op(*op, shift)
        assert np.array_equal(got, expected) and np.array_equal(flags, expected_flags)
    assert {NUM.act.min_int, NUM.act.max_int} <= set(results[0][0].tolist()) and results[0][2].any()
    assert not results[1][2].any() and results[2][2].all() and not results[3][2].any()


@pytest.mark.parametrize("kwargs, word", [
    (dict(simd=3), "simd"), (dict(lanes=0), "lanes"), (dict(max_cols=1 << 20), "max_cols"),
    (dict(depth=0), "depth"),
])
def test_bad_parameters(kwargs, word):
    args = dict(lanes=2, simd=4, depth=8, bias_rows=8, max_cols=16, max_rows=16) | kwargs
    with pytest.raises(ValueError, match=word):
        MatVecUnit(**args)
