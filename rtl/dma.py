"""Records between a stream and the DDR over AXI4: :class:`MemoryReader` and :class:`MemoryWriter`.

A *record* is a value of any fixed-width Amaranth shape (a lane vector such as ``ArrayLayout(signed(16), C)``,
a struct, a plain integer), wider or narrower than the bus. In memory each record occupies ``ceil(width /
data_width)`` whole beats, little-endian (record bit 0 is bit 0 of its first beat; the bits above the record in
its last beat are written as zeros and ignored when read), and consecutive records sit at consecutive beats.
A command ``(addr, count)`` moves ``count`` records starting at the byte address ``addr``, a multiple of the
beat's bytes: the engines split it into INCR bursts of at most 256 beats that never cross a 4 KiB boundary
(:func:`~wavefabric.model.perf.dma_bursts`). The AXI4 channels are those of :mod:`wavefabric.rtl.axi`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, ShapeCastable, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.perf import AXI_MAX_BURST, AXI_PAGE
from .axi import (
    check_data_width,
    read_address_layout,
    read_data_layout,
    write_address_layout,
    write_data_layout,
    write_response_layout,
)

__all__ = ["MemoryReader", "MemoryWriter", "command_layout", "record_layout"]


def command_layout(addr_width: int, max_records: int) -> data.StructLayout:
    """Payload of ``cmd``: ``addr`` (byte address of the first record), ``count`` (records, up to ``max_records``)."""
    return data.StructLayout({"addr": unsigned(addr_width), "count": range(max_records + 1)})


def record_layout(record_shape: ShapeCastable) -> data.StructLayout:
    """Payload of ``records``: ``data`` (one record) and ``last`` (high on the command's last record)."""
    return data.StructLayout({"data": record_shape, "last": 1})


class _Mover(wiring.Component):
    """Parameters and burst arithmetic shared by the reader and the writer."""

    def __init__(self, record_shape, data_width: int, addr_width: int, max_records: int):
        try:
            width = Shape.cast(record_shape).width
        except TypeError:
            raise ValueError(f"record_shape must be an Amaranth shape, not {record_shape!r}") from None
        if width < 1:
            raise ValueError(f"record_shape must be at least 1 bit wide, not {width}")
        self.record_shape, self.record_width = record_shape, width
        self.data_width = check_data_width(data_width)
        self.addr_width = check_int("addr_width", addr_width, lo=12, hi=64)
        self.beats_per_record = -(-width // data_width)
        self.beat_bytes = data_width // 8
        top = (1 << addr_width) // (self.beats_per_record * self.beat_bytes)
        self.max_records = check_int("max_records", max_records, hi=top)
        self.max_beats = max_records * self.beats_per_record
        super().__init__({"cmd": In(stream.Signature(command_layout(addr_width, max_records))),
                          **self._channels(), "error": Out(1)})

    def _channels(self) -> dict:
        """The members between ``cmd`` and ``error``, once the parameters are checked."""
        raise NotImplementedError

    def _start(self, m: Module, addr: Signal, beats: Signal, error: Value) -> None:
        """On a ``cmd`` transfer, load a byte address (low bits cleared) and a beat count; flag a misaligned one."""
        shift = self.beat_bytes.bit_length() - 1
        m.d.sync += [addr.eq(Cat(Const(0, shift), self.cmd.payload.addr[shift:])),
                     beats.eq(self.cmd.payload.count * self.beats_per_record)]
        with m.If(self.cmd.payload.addr[:shift] != 0):
            m.d.sync += error.eq(1)

    def _burst_beats(self, m: Module, name: str, addr: Value, beats_left: Value) -> Signal:
        """Beats of the next burst from byte ``addr`` with ``beats_left`` to go: up to 256, within the 4 KiB page."""
        page_left = (AXI_PAGE - addr[:12]) >> (self.beat_bytes.bit_length() - 1)
        cap = Mux(page_left < AXI_MAX_BURST, page_left, AXI_MAX_BURST)
        beats = Signal(range(AXI_MAX_BURST + 1), name=name)
        m.d.comb += beats.eq(Mux(beats_left < cap, beats_left, cap))
        return beats


class MemoryReader(_Mover):
    """Streams out the records of each command, read from memory over AXI4 (AR and R channels).

    Parameters
    ----------
    record_shape : shape
        Shape of one record (any width from 1 bit).
    data_width : {32, 64}
        Bits per AXI beat.
    addr_width : int
        Bits of a byte address (12 to 64).
    max_records : int
        Largest ``count`` of a command (the ``count`` field's range); a command's records must fit in the address
        space.
    outstanding : int
        Bursts in flight at most (1 to 64): AR stops while that many have not delivered their last beat. Two
        keep a long transfer at one beat per cycle at a 40-cycle memory latency (:func:`~wavefabric.model.perf.
        memory_reader_cycles`).

    Ports
    -----
    cmd : In(stream(command_layout))
        ``addr`` (a multiple of the beat's bytes: otherwise its low bits are ignored and ``error`` is set) and
        ``count``. Taken the cycle after the previous command's last AR, so its bursts follow at once and R
        streams on from one command to the next; a count of 0 reads nothing.
    ar, r : Out(stream(read_address_layout)), In(stream(read_data_layout))
        AXI4 read channels. ``r`` is ready whenever a beat has room: at once for the first beats of a record,
        and for its last beat when ``records`` can take the record, so a stalled consumer stalls R.
    records : Out(stream(record_layout))
        The records in address order, ``last`` on each command's last one.
    error : Out(1)
        Sticky: a non-OKAY ``RRESP`` or a misaligned ``addr``.

    Latency and cycle count: a record leaves one cycle after its last beat arrives. With an idle reader,
    commands always valid from cycle 0, the memory always ready and valid after its latency and ``records``
    always ready, the last record transfers in cycle ``memory_reader_cycles(...) - 1``.
    """

    def __init__(self, record_shape, data_width: int = 64, addr_width: int = 32, max_records: int = 1 << 16,
                 outstanding: int = 2):
        self.outstanding = check_int("outstanding", outstanding, hi=64)
        super().__init__(record_shape, data_width, addr_width, max_records)

    def _channels(self) -> dict:
        return {"ar": Out(stream.Signature(read_address_layout(self.addr_width))),
                "r": In(stream.Signature(read_data_layout(self.data_width))),
                "records": Out(stream.Signature(record_layout(self.record_shape)))}

    def elaborate(self, platform):
        m = Module()
        dw, per_record = self.data_width, self.beats_per_record
        addr = Signal(self.addr_width)
        ar_left = Signal(range(self.max_beats + 1))
        in_flight = Signal(range(self.outstanding + 1))
        # The record counts of the commands whose records are still to come, oldest first. Each has a burst in
        # flight or is the one AR is working on, so outstanding + 1 entries never run out.
        m.submodules.counts = counts = SyncFIFO(width=len(self.cmd.payload.count), depth=self.outstanding + 1)
        record = Signal(range(self.max_records))  # index of the record that r delivers, in the oldest command
        part = Signal(range(per_record))  # its beat

        m.d.comb += [self.cmd.ready.eq((ar_left == 0) & counts.w_rdy), counts.w_data.eq(self.cmd.payload.count),
                     counts.w_en.eq(self.cmd.valid & self.cmd.ready & (self.cmd.payload.count != 0))]
        with m.If(self.cmd.valid & self.cmd.ready):
            self._start(m, addr, ar_left, self.error)

        beats = self._burst_beats(m, "burst_beats", addr, ar_left)
        m.d.comb += [self.ar.valid.eq((ar_left != 0) & (in_flight < self.outstanding)),
                     self.ar.payload.addr.eq(addr), self.ar.payload.len.eq(beats - 1)]
        ar_fire, r_fire = self.ar.valid & self.ar.ready, self.r.valid & self.r.ready
        with m.If(ar_fire):
            m.d.sync += [addr.eq(addr + (beats << (self.beat_bytes.bit_length() - 1))), ar_left.eq(ar_left - beats)]
        m.d.sync += in_flight.eq(in_flight + ar_fire - (r_fire & self.r.payload.last))

        record_end = part == per_record - 1
        last = record == counts.r_data - 1
        parts = Signal((per_record - 1) * dw)  # the record's earlier beats, the first in the low bits
        m.d.comb += [self.r.ready.eq(~record_end | ~self.records.valid | self.records.ready),
                     counts.r_en.eq(r_fire & record_end & last)]
        with m.If(self.records.ready):
            m.d.sync += self.records.valid.eq(0)
        with m.If(r_fire):
            with m.If(self.r.payload.resp != 0):
                m.d.sync += self.error.eq(1)
            with m.If(record_end):
                bits = Cat(parts, self.r.payload.data) if per_record > 1 else self.r.payload.data
                m.d.sync += [self.records.valid.eq(1), part.eq(0), record.eq(Mux(last, 0, record + 1)),
                             self.records.payload.eq(Cat(bits[:self.record_width], last))]
            if per_record > 1:
                with m.Else():
                    # Shift in from the top: after per_record - 1 beats the first is in the low bits.
                    m.d.sync += [part.eq(part + 1), parts.eq(Cat(parts[dw:], self.r.payload.data))]
        return m


class MemoryWriter(_Mover):
    """Writes the records of each command to memory over AXI4 (AW, W and B channels); one ``done`` per command.

    Parameters
    ----------
    record_shape, data_width, addr_width, max_records
        As :class:`MemoryReader`'s.
    pending : int
        Commands whose ``done`` beat has not been taken, at most (1 to 64): a command waits for its B responses
        while the next one's records go out, and ``cmd`` stops while that many wait.

    Ports
    -----
    cmd : In(stream(command_layout))
        ``addr`` (a multiple of the beat's bytes: otherwise its low bits are ignored and ``error`` is set) and
        ``count``; taken the cycle after the previous command's last W beat (if fewer than ``pending`` commands
        wait for their ``done``).
    records : In(stream(record_layout))
        The command's records in address order; ``last`` must be high exactly on its last one (``error``
        otherwise; the count decides what is written). Taken only while a command has records to go.
    aw, w, b : Out(stream(write_address_layout)), Out(stream(write_data_layout)), In(stream(write_response_layout))
        AXI4 write channels. W beats follow the records and do not wait for AW (as AXI4 requires of a manager);
        every strobe is set; ``b`` is always ready.
    done : Out(stream(StructLayout({"error": 1})))
        One beat per command, in order, once every burst of it has had its B response (so its data is in
        memory), with the ``error`` flag as it stands then; for a count of 0 at once.
    error : Out(1)
        Sticky: a non-OKAY ``BRESP``, a ``records`` ``last`` out of place or a misaligned ``addr``.

    Latency and cycle count: a record's first beat is offered on ``w`` the cycle after the record is taken. With
    an idle writer, commands and records always valid from cycle 0, the memory always ready (a W beat when its
    burst's AW has transferred) and ``done`` always ready, the last ``done`` transfers in cycle
    ``memory_writer_cycles(...) - 1``.
    """

    def __init__(self, record_shape, data_width: int = 64, addr_width: int = 32, max_records: int = 1 << 16,
                 pending: int = 4):
        self.pending = check_int("pending", pending, hi=64)
        super().__init__(record_shape, data_width, addr_width, max_records)

    def _channels(self) -> dict:
        return {"records": In(stream.Signature(record_layout(self.record_shape))),
                "aw": Out(stream.Signature(write_address_layout(self.addr_width))),
                "w": Out(stream.Signature(write_data_layout(self.data_width))),
                "b": In(stream.Signature(write_response_layout())),
                "done": Out(stream.Signature(data.StructLayout({"error": 1})))}

    def elaborate(self, platform):
        m = Module()
        dw, per_record, shift = self.data_width, self.beats_per_record, self.beat_bytes.bit_length() - 1
        aw_addr, w_addr = Signal(self.addr_width), Signal(self.addr_width)
        aw_left, w_left = Signal(range(self.max_beats + 1)), Signal(range(self.max_beats + 1))
        issued = Signal(range(self.max_beats + 1))  # bursts of the command on AW so far
        answered = Signal(range(self.pending * self.max_beats + 1))  # B responses not yet matched by a done
        records_left = Signal(range(self.max_records + 1))
        w_burst_left = Signal(range(AXI_MAX_BURST + 1))  # beats left in the current W burst; 0: a new one is next
        held = Signal(per_record * dw)  # the record on w, its current beat in the low bits
        part = Signal(range(per_record))
        # The burst count of every command waiting for its done, oldest first.
        m.submodules.bursts = bursts = SyncFIFO(width=len(issued), depth=self.pending)

        cmd_fire = self.cmd.valid & self.cmd.ready
        m.d.comb += self.cmd.ready.eq((aw_left == 0) & (w_left == 0) & bursts.w_rdy)
        with m.If(cmd_fire):
            self._start(m, aw_addr, aw_left, self.error)
            self._start(m, w_addr, w_left, self.error)
            m.d.sync += records_left.eq(self.cmd.payload.count)

        aw_beats = self._burst_beats(m, "aw_burst_beats", aw_addr, aw_left)
        aw_fire = self.aw.valid & self.aw.ready
        m.d.comb += [self.aw.valid.eq(aw_left != 0), self.aw.payload.addr.eq(aw_addr),
                     self.aw.payload.len.eq(aw_beats - 1),
                     # A command's burst count goes in with its last AW (a count of 0: when it is taken).
                     bursts.w_en.eq((cmd_fire & (self.cmd.payload.count == 0)) | (aw_fire & (aw_beats == aw_left))),
                     bursts.w_data.eq(Mux(cmd_fire, 0, issued + 1))]
        with m.If(aw_fire):
            m.d.sync += [aw_addr.eq(aw_addr + (aw_beats << shift)), aw_left.eq(aw_left - aw_beats),
                         issued.eq(Mux(aw_beats == aw_left, 0, issued + 1))]

        # W computes the same burst split from its own copy of the address, so it never waits for AW.
        w_burst = Mux(w_burst_left == 0, self._burst_beats(m, "w_burst_beats", w_addr, w_left), w_burst_left)
        m.d.comb += [self.w.payload.data.eq(held[:dw]), self.w.payload.strb.eq(-1),
                     self.w.payload.last.eq(w_burst == 1)]
        w_fire, record_end = self.w.valid & self.w.ready, part == per_record - 1
        with m.If(w_fire):
            m.d.sync += [w_burst_left.eq(w_burst - 1), w_addr.eq(w_addr + self.beat_bytes), w_left.eq(w_left - 1),
                         part.eq(Mux(record_end, 0, part + 1)), held.eq(held[dw:])]
        m.d.comb += self.records.ready.eq((records_left != 0) & (~self.w.valid | (self.w.ready & record_end)))
        with m.If(self.records.valid & self.records.ready):
            m.d.sync += [held.eq(Value.cast(self.records.payload.data).as_unsigned()), part.eq(0), self.w.valid.eq(1),
                         records_left.eq(records_left - 1)]
            with m.If(self.records.payload.last != (records_left == 1)):
                m.d.sync += self.error.eq(1)
        with m.Elif(w_fire & record_end):
            m.d.sync += self.w.valid.eq(0)

        # B responses come in burst order: the oldest command is done once as many have come as it has bursts.
        done_fire = self.done.valid & self.done.ready
        m.d.comb += [self.b.ready.eq(1), self.done.valid.eq(bursts.r_rdy & (answered >= bursts.r_data)),
                     self.done.payload.error.eq(self.error), bursts.r_en.eq(done_fire)]
        m.d.sync += answered.eq(answered + self.b.valid - Mux(done_fire, bursts.r_data, 0))
        with m.If(self.b.valid & (self.b.payload.resp != 0)):
            m.d.sync += self.error.eq(1)
        return m
