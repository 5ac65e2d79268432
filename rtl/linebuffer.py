"""Line buffer with im2col window reads: C consecutive time steps of one channel, from any start time."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int

__all__ = ["LineBuffer"]


class LineBuffer(wiring.Component):
    """A ring of ``slots`` blocks of ``C`` time steps x ``channels`` channels, read as im2col windows.

    Time step ``t`` lives in bank ``t mod C`` (``C = lanes``, a power of two); a *block* is ``C`` consecutive
    time steps starting at a multiple of ``C`` and occupies one *slot* of the ring (the caller keeps the block
    to slot map: slot = block mod ``slots``). Each bank is one ``lib.memory`` of ``slots * 2**ceil(log2
    channels)`` words, address ``Cat(channel, slot)``.

    A window read returns the ``C`` time steps ``t0 .. t0 + C - 1`` of one channel for *any* ``t0``: with
    ``t0 = C * block + s`` (``0 <= s < C``), bank ``b`` reads block ``block + (b < s)`` and lane ``j`` is bank
    ``(j + s) mod C``, a rotation. A dilated convolution's taps are such windows at offsets ``k * dilation -
    padding``, so dilation is an address pattern and the data is never copied.

    Parameters
    ----------
    lanes : int
        C, time steps per block and per read: a power of two.
    channels : int
        Channels per time step (>= 1).
    slots : int
        Blocks the ring holds (>= 2).
    width : int
        Bits per value (signed).

    Ports
    -----
    w_en : In(1)
        Write a block row: ``w_data`` lane ``j`` is time step ``j`` of the block in ``w_slot``, channel ``w_ch``.
    w_slot, w_ch : In
    w_data : In(ArrayLayout(signed(width), lanes))
    r_en : In(1)
        Start a window read (when low, ``r_data`` holds the previous window).
    r_slot : In
        Slot of the block that holds ``t0``.
    r_next : In
        Slot of the block after it (``r_slot + 1`` modulo ``slots``, which the caller has at hand).
    r_shift : In(range(lanes))
        ``s = t0 mod C``.
    r_ch : In
        Channel.
    r_data : Out(ArrayLayout(signed(width), lanes))
        The window, lane ``j`` = time step ``t0 + j``, one cycle after ``r_en`` (block RAM read latency; the
        rotation is combinational after the read). A write and a read of the same word in the same cycle
        return the old value.
    """

    def __init__(self, lanes: int, channels: int, slots: int, width: int):
        check_int("lanes", lanes)
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two (1, 2, 4, ...), not {lanes}")
        self.lanes = lanes
        self.channels = check_int("channels", channels)
        self.slots = check_int("slots", slots, lo=2)
        self.width = check_int("width", width, lo=2)
        self.ch_bits = (channels - 1).bit_length()
        self.depth = slots << self.ch_bits
        row = data.ArrayLayout(signed(width), lanes)
        super().__init__({
            "w_en": In(1),
            "w_slot": In(range(slots)),
            "w_ch": In(range(channels)),
            "w_data": In(row),
            "r_en": In(1),
            "r_slot": In(range(slots)),
            "r_next": In(range(slots)),
            "r_shift": In(range(lanes)),
            "r_ch": In(range(channels)),
            "r_data": Out(row),
        })

    def _address(self, slot, ch):
        return Cat(ch[:self.ch_bits], slot) if self.ch_bits else slot

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        shift = Signal(range(lanes))
        with m.If(self.r_en):
            m.d.sync += shift.eq(self.r_shift)
        banks = []
        for b in range(lanes):
            m.submodules[f"bank{b}"] = mem = Memory(shape=signed(self.width), depth=self.depth, init=[])
            write, read = mem.write_port(), mem.read_port()
            # The last bank is never below the shift (at most lanes - 1): no comparison that is constant, which
            # Verilator rejects (CMPCONST).
            slot = Mux(b < self.r_shift, self.r_next, self.r_slot) if b < lanes - 1 else self.r_slot
            m.d.comb += [
                write.en.eq(self.w_en),
                write.addr.eq(self._address(self.w_slot, self.w_ch)),
                write.data.eq(self.w_data[b]),
                read.en.eq(self.r_en),
                read.addr.eq(self._address(slot, self.r_ch)),
            ]
            banks.append(read.data)
        # Rotation: lane j = bank (j + s) mod C, one C:1 multiplexer per lane.
        doubled = banks + banks
        for j in range(lanes):
            with m.Switch(shift):
                for s in range(lanes):
                    with m.Case(s):
                        m.d.comb += self.r_data[j].eq(doubled[j + s])
        return m
