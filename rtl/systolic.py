"""Output-stationary systolic array: R x C multiply-accumulate cells, operands streamed in, sums streamed out."""

from __future__ import annotations

from amaranth.hdl import Array, EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat, accumulator_width
from .pe import PeControl, ProcessingElement
from .pipeline import delayed

__all__ = ["SystolicArray", "check_array", "check_multiplier", "DSP_MULTIPLIER", "DSP_ACC_WIDTH"]

#: Operand widths of one DSP48E1 signed multiplier (A port x B port).
DSP_MULTIPLIER = (25, 18)
#: Width of the DSP48E1 P register, the widest accumulator that stays inside the DSP.
DSP_ACC_WIDTH = 48


def check_multiplier(weight: QFormat, act: QFormat) -> None:
    """Raise ``ValueError`` unless a weight-by-activation product fits one DSP48E1 multiplier (25 x 18)."""
    for name, fmt in (("weight", weight), ("act", act)):
        if not isinstance(fmt, QFormat):
            raise ValueError(f"{name} must be a QFormat, not {fmt!r}")
    big, small = DSP_MULTIPLIER
    if weight.width > big:
        raise ValueError(f"weight width {weight.width} does not fit the {big}x{small} DSP48E1 multiplier: "
                         f"legal weight widths are 2 to {big}")
    if act.width > big:
        raise ValueError(f"act width {act.width} does not fit the {big}x{small} DSP48E1 multiplier: "
                         f"legal act widths are 2 to {big}")
    if min(weight.width, act.width) > small:
        raise ValueError(f"weight width {weight.width} and act width {act.width} do not fit the {big}x{small} "
                         f"DSP48E1 multiplier: one of them must be 2 to {small}")


def check_array(rows: int, cols: int, weight: QFormat, act: QFormat, max_k: int, acc_width: int | None) -> int:
    """Check :class:`SystolicArray` parameters (``ValueError`` naming the bad one); return the accumulator width.

    Components that build an array call this first, so that a bad parameter raises before anything is built.
    """
    check_int("rows", rows)
    check_int("cols", cols)
    check_multiplier(weight, act)
    check_int("max_k", max_k)
    need = accumulator_width(weight, act, max_k)
    if acc_width is None:
        acc_width = need
    if isinstance(acc_width, bool) or not isinstance(acc_width, int) or not need <= acc_width <= DSP_ACC_WIDTH:
        raise ValueError(f"acc_width must be an integer from {need} (no overflow for max_k = {max_k} products "
                         f"of {weight.width}x{act.width} bits) to {DSP_ACC_WIDTH} (the DSP48E1 accumulator), "
                         f"not {acc_width!r}")
    return acc_width


