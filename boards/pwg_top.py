# amaranth: UnusedElaboratable=no
# (PWGTopConfig builds a PWGEngine to validate its sizes and read its streams, then drops it.)
"""The ParallelWaveGAN vocoder as Vivado sees it: a thin top over the AXI shell (:mod:`wavefabric.boards.shell`).

* :class:`PWGAxiCore`: :class:`~wavefabric.rtl.pwg.PWGEngine` (``store="ddr"``: the activations between layers
  in the PS DDR) behind the shell's register file, a stream demux and the pass-through of the engine's two AXI4
  managers, in the ``sync`` domain with nested interfaces (``ctrl``, ``s_axis``, ``m_axis``, ``m_axi_x``,
  ``m_axi_skip``).
* :class:`PWGTop`: the core as a :class:`~wavefabric.boards.shell.ShellTop`: ``aclk``, ``aresetn``,
  ``s_axi_ctrl_*``, ``s_axis_*``, ``m_axis_*``, ``m_axi_x_*`` and ``m_axi_skip_*`` (AXI4 read-write managers,
  64-bit) and ``interrupt``.

The engine's x and skip-sum movers are two independent AXI4 managers: the top keeps them as two ports, which the
block design connects to S_AXI_HP0 and S_AXI_HP1 through SmartConnects. Merging them into one port would need an
arbiter (or AXI IDs) in the top; two ports need none, and each has an HP port's bandwidth to itself.

**Register map** (:func:`register_params`; HLS ``ap_ctrl`` at 0x00-0x0C, then from 0x10 at a stride of 8)::

    MODE        rw  0 LOAD, 1 VOCODE (other values: SLVERR, kept)
    FRAMES      rw  mel frames of a VOCODE job, 2 to max_frames (more: SLVERR, kept)
    X_ADDR      rw  byte address of the x scratch buffer in DDR, 4 KiB aligned (x_bytes long)
    SKIP_ADDR   rw  byte address of the skip-sum scratch buffer in DDR, 4 KiB aligned (skip_bytes long)
    STATUS      ro  bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown stream, bit 3 FRAMES < 2 (sticky)
    CYCLES      ro  clock cycles of the last job, start to done
    SATURATION_k ro the engine's saturation flags of the last VOCODE job, 32 per register: bit 0 the front end,
                    bit 1 + l residual layer l, bit L + 1 the skip scale or the output layers
    CONFIG_ID   ro  CRC-32 of the configuration (:meth:`PWGTopConfig.as_json`), then the configuration one value
                    per register (sizes, scales, formats as width | frac << 8, array, stream widths, buffer bytes)

**The input stream.** ``s_axis`` carries frames for the engine's input streams (:func:`engine_streams`: every
``frame_layout`` input of :class:`~wavefabric.rtl.pwg.PWGEngine`, numbered in its signature's order). A frame is
a header beat (value 0: the stream's number in bits [5:0], bit 6 "the frame's first beat carries ``first``", bit
7 "its last beat carries ``last``"; value 1: the frame's beats - 1) and then its beats, ``elements`` values of
``element_bits`` each (value ``j`` in bits ``[j * E, (j + 1) * E)``; a stream takes its lanes from value 0 on).
A job's input ends with the beat that carries TLAST, which must be a frame's last beat. **LOAD job**: the engine is
reset at its launch, then takes the streams it takes once after reset (:data:`LOAD_STREAMS`: the checkpoint's
formats and the upsampling table), so a LOAD job loads any checkpoint of the build's sizes. **VOCODE job**: every other
stream of one job of FRAMES frames, the weights included (the engine takes them per job), in the order
:func:`job_stream` gives; ``m_axis`` carries the PCM, ``cols`` 16-bit samples per beat (per block of ``cols``
samples, per output channel), TLAST on the last. A job is done when its input has been taken and its PCM has left.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, ResetInserter, Shape, Signal, UnusedElaboratable
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..model.pwg import PCM_FORMAT, PWGConfig, PWGFixed
from ..rtl.pwg import PWGEngine
from .shell import (
    ADDR_WIDTH,
    ApCtrlRegisters,
    Register,
    ShellTop,
    axi4_signature,
    axi_lite_signature,
    axi_stream_signature,
    check_config_id,
    check_identifier,
    config_fields,
    config_id,
    connect_read_master,
    connect_write_master,
    element_bits,
    format_word,
    job_cycles,
    lanes,
    numerics_from_json,
    numerics_json,
    register_table,
    stream_width,
    vlnv,
)

__all__ = ["Mode", "PWGTopConfig", "engine_streams", "register_params", "register_map", "config_from_register_map",
           "frames_stream", "load_stream", "job_stream", "PWGAxiCore", "PWGTop", "LOAD_STREAMS", "DDR_ALIGN",
           "FIRST_FLAG", "LAST_FLAG"]

# The register map and the streams read a PWGEngine's sizes and ports; its blocks are built in its constructor,
# so such an engine, never elaborated, would warn when collected. Only those.
warnings.filterwarnings("ignore", category=UnusedElaboratable,
                        module=r".*[/\\](rtl[/\\](pwg|conv1d|frontend|dma|gemm|systolic|activation|linebuffer)"
                               r"|boards[/\\]pwg_top)$")

#: The engine's input streams that a LOAD job carries: those it takes once after reset.
LOAD_STREAMS = ("table",)
#: Alignment of X_ADDR and SKIP_ADDR (a 4 KiB page, what ``pynq.allocate`` gives).
DDR_ALIGN = 4096
#: Header bits of value 0: the frame's first beat carries ``first``, its last beat ``last``.
FIRST_FLAG, LAST_FLAG = 1 << 6, 1 << 7
#: Width of the DDR managers' address and data (S_AXI_HP0 / HP1 are 64 bits wide).
DDR_ADDR_WIDTH, DDR_DATA_WIDTH = 32, 64


class Mode:
    """Values of the MODE register."""

    LOAD = 0
    VOCODE = 1
    NAMES = ("LOAD", "VOCODE")


def engine_streams(engine: PWGEngine) -> dict[str, tuple[int, int]]:
    """The engine's input streams that ``s_axis`` feeds: name to (lanes, bits per value), in signature order.

    Every ``In`` stream whose payload has ``data`` lanes, ``first`` and ``last``
    (:func:`~wavefabric.rtl.gemm.frame_layout`); the AXI4 read data and write responses are not such streams.
    """
    found = {}
    for name, member in engine.signature.members.items():
        if not member.is_signature or member.flow != In or "payload" not in member.signature.members:
            continue
        layout = data.Layout.cast(member.signature.members["payload"].shape)
        if isinstance(layout, data.StructLayout) and {"data", "first", "last"} <= set(dict(layout)):
            lanes_layout = data.Layout.cast(layout["data"].shape)
            found[name] = (lanes_layout.length, Shape.cast(lanes_layout.elem_shape).width)
    return found


@dataclass(frozen=True)
class PWGTopConfig:
    """Everything that shapes the PWG overlay: the network's sizes, the array's, the longest job, the name.

    The single source of the register map, the Vivado build and the driver.

    Parameters
    ----------
    network : PWGConfig
        Sizes and formats of the generator (the output layers must fit the engine: ``skip <= residual, gate /
        2``, ``out_channels <= skip``).
    rows, cols, max_frames, gate_lanes
        As :class:`~wavefabric.rtl.pwg.PWGEngine` (``store="ddr"``); ``gate_lanes`` None: the fewest that keep
        up, stored resolved.
    name : str
        Verilog module name of the top (a Verilog identifier).
    """

    network: PWGConfig = PWGConfig()
    rows: int = 13
    cols: int = 16
    max_frames: int = 2
    gate_lanes: int | None = None
    name: str = "wavefabric_pwg"

    def __post_init__(self):
        check_identifier(self.name)
        if not isinstance(self.network, PWGConfig):
            raise ValueError(f"network must be a PWGConfig, not {self.network!r}")
        engine = self.engine()  # validates the sizes
        object.__setattr__(self, "gate_lanes", engine.engine.gate_lanes)
        if len(self.streams) > FIRST_FLAG:
            raise ValueError(f"the engine has {len(self.streams)} input streams; a header numbers at most "
                             f"{FIRST_FLAG}")
        stream_width(self.elements, self.element_bits)

    def engine(self) -> PWGEngine:
        return PWGEngine(self.network, self.rows, self.cols, self.max_frames, self.gate_lanes, store="ddr")

    @cached_property
    def streams(self) -> dict[str, tuple[int, int]]:
        """:func:`engine_streams` of the configuration's engine (its stream numbers are their order)."""
        return engine_streams(self.engine())

    @property
    def element_bits(self) -> int:
        """Bits of one value's container on ``s_axis``: 8, 16 or 32 (the widest stream value; at least 8)."""
        return element_bits(max(8, *(bits for _, bits in self.streams.values())))

    @property
    def elements(self) -> int:
        """Values per ``s_axis`` beat: the most lanes of any stream, at least 2 (a header's two values)."""
        return max(2, *(n for n, _ in self.streams.values()))

    @property
    def mm2s_width(self) -> int:
        """TDATA bits of ``s_axis`` (the AXI DMA's MM2S): ``elements`` values, a power of two >= 32."""
        return stream_width(self.elements, self.element_bits)

    @property
    def s2mm_width(self) -> int:
        """TDATA bits of ``m_axis`` (the AXI DMA's S2MM): ``cols`` 16-bit samples."""
        return stream_width(self.cols, PCM_FORMAT.width)

    @property
    def sample_rate(self) -> int:
        return self.network.sample_rate

    def ddr_bytes(self) -> dict[str, int]:
        """Bytes of the DDR scratch buffers, ``{"x": ..., "skip": ...}`` (whole 4 KiB pages)."""
        from ..sim.pwg import activation_memories

        return {name: len(memory.contents) for name, memory in activation_memories(self.engine()).items()}

    def as_json(self) -> dict:
        """The configuration as JSON-ready data (formats as ``[width, frac]``)."""
        net, num = self.network, self.network.numerics
        return {"in_channels": net.in_channels, "out_channels": net.out_channels, "kernel_size": net.kernel_size,
                "layers": net.layers, "stacks": net.stacks, "residual_channels": net.residual_channels,
                "gate_channels": net.gate_channels, "skip_channels": net.skip_channels,
                "aux_channels": net.aux_channels, "aux_context_window": net.aux_context_window,
                "upsample_scales": list(net.upsample_scales), "sample_rate": net.sample_rate,
                "use_weight_norm": net.use_weight_norm,
                "numerics": numerics_json(num),
                "rows": self.rows, "cols": self.cols, "max_frames": self.max_frames, "gate_lanes": self.gate_lanes,
                "name": self.name}

    def register_map(self) -> dict:
        return register_map(self)

    def top(self) -> PWGTop:
        return PWGTop(self)


