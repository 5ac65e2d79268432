"""Testbench helpers for AXI4-Lite managers and AXI4-Stream endpoints (the interfaces of a Vivado-facing top).

* :func:`axil_write` / :func:`axil_read`: one AXI4-Lite transaction as a manager, optionally with seeded random
  timing: AW and W raised after independent random delays (either may come first, or both together), and BREADY
  / RREADY held low for random stretches. Valid stays high until its handshake, as AXI requires.
* :class:`AxisView`: an AXI4-Stream interface (``tdata``, ``tvalid``, ``tready``, ``tlast``) seen as the
  ``valid`` / ``ready`` / ``payload`` stream that :func:`~wavefabric.sim.stream.stream_put` and
  :func:`~wavefabric.sim.stream.stream_get` drive; the payload is ``tdata | tlast << width``.

Like the stream helpers, these must run in testbenches that started at time 0 or on a clock edge.
"""

from __future__ import annotations

import random

from amaranth.hdl import Cat
from amaranth.sim import SimulatorContext

__all__ = ["axil_write", "axil_read", "AxisView"]


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


class AxisView:
    """An AXI4-Stream interface as the stream helpers see it: ``valid``, ``ready`` and ``payload``.

    ``payload`` is ``Cat(tdata, tlast)``: a beat is the integer ``tdata | tlast << len(tdata)``.
    """

    def __init__(self, axis):
        self.valid, self.ready = axis.tvalid, axis.tready
        self.payload = Cat(axis.tdata, axis.tlast)
        self.width = len(axis.tdata)

    def beat(self, tdata: int, tlast: bool) -> int:
        """The payload integer of one beat."""
        return tdata | int(tlast) << self.width

    def split(self, payload: int) -> tuple[int, bool]:
        """``(tdata, tlast)`` of a payload integer."""
        return payload & ((1 << self.width) - 1), bool(payload >> self.width)
