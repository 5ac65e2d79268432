"""Sigmoid and tanh in hardware: the model's table plus linear interpolation, as a three-stage pipeline."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, ValueLike, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.kernels import ActivationTable

__all__ = ["Activation", "fabric_multiply"]


def fabric_multiply(m: Module, a: ValueLike, b: ValueLike, *, stages: int, name: str) -> Signal:
    """The exact product ``a * b`` from shifted partial products, in LUTs and carry chains: no DSP48E1.

    Yosys maps every ``*`` of two operands of 2 bits or more with a product of 9 bits or more to a DSP48E1;
    the small products of the gate math (table interpolation, gate times state) are built here instead so that
    the DSPs stay with the multiply-accumulate arrays. One partial product per bit of ``b`` (pass the narrower
    operand as ``b``; its sign bit, if signed, is subtracted), summed in a balanced adder tree that is
    registered ``stages`` times, evenly spread, the last register at the output.

    Returns the registered product, valid ``stages`` cycles after ``a`` and ``b``.
    """
    a, b = Value.cast(a), Value.cast(b)
    top = len(b) - 1 if b.shape().signed else len(b)
    terms = [Mux(b[i], a << i, 0) for i in range(top)]
    if b.shape().signed:
        terms.append(-Mux(b[top], a << top, 0))
    levels = (len(terms) - 1).bit_length()
    per_stage = max(1, -(-levels // stages))
    for stage in range(stages):
        for _ in range(per_stage):
            if len(terms) > 1:
                terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
        regs = [Signal(term.shape(), name=f"{name}_s{stage}_{i}") for i, term in enumerate(terms)]
        m.d.sync += [reg.eq(term) for reg, term in zip(regs, terms, strict=True)]
        terms = regs
    return terms[0]


class Activation(wiring.Component):
    """``y = table(x)``: bit-exact twin of :class:`~wavefabric.model.kernels.ActivationTable` (sigmoid or tanh).

    The input's top ``index_bits`` bits, as an offset from the format's minimum, select a segment; the
    remaining ``s`` bits ``f`` interpolate within it::

        y = t[i] + ((t[i+1] - t[i]) * f + 2**(s-1)) >> s

    The offset ``x - min_int`` is ``x`` with its sign bit inverted, so ``i`` and ``f`` are wires. The table is a
    ROM of ``2**index_bits`` words, word ``i`` holding the pair ``(t[i], t[i+1])`` so that one read gives both
    neighbours. Hardware: one ROM (block RAM or LUTs), a small multiplier in LUTs (:func:`fabric_multiply`), two
    adders.

    Parameters
    ----------
    table : ActivationTable
        The function, formats and table of the model (e.g. ``Numerics().sigmoid``).

    Ports
    -----
    x : In(signed(table.in_fmt.width))
        Input, sampled every cycle.
    y : Out(signed(table.out_fmt.width))
        ``table(x)`` of the input ``latency`` cycles earlier (registered).

    Attributes
    ----------
    latency : int
        3: the ROM read, the registered product, the registered sum. The pipeline has no stall input and
        takes a new input every cycle.
    """

    latency = 3

    def __init__(self, table: ActivationTable):
        if not isinstance(table, ActivationTable):
            raise ValueError(f"table must be an ActivationTable, not {table!r}")
        self.table = table
        super().__init__({
            "x": In(signed(table.in_fmt.width)),
            "y": Out(signed(table.out_fmt.width)),
        })

    def elaborate(self, platform):
        m = Module()
        table = self.table
        width = table.in_fmt.width
        s = table.segment_shift
        out_shape = signed(table.out_fmt.width)
        pair = data.StructLayout({"lo": out_shape, "hi": out_shape})
        values = [int(v) for v in table.table]
        m.submodules.rom = rom = Memory(
            shape=pair, depth=len(values) - 1,
            init=[{"lo": values[i], "hi": values[i + 1]} for i in range(len(values) - 1)])
        read = rom.read_port()

        # Stage 1: the segment index addresses the ROM; the fraction waits for the data.
        m.d.comb += read.addr.eq(Cat(self.x[s:width - 1], ~self.x[width - 1]))
        lo = Signal(out_shape)
        if s == 0:
            # Every input is a table point: nothing to interpolate.
            m.d.sync += lo.eq(read.data.lo)
            m.d.sync += self.y.eq(lo)
            return m
        frac = Signal(s)
        m.d.sync += frac.eq(self.x[:s])

        # Stage 2: the product of the segment's rise by the fraction, exact.
        m.d.sync += lo.eq(read.data.lo)
        product = fabric_multiply(m, read.data.hi - read.data.lo, frac, stages=1, name="product")

        # Stage 3: round half up (the model's shift_round) and add; between two entries, so no saturation.
        m.d.sync += self.y.eq(lo + ((product + (1 << (s - 1))) >> s))
        return m