def config_from_register_map(regmap: dict) -> PWGTopConfig:
    """The :class:`PWGTopConfig` a register map (:func:`register_map`) was generated from.

    Raises ``ValueError`` for a map of another design, or one whose ``config_id`` is not its configuration's.
    """
    fields = config_fields(regmap, "pwg")
    numerics = numerics_from_json(fields.pop("numerics"))
    top = {key: fields.pop(key) for key in ("rows", "cols", "max_frames", "gate_lanes", "name")}
    config = PWGTopConfig(PWGConfig(**fields, numerics=numerics), **top)
    check_config_id(config, regmap)
    return config


def _saturation_words(layers: int) -> list[int]:
    """Bits of each SATURATION register: the engine's ``layers + 2`` flags, 32 per register."""
    flags = layers + 2
    return [min(32, flags - bit) for bit in range(0, flags, 32)]


def register_params(config: PWGTopConfig) -> list[Register]:
    """The parameter registers of :class:`PWGTop` (after the four ``ap_ctrl`` registers), from 0x10."""
    net, num = config.network, config.network.numerics
    ddr = config.ddr_bytes()
    params = [
        Register("MODE", "rw", "job kind: " + ", ".join(f"{i} {n}" for i, n in enumerate(Mode.NAMES)), width=1,
                 limit=len(Mode.NAMES)),
        Register("FRAMES", "rw", f"mel frames of a VOCODE job, 2 to {config.max_frames}",
                 width=config.max_frames.bit_length(), limit=config.max_frames + 1),
        Register("X_ADDR", "rw", f"byte address of the x scratch buffer in DDR ({DDR_ALIGN}-byte aligned)"),
        Register("SKIP_ADDR", "rw", f"byte address of the skip-sum scratch buffer in DDR ({DDR_ALIGN}-byte "
                                    "aligned)"),
        Register("STATUS", "ro", "bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown stream, bit 3 a "
                                 "VOCODE job with FRAMES < 2 (sticky)", width=4),
        Register("CYCLES", "ro", "clock cycles of the last job, start to done"),
    ]
    params += [Register(f"SATURATION_{k}", "ro", f"saturation flags {32 * k} to {32 * k + width - 1} of the last "
                                                 "VOCODE job: bit 0 the front end, bit 1 + l layer l, bit L + 1 the "
                                                 "skip scale or the output layers", width=width)
               for k, width in enumerate(_saturation_words(net.layers))]
    params += [
        Register("CONFIG_ID", "ro", "CRC-32 of the configuration (the JSON's config_id)", config_id(config.as_json())),
        Register("IN_CHANNELS", "ro", "noise channels", net.in_channels),
        Register("OUT_CHANNELS", "ro", "waveform channels", net.out_channels),
        Register("KERNEL_SIZE", "ro", "taps of the dilated convolutions", net.kernel_size),
        Register("LAYERS", "ro", "residual layers", net.layers),
        Register("STACKS", "ro", "dilation cycles", net.stacks),
        Register("RESIDUAL_CHANNELS", "ro", "residual channels", net.residual_channels),
        Register("GATE_CHANNELS", "ro", "gate channels", net.gate_channels),
        Register("SKIP_CHANNELS", "ro", "skip channels", net.skip_channels),
        Register("AUX_CHANNELS", "ro", "mel (aux) channels", net.aux_channels),
        Register("AUX_CONTEXT_WINDOW", "ro", "conv_in's context frames each side", net.aux_context_window),
        Register("HOP_SIZE", "ro", "samples per mel frame", net.hop_size),
        Register("N_SCALES", "ro", "upsampling stages", len(net.upsample_scales)),
    ]
    params += [Register(f"UPSAMPLE_SCALE_{k}", "ro", f"scale of upsampling stage {k}", scale)
               for k, scale in enumerate(net.upsample_scales)]
    params += [
        Register("ACT_FORMAT", "ro", "activation format: width | frac << 8", format_word(num.act)),
        Register("WEIGHT_FORMAT", "ro", "weight format: width | frac << 8", format_word(num.weight)),
        Register("GATE_FORMAT", "ro", "gate format: width | frac << 8", format_word(num.gate)),
        Register("TABLE_BITS", "ro", "segments of the tanh and sigmoid tables, log2", num.table_bits),
        Register("ROWS", "ro", "array rows", config.rows),
        Register("COLS", "ro", "array columns (samples per m_axis beat)", config.cols),
        Register("GATE_LANES", "ro", "lanes of the gate unit", config.gate_lanes),
        Register("MAX_FRAMES", "ro", "longest VOCODE job in mel frames", config.max_frames),
        Register("S_AXIS_WIDTH", "ro", "s_axis TDATA bits", config.mm2s_width),
        Register("M_AXIS_WIDTH", "ro", "m_axis TDATA bits", config.s2mm_width),
        Register("X_BYTES", "ro", "bytes of the x scratch buffer", ddr["x"]),
        Register("SKIP_BYTES", "ro", "bytes of the skip-sum scratch buffer", ddr["skip"]),
        Register("SAMPLE_RATE", "ro", "sample rate in Hz", net.sample_rate),
    ]
    return params


