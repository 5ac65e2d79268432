"""Weight-norm unit: ``w = g * v / ||v||`` per row, in fixed point, as weights are loaded."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..model.fixed import MAX_WIDTH, QFormat, accumulator_width
from ..model.kernels import WEIGHT_NORM_SCALE_EXTRA, RsqrtFormat
from ..model.perf import weightnorm_latency
from .fixed import narrow, shift_round
from .gemm import frame_layout

__all__ = ["WeightNormUnit"]

#: Widest ``v`` and ``g``: v multiplies the row scale on a DSP48E1's 18-bit port; the scale, ``g_width + 8``
#: bits wide, takes the 25-bit port.
MAX_V_WIDTH = 18
MAX_G_WIDTH = 17


def _tree_sum(values: list):
    """Sum of ``values`` as a balanced adder tree (depth ``ceil(log2(len))``, not a chain)."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    return values[0]


class WeightNormUnit(wiring.Component):
    """``w = g * v / ||v||`` per row, bit-exact with :func:`wavefabric.model.kernels.weight_norm`.

    For each row (one output channel; a conv kernel flattened as PyTorch does, ``v.reshape(O, -1)``), with
    ``v`` the row's integers and ``g`` its gain in ``g_fmt``::

        ss     = sum(v**2)                                       exact, accumulator_width(v, v, max_row_length)
        (y, k) = rsqrt(ss)                                       leading-zero normalisation, seed table, Newton
        c      = shift_round(g * y, rsqrt_fmt.frac - 6)          the row scale, 6 fractional bits beyond g's
        w      = narrow(v * c, g_fmt.frac + 6 + k/2 -> out_fmt)  round half up, saturate (rtl.fixed.narrow)

    A row of zeros (``ss = 0``) gives zeros and sets the sticky ``zero_row`` flag.

    **Dataflow.** Pass 1 takes ``lanes`` elements of ``v`` per cycle: the beat is written to a row buffer (a
    ``lib.memory`` FIFO of beats) and its squares are summed into the row's accumulator. At the row's last beat
    the sum of squares and ``g`` enter the reciprocal-square-root pipeline (fully pipelined, one row per
    cycle: priority encoder, barrel shift, seed ROM, three multiplies per Newton step, the scale by ``g``),
    whose result is queued. Pass 2 reads the buffered beats of the oldest row once its scale is queued,
    multiplies every lane by it and narrows. The two passes run concurrently on different rows, so the steady
    state is one beat (``lanes`` elements) per cycle for any row length, down to one-beat rows.

    The per-row shift ``k/2`` of the narrowing is applied as an exact arithmetic right shift by
    ``g_fmt.frac + 5 - out_fmt.frac + k/2`` followed by the shared :func:`wavefabric.rtl.fixed.narrow` of one
    bit: ``floor((p + 2**(s-1)) / 2**s) == floor((floor(p / 2**(s-1)) + 1) / 2)``, so the rounding is the
    model's. That needs ``s >= 1`` for every non-zero row, hence the constraint on ``out_fmt.frac``.

    **Streams.** Payloads ``v`` and ``w`` are :func:`wavefabric.rtl.gemm.frame_layout` (``data`` lanes plus
    ``first`` / ``last``).

    - ``v`` (``lanes`` x ``signed(v_width)``): the rows one after the other, each in ``ceil(row_length /
      lanes)`` beats, element ``j`` of a row in lane ``j mod lanes`` of beat ``j // lanes``. Lanes past the end
      of a row in its last beat are ignored. ``first`` / ``last`` are not interpreted: they travel with their
      beat to ``w`` (so a DMA's TLAST framing passes through).
    - ``g`` (``signed(g_fmt.width)``): one beat per row, in row order; it is taken together with the row's last
      ``v`` beat (which waits for it).
    - ``w`` (``lanes`` x ``signed(out_fmt.width)``): one beat per ``v`` beat, in the same order and framing,
      lanes past the end of a row zero.

    Parameters
    ----------
    max_row_length : int
        Longest row (elements), >= 1. Sizes the accumulator (it cannot overflow) and the row buffer.
    lanes : int
        Elements of ``v`` per beat, from 1 to ``max_row_length``. It need not divide the row length: a row's
        last beat may be partial.
    v_width : int
        Width of ``v``'s integers, 2 to 18 (their scale cancels, so only the width matters).
    g_fmt : QFormat
        Format of ``g``; width 2 to 17 so that the row scale (``g_fmt.width + 8`` bits) fits a DSP48E1's 25-bit
        port.
    out_fmt : QFormat
        Format of ``w`` (default the engines' weight format Q2.14); ``out_fmt.frac <= g_fmt.frac + 5``.
    rsqrt_fmt : RsqrtFormat
        The reciprocal square root's parameters (mantissa, seed table, result bits, Newton steps).
    g_frac_max : int, optional
        With it, ``g``'s fractional bits are chosen per row at run time on the ``g_frac`` port, from
        ``g_fmt.frac`` (the fewest: ``g_fmt`` is then the widest-range format) to ``g_frac_max`` (from
        ``g_fmt.frac`` to ``g_fmt.frac + 64``). A float loader picks one ``g`` format per tensor
        (:func:`~wavefabric.model.kernels.weight_norm_operands`), so tensors of different formats can follow
        back to back. ``g``'s format only moves the final shift: it costs a wider shift, nothing else.

    Ports
    -----
    v, g : In(stream)
        Rows and gains, as above.
    w : Out(stream)
        Normalised rows, as above.
    row_length : In(range(1, max_row_length + 1))
        Elements per row, 1 to ``max_row_length`` (other values give undefined results); may change between
        rows (it must hold from a row's first ``v`` beat to its last).
        The buffered rows keep their own length, so tensors of different shapes can follow back to back.
    zero_row : Out(1)
        Sticky: some row had ``||v|| = 0`` (its ``w`` are zeros). Raised when the row's norm is computed.
    clear : In(1)
        Clears ``zero_row`` (a zero row found in the same cycle sets it again). Reset clears it too.
    g_frac : In(range(g_fmt.frac, g_frac_max + 1))
        Only with ``g_frac_max``: the fractional bits of the ``g`` beat being offered, sampled with it (drive it
        with ``g``'s payload). Each row is then bit-exact with ``weight_norm(v, g, QFormat(g_fmt.width,
        g_frac), out_fmt)``. Other values give undefined results.

    Attributes
    ----------
    latency : int
        Cycles from the transfer of a row's last ``v`` beat to its first ``w`` beat being valid, when the row
        buffer's output is idle: ``10 + 3 * rsqrt_fmt.newton_steps`` (4 for the sum of squares, 3 for
        normalisation and seed, 3 per Newton step, 1 to queue the scale, 3 for read, multiply, narrow).
    beats_per_row_max, buffer_depth, scale_depth : int
        ``ceil(max_row_length / lanes)``; the row buffer's depth in beats (a power of two >= ``beats_per_row_max
        + latency - 3``) and the scale queue's depth (a power of two > ``latency - 3``). These depths keep the
        input from ever stalling while ``w`` is ready and ``g`` valid.

    Cycles: a tensor of ``R`` rows of ``n`` elements, fed back to back from an idle unit with ``g`` valid and
    ``w`` ready, takes :func:`wavefabric.model.perf.weightnorm_cycles` ``= R * b + b + latency - 1`` cycles
    from its first ``v`` beat to its last ``w`` transfer inclusive, ``b = ceil(n / lanes)``.

    Error: against float ``g * v / ||v||`` on the same integers, each element of ``w`` is within 6.7e-5 of its
    row's norm ``|g|`` (0.87 LSB of Q2.14) over 32,000 random rows of 1 to 64 elements with norms from 1 to
    2**18 and ``|g|`` in [0.5, 1.8] (``tests/test_weightnorm.py``; the RTL is bit-exact with the model). The
    half-LSB output rounding dominates; the rsqrt adds at most 1.5e-5 relative. Through the float loader
    (:func:`~wavefabric.model.kernels.quantize_weight_norm`, which adds the quantisation of ``g`` and ``v``),
    the SampleRNN seed configuration's weight-normed tensors are within 1.03 LSB of float
    (``benchmarks/weightnorm.py``).
    """

    def __init__(self, max_row_length: int, lanes: int = 1, v_width: int = 16, g_fmt: QFormat = QFormat(16, 12),
                 out_fmt: QFormat = QFormat(16, 14), rsqrt_fmt: RsqrtFormat = RsqrtFormat(),
                 g_frac_max: int | None = None):
        if isinstance(max_row_length, bool) or not isinstance(max_row_length, int) or max_row_length < 1:
            raise ValueError(f"max_row_length must be an integer >= 1, not {max_row_length!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= max_row_length:
            raise ValueError(f"lanes must be an integer from 1 to max_row_length = {max_row_length}, not {lanes!r}")
        if isinstance(v_width, bool) or not isinstance(v_width, int) or not 2 <= v_width <= MAX_V_WIDTH:
            raise ValueError(f"v_width must be an integer from 2 to {MAX_V_WIDTH} (a DSP48E1 18-bit port), "
                             f"not {v_width!r}")
        if not isinstance(g_fmt, QFormat) or g_fmt.width > MAX_G_WIDTH:
            raise ValueError(f"g_fmt must be a QFormat of width 2 to {MAX_G_WIDTH} (the row scale, width + 8 "
                             f"bits, must fit a DSP48E1 25-bit port), not {g_fmt!r}")
        if not isinstance(out_fmt, QFormat) or out_fmt.frac > g_fmt.frac + WEIGHT_NORM_SCALE_EXTRA - 1:
            raise ValueError(f"out_fmt must be a QFormat with frac from 0 to g_fmt.frac + "
                             f"{WEIGHT_NORM_SCALE_EXTRA - 1} = {g_fmt.frac + WEIGHT_NORM_SCALE_EXTRA - 1}, "
                             f"not {out_fmt!r}")
        if not isinstance(rsqrt_fmt, RsqrtFormat):
            raise ValueError(f"rsqrt_fmt must be an RsqrtFormat, not {rsqrt_fmt!r}")
        if g_frac_max is not None and (isinstance(g_frac_max, bool) or not isinstance(g_frac_max, int)
                                       or not g_fmt.frac <= g_frac_max <= g_fmt.frac + 64):
            raise ValueError(f"g_frac_max must be None or an integer from g_fmt.frac = {g_fmt.frac} to "
                             f"{g_fmt.frac + 64}, not {g_frac_max!r}")
        v_fmt = QFormat(v_width, 0)
        acc_width = accumulator_width(v_fmt, v_fmt, max_row_length)
        if acc_width > MAX_WIDTH:
            raise ValueError(f"max_row_length = {max_row_length} needs a {acc_width}-bit sum of squares for "
                             f"{v_width}-bit v, more than {MAX_WIDTH}: max_row_length must be at most "
                             f"{((1 << (MAX_WIDTH - 1)) - 1) // (v_fmt.min_int ** 2)}")
        self.max_row_length, self.lanes, self.v_width = max_row_length, lanes, v_width
        self.g_fmt, self.out_fmt, self.rsqrt_fmt, self.g_frac_max = g_fmt, out_fmt, rsqrt_fmt, g_frac_max
        # The sum of squares is non-negative: its sign bit is dropped.
        self.ss_width = acc_width - 1
        self.max_half_k = -(-(max_row_length * v_fmt.min_int ** 2).bit_length() // 2)
        self.latency = weightnorm_latency(rsqrt_fmt.newton_steps)
        # Cycles from a row's last v transfer until pass 2 may read the row (its scale is queued).
        self._issue_delay = self.latency - 3
        self.beats_per_row_max = -(-max_row_length // lanes)
        self.buffer_depth = 1 << ceil_log2(self.beats_per_row_max + self._issue_delay)
        self.scale_depth = 1 << ceil_log2(self._issue_delay + 1)
        ports = {
            "v": In(stream.Signature(frame_layout(signed(v_width), lanes))),
            "g": In(stream.Signature(signed(g_fmt.width))),
            "w": Out(stream.Signature(frame_layout(signed(out_fmt.width), lanes))),
            "row_length": In(range(1, max_row_length + 1)),
            "zero_row": Out(1),
            "clear": In(1),
        }
        if g_frac_max is not None:
            ports["g_frac"] = In(range(g_fmt.frac, g_frac_max + 1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        lanes, rf = self.lanes, self.rsqrt_fmt
        f, mant = rf.frac, rf.mant_bits
        extra = WEIGHT_NORM_SCALE_EXTRA
        c_shape = signed(self.g_fmt.width + 8)
        # Right shift before the one-bit narrowing: s - 1 with s = g.frac + 6 + k/2 - out.frac (>= 1 for k >= 2).
        shift_base = self.g_fmt.frac + extra - 1 - self.out_fmt.frac
        g_frac_span = 0 if self.g_frac_max is None else self.g_frac_max - self.g_fmt.frac
        beat_index = unsigned(max(1, ceil_log2(self.beats_per_row_max)))
        scale_layout = data.StructLayout({
            "c": c_shape,
            "shift": range(shift_base + g_frac_span + self.max_half_k + 1),
            "last_beat": beat_index,
        })

        m.submodules.buffer = buffer = memory.Memory(shape=self.v.payload.shape(), depth=self.buffer_depth,
                                                     init=[])
        buf_w = buffer.write_port()
        buf_r = buffer.read_port()
        m.submodules.scales = scales = memory.Memory(shape=scale_layout, depth=self.scale_depth, init=[])
        sc_w = scales.write_port()
        sc_r = scales.read_port(domain="comb")
        m.submodules.seeds = seeds = memory.Memory(shape=unsigned(f + 2), depth=1 << rf.seed_bits,
                                                   init=rf.seed_table.tolist())
        seed_r = seeds.read_port()

        buf_count = Signal(range(self.buffer_depth + 1))   # beats written, not yet read by pass 2
        reserved = Signal(range(self.scale_depth + 1))     # rows ended in pass 1, not yet finished by pass 2
        scale_count = Signal(range(self.scale_depth + 1))  # scales queued
        wr_ptr = Signal(range(self.buffer_depth))
        rd_ptr = Signal(range(self.buffer_depth))
        sc_wr = Signal(range(self.scale_depth))
        sc_rd = Signal(range(self.scale_depth))

        # ---- Pass 1: take a beat, buffer it, square and sum it --------------------------------------------
        pos = Signal(range(self.max_row_length + lanes))  # element index of lane 0 within the row
        in_beat = Signal(beat_index)
        end_of_row = pos + lanes >= self.row_length
        room = buf_count < self.buffer_depth
        credit = reserved < self.scale_depth
        accept = Signal()
        m.d.comb += [
            self.v.ready.eq(room & (~end_of_row | (self.g.valid & credit))),
            self.g.ready.eq(self.v.valid & room & end_of_row & credit),
            accept.eq(self.v.valid & self.v.ready),
        ]
        masked = [Mux(pos + i < self.row_length, self.v.payload.data[i], 0) for i in range(lanes)]
        m.d.comb += [
            buf_w.addr.eq(wr_ptr),
            buf_w.en.eq(accept),
            buf_w.data.first.eq(self.v.payload.first),
            buf_w.data.last.eq(self.v.payload.last),
        ]
        m.d.comb += [buf_w.data.data[i].eq(masked[i]) for i in range(lanes)]
        with m.If(accept):
            m.d.sync += [wr_ptr.eq(wr_ptr + 1), pos.eq(pos + lanes), in_beat.eq(in_beat + 1)]
            with m.If(end_of_row):
                m.d.sync += [pos.eq(0), in_beat.eq(0)]

        # Row bookkeeping travels down the pipeline with the squares: the row-end marker, g, the beat count.
        sq_valid, sq_end = Signal(), Signal()
        sq_g = Signal.like(self.g.payload)
        sq_last = Signal(beat_index)
        squares = [Signal(unsigned(2 * self.v_width - 1), name=f"square{i}") for i in range(lanes)]
        m.d.sync += [sq_valid.eq(accept), sq_end.eq(accept & end_of_row), sq_g.eq(self.g.payload),
                     sq_last.eq(in_beat)]
        m.d.sync += [squares[i].eq(masked[i] * masked[i]) for i in range(lanes)]

        tree_valid, tree_end = Signal(), Signal()
        tree_g = Signal.like(sq_g)
        tree_last = Signal(beat_index)
        tree = Signal(self.ss_width)
        m.d.sync += [tree_valid.eq(sq_valid), tree_end.eq(sq_end), tree_g.eq(sq_g), tree_last.eq(sq_last),
                     tree.eq(_tree_sum(list(squares)))]

        acc = Signal(self.ss_width)
        ss_valid = Signal()
        ss = Signal(self.ss_width)
        ss_g = Signal.like(sq_g)
        ss_last = Signal(beat_index)
        m.d.sync += [ss_valid.eq(tree_valid & tree_end), ss.eq(acc + tree), ss_g.eq(tree_g), ss_last.eq(tree_last)]
        with m.If(tree_valid):
            m.d.sync += acc.eq(Mux(tree_end, 0, acc + tree))

        # ---- Reciprocal square root, one row per cycle --------------------------------------------------
        # Normalise: k = bit length of ss rounded up to even (a priority encoder), kept as h = k / 2.
        bits = Signal(range(self.ss_width + 1))
        for i in range(self.ss_width):
            with m.If(ss[i]):
                m.d.comb += bits.eq(i + 1)
        n_valid = Signal()
        n_ss = Signal.like(ss)
        half_k = Signal(range(self.max_half_k + 1))
        n_g = Signal.like(sq_g)
        n_last = Signal(beat_index)
        m.d.sync += [n_valid.eq(ss_valid), n_ss.eq(ss), half_k.eq((bits + 1) >> 1), n_g.eq(ss_g),
                     n_last.eq(ss_last)]
        with m.If(ss_valid & (bits == 0)):
            m.d.sync += self.zero_row.eq(1)
        with m.Elif(self.clear):
            m.d.sync += self.zero_row.eq(0)

        # m = ss / 2**k in [1/4, 1) with mant_bits fractional bits, truncated: (ss << mant) >> k.
        mant_valid = Signal()
        mant_m = Signal(mant)
        mant_h = Signal.like(half_k)
        mant_g = Signal.like(sq_g)
        mant_last = Signal(beat_index)
        shifted = (Cat(Const(0, mant), n_ss) >> Cat(Const(0, 1), half_k))[:mant]
        m.d.sync += [mant_valid.eq(n_valid), mant_m.eq(shifted), mant_h.eq(half_k), mant_g.eq(n_g),
                     mant_last.eq(n_last)]

        def delay(valid, row_m, row_h, row_g, row_last):
            """One pipeline register for a row's bookkeeping."""
            regs = (Signal(), Signal(mant), Signal.like(half_k), Signal.like(sq_g), Signal(beat_index))
            m.d.sync += [reg.eq(value) for reg, value in zip(regs, (valid, row_m, row_h, row_g, row_last),
                                                             strict=True)]
            return regs

        # Seed from the table, indexed by m's top seed_bits bits (the ROM's read register is the stage).
        m.d.comb += seed_r.addr.eq(mant_m[mant - rf.seed_bits:])
        row = delay(mant_valid, mant_m, mant_h, mant_g, mant_last)
        y = seed_r.data

        # Newton steps y <- y (3 - m y**2) / 2, every product rounded half up. For a non-zero row y stays below
        # 2**(f+1) + 2 and 3 - m y**2 positive (tests/test_weightnorm.py checks every mantissa), so unsigned
        # f + 2 / f + 3 bit registers are exact; a zero row's y may wrap, harmlessly: its v are zeros.
        for step in range(rf.newton_steps):
            y2 = Signal(f + 3, name=f"y2_{step}")
            y_a = Signal(f + 2, name=f"y_a{step}")
            m.d.sync += [y2.eq(shift_round(y * y, f)), y_a.eq(y)]
            row = delay(*row)
            my2 = Signal(f + 3, name=f"my2_{step}")
            y_b = Signal(f + 2, name=f"y_b{step}")
            m.d.sync += [my2.eq(shift_round(row[1] * y2, mant)), y_b.eq(y_a)]
            row = delay(*row)
            y = Signal(f + 2, name=f"y_{step + 1}")
            m.d.sync += y.eq(shift_round(y_b * ((3 << f) - my2), f + 1))
            row = delay(*row)
        stage_valid, _, stage_h, stage_g, stage_last = row
        shift = shift_base + stage_h
        if self.g_frac_max is not None:
            # The pipeline from pass 1 to here never stalls: a row reaches this stage latency - 4 cycles after its
            # last v beat (and g) was taken, so g's run-time format follows it on a delay line of that length.
            g_frac_offset = self.g_frac - self.g_fmt.frac
            for n in range(self.latency - 4):
                stage = Signal(range(g_frac_span + 1), name=f"g_frac_offset_d{n + 1}")
                m.d.sync += stage.eq(g_frac_offset)
                g_frac_offset = stage
            shift = shift + g_frac_offset

        # The row scale c = g * y with 6 fractional bits beyond g's, queued with its shift and beat count.
        m.d.comb += [
            sc_w.addr.eq(sc_wr),
            sc_w.en.eq(stage_valid),
            sc_w.data.c.eq(shift_round(stage_g * y, f - extra)),
            sc_w.data.shift.eq(shift),
            sc_w.data.last_beat.eq(stage_last),
        ]
        with m.If(stage_valid):
            m.d.sync += sc_wr.eq(sc_wr + 1)

        # ---- Pass 2: read the oldest row, scale, narrow ----------------------------------------------------
        advance = ~self.w.valid | self.w.ready   # the three output stages move together
        issue = advance & (scale_count != 0)
        head = sc_r.data
        out_beat = Signal(beat_index)
        row_done = issue & (out_beat == head.last_beat)
        m.d.comb += [sc_r.addr.eq(sc_rd), buf_r.addr.eq(rd_ptr), buf_r.en.eq(advance)]
        with m.If(issue):
            m.d.sync += [rd_ptr.eq(rd_ptr + 1), out_beat.eq(out_beat + 1)]
        with m.If(row_done):
            m.d.sync += [sc_rd.eq(sc_rd + 1), out_beat.eq(0)]

        read_valid = Signal()
        read_c = Signal(c_shape)
        read_shift = Signal.like(head.shift)
        prod_valid, prod_first, prod_last = Signal(), Signal(), Signal()
        prod_shift = Signal.like(head.shift)
        prods = [Signal(signed(self.v_width + c_shape.width), name=f"product{i}") for i in range(lanes)]
        with m.If(advance):
            m.d.sync += [
                read_valid.eq(issue), read_c.eq(head.c), read_shift.eq(head.shift),
                prod_valid.eq(read_valid), prod_first.eq(buf_r.data.first), prod_last.eq(buf_r.data.last),
                prod_shift.eq(read_shift),
                self.w.valid.eq(prod_valid), self.w.payload.first.eq(prod_first),
                self.w.payload.last.eq(prod_last),
            ]
            m.d.sync += [prods[i].eq(buf_r.data.data[i] * read_c) for i in range(lanes)]
            m.d.sync += [self.w.payload.data[i].eq(narrow(prods[i] >> prod_shift, self.out_fmt.frac + 1,
                                                          self.out_fmt))
                         for i in range(lanes)]

        # ---- Occupancy counters -----------------------------------------------------------------------------
        m.d.sync += [
            buf_count.eq(buf_count + accept - issue),
            reserved.eq(reserved + (accept & end_of_row) - row_done),
            scale_count.eq(scale_count + stage_valid - row_done),
        ]
        return m
