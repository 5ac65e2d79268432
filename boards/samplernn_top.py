# amaranth: UnusedElaboratable=no
# (SampleRNNTopConfig builds a SampleRNNEngine to validate its sizes and read its load regions, then drops it.)
"""The SampleRNN accelerator as Vivado sees it: a thin top over the AXI shell (:mod:`wavefabric.boards.shell`).

* :class:`SampleRNNAxiCore`: :class:`~wavefabric.rtl.samplernn.SampleRNNEngine` behind the shell's register file,
  the load and sample stream adapters and the pass-through of the engine's DDR reads, in the ``sync`` domain with
  nested interfaces (``ctrl``, ``s_axis``, ``m_axis``, ``m_axi``).
* :class:`SampleRNNTop`: the core as a :class:`~wavefabric.boards.shell.ShellTop`: ``aclk``, ``aresetn``,
  ``s_axi_ctrl_*``, ``s_axis_*``, ``m_axis_*``, ``m_axi_*`` (AXI4 read manager, 64-bit, for S_AXI_HP0) and
  ``interrupt``.

**Register map** (:func:`register_params`; HLS ``ap_ctrl`` at 0x00-0x0C, then from 0x10 at a stride of 8)::

    MODE         rw  0 LOAD, 1 GENERATE (other values: SLVERR, kept)
    SAMPLES      rw  samples of a GENERATE job (0 completes at once)
    SEED         rw  the sampler's xorshift32 state at the job's start (nonzero: model.sampler.seed_state(seed))
    TEMPERATURE  rw  round(T * 4096), 1 to 65535 (model.sampler.temperature_int)
    TABLE_ADDR   rw  byte address of the MLP input table in DDR, 4 KiB aligned (table_bytes long)
    STATUS       ro  bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown load region, bit 3 a zero v row
    CYCLES       ro  clock cycles of the last job, start to done
    CONFIG_ID    ro  CRC-32 of the configuration (:meth:`SampleRNNTopConfig.as_json`), then the configuration one
                     value per register (sizes, formats as width | frac << 8, lanes, stream widths, table bytes)
    SATURATED    ro  (the last register) sticky per GENERATE job: bit i set when narrowing i saturated a value
                     (:meth:`~wavefabric.rtl.samplernn.SampleRNNLayout.saturation_names`: the matrices, the MLP
                     input, each GRU layer's i_n / h_n)

The per-layer formats are run-time configuration: the LOAD job's ``CONFIG`` frame holds every matrix's narrowing
shift, each tier's ``GRU_BIASES`` frame ends with its layers' shifts (:func:`load_stream` takes them from the
model's :class:`~wavefabric.model.samplernn.SampleRNNFormats`), so one bitstream serves any checkpoint of its sizes.

**LOAD job.** ``s_axis`` carries frames, each a header beat (value 0 the
:class:`~wavefabric.rtl.samplernn.LoadRegion`, the others zero) and then the region's beats (``load_regions`` in
the JSON; :func:`load_stream` builds the whole stream from a model); the job ends with the beat that carries
TLAST, which must be a frame's last beat. A beat holds ``simd`` values of ``element_bits`` (value ``j`` in bits
``[j * E, (j + 1) * E)``, sign-extended). **GENERATE job.** The core hands the engine one job of SAMPLES samples
(SEED, TEMPERATURE, TABLE_ADDR as written); ``m_axis`` carries one 32-bit beat per sample, the 16-bit PCM in bits
[15:0] and the code in bits [31:16], TLAST on the last. The table is read from DDR over ``m_axi`` while the job
runs. A job is done when its input has been taken and all its output has left.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from ..model.samplernn import SampleRNNConfig, SampleRNNFixed
from ..rtl.samplernn import LoadRegion, SampleRNNEngine, SampleRNNLayout
from .player import PcmPlayer
from .shell import (
    ADDR_WIDTH,
    ApCtrlRegisters,
    Register,
    ShellTop,
    axi4_read_signature,
    axi_lite_signature,
    axi_stream_signature,
    check_config_id,
    check_identifier,
    config_fields,
    config_id,
    connect_read_master,
    element_bits,
    format_word,
    gpio_signature,
    job_cycles,
    lanes,
    numerics_from_json,
    numerics_json,
    register_table,
    stream_width,
    vlnv,
)

__all__ = ["Mode", "SampleRNNTopConfig", "register_params", "register_map", "config_from_register_map",
           "region_names", "load_stream", "SampleRNNAxiCore", "SampleRNNTop", "SAMPLE_BITS", "TABLE_ALIGN",
           "GENERATE_OVERHEAD", "FCLK0_HZ"]

# The register map and the load stream read a SampleRNNEngine's sizes and load regions; its blocks are built in its
# constructor (rtl/samplernn.py), so such an engine, never elaborated, would warn when collected. Only those.
warnings.filterwarnings("ignore", category=UnusedElaboratable, module=r".*[/\\]rtl[/\\]samplernn$")

#: Bits of a sample's beat on ``m_axis``: PCM in [15:0], code in [31:16].
SAMPLE_BITS = 32
#: Alignment of TABLE_ADDR (no DDR burst of the engine crosses a 4 KiB boundary when the table starts on one).
TABLE_ALIGN = 4096
#: CYCLES of a GENERATE job beyond the engine's (perf.samplernn_timing): its command's cycle and its finish cycle.
GENERATE_OVERHEAD = 2
#: The fabric clock of the overlay (FCLK0), which the player counts.
FCLK0_HZ = 100_000_000
#: Width of the DDR read manager's address and data (S_AXI_HP0 is 64 bits wide).
DDR_ADDR_WIDTH, DDR_DATA_WIDTH = 32, 64


class Mode:
    """Values of the MODE register."""

    LOAD = 0
    GENERATE = 1
    NAMES = ("LOAD", "GENERATE")


def _pair(fmt: QFormat) -> list[int]:
    return [fmt.width, fmt.frac]


@dataclass(frozen=True)
class SampleRNNTopConfig:
    """Everything that shapes the SampleRNN overlay: the network's sizes, the accelerator's, the module name.

    The single source of the register map, the Vivado build and the driver.

    Parameters
    ----------
    network : SampleRNNConfig
        Sizes and formats of the network (``frame_sizes[0] >= 2``, as the engine requires).
    lanes, simd, gru_lanes
        As :class:`~wavefabric.rtl.samplernn.SampleRNNEngine`; ``gru_lanes`` is stored per tier.
    name : str
        Verilog module name of the top (a Verilog identifier).
    sample_rate : int
        The network's sample rate in Hz (>= 1): what the driver and the player assume.
    audio_out : bool
        Standalone playback: a :class:`~.player.PcmPlayer` on the board's PWM audio output (ports ``audio_pwm``,
        a tristate pin, and ``audio_sd``), fed by GENERATE jobs started with PLAY = 1.
    pwm_bits : int
        The player's PWM resolution, 1 to 16 (``audio_out`` only).
    audio_period : int or None
        Clock cycles per played sample; None: ``round(FCLK0 / sample_rate)`` (6,250 at 100 MHz and 16 kHz).
    audio_fifo : int
        Samples the player's FIFO holds (>= 2).
    """

    network: SampleRNNConfig = SampleRNNConfig()
    lanes: int = 8
    simd: int = 8
    gru_lanes: tuple[int, ...] | int | None = None
    name: str = "wavefabric_samplernn"
    sample_rate: int = 16_000
    audio_out: bool = False
    pwm_bits: int = 8
    audio_period: int | None = None
    audio_fifo: int = 512

    def __post_init__(self):
        check_identifier(self.name)
        check_int("sample_rate", self.sample_rate, 1)
        if not isinstance(self.audio_out, bool):
            raise ValueError(f"audio_out must be True or False, not {self.audio_out!r}")
        if self.audio_period is None:
            object.__setattr__(self, "audio_period", round(FCLK0_HZ / self.sample_rate))
        self.player()  # validates pwm_bits, audio_period and audio_fifo
        if not isinstance(self.network, SampleRNNConfig):
            raise ValueError(f"network must be a SampleRNNConfig, not {self.network!r}")
        layout = SampleRNNLayout(self.network, self.lanes, self.simd, self.gru_lanes)  # validates the sizes
        object.__setattr__(self, "gru_lanes", tuple(layout.gru_lanes))
        stream_width(self.simd, self.element_bits)

    @property
    def layout(self) -> SampleRNNLayout:
        return SampleRNNLayout(self.network, self.lanes, self.simd, self.gru_lanes)

    @property
    def element_bits(self) -> int:
        """Bits of one value's container on ``s_axis``: 8, 16 or 32."""
        return element_bits(self.layout.load_width)

    @property
    def mm2s_width(self) -> int:
        """TDATA bits of ``s_axis`` (the AXI DMA's MM2S): ``simd`` values, a power of two >= 32."""
        return stream_width(self.simd, self.element_bits)

    @property
    def s2mm_width(self) -> int:
        """TDATA bits of ``m_axis`` (the AXI DMA's S2MM): one sample per beat."""
        return SAMPLE_BITS

    def engine(self) -> SampleRNNEngine:
        return SampleRNNEngine(self.network, self.lanes, self.simd, self.gru_lanes)

    def player(self) -> PcmPlayer:
        return PcmPlayer(self.pwm_bits, self.audio_period, self.audio_fifo)

    def as_json(self) -> dict:
        """The configuration as JSON-ready data (formats as ``[width, frac]``)."""
        net, num = self.network, self.network.numerics
        return {"frame_sizes": list(net.frame_sizes), "n_rnn": net.n_rnn, "dim": net.dim, "q_levels": net.q_levels,
                "learn_h0": net.learn_h0, "weight_norm": net.weight_norm,
                "numerics": numerics_json(num),
                "logits": _pair(net.logits), "table": _pair(net.table), "gumbel_bits": net.gumbel_bits,
                "lanes": self.lanes, "simd": self.simd, "gru_lanes": list(self.gru_lanes), "name": self.name,
                "sample_rate": self.sample_rate, "audio_out": self.audio_out, "pwm_bits": self.pwm_bits,
                "audio_period": self.audio_period, "audio_fifo": self.audio_fifo}

    def register_map(self) -> dict:
        return register_map(self)

    def top(self) -> SampleRNNTop:
        return SampleRNNTop(self)


