# amaranth: UnusedElaboratable=no
"""sim.axi: the AXI4-Stream coroutines stall by run_streams' rules, cycle for cycle; their timeouts. rtl.axi: the
AXI4 channel payloads."""

from types import SimpleNamespace

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from wavefabric.rtl.axi import (
    read_address_layout,
    read_data_layout,
    write_address_layout,
    write_data_layout,
    write_response_layout,
)
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


def test_axi4_channel_layouts():
    def fields(layout: data.StructLayout) -> dict[str, tuple[int, int]]:
        return {name: (field.offset, field.width) for name, field in layout}

    for make in (read_address_layout, write_address_layout):
        assert fields(make(40)) == {"addr": (0, 40), "len": (40, 8)}
    assert fields(read_data_layout(32)) == {"data": (0, 32), "resp": (32, 2), "last": (34, 1)}
    assert fields(write_data_layout(64)) == {"data": (0, 64), "strb": (64, 8), "last": (72, 1)}
    assert fields(write_data_layout(32)) == {"data": (0, 32), "strb": (32, 4), "last": (36, 1)}
    assert fields(write_response_layout()) == {"resp": (0, 2)}
    for make, name, bad in ((write_data_layout, "data_width", 128), (read_data_layout, "data_width", 16),
                            (write_address_layout, "addr_width", 11), (read_address_layout, "addr_width", 65)):
        with pytest.raises(ValueError, match=name):
            make(bad)
