# amaranth: UnusedElaboratable=no
"""sim.axi: the AXI4-Stream coroutines stall by run_streams' rules, cycle for cycle; their timeouts."""

from types import SimpleNamespace

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from wavefabric.sim.axi import axis_receive, axis_send
from wavefabric.sim.streams import run_simulation, run_streams, stall_patterns, vcd_hint

BEAT = data.StructLayout({"tdata": 16, "tlast": 1})


class Fifo(wiring.Component):
    """Four beats of buffering between two streams of AXI4-Stream beats."""

    i: In(stream.Signature(BEAT))
    o: Out(stream.Signature(BEAT))

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=BEAT.size, depth=4)
        wiring.connect(m, wiring.flipped(self.i), fifo.w_stream)
        wiring.connect(m, fifo.r_stream, wiring.flipped(self.o))
        return m


def axis(port) -> SimpleNamespace:
    """A ``lib.stream`` of :data:`BEAT` as the AXI4-Stream signals the coroutines drive."""
    return SimpleNamespace(tdata=port.payload.tdata, tlast=port.payload.tlast, tvalid=port.valid, tready=port.ready)


def coroutine_run(beats, gaps=None, ready=None, timeout=1000):
    """``beats`` through a :class:`Fifo` by :func:`axis_send` and :func:`axis_receive`: what each returned."""
    dut, got = Fifo(), {}

    async def send(ctx):
        got["in"] = await axis_send(ctx, axis(dut.i), beats, gaps, timeout=timeout)

    async def receive(ctx):
        got["out"], got["out_times"] = await axis_receive(ctx, axis(dut.o), len(beats), ready, timeout=timeout)

    run_simulation(dut, [send, receive], name="axis_fifo")
    return got


@pytest.mark.parametrize("seed, p_valid, p_ready", [(1, 1.0, 1.0), (2, 0.5, 0.3), (3, 0.3, 0.8)])
def test_same_transfers_as_run_streams(seed, p_valid, p_ready):
    beats = [(seed * 1000 + n, n % 5 == 4) for n in range(40)]
    run = run_streams(Fifo(), {"i": [{"tdata": d, "tlast": t} for d, t in beats]}, {"o": len(beats)}, seed=seed,
                      p_valid=p_valid, p_ready=p_ready, max_cycles=1000)
    gaps, masks = stall_patterns(seed, {"i": len(beats)}, ["o"], p_valid, p_ready, 1000)
    got = coroutine_run(beats, gaps["i"], masks["o"])
    where = f"seed {seed}; {vcd_hint('axis_fifo')}"
    assert got["out"] == beats == [(b["tdata"], bool(b["tlast"])) for b in run.outputs["o"]], where
    assert got["in"] == run.times["i"].tolist() and got["out_times"] == run.times["o"].tolist(), where


def test_timeouts():
    full, empty = Fifo(), Fifo()

    async def send(ctx):  # nothing reads the FIFO: it takes four beats
        await axis_send(ctx, axis(full.i), [(n, False) for n in range(8)], timeout=20)

    async def receive(ctx):
        await axis_receive(ctx, axis(empty.o), 2, timeout=10)

    with pytest.raises(TimeoutError, match="beat 4 not taken after 20 cycles"):
        run_simulation(full, [send], name="axis_timeout")
    with pytest.raises(TimeoutError, match="0 of 2 beats after 10 cycles"):
        run_simulation(empty, [receive], name="axis_timeout")
