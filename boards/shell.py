"""The AXI shell every PYNQ-Z1 accelerator design sits in: what Vivado and the PS see of a design.

A design is a ``sync``-domain *core* with nested interfaces, wrapped by :class:`ShellTop` into the flat module
a block design instantiates. The shell provides:

* :class:`Register` and :func:`register_table`: a declarative register map in the HLS ``ap_ctrl`` layout
  (0x00 CTRL, 0x04 GIE, 0x08 IER, 0x0C ISR, parameters from 0x10 at a stride of 8). The same declaration
  builds the hardware (:class:`ApCtrlRegisters`), the register-map JSON and, through it, the driver.
* :class:`AxiLiteSlave`: the AXI4-Lite protocol, reduced to one-cycle register reads and writes.
* :class:`ApCtrlRegisters`: the register file: ap_start / ap_done / ap_idle / ap_ready, the interrupt
  registers, and one port per parameter register (``Out`` for ``rw``, ``In`` for ``ro``; constants are
  answered by the file itself).
* AXI4-Stream adapters: :func:`axi_stream_signature`, :func:`stream_width`, :func:`lanes` (a TDATA's values).
* AXI4 managers that reach the PS DDR (S_AXI_HP0, HP1...): :func:`axi4_signature` (read only, or read and
  write) and :func:`connect_read_master` / :func:`connect_write_master`, which pass an engine's ``ar`` / ``r``
  and ``aw`` / ``w`` / ``b`` streams (:mod:`wavefabric.rtl.axi`) through with the constant AXI4 fields filled
  in; :func:`ddr_managers` names a core's managers (the block design connects each to an HP port).
* :class:`ShellTop`: the core with flat ports ``aclk``, ``aresetn`` (active low, synchronous), ``s_axi_ctrl_*``
  (the core's ``ctrl``), every other interface ``<member>_<signal>``, and ``X_INTERFACE_INFO`` /
  ``X_INTERFACE_PARAMETER`` attributes, so that ``create_bd_cell -type module -reference`` infers the AXI4-Lite,
  AXI4-Stream and AXI4 interfaces, tristate pins (``gpio_rtl``, :func:`gpio_signature`), the clock, the reset
  and the interrupt.
* :class:`StreamView`: the core with every AXI channel as a ``lib.stream`` (AW, W, B, AR, R; TDATA / TLAST;
  the DDR master as the engine-side ``ar`` / ``r``), so that the batched simulation backends
  (:func:`~wavefabric.sim.streams.run_streams`, Verilator included) drive a design through its real register
  file and adapters, and :class:`~wavefabric.sim.streams.AxiMemory` serves its DDR managers. The view is wiring
  only: no register, no cycle.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from amaranth.hdl import Cat, ClockDomain, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.fixed import QFormat
from ..model.kernels import Numerics
from ..rtl.axi import (
    read_address_layout,
    read_data_layout,
    write_address_layout,
    write_data_layout,
    write_response_layout,
)

__all__ = ["ADDR_WIDTH", "OKAY", "SLVERR", "MAX_TDATA_WIDTH", "AXI4_BURST_INCR", "AXI4_CACHE", "vlnv",
           "check_identifier", "Register", "register_table", "config_id", "format_word", "numerics_json",
           "numerics_from_json", "config_fields", "check_config_id", "axi_lite_signature",
           "axi_stream_signature", "axi4_signature", "axi4_read_signature", "gpio_signature", "stream_width",
           "element_bits", "lanes", "AxiLiteSlave", "ApCtrlRegisters", "job_cycles", "connect_read_master",
           "connect_write_master", "ddr_managers", "ShellTop", "StreamView"]

#: Address bits of the AXI4-Lite slave: a 4 KiB window, the smallest segment Vivado's address editor assigns.
ADDR_WIDTH = 12
#: AXI response codes.
OKAY, SLVERR = 0b00, 0b10
#: Widest AXI4-Stream TDATA the AXI DMA supports.
MAX_TDATA_WIDTH = 1024
#: AxBURST of every burst (INCR) and AxCACHE (normal non-cacheable bufferable, what HP ports expect).
AXI4_BURST_INCR, AXI4_CACHE = 0b01, 0b0011


def vlnv(name: str) -> str:
    """The VLNV of a module reference to the Verilog module ``name`` in a Vivado block design."""
    return f"xilinx.com:module_ref:{name}:1.0"


def check_identifier(name: str) -> str:
    """``name`` if it is a Verilog identifier, else ``ValueError`` naming the rule."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), not {name!r}")
    return name


