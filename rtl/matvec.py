"""Matrix-vector unit: ``y = narrow(W x + bias + extra)`` for any of the matrices it holds on chip."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat, accumulator_width
from ..model.kernels import Numerics
from .fixed import round_by, saturate, saturates
from .gemm import frame_layout
from .lanes import load_address_major
from .pe import dot_lane
from .pipeline import delayed
from .systolic import DSP_ACC_WIDTH, check_multiplier

__all__ = ["MatVecUnit", "op_layout", "BRAM_STEP"]

#: Depth step of 7-series block RAM at the widths of a lane's words (RAMB18 as 512 x 36).
BRAM_STEP = 512


def op_layout(depth: int, bias_rows: int, max_rows: int, max_words: int, max_shift: int) -> data.StructLayout:
    """One operation of :class:`MatVecUnit`: which matrix, its size in slots and words, how to narrow the sums.

    ``weight_base`` (first word of the matrix in every lane's memory), ``bias_base`` (row of its first bias),
    ``rows``, ``slots`` (``ceil(rows / P)``), ``words`` (``ceil(cols / S)``), ``shift`` (fractional bits dropped
    by the narrowing: ``acc_frac - out.frac``; a run-time value, so a checkpoint's formats need no new
    bitstream) and ``relu``.
    """
    return data.StructLayout({
        "weight_base": range(depth), "bias_base": range(bias_rows), "rows": range(max_rows + 1),
        "slots": range(max_rows + 1), "words": range(max_words + 1), "shift": range(max_shift + 1), "relu": 1,
    })


class MatVecUnit(wiring.Component):
    """``y[r] = relu?(sat(round(acc_r >> shift)))``, ``acc_r = W[r] . x + (bias[r] + extra[r]) << shift``.

    The rounding is the shared half-up rule of :func:`~wavefabric.model.fixed.narrow` with a shift chosen per
    operation at run time (per-layer formats: ``frac_x + frac_w - frac_out``, the bias and extra values at the
    output's format): the result equals :func:`~wavefabric.model.kernels.linear` with ``shift`` and bias
    ``bias + extra`` (and ``relu`` applied after it). The bias term is added after the rounding shift, which is
    the same integer (``round(a + (b << s)) = round(a) + b``) without a run-time left shift.
    ``result.saturated`` flags a value that saturated (for a ``relu`` operation only above the range: below, it
    is zero either way).

    **Datapath.** P lanes of S :class:`~wavefabric.rtl.pe.ProcessingElement` (one DSP48E1 each), the GRU
    engine's layout: lane ``p`` computes rows ``k * P + p`` of slot ``k``, every multiplier accumulating every S-th
    product, a registered adder tree per lane. A slot issues ``period = max(words, P)`` cycles (``words`` of
    them multiply); its P sums then enter a shift register that feeds one row per cycle into the narrowing
    stage, which adds the bias and the ``extra`` value (the engine's conditioning row), shifts, saturates and
    applies ReLU. So one narrowing datapath serves every lane.

    Ports
    -----
    weights : In(stream)
        :func:`~wavefabric.rtl.gemm.frame_layout` of S weights: every lane's memory, address-major (beat
        ``a * P + p`` is lane ``p``'s word ``a``), ``depth * P`` beats framed by ``first`` / ``last``.
    store : In
        ``valid``, ``lane``, ``addr``, ``data`` (S weights): one word written into lane ``lane``'s memory at
        ``addr`` in a cycle with ``valid`` high (a weight loader's random-access path; only while idle, and not in
        a cycle that also takes a ``weights`` beat).
    biases : In(stream)
        :func:`~wavefabric.rtl.gemm.frame_layout` of S act values: bias row ``r`` is lane ``r % S`` of beat
        ``r // S``, ``ceil(bias_rows / S)`` beats. Both load streams are taken only while the unit is idle.
    start, op : In
        ``op`` (:func:`op_layout`) is taken in a cycle with ``start`` high and ``busy`` low.
    busy : Out(1)
        High from the cycle after ``start`` until the cycle after the last result.
    vec_addr : Out
        Word of x the unit reads; ``vec_data`` (S act values) must hold that word one cycle later.
    row, row_valid : Out
        The row entering the narrowing stage; ``extra`` must hold its extra value one cycle later (0 if none).
    result : Out
        ``valid``, ``row``, ``value`` (act), ``saturated``, registered: rows in order, one per cycle at most.
    error : Out(1)
        Sticky: a load beat's ``first`` / ``last`` disagreed with the unit's count.

    Cycles: an operation takes :func:`~wavefabric.model.perf.matvec_op_cycles` from its ``start`` to its last
    result, ``(slots - 1) * period + words + tree_levels + p_last + 9`` with ``p_last`` the last row's lane.

    Parameters
    ----------
    lanes, simd : int
        P and S (S a power of two), each >= 1.
    depth : int
        Words of every lane's weight memory.
    bias_rows : int
        Rows of the bias memory.
    max_cols : int
        Longest row of any matrix (sizes the accumulators, which must fit the DSP48E1's P register).
    num : Numerics
        Weights and activations (each within a DSP48E1 multiplier); results are ``act.width`` bits.
    """

    def __init__(self, lanes: int, simd: int, depth: int, bias_rows: int, max_cols: int, max_rows: int,
                 num: Numerics = Numerics()):
        self.lanes = check_int("lanes", lanes)
        self.simd = check_int("simd", simd)
        if simd & (simd - 1):
            raise ValueError(f"simd must be a power of two (1, 2, 4, ...), not {simd}")
        self.depth = check_int("depth", depth)
        self.bias_rows = check_int("bias_rows", bias_rows)
        self.max_cols = check_int("max_cols", max_cols)
        self.max_rows = check_int("max_rows", max_rows)
        if not isinstance(num, Numerics):
            raise ValueError(f"num must be a Numerics, not {num!r}")
        check_multiplier(num.weight, num.act)
        self.num = num
        self.max_words = -(-max_cols // simd)
        self.pe_width = accumulator_width(num.weight, num.act, self.max_words)
        # A lane's sum with the bias + extra term (two act values) added.
        self.acc_width = accumulator_width(num.weight, num.act, self.max_words * simd,
                                           bias=QFormat(num.act.width + 1, num.act.frac)) + 1
        if self.acc_width > DSP_ACC_WIDTH:
            raise ValueError(f"max_cols {max_cols} needs a {self.acc_width}-bit accumulator; legal sizes keep it "
                             f"within {DSP_ACC_WIDTH} bits (the DSP48E1 P register)")
        self.max_shift = self.acc_width
        self.tree_levels = (simd - 1).bit_length()
        # Block RAM holds a lane's words in steps of BRAM_STEP; a small remainder goes to distributed RAM.
        remainder = depth % BRAM_STEP
        self.block_depth = depth - remainder if depth > BRAM_STEP and remainder <= BRAM_STEP // 2 else depth
        self.bias_words = -(-bias_rows // simd)
        act = num.act.width
        self.op_shape = op_layout(depth, bias_rows, max_rows, self.max_words, self.max_shift)
        super().__init__({
            "weights": In(stream.Signature(frame_layout(signed(num.weight.width), simd))),
            "store": In(data.StructLayout({"valid": 1, "lane": range(lanes), "addr": range(depth),
                                           "data": data.ArrayLayout(signed(num.weight.width), simd)})),
            "biases": In(stream.Signature(frame_layout(signed(act), simd))),
            "start": In(1),
            "op": In(self.op_shape),
            "busy": Out(1),
            "vec_addr": Out(range(self.max_words)),
            "vec_data": In(data.ArrayLayout(signed(act), simd)),
            "row": Out(range(max_rows)),
            "row_valid": Out(1),
            "extra": In(signed(act)),
            "result": Out(data.StructLayout({"valid": 1, "row": range(max_rows), "value": signed(act),
                                             "saturated": 1})),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        num, P, S = self.num, self.lanes, self.simd
        act = num.act.width
        lane_bits = (S - 1).bit_length()

        word = data.ArrayLayout(signed(num.weight.width), S)
        weight_writes, weight_reads = [], []
        for p in range(P):
            write, read = _split_memory(m, f"weights_{p}", word, self.depth, self.block_depth)
            weight_writes.append(write)
            weight_reads.append(read)
        m.submodules.bias = bias_mem = Memory(shape=data.ArrayLayout(signed(act), S), depth=self.bias_words,
                                              init=[])
        bias_write, bias_read = bias_mem.write_port(), bias_mem.read_port()

        # --- Issue: slot by slot, ``period`` cycles each, the first ``words`` of them multiplying ----------------
        op = Signal(self.op_shape)
        busy = Signal()
        slot = Signal(range(self.max_rows + 1))
        t = Signal(range(max(self.max_words, P) + 1))
        waddr = Signal(range(self.depth))
        period = Mux(op.words > P, op.words, P)
        issue = busy & (t < op.words) & (slot < op.slots)
        m.d.comb += [self.busy.eq(busy), self.vec_addr.eq(t), [r.addr.eq(waddr) for r in weight_reads]]
        with m.If(~busy & self.start):
            m.d.sync += [op.eq(self.op), busy.eq(1), slot.eq(0), t.eq(0), waddr.eq(self.op.weight_base)]
        with m.Elif(busy & (slot < op.slots)):
            m.d.sync += t.eq(t + 1)
            with m.If(issue):
                m.d.sync += waddr.eq(waddr + 1)
            with m.If(t == period - 1):
                m.d.sync += [t.eq(0), slot.eq(slot + 1)]

        # --- Lanes: PEs and adder trees --------------------------------------------------------------------------
        ctl = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1}))
        m.d.comb += [ctl.valid.eq(issue), ctl.first.eq(issue & (t == 0)), ctl.last.eq(issue & (t == op.words - 1))]
        ctl_pe = delayed(m, ctl, 1, "ctl_pe")
        sums = [dot_lane(m, f"lane_{p}", [weight_reads[p].data[s] for s in range(S)],
                         [self.vec_data[s] for s in range(S)], ctl_pe, num.weight.width, act, self.pe_width)
                for p in range(P)]
        # The PE result holds a sum from 4 cycles after its last k-step enters; the tree adds tree_levels more.
        load = delayed(m, ctl_pe.last, 4 + self.tree_levels, "load")

        # --- Chain: a slot's P sums, one per cycle into the narrowing stage ---------------------------------------
        entry = data.StructLayout({"acc": signed(self.pe_width + self.tree_levels), "valid": 1})
        chain = [Signal(entry, name=f"chain_{p}") for p in range(P)]
        row_base = Signal(range(self.max_rows + P + 1))  # first row of the slot being loaded
        row_out = Signal(range(self.max_rows + 1))      # next row to leave the chain
        with m.If(~busy & self.start):
            m.d.sync += [row_base.eq(0), row_out.eq(0)]
        for p in range(P):
            with m.If(load):
                m.d.sync += [chain[p].acc.eq(sums[p]), chain[p].valid.eq(row_base + p < op.rows)]
            with m.Else():
                m.d.sync += chain[p].eq(chain[p + 1] if p + 1 < P else 0)
        with m.If(load):
            m.d.sync += row_base.eq(row_base + P)
        head = chain[0]
        bias_row = Signal(range(self.bias_rows + self.max_rows + 1))
        m.d.comb += [bias_row.eq(op.bias_base + row_out), bias_read.addr.eq(bias_row >> lane_bits),
                     self.row.eq(row_out), self.row_valid.eq(head.valid)]
        with m.If(head.valid):
            m.d.sync += row_out.eq(row_out + 1)

        # --- Narrowing stage: one cycle after the row leaves the chain ------------------------------------------
        acc = delayed(m, head.acc, 1, "acc")
        valid = delayed(m, head.valid, 1, "valid")
        row = delayed(m, row_out, 1, "row")
        lane = delayed(m, bias_row[:lane_bits] if lane_bits else Const(0, 1), 1, "bias_lane")
        bias = bias_read.data[lane] if S > 1 else bias_read.data[0]
        out = QFormat(act, 0)
        total = round_by(acc, op.shift) + bias + self.extra
        value = saturate(total, out)
        m.d.sync += [self.result.valid.eq(valid), self.result.row.eq(row),
                     self.result.value.eq(Mux(op.relu & (value < 0), 0, value)),
                     self.result.saturated.eq(Mux(op.relu, total > out.max_int, saturates(total, out)))]
        last_row = valid & (row == op.rows - 1)
        with m.If(last_row):
            m.d.sync += busy.eq(0)

        # --- Loading ---------------------------------------------------------------------------------------------
        error = Signal()
        load_address_major(m, self.weights, weight_writes, self.depth, ~busy, error)
        store = self.store
        with m.If(store.valid):
            for p, port in enumerate(weight_writes):
                m.d.comb += [port.addr.eq(store.addr), port.data.eq(store.data), port.en.eq(store.lane == p)]
        b_addr = Signal(range(self.bias_words))
        b_last = b_addr == self.bias_words - 1
        m.d.comb += self.biases.ready.eq(~busy)
        b_take = self.biases.valid & self.biases.ready
        m.d.comb += [bias_write.addr.eq(b_addr), bias_write.data.eq(self.biases.payload.data),
                     bias_write.en.eq(b_take)]
        with m.If(b_take):
            m.d.sync += b_addr.eq(Mux(b_last, 0, b_addr + 1))
            with m.If((self.biases.payload.first != (b_addr == 0)) | (self.biases.payload.last != b_last)):
                m.d.comb += error.eq(1)
        with m.If(error):
            m.d.sync += self.error.eq(1)
        return m


class _Port:
    """One address, data and enable on a memory split in two (what the unit's loops drive, as a memory port)."""

    def __init__(self, addr, data, en=None):
        self.addr, self.data, self.en = addr, data, en


def _split_memory(m: Module, name: str, shape, depth: int, block_depth: int) -> tuple[_Port, _Port]:
    """A memory of ``depth`` words whose first ``block_depth`` are block RAM and the rest distributed RAM.

    Returns a write port and a read port (one cycle of latency) over the whole address range.
    """
    blocks = [Memory(shape=shape, depth=block_depth, init=[])]
    if depth > block_depth:
        blocks.append(Memory(shape=shape, depth=depth - block_depth, init=[], attrs={"ram_style": "distributed"}))
    for i, mem in enumerate(blocks):
        m.submodules[f"{name}_{i}"] = mem
    writes = [mem.write_port() for mem in blocks]
    reads = [mem.read_port() for mem in blocks]
    write = _Port(Signal(range(depth), name=f"{name}_waddr"), Signal(shape, name=f"{name}_wdata"),
                  Signal(name=f"{name}_wen"))
    read = _Port(Signal(range(depth), name=f"{name}_raddr"), Signal(shape, name=f"{name}_rdata"))
    if len(blocks) == 1:
        m.d.comb += [writes[0].addr.eq(write.addr), writes[0].data.eq(write.data), writes[0].en.eq(write.en),
                     reads[0].addr.eq(read.addr), read.data.eq(reads[0].data)]
        return write, read
    high_w, high_r = write.addr >= block_depth, read.addr >= block_depth
    m.d.comb += [writes[0].addr.eq(write.addr), writes[1].addr.eq(write.addr - block_depth),
                 writes[0].data.eq(write.data), writes[1].data.eq(write.data),
                 writes[0].en.eq(write.en & ~high_w), writes[1].en.eq(write.en & high_w),
                 reads[0].addr.eq(read.addr), reads[1].addr.eq(read.addr - block_depth)]
    high = Signal(name=f"{name}_high")
    m.d.sync += high.eq(high_r)
    m.d.comb += read.data.eq(Mux(high, reads[1].data, reads[0].data))
    return write, read