def register_map(config: PWGTopConfig) -> dict:
    """The register map and stream protocol of :class:`PWGTop` for ``config``, as JSON-ready data.

    Keys: ``design`` (``"pwg"``), ``top``, ``vlnv``, ``addr_width``, ``config`` (:meth:`PWGTopConfig.as_json`),
    ``config_id``, ``streams`` (``s_axis``: ``tdata_width``, ``element_bits``, ``elements``, ``first_flag``,
    ``last_flag``; ``m_axis``: ``tdata_width``, ``pcm_bits``, ``samples``), ``engine_streams`` (name to
    ``index``, ``lanes``, ``bits``), ``load_streams``, ``modes``, ``ddr`` (``x_bytes``, ``skip_bytes``,
    ``align``), ``registers``.
    """
    ddr = config.ddr_bytes()
    return {
        "design": "pwg",
        "top": config.name,
        "vlnv": vlnv(config.name),
        "addr_width": ADDR_WIDTH,
        "config": config.as_json(),
        "config_id": config_id(config.as_json()),
        "streams": {"s_axis": {"tdata_width": config.mm2s_width, "element_bits": config.element_bits,
                               "elements": config.elements, "first_flag": FIRST_FLAG, "last_flag": LAST_FLAG},
                    "m_axis": {"tdata_width": config.s2mm_width, "pcm_bits": PCM_FORMAT.width,
                               "samples": config.cols}},
        "engine_streams": {name: {"index": i, "lanes": n, "bits": bits}
                           for i, (name, (n, bits)) in enumerate(config.streams.items())},
        "load_streams": list(LOAD_STREAMS),
        "modes": {name: i for i, name in enumerate(Mode.NAMES)},
        "ddr": {"x_bytes": ddr["x"], "skip_bytes": ddr["skip"], "align": DDR_ALIGN},
        "registers": register_table(register_params(config)),
    }