@dataclass(frozen=True)
class Register:
    """One parameter register of an ``ap_ctrl`` register map (32 bits on the bus).

    Attributes
    ----------
    name : str
        Upper-case name; the register file's port is its lower-case form.
    access : {"rw", "ro"}
        ``rw``: written by the host, an ``Out`` port of :class:`ApCtrlRegisters`. ``ro``: read only, an ``In``
        port, or the constant ``value``.
    description : str
    value : int or None
        A constant (``ro`` only): the configuration a driver checks against its JSON.
    width : int
        Bits the register holds (1 to 32); a write keeps the low ``width`` bits.
    limit : int or None
        ``rw`` only: a write whose value (after byte strobes) is ``limit`` or more answers SLVERR and is dropped.
    """

    name: str
    access: str
    description: str
    value: int | None = None
    width: int = 32
    limit: int | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.name):
            raise ValueError(f"register name must be upper case letters, digits and _, not {self.name!r}")
        if self.access not in ("rw", "ro"):
            raise ValueError(f"register {self.name}: access must be 'rw' or 'ro', not {self.access!r}")
        if not 1 <= self.width <= 32:
            raise ValueError(f"register {self.name}: width must be 1 to 32, not {self.width}")
        if self.value is not None and (self.access != "ro" or not 0 <= self.value < 1 << 32):
            raise ValueError(f"register {self.name}: a constant is read only and fits 32 bits, not {self.value}")
        if self.limit is not None and self.access != "rw":
            raise ValueError(f"register {self.name}: only rw registers have a limit")


#: The four ``ap_ctrl`` registers that open every map.
_AP_CTRL = (("CTRL", "bit 0 ap_start (write 1), bit 1 ap_done (COR), bit 2 ap_idle, bit 3 ap_ready (COR)"),
            ("GIE", "bit 0 global interrupt enable"),
            ("IER", "bit 0 ap_done, bit 1 ap_ready interrupt enable"),
            ("ISR", "bit 0 ap_done, bit 1 ap_ready interrupt status (toggle on write)"))


def register_table(params: Sequence[Register]) -> dict[str, dict]:
    """The JSON form of a register map: name to ``offset``, ``access``, ``description`` (and ``value``).

    CTRL, GIE, IER and ISR at 0x00 to 0x0C, then ``params`` from 0x10 at a stride of 8 (HLS).
    """
    names = [name for name, _ in _AP_CTRL] + [reg.name for reg in params]
    if len(set(names)) != len(names):
        raise ValueError(f"register names must be unique: {names}")
    if 0x10 + 8 * len(params) > 1 << ADDR_WIDTH:
        raise ValueError(f"{len(params)} registers do not fit the {1 << ADDR_WIDTH}-byte window")
    table = {name: {"offset": 4 * i, "access": "rw", "description": text} for i, (name, text) in enumerate(_AP_CTRL)}
    for i, reg in enumerate(params):
        table[reg.name] = {"offset": 0x10 + 8 * i, "access": reg.access, "description": reg.description}
        if reg.value is not None:
            table[reg.name]["value"] = reg.value
    return table


