from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from wavefabric.rtl.pipeline import delayed


def test_delays_by_whole_cycles_and_keeps_views():
    m = Module()
    count = Signal(8)
    m.d.sync += count.eq(count + 1)
    pair = Signal(data.StructLayout({"a": 4, "b": 4}))
    m.d.comb += [pair.a.eq(count), pair.b.eq(count + 1)]
    late = delayed(m, count, 3, "count")
    late_pair = delayed(m, pair, 2, "pair")
    assert delayed(m, count, 0, "none") is count
    assert isinstance(late_pair, data.View) and late_pair.shape() == pair.shape()
    seen = []

    async def bench(ctx):
        for _ in range(8):
            seen.append((ctx.get(count), ctx.get(late), ctx.get(late_pair.a)))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Registers reset to zero, then follow the input 3 (2) cycles late.
    assert [s[1] for s in seen] == [0, 0, 0, 0, 1, 2, 3, 4]
    assert [s[2] for s in seen] == [0, 0, 0, 1, 2, 3, 4, 5]