def config_from_register_map(regmap: dict) -> SampleRNNTopConfig:
    """The :class:`SampleRNNTopConfig` a register map (:func:`register_map`) was generated from.

    Raises ``ValueError`` for a map of another design, or one whose ``config_id`` is not its configuration's.
    """
    fields = config_fields(regmap, "samplernn")
    numerics = numerics_from_json(fields.pop("numerics"))
    network = SampleRNNConfig(frame_sizes=tuple(fields["frame_sizes"]), n_rnn=fields["n_rnn"], dim=fields["dim"],
                              q_levels=fields["q_levels"], learn_h0=fields["learn_h0"],
                              weight_norm=fields["weight_norm"], numerics=numerics,
                              logits=QFormat(*fields["logits"]), table=QFormat(*fields["table"]),
                              gumbel_bits=fields["gumbel_bits"])
    config = SampleRNNTopConfig(network, fields["lanes"], fields["simd"], tuple(fields["gru_lanes"]),
                                fields["name"], fields["sample_rate"], fields["audio_out"], fields["pwm_bits"],
                                fields["audio_period"], fields["audio_fifo"])
    check_config_id(config, regmap)
    return config


def register_params(config: SampleRNNTopConfig) -> list[Register]:
    """The parameter registers of :class:`SampleRNNTop` (after the four ``ap_ctrl`` registers), from 0x10."""
    net, num, lay = config.network, config.network.numerics, config.layout
    params = [
        Register("MODE", "rw", "job kind: " + ", ".join(f"{i} {n}" for i, n in enumerate(Mode.NAMES)), width=1,
                 limit=len(Mode.NAMES)),
        Register("SAMPLES", "rw", "samples of a GENERATE job (0 completes at once)"),
        Register("SEED", "rw", "the sampler's xorshift32 state at the job's start (nonzero)"),
        Register("TEMPERATURE", "rw", "sampling temperature, round(T * 4096), 1 to 65535", width=16),
        Register("TABLE_ADDR", "rw", f"byte address of the MLP input table in DDR ({TABLE_ALIGN}-byte aligned)"),
        Register("STATUS", "ro", "bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown load region, bit 3 a "
                                 "zero v row (sticky)", width=4),
        Register("CYCLES", "ro", "clock cycles of the last job, start to done"),
        Register("CONFIG_ID", "ro", "CRC-32 of the configuration (the JSON's config_id)", config_id(config.as_json())),
        Register("N_TIERS", "ro", "frame-level tiers", net.n_tiers),
    ]
    params += [Register(f"FRAME_SIZE_{k}", "ro", f"frame size of tier {k} (bottom first)", fs)
               for k, fs in enumerate(net.frame_sizes)]
    params += [
        Register("N_RNN", "ro", "GRU layers per tier", net.n_rnn),
        Register("DIM", "ro", "GRU and MLP width", net.dim),
        Register("Q_LEVELS", "ro", "quantisation levels", net.q_levels),
        Register("WEIGHT_NORM", "ro", "1: the matrices load as (g, v)", int(net.weight_norm)),
        Register("ACT_FORMAT", "ro", "activation format: width | frac << 8", format_word(num.act)),
        Register("WEIGHT_FORMAT", "ro", "weight format: width | frac << 8", format_word(num.weight)),
        Register("LOGITS_FORMAT", "ro", "logits format: width | frac << 8", format_word(net.logits)),
        Register("TABLE_FORMAT", "ro", "MLP input table format: width | frac << 8", format_word(net.table)),
        Register("GUMBEL_BITS", "ro", "bits of the sampler's Gumbel table index", net.gumbel_bits),
        Register("LANES", "ro", "matrix-vector unit lanes P", config.lanes),
        Register("SIMD", "ro", "multipliers per lane S (values per s_axis beat)", config.simd),
    ]
    params += [Register(f"GRU_LANES_{k}", "ro", f"lanes of tier {k}'s GRU engine", n)
               for k, n in enumerate(config.gru_lanes)]
    params += [
        Register("AUDIO_OUT", "ro", "1: standalone playback on the PWM audio output (PLAY)", int(config.audio_out)),
        Register("S_AXIS_WIDTH", "ro", "s_axis TDATA bits", config.mm2s_width),
        Register("M_AXIS_WIDTH", "ro", "m_axis TDATA bits", config.s2mm_width),
        Register("TABLE_BYTES", "ro", "bytes of the MLP input table in DDR", lay.table_bytes),
        Register("SAMPLE_RATE", "ro", "sample rate in Hz", config.sample_rate),
    ]
    if config.audio_out:
        params += [Register("PLAY", "rw", "1: a GENERATE job's samples go to the audio output, not m_axis", width=1),
                   Register("PWM_BITS", "ro", "the player's PWM resolution", config.pwm_bits),
                   Register("AUDIO_PERIOD", "ro", "clock cycles per played sample", config.audio_period)]
    names = lay.saturation_names()
    params.append(Register("SATURATED", "ro", "sticky per GENERATE job: bit i set when narrowing i saturated a "
                                              "value; bits: " + ", ".join(names), width=len(names)))
    return params