def _pieces(beats: list[dict]) -> list[list[dict]]:
    """``beats`` cut before every ``first`` beat and after every ``last`` beat (a stream's own frames)."""
    pieces, piece = [], []
    for beat in beats:
        if beat["first"] and piece:
            pieces.append(piece)
            piece = []
        piece.append(beat)
        if beat["last"]:
            pieces.append(piece)
            piece = []
    return pieces + ([piece] if piece else [])


def frames_stream(config: PWGTopConfig, parts: list[tuple[str, list[dict]]]) -> np.ndarray:
    """The ``s_axis`` beats of ``parts`` (stream name, its beats), each part as frames behind header beats.

    A ``(beats, elements)`` array of the stream's unsigned element type (``uint8/16/32``, little-endian: its
    bytes are the DMA buffer); a part is cut at its stream's own frame boundaries and into frames of at most
    ``2**element_bits`` beats. TLAST belongs on the last beat.
    """
    streams = config.streams
    index = {name: i for i, name in enumerate(streams)}
    bits, width = config.element_bits, config.elements
    limit, mask = 1 << bits, (1 << bits) - 1
    blocks = []
    for name, beats in parts:
        for piece in _pieces(beats):
            for start in range(0, len(piece), limit):
                frame = piece[start:start + limit]
                header = np.zeros((1, width), dtype=np.int64)
                header[0, 0] = (index[name] | (FIRST_FLAG if frame[0]["first"] else 0)
                                | (LAST_FLAG if frame[-1]["last"] else 0))
                header[0, 1] = len(frame) - 1
                values = np.zeros((len(frame), width), dtype=np.int64)
                values[:, :streams[name][0]] = [beat["data"] for beat in frame]
                blocks += [header, values]
    rows = np.concatenate(blocks) if blocks else np.zeros((0, width), dtype=np.int64)
    return (rows & mask).astype(f"<u{bits // 8}")


