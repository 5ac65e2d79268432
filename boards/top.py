# amaranth: UnusedElaboratable=no
# (GruTopConfig builds a GruEngine to validate its sizes and formats, then drops it.)
"""The GRU accelerator as Vivado sees it: AXI4-Lite control (HLS ``ap_ctrl`` layout) and one AXI4-Stream pair.

A thin top over the AXI shell (:mod:`wavefabric.boards.shell`):

* :class:`GruAxiCore`: :class:`~wavefabric.rtl.gru.GruEngine` behind the shell's register file
  (:class:`~wavefabric.boards.shell.ApCtrlRegisters` of :func:`register_params`) and the job's stream framing,
  in the ``sync`` domain with nested interfaces (``ctrl``, ``s_axis``, ``m_axis``): what the simulations drive.
* :class:`GruTop`: the core as a :class:`~wavefabric.boards.shell.ShellTop`: the flat, Vivado-named ports
  ``aclk``, ``aresetn`` (active low), ``s_axi_ctrl_*``, ``s_axis_*``, ``m_axis_*``, ``interrupt`` and their
  ``X_INTERFACE_INFO`` / ``X_INTERFACE_PARAMETER`` attributes.

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
    0x70 SATURATED  ro: bit l set when an i_n or h_n of GRU layer l saturated since the last STATE job

Every other address in the 4 KiB window answers SLVERR, as do writes to read-only registers. Accesses are whole
words: the two low address bits are ignored, and WSTRB selects the bytes written (CTRL, GIE, IER and ISR live in
byte 0). A STEPS job with STEPS = 0 completes at once. ``interrupt`` (level high) is ``GIE & (ISR != 0)``.

The only AXI4-Lite state machine is the shell's :class:`~wavefabric.boards.shell.AxiLiteSlave`: reads and writes
are independent, AW and W may come in either order or together, and BREADY / RREADY may stay low for any time;
every request gets exactly one response.

**Stream protocol.** One job = write MODE (and STEPS), write 1 to CTRL, stream the job's input on ``s_axis`` with
TLAST on its last beat, collect the output of a STEPS job on ``m_axis`` (TLAST on the job's last beat, so one
AXI DMA S2MM transfer takes a whole batch), then poll CTRL for ap_done. A beat carries ``simd`` values, value
``s`` in bits ``[s * E, (s + 1) * E)`` of TDATA (``E = element_bits``, sign-extended, little-endian: a NumPy
``int8/16/32`` array row maps onto a beat). Jobs and their input beats:

* WEIGHTS: :meth:`~wavefabric.rtl.gru.GruGeometry.weight_words`, address-major, one lane's word per beat
  (``weight_depth * lanes`` beats).
* BIAS: :meth:`~wavefabric.rtl.gru.GruGeometry.bias_values`, ``simd`` per beat (``bias_beats``): the biases, then
  each layer's narrowing shift (its weight ``frac``: per-layer formats at run time).
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
from dataclasses import asdict, dataclass
from pathlib import Path

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..model.files import atomic_write
from ..model.fixed import QFormat
from ..model.kernels import Numerics
from ..rtl.gru import GruCommand, GruEngine, GruGeometry
from .shell import (
    ADDR_WIDTH,
    MAX_TDATA_WIDTH,
    ApCtrlRegisters,
    AxiLiteSlave,
    Register,
    ShellTop,
    axi_lite_signature,
    axi_stream_signature,
    check_identifier,
    element_bits,
    format_word,
    job_cycles,
    lanes,
    register_table,
    stream_width,
    vlnv,
)

__all__ = ["ADDR_WIDTH", "Mode", "GruTopConfig", "register_params", "register_map", "write_register_map",
           "load_register_map", "config_from_register_map", "axi_lite_signature", "axi_stream_signature",
           "AxiLiteSlave", "GruAxiCore", "GruTop", "vlnv"]


class Mode:
    """Values of the MODE register: what ``s_axis`` feeds in the next job."""

    WEIGHTS = 0
    BIAS = 1
    STATE = 2
    STEPS = 3
    NAMES = ("WEIGHTS", "BIAS", "STATE", "STEPS")


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
        check_identifier(self.name)
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
        return element_bits(max(self.num.act.width, self.num.weight.width))

    @property
    def tdata_width(self) -> int:
        """AXI4-Stream TDATA bits: ``simd * element_bits`` rounded up to a power of two, at least 32 (AXI DMA)."""
        return stream_width(self.simd, self.element_bits)

    @property
    def mm2s_width(self) -> int:
        """The AXI DMA's MM2S stream bits (into ``s_axis``)."""
        return self.tdata_width

    @property
    def s2mm_width(self) -> int:
        """The AXI DMA's S2MM stream bits (from ``m_axis``)."""
        return self.tdata_width

    def job_beats(self) -> dict[str, int]:
        """Input beats of a WEIGHTS, BIAS and STATE job, and per step of a STEPS job in (STEP_IN) and out."""
        geo = self.geometry
        return {"WEIGHTS": geo.weight_depth * geo.lanes, "BIAS": geo.bias_beats, "STATE": geo.layers * geo.h_words,
                "STEP_IN": geo.x_words[0], "STEP_OUT": geo.h_words}

    def engine(self) -> GruEngine:
        return GruEngine(self.input_size, self.hidden, self.layers, self.lanes, self.simd, self.num)

    def register_map(self) -> dict:
        return register_map(self)

    def top(self) -> GruTop:
        return GruTop(self)


