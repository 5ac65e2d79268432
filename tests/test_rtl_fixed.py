"""rtl.fixed: the narrowing expression is bit-exact with model.fixed.narrow over every input."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from wavefabric.model.fixed import QFormat
from wavefabric.model.fixed import narrow as model_narrow
from wavefabric.rtl.fixed import narrow, narrow_by, rounding_offset, saturate


def evaluate(width, build, shape=signed):
    """Every value of a ``shape(width)`` input through the expression ``build(x)``."""
    m = Module()
    x = Signal(shape(width))
    y = Signal(build(x).shape())
    m.d.comb += y.eq(build(x))
    values = np.arange(-(1 << (width - 1)), 1 << (width - 1)) if x.shape().signed else np.arange(1 << width)
    out = []

    async def bench(ctx):
        for v in values:
            ctx.set(x, int(v))
            out.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return values, np.array(out)


@pytest.mark.parametrize("width, frac, out", [
    (10, 6, QFormat(4, 2)),   # round away 4 bits, saturate
    (10, 1, QFormat(6, 1)),   # no shift, saturate only
    (6, 2, QFormat(8, 4)),    # widen: exact left shift, fits
    (9, 9, QFormat(3, 1)),    # round away 8 bits: many ties
    (5, 0, QFormat(8, 0)),    # narrower input: sign extension only
])
def test_narrow_matches_model(width, frac, out):
    values, got = evaluate(width, lambda x: narrow(x, frac, out))
    assert np.array_equal(got, model_narrow(values, frac, out))
    assert got.min() >= out.min_int and got.max() <= out.max_int


def test_offset_folded_by_the_caller():
    frac, out = 7, QFormat(5, 2)
    offset = rounding_offset(frac, out)
    assert offset == 1 << 4
    values, got = evaluate(10, lambda x: narrow(x + offset, frac, out, add_offset=False))
    assert np.array_equal(got, model_narrow(values, frac, out))
    assert rounding_offset(3, QFormat(8, 3)) == rounding_offset(3, QFormat(8, 5)) == 0


def test_saturate():
    values, got = evaluate(7, lambda x: saturate(x, QFormat(4, 0)))
    assert np.array_equal(got, np.clip(values, -8, 7))


def test_saturate_unsigned():
    values, got = evaluate(5, lambda x: saturate(x, QFormat(4, 0)), shape=unsigned)
    assert np.array_equal(got, np.clip(values, -8, 7))


@pytest.mark.parametrize("width, shift, out", [
    (10, 6, QFormat(4, 0)),   # round away 6 bits, saturate
    (9, 0, QFormat(6, 0)),    # no shift: saturate only
    (9, 8, QFormat(3, 0)),    # many ties
])
def test_narrow_by_matches_model(width, shift, out):
    """The run-time shift gives what the constant one gives, for every input."""
    shift_signal = Signal(range(16))
    m = Module()
    x = Signal(signed(width))
    y = Signal(signed(out.width))
    m.d.comb += y.eq(narrow_by(x, shift_signal, out))
    values = np.arange(-(1 << (width - 1)), 1 << (width - 1))
    got = []

    async def bench(ctx):
        ctx.set(shift_signal, shift)
        for v in values:
            ctx.set(x, int(v))
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(got, model_narrow(values, shift + out.frac, out))
