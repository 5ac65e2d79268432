# amaranth: UnusedElaboratable=no
# (GruTopConfig builds a GruEngine to validate its sizes and formats, then drops it.)
"""The GRU accelerator as Vivado sees it: AXI4-Lite control (HLS ``ap_ctrl`` layout) and one AXI4-Stream pair.

Layers, from the inside out:

* :class:`AxiLiteSlave`: the AXI4-Lite protocol, reduced to one-cycle register reads and writes.
* :class:`GruAxiCore`: :class:`~wavefabric.rtl.gru.GruEngine`, its register file and the stream adapters, in the
  ``sync`` domain with nested interfaces (``ctrl``, ``s_axis``, ``m_axis``): what the simulations drive.
* :class:`GruTop`: the core with the flat, Vivado-named ports ``aclk``, ``aresetn`` (active low),
  ``s_axi_ctrl_*``, ``s_axis_*``, ``m_axis_*``, ``interrupt`` and their ``X_INTERFACE_INFO`` /
  ``X_INTERFACE_PARAMETER`` attributes, so that ``create_bd_cell -type module -reference`` infers the interfaces.

**Register map** (:func:`register_map`, written as JSON by :func:`write_register_map`; every register 32 bits)::

    0x00 CTRL       bit 0 ap_start (write 1 starts a job; reads 1 until the job is done), bit 1 ap_done
                    (clear on read), bit 2 ap_idle, bit 3 ap_ready (clear on read)
    0x04 GIE        bit 0 global interrupt enable
    0x08 IER        bit 0 ap_done, bit 1 ap_ready interrupt enable
    0x0C ISR        bit 0 ap_done, bit 1 ap_ready interrupt status (a written 1 toggles the bit)
    0x10 MODE       what the next job moves: 0 WEIGHTS, 1 BIAS, 2 STATE, 3 STEPS (other values: SLVERR, kept)
    0x18 STEPS      GRU steps of a STEPS job
    0x20 STATUS     ro: bit 0 the engine saw a beat out of place, bit 1 s_axis TLAST was not on a job's last beat
                    (both sticky until aresetn)
    0x28 CYCLES     ro: clock cycles of the last job, start to done (modulo 2**32)
    0x30 ...        ro: the configuration (INPUT_SIZE, HIDDEN, LAYERS, LANES, SIMD, ACT_FORMAT, WEIGHT_FORMAT,
                    TDATA_WIDTH), so a driver can check that the bitstream is the one its JSON describes

Every other address in the 4 KiB window answers SLVERR, as do writes to read-only registers. Accesses are whole
words: the two low address bits are ignored, and WSTRB selects the bytes written (CTRL, GIE, IER and ISR live in
byte 0). A STEPS job with STEPS = 0 completes at once. ``interrupt`` (level high) is ``GIE & (ISR != 0)``.

The only AXI4-Lite state machine is :class:`AxiLiteSlave`: reads and writes are independent, AW and W may come in
either order or together, and BREADY / RREADY may stay low for any time; every request gets exactly one response.

**Stream protocol.** One job = write MODE (and STEPS), write 1 to CTRL, stream the job's input on ``s_axis`` with
TLAST on its last beat, collect the output of a STEPS job on ``m_axis`` (TLAST on the job's last beat, so one
AXI DMA S2MM transfer takes a whole batch), then poll CTRL for ap_done. A beat carries ``simd`` values, value
``s`` in bits ``[s * E, (s + 1) * E)`` of TDATA (``E = element_bits``, sign-extended, little-endian: a NumPy
``int8/16/32`` array row maps onto a beat). Jobs and their input beats:

* WEIGHTS: :meth:`~wavefabric.rtl.gru.GruGeometry.weight_words`, address-major, one lane's word per beat
  (``weight_depth * lanes`` beats).
* BIAS: :meth:`~wavefabric.rtl.gru.GruGeometry.bias_values`, ``simd`` per beat (``bias_beats``).
* STATE: h0 of every layer, each layer zero padded to whole beats (``layers * ceil(H / S)``).
* STEPS: STEPS input vectors x, each zero padded to whole beats (``STEPS * ceil(I / S)``); the output is the last
  layer's h' after each step, ``ceil(H / S)`` beats per step, padding lanes zero.

The core frames the engine's commands itself (``first`` / ``last`` from its own beat count), so a DMA transfer
may hold any number of steps. A job is done when all its input has been taken and, for STEPS, all its output has
left; the next job can be started then (HLS semantics for a block that is not pipelined).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from amaranth.hdl import Cat, ClockDomain, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..model.files import atomic_write
from ..model.fixed import QFormat
from ..model.kernels import Numerics
from ..rtl.gru import GruCommand, GruEngine, GruGeometry

__all__ = ["ADDR_WIDTH", "Mode", "GruTopConfig", "register_map", "write_register_map", "load_register_map",
           "config_from_register_map", "axi_lite_signature",
           "axi_stream_signature", "AxiLiteSlave", "GruAxiCore", "GruTop", "vlnv"]

#: Address bits of the AXI4-Lite slave: a 4 KiB window, the smallest segment Vivado's address editor assigns.
ADDR_WIDTH = 12
#: AXI response codes.
OKAY, SLVERR = 0b00, 0b10
#: Widest AXI4-Stream TDATA the AXI DMA supports.
MAX_TDATA_WIDTH = 1024


class Mode:
    """Values of the MODE register: what ``s_axis`` feeds in the next job."""

    WEIGHTS = 0
    BIAS = 1
    STATE = 2
    STEPS = 3
    NAMES = ("WEIGHTS", "BIAS", "STATE", "STEPS")


def vlnv(name: str) -> str:
    """The VLNV of a module reference to the Verilog module ``name`` in a Vivado block design."""
    return f"xilinx.com:module_ref:{name}:1.0"


@dataclass(frozen=True)
class GruTopConfig:
    """Everything that shapes the GRU accelerator top: the engine's sizes and formats, and the module name.

    The single source of the register map, the Vivado build and the driver.

    Parameters
    ----------
    input_size, hidden, layers, lanes, simd : int
        As :class:`~wavefabric.rtl.gru.GruEngine` (each >= 1).
    num : Numerics
        Number formats; ``act`` and ``weight`` at most 32 bits wide (the stream's element containers).
    name : str
        Verilog module name of the top (a Verilog identifier); the block design's VLNV is :func:`vlnv` of it.
    """

    input_size: int
    hidden: int
    layers: int = 1
    lanes: int = 8
    simd: int = 8
    num: Numerics = Numerics()
    name: str = "wavefabric_gru"

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"name must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), not {self.name!r}")
        if not isinstance(self.num, Numerics):
            raise ValueError(f"num must be a Numerics, not {self.num!r}")
        widest = max(self.num.act.width, self.num.weight.width)
        if widest > 32:
            raise ValueError(f"act and weight widths must be 1 to 32 bits (one stream element), not {widest}")
        self.engine()  # validates the sizes and formats as the engine does
        if self.simd * self.element_bits > MAX_TDATA_WIDTH:
            raise ValueError(f"simd {self.simd} x {self.element_bits}-bit elements exceed the AXI DMA's "
                             f"{MAX_TDATA_WIDTH}-bit stream: legal simd is 1 to {MAX_TDATA_WIDTH // self.element_bits}")

    @property
    def geometry(self) -> GruGeometry:
        return GruGeometry(self.input_size, self.hidden, self.layers, self.lanes, self.simd)

    @property
    def element_bits(self) -> int:
        """Bits of one value's container on the stream: 8, 16 or 32 (the widest of act and weight)."""
        widest = max(self.num.act.width, self.num.weight.width)
        return next(bits for bits in (8, 16, 32) if widest <= bits)

    @property
    def tdata_width(self) -> int:
        """AXI4-Stream TDATA bits: ``simd * element_bits`` rounded up to a power of two, at least 32 (AXI DMA)."""
        return max(32, 1 << (self.simd * self.element_bits - 1).bit_length())

    def job_beats(self) -> dict[str, int]:
        """Input beats of a WEIGHTS, BIAS and STATE job, and per step of a STEPS job in (STEP_IN) and out."""
        geo = self.geometry
        return {"WEIGHTS": geo.weight_depth * geo.lanes, "BIAS": geo.bias_beats, "STATE": geo.layers * geo.h_words,
                "STEP_IN": geo.x_words[0], "STEP_OUT": geo.h_words}

    def engine(self) -> GruEngine:
        return GruEngine(self.input_size, self.hidden, self.layers, self.lanes, self.simd, self.num)


def _format(fmt) -> int:
    return fmt.width | fmt.frac << 8


def register_map(config: GruTopConfig) -> dict:
    """The register map and stream protocol of :class:`GruTop` for ``config``, as JSON-ready data.

    Keys: ``top``, ``vlnv``, ``addr_width``, ``config`` (the :class:`GruTopConfig` fields, formats as
    ``[width, frac]``), ``stream`` (``tdata_width``, ``element_bits``, ``elements``), ``modes`` (name to MODE
    value), ``beats`` (:meth:`GruTopConfig.job_beats`), ``registers`` (name to ``offset``, ``access`` ``"rw"`` or
    ``"ro"``, ``description`` and, for constants, ``value``).
    """
    regs: dict[str, dict] = {}

    def add(name, offset, access, description, value=None):
        regs[name] = {"offset": offset, "access": access, "description": description}
        if value is not None:
            regs[name]["value"] = value

    add("CTRL", 0x00, "rw", "bit 0 ap_start (write 1), bit 1 ap_done (COR), bit 2 ap_idle, bit 3 ap_ready (COR)")
    add("GIE", 0x04, "rw", "bit 0 global interrupt enable")
    add("IER", 0x08, "rw", "bit 0 ap_done, bit 1 ap_ready interrupt enable")
    add("ISR", 0x0C, "rw", "bit 0 ap_done, bit 1 ap_ready interrupt status (toggle on write)")
    params = [
        ("MODE", "rw", "job kind: " + ", ".join(f"{i} {n}" for i, n in enumerate(Mode.NAMES)), None),
        ("STEPS", "rw", "GRU steps of a STEPS job", None),
        ("STATUS", "ro", "bit 0 engine framing error, bit 1 s_axis TLAST error (sticky)", None),
        ("CYCLES", "ro", "clock cycles of the last job, start to done", None),
        ("INPUT_SIZE", "ro", "GRU input size I", config.input_size),
        ("HIDDEN", "ro", "GRU hidden size H", config.hidden),
        ("LAYERS", "ro", "GRU layers L", config.layers),
        ("LANES", "ro", "engine lanes P", config.lanes),
        ("SIMD", "ro", "multipliers per lane S (values per beat)", config.simd),
        ("ACT_FORMAT", "ro", "activation format: width | frac << 8", _format(config.num.act)),
        ("WEIGHT_FORMAT", "ro", "weight format: width | frac << 8", _format(config.num.weight)),
        ("TDATA_WIDTH", "ro", "AXI4-Stream TDATA bits", config.tdata_width),
    ]
    for i, (name, access, description, value) in enumerate(params):
        add(name, 0x10 + 8 * i, access, description, value)
    fields = asdict(config)
    num = config.num
    fields["num"] = {"act": [num.act.width, num.act.frac], "weight": [num.weight.width, num.weight.frac],
                     "gate": [num.gate.width, num.gate.frac], "table_bits": num.table_bits}
    return {
        "top": config.name,
        "vlnv": vlnv(config.name),
        "addr_width": ADDR_WIDTH,
        "config": fields,
        "stream": {"tdata_width": config.tdata_width, "element_bits": config.element_bits, "elements": config.simd},
        "modes": {name: i for i, name in enumerate(Mode.NAMES)},
        "beats": config.job_beats(),
        "registers": regs,
    }


def write_register_map(config: GruTopConfig, path: str | os.PathLike) -> Path:
    """Write :func:`register_map` of ``config`` as JSON to ``path``, atomically; return the path."""
    path = Path(path)
    with atomic_write(path) as file:
        json.dump(register_map(config), file, indent=2)
        file.write("\n")
    return path


def load_register_map(source: dict | str | os.PathLike) -> dict:
    """A register map: ``source`` itself if it is a dict, else the JSON file it names."""
    if isinstance(source, dict):
        return source
    with open(source, encoding="utf-8") as file:
        return json.load(file)


def config_from_register_map(regmap: dict) -> GruTopConfig:
    """The :class:`GruTopConfig` a register map (:func:`register_map`) was generated from."""
    fields = dict(regmap["config"])
    num = fields.pop("num")
    fields["num"] = Numerics(act=QFormat(num["act"][0], num["act"][1]),
                             weight=QFormat(num["weight"][0], num["weight"][1]),
                             gate=QFormat(num["gate"][0], num["gate"][1]), table_bits=num["table_bits"])
    return GruTopConfig(**fields)


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


def _merge(old, data, strb):
    """``old`` with the bytes of ``data`` whose ``strb`` bit is set."""
    return Cat(*(Mux(strb[i], data[8 * i:8 * i + 8], old[8 * i:8 * i + 8]) for i in range(4)))


class GruAxiCore(wiring.Component):
    """:class:`~wavefabric.rtl.gru.GruEngine` behind the register map and stream protocol of this module.

    The ``sync``-domain core of :class:`GruTop`, with nested interfaces (simulations drive this).

    Ports
    -----
    ctrl : In(axi_lite_signature())
    s_axis : In(axi_stream_signature(tdata_width))
    m_axis : Out(axi_stream_signature(tdata_width, keep=True))
        TKEEP is all ones (every beat is whole).
    interrupt : Out(1)
        ``GIE & (ISR != 0)``, level high.

    Latency: a register read answers in 1 cycle, a write in 2 (:class:`AxiLiteSlave`); a job starts the cycle
    after the CTRL write completes; the stream adapters add no cycles to the engine's (``GruEngine.latency``).

    Attributes
    ----------
    config : GruTopConfig
    regmap : dict
        :func:`register_map` of ``config``.
    engine : GruEngine
    """

    def __init__(self, config: GruTopConfig):
        if not isinstance(config, GruTopConfig):
            raise ValueError(f"config must be a GruTopConfig, not {config!r}")
        self.config = config
        self.regmap = register_map(config)
        self.engine = config.engine()
        width = config.tdata_width
        super().__init__({
            "ctrl": In(axi_lite_signature()),
            "s_axis": In(axi_stream_signature(width)),
            "m_axis": Out(axi_stream_signature(width, keep=True)),
            "interrupt": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, engine = self.config, self.engine
        geo = engine.geometry
        m.submodules.engine = engine
        m.submodules.slave = slave = AxiLiteSlave()
        wiring.connect(m, wiring.flipped(self.ctrl), slave.bus)

        # --- Job control ----------------------------------------------------------------------------------------
        mode, steps = Signal(2), Signal(32)                     # the MODE and STEPS registers
        start, done, ready = Signal(), Signal(), Signal()       # ap_start, ap_done, ap_ready
        gie, ier, isr = Signal(), Signal(2), Signal(2)
        busy, job = Signal(), Signal(2)                         # a job runs; its mode, latched at start
        in_left, out_left = Signal(32), Signal(32)              # commands still to take, output frames to send
        cycles = Signal(32)
        engine_error, tlast_error = Signal(), Signal()
        m.d.sync += engine_error.eq(engine.error)
        finish = busy & (in_left == 0) & (out_left == 0)
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(start & ~busy):
            is_steps = mode == Mode.STEPS
            m.d.sync += [busy.eq(1), job.eq(mode), cycles.eq(0), in_left.eq(Mux(is_steps, steps, 1)),
                         out_left.eq(Mux(is_steps, steps, 0))]

        # --- Registers ------------------------------------------------------------------------------------------
        regs = self.regmap["registers"]
        ctrl_value = Signal(32)
        m.d.comb += ctrl_value.eq(start | done << 1 | ~busy << 2 | ready << 3)
        values = {"CTRL": ctrl_value, "GIE": gie, "IER": ier, "ISR": isr, "MODE": mode, "STEPS": steps,
                  "STATUS": engine_error | tlast_error << 1, "CYCLES": cycles}
        with m.Switch(slave.rd_addr):
            for name, reg in regs.items():
                with m.Case(reg["offset"] >> 2):
                    m.d.comb += slave.rd_data.eq(values[name] if "value" not in reg else Const(reg["value"], 32))
            with m.Default():
                m.d.comb += slave.rd_err.eq(1)
        with m.If(slave.rd_en & (slave.rd_addr == regs["CTRL"]["offset"] >> 2)):
            m.d.sync += [done.eq(0), ready.eq(0)]  # clear on read (a completion in this cycle wins, below)

        data, strb = slave.wr_data, slave.wr_strb
        new_mode = _merge(mode, data, strb)
        with m.Switch(slave.wr_addr):
            with m.Case(regs["CTRL"]["offset"] >> 2):
                with m.If(slave.wr_en & strb[0] & data[0]):
                    m.d.sync += start.eq(1)
            with m.Case(regs["GIE"]["offset"] >> 2):
                with m.If(slave.wr_en & strb[0]):
                    m.d.sync += gie.eq(data[0])
            with m.Case(regs["IER"]["offset"] >> 2):
                with m.If(slave.wr_en & strb[0]):
                    m.d.sync += ier.eq(data[:2])
            with m.Case(regs["ISR"]["offset"] >> 2):
                with m.If(slave.wr_en & strb[0]):
                    m.d.sync += isr.eq(isr ^ data[:2])
            with m.Case(regs["MODE"]["offset"] >> 2):
                m.d.comb += slave.wr_err.eq(new_mode >= len(Mode.NAMES))
                with m.If(slave.wr_en & (new_mode < len(Mode.NAMES))):
                    m.d.sync += mode.eq(new_mode)
            with m.Case(regs["STEPS"]["offset"] >> 2):
                with m.If(slave.wr_en):
                    m.d.sync += steps.eq(_merge(steps, data, strb))
            with m.Default():
                m.d.comb += slave.wr_err.eq(1)  # read-only or unmapped

        with m.If(finish):
            m.d.sync += [busy.eq(0), start.eq(0), done.eq(1), ready.eq(1), isr.eq(isr | ier)]
        m.d.comb += self.interrupt.eq(gie & isr.any())

        # --- s_axis -> engine: the job's commands, framed by the core's own beat count ---------------------------
        beats = config.job_beats()
        cmd_len = Mux(job == Mode.WEIGHTS, beats["WEIGHTS"],
                      Mux(job == Mode.BIAS, beats["BIAS"], Mux(job == Mode.STATE, beats["STATE"], beats["STEP_IN"])))
        beat = Signal(range(max(beats.values())))
        first, last = beat == 0, beat == cmd_len - 1
        E, S = config.element_bits, geo.simd
        s_axis = self.s_axis
        feeding = busy & (in_left != 0)
        to_weights = job == Mode.WEIGHTS
        kind = Mux(job == Mode.BIAS, GruCommand.BIAS.value,
                   Mux(job == Mode.STATE, GruCommand.STATE.value, GruCommand.STEP.value))
        m.d.comb += [
            engine.weights.valid.eq(feeding & to_weights & s_axis.tvalid),
            engine.weights.payload.first.eq(first), engine.weights.payload.last.eq(last),
            engine.cmd.valid.eq(feeding & ~to_weights & s_axis.tvalid),
            engine.cmd.payload.kind.as_value().eq(kind),
            engine.cmd.payload.first.eq(first), engine.cmd.payload.last.eq(last),
            s_axis.tready.eq(feeding & Mux(to_weights, engine.weights.ready, engine.cmd.ready)),
        ]
        for s in range(S):
            element = s_axis.tdata[s * E:(s + 1) * E]
            m.d.comb += [engine.weights.payload.data[s].eq(element[:config.num.weight.width]),
                         engine.cmd.payload.data[s].eq(element[:config.num.act.width])]
        with m.If(s_axis.tvalid & s_axis.tready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += [beat.eq(0), in_left.eq(in_left - 1)]
            with m.If(s_axis.tlast != (last & (in_left == 1))):
                m.d.sync += tlast_error.eq(1)

        # --- engine -> m_axis: h' of every step, TLAST on the job's last beat ------------------------------------
        out, m_axis = engine.out, self.m_axis
        m.d.comb += [m_axis.tvalid.eq(out.valid), out.ready.eq(m_axis.tready),
                     m_axis.tlast.eq(out.payload.last & (out_left == 1)),
                     m_axis.tkeep.eq((1 << len(m_axis.tkeep)) - 1)]
        for s in range(S):
            m.d.comb += m_axis.tdata[s * E:(s + 1) * E].eq(out.payload.data[s])  # sign-extends
        with m.If(out.valid & out.ready & out.payload.last):
            m.d.sync += out_left.eq(out_left - 1)
        return m


def _interface_attrs(config: GruTopConfig) -> dict[str, dict[str, str]]:
    """``X_INTERFACE_INFO`` / ``X_INTERFACE_PARAMETER`` of every port of :class:`GruTop`."""
    attrs: dict[str, dict[str, str]] = {
        "aclk": {"X_INTERFACE_INFO": "xilinx.com:signal:clock:1.0 aclk CLK",
                 "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME aclk, ASSOCIATED_BUSIF s_axi_ctrl:s_axis:m_axis, "
                                          "ASSOCIATED_RESET aresetn"},
        "aresetn": {"X_INTERFACE_INFO": "xilinx.com:signal:reset:1.0 aresetn RST",
                    "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME aresetn, POLARITY ACTIVE_LOW"},
        "interrupt": {"X_INTERFACE_INFO": "xilinx.com:signal:interrupt:1.0 interrupt INTERRUPT",
                      "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME interrupt, SENSITIVITY LEVEL_HIGH"},
    }
    for name in axi_lite_signature().members:
        attrs[f"s_axi_ctrl_{name}"] = {"X_INTERFACE_INFO": f"xilinx.com:interface:aximm:1.0 s_axi_ctrl {name.upper()}"}
    attrs["s_axi_ctrl_awaddr"]["X_INTERFACE_PARAMETER"] = (
        f"XIL_INTERFACENAME s_axi_ctrl, PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH {ADDR_WIDTH}, "
        "READ_WRITE_MODE READ_WRITE")
    nbytes = config.tdata_width // 8
    for port, keep in (("s_axis", False), ("m_axis", True)):
        for name in axi_stream_signature(config.tdata_width, keep).members:
            attrs[f"{port}_{name}"] = {"X_INTERFACE_INFO": f"xilinx.com:interface:axis:1.0 {port} {name.upper()}"}
        attrs[f"{port}_tdata"]["X_INTERFACE_PARAMETER"] = (
            f"XIL_INTERFACENAME {port}, TDATA_NUM_BYTES {nbytes}, HAS_TLAST 1, HAS_TKEEP {int(keep)}, HAS_TREADY 1")
    return attrs


class GruTop(wiring.Component):
    """The GRU accelerator with the ports a Vivado block design expects (see the module docstring for the map).

    :class:`GruAxiCore` in a ``sync`` domain clocked by ``aclk`` and reset synchronously while ``aresetn`` is low.
    Every port carries ``X_INTERFACE_INFO`` (and the first of each interface ``X_INTERFACE_PARAMETER``), so a
    module reference exposes ``s_axi_ctrl`` (AXI4-Lite, 12 address bits), ``s_axis`` / ``m_axis`` (AXI4-Stream,
    :attr:`GruTopConfig.tdata_width` bits, ``m_axis`` with TKEEP), ``aclk``, ``aresetn`` and ``interrupt``.

    Ports
    -----
    aclk, aresetn : In(1)
    s_axi_ctrl_* : the AXI4-Lite subordinate (:func:`axi_lite_signature`, flipped)
    s_axis_* : In AXI4-Stream; m_axis_* : Out AXI4-Stream
    interrupt : Out(1)

    Latency: as :class:`GruAxiCore`.
    """

    def __init__(self, config: GruTopConfig):
        self.core = GruAxiCore(config)
        self.config = config
        members = {"aclk": In(1), "aresetn": In(1)}
        # Flat ports named as Vivado expects (Amaranth would join nested interface names with "__").
        for path, member, _ in self.core.signature.flatten(self.core):
            members[_flat_name(path)] = member
        super().__init__(members)
        for name, attrs in _interface_attrs(config).items():
            getattr(self, name).attrs.update(attrs)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain()
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        m.submodules.core = core = self.core
        for path, member, inner in core.signature.flatten(core):
            flat = getattr(self, _flat_name(path))
            m.d.comb += inner.eq(flat) if member.flow == In else flat.eq(inner)
        return m


#: Prefix of the flat ports of each of :class:`GruAxiCore`'s interfaces.
_PREFIX = {"ctrl": "s_axi_ctrl", "s_axis": "s_axis", "m_axis": "m_axis"}


def _flat_name(path: tuple) -> str:
    return "_".join((_PREFIX[path[0]], *path[1:])) if len(path) > 1 else path[0]