def register_params(config: GruTopConfig) -> list[Register]:
    """The parameter registers of :class:`GruTop` (after the four ``ap_ctrl`` registers), from 0x10."""
    return [
        Register("MODE", "rw", "job kind: " + ", ".join(f"{i} {n}" for i, n in enumerate(Mode.NAMES)),
                 width=2, limit=len(Mode.NAMES)),
        Register("STEPS", "rw", "GRU steps of a STEPS job"),
        Register("STATUS", "ro", "bit 0 engine framing error, bit 1 s_axis TLAST error (sticky)", width=2),
        Register("CYCLES", "ro", "clock cycles of the last job, start to done"),
        Register("INPUT_SIZE", "ro", "GRU input size I", config.input_size),
        Register("HIDDEN", "ro", "GRU hidden size H", config.hidden),
        Register("LAYERS", "ro", "GRU layers L", config.layers),
        Register("LANES", "ro", "engine lanes P", config.lanes),
        Register("SIMD", "ro", "multipliers per lane S (values per beat)", config.simd),
        Register("ACT_FORMAT", "ro", "activation format: width | frac << 8", format_word(config.num.act)),
        Register("WEIGHT_FORMAT", "ro", "weight format: width | frac << 8", format_word(config.num.weight)),
        Register("TDATA_WIDTH", "ro", "AXI4-Stream TDATA bits", config.tdata_width),
        Register("SATURATED", "ro", "bit l: an i_n or h_n of GRU layer l saturated since the last STATE job",
                 width=config.layers),
    ]


def register_map(config: GruTopConfig) -> dict:
    """The register map and stream protocol of :class:`GruTop` for ``config``, as JSON-ready data.

    Keys: ``top``, ``vlnv``, ``addr_width``, ``config`` (the :class:`GruTopConfig` fields, formats as
    ``[width, frac]``), ``stream`` (``tdata_width``, ``element_bits``, ``elements``), ``modes`` (name to MODE
    value), ``beats`` (:meth:`GruTopConfig.job_beats`), ``registers`` (name to ``offset``, ``access`` ``"rw"`` or
    ``"ro"``, ``description`` and, for constants, ``value``).
    """
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
        "registers": register_table(register_params(config)),
    }


def write_register_map(source, path: str | os.PathLike) -> Path:
    """Write a register map as JSON to ``path``, atomically; return the path.

    ``source`` is the map (a dict) or a design's configuration (its ``register_map()`` is written).
    """
    path = Path(path)
    with atomic_write(path) as file:
        json.dump(source if isinstance(source, dict) else source.register_map(), file, indent=2)
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

    Latency: a register read answers in 1 cycle, a write in 2 (:class:`~wavefabric.boards.shell.AxiLiteSlave`);
    a job starts the cycle after the CTRL write completes; the stream adapters add no cycles to the engine's
    (``GruEngine.latency``).

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
        m.submodules.regs = regs = ApCtrlRegisters(register_params(config))
        wiring.connect(m, wiring.flipped(self.ctrl), regs.bus)
        m.d.comb += self.interrupt.eq(regs.interrupt)

        # --- Job control: the job's mode is latched at launch -----------------------------------------------------
        job = Signal(2)
        in_left, out_left = Signal(32), Signal(32)              # commands still to take, output frames to send
        engine_error, tlast_error = Signal(), Signal()
        m.d.sync += engine_error.eq(engine.error)
        busy = regs.busy
        with m.If(regs.launch):
            is_steps = regs.mode == Mode.STEPS
            m.d.sync += [job.eq(regs.mode), in_left.eq(Mux(is_steps, regs.steps, 1)),
                         out_left.eq(Mux(is_steps, regs.steps, 0))]
        m.d.comb += [regs.finish.eq((in_left == 0) & (out_left == 0)), regs.status.eq(engine_error | tlast_error << 1),
                     regs.cycles.eq(job_cycles(m, regs)), regs.saturated.eq(engine.saturated)]

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
        for s, element in enumerate(lanes(s_axis.tdata, E, S)):
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
        for s, element in enumerate(lanes(m_axis.tdata, E, S)):
            m.d.comb += element.eq(out.payload.data[s])  # sign-extends
        with m.If(out.valid & out.ready & out.payload.last):
            m.d.sync += out_left.eq(out_left - 1)
        return m


class GruTop(ShellTop):
    """The GRU accelerator with the ports a Vivado block design expects (see the module docstring for the map).

    :class:`GruAxiCore` in the shell's :class:`~wavefabric.boards.shell.ShellTop`: ``s_axi_ctrl`` (AXI4-Lite, 12
    address bits), ``s_axis`` / ``m_axis`` (AXI4-Stream, :attr:`GruTopConfig.tdata_width` bits, ``m_axis`` with
    TKEEP), ``aclk``, ``aresetn`` and ``interrupt``.

    Ports
    -----
    aclk, aresetn : In(1)
    s_axi_ctrl_* : the AXI4-Lite subordinate (:func:`axi_lite_signature`, flipped)
    s_axis_* : In AXI4-Stream; m_axis_* : Out AXI4-Stream
    interrupt : Out(1)

    Latency: as :class:`GruAxiCore`.
    """

    def __init__(self, config: GruTopConfig):
        self.config = config
        super().__init__(GruAxiCore(config))
