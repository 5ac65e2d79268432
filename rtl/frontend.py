"""ParallelWaveGAN front end: conv_in, first_conv and every layer's frame-rate aux 1x1 on one multiplier."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat, accumulator_width
from ..model.pwg import MAX_SHIFT, PWGConfig
from .conv1d import _check_framing
from .fixed import round_by, saturate, saturates
from .gemm import frame_layout
from .systolic import DSP_ACC_WIDTH, check_multiplier

__all__ = ["PWGFrontEnd"]

# What a MAC computes (the tag's ``kind``): an f value, an x0 value or an aux term (a cond lane).
_CONV_IN, _FIRST_CONV, _AUX = 0, 1, 2


class PWGFrontEnd(wiring.Component):
    """Everything of :meth:`~wavefabric.model.pwg.PWGFixed.forward` but the residual layers, on one DSP48E1.

    Per job of F frames (``T = F hop`` samples), bit-exact with the model's functions::

        f    = frame_conditioning(mel)            # conv_in: A (2w+1) products -> act, (A, F)
        x0   = linear(first_conv, z, first_bias)  # in_channels products -> act, (R, T)
        a_l  = linear(layers[l].aux, f, None)     # A products -> act, (G, F), for l = 0 .. L-1

    then one more layer of zero aux terms (the output layers run on the residual engine as a last layer without
    conditioning). Every output is one exact accumulation narrowed once by its run-time shift (round half up,
    :func:`~wavefabric.rtl.fixed.round_by`), the bias (at the output's format) added, then saturated: the
    model's single narrowing with the bias at the accumulator's scale.

    **Order and storage.** The mel (``A (F + 2w)`` values) is loaded into a memory. conv_in runs row by row:
    row ``a``'s ``A (2w+1)`` weights are applied to every frame, frame 0 taking them from the stream as they
    arrive (and keeping them), the later frames from the kept row; f goes to an ``A x max_frames`` memory.
    first_conv keeps its ``R x in_channels`` weights and R biases, and per block of C samples loads the block's
    noise (``in_channels`` beats), then computes its R rows of C values, channel-major, each row leaving as one
    ``x0`` beat. Per layer, the aux 1x1 runs frame-major (for frame m: for channel g: for a), so that
    consecutive outputs fill the lanes of a ``cond`` word (gate tile by gate tile), which leaves as soon as it
    is full: frame 0 takes the layer's ``G x A`` weights from the stream as they arrive (and keeps them), the
    later frames read them back. Layer 0's computation starts in the cycle after the last ``x0`` beat has been
    taken, every later layer's (and the next job's mel load) in the cycle after the previous layer's last
    ``cond`` word has been taken, so a layer's timing depends only on when its own words are taken.

    **Pipeline.** One multiply-accumulate per cycle: operands read (memories, the weight stream), operand
    registers, product register, accumulator (DSP48E1 A/B, M and P registers), narrowing into the output word.
    A word that finds its output register still full stalls the whole pipeline until the register is taken.

    **Streams.** Every payload is :func:`~wavefabric.rtl.gemm.frame_layout` (``data`` lanes, ``first``,
    ``last``); ``first`` / ``last`` mark a job's first and last beat of the stream (of a layer on ``cond``). An
    input beat whose ``first`` / ``last`` disagree with the unit's counters is used all the same but sets the
    sticky ``error``.

    - ``mel`` (1 lane, act): ``A (F + 2w)`` beats, frame-major: for frame m, for channel a: ``mel[a, m]``.
    - ``weights`` (1 lane, weight): per job ``A * A (2w+1)`` conv_in weights (the rows of
      ``conv_in.reshape(A, -1)``), ``R in_channels`` first_conv weights (row-major), then per layer l the
      ``G A`` weights of ``layers[l].aux`` (row-major).
    - ``bias`` (1 lane, act): R beats per job, ``first_bias``.
    - ``noise`` (C lanes, act): block rows: for block n, for channel i: lane j = ``z[i, n C + j]``.
    - ``x0`` (C lanes, act): block rows: for block n, for channel r: lane j = ``x0[r, n C + j]``.
    - ``cond`` (``rows`` lanes, act): for each of the L + 1 layers, for frame m, for gate tile i: lane r =
      ``a_l[i rows + r, m]`` (zero beyond G; all zero in the last layer): the residual engine's ``cond``.

    Parameters
    ----------
    config : PWGConfig
        Sizes and formats (A, R, G, in_channels, w, hop, L, numerics).
    rows : int
        Lanes of a ``cond`` word: the residual engine's array rows.
    cols : int
        Lanes of a ``noise`` / ``x0`` beat: the residual engine's columns, a power of two dividing hop.
    max_frames : int
        Longest job in frames (>= 2); sizes the mel and f memories.

    Ports
    -----
    frames : In(range(max_frames + 1))
        F of the job (2 to ``max_frames``), held from one cycle before its first ``mel`` beat until its last
        ``cond`` word has been taken.
    mel, weights, bias, noise : In(stream)
    x0, cond : Out(stream)
    shift_conv_in, shift_first : In(range(MAX_SHIFT + 1))
        conv_in's and first_conv's narrowing shifts (:class:`~wavefabric.model.pwg.PWGShifts`), held for a job.
    aux_shifts : In(data.ArrayLayout(range(MAX_SHIFT + 1), layers))
        Each layer's aux 1x1 shift, held for a job.
    error : Out(1)
        Sticky: some input beat carried ``first`` / ``last`` where the unit's counters did not expect them.
    saturated : Out(1)
        High for a cycle when a value of f, x0 or an aux term saturates as it is narrowed.

    Latency and cycle count: :func:`~wavefabric.model.perf.pwg_frontend_timing` (a whole job, from an idle unit
    with inputs always valid and outputs always ready) and :func:`~wavefabric.model.perf.pwg_frontend_layer_cycles`
    (one layer's ``cond`` words, from its start). An output value leaves 5 cycles after its last
    multiply-accumulate is issued.
    """

    def __init__(self, config: PWGConfig, rows: int, cols: int, max_frames: int):
        if not isinstance(config, PWGConfig):
            raise ValueError(f"config must be a PWGConfig, not {config!r}")
        check_int("rows", rows)
        check_int("cols", cols)
        hop = config.hop_size
        if cols & (cols - 1) or hop % cols:
            raise ValueError(f"cols must be a power of two dividing hop = {hop}, not {cols}")
        check_int("max_frames", max_frames, lo=2)
        num = config.numerics
        check_multiplier(num.weight, num.act)
        window = config.aux_context_window
        self.reduction = config.aux_channels * (2 * window + 1)
        longest = max(self.reduction, config.in_channels, config.aux_channels)
        # The accumulator starts from the bias (act) plus the rounding constant (less than one act LSB).
        self.acc_width = accumulator_width(num.act, num.weight, longest, QFormat(num.act.width + 1, num.act.frac))
        if self.acc_width > DSP_ACC_WIDTH:
            raise ValueError(f"config: a reduction of {longest} products needs a {self.acc_width}-bit accumulator, "
                             f"more than the DSP48E1's {DSP_ACC_WIDTH}")
        self.config, self.rows, self.cols, self.max_frames = config, rows, cols, max_frames
        self.gate_tiles = -(-config.gate_channels // rows)
        act = signed(num.act.width)
        super().__init__({
            "frames": In(range(max_frames + 1)),
            "mel": In(stream.Signature(frame_layout(act, 1))),
            "weights": In(stream.Signature(frame_layout(signed(num.weight.width), 1))),
            "bias": In(stream.Signature(frame_layout(act, 1))),
            "noise": In(stream.Signature(frame_layout(act, cols))),
            "x0": Out(stream.Signature(frame_layout(act, cols))),
            "cond": Out(stream.Signature(frame_layout(act, rows))),
            # Until a checkpoint's formats are loaded: the uniform formats' shift.
            "shift_conv_in": In(range(MAX_SHIFT + 1), init=num.weight.frac),
            "shift_first": In(range(MAX_SHIFT + 1), init=num.weight.frac),
            "aux_shifts": In(data.ArrayLayout(range(MAX_SHIFT + 1), config.layers),
                             init=[num.weight.frac] * config.layers),
            "error": Out(1),
            "saturated": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, num = self.config, self.config.numerics
        act, wfmt = num.act, num.weight
        A, R, G, I, L = (cfg.aux_channels, cfg.residual_channels, cfg.gate_channels, cfg.in_channels,
                         cfg.layers)
        taps = 2 * cfg.aux_context_window + 1
        J, C, rows, tiles = self.reduction, self.cols, self.rows, self.gate_tiles
        per_frame = cfg.hop_size // C   # blocks of C samples per frame
        mel_frames = self.max_frames + taps - 1
        F = self.frames
        act_t = signed(act.width)

        m.submodules.mel_mem = mel_mem = Memory(shape=act_t, depth=A * mel_frames, init=[])
        m.submodules.f_mem = f_mem = Memory(shape=act_t, depth=A * self.max_frames, init=[])
        # One weight memory for the conv_in row, the first_conv weights and a layer's aux weights, in turn.
        m.submodules.w_mem = w_mem = Memory(shape=signed(wfmt.width), depth=max(J, R * I, G * A), init=[])
        m.submodules.bias_mem = bias_mem = Memory(shape=act_t, depth=R, init=[])
        m.submodules.noise_mem = noise_mem = Memory(shape=data.ArrayLayout(act_t, C), depth=I, init=[])
        mel_w, mel_r = mel_mem.write_port(), mel_mem.read_port()
        f_w, f_r = f_mem.write_port(), f_mem.read_port()
        w_w, w_r = w_mem.write_port(), w_mem.read_port()
        bias_w, bias_r = bias_mem.write_port(), bias_mem.read_port()
        noise_w, noise_r = noise_mem.write_port(), noise_mem.read_port()

        # A MAC's tag, from issue to the narrowing: what it computes and where its result goes.
        tag_layout = data.StructLayout({
            "valid": 1, "kind": 2, "zero": 1, "w_stream": 1, "first": 1, "last": 1, "word_end": 1,
            "out_first": 1, "out_last": 1, "lane": range(max(rows, C)), "r": range(R), "shift": range(MAX_SHIFT + 1),
            "f_addr": range(A * self.max_frames),
        })
        issue = Signal(tag_layout)           # the tag entering the pipeline this cycle (valid low: a bubble)
        tags = [Signal(tag_layout, name=f"tag{n}") for n in range(1, 5)]
        advance = Signal()                   # low: an output word waits for its register; everything holds
        bad = Signal()

        # ---- Issue stage: the job's sequence, one MAC (or load, or zero word) per cycle ---------------------
        frame = Signal(range(mel_frames))        # frame of the mel load, conv_in, the block, the layer
        fbase = Signal(range(A * mel_frames))    # frame * A
        chan = Signal(range(max(A, R, G) + 1))   # output channel (mel: channel; first_conv load: biases)
        red = Signal(range(max(J, I, A)))        # reduction index (noise load: channel)
        run = Signal(range(max(A * mel_frames, R * I + 1, G * A)))  # mel / weight address
        lane = Signal(range(max(rows, C)))       # lane of the output word
        tile = Signal(range(tiles))
        blk = Signal(range(per_frame))           # block of the frame (first_conv)
        layer = Signal(range(L + 2))             # L: the zero layer, L + 1: the job's last word is out
        ap = Signal(range(A))                    # conv_in: input channel a' and tap k of the reduction index
        k = Signal(range(taps))
        ka = Signal(range(J))                    # k * A
        w_q = Signal(signed(wfmt.width))         # the weight beat taken with the MAC in stage 1
        expect = {name: (Signal(name=f"{name}_first"), Signal(name=f"{name}_last"))
                  for name in ("mel", "weights", "bias", "noise")}
        take = {name: getattr(self, name).valid & getattr(self, name).ready for name in expect}
        w_in = self.weights.payload.data[0]

        with m.If(advance):
            m.d.sync += w_q.eq(w_in)
        m.d.comb += [
            mel_r.addr.eq(fbase + ap + ka), mel_r.en.eq(advance),
            f_r.addr.eq(fbase + red), f_r.en.eq(advance),
            w_r.addr.eq(Mux(issue.kind == _FIRST_CONV, run + red, Mux(issue.kind == _CONV_IN, red, run))),
            w_r.en.eq(advance),
            noise_r.addr.eq(red), noise_r.en.eq(advance),
            w_w.data.eq(w_in), mel_w.data.eq(self.mel.payload.data[0]),
            bias_w.data.eq(self.bias.payload.data[0]), noise_w.data.eq(self.noise.payload.data),
            mel_w.addr.eq(run), bias_w.addr.eq(chan), noise_w.addr.eq(red),
        ]

        def word_sent(port) -> Value:
            return port.valid & port.ready & port.payload.last

        with m.FSM(name="phase"):
            with m.State("MEL"):
                go = advance & self.mel.valid
                m.d.comb += [self.mel.ready.eq(advance), mel_w.en.eq(take["mel"]),
                             expect["mel"][0].eq(run == 0),
                             expect["mel"][1].eq((chan == A - 1) & (frame == F + taps - 2))]
                with m.If(go):
                    m.d.sync += [run.eq(run + 1), chan.eq(chan + 1)]
                    with m.If(chan == A - 1):
                        m.d.sync += [chan.eq(0), frame.eq(frame + 1)]
                        with m.If(frame == F + taps - 2):
                            m.d.sync += [frame.eq(0), run.eq(0)]
                            m.next = "CONV_IN"

            with m.State("CONV_IN"):
                # Row chan of conv_in on frame `frame`; frame 0 takes the row's weights from the stream.
                from_stream = frame == 0
                go = advance & (~from_stream | self.weights.valid)
                m.d.comb += [
                    self.weights.ready.eq(advance & from_stream),
                    w_w.en.eq(take["weights"]), w_w.addr.eq(red),
                    expect["weights"][0].eq((chan == 0) & (red == 0)),
                    issue.valid.eq(go), issue.kind.eq(_CONV_IN), issue.w_stream.eq(from_stream),
                    issue.shift.eq(self.shift_conv_in),
                    issue.first.eq(red == 0), issue.last.eq(red == J - 1), issue.f_addr.eq(fbase + chan),
                ]
                with m.If(go):
                    m.d.sync += [red.eq(red + 1), k.eq(k + 1), ka.eq(ka + A)]
                    with m.If(k == taps - 1):
                        m.d.sync += [k.eq(0), ka.eq(0), ap.eq(ap + 1)]
                    with m.If(red == J - 1):
                        m.d.sync += [red.eq(0), ap.eq(0), frame.eq(frame + 1), fbase.eq(fbase + A)]
                        with m.If(frame == F - 1):
                            m.d.sync += [frame.eq(0), fbase.eq(0), chan.eq(chan + 1)]
                            with m.If(chan == A - 1):
                                m.d.sync += chan.eq(0)
                                m.next = "FIRST_LOAD"

            with m.State("FIRST_LOAD"):
                # first_conv's weights (run counts them) and biases (chan counts them), side by side.
                w_done = (run == R * I) | (take["weights"] & (run == R * I - 1))
                b_done = (chan == R) | (take["bias"] & (chan == R - 1))
                m.d.comb += [
                    self.weights.ready.eq(advance & (run != R * I)), w_w.en.eq(take["weights"]), w_w.addr.eq(run),
                    self.bias.ready.eq(advance & (chan != R)), bias_w.en.eq(take["bias"]),
                    expect["bias"][0].eq(chan == 0), expect["bias"][1].eq(chan == R - 1),
                ]
                with m.If(take["weights"]):
                    m.d.sync += run.eq(run + 1)
                with m.If(take["bias"]):
                    m.d.sync += chan.eq(chan + 1)
                with m.If(advance & w_done & b_done):
                    m.d.sync += [run.eq(0), chan.eq(0)]
                    m.next = "NOISE"

            with m.State("NOISE"):
                m.d.comb += [
                    self.noise.ready.eq(advance), noise_w.en.eq(take["noise"]),
                    expect["noise"][0].eq((frame == 0) & (blk == 0) & (red == 0)),
                    expect["noise"][1].eq((frame == F - 1) & (blk == per_frame - 1) & (red == I - 1)),
                ]
                with m.If(take["noise"]):
                    m.d.sync += red.eq(red + 1)
                    with m.If(red == I - 1):
                        m.d.sync += red.eq(0)
                        m.next = "FIRST_CONV"

            with m.State("FIRST_CONV"):
                # Block (frame, blk): for channel chan, lane, input channel red. run = chan * I.
                block_end = (chan == R - 1) & (lane == C - 1) & (red == I - 1)
                m.d.comb += [
                    issue.valid.eq(advance), issue.kind.eq(_FIRST_CONV), issue.r.eq(chan), issue.lane.eq(lane),
                    issue.shift.eq(self.shift_first),
                    issue.first.eq(red == 0), issue.last.eq(red == I - 1),
                    issue.word_end.eq((red == I - 1) & (lane == C - 1)),
                    issue.out_first.eq((frame == 0) & (blk == 0) & (chan == 0)),
                    issue.out_last.eq((frame == F - 1) & (blk == per_frame - 1) & (chan == R - 1)),
                ]
                with m.If(advance):
                    m.d.sync += red.eq(red + 1)
                    with m.If(red == I - 1):
                        m.d.sync += [red.eq(0), lane.eq(lane + 1)]
                        with m.If(lane == C - 1):
                            m.d.sync += [lane.eq(0), chan.eq(chan + 1), run.eq(run + I)]
                    with m.If(block_end):
                        m.d.sync += [chan.eq(0), run.eq(0), blk.eq(blk + 1)]
                        m.next = "NOISE"
                        with m.If(blk == per_frame - 1):
                            m.d.sync += [blk.eq(0), frame.eq(frame + 1)]
                            with m.If(frame == F - 1):
                                m.d.sync += frame.eq(0)
                                m.next = "WAIT"

            with m.State("AUX"):
                # Layer `layer`, frame `frame`: channel chan (lane of tile), input channel red; run = chan * A + red.
                from_stream = frame == 0
                go = advance & (~from_stream | self.weights.valid)
                g_end = red == A - 1
                m.d.comb += [
                    self.weights.ready.eq(advance & from_stream),
                    w_w.en.eq(take["weights"]), w_w.addr.eq(run),
                    expect["weights"][1].eq((layer == L - 1) & (chan == G - 1) & g_end),
                    issue.valid.eq(go), issue.kind.eq(_AUX), issue.w_stream.eq(from_stream), issue.lane.eq(lane),
                    issue.shift.eq(self.aux_shifts[layer[:max(1, (L - 1).bit_length())]]),
                    issue.first.eq(red == 0), issue.last.eq(g_end),
                    issue.word_end.eq(g_end & ((lane == rows - 1) | (chan == G - 1))),
                    issue.out_first.eq((frame == 0) & (tile == 0)),
                    issue.out_last.eq((frame == F - 1) & (chan == G - 1)),
                ]
                with m.If(go):
                    m.d.sync += [red.eq(red + 1), run.eq(run + 1)]
                    with m.If(g_end):
                        m.d.sync += [red.eq(0), chan.eq(chan + 1), lane.eq(lane + 1)]
                        with m.If(lane == rows - 1):
                            m.d.sync += [lane.eq(0), tile.eq(tile + 1)]
                        with m.If(chan == G - 1):
                            m.d.sync += [chan.eq(0), lane.eq(0), tile.eq(0), run.eq(0), frame.eq(frame + 1),
                                         fbase.eq(fbase + A)]
                            with m.If(frame == F - 1):
                                m.d.sync += [frame.eq(0), fbase.eq(0), layer.eq(layer + 1)]
                                m.next = "WAIT"

            with m.State("ZERO"):
                m.d.comb += [
                    issue.valid.eq(advance), issue.kind.eq(_AUX), issue.zero.eq(1), issue.last.eq(1),
                    issue.word_end.eq(1), issue.out_first.eq((frame == 0) & (tile == 0)),
                    issue.out_last.eq((frame == F - 1) & (tile == tiles - 1)),
                ]
                with m.If(advance):
                    m.d.sync += tile.eq(tile + 1)
                    with m.If(tile == tiles - 1):
                        m.d.sync += [tile.eq(0), frame.eq(frame + 1)]
                        with m.If(frame == F - 1):
                            m.d.sync += [frame.eq(0), layer.eq(layer + 1)]
                            m.next = "WAIT"

            with m.State("WAIT"):
                # The previous stream's last word is still on its way: x0's before layer 0, else the layer's.
                with m.If(Mux(layer == 0, word_sent(self.x0), word_sent(self.cond))):
                    with m.If(layer == L):
                        m.next = "ZERO"
                    with m.Elif(layer == L + 1):
                        m.d.sync += layer.eq(0)
                        m.next = "MEL"
                    with m.Else():
                        m.next = "AUX"

        for name, (first, last) in expect.items():
            _check_framing(m, getattr(self, name), first, last, bad)

        # ---- Stage 1: operands (memory reads of the issue cycle) into the DSP48E1's A and B registers --------
        s1, s2, s3, s4 = tags
        with m.If(advance):
            m.d.sync += [s1.eq(issue), s2.eq(s1), s3.eq(s2), s4.eq(s3)]
        a_reg = Signal(signed(wfmt.width))
        b_reg = Signal(act_t)
        noise_lane = noise_r.data[s1.lane]
        with m.If(advance):
            m.d.sync += [
                a_reg.eq(Mux(s1.w_stream, w_q, w_r.data)),
                b_reg.eq(Mux(s1.kind == _CONV_IN, mel_r.data, Mux(s1.kind == _FIRST_CONV, noise_lane, f_r.data))),
            ]

        # ---- Stage 2: product (M register); the bias of the MAC is read for stage 3 -------------------------
        product = Signal(signed(wfmt.width + act.width))
        with m.If(advance):
            m.d.sync += product.eq(a_reg * b_reg)
        m.d.comb += [bias_r.addr.eq(s2.r), bias_r.en.eq(advance)]

        # ---- Stage 3: accumulator (P register); the bias of a first_conv value waits beside it ---------------
        acc = Signal(signed(self.acc_width))
        bias = Signal(act_t)
        with m.If(advance & s3.valid):
            m.d.sync += acc.eq(Mux(s3.first, 0, acc) + product)
        with m.If(advance):
            m.d.sync += bias.eq(Mux(s3.kind == _FIRST_CONV, bias_r.data, 0))

        # ---- Stage 4: narrowed by the value's shift, the bias (at the output's format) added after the shift ----
        value = Signal(act_t)
        total = round_by(acc, s4.shift) + bias
        m.d.comb += value.eq(saturate(total, act))
        done = advance & s4.valid & s4.last
        m.d.comb += self.saturated.eq(done & ~s4.zero & saturates(total, act))
        m.d.comb += [f_w.en.eq(done & (s4.kind == _CONV_IN)), f_w.addr.eq(s4.f_addr), f_w.data.eq(value)]
        waits = Signal()
        for name, kind, lanes in (("x0", _FIRST_CONV, C), ("cond", _AUX, rows)):
            port = getattr(self, name)
            # The word assembles lane by lane; it is cleared as it leaves, so lanes beyond G stay zero.
            assembly = Signal(data.ArrayLayout(act_t, lanes), name=f"{name}_word")
            ours = s4.valid & s4.last & (s4.kind == kind)
            with m.If(ours & s4.word_end & port.valid & ~port.ready):
                m.d.comb += waits.eq(1)
            with m.If(advance & ours):
                m.d.sync += assembly[s4.lane].eq(value)
            with m.If(advance & ours & s4.word_end):
                m.d.sync += [port.valid.eq(1), port.payload.first.eq(s4.out_first),
                             port.payload.last.eq(s4.out_last), assembly.eq(0)]
                for n in range(lanes):
                    m.d.sync += port.payload.data[n].eq(Mux(s4.zero, 0, Mux(s4.lane == n, value, assembly[n])))
            with m.Elif(port.ready):
                m.d.sync += port.valid.eq(0)
        m.d.comb += advance.eq(~waits)

        with m.If(bad):
            m.d.sync += self.error.eq(1)
        return m
