"""Gumbel-max sampler: the next sample's code from a stream of logits, with a hardware PRNG and a noise table."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from ..model.sampler import TEMPERATURE_FRAC
from ..model.sampler import GumbelSampler as GumbelModel
from .fixed import shift_round

__all__ = ["GumbelSampler", "xorshift32"]


def xorshift32(x):
    """One step of Marsaglia's xorshift32 (13, 17, 5) on a 32-bit value, as an expression (pure wiring)."""
    x = (x ^ (x << 13))[:32]
    x = x ^ (x >> 17)
    return (x ^ (x << 5))[:32]


class GumbelSampler(wiring.Component):
    """``code = argmax_v(logit_v + shift_round(tq * G[u_v], 12))``: bit-exact with
    :meth:`wavefabric.model.sampler.GumbelSampler.sample`.

    Each logit steps the xorshift32 state once (levels in order, samples in order); the top ``bits`` bits of the
    new state address the Gumbel table ``G`` (a LUT ROM), and the noise, scaled by the integer temperature ``tq``
    (one multiplier), is added to the logit. A running comparison keeps the first maximum.

    Ports
    -----
    logit : In
        ``valid``, ``index`` (level, ``0 .. q - 1`` in order), ``value`` (a logit in the ``logits`` format).
    seed, load : In
        ``load`` high for a cycle sets the PRNG state to ``seed`` (nonzero; a job's start).
    temperature : In(16)
        ``tq``, 1 to 65535 (:func:`wavefabric.model.sampler.temperature_int`), held while sampling.
    code : Out
        ``valid`` for one cycle, ``latency`` cycles after the logit of level ``q - 1``, with ``code``.

    Parameters
    ----------
    logits : QFormat
        Format of the logits and of the noise table.
    q_levels : int
        Levels, >= 2.
    bits : int
        Table address bits, 4 to 16.
    """

    #: Cycles from the last logit to ``code.valid``: table read, product, comparison.
    latency = 3

    def __init__(self, logits: QFormat, q_levels: int, bits: int = 12):
        self.model = GumbelModel(logits, bits)
        self.q_levels = check_int("q_levels", q_levels, 2)
        self.logits = logits
        super().__init__({
            "logit": In(data.StructLayout({"valid": 1, "index": range(q_levels), "value": signed(logits.width)})),
            "seed": In(32),
            "load": In(1),
            "temperature": In(16),
            "code": Out(data.StructLayout({"valid": 1, "code": range(q_levels)})),
        })

    def elaborate(self, platform):
        m = Module()
        bits, width = self.model.bits, self.logits.width
        table = [int(g) for g in self.model.table]
        # A LUT ROM (about one LUT6 per 64 bits): the block RAM is wanted for weights.
        m.submodules.table = rom = Memory(shape=signed(width), depth=len(table), init=table,
                                          attrs={"ram_style": "logic"})
        read = rom.read_port()

        state = Signal(32, init=1)
        step = xorshift32(state)
        with m.If(self.load):
            m.d.sync += state.eq(self.seed)
        with m.Elif(self.logit.valid):
            m.d.sync += state.eq(step)
        m.d.comb += read.addr.eq(step[32 - bits:])

        # Cycle 1: the table entry; the product is registered (one DSP48E1).
        logit1 = Signal.like(self.logit)
        m.d.sync += logit1.eq(self.logit)
        product = Signal(signed(width + 17))
        logit2 = Signal.like(self.logit)
        m.d.sync += [product.eq(Cat(self.temperature, 0).as_signed() * read.data), logit2.eq(logit1)]

        # Cycle 2: round the noise, add, compare; the first maximum stays.
        score = Signal(signed(width + 7))
        m.d.comb += score.eq(logit2.value + shift_round(product, TEMPERATURE_FRAC))
        best = Signal.like(score)
        arg = Signal(unsigned(len(self.code.code)))
        take = (logit2.index == 0) | (score > best)
        with m.If(logit2.valid & take):
            m.d.sync += [best.eq(score), arg.eq(logit2.index)]
        m.d.sync += [self.code.valid.eq(logit2.valid & (logit2.index == self.q_levels - 1)),
                     self.code.code.eq(Mux(take, logit2.index, arg))]
        return m
