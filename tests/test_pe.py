"""ProcessingElement: accumulate, restart on first, capture on last, pass operands on."""

from wavefabric.rtl.pe import ProcessingElement
from wavefabric.sim.streams import run_simulation


def test_accumulates_restarts_and_captures_with_documented_timing():
    pe = ProcessingElement(8, 6, 20)
    # (a, b, valid, first, last) per cycle: a 3-step tile, a bubble, a 1-step tile, then idle cycles.
    steps = [(3, -2, 1, 1, 0), (-128, -32, 1, 0, 0), (5, 7, 1, 0, 1), (99, 9, 0, 0, 0), (-4, 31, 1, 1, 1)]
    steps += [(0, 0, 0, 0, 0)] * 5
    trace = []

    async def bench(ctx):
        for a, b, valid, first, last in steps:
            ctx.set(pe.a_in, a)
            ctx.set(pe.b_in, b)
            ctx.set(pe.ctl_in, {"valid": valid, "first": first, "last": last})
            await ctx.tick()
            trace.append((ctx.get(pe.a_out), ctx.get(pe.b_out), ctx.get(pe.done), ctx.get(pe.result)))

    run_simulation(pe, [bench], name="pe")
    # trace[t] holds the outputs during cycle t + 1. Operands come out one cycle after they go in.
    assert [t[:2] for t in trace[:5]] == [s[:2] for s in steps[:5]]
    first_sum = 3 * -2 + -128 * -32 + 5 * 7
    # The last k-step in cycle 2: done in cycle 5, result from cycle 6; the 1-step tile in cycle 4: done in
    # cycle 7, result from cycle 8.
    assert [t[2] for t in trace] == [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]
    assert trace[5][3] == first_sum
    assert trace[7][3] == -4 * 31
    assert trace[9][3] == -4 * 31