def config_id(config: dict) -> int:
    """CRC-32 of a JSON-ready configuration (keys sorted): a register a driver compares with its JSON."""
    return zlib.crc32(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


def format_word(fmt: QFormat) -> int:
    """A format as a configuration register holds it: ``width | frac << 8``."""
    return fmt.width | fmt.frac << 8


def numerics_json(num: Numerics) -> dict:
    """The JSON of a :class:`~wavefabric.model.kernels.Numerics` in a register map's configuration."""
    return {"act": [num.act.width, num.act.frac], "weight": [num.weight.width, num.weight.frac],
            "gate": [num.gate.width, num.gate.frac], "table_bits": num.table_bits}


def numerics_from_json(fields: dict) -> Numerics:
    """The inverse of :func:`numerics_json`."""
    return Numerics(act=QFormat(*fields["act"]), weight=QFormat(*fields["weight"]), gate=QFormat(*fields["gate"]),
                    table_bits=fields["table_bits"])


def config_fields(regmap: dict, design: str) -> dict:
    """A copy of the ``config`` of a register map of ``design``; ``ValueError`` for another design's."""
    if regmap.get("design") != design:
        raise ValueError(f"the register map is of design {regmap.get('design', 'gru')!r}, not {design!r}")
    return dict(regmap["config"])


def check_config_id(config, regmap: dict) -> None:
    """``ValueError`` unless the register map's ``config_id`` is that of ``config`` (rebuilt from the map)."""
    if config_id(config.as_json()) != regmap.get("config_id"):
        raise ValueError("the register map's config_id is not that of its configuration: the JSON was edited")


def axi_lite_signature(addr_width: int = ADDR_WIDTH) -> wiring.Signature:
    """AXI4-Lite with 32-bit data, from the manager's side (a subordinate uses ``In`` of it). No AxPROT."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def axi_stream_signature(width: int, keep: bool = False) -> wiring.Signature:
    """AXI4-Stream from the transmitter's side: TDATA, TVALID, TREADY, TLAST (and TKEEP with ``keep``)."""
    members = {"tdata": Out(width), "tvalid": Out(1), "tready": In(1), "tlast": Out(1)}
    if keep:
        members["tkeep"] = Out(width // 8)
    return wiring.Signature(members)


def axi4_signature(addr_width: int = 32, data_width: int = 64, write: bool = True) -> wiring.Signature:
    """An AXI4 manager from the manager's side: the read channels (AR, R) and, with ``write``, the write
    channels (AW, W, B); no ID, QoS or lock."""
    members = {
        "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2), "arcache": Out(4),
        "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    }
    if write:
        members |= {
            "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2), "awcache": Out(4),
            "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        }
    return wiring.Signature(members)


def axi4_read_signature(addr_width: int = 32, data_width: int = 64) -> wiring.Signature:
    """The read channels of an AXI4 manager (AR and R): :func:`axi4_signature` without ``write``."""
    return axi4_signature(addr_width, data_width, write=False)


def gpio_signature() -> wiring.Signature:
    """A tristate pin as Vivado's ``gpio_rtl`` interface, from the driving side: TRI_O (value), TRI_T (1: high
    impedance), TRI_I (the pin, read back). The block design's wrapper puts an IOBUF on it."""
    return wiring.Signature({"tri_i": In(1), "tri_o": Out(1), "tri_t": Out(1)})


def element_bits(widest: int) -> int:
    """Bits of one value's container on a stream: 8, 16 or 32, the smallest that holds ``widest`` bits."""
    if not 1 <= widest <= 32:
        raise ValueError(f"stream values must be 1 to 32 bits wide, not {widest}")
    return next(bits for bits in (8, 16, 32) if widest <= bits)


def stream_width(values: int, bits: int) -> int:
    """TDATA bits of ``values`` values of ``bits`` each: a power of two, at least 32 (the AXI DMA's rules)."""
    if values * bits > MAX_TDATA_WIDTH:
        raise ValueError(f"{values} x {bits}-bit values exceed the AXI DMA's {MAX_TDATA_WIDTH}-bit stream: at most "
                         f"{MAX_TDATA_WIDTH // bits} values")
    return max(32, 1 << (values * bits - 1).bit_length())


def lanes(tdata, bits: int, count: int) -> list:
    """The first ``count`` values of ``bits`` bits in TDATA, value ``j`` in bits ``[j * bits, (j + 1) * bits)``."""
    return [tdata[j * bits:(j + 1) * bits] for j in range(count)]


class AxiLiteSlave(wiring.Component):
    """An AXI4-Lite subordinate that turns bus transactions into one-cycle register accesses.

    Write address and write data are taken independently (either first, or both together) into one holding
    register each; ``awready`` / ``wready`` are low while their register is full, so a manager may present them
    in any order and with any timing. When both are held and no response is pending, ``wr_en`` pulses for one
    cycle and the register file answers ``wr_err`` in that cycle; ``bvalid`` rises the next cycle (SLVERR if
    ``wr_err``) and stays until ``bready``. A read is taken when ``rvalid`` is low: ``rd_en`` pulses in the cycle
    of the AR handshake (side effects such as clear-on-read happen then), ``rd_data`` / ``rd_err`` are registered
    and ``rvalid`` rises the next cycle. No ready depends combinationally on a valid, and every transaction gets
    exactly one response, so the bus cannot hang.

    Latency: read, AR handshake to ``rvalid`` 1 cycle; write, the later of AW and W to ``bvalid`` 2 cycles.

    Ports
    -----
    bus : In(axi_lite_signature(addr_width))
    wr_en, wr_addr (word index), wr_data, wr_strb : Out
    wr_err : In(1)
    rd_en, rd_addr (word index) : Out
    rd_data : In(32)
    rd_err : In(1)
    """

    def __init__(self, addr_width: int = ADDR_WIDTH):
        if isinstance(addr_width, bool) or not isinstance(addr_width, int) or not 3 <= addr_width <= 32:
            raise ValueError(f"addr_width must be an integer from 3 to 32, not {addr_width!r}")
        super().__init__({
            "bus": In(axi_lite_signature(addr_width)),
            "wr_en": Out(1), "wr_addr": Out(addr_width - 2), "wr_data": Out(32), "wr_strb": Out(4), "wr_err": In(1),
            "rd_en": Out(1), "rd_addr": Out(addr_width - 2), "rd_data": In(32), "rd_err": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        aw_full, w_full = Signal(), Signal()
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [self.wr_addr.eq(bus.awaddr[2:]), aw_full.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [self.wr_data.eq(bus.wdata), self.wr_strb.eq(bus.wstrb), w_full.eq(1)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        m.d.comb += self.wr_en.eq(aw_full & w_full & ~bus.bvalid)
        with m.If(self.wr_en):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1), bus.bresp.eq(Mux(self.wr_err, SLVERR, OKAY))]

        m.d.comb += [bus.arready.eq(~bus.rvalid), self.rd_addr.eq(bus.araddr[2:]),
                     self.rd_en.eq(bus.arvalid & bus.arready)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        with m.If(self.rd_en):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(Mux(self.rd_err, 0, self.rd_data)),
                         bus.rresp.eq(Mux(self.rd_err, SLVERR, OKAY))]
        return m


def _merge(old, data_word, strb):
    """``old`` with the bytes of ``data_word`` whose ``strb`` bit is set (32 bits)."""
    return Cat(*(Mux(strb[i], data_word[8 * i:8 * i + 8], old[8 * i:8 * i + 8]) for i in range(4)))


class ApCtrlRegisters(wiring.Component):
    """The ``ap_ctrl`` register file of a declarative map, behind an :class:`AxiLiteSlave`.

    CTRL: bit 0 ap_start (a written 1 sets it; it reads 1 until the job is done), bit 1 ap_done and bit 3
    ap_ready (set when a job finishes, cleared by a read of CTRL; a finish in the cycle of the read wins), bit 2
    ap_idle. A job *launches* in the first cycle ap_start is set while no job runs; it *finishes* in a cycle
    where ``finish`` is high while it runs (not in its launch cycle), which clears ap_start. GIE bit 0, IER and
    ISR bits 0 (done) and 1 (ready); a written 1 toggles an ISR bit; a finish sets the ISR bits enabled in IER.
    Every other address of the 4 KiB window, and every write to a read-only register, answers SLVERR; accesses
    are whole words (the two low address bits are ignored) and WSTRB selects the bytes written (CTRL, GIE,
    IER and ISR live in byte 0).

    Ports
    -----
    bus : In(axi_lite_signature())
    launch : Out(1)
        High in a job's launch cycle (the design latches its job then).
    finish : In(1)
        The running job is done.
    busy : Out(1)
        A job runs: from the cycle after launch to the finish cycle.
    interrupt : Out(1)
        ``GIE & (ISR != 0)``, level high.
    <name> : Out(width) for every ``rw`` register, In(width) for every ``ro`` register without a value.

    Latency: as :class:`AxiLiteSlave` (a read answers in 1 cycle, a write in 2).
    """

    def __init__(self, params: Sequence[Register]):
        self.params = tuple(params)
        self.table = register_table(self.params)
        members = {"bus": In(axi_lite_signature()), "launch": Out(1), "finish": In(1), "busy": Out(1),
                   "interrupt": Out(1)}
        for reg in self.params:
            if reg.value is None:
                if reg.name.lower() in members:
                    raise ValueError(f"register {reg.name} clashes with the port {reg.name.lower()!r}")
                members[reg.name.lower()] = Out(reg.width) if reg.access == "rw" else In(reg.width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.slave = slave = AxiLiteSlave()
        wiring.connect(m, wiring.flipped(self.bus), slave.bus)
        start, done, ready, busy = Signal(), Signal(), Signal(), self.busy
        gie, ier, isr = Signal(), Signal(2), Signal(2)
        m.d.comb += self.launch.eq(start & ~busy)
        with m.If(self.launch):
            m.d.sync += busy.eq(1)

        offsets = {name: reg["offset"] >> 2 for name, reg in self.table.items()}
        ctrl_value = Signal(32)
        m.d.comb += ctrl_value.eq(start | done << 1 | ~busy << 2 | ready << 3)
        values = {"CTRL": ctrl_value, "GIE": gie, "IER": ier, "ISR": isr}
        values |= {reg.name: Const(reg.value, 32) if reg.value is not None else getattr(self, reg.name.lower())
                   for reg in self.params}
        with m.Switch(slave.rd_addr):
            for name, value in values.items():
                with m.Case(offsets[name]):
                    m.d.comb += slave.rd_data.eq(value)
            with m.Default():
                m.d.comb += slave.rd_err.eq(1)
        with m.If(slave.rd_en & (slave.rd_addr == offsets["CTRL"])):
            m.d.sync += [done.eq(0), ready.eq(0)]  # clear on read (a finish in this cycle wins, below)

        data_word, strb, write = slave.wr_data, slave.wr_strb, slave.wr_en
        with m.Switch(slave.wr_addr):
            with m.Case(offsets["CTRL"]):
                with m.If(write & strb[0] & data_word[0]):
                    m.d.sync += start.eq(1)
            with m.Case(offsets["GIE"]):
                with m.If(write & strb[0]):
                    m.d.sync += gie.eq(data_word[0])
            with m.Case(offsets["IER"]):
                with m.If(write & strb[0]):
                    m.d.sync += ier.eq(data_word[:2])
            with m.Case(offsets["ISR"]):
                with m.If(write & strb[0]):
                    m.d.sync += isr.eq(isr ^ data_word[:2])
            for reg in self.params:
                if reg.access != "rw":
                    continue
                with m.Case(offsets[reg.name]):
                    target = getattr(self, reg.name.lower())
                    merged = _merge(target, data_word, strb)
                    legal = Const(1) if reg.limit is None else merged < reg.limit
                    m.d.comb += slave.wr_err.eq(~legal)
                    with m.If(write & legal):
                        m.d.sync += target.eq(merged)
            with m.Default():
                m.d.comb += slave.wr_err.eq(1)  # read-only or unmapped

        with m.If(busy & self.finish):
            m.d.sync += [busy.eq(0), start.eq(0), done.eq(1), ready.eq(1), isr.eq(isr | ier)]
        m.d.comb += self.interrupt.eq(gie & isr.any())
        return m


def job_cycles(m: Module, regs: ApCtrlRegisters) -> Signal:
    """A CYCLES counter for ``regs``: clock cycles of the last job, launch to finish (modulo 2**32)."""
    cycles = Signal(32)
    with m.If(regs.busy):
        m.d.sync += cycles.eq(cycles + 1)
    with m.If(regs.launch):
        m.d.sync += cycles.eq(0)
    return cycles


def connect_read_master(m: Module, bus, ar, r) -> None:
    """Pass an engine's ``ar`` (Out) / ``r`` (In) streams through to the AXI4 read manager ``bus``.

    ARSIZE is the data bytes, ARBURST INCR, ARCACHE 0b0011, ARPROT 0 (:mod:`wavefabric.rtl.axi`). Wiring only.
    """
    size = (len(bus.rdata) // 8 - 1).bit_length()
    m.d.comb += [bus.araddr.eq(ar.payload.addr), bus.arlen.eq(ar.payload.len), bus.arsize.eq(size),
                 bus.arburst.eq(AXI4_BURST_INCR), bus.arcache.eq(AXI4_CACHE), bus.arprot.eq(0),
                 bus.arvalid.eq(ar.valid), ar.ready.eq(bus.arready),
                 r.payload.data.eq(bus.rdata), r.payload.resp.eq(bus.rresp), r.payload.last.eq(bus.rlast),
                 r.valid.eq(bus.rvalid), bus.rready.eq(r.ready)]


def connect_write_master(m: Module, bus, aw, w, b) -> None:
    """Pass an engine's ``aw`` (Out), ``w`` (Out) and ``b`` (In) streams through to the AXI4 manager ``bus``.

    AWSIZE is the data bytes, AWBURST INCR, AWCACHE 0b0011, AWPROT 0, as :func:`connect_read_master`. Wiring only.
    """
    size = (len(bus.wdata) // 8 - 1).bit_length()
    m.d.comb += [bus.awaddr.eq(aw.payload.addr), bus.awlen.eq(aw.payload.len), bus.awsize.eq(size),
                 bus.awburst.eq(AXI4_BURST_INCR), bus.awcache.eq(AXI4_CACHE), bus.awprot.eq(0),
                 bus.awvalid.eq(aw.valid), aw.ready.eq(bus.awready),
                 bus.wdata.eq(w.payload.data), bus.wstrb.eq(w.payload.strb), bus.wlast.eq(w.payload.last),
                 bus.wvalid.eq(w.valid), w.ready.eq(bus.wready),
                 b.payload.resp.eq(bus.bresp), b.valid.eq(bus.bvalid), bus.bready.eq(b.ready)]


def _width(signature: wiring.Signature, name: str) -> int:
    return Shape.cast(signature.members[name].shape).width


def _kind(signature: wiring.Signature) -> str:
    """``"lite"``, ``"axis"``, ``"axi4"`` or ``"gpio"``: which interface a core member is."""
    members = signature.members
    if "tri_t" in members:
        return "gpio"
    if "arlen" in members:  # before AXI4-Lite: a read-write AXI4 manager has an awaddr too
        return "axi4"
    if "awaddr" in members:
        return "lite"
    if "tdata" in members:
        return "axis"
    raise ValueError(f"not an AXI interface: {list(members)}")


def _interfaces(core: wiring.Component) -> dict[str, tuple[str, wiring.Signature, bool]]:
    """The core's AXI interfaces: member name to (kind, signature from the manager's side, core is manager)."""
    found = {}
    for name, member in core.signature.members.items():
        if member.is_signature:
            sig = member.signature
            flipped = isinstance(sig, wiring.FlippedSignature)
            found[name] = (_kind(sig.flip() if flipped else sig), sig.flip() if flipped else sig, not flipped)
    return found


def ddr_managers(core: wiring.Component) -> list[str]:
    """The members of ``core`` that are AXI4 managers (to the PS DDR), in signature order."""
    return [name for name, (kind, _, manager) in _interfaces(core).items() if kind == "axi4" and manager]


def _view_channels(name: str) -> str:
    """The prefix of an AXI4 manager's channel streams in :class:`StreamView`: none for ``m_axi``."""
    return "" if name == "m_axi" else f"{name}_"


class ShellTop(wiring.Component):
    """A core with the flat, Vivado-named ports of a block-design module reference.

    The core runs in a ``sync`` domain clocked by ``aclk`` and reset synchronously while ``aresetn`` is low. Its
    member ``ctrl`` becomes ``s_axi_ctrl_*``; every other interface member ``X`` becomes ``X_*``; plain ports
    keep their names. Every port carries ``X_INTERFACE_INFO`` (the first of each interface also
    ``X_INTERFACE_PARAMETER``): AXI4-Lite (32-bit data, :data:`ADDR_WIDTH` address), AXI4-Stream (TDATA bytes,
    TLAST, TKEEP where present), AXI4 (read only or read-write, the manager's data and address widths), and an
    ``interrupt``
    port as a level-high interrupt.

    Latency: none added; the core's.
    """

    def __init__(self, core: wiring.Component):
        self.core = core
        self._interfaces = _interfaces(core)
        members = {"aclk": In(1), "aresetn": In(1)}
        for path, member, _ in core.signature.flatten(core):
            members[self._flat_name(path)] = member
        super().__init__(members)
        for name, attrs in self._attributes().items():
            getattr(self, name).attrs.update(attrs)

    @staticmethod
    def _prefix(member: str) -> str:
        return "s_axi_ctrl" if member == "ctrl" else member

    def _flat_name(self, path: tuple) -> str:
        return "_".join((self._prefix(path[0]), *path[1:])) if len(path) > 1 else path[0]

    def _attributes(self) -> dict[str, dict[str, str]]:
        buses = [self._prefix(name) for name, (kind, _, _) in self._interfaces.items() if kind != "gpio"]
        attrs: dict[str, dict[str, str]] = {
            "aclk": {"X_INTERFACE_INFO": "xilinx.com:signal:clock:1.0 aclk CLK",
                     "X_INTERFACE_PARAMETER": f"XIL_INTERFACENAME aclk, ASSOCIATED_BUSIF {':'.join(buses)}, "
                                              "ASSOCIATED_RESET aresetn"},
            "aresetn": {"X_INTERFACE_INFO": "xilinx.com:signal:reset:1.0 aresetn RST",
                        "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME aresetn, POLARITY ACTIVE_LOW"},
        }
        if "interrupt" in self.core.signature.members:
            attrs["interrupt"] = {"X_INTERFACE_INFO": "xilinx.com:signal:interrupt:1.0 interrupt INTERRUPT",
                                  "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME interrupt, SENSITIVITY LEVEL_HIGH"}
        for name, (kind, sig, _) in self._interfaces.items():
            bus = self._prefix(name)
            vlnv_name = {"axis": "axis", "gpio": "gpio"}.get(kind, "aximm")
            for signal in sig.members:
                attrs[f"{bus}_{signal}"] = {"X_INTERFACE_INFO": f"xilinx.com:interface:{vlnv_name}:1.0 {bus} "
                                                                f"{signal.upper()}"}
            first = f"{bus}_{next(iter(sig.members))}"
            if kind == "gpio":
                continue
            if kind == "lite":
                parameter = (f"PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH {ADDR_WIDTH}, "
                             "READ_WRITE_MODE READ_WRITE")
            elif kind == "axis":
                keep = int("tkeep" in sig.members)
                parameter = (f"TDATA_NUM_BYTES {_width(sig, 'tdata') // 8}, HAS_TLAST 1, "
                             f"HAS_TKEEP {keep}, HAS_TREADY 1")
            else:
                mode = "READ_WRITE" if "awaddr" in sig.members else "READ_ONLY"
                parameter = (f"PROTOCOL AXI4, DATA_WIDTH {_width(sig, 'rdata')}, ADDR_WIDTH "
                             f"{_width(sig, 'araddr')}, READ_WRITE_MODE {mode}, ID_WIDTH 0, "
                             "HAS_BURST 1, HAS_CACHE 1, HAS_PROT 1, HAS_LOCK 0, HAS_QOS 0, HAS_REGION 0, "
                             "MAX_BURST_LENGTH 256")
            attrs[first]["X_INTERFACE_PARAMETER"] = f"XIL_INTERFACENAME {bus}, {parameter}"
        return attrs

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain()
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        m.submodules.core = core = self.core
        for path, member, inner in core.signature.flatten(core):
            flat = getattr(self, self._flat_name(path))
            m.d.comb += inner.eq(flat) if member.flow == In else flat.eq(inner)
        return m


def _axis_layout(sig: wiring.Signature) -> data.StructLayout:
    """A TDATA (as 32-bit words, which the batched backends pack), TLAST (and TKEEP) stream payload."""
    width = _width(sig, "tdata")
    fields = {"tdata": data.ArrayLayout(unsigned(32), width // 32), "tlast": 1}
    if "tkeep" in sig.members:
        fields["tkeep"] = _width(sig, "tkeep")
    return data.StructLayout(fields)


#: Plain ports StreamView renames: Verilator refuses C++ keywords as port names (SYMRSVDWORD).
_VIEW_NAMES = {"interrupt": "irq"}


class StreamView(wiring.Component):
    """A core with every AXI channel as a ``lib.stream``, for :func:`~wavefabric.sim.streams.run_streams`.

    For the AXI4-Lite subordinate ``ctrl``: ``ctrl_aw`` (In, ``addr``), ``ctrl_w`` (In, ``data``, ``strb``),
    ``ctrl_b`` (Out, ``resp``), ``ctrl_ar`` (In, ``addr``), ``ctrl_r`` (Out, ``data``, ``resp``). For an
    AXI4-Stream ``X``: the stream ``X`` with ``tdata`` (32-bit words, least significant first), ``tlast`` (and
    ``tkeep``). For an AXI4 manager ``X``: ``X_ar`` (Out) and ``X_r`` (In), and for a read-write one ``X_aw``,
    ``X_w`` (Out) and ``X_b`` (In), with the layouts of :mod:`wavefabric.rtl.axi`, which
    :class:`~wavefabric.sim.streams.AxiMemory` serves; the manager ``m_axi`` (one read manager, as a design with
    one DDR port names it) as ``ar`` and ``r``. Plain ports pass
    through (``interrupt`` as ``irq``: Verilator takes no C++ keyword as a port name). Wiring only: what the
    backends drive is the core's own logic, cycle for cycle.
    """

    def __init__(self, core: wiring.Component):
        self.core = core
        self._interfaces = _interfaces(core)
        members = {}
        for name, member in core.signature.members.items():
            if not member.is_signature:
                members[_VIEW_NAMES.get(name, name)] = member
                continue
            kind, sig, manager = self._interfaces[name]
            if kind == "lite":
                addr = data.StructLayout({"addr": unsigned(_width(sig, "awaddr"))})
                members |= {f"{name}_aw": In(stream.Signature(addr)),
                            f"{name}_w": In(stream.Signature(data.StructLayout({"data": 32, "strb": 4}))),
                            f"{name}_b": Out(stream.Signature(data.StructLayout({"resp": 2}))),
                            f"{name}_ar": In(stream.Signature(addr)),
                            f"{name}_r": Out(stream.Signature(data.StructLayout({"data": 32, "resp": 2})))}
            elif kind == "axis":
                members[name] = (Out if manager else In)(stream.Signature(_axis_layout(sig)))
            elif kind == "gpio":
                members |= {f"{name}_{pin}": pin_member for pin, pin_member in sig.members.items()}
            else:
                prefix, addr, width = _view_channels(name), _width(sig, "araddr"), _width(sig, "rdata")
                members[f"{prefix}ar"] = Out(stream.Signature(read_address_layout(addr)))
                members[f"{prefix}r"] = In(stream.Signature(read_data_layout(width)))
                if "awaddr" in sig.members:
                    members[f"{prefix}aw"] = Out(stream.Signature(write_address_layout(addr)))
                    members[f"{prefix}w"] = Out(stream.Signature(write_data_layout(width)))
                    members[f"{prefix}b"] = In(stream.Signature(write_response_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        for name, member in core.signature.members.items():
            inner = getattr(core, name)
            if not member.is_signature:
                outer = getattr(self, _VIEW_NAMES.get(name, name))
                m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)
                continue
            kind, sig, manager = self._interfaces[name]
            if kind == "lite":
                aw, w, b = (getattr(self, f"{name}_{c}") for c in ("aw", "w", "b"))
                ar, r = getattr(self, f"{name}_ar"), getattr(self, f"{name}_r")
                m.d.comb += [inner.awaddr.eq(aw.payload.addr), inner.awvalid.eq(aw.valid), aw.ready.eq(inner.awready),
                             inner.wdata.eq(w.payload.data), inner.wstrb.eq(w.payload.strb),
                             inner.wvalid.eq(w.valid), w.ready.eq(inner.wready),
                             b.payload.resp.eq(inner.bresp), b.valid.eq(inner.bvalid), inner.bready.eq(b.ready),
                             inner.araddr.eq(ar.payload.addr), inner.arvalid.eq(ar.valid), ar.ready.eq(inner.arready),
                             r.payload.data.eq(inner.rdata), r.payload.resp.eq(inner.rresp),
                             r.valid.eq(inner.rvalid), inner.rready.eq(r.ready)]
            elif kind == "gpio":
                for pin, pin_member in sig.members.items():
                    outer = getattr(self, f"{name}_{pin}")
                    m.d.comb += outer.eq(getattr(inner, pin)) if pin_member.flow == Out else \
                        getattr(inner, pin).eq(outer)
            elif kind == "axis":
                outer = getattr(self, name)
                fields = [key for key in sig.members if key not in ("tvalid", "tready")]
                for key in fields:
                    inside, outside = getattr(inner, key), Value.cast(outer.payload[key])
                    m.d.comb += outside.eq(inside) if manager else inside.eq(outside)
                if manager:
                    m.d.comb += [outer.valid.eq(inner.tvalid), inner.tready.eq(outer.ready)]
                else:
                    m.d.comb += [inner.tvalid.eq(outer.valid), outer.ready.eq(inner.tready)]
            else:
                # AxSIZE, AxBURST, AxCACHE and AxPROT are constants (connect_read_master, connect_write_master):
                # the memory model serves INCR bursts of whole data words.
                prefix = _view_channels(name)
                ar, r = getattr(self, f"{prefix}ar"), getattr(self, f"{prefix}r")
                m.d.comb += [ar.payload.addr.eq(inner.araddr), ar.payload.len.eq(inner.arlen),
                             ar.valid.eq(inner.arvalid), inner.arready.eq(ar.ready),
                             inner.rdata.eq(r.payload.data), inner.rresp.eq(r.payload.resp),
                             inner.rlast.eq(r.payload.last), inner.rvalid.eq(r.valid), r.ready.eq(inner.rready)]
                if "awaddr" in sig.members:
                    aw, w, b = (getattr(self, f"{prefix}{c}") for c in ("aw", "w", "b"))
                    m.d.comb += [aw.payload.addr.eq(inner.awaddr), aw.payload.len.eq(inner.awlen),
                                 aw.valid.eq(inner.awvalid), inner.awready.eq(aw.ready),
                                 w.payload.data.eq(inner.wdata), w.payload.strb.eq(inner.wstrb),
                                 w.payload.last.eq(inner.wlast), w.valid.eq(inner.wvalid), inner.wready.eq(w.ready),
                                 inner.bresp.eq(b.payload.resp), inner.bvalid.eq(b.valid), b.ready.eq(inner.bready)]
        return m
