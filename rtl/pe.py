"""The processing element of the output-stationary systolic array: one multiply-accumulate cell."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PeControl", "ProcessingElement", "dot_lane"]

#: Control that travels with the left operand: ``valid`` (a real k-step, not a bubble), ``first`` (first
#: k-step of a tile: the sum restarts), ``last`` (last k-step: the sum is complete and is captured).
PeControl = data.StructLayout({"valid": 1, "first": 1, "last": 1})


class ProcessingElement(wiring.Component):
    """One cell of :class:`~wavefabric.rtl.systolic.SystolicArray`: ``sum += a * b`` with a result shadow.

    Operands pass through: ``a`` (with its control) to the right neighbour, ``b`` to the one below, each one
    register later. The product is registered (the DSP48E1 M register) and accumulated into a register that
    restarts on ``first`` (the P register with its Z multiplexer switching between P and 0), so Yosys maps the
    whole cell's arithmetic into one DSP48E1. When the last product of a tile has been added, the sum is copied
    into the shadow register ``result``, where it stays for the array to drain while the next tile
    accumulates: that copy is the double buffer.

    Parameters
    ----------
    a_width, b_width : int
        Widths of the signed operands.
    acc_width : int
        Width of the signed accumulator; the caller makes sure it cannot overflow.

    Ports
    -----
    a_in, b_in, ctl_in : In
        Operands and control from the left and top neighbours.
    a_out, b_out, ctl_out : Out
        The same, registered, for the right and lower neighbours.
    result : Out(signed(acc_width))
        The last completed sum.
    done : Out(1)
        High in the cycle ``result`` is loaded (it holds the new sum from the next cycle).

    Timing: a k-step on ``ctl_in``/``a_in``/``b_in`` in cycle t is multiplied in t + 1, accumulated in t + 2;
    for the last k-step, ``done`` is high in t + 3 and ``result`` holds the sum from t + 4. The cell has no
    enable of its own: the array stalls it with :class:`~amaranth.hdl.EnableInserter`.
    """

    def __init__(self, a_width: int, b_width: int, acc_width: int):
        self._acc_width = acc_width
        super().__init__({
            "a_in": In(signed(a_width)),
            "b_in": In(signed(b_width)),
            "ctl_in": In(PeControl),
            "a_out": Out(signed(a_width)),
            "b_out": Out(signed(b_width)),
            "ctl_out": Out(PeControl),
            "result": Out(signed(acc_width)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        a = Signal.like(self.a_in)
        b = Signal.like(self.b_in)
        ctl = Signal(PeControl)
        m.d.sync += [a.eq(self.a_in), b.eq(self.b_in), ctl.eq(self.ctl_in)]
        m.d.comb += [self.a_out.eq(a), self.b_out.eq(b), self.ctl_out.eq(ctl)]

        product = Signal(signed(len(a) + len(b)))
        ctl_m = Signal(PeControl)
        m.d.sync += [product.eq(a * b), ctl_m.eq(ctl)]

        acc = Signal(signed(self._acc_width))
        with m.If(ctl_m.valid):
            m.d.sync += acc.eq(Mux(ctl_m.first, 0, acc) + product)
        m.d.sync += self.done.eq(ctl_m.valid & ctl_m.last)
        with m.If(self.done):
            m.d.sync += self.result.eq(acc)
        return m


def dot_lane(m: Module, name: str, weights, vector, ctl, a_width: int, b_width: int, acc_width: int):
    """A lane of a matrix-vector unit: ``len(weights)`` :class:`ProcessingElement` s, multiplier ``s``
    accumulating ``weights[s] * vector[s]`` under ``ctl`` (:data:`PeControl`), their sums added by a registered
    tree of ``ceil(log2 S)`` levels (submodules and signals named after ``name``).

    Returns the tree's output: a k-step's last products are in it ``4 + ceil(log2 S)`` cycles after ``ctl``
    carried them (the PE's four registers, then one per level).
    """
    sums = []
    for s, (a, b) in enumerate(zip(weights, vector, strict=True)):
        pe = ProcessingElement(a_width, b_width, acc_width)
        m.submodules[f"{name}_pe_{s}"] = pe
        m.d.comb += [pe.a_in.eq(a), pe.b_in.eq(b), pe.ctl_in.valid.eq(ctl.valid), pe.ctl_in.first.eq(ctl.first),
                     pe.ctl_in.last.eq(ctl.last)]
        sums.append(pe.result)
    level = 0
    while len(sums) > 1:
        pairs = [sums[i] + sums[i + 1] if i + 1 < len(sums) else sums[i] for i in range(0, len(sums), 2)]
        regs = [Signal(signed(len(v)), name=f"{name}_tree_{level}_{i}") for i, v in enumerate(pairs)]
        m.d.sync += [reg.eq(v) for reg, v in zip(regs, pairs, strict=True)]
        sums, level = regs, level + 1
    return sums[0]
