"""GEMM engine: ``C = narrow(A @ B + bias)`` of any size, tiled onto the output-stationary systolic array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from .fixed import narrow, rounding_offset
from .systolic import SystolicArray, check_array

__all__ = ["GemmEngine", "frame_layout"]


def frame_layout(shape, lanes: int) -> data.StructLayout:
    """Payload of every GEMM stream: ``data`` (``lanes`` values of ``shape``), ``first``, ``last``."""
    return data.StructLayout({"data": data.ArrayLayout(shape, lanes), "first": 1, "last": 1})


class GemmEngine(wiring.Component):
    """``C = narrow(A @ B + bias)`` for ``A``: M x K weights, ``B``: K x N activations, on an R x C array.

    Bit-exact with :func:`wavefabric.model.kernels.linear` ``(A, B, bias, Numerics(act=act, weight=weight),
    out)``: products and sums are exact, ``bias`` (act units) is added at the accumulator's scale, and the
    result is narrowed once by the shared rule (round half up, saturate; :func:`wavefabric.rtl.fixed.narrow`),
    the rounding constant folded into the bias term.

    **Tiling.** The output is cut into tiles of R rows x C columns, taken row-block by row-block:
    ``for m0 in range(0, M, R): for n0 in range(0, N, C)``; each tile runs the full reduction over K on the
    array, and tiles follow each other without bubbles (see ``tile_period`` of the array: ``max(K, R, C)``
    cycles per tile). Partial tiles at the M and N edges are padded by the sender; their extra rows are dropped
    and their extra columns sent as zeros.

    **Streams.** Every payload is :func:`frame_layout`: ``data`` lanes plus ``first`` / ``last`` marking the
    first and last beat of one GEMM (a DMA's TLAST). Beats with the wrong ``first`` / ``last`` still count (the
    engine's own counters frame the work) but set the sticky ``error`` output.

    - ``a`` (R lanes of ``signed(weight.width)``): one beat per tile and k-step, in tile order then k order:
      lane ``i`` = ``A[m0 + i, k]`` (don't-care where ``m0 + i >= M``). The weight block is sent again for
      every tile of its row-block (``ceil(N / C)`` times).
    - ``b`` (C lanes of ``signed(act.width)``): paired with ``a`` beat for beat: lane ``j`` = ``B[k, n0 + j]``
      (don't-care where ``n0 + j >= N``). ``a`` and ``b`` transfer together.
    - ``bias`` (R lanes of ``signed(bias_width)``, act units): one beat per row-block, lane ``i`` =
      ``bias[m0 + i]``, taken when the block's first result row leaves (so it may arrive any time before).
    - ``c`` (C lanes of ``signed(out.width)``): one beat per output row of each tile, in tile order:
      lane ``j`` = ``C[m0 + r, n0 + j]`` (zero where ``n0 + j >= N``); rows ``m0 + r >= M`` are not sent,
      so a GEMM has ``ceil(N / C) * M`` result beats.

    **Registered ready paths.** The array's ``o.ready`` comes from a register: a one-row skid register in front of
    the result stage holds a row that ``c`` or ``bias`` cannot take at once (the array then waits on it). So no
    input (``c.ready``, ``bias.valid``) reaches the array's global stall combinationally; ``a.ready`` and
    ``b.ready`` depend only on registered state, ``k`` and the other operand's ``valid``. The skid register
    adds no latency: a row that can go on goes straight from the array to the result stage.

    Parameters
    ----------
    rows, cols : int
        Array size R x C.
    weight, act : QFormat
        Operand formats (their widths must fit one 25 x 18 DSP48E1 multiplier).
    out : QFormat, optional
        Result format (default ``act``).
    bias_width : int, optional
        Width of the signed bias in act units (default ``act.width``).
    max_m, max_n, max_k : int
        Largest sizes the configuration ports hold; ``max_k`` also sizes the accumulators.
    acc_width : int, optional
        Accumulator width, passed to :class:`~wavefabric.rtl.systolic.SystolicArray`.

    Ports
    -----
    a, b, bias : In(stream)
        Operands, as above.
    c : Out(stream)
        Results, as above.
    m, n, k : In(unsigned)
        GEMM sizes (each >= 1), held constant from a GEMM's first operand beat until its last result beat.
    error : Out(1)
        Sticky: some operand beat carried ``first`` / ``last`` where the counters did not expect them.

    Attributes
    ----------
    array : SystolicArray
    latency : int
        Cycles from the transfer of a tile's last k-step to its first result row being valid on ``c``
        (``cols + 5``). Cycle count of a whole GEMM: :func:`wavefabric.model.perf.gemm_cycles`.
    """

    def __init__(self, rows: int, cols: int, weight: QFormat = QFormat(16, 14), act: QFormat = QFormat(16, 12),
                 out: QFormat | None = None, bias_width: int | None = None, max_m: int = 4096,
                 max_n: int = 65536, max_k: int = 4096, acc_width: int | None = None):
        check_array(rows, cols, weight, act, max_k, acc_width)
        self.out = act if out is None else out
        if not isinstance(self.out, QFormat):
            raise ValueError(f"out must be a QFormat, not {self.out!r}")
        self.bias_width = check_int("bias_width", act.width if bias_width is None else bias_width, lo=2)
        self.max_m = check_int("max_m", max_m)
        self.max_n = check_int("max_n", max_n)
        self.array = SystolicArray(rows, cols, weight, act, max_k=max_k, acc_width=acc_width)
        self.rows, self.cols, self.weight, self.act, self.max_k = rows, cols, weight, act, max_k
        self.latency = self.array.latency + 1
        super().__init__({
            "a": In(stream.Signature(frame_layout(signed(weight.width), rows))),
            "b": In(stream.Signature(frame_layout(signed(act.width), cols))),
            "bias": In(stream.Signature(frame_layout(signed(self.bias_width), rows))),
            "c": Out(stream.Signature(frame_layout(signed(self.out.width), cols))),
            "m": In(range(max_m + 1)),
            "n": In(range(max_n + 1)),
            "k": In(range(max_k + 1)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = self.array
        rows, cols = self.rows, self.cols

        # Operand side: join a and b, count k-steps and tiles, mark the array's tile boundaries.
        kk = Signal.like(self.k)
        m0 = Signal.like(self.m)
        n0 = Signal.like(self.n)
        end_k = kk == self.k - 1
        end_n = n0 + cols >= self.n
        end_m = m0 + rows >= self.m
        gemm_first = (kk == 0) & (n0 == 0) & (m0 == 0)
        gemm_last = end_k & end_n & end_m
        m.d.comb += [
            array.i.valid.eq(self.a.valid & self.b.valid),
            array.i.payload.a.eq(self.a.payload.data),
            array.i.payload.b.eq(self.b.payload.data),
            array.i.payload.first.eq(kk == 0),
            array.i.payload.last.eq(end_k),
            self.a.ready.eq(array.i.ready & self.b.valid),
            self.b.ready.eq(array.i.ready & self.a.valid),
        ]
        bad = Signal()
        with m.If(array.i.valid & array.i.ready):
            m.d.sync += kk.eq(kk + 1)
            with m.If(end_k):
                m.d.sync += [kk.eq(0), n0.eq(n0 + cols)]
                with m.If(end_n):
                    m.d.sync += [n0.eq(0), m0.eq(m0 + rows)]
                    with m.If(end_m):
                        m.d.sync += m0.eq(0)
            for operand in (self.a, self.b):
                with m.If((operand.payload.first != gemm_first) | (operand.payload.last != gemm_last)):
                    m.d.comb += bad.eq(1)

        # Result side: its own counters, as results lag the operands by the array's latency.
        row = Signal(range(rows))
        m0_out = Signal.like(self.m)
        n0_out = Signal.like(self.n)
        row_m = m0_out + row
        keep = row_m < self.m
        need_bias = (n0_out == 0) & (row == 0)
        bias_reg = Signal.like(self.bias.payload.data)
        bias_row = Signal.like(self.bias.payload.data)
        m.d.comb += bias_row.eq(bias_reg)
        with m.If(need_bias):
            m.d.comb += bias_row.eq(self.bias.payload.data)

        # Skid register: the array sees only registered state on `o.ready` (no top-level input reaches its
        # global stall combinationally). A row the result stage cannot take at once waits here; while it waits,
        # the array holds its next row. Rows are read from the skid first, else straight from the array.
        skid_valid = Signal()
        skid_data = Signal(data.ArrayLayout(signed(array.acc_width), cols))
        skid_last = Signal()
        src_valid = Signal()
        src_data = Signal(data.ArrayLayout(signed(array.acc_width), cols))
        src_last = Signal()
        m.d.comb += [
            src_valid.eq(skid_valid | array.o.valid),
            src_data.eq(Mux(skid_valid, skid_data.as_value(), array.o.payload.data.as_value())),
            src_last.eq(Mux(skid_valid, skid_last, array.o.payload.last)),
            array.o.ready.eq(~skid_valid),
        ]

        c_valid = Signal()
        take = Signal()
        stage_ready = ~self.c.valid | self.c.ready
        m.d.comb += [
            take.eq(src_valid & (~keep | (stage_ready & (~need_bias | self.bias.valid)))),
            self.bias.ready.eq(src_valid & need_bias & stage_ready),
            self.c.valid.eq(c_valid),
        ]
        with m.If(array.o.valid & ~skid_valid & ~take):
            m.d.sync += [skid_valid.eq(1), skid_data.eq(array.o.payload.data), skid_last.eq(array.o.payload.last)]
        with m.Elif(take):
            m.d.sync += skid_valid.eq(0)
        with m.If(self.bias.valid & self.bias.ready):
            m.d.sync += bias_reg.eq(self.bias.payload.data)
            bias_first, bias_last = m0_out == 0, m0_out + rows >= self.m
            with m.If((self.bias.payload.first != bias_first) | (self.bias.payload.last != bias_last)):
                m.d.comb += bad.eq(1)
        with m.If(bad):
            m.d.sync += self.error.eq(1)

        with m.If(take):
            m.d.sync += row.eq(row + 1)
            with m.If(src_last):
                m.d.sync += [row.eq(0), n0_out.eq(n0_out + cols)]
                with m.If(n0_out + cols >= self.n):
                    m.d.sync += [n0_out.eq(0), m0_out.eq(m0_out + rows)]
                    with m.If(m0_out + rows >= self.m):
                        m.d.sync += m0_out.eq(0)

        # Narrowing: the bias, shifted to the accumulator's scale, carries the rounding constant.
        acc_frac = self.weight.frac + self.act.frac
        offset = rounding_offset(acc_frac, self.out)
        bias_term = Signal(signed(max(self.bias_width + self.weight.frac, offset.bit_length() + 1) + 1))
        m.d.comb += bias_term.eq((bias_row[row] << self.weight.frac) + offset)
        with m.If(take & keep):
            m.d.sync += [
                c_valid.eq(1),
                self.c.payload.first.eq((m0_out == 0) & (n0_out == 0) & (row == 0)),
                self.c.payload.last.eq((n0_out + cols >= self.n) & (row_m == self.m - 1)),
            ]
            for j in range(cols):
                value = narrow(src_data[j] + bias_term, acc_frac, self.out, add_offset=False)
                m.d.sync += self.c.payload.data[j].eq(Mux(n0_out + j < self.n, value, 0))
        with m.Elif(self.c.ready):
            m.d.sync += c_valid.eq(0)
        return m
