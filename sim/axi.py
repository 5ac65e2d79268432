"""Testbench coroutines for AXI4-Lite managers and AXI4-Stream endpoints (the interfaces of a Vivado-facing top).

Batched stimulus goes through :func:`~wavefabric.sim.streams.run_streams`; these coroutines are for testbenches
that react cycle by cycle (a register poll decides what comes next) or that outlive one run (the driver's
simulated twin, :mod:`wavefabric.boards.driver`).

* :func:`axil_write` / :func:`axil_read`: one AXI4-Lite transaction as a manager, optionally with seeded random
  timing: AW and W raised after independent random delays (either may come first, or both together), and BREADY
  / RREADY held low for random stretches. Valid stays high until its handshake, as AXI requires.
* :func:`axis_send` / :func:`axis_receive`: beats ``(tdata, tlast)`` into or out of an AXI4-Stream interface
  (``tdata``, ``tvalid``, ``tready``, ``tlast``), stalled by the rules of a source and a sink in
  :mod:`wavefabric.sim.streams`, with gaps and ready masks as :func:`~wavefabric.sim.streams.stall_patterns`
  draws them: the same seed and pattern give the same transfer cycles as ``run_streams``.

These must run in testbenches that started at time 0 or on a clock edge; cycles count from the call.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from amaranth.hdl import Cat
from amaranth.sim import SimulatorContext

__all__ = ["axil_write", "axil_read", "axis_send", "axis_receive"]


def _delay(rng: random.Random | None, longest: int) -> int:
    return 0 if rng is None else rng.randint(0, longest)


async def axil_write(ctx: SimulatorContext, bus, addr: int, data: int, strb: int = 0xF, *,
                     rng: random.Random | None = None, timeout: int = 1000) -> int:
    """Write ``data`` (byte lanes ``strb``) to ``addr`` through the subordinate's AXI4-Lite ``bus``; return BRESP.

    With ``rng``, AWVALID and WVALID rise after independent delays of 0 to 3 cycles and BREADY is high in each
    cycle with probability 1/2. Raises ``TimeoutError`` if the transaction has not completed in ``timeout``
    cycles (the bus hung).
    """
    aw_at, w_at = _delay(rng, 3), _delay(rng, 3)
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, data)
    ctx.set(bus.wstrb, strb)
    aw_done = w_done = False
    for cycle in range(timeout):
        ctx.set(bus.awvalid, not aw_done and cycle >= aw_at)
        ctx.set(bus.wvalid, not w_done and cycle >= w_at)
        bready = aw_done and w_done and (rng is None or rng.random() < 0.5)
        ctx.set(bus.bready, bready)
        _, _, awvalid, awready, wvalid, wready, bvalid, bresp = await ctx.tick().sample(
            bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid, bus.bresp)
        aw_done |= bool(awvalid and awready)
        w_done |= bool(wvalid and wready)
        if bready and bvalid:
            ctx.set(bus.bready, 0)
            return bresp
    raise TimeoutError(f"axil_write to {addr:#x}: no response after {timeout} cycles")


async def axil_read(ctx: SimulatorContext, bus, addr: int, *, rng: random.Random | None = None,
                    timeout: int = 1000) -> tuple[int, int]:
    """Read ``addr`` through the subordinate's AXI4-Lite ``bus``; return ``(RDATA, RRESP)``.

    With ``rng``, ARVALID rises after 0 to 3 cycles and RREADY is high in each cycle with probability 1/2.
    Raises ``TimeoutError`` after ``timeout`` cycles.
    """
    ar_at = _delay(rng, 3)
    ctx.set(bus.araddr, addr)
    ar_done = False
    for cycle in range(timeout):
        ctx.set(bus.arvalid, not ar_done and cycle >= ar_at)
        rready = ar_done and (rng is None or rng.random() < 0.5)
        ctx.set(bus.rready, rready)
        _, _, arvalid, arready, rvalid, rdata, rresp = await ctx.tick().sample(
            bus.arvalid, bus.arready, bus.rvalid, bus.rdata, bus.rresp)
        ar_done |= bool(arvalid and arready)
        if rready and rvalid:
            ctx.set(bus.rready, 0)
            return rdata, rresp
    raise TimeoutError(f"axil_read from {addr:#x}: no response after {timeout} cycles")


async def axis_send(ctx: SimulatorContext, axis, beats: Sequence[tuple[int, bool]],
                    gaps: Sequence[int] | None = None, *, timeout: int = 1_000_000) -> list[int]:
    """Send ``beats`` into the subordinate's AXI4-Stream ``axis``, a source by the rules of ``run_streams``.

    Parameters
    ----------
    ctx : SimulatorContext
    axis : interface
        Anything with ``tdata``, ``tvalid``, ``tready`` and ``tlast`` (the subordinate's input stream).
    beats : sequence of ``(tdata, tlast)``
    gaps : sequence of int, optional
        Cycles TVALID stays low before each beat, counted from the cycle after the previous transfer (from the
        call for the first beat): a source's ``gaps`` from :func:`~wavefabric.sim.streams.stall_patterns`. None
        offers every beat at once. TVALID then rises with the beat, and both hold until the transfer.
    timeout : int
        Cycles after the call by which every beat must have been taken.

    Returns
    -------
    list of int
        The transfer cycle of each beat, counted from the call.

    Raises
    ------
    TimeoutError
        A beat not taken by ``timeout``.
    """
    # Every ctx.set settles the design, which is most of a testbench's time: one set offers a beat (TDATA,
    # TLAST and TVALID at once), and TVALID only drops for a gap.
    offer, valid_bit = Cat(axis.tdata, axis.tlast, axis.tvalid), 1 << (len(axis.tdata) + 1)
    cycle, times = 0, []
    for i, (tdata, tlast) in enumerate(beats):
        gap = 0 if gaps is None else int(gaps[i])
        if gap and times:
            ctx.set(axis.tvalid, 0)
        for _ in range(gap):
            await ctx.tick()
            cycle += 1
        ctx.set(offer, valid_bit | int(tlast) << len(axis.tdata) | tdata)
        while True:
            if cycle >= timeout:
                raise TimeoutError(f"axis_send: beat {i} not taken after {timeout} cycles")
            _, _, ready = await ctx.tick().sample(axis.tready)
            cycle += 1
            if ready:
                break
        times.append(cycle - 1)
    ctx.set(axis.tvalid, 0)
    return times


async def axis_receive(ctx: SimulatorContext, axis, count: int, ready: Sequence[int] | None = None, *,
                       timeout: int = 1_000_000) -> tuple[list[tuple[int, bool]], list[int]]:
    """Receive ``count`` beats from the subordinate's AXI4-Stream ``axis``, a sink by the rules of ``run_streams``.

    Parameters
    ----------
    ctx : SimulatorContext
    axis : interface
        Anything with ``tdata``, ``tvalid``, ``tready`` and ``tlast`` (the subordinate's output stream).
    count : int
        Beats to receive; TREADY stays low after the last.
    ready : sequence of 0/1, optional
        TREADY in each cycle from the call while beats are still expected, at least ``timeout`` long: a sink's
        ready mask from :func:`~wavefabric.sim.streams.stall_patterns`. None keeps TREADY high.
    timeout : int
        Cycles after the call by which every beat must have come.

    Returns
    -------
    beats : list of ``(tdata, tlast)``
    times : list of int
        The transfer cycle of each beat, counted from the call.

    Raises
    ------
    TimeoutError
        Fewer than ``count`` beats by ``timeout``.
    """
    beats, times, cycle, high = [], [], 0, False
    while len(beats) < count:
        if cycle >= timeout:
            raise TimeoutError(f"axis_receive: {len(beats)} of {count} beats after {timeout} cycles")
        take = ready is None or bool(ready[cycle])
        if take != high:  # a set settles the design: only on a change
            ctx.set(axis.tready, take)
            high = take
        _, _, valid, tdata, tlast = await ctx.tick().sample(axis.tvalid, axis.tdata, axis.tlast)
        if take and valid:
            beats.append((int(tdata), bool(tlast)))
            times.append(cycle)
        cycle += 1
    ctx.set(axis.tready, 0)
    return beats, times