def region_names(engine: SampleRNNEngine) -> dict[int, str]:
    """The name of every load region ``engine`` takes (``gru_weights_0``, ... for the tiers')."""
    names = {value: name for name, value in vars(LoadRegion).items() if name.isupper()}
    for tier in range(len(engine.grus)):
        names[LoadRegion.gru_weights(tier)] = f"GRU_WEIGHTS_{tier}"
        names[LoadRegion.gru_biases(tier)] = f"GRU_BIASES_{tier}"
    return {value: names[value] for value in sorted(engine.regions)}


def register_map(config: SampleRNNTopConfig, engine: SampleRNNEngine | None = None) -> dict:
    """The register map and stream protocol of :class:`SampleRNNTop` for ``config``, as JSON-ready data.

    ``engine`` is the configuration's engine if one is at hand (its load regions are read; by default one is
    built).

    Keys: ``design`` (``"samplernn"``), ``top``, ``vlnv``, ``addr_width``, ``config``
    (:meth:`SampleRNNTopConfig.as_json`), ``config_id``, ``streams`` (``s_axis``: ``tdata_width``,
    ``element_bits``, ``elements``; ``m_axis``: ``tdata_width``, ``pcm_bits``, ``code_bits``), ``modes``,
    ``load_regions`` (name to ``value`` and ``beats``), ``table_bytes``, ``table_align``, ``registers``.
    """
    engine = config.engine() if engine is None else engine
    return {
        "design": "samplernn",
        "top": config.name,
        "vlnv": vlnv(config.name),
        "addr_width": ADDR_WIDTH,
        "config": config.as_json(),
        "config_id": config_id(config.as_json()),
        "streams": {"s_axis": {"tdata_width": config.mm2s_width, "element_bits": config.element_bits,
                               "elements": config.simd},
                    "m_axis": {"tdata_width": SAMPLE_BITS, "pcm_bits": [0, 16], "code_bits": [16, 32]}},
        "modes": {name: i for i, name in enumerate(Mode.NAMES)},
        "load_regions": {name: {"value": value, "beats": engine.regions[value]}
                         for value, name in region_names(engine).items()},
        "table_bytes": engine.layout.table_bytes,
        "table_align": TABLE_ALIGN,
        "registers": register_table(register_params(config)),
    }


