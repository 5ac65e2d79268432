"""ParallelWaveGAN generator: mel frames and noise in, 16-bit PCM out, the whole network in hardware."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from ..model.checks import check_int
from ..model.pwg import (
    MAX_SHIFT,
    PCM_FORMAT,
    PWGConfig,
    PWGFormats,
    check_output_layer,
    skip_scale_constant,
    upsample_geometry,
)
from .conv1d import ResidualEngine
from .dma import MemoryReader, MemoryWriter, record_layout
from .fixed import const_multiply, narrow, round_by, saturate, saturates
from .frontend import PWGFrontEnd
from .gemm import frame_layout

__all__ = ["PWGEngine"]


def _fifo(m: Module, name: str, source, sink, depth: int) -> None:
    """Stream ``source`` into ``sink`` through a FIFO of ``depth`` entries (the payloads have one shape)."""
    m.submodules[name] = fifo = SyncFIFOBuffered(width=len(Value.cast(source.payload)), depth=depth)
    m.d.comb += [fifo.w_en.eq(source.valid), fifo.w_data.eq(source.payload), source.ready.eq(fifo.w_rdy),
                 sink.valid.eq(fifo.r_rdy), sink.payload.eq(fifo.r_data), fifo.r_en.eq(sink.ready)]


class PWGEngine(wiring.Component):
    """The ParallelWaveGAN generator, bit-exact with :meth:`wavefabric.model.pwg.PWGFixed.forward` and
    :func:`~wavefabric.model.pwg.pcm16`: per job of F mel frames, ``F hop`` samples of 16-bit PCM.

    **Blocks.** A :class:`~wavefabric.rtl.frontend.PWGFrontEnd` (one multiplier) computes conv_in, first_conv
    and every layer's frame-rate aux term; a :class:`~wavefabric.rtl.conv1d.ResidualEngine` (the rows x cols
    array) runs the L residual layers and then the output layers as one more layer (``last`` and ``relu``, with
    the weights of :meth:`~wavefabric.model.pwg.PWGFixed.output_layer`). Between layers the activations live on
    chip, in place: an ``x`` memory (``R`` rows of C samples per block) and a skip-sum memory (S rows).

    **Schedule of a job.** The front end loads the mel and computes f and x0, which is written into the x
    memory. Then layer l = 0 .. L: the x memory and the skip memory (zeros into layer 0) stream into the engine,
    ``x_next`` and ``skip_out`` stream back into them; the last residual layer's skip sum is scaled (``sqrt(1 /
    L)``) and rectified into the x memory (rows S .. R - 1 read as zero); the output layer's first
    ``out_channels`` skip rows leave as PCM. The front end computes layer l + 1's aux term while layer l runs
    (the engine double-buffers it, as it does the weights). A new job's mel is taken once the previous job has
    finished.

    Parameters
    ----------
    config : PWGConfig
        Sizes and formats; ``skip_channels <= residual_channels, gate_channels / 2`` and ``out_channels <=
        skip_channels`` (the output layers on the engine).
    rows, cols : int
        The array; ``cols`` a power of two dividing the hop size.
    max_frames : int
        Longest job in frames (>= 2): sizes the on-chip activations (``max_frames hop / cols`` blocks).
    gate_lanes : int, optional
        The engine's gate unit (default: the fewest that keep up).

    Ports
    -----
    frames : In(range(max_frames + 1))
        F of the job (>= 2), taken with the job's first ``mel`` beat (set it at least a cycle before that beat);
        it may change for the next job from then on. The next job's ``mel`` is taken once this job has
        finished.
    mel, noise, frontend_w, frontend_bias : In(stream)
        The front end's ``mel``, ``noise``, ``weights`` and ``bias`` (:class:`~wavefabric.rtl.frontend.PWGFrontEnd`).
    layer_w, layer_bias : In(stream)
        The engine's ``w`` and ``bias``, L + 1 layers per job: the residual layers, then the output layer.
    table : In(stream)
        Once after reset, two frames (``first`` ... ``last`` each) of the engine's ``table`` payload: the
        checkpoint's formats, :meth:`~wavefabric.model.pwg.PWGShifts.flat` (``4 L + 6`` beats, the shift in lane
        0, the other lanes zero), then the engine's upsampling table.
    pcm : Out(stream)
        :func:`~wavefabric.rtl.gemm.frame_layout` of C 16-bit samples: per block, per output channel, lane j =
        sample ``n C + j``; ``first`` / ``last`` on a job's first and last beat.
    error : Out(1)
        Sticky: an input beat of the front end or the engine was framed wrong.
    saturation : Out(L + 2)
        Sticky per job (cleared by its first ``mel`` beat): bit 0 a value of the front end saturated (f, x0, an
        aux term), bit ``1 + l`` one of residual layer l, bit ``L + 1`` one of the output layers (the scaled skip
        sum, the hidden values, the waveform): bit n is set exactly when the model's ``counts[n]`` is nonzero
        (:meth:`~wavefabric.model.pwg.PWGFixed.forward`).

    Cycle count of a job: :func:`~wavefabric.model.perf.pwg_engine_timing`.
    """

    def __init__(self, config: PWGConfig, rows: int, cols: int, max_frames: int, gate_lanes: int | None = None,
                 store: str = "chip"):
        if not isinstance(config, PWGConfig):
            raise ValueError(f"config must be a PWGConfig, not {config!r}")
        check_output_layer(config)
        check_int("max_frames", max_frames, lo=2)
        if store not in ("chip", "ddr"):
            raise ValueError(f"store must be 'chip' or 'ddr', not {store!r}")
        check_int("cols", cols)
        if cols & (cols - 1) or config.hop_size % cols:
            raise ValueError(f"cols must be a power of two dividing hop = {config.hop_size}, not {cols}")
        taps, offset, edge = upsample_geometry(config.upsample_scales)
        dilations = [config.dilation(layer) for layer in range(config.layers)]
        self.config, self.rows, self.cols, self.max_frames = config, rows, cols, max_frames
        self.engine = ResidualEngine(rows, cols, config.residual_channels, config.gate_channels,
                                     config.skip_channels, config.kernel_size, config.hop_size, taps, offset, edge,
                                     max_dilation=max(dilations), max_frames=max_frames, layers=config.layers,
                                     numerics=config.numerics, gate_lanes=gate_lanes)
        self.frontend = PWGFrontEnd(config, rows, cols, max_frames)
        self.max_blocks = max_frames * config.hop_size // cols
        self.store = store
        ports = {}
        if store == "ddr":
            x_row = data.ArrayLayout(signed(config.numerics.act.width), cols)
            skip_row = data.ArrayLayout(signed(self.engine.skip_width), cols)
            r, s = config.residual_channels, config.skip_channels
            self.movers = {"x_reader": MemoryReader(x_row, max_records=self.max_blocks * r),
                           "x_writer": MemoryWriter(x_row, max_records=self.max_blocks * r),
                           "skip_reader": MemoryReader(skip_row, max_records=self.max_blocks * s),
                           "skip_writer": MemoryWriter(skip_row, max_records=self.max_blocks * s)}
            for memory in ("x", "skip"):
                reader, writer = self.movers[f"{memory}_reader"].signature, self.movers[f"{memory}_writer"].signature
                ports |= {f"{memory}_base": In(unsigned(32)), f"{memory}_ar": reader.members["ar"],
                          f"{memory}_r": reader.members["r"], f"{memory}_aw": writer.members["aw"],
                          f"{memory}_w": writer.members["w"], f"{memory}_b": writer.members["b"]}
        super().__init__({
            "frames": In(range(max_frames + 1)),
            "mel": self.frontend.signature.members["mel"],
            "noise": self.frontend.signature.members["noise"],
            "frontend_w": self.frontend.signature.members["weights"],
            "frontend_bias": self.frontend.signature.members["bias"],
            "layer_w": self.engine.signature.members["w"],
            "layer_bias": self.engine.signature.members["bias"],
            "table": self.engine.signature.members["table"],
            "pcm": Out(stream.Signature(frame_layout(signed(PCM_FORMAT.width), cols))),
            "error": Out(1),
            "saturation": Out(config.layers + 2),
            **ports,
        })

    def elaborate(self, platform):
        m = Module()
        cfg, num = self.config, self.config.numerics
        R, S, L, out_ch = cfg.residual_channels, cfg.skip_channels, cfg.layers, cfg.out_channels
        C, hop = self.cols, cfg.hop_size
        m.submodules.frontend = front = self.frontend
        m.submodules.engine = engine = self.engine
        connect(m, flipped(self.noise), front.noise)
        connect(m, flipped(self.frontend_w), front.weights)
        connect(m, flipped(self.frontend_bias), front.bias)
        connect(m, flipped(self.layer_w), engine.w)
        connect(m, flipped(self.layer_bias), engine.bias)
        connect(m, front.cond, engine.cond)

        # The formats frame of the table stream fills the shift registers; then the stream is the table's.
        uniform = PWGFormats.uniform(cfg).shifts(cfg).flat()
        shifts = Signal(data.ArrayLayout(range(MAX_SHIFT + 1), len(uniform)), init=uniform)
        fmt_count = Signal(range(len(uniform) + 1))
        fmt_bad = Signal()
        loading = fmt_count != len(uniform)
        m.d.comb += [engine.table.payload.eq(self.table.payload), engine.table.valid.eq(self.table.valid & ~loading),
                     self.table.ready.eq(loading | engine.table.ready)]
        with m.If(loading & self.table.valid):
            m.d.sync += [shifts[fmt_count].eq(self.table.payload.data[0]), fmt_count.eq(fmt_count + 1)]
            with m.If((self.table.payload.first != (fmt_count == 0))
                      | (self.table.payload.last != (fmt_count == len(uniform) - 1))):
                m.d.sync += fmt_bad.eq(1)
        sh_aux = [shifts[3 + n] for n in range(L)]
        sh_layers = [[shifts[3 + L + 3 * n + k] for n in range(L + 1)] for k in range(3)]  # gate, skip, out
        m.d.comb += [front.shift_conv_in.eq(shifts[0]), front.shift_first.eq(shifts[1])]
        m.d.comb += [front.aux_shifts[n].eq(sh_aux[n]) for n in range(L)]
        # The job's frame count, taken with its first mel beat: `frames` may change for the next job from then on.
        held = Signal.like(self.frames)
        started = Signal()  # this job's first mel beat has been taken
        running = Signal()  # a job's layers run: the next job's mel waits
        frames = Mux(started | running, held, self.frames)
        m.d.comb += front.frames.eq(frames), engine.frames.eq(frames)
        errors = front.error | engine.error | fmt_bad
        ddr = self.store == "ddr"

        x_row = data.ArrayLayout(signed(num.act.width), C)
        skip_row = data.ArrayLayout(signed(engine.skip_width), C)
        if ddr:
            for name, mover in self.movers.items():
                m.submodules[name] = mover
                errors = errors | mover.error
            for memory in ("x", "skip"):
                reader, writer = self.movers[f"{memory}_reader"], self.movers[f"{memory}_writer"]
                connect(m, reader.ar, flipped(getattr(self, f"{memory}_ar")))
                connect(m, flipped(getattr(self, f"{memory}_r")), reader.r)
                for channel in ("aw", "w"):
                    connect(m, getattr(writer, channel), flipped(getattr(self, f"{memory}_{channel}")))
                connect(m, flipped(getattr(self, f"{memory}_b")), writer.b)
            x_rd, x_wr = self.movers["x_reader"], self.movers["x_writer"]
            s_rd, s_wr = self.movers["skip_reader"], self.movers["skip_writer"]
            m.d.comb += [x_wr.done.ready.eq(1), s_wr.done.ready.eq(1)]
            # A block's worth of rows buffered on every stream whose memory traffic comes in bursts: the skip sums
            # read during the gate GEMMs for the 1x1s, and the rows a 1x1 tile emits one per cycle, written at a
            # record per ceil(bits / 64) cycles, so that the DDR does not stall the array.
            skip_in, x_out, s_out = (stream.Signature(record_layout(shape)).create(path=(name,))
                                     for name, shape in (("skip_in", skip_row), ("x_out", x_row),
                                                         ("skip_out", skip_row)))
            _fifo(m, "skip_in", s_rd.records, skip_in, S)
            _fifo(m, "x_out", x_out, x_wr.records, R)
            _fifo(m, "skip_out", s_out, s_wr.records, S)
        else:
            m.submodules.x_mem = x_mem = Memory(shape=x_row, depth=self.max_blocks * R, init=[])
            m.submodules.skip_mem = skip_mem = Memory(shape=skip_row, depth=self.max_blocks * S, init=[])
            x_write, x_read = x_mem.write_port(), x_mem.read_port()
            s_write, s_read = skip_mem.write_port(), skip_mem.read_port()
        m.d.comb += self.error.eq(errors)

        nblocks = Signal(range(self.max_blocks + 1))
        m.d.sync += nblocks.eq(frames * (hop // C))
        layer = Signal(range(L + 1))     # L: the output layer
        is_first, is_final, is_output = layer == 0, layer == L - 1, layer == L

        # The next job's mel only once this job has finished (its last PCM beat has left).
        m.d.comb += [front.mel.valid.eq(self.mel.valid & ~running), self.mel.ready.eq(front.mel.ready & ~running),
                     front.mel.payload.eq(self.mel.payload)]
        with m.If(~started & ~running):
            m.d.sync += held.eq(self.frames)
        with m.If(self.mel.valid & self.mel.ready):
            m.d.sync += started.eq(1)

        # The engine's layer kind: held from the SETUP cycle (one before the first x beat) to the layer's end.
        dilations = Array([cfg.dilation(n) for n in range(L)] + [1])
        m.d.comb += [engine.dilation.eq(dilations[layer]), engine.last.eq(layer >= L - 1),
                     engine.relu.eq(is_output), engine.shift_gate.eq(Array(sh_layers[0])[layer]),
                     engine.shift_skip.eq(Array(sh_layers[1])[layer]), engine.shift_out.eq(Array(sh_layers[2])[layer])]

        # ---- Readers: the x memory into `x`, the skip memory (or zeros) into `skip_in` ------------------------
        def reader(port, read, channels, zero, name):
            """Stream rows (block n, channel ch) of a memory into ``port``, one per cycle; rows for which ``zero``
            (a function of ch) is true are zero."""
            n = Signal(range(self.max_blocks + 1), name=f"{name}_n")
            ch = Signal(range(channels), name=f"{name}_ch")
            valid, blank = Signal(name=f"{name}_valid"), Signal(name=f"{name}_blank")
            first, last = Signal(name=f"{name}_first"), Signal(name=f"{name}_last")
            active = Signal(name=f"{name}_active")
            step = active & (n < nblocks) & (~port.valid | port.ready)
            m.d.comb += [read.en.eq(step), read.addr.eq(n * channels + ch),
                         port.valid.eq(valid), port.payload.first.eq(first), port.payload.last.eq(last),
                         port.payload.data.eq(Mux(blank, 0, read.data.as_value()))]
            with m.If(port.ready | ~port.valid):
                m.d.sync += valid.eq(step)
            with m.If(step):
                m.d.sync += [blank.eq(zero(ch)), first.eq((n == 0) & (ch == 0)),
                             last.eq((n == nblocks - 1) & (ch == channels - 1)), ch.eq(ch + 1)]
                with m.If(ch == channels - 1):
                    m.d.sync += [ch.eq(0), n.eq(n + 1)]
            return active, n, ch

        def dma_source(port, records, channels, read, zero, name):
            """Pass the rows (block n, channel ch) of a reader's ``records`` into ``port`` while ``read``, else
            stream zero rows without reading; rows for which ``zero`` (a function of ch) is true are zero."""
            n = Signal(range(self.max_blocks + 1), name=f"{name}_n")
            ch = Signal(range(channels), name=f"{name}_ch")
            active = Signal(name=f"{name}_active")
            due = active & (n < nblocks)
            m.d.comb += [port.valid.eq(due & (~read | records.valid)),
                         port.payload.data.eq(Mux(read & ~zero(ch), records.payload.data.as_value(), 0)),
                         port.payload.first.eq((n == 0) & (ch == 0)),
                         port.payload.last.eq((n == nblocks - 1) & (ch == channels - 1)),
                         records.ready.eq(due & read & port.ready)]
            with m.If(port.valid & port.ready):
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == channels - 1):
                    m.d.sync += [ch.eq(0), n.eq(n + 1)]
            return active, n, ch

        if ddr:  # layer 0 and the output layer take zeros on skip_in: no skip sum is read for them
            x_active, x_n, x_ch = dma_source(engine.x, x_rd.records, R, 1, lambda ch: is_output & (ch >= S), "xr")
            s_active, s_n, s_ch = dma_source(engine.skip_in, skip_in, S, ~is_first & ~is_output, lambda ch: 0, "sr")
        else:
            x_active, x_n, x_ch = reader(engine.x, x_read, R, lambda ch: is_output & (ch >= S), "xr")
            s_active, s_n, s_ch = reader(engine.skip_in, s_read, S, lambda ch: is_first | is_output, "sr")

        # ---- Writers: x0 and x_next into the x memory, skip_out into the skip memory, h, or PCM -------------
        xw_n = Signal(range(self.max_blocks + 1))
        xw_ch = Signal(range(R))
        sw_n = Signal(range(self.max_blocks + 1))
        sw_ch = Signal(range(S))

        def count(n, ch, channels):
            m.d.sync += ch.eq(ch + 1)
            with m.If(ch == channels - 1):
                m.d.sync += [ch.eq(0), n.eq(n + 1)]

        x0_take = front.x0.valid & front.x0.ready
        xn_take = engine.x_next.valid & engine.x_next.ready
        so_take = engine.skip_out.valid & engine.skip_out.ready
        # h = relu(sqrt(1 / L) * skip sum), as PWGFixed.skip_scale: a constant multiply in adders, narrowed once.
        skips = engine.skip_out.payload.data
        scale = skip_scale_constant(cfg)
        rounded = [round_by(const_multiply(skips[j], scale), shifts[2]) for j in range(C)]
        h_row = Signal(x_row)
        m.d.comb += [h_row[j].eq(Mux(rounded[j] < 0, 0, saturate(rounded[j], num.act))) for j in range(C)]
        to_h = so_take & is_final

        # Saturation flags of the job: the front end's, each layer's (the engine's layer), the output layers'.
        with m.If(self.mel.valid & self.mel.ready & ~started):
            m.d.sync += self.saturation.eq(0)
        with m.Else():
            scale_sat = to_h & Cat(*(saturates(v, num.act) for v in rounded)).any()
            hits = [front.saturated] + [engine.saturated & (layer == n) for n in range(L)]
            hits.append((engine.saturated & is_output) | scale_sat)
            m.d.sync += self.saturation.eq(self.saturation | Cat(*hits))
        in_x0 = Signal()  # the sequencer collects x0
        in_layer = Signal()  # ... or sets up or runs a layer
        pcm_free = ~self.pcm.valid | self.pcm.ready
        if ddr:
            # x0, x_next and h go to the x writer, the skip sums of layers 0 .. L - 2 to the skip writer.
            h_rows = is_final & ~in_x0
            x_source = Mux(in_x0, front.x0.payload.data.as_value(),
                           Mux(h_rows, h_row.as_value(), engine.x_next.payload.data.as_value()))
            m.d.comb += [
                x_out.valid.eq(Mux(in_x0, front.x0.valid, Mux(h_rows, engine.skip_out.valid, engine.x_next.valid))),
                x_out.payload.data.eq(x_source),
                x_out.payload.last.eq(Mux(in_x0, (xw_n == nblocks - 1) & (xw_ch == R - 1),
                                          Mux(h_rows, sw_ch == S - 1, engine.x_next.payload.last))),
                front.x0.ready.eq(in_x0 & x_out.ready),
                engine.x_next.ready.eq(x_out.ready),
                s_out.valid.eq(engine.skip_out.valid & (layer < L - 1)),
                s_out.payload.data.eq(skips),
                s_out.payload.last.eq(engine.skip_out.payload.last),
                engine.skip_out.ready.eq(Mux(is_output, pcm_free, Mux(is_final, x_out.ready, s_out.ready))),
            ]
        else:
            m.d.comb += [
                x_write.en.eq(x0_take | xn_take | to_h),
                x_write.addr.eq(Mux(to_h, sw_n * R + sw_ch, xw_n * R + xw_ch)),
                x_write.data.eq(Mux(to_h, h_row.as_value(), Mux(x0_take, front.x0.payload.data.as_value(),
                                                                  engine.x_next.payload.data.as_value()))),
                s_write.en.eq(so_take & ~is_final & ~is_output),
                s_write.addr.eq(sw_n * S + sw_ch),
                s_write.data.eq(skips),
                front.x0.ready.eq(in_x0),
                engine.x_next.ready.eq(1),
                engine.skip_out.ready.eq(~is_output | pcm_free),
            ]
        with m.If(x0_take | xn_take):
            count(xw_n, xw_ch, R)
        with m.If(so_take):
            count(sw_n, sw_ch, S)

        # The output layer's first out_channels skip rows are the waveform: 16-bit PCM, through a register.
        with m.If(so_take & is_output & (sw_ch < out_ch)):
            m.d.sync += [self.pcm.valid.eq(1), self.pcm.payload.first.eq((sw_n == 0) & (sw_ch == 0)),
                         self.pcm.payload.last.eq((sw_n == nblocks - 1) & (sw_ch == out_ch - 1))]
            m.d.sync += [self.pcm.payload.data[j].eq(narrow(skips[j], num.act.frac, PCM_FORMAT)) for j in range(C)]
        with m.Elif(self.pcm.ready):
            m.d.sync += self.pcm.valid.eq(0)

        # ---- Sequencer ---------------------------------------------------------------------------------------------
        layer_done = (sw_n == nblocks) & ((xw_n == nblocks) | (layer >= L - 1))  # the last layers: no x_next
        restart = [xw_n.eq(0), xw_ch.eq(0), sw_n.eq(0), sw_ch.eq(0), x_n.eq(0), x_ch.eq(0), s_n.eq(0), s_ch.eq(0)]
        x0_last = x0_take & (xw_n == nblocks - 1) & (xw_ch == R - 1)
        begin = []  # what entering a layer does besides `restart`
        if ddr:
            # Each phase's commands: the readers' (one each), the writers' (x: x0, x_next, or h as one command of
            # S rows per block, at the block's place in the x layout), counted with their done beats.
            x_bytes = x_wr.beats_per_record * x_wr.beat_bytes
            commands = {mover: Signal(range(self.max_blocks + 1), name=f"{name}_commands")
                        for name, mover in (("xr", x_rd), ("sr", s_rd), ("xw", x_wr), ("sw", s_wr))}
            dones = {mover: Signal(range(self.max_blocks + 1), name=f"{name}_dones")
                     for name, mover in (("xw", x_wr), ("sw", s_wr))}
            wanted = {x_rd: 1, s_rd: Mux(is_first | is_output, 0, 1),
                      x_wr: Mux(in_x0 | (layer < L - 1), 1, Mux(is_final, nblocks, 0)),
                      s_wr: Mux(~in_x0 & (layer < L - 1), 1, 0)}
            issuing = Signal()  # a phase's commands may go: the layer is set up, or the job's x0 is coming
            m.d.comb += issuing.eq(in_layer | (in_x0 & started))
            for mover, issued in commands.items():
                m.d.comb += mover.cmd.valid.eq(issuing & (issued < wanted[mover]) & ~(in_x0 & (mover is not x_wr)))
                with m.If(mover.cmd.valid & mover.cmd.ready):
                    m.d.sync += issued.eq(issued + 1)
            for mover, done in dones.items():
                with m.If(mover.done.valid):
                    m.d.sync += done.eq(done + 1)
            x_block = Mux(h_rows, commands[x_wr] * (R * x_bytes), 0)
            m.d.comb += [
                x_rd.cmd.payload.addr.eq(self.x_base), x_rd.cmd.payload.count.eq(nblocks * R),
                s_rd.cmd.payload.addr.eq(self.skip_base), s_rd.cmd.payload.count.eq(nblocks * S),
                x_wr.cmd.payload.addr.eq(self.x_base + x_block),
                x_wr.cmd.payload.count.eq(Mux(h_rows, S, nblocks * R)),
                s_wr.cmd.payload.addr.eq(self.skip_base), s_wr.cmd.payload.count.eq(nblocks * S),
            ]
            written = (dones[x_wr] == wanted[x_wr]) & (dones[s_wr] == wanted[s_wr])  # in memory: the next reads
            begin = [sig.eq(0) for sig in (*commands.values(), *dones.values())]
            x0_ready = (xw_n == nblocks) & written
            layer_done = layer_done & written
        with m.FSM(name="sequencer"):
            with m.State("X0"):
                m.d.comb += in_x0.eq(1)
                with m.If(x0_ready if ddr else x0_last):
                    m.d.sync += [layer.eq(0), running.eq(1)] + restart + begin
                    m.next = "LAYER"
            with m.State("LAYER"):
                m.d.comb += [x_active.eq(1), s_active.eq(1), in_layer.eq(1)]
                with m.If(layer_done):
                    m.d.sync += restart + begin
                    with m.If(is_output):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "SETUP"
            with m.State("SETUP"):  # the engine sees the next layer's kind a cycle before its first x beat
                m.d.comb += in_layer.eq(1)
                m.next = "LAYER"
            with m.State("DRAIN"):  # the last PCM beat leaves
                with m.If(~self.pcm.valid | self.pcm.ready):
                    m.d.sync += [running.eq(0), started.eq(0)]
                    m.next = "X0"
        return m