def load_stream(config: PWGTopConfig, fixed: PWGFixed) -> np.ndarray:
    """The ``s_axis`` beats of a LOAD job for ``fixed``'s weights: the :data:`LOAD_STREAMS` of
    :func:`~wavefabric.sim.pwg.generator_streams` (:func:`frames_stream`)."""
    from ..sim.pwg import generator_streams

    # The load streams do not depend on a job: those of a job of two zero frames.
    net = config.network
    streams = generator_streams(config.engine(), fixed,
                                np.zeros((net.aux_channels, 2 * net.aux_context_window + 2), dtype=np.int64),
                                np.zeros((net.in_channels, 2 * net.hop_size), dtype=np.int64))
    return frames_stream(config, [(name, streams[name]) for name in LOAD_STREAMS])


def job_stream(config: PWGTopConfig, fixed: PWGFixed, mel: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The ``s_axis`` beats of a VOCODE job: the padded mel ``(A, F + 2w)`` and noise ``(in_channels, F hop)``
    (act integers) and ``fixed``'s weights, every stream of :func:`~wavefabric.sim.pwg.generator_streams` but
    :data:`LOAD_STREAMS`, in an order the engine takes them in from one stream (:func:`frames_stream`).

    The order: the mel; conv_in's and first_conv's weights and first_conv's bias; the noise; then per layer l
    the front end's aux weights of layer l and the engine's weights and biases of layer l (the output layer's
    last). The front end computes layer l + 1's aux term while the engine runs layer l, and the engine takes
    layer l + 1's weights then: each waits only for what comes before it. A stream this order does not name
    comes first, whole.
    """
    from ..sim.pwg import generator_streams

    streams = generator_streams(config.engine(), fixed, mel, z)
    front = streams["frontend_w"]
    sizes = [fixed.conv_in.size + fixed.first_conv.size] + [layer.aux.size for layer in fixed.layers]
    cuts = np.cumsum([0] + sizes)
    aux = [front[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    layer_w, layer_bias = _pieces(streams["layer_w"]), _pieces(streams["layer_bias"])
    named = {"mel", "frontend_w", "frontend_bias", "noise", "layer_w", "layer_bias", *LOAD_STREAMS}
    parts = [(name, beats) for name, beats in streams.items() if name not in named]
    parts += [("mel", streams["mel"]), ("frontend_w", aux[0]), ("frontend_bias", streams["frontend_bias"]),
              ("noise", streams["noise"])]
    for layer in range(len(layer_w)):
        parts += [("frontend_w", aux[layer + 1])] if layer + 1 < len(aux) else []
        parts += [("layer_w", layer_w[layer]), ("layer_bias", layer_bias[layer])]
    return frames_stream(config, parts)


class PWGAxiCore(wiring.Component):
    """:class:`~wavefabric.rtl.pwg.PWGEngine` (``store="ddr"``) behind the register map and streams of this module.

    The ``sync``-domain core of :class:`PWGTop` (simulations drive it, or its
    :class:`~wavefabric.boards.shell.StreamView`).

    Ports
    -----
    ctrl : In(axi_lite_signature())
    s_axis : In(axi_stream_signature(config.mm2s_width))
        Frames for the engine's input streams (module docstring).
    m_axis : Out(axi_stream_signature(config.s2mm_width, keep=True))
        A VOCODE job's PCM, ``cols`` samples per beat; TKEEP all ones.
    m_axi_x, m_axi_skip : Out(axi4_signature(32, 64))
        The engine's x and skip-sum reads and writes, to the PS DDR.
    interrupt : Out(1)

    Latency: a register read answers in 1 cycle, a write in 2; a job launches the cycle after its CTRL write
    completes; the demux passes a beat to the engine combinationally (the header beat costs a cycle per frame),
    the PCM goes to ``m_axis`` combinationally. A job finishes in the cycle after its last PCM beat has left.
    """

    def __init__(self, config: PWGTopConfig):
        if not isinstance(config, PWGTopConfig):
            raise ValueError(f"config must be a PWGTopConfig, not {config!r}")
        self.config = config
        self.engine = config.engine()
        self.regmap = register_map(config)
        super().__init__({
            "ctrl": In(axi_lite_signature()),
            "s_axis": In(axi_stream_signature(config.mm2s_width)),
            "m_axis": Out(axi_stream_signature(config.s2mm_width, keep=True)),
            "m_axi_x": Out(axi4_signature(DDR_ADDR_WIDTH, DDR_DATA_WIDTH)),
            "m_axi_skip": Out(axi4_signature(DDR_ADDR_WIDTH, DDR_DATA_WIDTH)),
            "interrupt": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, engine = self.config, self.engine
        net = config.network
        m.submodules.regs = regs = ApCtrlRegisters(register_params(config))
        # A LOAD job starts from a reset engine, which takes the formats and the table once after reset: so any
        # checkpoint of the build's sizes loads without reloading the bitstream.
        m.submodules.engine = ResetInserter(regs.launch & (regs.mode == Mode.LOAD))(engine)
        wiring.connect(m, wiring.flipped(self.ctrl), regs.bus)
        for memory in ("x", "skip"):
            bus = getattr(self, f"m_axi_{memory}")
            connect_read_master(m, bus, getattr(engine, f"{memory}_ar"), getattr(engine, f"{memory}_r"))
            connect_write_master(m, bus, *(getattr(engine, f"{memory}_{c}") for c in ("aw", "w", "b")))
        m.d.comb += self.interrupt.eq(regs.interrupt)

        # --- Job control: FRAMES and the buffers' addresses are latched at launch ----------------------------
        # The engine takes a job's frame count with its first mel beat, and with fewer than 2 frames it would run
        # a job of no mel at once: it sees a legal count from reset on, a VOCODE job's from its launch.
        frames = Signal.like(engine.frames, init=config.max_frames)
        x_base, skip_base = Signal(32), Signal(32)
        load_left, out_left = Signal(), Signal(range(config.max_frames * net.hop_size // config.cols
                                                      * net.out_channels + 1))
        tlast_error, stream_error, length_error = Signal(), Signal(), Signal()
        header = Signal()                                      # the next s_axis beat is a frame's header
        with m.If(regs.launch):
            vocode, legal = regs.mode == Mode.VOCODE, regs.frames >= 2
            m.d.sync += [x_base.eq(regs.x_addr), skip_base.eq(regs.skip_addr), load_left.eq(~vocode | legal),
                         header.eq(1),
                         out_left.eq(Mux(vocode & legal, regs.frames * (net.hop_size // config.cols
                                                                         * net.out_channels), 0))]
            with m.If(vocode & legal):
                m.d.sync += frames.eq(regs.frames)
            with m.If(vocode & ~legal):
                m.d.sync += length_error.eq(1)
        m.d.comb += [engine.frames.eq(frames), engine.x_base.eq(x_base), engine.skip_base.eq(skip_base),
                     regs.finish.eq(~load_left & (out_left == 0)),
                     regs.status.eq(Cat(engine.error, tlast_error, stream_error, length_error)),
                     regs.cycles.eq(job_cycles(m, regs))]
        m.d.comb += [getattr(regs, f"saturation_{k}").eq(engine.saturation[32 * k:32 * k + width])
                     for k, width in enumerate(_saturation_words(net.layers))]

        # --- s_axis -> the engine's streams: frames behind header beats ----------------------------------------
        streams = engine_streams(engine)
        ports = [getattr(engine, name) for name in streams]
        bits = config.element_bits
        s_axis = self.s_axis
        values = lanes(s_axis.tdata, bits, config.elements)
        index = Signal(range(len(ports)))
        count, beat = Signal(bits), Signal(bits)
        first_flag, last_flag = Signal(), Signal()
        loading = regs.busy & load_left
        last = beat == count
        m.d.comb += s_axis.tready.eq(loading & (header | Array(port.ready for port in ports)[index]))
        for i, (port, (n, width)) in enumerate(zip(ports, streams.values(), strict=True)):
            m.d.comb += [port.valid.eq(loading & ~header & s_axis.tvalid & (index == i)),
                         port.payload.first.eq(first_flag & (beat == 0)), port.payload.last.eq(last_flag & last)]
            m.d.comb += [port.payload.data[j].eq(values[j][:width]) for j in range(n)]
        number = values[0][:6]
        with m.If(s_axis.tvalid & s_axis.tready):
            with m.If(header):
                m.d.sync += [index.eq(number), first_flag.eq(values[0][6]), last_flag.eq(values[0][7]),
                             count.eq(values[1]), beat.eq(0)]
                with m.If(number < len(ports)):
                    m.d.sync += header.eq(0)
                with m.Else():
                    m.d.sync += stream_error.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
                with m.If(last):
                    m.d.sync += header.eq(1)
            with m.If(s_axis.tlast):
                m.d.sync += load_left.eq(0)
                with m.If(header | ~last):
                    m.d.sync += tlast_error.eq(1)

        # --- engine.pcm -> m_axis -------------------------------------------------------------------------------
        pcm, m_axis = engine.pcm, self.m_axis
        m.d.comb += [m_axis.tdata.eq(pcm.payload.data.as_value()),
                     m_axis.tlast.eq(pcm.payload.last), m_axis.tkeep.eq((1 << len(m_axis.tkeep)) - 1),
                     m_axis.tvalid.eq(pcm.valid), pcm.ready.eq(m_axis.tready)]
        with m.If(pcm.valid & pcm.ready & (out_left != 0)):
            m.d.sync += out_left.eq(out_left - 1)
        return m


class PWGTop(ShellTop):
    """The PWG vocoder with the ports a Vivado block design expects (see the module docstring).

    :class:`PWGAxiCore` in the shell's :class:`~wavefabric.boards.shell.ShellTop`: ``s_axi_ctrl`` (AXI4-Lite),
    ``s_axis`` (AXI4-Stream, :attr:`PWGTopConfig.mm2s_width` bits), ``m_axis`` (:attr:`PWGTopConfig.s2mm_width`
    bits, with TKEEP), ``m_axi_x`` and ``m_axi_skip`` (AXI4 read-write managers, 32-bit address, 64-bit data),
    ``aclk``, ``aresetn`` and ``interrupt``.

    Latency: as :class:`PWGAxiCore`.
    """

    def __init__(self, config: PWGTopConfig):
        self.config = config
        super().__init__(PWGAxiCore(config))
