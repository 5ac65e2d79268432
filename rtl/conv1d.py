"""ParallelWaveGAN residual-layer engine: the whole residual block on the output-stationary systolic array."""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from ..model.kernels import Numerics
from ..model.perf import pwg_gate_lanes, pwg_line_slots, pwg_skip_width
from ..model.pwg import MAX_SHIFT, PWG_NUMERICS
from .activation import Activation, fabric_multiply
from .fixed import const_multiply, narrow, round_by, saturate, saturates, shift_round
from .gemm import frame_layout
from .linebuffer import LineBuffer
from .pipeline import delayed
from .systolic import SystolicArray, check_array

__all__ = ["ResidualEngine"]


def _check_framing(m: Module, port, first: Value, last: Value, bad: Signal) -> None:
    """Raise ``bad`` in a cycle where ``port`` transfers a beat whose ``first`` / ``last`` are not the expected."""
    with m.If(port.valid & port.ready & ((port.payload.first != first) | (port.payload.last != last))):
        m.d.comb += bad.eq(1)


def _bank_loader(m: Module, port, write, data: Value, size: int, beats, run_bank: Signal, restart: Signal,
                 bad: Signal, name: str) -> tuple[Signal, Signal]:
    """Load a layer's ``beats`` words from ``port`` into a memory of two banks of ``size`` words (``write``).

    The loader fills its bank (the running layer's, or the next layer's while one runs; bank ``b`` at words
    ``b * size ...``) and moves to the other bank as soon as its bank is complete and is the bank the layer
    after this cycle's ``restart`` runs on; a complete bank of the next layer waits for the restart. ``beats``
    (at most ``size``) may be a run-time value that holds for the job. Framing is checked against the count.
    Returns ``(bank, count)``: the bank being loaded and its words so far, so the running layer's bank
    (``run_bank``) is complete when ``bank != run_bank``, else has ``count`` words.
    """
    bank = Signal(name=f"{name}_bank")
    count = Signal(range(size + 1), name=f"{name}_count")
    take = port.valid & port.ready
    full = (count == beats) | (take & (count == beats - 1))
    m.d.comb += [port.ready.eq(count < beats), write.en.eq(take), write.addr.eq(Mux(bank, size, 0) + count),
                 write.data.eq(data)]
    _check_framing(m, port, count == 0, count == beats - 1, bad)
    with m.If(full & (bank == (run_bank ^ restart))):
        m.d.sync += [bank.eq(~bank), count.eq(0)]
    with m.Elif(take):
        m.d.sync += count.eq(count + 1)
    return bank, count


