# amaranth: UnusedElaboratable=no
import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics
from wavefabric.rtl.activation import Activation, fabric_multiply
from wavefabric.sim.streams import run_simulation, vcd_hint


def run_activation(table, xs, name):
    """Feed one input per cycle; return the outputs, each read ``latency`` cycles after its input."""
    dut = Activation(table)
    ys = []

    async def testbench(ctx):
        for x in list(xs) + [0] * dut.latency:
            ctx.set(dut.x, int(x))
            await ctx.tick()
            ys.append(ctx.get(dut.y))

    run_simulation(dut, [testbench], name=name)
    # After the tick of cycle t the registered output shows the input of cycle t + 1 - latency.
    return np.array(ys[dut.latency - 1:dut.latency - 1 + len(xs)], dtype=np.int64)


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_default_tables_bit_exact(function):
    num = Numerics()
    table = getattr(num, function)
    fmt, s = num.act, table.segment_shift
    rng = np.random.default_rng(7)
    boundaries = fmt.min_int + (np.arange(1 << table.index_bits) << s)
    xs = np.unique(np.concatenate([boundaries, boundaries + 1, boundaries - 1, boundaries + (1 << (s - 1)),
                                   rng.integers(fmt.min_int, fmt.max_int, 1500, endpoint=True),
                                   [fmt.min_int, fmt.max_int, 0, -1]]))
    xs = xs[(xs >= fmt.min_int) & (xs <= fmt.max_int)]
    name = f"activation_{function}"
    got = run_activation(table, xs, name)
    assert np.array_equal(got, table(xs)), f"mismatch ({vcd_hint(name)})"


@pytest.mark.parametrize("act, gate, table_bits", [(QFormat(6, 3), QFormat(8, 7), 3), (QFormat(5, 2), QFormat(6, 5), 5),
                                                   (QFormat(7, 2), QFormat(10, 9), 1)])
@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_small_tables_exhaustive(act, gate, table_bits, function):
    """Every input of small formats, including a table with no interpolation bits and one with two segments."""
    table = getattr(Numerics(act=act, gate=gate, table_bits=table_bits), function)
    xs = np.arange(act.min_int, act.max_int + 1)
    name = f"activation_{function}_{act.width}_{table_bits}"
    assert np.array_equal(run_activation(table, xs, name), table(xs)), f"mismatch ({vcd_hint(name)})"


def test_rejects_non_table():
    with pytest.raises(ValueError, match="table must be an ActivationTable"):
        Activation("sigmoid")


@pytest.mark.parametrize("b_shape", [signed(4), unsigned(4), unsigned(1), signed(2)])
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_fabric_multiply_exhaustive(b_shape, stages):
    """Every pair of a 5-bit signed and a small operand, with the documented latency."""
    m = Module()
    a, b = Signal(signed(5)), Signal(b_shape)
    product = fabric_multiply(m, a, b, stages=stages, name="p")
    b_values = range(-(1 << (b_shape.width - 1)), 1 << (b_shape.width - 1)) if b_shape.signed \
        else range(1 << b_shape.width)
    pairs = list(itertools.product(range(-16, 16), b_values))
    got = []

    async def testbench(ctx):
        for x, y in pairs + [(0, 0)] * stages:
            ctx.set(a, x)
            ctx.set(b, y)
            await ctx.tick()
            got.append(ctx.get(product))

    run_simulation(m, [testbench], name="fabric_multiply")
    assert got[stages - 1:stages - 1 + len(pairs)] == [x * y for x, y in pairs]