class SystolicArray(wiring.Component):
    """Output-stationary R x C array: ``S[i, j] = sum_k a[k][i] * b[k][j]`` for tile after tile.

    **Mapping.** Row ``i`` owns output row ``i`` of the tile and column ``j`` output column ``j``. For a GEMM
    ``A @ B`` (``A``: M x K weights, ``B``: K x N activations) the rows are output channels: the *weights*
    ``A[m0 + i, k]`` enter row ``i`` from the left and flow right, the *activations* ``B[k, n0 + j]`` enter
    column ``j`` from the top and flow down, and each cell keeps its own sum. (With rows = output channels
    this is the only output-stationary assignment: a row's cells share a weight, a column's share an
    activation.) The operand skew (row ``i`` and column ``j`` delayed by ``i`` and ``j`` cycles) is inside.

    **Double buffering.** Each cell copies its finished sum into a shadow register and restarts, so a tile's
    results drain while the next tile accumulates: back-to-back tiles of K k-steps cost ``max(K, R, C)``
    cycles each (``K`` whenever ``K >= max(R, C)``, the drain being one row per cycle and each shadow being
    overwritten ``K`` cycles after it was loaded). A tile whose last k-step would come sooner is held off by
    ``i.ready`` until ``max(R, C)`` cycles after the previous tile's last k-step.

    **Stalls.** A cycle without an input transfer sends a bubble through the array, so a tile in flight always
    completes. The whole array (cells, skew, drain) stops only while a result row is due on ``o`` and the
    previous one has not been taken. ``o.ready`` thus reaches every cell's enable (and ``i.ready``)
    combinationally: a sink should drive it from a register, as :class:`~wavefabric.rtl.gemm.GemmEngine` does.

    Parameters
    ----------
    rows, cols : int
        Array size R x C, each >= 1.
    weight, act : QFormat
        Formats of the left (``a``) and top (``b``) operands; their widths must fit one 25 x 18 DSP48E1
        multiplier (one width <= 25, the other <= 18).
    max_k : int
        Longest reduction (k-steps per tile) the accumulators must hold without overflow.
    acc_width : int, optional
        Accumulator width, at least ``accumulator_width(weight, act, max_k)`` and at most 48 (the DSP48E1
        P register). Default: that minimum.

    Ports
    -----
    i : In(stream.Signature(i_layout))
        One k-step per beat: ``a`` (R lanes of ``signed(weight.width)``, lane ``i`` for row ``i``), ``b``
        (C lanes of ``signed(act.width)``, lane ``j`` for column ``j``), ``first`` (first k-step of a tile),
        ``last`` (last k-step of a tile). ``first`` and ``last`` may both be set (K = 1). ``ready``
        depends on ``payload.last`` (the spacing rule above), as a sink may look at a beat before taking it.
    o : Out(stream.Signature(o_layout))
        One result row per beat, R beats per tile in row order: ``data`` (C lanes of ``signed(acc_width)``,
        lane ``j`` = ``S[r, j]``), ``first`` (row 0), ``last`` (row R - 1).

    Attributes
    ----------
    latency : int
        Cycles from the transfer of a tile's last k-step to its first result row being valid on ``o``
        (``cols + 4``), when nothing stalls; row ``r`` follows ``r`` cycles later.
    tile_period : int
        Fewest cycles between the last k-steps of consecutive tiles, ``max(rows, cols)``.
    """

    def __init__(self, rows: int, cols: int, weight: QFormat = QFormat(16, 14), act: QFormat = QFormat(16, 12),
                 max_k: int = 4096, acc_width: int | None = None):
        self.acc_width = check_array(rows, cols, weight, act, max_k, acc_width)
        self.rows, self.cols, self.weight, self.act, self.max_k = rows, cols, weight, act, max_k
        self.latency = cols + 4
        self.tile_period = max(rows, cols)
        self.i_layout = data.StructLayout({
            "a": data.ArrayLayout(signed(weight.width), rows),
            "b": data.ArrayLayout(signed(act.width), cols),
            "first": 1,
            "last": 1,
        })
        self.o_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(self.acc_width), cols),
            "first": 1,
            "last": 1,
        })
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        core = Module()  # everything that advances in lock-step; stopped as a whole by `en`
        en = Signal()

        # Tile spacing: a last k-step is accepted only `tile_period` enabled cycles after the previous one,
        # so that no shadow register is overwritten before its row has been read and no two drains overlap.
        gap = Signal(range(self.tile_period + 1), init=self.tile_period)
        gap_ok = Signal()
        core.d.comb += gap_ok.eq(gap == self.tile_period)
        m.d.comb += self.i.ready.eq(en & (~self.i.payload.last | gap_ok))
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        with core.If(take & self.i.payload.last):
            core.d.sync += gap.eq(1)
        with core.Elif(~gap_ok):
            core.d.sync += gap.eq(gap + 1)

        ctl = Signal(PeControl)
        core.d.comb += [ctl.valid.eq(take), ctl.first.eq(self.i.payload.first), ctl.last.eq(self.i.payload.last)]

        pes = [[ProcessingElement(self.weight.width, self.act.width, self.acc_width) for _ in range(cols)]
               for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                core.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                if c == 0:
                    core.d.comb += [
                        pe.a_in.eq(delayed(core, self.i.payload.a[r], r, f"skew_a{r}")),
                        pe.ctl_in.eq(delayed(core, ctl, r, f"skew_ctl{r}")),
                    ]
                else:
                    core.d.comb += [pe.a_in.eq(pes[r][c - 1].a_out), pe.ctl_in.eq(pes[r][c - 1].ctl_out)]
                if r == 0:
                    core.d.comb += pe.b_in.eq(delayed(core, self.i.payload.b[c], c, f"skew_b{c}"))
                else:
                    core.d.comb += pe.b_in.eq(pes[r - 1][c].b_out)

        # Drain: row 0's sums are all in their shadows the cycle after the top-right cell's `done`; row r is
        # complete r cycles later (the skew), so one row per cycle is read through an R:1 multiplexer per column.
        start = Signal()
        busy = Signal()
        row = Signal(range(rows))
        core.d.sync += start.eq(pes[0][cols - 1].done)
        reading = Signal()
        read_row = Signal(range(rows))
        m.d.comb += [reading.eq(start | busy), read_row.eq(Mux(start, 0, row))]
        with core.If(reading):
            core.d.sync += [busy.eq(read_row != rows - 1), row.eq(read_row + 1)]

        # Global stall: only when a row is due and the previous one still waits on `o`.
        m.d.comb += en.eq(~(reading & self.o.valid & ~self.o.ready))
        with m.If(en & reading):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.first.eq(read_row == 0),
                self.o.payload.last.eq(read_row == rows - 1),
            ]
            for c in range(cols):
                m.d.sync += self.o.payload.data[c].eq(Array(pes[r][c].result for r in range(rows))[read_row])
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        m.submodules.core = EnableInserter(en)(core)
        return m