class ResidualEngine(wiring.Component):
    """One ParallelWaveGAN residual layer, bit-exact with :func:`wavefabric.model.pwg.residual_layer_fixed` in
    the hardware order (``aux_applied=True``, the aux term upsampled by :class:`~wavefabric.model.pwg.UpsampleTable`).

    For residual input ``x`` (R_ch x T), the layer's frame-rate aux term ``a`` (G x F, ``T = F hop``) and the
    running skip sum ``s`` (S x T), computes ``x_next`` and ``s + skip`` of the layer::

        h      = narrow(conv @ im2col(x, K, d, (K-1)/2 d) + table(a), shift_gate) + conv_bias   # (G, T) act
        g      = narrow(tanh(h[:G/2]) * sigmoid(h[G/2:]))                                 # tables of numerics
        skip   = narrow(skip_w @ g, shift_skip) + skip_bias
        y      = narrow(out_w @ g, shift_out) + out_bias + x  ->  Q(act.width + 1, act.frac)
        x_next = narrow(y * sqrt(0.5))

    (each narrowing rounds half up, the sums saturate once: the model's single narrowing of the sum with the
    biases at the accumulator's scale).

    where ``table(a)[:, n] = sum_d W[row(m), p, d] a[:, m - offset + d]`` (``m = n // hop``, ``p = n % hop``) is
    the upsampler as one table of weights, summed exactly in the gate accumulator.

    **Dataflow.** Time is cut into blocks of C steps (C = ``cols``, a power of two dividing ``hop``, so a block
    lies in one frame); per block the array (rows = output channels, columns = the block's time steps) runs two
    GEMMs: the *gate GEMM* G(n), ``ceil(G / rows)`` tiles of ``K_g = R_ch * K + D`` k-steps, and the *1x1
    GEMM* O(n), ``ceil((S + R_ch) / rows)`` tiles of ``K_o = G / 2`` over the stacked weights ``[skip; out]``.
    The gate GEMM's first ``R_ch * K`` k-steps are the dilated convolution (channel-major taps, ``r * K + k``):
    the im2col operand comes out of a :class:`~wavefabric.rtl.linebuffer.LineBuffer`, tap ``k`` of channel
    ``r`` is the window of time steps ``n C + (k - (K-1)/2) d ...``, an address pattern, with lanes outside
    ``[0, T)`` masked to zero (the non-causal padding). Its last D k-steps are the conditioning: the array's
    weight operand is the aux term of the tile's channels at frame ``m - offset + d`` (zero outside the job),
    its activation operand the table's row for the block's lanes, so the upsampled aux term is never stored.
    The tiles are software-pipelined so that the array never waits for the gate: it runs ``G(0), G(1), O(0),
    G(2), O(1), ..., G(N-1), O(N-2), O(N-1)``, and while G(n+1) is on the array, a ``gate_lanes``-wide gate
    unit (the model's tanh and sigmoid tables, :class:`~wavefabric.rtl.activation.Activation`) turns h(n) into
    g(n). The residual ``x`` of the out 1x1 is the centre tap's operand, captured as it enters the array into a
    FIFO (3 R_ch rows), and added with the out bias at the accumulator's scale before the single narrowing;
    ``sqrt(0.5)`` is a constant multiply in adders.

    **Layer kinds** (``last`` and ``relu``, held like ``frames``): with ``last`` the layer computes no out 1x1
    (``ceil(S / rows)`` 1x1 tiles) and emits no ``x_next`` (the last residual layer). With ``relu`` as well the
    gate unit computes ``g = relu(h[:G/2])``: the generator's output layers ``relu(last1 @ relu(h) + b1)`` then
    ``last2 @ . + b2`` run as such a layer (the weights of ``last1`` at the centre tap, of ``last2`` as skip
    weights, the rest zero), its ``skip_out`` carrying the output when ``skip_in`` is zero.

    **Weights, biases and aux terms** are loaded once per layer into on-chip memory, in the order the array
    reads them, and are double-buffered: while a layer runs on one bank, the next layer's load into the other
    (``w``, ``bias`` and ``cond`` accept them as soon as the running layer's have all arrived), so in a chain of
    layers no layer waits for them. A layer whose weights are still arriving may start as soon as the first word
    is in; its aux terms must all be in. The loaders move to a bank only once the layer that used it has
    finished. The upsampling table is loaded once after reset (``table``).

    **Registered ready paths.** The array's ``o.ready`` comes from a register: a one-row skid register in front
    of the result stage (as in :class:`~wavefabric.rtl.gemm.GemmEngine`) holds a row that the outputs, the
    biases or the residual FIFO cannot take at once, so no input or output stream reaches the array's global
    stall combinationally. It adds no latency.

    **Skip accumulation.** The engine adds its skip into a stream: it takes the running sum ``skip_in`` and
    emits ``skip_out = skip_in + skip`` (exact, :func:`~wavefabric.model.perf.pwg_skip_width` bits, as the
    model's wide sum), so the sum lives wherever ``x`` lives (on chip or in DDR) and no layer's skip is ever
    stored separately; the first layer gets zeros.

    **Stream formats.** Every payload is :func:`~wavefabric.rtl.gemm.frame_layout` (``data`` lanes, ``first``,
    ``last``). Activation-like streams carry a *block row* per beat: for block ``n = 0 .. T / C - 1``, for
    channel ``ch``: lane ``j`` = value at time ``n C + j``. ``first`` / ``last`` mark the first and last beat of
    a layer on every stream. The engine's own counters frame the layer: an input beat whose ``first`` /
    ``last`` disagree with them is used all the same but sets the sticky ``error`` output.

    - ``x``: R_ch rows per block (act). ``skip_in``, ``skip_out``: S rows per block (``signed(skip_width)``).
      ``x_next``: R_ch rows per block (act): the format of ``x``, so a layer's output is the next layer's input.
    - ``w`` (``rows`` lanes, weight): ``ceil(G / rows) * R_ch * K + ceil((S + R_ch) / rows) * G / 2`` beats per
      layer: for each gate tile ``i``, for each ``k < R_ch * K``, lane ``r`` = ``conv.reshape(G, R_ch K)[i rows
      + r, k]``; then for each 1x1 tile, for each ``k < G / 2``, lane ``r`` = ``[skip; out][i rows + r, k]``
      (zero or anything beyond the matrix, and for a ``last`` layer beyond S).
    - ``bias`` (1 lane, act): ``G + S + R_ch`` beats per layer: conv bias, skip bias, out bias.
    - ``cond`` (``rows`` lanes, act): ``F * ceil(G / rows)`` beats per layer: for each frame ``m``, for each
      gate tile ``i``, lane ``r`` = ``a[i rows + r, m]`` (anything beyond G).
    - ``table`` (``cols`` lanes, weight): ``(2 edge + 1) * (hop / C) * D`` beats, once: for each table row, for
      each block ``q`` of the frame, for each ``d < D``, lane ``j`` = ``W[row, q C + j, d]``.

    Parameters
    ----------
    rows, cols : int
        Array size; ``cols`` (time steps per block) must be a power of two dividing ``hop``.
    residual, gate, skip : int
        Channel counts R_ch, G (even), S (each >= 1).
    kernel_size : int
        K, odd (non-causal), >= 1.
    hop : int
        Time steps per frame of the aux term.
    cond_taps, cond_offset, cond_edge : int
        D, ``offset`` and ``edge`` of the :class:`~wavefabric.model.pwg.UpsampleTable` (defaults: ljspeech's).
    max_dilation : int
        Largest dilation; sizes the line buffer (:func:`~wavefabric.model.perf.pwg_line_slots` blocks).
    max_frames : int
        Longest layer in frames (at least ``max(1, 2 cond_edge)``).
    layers : int
        Layers whose skips are summed (sizes ``skip_width``).
    numerics : Numerics
        Formats (default :data:`~wavefabric.model.pwg.PWG_NUMERICS`); ``act`` and ``weight`` of one width (the
        conditioning k-steps swap them between the array's operands).
    gate_lanes : int, optional
        Values per cycle of the gate unit (a power of two dividing ``cols``); default and minimum: the fewest
        that hide the gate under the array (:func:`~wavefabric.model.perf.pwg_gate_lanes`).

    Ports
    -----
    x, skip_in, w, bias, cond, table : In(stream)
    x_next, skip_out : Out(stream)
    frames : In(range(max_frames + 1))
        Frames F of the layer (``T = F hop`` time steps; at least ``max(1, 2 cond_edge)``). The aux terms of
        the next layer are counted with it as they load ahead, so it holds for a job's layers and changes only
        when no word of the next job has been sent.
    dilation : In(range(max_dilation + 1))
        Dilation of the layer (>= 1).
    last, relu : In(1)
        The layer's kind (above). ``frames``, ``dilation``, ``last`` and ``relu`` are held from one cycle before
        a layer's first ``x`` or ``skip_in`` beat until its last output beat; after it the engine takes the
        next layer (whose ``w``, ``bias`` and ``cond`` beats may have arrived already).
    shift_gate, shift_skip, shift_out : In(range(MAX_SHIFT + 1))
        The layer's narrowing shifts (:class:`~wavefabric.model.pwg.LayerShifts`: fractional bits each GEMM drops,
        held like ``dilation``); biases are at their output's format. Reset value ``numerics.weight.frac``: the
        uniform formats.
    error : Out(1)
        Sticky: some input beat carried ``first`` / ``last`` where the engine's counters did not expect them.
    saturated : Out(1)
        High for a cycle when a row of stored values that saturated is taken (skip, ``y`` or ``x_next``; of a
        ``relu`` layer ``h[:G/2]`` saturating high): the model's saturation ``counts`` of the layer are nonzero
        exactly when it pulses.

    Latency and cycle count of a layer: :func:`~wavefabric.model.perf.pwg_layer_cycles`, from an idle engine
    to the layer's last output beat (exact when inputs are always valid and outputs always ready; a layer
    whose weights and aux terms loaded during the previous one takes the count with ``preloaded``, from the
    previous layer's last output).
    """

    def __init__(self, rows: int, cols: int, residual: int = 64, gate: int = 128, skip: int = 64,
                 kernel_size: int = 3, hop: int = 256, cond_taps: int = 5, cond_offset: int = 2,
                 cond_edge: int = 1, max_dilation: int = 512, max_frames: int = 256, layers: int = 30,
                 numerics: Numerics = PWG_NUMERICS, gate_lanes: int | None = None):
        for name, value in (("residual", residual), ("gate", gate), ("skip", skip), ("kernel_size", kernel_size),
                            ("hop", hop), ("cond_taps", cond_taps), ("max_dilation", max_dilation),
                            ("max_frames", max_frames), ("layers", layers)):
            check_int(name, value)
        check_int("cond_offset", cond_offset, lo=0, hi=cond_taps - 1)
        check_int("cond_edge", cond_edge, lo=0)
        if max_frames < max(1, 2 * cond_edge):
            raise ValueError(f"max_frames must be at least max(1, 2 * cond_edge) = {max(1, 2 * cond_edge)}, "
                             f"not {max_frames}")
        if gate % 2:
            raise ValueError(f"gate must be an even integer >= 2 (tanh and sigmoid halves), not {gate}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1 (non-causal), not {kernel_size}")
        if not isinstance(numerics, Numerics):
            raise ValueError(f"numerics must be a Numerics, not {numerics!r}")
        if numerics.act.width != numerics.weight.width:
            raise ValueError(f"numerics: act and weight must have one width (the conditioning k-steps swap them "
                             f"between the array's operands), not {numerics.act.width} and {numerics.weight.width}")
        check_int("cols", cols)
        if cols & (cols - 1) or hop % cols:
            raise ValueError(f"cols must be a power of two dividing hop = {hop}, not {cols}")
        self.k_gate = residual * kernel_size + cond_taps
        self.k_out = gate // 2
        self.max_k = max(self.k_gate, self.k_out)
        check_array(rows, cols, numerics.weight, numerics.act, self.max_k, None)
        least = pwg_gate_lanes(rows, cols, residual, gate, skip, cond_taps, kernel_size)
        if gate_lanes is None:
            gate_lanes = least
        if (isinstance(gate_lanes, bool) or not isinstance(gate_lanes, int) or gate_lanes < least
                or gate_lanes > cols or cols % gate_lanes or gate_lanes & (gate_lanes - 1)):
            raise ValueError(f"gate_lanes must be a power of two from {least} (the fewest that keep up with the "
                             f"array) to cols = {cols}, not {gate_lanes!r}")
        self.rows, self.cols = rows, cols
        self.residual, self.gate, self.skip = residual, gate, skip
        self.kernel_size, self.hop = kernel_size, hop
        self.cond_taps, self.cond_offset, self.cond_edge = cond_taps, cond_offset, cond_edge
        self.max_dilation, self.max_frames, self.layers = max_dilation, max_frames, layers
        self.numerics, self.gate_lanes = numerics, gate_lanes
        self.gate_tiles = -(-gate // rows)
        self.out_tiles = -(-(skip + residual) // rows)
        self.weight_beats = self.gate_tiles * residual * kernel_size + self.out_tiles * self.k_out
        self.bias_beats = gate + skip + residual
        self.table_beats = (2 * cond_edge + 1) * (hop // cols) * cond_taps
        self.slots = pwg_line_slots(cols, kernel_size, max_dilation)
        self.skip_width = pwg_skip_width(numerics.act.width, layers)
        act = signed(numerics.act.width)
        super().__init__({
            "x": In(stream.Signature(frame_layout(act, cols))),
            "skip_in": In(stream.Signature(frame_layout(signed(self.skip_width), cols))),
            "w": In(stream.Signature(frame_layout(signed(numerics.weight.width), rows))),
            "bias": In(stream.Signature(frame_layout(act, 1))),
            "cond": In(stream.Signature(frame_layout(act, rows))),
            "table": In(stream.Signature(frame_layout(signed(numerics.weight.width), cols))),
            "x_next": Out(stream.Signature(frame_layout(act, cols))),
            "skip_out": Out(stream.Signature(frame_layout(signed(self.skip_width), cols))),
            "frames": In(range(max_frames + 1)),
            "dilation": In(range(max_dilation + 1)),
            "last": In(1),
            "relu": In(1),
            # Until a checkpoint's formats are loaded: the uniform formats' shift.
            "shift_gate": In(range(MAX_SHIFT + 1), init=numerics.weight.frac),
            "shift_skip": In(range(MAX_SHIFT + 1), init=numerics.weight.frac),
            "shift_out": In(range(MAX_SHIFT + 1), init=numerics.weight.frac),
            "error": Out(1),
            "saturated": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        num = self.numerics
        act, wfmt = num.act, num.weight
        R, C = self.rows, self.cols
        RC, G, S, K, D = self.residual, self.gate, self.skip, self.kernel_size, self.cond_taps
        half, centre = G // 2, (K - 1) // 2
        log_c = C.bit_length() - 1
        per_frame = self.hop // C  # blocks per frame
        max_blocks = self.max_frames * per_frame
        row = data.ArrayLayout(signed(act.width), C)
        restart = Signal()  # the layer's last output row has been computed: every counter returns to 0
        bad = Signal()      # an input beat's first / last disagree with the engine's count in this cycle
        counters = []

        def counter(shape, name):
            sig = Signal(shape, name=name)
            counters.append(sig)
            return sig

        m.submodules.array = array = SystolicArray(R, C, wfmt, act, max_k=self.max_k)

        # ---- Layer configuration, registered (quasi-static: held during the layer) --------------------------
        nblocks = Signal(range(max_blocks + 1))
        t_steps = Signal(range(max_blocks * C + 1))
        last, relu = self.last, self.relu
        dil = self.dilation
        max_off = centre * self.max_dilation
        off_shape = signed(max_off.bit_length() + 2)
        offs = [Signal(off_shape, name=f"off{k}") for k in range(K)]  # (k - centre) * d
        q_hi = Signal(off_shape)   # G(n) reads blocks n + q_lo .. n + q_hi
        q_lo = Signal(off_shape)
        pad = const_multiply(dil, centre)
        m.d.sync += [nblocks.eq(self.frames * per_frame), t_steps.eq(self.frames * self.hop),
                     q_hi.eq((pad + C - 1) >> log_c), q_lo.eq((-pad) >> log_c)]
        m.d.sync += [offs[k].eq(const_multiply(dil, k - centre)) for k in range(K)]

        # ---- Input writers ------------------------------------------------------------------------------------
        g_done = counter(range(max_blocks + 1), "g_done")  # blocks whose gate GEMM has been issued
        m.submodules.lines = lines = LineBuffer(C, RC, self.slots, act.width)
        x_blk = counter(range(max_blocks + 1), "x_blk")
        x_ch = counter(range(RC), "x_ch")
        x_slot = counter(range(self.slots), "x_slot")
        m.d.comb += self.x.ready.eq((x_blk < nblocks) & (x_blk < g_done + q_lo + self.slots))
        m.d.comb += [lines.w_en.eq(self.x.valid & self.x.ready), lines.w_slot.eq(x_slot), lines.w_ch.eq(x_ch),
                     lines.w_data.eq(self.x.payload.data)]
        _check_framing(m, self.x, (x_blk == 0) & (x_ch == 0), (x_blk == nblocks - 1) & (x_ch == RC - 1), bad)
        with m.If(lines.w_en):
            m.d.sync += x_ch.eq(x_ch + 1)
            with m.If(x_ch == RC - 1):
                m.d.sync += [x_ch.eq(0), x_blk.eq(x_blk + 1), x_slot.eq(Mux(x_slot == self.slots - 1, 0,
                                                                             x_slot + 1))]

        # Weights and biases are double-buffered per layer: bank `run_bank` serves the layer that runs while the
        # other bank loads the next layer's, so back-to-back layers never wait for a weight load.
        run_bank = Signal()
        m.submodules.weights = weights = Memory(shape=self.w.payload.data.shape(), depth=2 * self.weight_beats,
                                                init=[])
        w_write, w_read = weights.write_port(), weights.read_port()
        w_bank, w_count = _bank_loader(m, self.w, w_write, self.w.payload.data, self.weight_beats,
                                       self.weight_beats, run_bank, restart, bad, "w")
        m.submodules.biases = biases = Memory(shape=signed(act.width), depth=2 * self.bias_beats, init=[])
        b_write, b_read = biases.write_port(), biases.read_port(domain="comb")
        b_bank, _ = _bank_loader(m, self.bias, b_write, self.bias.payload.data[0], self.bias_beats,
                                 self.bias_beats, run_bank, restart, bad, "bias")
        # The aux terms of a layer (frame-major, a word of `rows` channels per gate tile), double-buffered too.
        cond_size = self.max_frames * self.gate_tiles
        m.submodules.conds = conds = Memory(shape=self.cond.payload.data.shape(), depth=2 * cond_size, init=[])
        cd_write, cd_read = conds.write_port(), conds.read_port()
        cd_bank, _ = _bank_loader(m, self.cond, cd_write, self.cond.payload.data, cond_size,
                                  self.frames * self.gate_tiles, run_bank, restart, bad, "cond")
        conds_resident = cd_bank != run_bank
        # The upsampling table: loaded once after reset.
        m.submodules.table = table = Memory(shape=row, depth=self.table_beats, init=[])
        tb_write, tb_read = table.write_port(), table.read_port()
        tb_count = Signal(range(self.table_beats + 1))
        m.d.comb += [self.table.ready.eq(tb_count < self.table_beats), tb_write.en.eq(self.table.valid
                                                                                        & self.table.ready),
                     tb_write.addr.eq(tb_count), tb_write.data.eq(self.table.payload.data)]
        _check_framing(m, self.table, tb_count == 0, tb_count == self.table_beats - 1, bad)
        with m.If(tb_write.en):
            m.d.sync += tb_count.eq(tb_count + 1)
        table_loaded = tb_count == self.table_beats
        # The loader moves to the other bank only when its bank is complete and no longer needed.
        w_resident = w_bank != run_bank
        biases_resident = b_bank != run_bank
        with m.If(restart):
            m.d.sync += run_bank.eq(~run_bank)

        h_bits = (half - 1).bit_length()
        m.submodules.gbuf = gbuf = Memory(shape=row, depth=2 << h_bits, init=[])
        g_write, g_read = gbuf.write_port(), gbuf.read_port()

        # ---- Job order: G(0), G(1), O(0), G(2), O(1), ..., G(N-1), O(N-2), O(N-1) ------------------------------
        # A job is (j, phase): phase 0 is G(j), phase 1 is O(j - 1).
        def next_job(j, phase, stepped=lambda: None):
            with m.If(phase == 0):
                with m.If(j != 0):
                    m.d.sync += phase.eq(1)
                with m.Else():
                    m.d.sync += [j.eq(1), phase.eq(nblocks == 1)]
                    stepped()
            with m.Else():
                m.d.sync += [j.eq(j + 1), phase.eq(j + 1 >= nblocks)]
                stepped()

        # ---- Operand sequencer (stage 0: addresses) -------------------------------------------------------------
        gated = counter(range(max_blocks + 1), "gated")  # blocks whose g is complete in gbuf
        j = counter(range(max_blocks + 2), "seq_j")
        phase = counter(1, "seq_phase")
        tile = counter(range(max(self.gate_tiles, self.out_tiles)), "seq_tile")
        kc = counter(range(max(RC, D, half)), "seq_kc")   # channel (x taps), conditioning step d, or 1x1 k
        tap = counter(range(K), "seq_tap")
        in_aux = counter(1, "seq_aux")  # the gate tile's conditioning k-steps
        j_fb = counter(range(self.max_frames + 1), "seq_frame")  # frame of block j
        j_q = counter(range(per_frame), "seq_block_in_frame")  # and its block within the frame
        w_addr = counter(range(self.weight_beats), "seq_w_addr")
        g_slot = counter(range(self.slots), "seq_slot")  # line-buffer slot of block j
        done = counter(1, "seq_done")
        blk = Mux(phase, j - 1, j)

        x_ok = (x_blk > blk + q_hi) | (x_blk == nblocks)
        g_ok = x_ok & conds_resident & table_loaded
        ready0 = ~done & (nblocks != 0) & (w_resident | (w_count > w_addr)) & Mux(phase, gated > blk, g_ok)
        tile_last_k = Mux(phase, kc == half - 1, in_aux & (kc == D - 1))
        skip_tiles = -(-S // R)  # the 1x1 tiles of a `last` layer
        out_tiles = Mux(last, skip_tiles, self.out_tiles)
        tiles = Mux(phase, out_tiles - 1, self.gate_tiles - 1)
        phase_end = tile_last_k & (tile == tiles)

        s1_valid = Signal()
        s1_ready = Signal()
        issue = Signal()
        m.d.comb += issue.eq(ready0 & s1_ready)
        def step_block():
            with m.If(j_q == per_frame - 1):
                m.d.sync += [j_q.eq(0), j_fb.eq(j_fb + 1)]
            with m.Else():
                m.d.sync += j_q.eq(j_q + 1)

        with m.If(issue):
            m.d.sync += kc.eq(kc + 1)
            with m.If(phase | ~in_aux):  # the conditioning k-steps read no weights
                m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(~phase & ~in_aux):
                with m.If(tap != K - 1):
                    m.d.sync += [tap.eq(tap + 1), kc.eq(kc)]
                with m.Else():
                    m.d.sync += tap.eq(0)
                    with m.If(kc == RC - 1):
                        m.d.sync += [kc.eq(0), in_aux.eq(1)]
            with m.If(tile_last_k):
                m.d.sync += [kc.eq(0), in_aux.eq(0), tile.eq(tile + 1)]
                with m.If(phase_end):
                    m.d.sync += tile.eq(0)
                    next_job(j, phase, step_block)
                    # The next phase's first weight: G reads from 0, O after the gate weights.
                    next_is_gate = Mux(phase, j + 1 < nblocks, (j == 0) & (nblocks != 1))
                    m.d.sync += w_addr.eq(Mux(next_is_gate, 0, self.gate_tiles * RC * K))
                    with m.If(~phase):
                        m.d.sync += [g_done.eq(g_done + 1),
                                     g_slot.eq(Mux(g_slot == self.slots - 1, 0, g_slot + 1))]
                    with m.If(phase & (j == nblocks)):
                        m.d.sync += done.eq(1)

        # Memory reads for the k-step being issued; their data is valid in stage 1. A conditioning k-step d reads
        # the aux term at frame j_fb - offset + d (zero outside the job) and the table's row for block j's lanes.
        E = self.cond_edge
        frame = Signal(signed(len(j_fb) + 2))
        row_class = Signal(range(2 * E + 1))
        m.d.comb += frame.eq(j_fb - self.cond_offset + kc)
        if E:  # without edge rows the class is the interior's, 0 (and `j_fb < 0` would be constant: UNSIGNED)
            m.d.comb += row_class.eq(Mux(j_fb < E, j_fb, Mux(j_fb + E >= self.frames, j_fb + 2 * E + 1 - self.frames,
                                                                E)))
        q_k = Array(Signal(off_shape, name=f"q{k}") for k in range(K))
        s_k = Array(Signal(range(C), name=f"s{k}") for k in range(K))
        for k in range(K):
            m.d.comb += [q_k[k].eq(offs[k] >> log_c), s_k[k].eq(offs[k][:log_c] if log_c else 0)]
        base = Signal(signed(len(g_slot) + off_shape.width + 2))
        slot0 = Signal(range(self.slots))
        m.d.comb += base.eq(g_slot + q_k[tap])
        m.d.comb += slot0.eq(Mux(base < 0, base + self.slots, Mux(base >= self.slots, base - self.slots, base)))
        m.d.comb += [
            lines.r_en.eq(s1_ready), lines.r_slot.eq(slot0),
            lines.r_next.eq(Mux(slot0 == self.slots - 1, 0, slot0 + 1)),
            lines.r_shift.eq(s_k[tap]), lines.r_ch.eq(kc),
            cd_read.en.eq(s1_ready), cd_read.addr.eq(Mux(run_bank, cond_size, 0) + frame * self.gate_tiles + tile),
            tb_read.en.eq(s1_ready), tb_read.addr.eq((row_class * per_frame + j_q) * D + kc),
            g_read.en.eq(s1_ready), g_read.addr.eq(Cat(kc[:h_bits], blk[0])),
            w_read.en.eq(s1_ready), w_read.addr.eq(Mux(run_bank, self.weight_beats, 0) + w_addr),
        ]

        # ---- Stage 1: operands into the array ----------------------------------------------------------------
        s1_src = Signal(2)      # 0: line buffer (im2col), 1: conditioning (aux term x table), 2: g buffer
        s1_first, s1_last, s1_capture, s1_inside = Signal(), Signal(), Signal(), Signal()
        s1_time = Signal(signed(len(j) + log_c + off_shape.width + 1))  # time step of lane 0 (line buffer)
        with m.If(s1_ready):
            m.d.sync += s1_valid.eq(issue)
        with m.If(issue):
            first_k = Mux(phase, kc == 0, ~in_aux & (kc == 0) & (tap == 0))
            m.d.sync += [
                s1_src.eq(Mux(phase, 2, Mux(in_aux, 1, 0))),
                s1_first.eq(first_k), s1_last.eq(tile_last_k),
                s1_capture.eq(~phase & ~in_aux & (tile == 0) & (tap == centre) & ~last),
                s1_inside.eq((frame >= 0) & (frame < self.frames)),
                s1_time.eq((blk << log_c) + Array(offs)[tap]),
            ]
        window = Signal(row)
        for lane in range(C):
            time = s1_time + lane
            m.d.comb += window[lane].eq(Mux((time >= 0) & (time < t_steps), lines.r_data[lane], 0))
        b_operand = Mux(s1_src == 0, window, Mux(s1_src == 1, tb_read.data, g_read.data))
        a_operand = Mux(s1_src == 1, Mux(s1_inside, cd_read.data.as_value(), 0), w_read.data.as_value())

        m.submodules.residual = fifo = SyncFIFOBuffered(width=len(window.as_value()), depth=3 * RC)
        transfer = Signal()
        m.d.comb += [
            array.i.valid.eq(s1_valid & (~s1_capture | fifo.w_rdy)),
            array.i.payload.a.eq(a_operand),
            array.i.payload.b.eq(b_operand),
            array.i.payload.first.eq(s1_first),
            array.i.payload.last.eq(s1_last),
            transfer.eq(array.i.valid & array.i.ready),
            s1_ready.eq(~s1_valid | transfer),
            fifo.w_en.eq(transfer & s1_capture),
            fifo.w_data.eq(window.as_value()),
        ]

        # ---- Results: the array's rows, narrowed, routed by the job they belong to -------------------------
        # These counters follow the array's rows, not `restart`: the dropped rows of a partial last 1x1 tile may
        # leave the array after the layer's last output, so they return to 0 with the last row of the layer.
        rj = Signal(range(max_blocks + 2), name="res_j")
        rphase = Signal(name="res_phase")
        rtile = Signal(range(max(self.gate_tiles, self.out_tiles)), name="res_tile")
        rm = Signal(range(max(self.gate_tiles, self.out_tiles) * R), name="res_m")  # output channel of the row
        ending = Signal()  # the layer's last kept row has gone on; the rest of its tile is dropped
        # The layer's kind as its rows leave the array: `last` may change for the next layer while the dropped
        # rows of this one's last tile are still leaving, so it is sampled while no row of the layer has left.
        r_last = Signal(name="res_last")
        with m.If((rj == 0) & ~rphase & (rtile == 0) & (rm == 0)):
            m.d.sync += r_last.eq(last)
        rblk = Mux(rphase, rj - 1, rj)
        o_rows = Mux(r_last, S, S + RC)  # rows of a 1x1 tile that are kept
        keep = Mux(rphase, rm < o_rows, rm < G)
        is_out = rphase & (rm >= S)
        final_row = rphase & (rblk == nblocks - 1) & (rm == o_rows - 1)  # the layer's last kept row
        m.d.comb += b_read.addr.eq(Mux(run_bank, self.bias_beats, 0) + Mux(rphase, G + rm, rm))

        # Result stage 1: the row narrowed by its shift, the bias (and the residual) added after the rounding shift,
        # which equals adding them at the accumulator's scale before it (they are at the output's format).
        wide = QFormat(act.width + 1, act.frac)
        shift = Mux(rphase, Mux(is_out, self.shift_out, self.shift_skip), self.shift_gate)
        # Saturations of stored values: not of a tanh / sigmoid input, and before a relu only the high ones.
        relu_row = ~rphase & relu & (rm < half)
        r1_sat = Signal()
        r1_valid = Signal()
        r1_ready = Signal()
        r1_kind = Signal(2)     # 0: h row, 1: skip row, 2: out row
        r1_ch = Signal(range(max(G, S, RC)))
        r1_slot, r1_first, r1_final, r1_end = Signal(), Signal(), Signal(), Signal()
        r1_data = Signal(data.ArrayLayout(signed(wide.width), C))
        residual = fifo.r_data
        # Skid register, as in GemmEngine: the array sees only registered state on `o.ready`, so neither the
        # output streams nor the bias and residual conditions reach its global stall combinationally. A row that
        # result stage 1 cannot take at once waits here (the array then holds its next row); a row that can go
        # on goes straight from the array, so the skid adds no latency.
        skid_valid = Signal()
        skid = Signal.like(array.o.payload)
        src = Signal.like(array.o.payload)
        src_valid = Signal()
        advance = Signal()  # the row in front of result stage 1 moves on (kept or dropped)
        take = Signal()     # ... and is kept
        m.d.comb += [
            array.o.ready.eq(~skid_valid),
            src_valid.eq(skid_valid | array.o.valid),
            src.eq(Mux(skid_valid, skid.as_value(), array.o.payload.as_value())),
            advance.eq(src_valid & (~keep | (r1_ready & biases_resident & (~is_out | fifo.r_rdy)))),
            take.eq(advance & keep),
            fifo.r_en.eq(take & is_out),
        ]
        with m.If(array.o.valid & ~skid_valid & ~advance):
            m.d.sync += [skid_valid.eq(1), skid.eq(array.o.payload)]
        with m.Elif(advance):
            m.d.sync += skid_valid.eq(0)
        with m.If(r1_ready):
            m.d.sync += r1_valid.eq(take)
        with m.If(take):
            out_rows = rm - S
            m.d.sync += [
                r1_kind.eq(Mux(rphase, Mux(is_out, 2, 1), 0)),
                r1_ch.eq(Mux(is_out, out_rows, rm)),
                r1_slot.eq(rblk[0]),
                r1_first.eq((rblk == 0) & Mux(is_out, rm == S, rm == 0)),
                r1_final.eq(Mux(rphase, (rblk == nblocks - 1) & Mux(is_out, rm == S + RC - 1, rm == S - 1),
                                rm == G - 1)),
                r1_end.eq(final_row),
            ]
            lanes_sat = []
            for lane in range(C):
                x_lane = residual[lane * act.width:(lane + 1) * act.width].as_signed()
                total = round_by(src.data[lane], shift) + b_read.data + Mux(is_out, x_lane, 0)
                m.d.sync += r1_data[lane].eq(Mux(is_out, saturate(total, wide), saturate(total, act)))
                lanes_sat.append(Mux(rphase, Mux(is_out, saturates(total, wide), saturates(total, act)),
                                     relu_row & (total > act.max_int)))
            m.d.sync += r1_sat.eq(Cat(*lanes_sat).any())
        with m.If(advance):
            m.d.sync += [rm.eq(rm + 1)]
            with m.If(src.last):
                m.d.sync += rtile.eq(rtile + 1)
                with m.If(rtile == Mux(rphase, Mux(r_last, skip_tiles, self.out_tiles) - 1, self.gate_tiles - 1)):
                    m.d.sync += [rtile.eq(0), rm.eq(0)]
                    next_job(rj, rphase)
                    with m.If(ending | final_row):
                        m.d.sync += [rj.eq(0), rphase.eq(0), ending.eq(0)]
            with m.Elif(final_row):
                m.d.sync += ending.eq(1)

        # Result stage 2: h rows to the h buffers, skip rows summed into skip_out, out rows scaled to x_next.
        m.submodules.h_a = h_a = Memory(shape=row, depth=2 << h_bits, init=[])
        m.submodules.h_b = h_b = Memory(shape=row, depth=2 << h_bits, init=[])
        ha_write, hb_write = h_a.write_port(), h_b.write_port()
        h_blocks = counter(range(max_blocks + 1), "h_blocks")
        skip_free = ~self.skip_out.valid | self.skip_out.ready
        xn_free = ~self.x_next.valid | self.x_next.ready
        consume = Signal()
        m.d.comb += [
            consume.eq(r1_valid & Mux(r1_kind == 0, 1, Mux(r1_kind == 1, self.skip_in.valid & skip_free, xn_free))),
            r1_ready.eq(~r1_valid | consume),
            self.skip_in.ready.eq(r1_valid & (r1_kind == 1) & skip_free),
            restart.eq(consume & r1_end),
        ]
        _check_framing(m, self.skip_in, r1_first, r1_final, bad)
        h_narrow = Signal(row)
        m.d.comb += [h_narrow[lane].eq(r1_data[lane]) for lane in range(C)]
        # Rows [0, G/2) go to the tanh half, [G/2, G) to the sigmoid half. The first half has no lower bound to
        # compare: r1_ch >= 0 is constant, which Verilator rejects (UNSIGNED).
        for port, lo, in_half in ((ha_write, 0, r1_ch < half), (hb_write, half, (r1_ch >= half) & (r1_ch < G))):
            m.d.comb += [
                port.en.eq(consume & (r1_kind == 0) & in_half),
                port.addr.eq(Cat((r1_ch - lo)[:h_bits], r1_slot)),
                port.data.eq(h_narrow),
            ]
        with m.If(consume & (r1_kind == 0) & r1_final):
            m.d.sync += h_blocks.eq(h_blocks + 1)

        sqrt_half = int(num.gate.quantize(math.sqrt(0.5)))
        with m.If(consume & (r1_kind == 1)):
            m.d.sync += [self.skip_out.valid.eq(1), self.skip_out.payload.first.eq(r1_first),
                         self.skip_out.payload.last.eq(r1_final)]
            for lane in range(C):
                m.d.sync += self.skip_out.payload.data[lane].eq(self.skip_in.payload.data[lane] + r1_data[lane])
        with m.Elif(self.skip_out.ready):
            m.d.sync += self.skip_out.valid.eq(0)
        scaled = [shift_round(const_multiply(r1_data[lane], sqrt_half), num.gate.frac) for lane in range(C)]
        x_next_sat = (r1_kind == 2) & Cat(*(saturates(v, act) for v in scaled)).any()
        m.d.comb += self.saturated.eq(consume & (r1_sat | x_next_sat))
        with m.If(consume & (r1_kind == 2)):
            m.d.sync += [self.x_next.valid.eq(1), self.x_next.payload.first.eq(r1_first),
                         self.x_next.payload.last.eq(r1_final)]
            m.d.sync += [self.x_next.payload.data[lane].eq(saturate(scaled[lane], act)) for lane in range(C)]
        with m.Elif(self.x_next.ready):
            m.d.sync += self.x_next.valid.eq(0)

        # ---- Gate unit: g(n) = tanh(h_a(n)) * sigmoid(h_b(n)) (or relu(h_a(n))), gate_lanes values per cycle ---
        L = self.gate_lanes
        groups = C // L
        ha_read, hb_read = h_a.read_port(), h_b.read_port()
        gi_blk = counter(range(max_blocks + 1), "gate_issue_blk")
        gi_ch = counter(range(half), "gate_ch")
        gi_grp = counter(range(groups), "gate_grp")
        g_issue = Signal()
        m.d.comb += [g_issue.eq(h_blocks > gi_blk),
                     ha_read.addr.eq(Cat(gi_ch[:h_bits], gi_blk[0])), hb_read.addr.eq(Cat(gi_ch[:h_bits], gi_blk[0]))]
        with m.If(g_issue):
            m.d.sync += gi_grp.eq(gi_grp + 1)
            with m.If(gi_grp == groups - 1):
                m.d.sync += [gi_grp.eq(0), gi_ch.eq(gi_ch + 1)]
                with m.If(gi_ch == half - 1):
                    m.d.sync += [gi_ch.eq(0), gi_blk.eq(gi_blk + 1)]

        # Tag of the issued value: (valid, group, row end, block end, channel, slot), aligned to each stage.
        tag = Cat(g_issue, gi_grp, gi_grp == groups - 1, (gi_grp == groups - 1) & (gi_ch == half - 1),
                  gi_ch, gi_blk[0])
        tag1 = delayed(m, tag, 1, "gate_tag")         # the h rows are read
        products = []
        for lane in range(L):
            tanh = Activation(num.tanh)
            sigmoid = Activation(num.sigmoid)
            m.submodules[f"tanh{lane}"], m.submodules[f"sigmoid{lane}"] = tanh, sigmoid
            grp1 = tag1[1:1 + len(gi_grp)]
            m.d.comb += [tanh.x.eq(Array(ha_read.data[g * L + lane] for g in range(groups))[grp1]),
                         sigmoid.x.eq(Array(hb_read.data[g * L + lane] for g in range(groups))[grp1])]
            product = fabric_multiply(m, tanh.y, sigmoid.y, stages=1, name=f"gate{lane}")
            h_in = delayed(m, tanh.x, Activation.latency + 1, f"relu{lane}")
            products.append(Mux(relu, Mux(h_in < 0, 0, h_in), narrow(product, 2 * num.gate.frac, act)))
        tag_end = delayed(m, tag1, Activation.latency + 1, "gate_tag")
        valid_end = tag_end[0]
        row_end = tag_end[1 + len(gi_grp)]
        blk_end = tag_end[2 + len(gi_grp)]
        ch_end = tag_end[3 + len(gi_grp):3 + len(gi_grp) + len(gi_ch)]
        slot_end = tag_end[-1]
        # The row assembles in a shift register, L lanes per cycle, group 0 ending up in lanes 0 .. L - 1.
        g_row = [Signal(signed(act.width), name=f"g_row{lane}") for lane in range(C)]
        shifted = g_row[L:] + products
        with m.If(valid_end):
            m.d.sync += [reg.eq(value) for reg, value in zip(g_row, shifted, strict=True)]
        m.d.comb += [g_write.en.eq(valid_end & row_end), g_write.addr.eq(Cat(ch_end[:h_bits], slot_end))]
        m.d.comb += [g_write.data[lane].eq(shifted[lane]) for lane in range(C)]
        with m.If(valid_end & blk_end):
            m.d.sync += gated.eq(gated + 1)

        with m.If(bad):
            m.d.sync += self.error.eq(1)

        # ---- Next layer: every counter back to 0 (the last statement wins) ------------------------------------
        with m.If(restart):
            m.d.sync += [sig.eq(0) for sig in counters]
        return m