def load_stream(config: SampleRNNTopConfig, model: SampleRNNFixed) -> np.ndarray:
    """The ``s_axis`` beats of a LOAD job that puts ``model``'s weights into the accelerator.

    A ``(beats, mm2s_width // element_bits)`` array of the stream's element type (``int8/16/32``, little-endian:
    its bytes are the DMA buffer): every frame of :func:`~wavefabric.sim.samplernn.load_frames` after its header
    beat. TLAST belongs on the last beat.
    """
    from ..sim.samplernn import load_frames

    frames = load_frames(config.engine(), model)
    starts = np.flatnonzero(frames["first"])
    rows = np.zeros((len(frames["region"]) + len(starts), config.mm2s_width // config.element_bits),
                    dtype=f"<i{config.element_bits // 8}")
    headers = starts + np.arange(len(starts))  # each frame moves down by the headers before it
    rows[headers, 0] = frames["region"][starts]
    data_rows = np.setdiff1d(np.arange(len(rows)), headers)
    rows[data_rows, :config.simd] = frames["data"]
    return rows


class SampleRNNAxiCore(wiring.Component):
    """:class:`~wavefabric.rtl.samplernn.SampleRNNEngine` behind the register map and streams of this module.

    The ``sync``-domain core of :class:`SampleRNNTop` (simulations drive it, or its
    :class:`~wavefabric.boards.shell.StreamView`).

    Ports
    -----
    ctrl : In(axi_lite_signature())
    s_axis : In(axi_stream_signature(config.mm2s_width))
        A LOAD job's frames.
    m_axis : Out(axi_stream_signature(32, keep=True))
        A GENERATE job's samples; TKEEP all ones.
    m_axi : Out(axi4_read_signature(32, 64))
        The engine's table reads, to the PS DDR.
    interrupt : Out(1)
    audio_pwm : Out(gpio_signature()), audio_sd : Out(1)
        With ``audio_out``: the PWM audio pin, open drain (TRI_O 0, TRI_T the PWM: high impedance for 1), and
        the amplifier's shutdown pin, high (playing).

    Latency: a register read answers in 1 cycle, a write in 2; a job launches the cycle after its CTRL write
    completes, and a GENERATE job hands its command to the engine in the cycle after that. The adapters add no
    cycle to the engine's: a GENERATE job of n samples counts CYCLES =
    ``samplernn_timing(...).total_cycles(n, ...) + GENERATE_OVERHEAD`` (the engine's cycles from its command to
    its last sample, plus the command's and the finish's cycle) when ``m_axis`` is always ready.
    """

    def __init__(self, config: SampleRNNTopConfig):
        if not isinstance(config, SampleRNNTopConfig):
            raise ValueError(f"config must be a SampleRNNTopConfig, not {config!r}")
        self.config = config
        self.engine = config.engine()
        self.regmap = register_map(config, self.engine)
        members = {
            "ctrl": In(axi_lite_signature()),
            "s_axis": In(axi_stream_signature(config.mm2s_width)),
            "m_axis": Out(axi_stream_signature(SAMPLE_BITS, keep=True)),
            "m_axi": Out(axi4_read_signature(DDR_ADDR_WIDTH, DDR_DATA_WIDTH)),
            "interrupt": Out(1),
        }
        if config.audio_out:
            members |= {"audio_pwm": Out(gpio_signature()), "audio_sd": Out(1)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config, engine = self.config, self.engine
        m.submodules.engine = engine
        m.submodules.regs = regs = ApCtrlRegisters(register_params(config))
        wiring.connect(m, wiring.flipped(self.ctrl), regs.bus)
        connect_read_master(m, self.m_axi, engine.ar, engine.r)
        m.d.comb += self.interrupt.eq(regs.interrupt)

        # --- Job control -------------------------------------------------------------------------------------
        job = Signal()
        load_left, cmd_left, out_left = Signal(), Signal(), Signal(32)
        tlast_error, region_error = Signal(), Signal()
        header = Signal()                                      # the next s_axis beat is a frame's header
        with m.If(regs.launch):
            generate = regs.mode == Mode.GENERATE
            m.d.sync += [job.eq(regs.mode), load_left.eq(~generate), cmd_left.eq(generate & (regs.samples != 0)),
                         out_left.eq(Mux(generate, regs.samples, 0)), header.eq(1)]
        m.d.comb += [regs.finish.eq(~load_left & ~cmd_left & (out_left == 0)),
                     regs.status.eq(Cat(engine.error, tlast_error, region_error, engine.zero_row)),
                     regs.cycles.eq(job_cycles(m, regs)), regs.saturated.eq(engine.saturated)]

        # --- s_axis -> engine.load: frames behind header beats -----------------------------------------------
        regions = engine.regions
        region = Signal(range(max(regions) + 1))
        beat = Signal(range(max(regions.values())))
        frame_len = Array(Const(regions.get(r, 0)) for r in range(max(regions) + 1))[region]
        s_axis, load = self.s_axis, engine.load
        values = lanes(s_axis.tdata, config.element_bits, config.simd)
        loading = regs.busy & load_left
        last = beat == frame_len - 1
        m.d.comb += [s_axis.tready.eq(loading & (header | load.ready)),
                     load.valid.eq(loading & ~header & s_axis.tvalid),
                     load.payload.region.eq(region), load.payload.first.eq(beat == 0), load.payload.last.eq(last)]
        m.d.comb += [load.payload.data[s].eq(value[:config.layout.load_width]) for s, value in enumerate(values)]
        known = Signal()
        m.d.comb += known.eq(Array(Const(int(r in regions)) for r in range(max(regions) + 1))[values[0]]
                             & (values[0] <= max(regions)))
        with m.If(s_axis.tvalid & s_axis.tready):
            with m.If(header):
                m.d.sync += region.eq(values[0])
                with m.If(known):
                    m.d.sync += [header.eq(0), beat.eq(0)]
                with m.Else():
                    m.d.sync += region_error.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
                with m.If(last):
                    m.d.sync += [beat.eq(0), header.eq(1)]
            with m.If(s_axis.tlast):
                m.d.sync += load_left.eq(0)
                with m.If(header | ~last):
                    m.d.sync += tlast_error.eq(1)

        # --- The job's command, engine.out -> m_axis ---------------------------------------------------------
        cmd = engine.cmd
        m.d.comb += [cmd.valid.eq(regs.busy & cmd_left), cmd.payload.count.eq(regs.samples),
                     cmd.payload.seed.eq(regs.seed), cmd.payload.temperature.eq(regs.temperature),
                     cmd.payload.table_base.eq(regs.table_addr)]
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += cmd_left.eq(0)
        out, m_axis = engine.out, self.m_axis
        m.d.comb += [m_axis.tdata.eq(Cat(out.payload.pcm, out.payload.code)),
                     m_axis.tlast.eq(out.payload.last), m_axis.tkeep.eq((1 << len(m_axis.tkeep)) - 1)]
        if config.audio_out:
            # PLAY, latched at launch, sends the job's samples to the player instead of m_axis.
            m.submodules.player = player = config.player()
            play = Signal()
            with m.If(regs.launch):
                m.d.sync += play.eq(regs.play)
            m.d.comb += [m_axis.tvalid.eq(out.valid & ~play), player.pcm.valid.eq(out.valid & play),
                         player.pcm.payload.eq(out.payload.pcm),
                         out.ready.eq(Mux(play, player.pcm.ready, m_axis.tready)),
                         # Open drain: low pulls the pin down, high impedance lets the board's pull-up raise it.
                         self.audio_pwm.tri_o.eq(0), self.audio_pwm.tri_t.eq(player.pwm), self.audio_sd.eq(1)]
        else:
            m.d.comb += [m_axis.tvalid.eq(out.valid), out.ready.eq(m_axis.tready)]
        with m.If(out.valid & out.ready & (out_left != 0)):
            m.d.sync += out_left.eq(out_left - 1)
        return m


class SampleRNNTop(ShellTop):
    """The SampleRNN accelerator with the ports a Vivado block design expects (see the module docstring).

    :class:`SampleRNNAxiCore` in the shell's :class:`~wavefabric.boards.shell.ShellTop`: ``s_axi_ctrl`` (AXI4-Lite),
    ``s_axis`` (AXI4-Stream, :attr:`SampleRNNTopConfig.mm2s_width` bits), ``m_axis`` (32 bits, with TKEEP),
    ``m_axi`` (AXI4 read manager, 32-bit address, 64-bit data), ``aclk``, ``aresetn`` and ``interrupt``.

    Latency: as :class:`SampleRNNAxiCore`.
    """

    def __init__(self, config: SampleRNNTopConfig):
        self.config = config
        super().__init__(SampleRNNAxiCore(config))
