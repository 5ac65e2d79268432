"""Weight loading: a checkpoint's weight-normed ``(g, v)`` through the weight-norm unit into an engine's memories."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from ..model.kernels import WEIGHT_NORM_SCALE_EXTRA, Numerics, RsqrtFormat
from ..model.perf import gru_weight_load_cycles, matvec_weight_load_cycles
from .gemm import frame_layout
from .gru import GruGeometry
from .weightnorm import MAX_G_WIDTH, WeightNormUnit

__all__ = ["GruWeightLoader", "MatVecWeightLoader", "NormedMatrix", "g_layout", "store_layout"]


def g_layout(width: int, frac_min: int, frac_max: int) -> data.StructLayout:
    """Payload of a loader's ``g`` stream: ``data`` (``signed(width)``) and ``frac`` (its fractional bits)."""
    return data.StructLayout({"data": signed(width), "frac": range(frac_min, frac_max + 1)})


def store_layout(lanes: int, depth: int, width: int, simd: int) -> data.StructLayout:
    """A :class:`~wavefabric.rtl.matvec.MatVecUnit`'s ``store`` port: ``valid``, ``lane``, ``addr``, ``data``."""
    return data.StructLayout({"valid": 1, "lane": range(lanes), "addr": range(depth),
                              "data": data.ArrayLayout(signed(width), simd)})


def _lookup(m: Module, index, values: list[int], name: str) -> Signal:
    """``values[index]``: a per-tensor constant, as a table of constants (a multiplexer, no memory)."""
    value = Signal(max(1, max(values).bit_length()), name=name)  # a flag stays one bit wide when all are 0
    if len(values) == 1:
        m.d.comb += value.eq(values[0])
    else:
        with m.Switch(index):
            for i, v in enumerate(values):
                with m.Case(i):
                    m.d.comb += value.eq(v)
    return value


def _check_formats(num, rsqrt_fmt) -> None:
    if not isinstance(num, Numerics) or not 2 <= num.weight.width <= MAX_G_WIDTH:
        raise ValueError(f"num must be a Numerics with a weight width from 2 to {MAX_G_WIDTH} (g shares it, "
                         f"and the weight-norm unit's g is at most {MAX_G_WIDTH} bits), not {num!r}")
    if not isinstance(rsqrt_fmt, RsqrtFormat):
        raise ValueError(f"rsqrt_fmt must be an RsqrtFormat, not {rsqrt_fmt!r}")


class _WeightNormLoader(wiring.Component):
    """What the loaders share: the ``g`` formats, the ``v`` / ``g`` / flag ports and the front end.

    The front end is one :class:`~wavefabric.rtl.weightnorm.WeightNormUnit` of S lanes (a beat is one engine
    weight word) fed from ``v`` and ``g``, which counts the ``v`` beats of the tensors to give the unit each
    row's length and to check the framing. ``g`` beats carry their tensor's ``frac`` (the unit's run-time
    format): legal fractions are ``g_frac_min = max(0, num.weight.frac - 5)`` (the unit's rounding shift must
    be at least one bit: ``|g|`` below about ``2**(W - 2 - g_frac_min)``) to ``g_frac_max = 2 * W`` (the most
    :func:`~wavefabric.model.kernels.weight_norm_operands` picks).
    """

    def __init__(self, simd: int, num: Numerics, rsqrt_fmt: RsqrtFormat, ports: dict):
        width = num.weight.width
        self.simd, self.num, self.rsqrt_fmt = simd, num, rsqrt_fmt
        self.g_frac_min = max(0, num.weight.frac - (WEIGHT_NORM_SCALE_EXTRA - 1))
        self.g_frac_max = 2 * width
        super().__init__({
            "v": In(stream.Signature(frame_layout(signed(width), simd))),
            "g": In(stream.Signature(g_layout(width, self.g_frac_min, self.g_frac_max))),
            **ports,
            "zero_row": Out(1),
            "clear": In(1),
            "error": Out(1),
        })

    def _front(self, m: Module, tensors: list[tuple[int, int]], frame_per_tensor: bool) -> WeightNormUnit:
        """The weight-norm unit on ``v`` / ``g`` for ``tensors`` (``(rows, row_length)`` in stream order).

        ``first`` / ``last`` of ``v`` must mark each tensor's first and last beat (``frame_per_tensor``), or
        only the first beat of the first tensor and the last of the last; a beat that disagrees sets ``error``.
        """
        S, width = self.simd, self.num.weight.width
        lengths = [n for _, n in tensors]
        m.submodules.unit = unit = WeightNormUnit(
            max(*lengths, S), S, width, QFormat(width, self.g_frac_min), self.num.weight, self.rsqrt_fmt,
            g_frac_max=self.g_frac_max)
        wiring.connect(m, wiring.flipped(self.v), unit.v)
        m.d.comb += [
            unit.g.valid.eq(self.g.valid),
            unit.g.payload.eq(self.g.payload.data),
            unit.g_frac.eq(self.g.payload.frac),
            self.g.ready.eq(unit.g.ready),
            self.zero_row.eq(unit.zero_row),
            unit.clear.eq(self.clear),
        ]
        tensor = Signal(range(len(tensors)))
        row = Signal(range(max(rows for rows, _ in tensors)))
        word = Signal(range(max(-(-n // S) for n in lengths)))
        m.d.comb += unit.row_length.eq(_lookup(m, tensor, lengths, "in_row_length"))
        row_end = word == _lookup(m, tensor, [-(-n // S) - 1 for n in lengths], "in_words_last")
        tensor_end = row_end & (row == _lookup(m, tensor, [rows - 1 for rows, _ in tensors], "in_rows_last"))
        first, last = (row == 0) & (word == 0), tensor_end
        if not frame_per_tensor:
            first, last = first & (tensor == 0), last & (tensor == len(tensors) - 1)
        with m.If(self.v.valid & self.v.ready):
            m.d.sync += word.eq(word + 1)
            with m.If(row_end):
                m.d.sync += [word.eq(0), row.eq(row + 1)]
                with m.If(tensor_end):
                    m.d.sync += [row.eq(0), tensor.eq(Mux(tensor == len(tensors) - 1, 0, tensor + 1))]
            with m.If((self.v.payload.first != first) | (self.v.payload.last != last)):
                m.d.sync += self.error.eq(1)
        return unit


class GruWeightLoader(_WeightNormLoader):
    """Loads a :class:`~wavefabric.rtl.gru.GruEngine` from weight-normed ``(g, v)``: ``w = g * v / ||v||``.

    Every weight matrix of the GRU (``weight_ih_l{l}`` of shape ``(3H, I_l)``, ``weight_hh_l{l}`` of shape
    ``(3H, H)``) arrives as PyTorch stores it, ``v`` row by row with one ``g`` per row (``weight_norm(dim=0)``),
    and goes through a :class:`~wavefabric.rtl.weightnorm.WeightNormUnit`. The resident weights are then
    ``GruGeometry.weight_words(w_ih, w_hh)`` with ``w = weight_norm(v, g, QFormat(W, g_frac), num.weight)``
    (:func:`~wavefabric.model.kernels.weight_norm`) per tensor, bit for bit; for the integers that
    :func:`~wavefabric.model.kernels.weight_norm_operands` makes of float ``(g, v)`` (``wavefabric.sim.loader``
    packs them) that is :func:`~wavefabric.model.kernels.quantize_weight_norm`, the model's folded weights.

    **Dataflow.** The unit (``max_row_length = max(I, H, S)``, S lanes so that a beat is one engine weight
    word, ``v_width = W``, ``g_fmt = QFormat(W, g_frac_min)``, ``out_fmt = num.weight``) emits rows in PyTorch
    order (row ``gate * H + j`` of each matrix). The engine takes its ``weights`` stream in
    :class:`~wavefabric.rtl.gru.GruGeometry`'s address-major order, which interleaves both matrices of a layer
    and all lanes: its first beats need rows of ``w_hh``, which come after all of ``w_ih``. So the loader writes
    every normalised word into a reorder buffer (``lib.memory``, ``weight_depth * P`` words of S weights, as
    large as the engine's weight memories) at its engine beat index ``address * P + p``, the address advancing
    by ``P`` per word of a row, by one lane per row and by a slot (``P * 3 * (ceil(I_l / S) + ceil(H / S))``)
    per ``P`` rows, from a per-segment start (counters and a constant table, no multipliers). Phase 2 then
    streams the buffer out in order. Words of lanes past H are never written and stay zero (the memory's
    initial value), as the engine wants them. The buffer keeps the host's stream a plain copy of each
    checkpoint tensor and the cycle model simple; a host-side row gather into the engine's order would need
    only a ``2 * P``-row transposition buffer (not built).

    **g format.** The float loader picks one ``g`` format per tensor (``QFormat(W, g_frac)``,
    :func:`~wavefabric.model.kernels.weight_norm_operands`), so ``g`` beats carry their ``frac``; the unit is
    built with the run-time format option. Legal fractions are ``g_frac_min = max(0, num.weight.frac - 5)``
    (the unit's rounding shift must be at least one bit: ``|g|`` below about ``2**(W - 2 - g_frac_min)``) to
    ``g_frac_max = 2 * W`` (the most the float loader picks). The front end (unit, row lengths, framing check)
    is :class:`MatVecWeightLoader`'s too.

    **Streams.**

    - ``v`` (:func:`~wavefabric.rtl.gemm.frame_layout` of S ``signed(W)``): the tensors in the order
      ``weight_ih_l0, weight_hh_l0, weight_ih_l1, ...``, each row in ``ceil(n / S)`` beats (element ``c`` in
      lane ``c mod S`` of beat ``c // S``; lanes past the row's end ignored), ``first`` / ``last`` on the first
      and last beat of each tensor (a beat that disagrees sets ``error``).
    - ``g`` (:func:`g_layout`): one beat per row, same order; ``frac`` is the tensor's ``g_frac``.
    - ``weights`` (frame_layout of S ``signed(W)``): connect to the engine's ``weights``; ``weight_depth * P``
      beats framed ``first`` / ``last`` as the engine checks them. Starts once the last row is in the buffer.

    Parameters
    ----------
    geometry : GruGeometry
        The engine's geometry (sizes, lanes P, SIMD width S).
    num : Numerics
        The engine's formats: ``W = num.weight.width`` (2 to 17) is the width of ``v``, ``g`` and ``w``.
    rsqrt_fmt : RsqrtFormat
        The weight-norm unit's reciprocal square root.

    Ports
    -----
    v, g : In(stream)
    weights : Out(stream)
    zero_row : Out(1)
        Sticky: some row had ``||v|| = 0`` (its weights are zeros); the unit's flag.
    clear : In(1)
        Clears ``zero_row``.
    error : Out(1)
        Sticky: a ``v`` beat's ``first`` / ``last`` disagreed with the loader's count.

    Attributes
    ----------
    g_frac_min, g_frac_max : int
        The legal ``frac`` of ``g`` beats.
    buffer_depth : int
        Words of the reorder buffer, ``weight_depth * P``.
    cycles : int
        :func:`~wavefabric.model.perf.gru_weight_load_cycles`: from the first ``v`` beat offered to an idle
        loader (``v``, ``g`` valid and ``weights`` ready throughout) to the last ``weights`` transfer, inclusive:
        ``B + b_max + latency + buffer_depth``, ``B`` the ``v`` beats, ``b_max`` the longest row's, ``latency``
        the unit's. The next load's ``v`` may follow at once: the unit's output waits while phase 2 runs.
    """

    def __init__(self, geometry: GruGeometry, num: Numerics = Numerics(), rsqrt_fmt: RsqrtFormat = RsqrtFormat()):
        if not isinstance(geometry, GruGeometry):
            raise ValueError(f"geometry must be a GruGeometry, not {geometry!r}")
        _check_formats(num, rsqrt_fmt)
        self.geometry = geometry
        self.buffer_depth = geometry.weight_depth * geometry.lanes
        self.cycles = gru_weight_load_cycles(geometry.input_size, geometry.hidden, geometry.layers,
                                             geometry.lanes, geometry.simd, rsqrt_fmt.newton_steps)
        word = frame_layout(signed(num.weight.width), geometry.simd)
        super().__init__(geometry.simd, num, rsqrt_fmt, {"weights": Out(stream.Signature(word))})

    def _segments(self) -> list[tuple[int, int, int, int]]:
        """Per segment (tensor, gate) in stream order: row length, words per row, first beat index, slot step.

        The first beat index is the buffer index of the segment's row 0, word 0 (lane 0 of slot 0); each slot
        of P rows further on is ``slot step`` beats later.
        """
        geo = self.geometry
        segments, base = [], 0
        for layer in range(geo.layers):
            cx, ch = geo.x_words[layer], geo.h_words
            length = geo.input_size if layer == 0 else geo.hidden
            for matrix, (n, words) in enumerate(((length, cx), (geo.hidden, ch))):
                for gate in range(3):
                    offset = gate * (cx + ch) + matrix * cx
                    segments.append((n, words, (base + offset) * geo.lanes, geo.slot_cycles[layer] * geo.lanes))
            base += geo.slots * geo.slot_cycles[layer]
        return segments

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        P, H = geo.lanes, geo.hidden
        segments = self._segments()
        max_words = max(words for _, words, _, _ in segments)
        # ---- Input: v and g into the unit, each tensor framed on its own -------------------------------------
        tensors = [(3 * H, geo.input_size if layer == 0 else H) if matrix == 0 else (3 * H, H)
                   for layer in range(geo.layers) for matrix in range(2)]
        unit = self._front(m, tensors, frame_per_tensor=True)

        # ---- Phase 1: each normalised word to its engine beat index in the reorder buffer -------------------
        m.submodules.buffer = buffer = memory.Memory(shape=data.ArrayLayout(signed(self.num.weight.width), geo.simd),
                                                     depth=self.buffer_depth, init=[])
        buf_w, buf_r = buffer.write_port(), buffer.read_port()
        sending = Signal()
        seg = Signal(range(len(segments)))
        j, p, word = Signal(range(H)), Signal(range(P)), Signal(range(max_words))
        addr, slot_start = Signal(range(self.buffer_depth)), Signal(range(self.buffer_depth))
        seg_words = Signal(range(max_words + 1))
        slot_step = Signal(range(self.buffer_depth + 1))
        next_start = Signal(range(self.buffer_depth))
        with m.Switch(seg):
            for s, (_, words, _, step) in enumerate(segments):
                with m.Case(s):
                    m.d.comb += [seg_words.eq(words), slot_step.eq(step),
                                 next_start.eq(segments[(s + 1) % len(segments)][2])]
        m.d.comb += unit.w.ready.eq(~sending)
        take = unit.w.valid & unit.w.ready
        m.d.comb += [buf_w.addr.eq(addr), buf_w.data.eq(unit.w.payload.data), buf_w.en.eq(take)]
        with m.If(take):
            with m.If(word != seg_words - 1):
                m.d.sync += [word.eq(word + 1), addr.eq(addr + P)]
            with m.Elif(j == H - 1):
                m.d.sync += [word.eq(0), j.eq(0), p.eq(0), addr.eq(next_start), slot_start.eq(next_start)]
                with m.If(seg == len(segments) - 1):
                    m.d.sync += [seg.eq(0), sending.eq(1)]
                with m.Else():
                    m.d.sync += seg.eq(seg + 1)
            with m.Elif(p == P - 1):
                m.d.sync += [word.eq(0), j.eq(j + 1), p.eq(0), addr.eq(slot_start + slot_step),
                             slot_start.eq(slot_start + slot_step)]
            with m.Else():
                m.d.sync += [word.eq(0), j.eq(j + 1), p.eq(p + 1), addr.eq(slot_start + p + 1)]

        # ---- Phase 2: the buffer in order to the engine; the read port holds while weights stall -----------
        rd = Signal(range(self.buffer_depth))
        advance = ~self.weights.valid | self.weights.ready
        issue = sending & advance
        m.d.comb += [buf_r.addr.eq(rd), buf_r.en.eq(advance), self.weights.payload.data.eq(buf_r.data)]
        with m.If(advance):
            m.d.sync += [self.weights.valid.eq(issue), self.weights.payload.first.eq(rd == 0),
                         self.weights.payload.last.eq(rd == self.buffer_depth - 1)]
        with m.If(issue):
            m.d.sync += rd.eq(rd + 1)
            with m.If(rd == self.buffer_depth - 1):
                m.d.sync += [rd.eq(0), sending.eq(0)]
        return m


@dataclass(frozen=True)
class NormedMatrix:
    """A weight-normed matrix of a :class:`~wavefabric.rtl.matvec.MatVecUnit` and how its checkpoint tensor maps
    onto it.

    The matrix (``rows`` x ``cols``) starts at word ``weight_base`` of every lane's memory: row ``r`` in lane
    ``r % P``, words ``weight_base + (r // P) * ceil(cols / S) + t``. ``taps = 0``: a Conv1d / Linear weight,
    normalised per output channel, so ``v`` row ``r`` (``v.reshape(rows, -1)``) is matrix row ``r``. ``taps >
    0``: a ConvTranspose1d weight ``(cols, rows // taps, taps)`` (in, out, kernel), which PyTorch's
    ``weight_norm`` normalises per input channel: ``v`` row ``c`` is matrix column ``c``, its element ``d *
    taps + j`` matrix row ``j * (rows // taps) + d`` (output position ``j``, channel ``d``).
    """

    weight_base: int
    rows: int
    cols: int
    taps: int = 0

    def __post_init__(self):
        check_int("weight_base", self.weight_base, 0)
        check_int("rows", self.rows)
        check_int("cols", self.cols)
        check_int("taps", self.taps, 0)
        if self.taps and self.rows % self.taps:
            raise ValueError(f"taps ({self.taps}) must divide rows ({self.rows})")

    @property
    def v_shape(self) -> tuple[int, int]:
        """``(v rows, row length)``: the rows the weight-norm unit normalises."""
        return (self.cols, self.rows) if self.taps else (self.rows, self.cols)


class MatVecWeightLoader(_WeightNormLoader):
    """Loads weight-normed matrices into a :class:`~wavefabric.rtl.matvec.MatVecUnit` from ``(g, v)``.

    Each matrix of ``matrices`` (:class:`NormedMatrix`) arrives as its checkpoint stores it, ``v`` row by row
    (``v.reshape(O, -1)``) with one ``g`` per row, and goes through one
    :class:`~wavefabric.rtl.weightnorm.WeightNormUnit` (S lanes, so a beat is one weight word). The unit's
    memories then hold ``w = weight_norm(v, g, QFormat(W, g_frac), num.weight)`` at the matrix's place, bit for
    bit (:func:`~wavefabric.model.kernels.weight_norm`; for the integers
    :func:`~wavefabric.model.kernels.weight_norm_operands` makes of float ``(g, v)``, which
    ``wavefabric.sim.loader.matvec_loader_beats`` packs, :func:`~wavefabric.model.kernels.quantize_weight_norm`).
    Words that no matrix element reaches (lanes past a row's end, rows past the last in a slot) are never
    written: they keep the memory's initial zeros.

    **Dataflow.** A row-normalised matrix (``taps = 0``): beat ``t`` of normalised row ``r`` is written to lane
    ``r % P`` at ``weight_base + (r // P) * words + t`` the cycle it leaves the unit. A ConvTranspose (``taps >
    0``): its normalised rows are the matrix's columns, so S of them (``c0 .. c0 + S - 1``, a group) are
    collected in a transposition buffer, and then, with the unit's output held (``w.ready`` low), the buffer is
    drained one word per matrix row ``r``: ``[w[c0 + s, r] for s in range(S)]`` (zero for ``c0 + s >= cols``)
    to lane ``r % P``, word ``(r // P) * words + c0 // S``. A drain takes ``rows + 1`` cycles; meanwhile the unit
    keeps taking ``v`` until its row buffer is full. Addresses come from counters and per-matrix constant
    tables, no multipliers.

    **Transposition buffer.** S memories of ``signed(W)``, ``S * ceil(R / S)`` deep (``R``, the longest
    ConvTranspose row, ``rows``), each with one write and one read port: element ``e = b * S + i`` of group
    row ``s`` lives in memory ``(s + i) % S`` at address ``b * S + s``. Writing a beat (row ``s``, elements ``b *
    S ..``) rotates it by ``s`` into every memory at one address; reading element ``e`` of all S rows reads
    every memory at its own address and rotates back by ``i``, so both directions move a word per cycle. It
    holds S rows, ``S * R * W`` bits, in distributed RAM (the engine's block RAM is full): at the SampleRNN seed
    configuration (S = 8, R = 16 * 64 = 1024, W = 16) eight 1024 x 16 memories, 775 LUTRAM cells where block RAM
    would take 4 BRAM36. Yosys ``synth_xilinx`` of the whole loader there: 3,696 LUT, 775 LUTRAM, 1,149 FF, 29
    DSP48E1 (the weight-norm unit's squares, scales and reciprocal square root) and 2 BRAM36 (the unit's row
    buffer, ``2**ceil(log2(ceil(R / S) + 13))`` beats of ``S * W + 2`` bits: 256 x 130).

    **Streams.**

    - ``v`` (:func:`~wavefabric.rtl.gemm.frame_layout` of S ``signed(W)``): the matrices in order, each ``v``
      row in ``ceil(row_length / S)`` beats (element ``e`` in lane ``e mod S`` of beat ``e // S``); ``first`` on
      the first beat of the load, ``last`` on its last (a beat that disagrees sets ``error``).
    - ``g`` (:func:`g_layout`): one beat per ``v`` row, same order, taken with the row's last ``v`` beat;
      ``frac`` is the tensor's ``g_frac``.

    Parameters
    ----------
    matrices : sequence of NormedMatrix
        In stream order; each must fit the unit's memories.
    lanes, simd, depth : int
        The unit's P, S (a power of two) and words per lane memory.
    num : Numerics
        The unit's formats: ``W = num.weight.width`` (2 to 17) is the width of ``v``, ``g`` and ``w``.
    rsqrt_fmt : RsqrtFormat
        The weight-norm unit's reciprocal square root.

    Ports
    -----
    v, g : In(stream)
    store : Out(:func:`store_layout`)
        Connect to the unit's ``store``: at most one word per cycle.
    busy : Out(1)
        Some ``v`` beat taken has not reached the unit's memories yet (in the weight-norm unit, or in a group of
        the transposition buffer not yet drained). The unit must stay idle, and take no ``weights`` beat, while
        it is high.
    zero_row : Out(1)
        Sticky: some row had ``||v|| = 0`` (its weights are zeros); the weight-norm unit's flag.
    clear : In(1)
        Clears ``zero_row``.
    error : Out(1)
        Sticky: a ``v`` beat's ``first`` / ``last`` disagreed with the loader's count.

    Attributes
    ----------
    g_frac_min, g_frac_max : int
        The legal ``frac`` of ``g`` beats.
    v_beats, g_beats : int
        Beats of a whole load on ``v`` and ``g``.
    buffer_depth : int
        Words of each transposition-buffer memory (0 without a ConvTranspose).
    cycles : int
        :func:`~wavefabric.model.perf.matvec_weight_load_cycles`: from the first ``v`` beat offered to an idle
        loader (``v`` and ``g`` valid throughout) to the last ``store`` write, inclusive.
    """

    def __init__(self, matrices, lanes: int, simd: int, depth: int, num: Numerics = Numerics(),
                 rsqrt_fmt: RsqrtFormat = RsqrtFormat()):
        self.matrices = tuple(matrices)
        if not self.matrices or not all(isinstance(mat, NormedMatrix) for mat in self.matrices):
            raise ValueError(f"matrices must be a non-empty sequence of NormedMatrix, not {matrices!r}")
        self.lanes = check_int("lanes", lanes)
        self.simd = check_int("simd", simd)
        if simd & (simd - 1):
            raise ValueError(f"simd must be a power of two, not {simd}")
        self.depth = check_int("depth", depth)
        _check_formats(num, rsqrt_fmt)
        for mat in self.matrices:
            end = mat.weight_base + -(-mat.rows // lanes) * -(-mat.cols // simd)
            if end > depth:
                raise ValueError(f"{mat} ends at word {end}, past the depth {depth}")
        self.v_beats = sum(rows * -(-n // simd) for rows, n in (mat.v_shape for mat in self.matrices))
        self.g_beats = sum(mat.v_shape[0] for mat in self.matrices)
        self.buffer_depth = simd * max((-(-mat.rows // simd) for mat in self.matrices if mat.taps), default=0)
        self.cycles = matvec_weight_load_cycles([(mat.rows, mat.cols, mat.taps) for mat in self.matrices], simd,
                                                rsqrt_fmt.newton_steps)
        super().__init__(simd, num, rsqrt_fmt, {"store": Out(store_layout(lanes, depth, num.weight.width, simd)),
                                                "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        P, S, mats = self.lanes, self.simd, self.matrices
        lane_bits = (S - 1).bit_length()
        n = len(mats)
        unit = self._front(m, [mat.v_shape for mat in mats], frame_per_tensor=False)
        w = unit.w
        table = partial(_lookup, m)

        # ---- Where the unit's next beat belongs: matrix, v row, beat ------------------------------------------
        op = Signal(range(n))
        row = Signal(range(max(S, *(mat.v_shape[0] for mat in mats))))
        beat = Signal(range(max(-(-mat.v_shape[1] // S) for mat in mats)))
        transposed = table(op, [int(mat.taps > 0) for mat in mats], "transposed")
        words = table(op, [-(-mat.cols // S) for mat in mats], "words")
        row_end = beat == table(op, [-(-mat.v_shape[1] // S) - 1 for mat in mats], "beats_last")
        op_end = row_end & (row == table(op, [mat.v_shape[0] - 1 for mat in mats], "rows_last"))
        draining, drained = Signal(), Signal()  # drained: the drain's last word is being written
        m.d.comb += w.ready.eq(~draining & ~drained)
        take = w.valid & w.ready
        with m.If(take):
            m.d.sync += beat.eq(beat + 1)
            with m.If(row_end):
                m.d.sync += [beat.eq(0), row.eq(row + 1)]
                with m.If(op_end):
                    m.d.sync += [row.eq(0), op.eq(Mux(op == n - 1, 0, op + 1))]

        # ---- Row-normalised matrices: every beat is a word, written as it leaves the unit --------------------
        lane = Signal(range(P))
        slot_addr = Signal(range(self.depth), init=mats[0].weight_base)  # word 0 of the row's slot
        with m.If(take & row_end):
            with m.If(op_end):
                m.d.sync += [lane.eq(0), slot_addr.eq(table(op, [mats[(i + 1) % n].weight_base for i in range(n)],
                                                            "next_base"))]
            with m.Elif(~transposed & (lane == P - 1)):
                m.d.sync += [lane.eq(0), slot_addr.eq(slot_addr + words)]
            with m.Elif(~transposed):
                m.d.sync += lane.eq(lane + 1)
        m.d.comb += [self.store.valid.eq(take & ~transposed), self.store.lane.eq(lane),
                     self.store.addr.eq(slot_addr + beat), self.store.data.eq(w.payload.data)]
        in_flight = Signal(range(unit.buffer_depth + 4))  # v beats taken, not yet out of the unit
        m.d.sync += in_flight.eq(in_flight + (self.v.valid & self.v.ready) - take)
        pending = (in_flight != 0) | draining | drained
        if not self.buffer_depth:
            m.d.comb += self.busy.eq(pending)
            return m

        # ---- ConvTranspose: S rows into the transposition buffer, skewed so that both directions are a word ---
        group_row = row[:lane_bits]  # s: the row's place in its group
        m.d.comb += self.busy.eq(pending | (transposed & ((group_row != 0) | (beat != 0))))
        # Distributed RAM: the engine's block RAM is spoken for (the unit's weights fill it), LUTs are not.
        mems = [memory.Memory(shape=signed(self.num.weight.width), depth=self.buffer_depth, init=[],
                              attrs={"ram_style": "distributed"}) for _ in range(S)]
        reads = []
        for i, mem in enumerate(mems):
            m.submodules[f"transpose_{i}"] = mem
            wr = mem.write_port()
            reads.append(mem.read_port())
            # Memory i takes element (i - s) % S of the beat, at address beat * S + s.
            m.d.comb += [wr.addr.eq((beat << lane_bits) | group_row), wr.en.eq(take & transposed),
                         wr.data.eq(Array(w.payload.data)[(i + S - group_row)[:lane_bits]])]

        # ---- Drain: matrix row r = j * (rows / taps) + d is element e = d * taps + j of every row of the group -
        d_op = Signal(range(n))
        d_group = Signal(range(max(-(-mat.cols // S) for mat in mats)))
        d_rows = Signal(range(1, S + 1))  # rows of the group (the last group of a matrix may be short)
        max_out = max(mat.rows // max(mat.taps, 1) for mat in mats)
        d_d, d_j = Signal(range(max_out)), Signal(range(max(mat.taps for mat in mats)))
        d_e = Signal(range(self.buffer_depth))
        d_lane, d_slot = Signal(range(P)), Signal(range(self.depth))
        d_taps = table(d_op, [max(mat.taps, 1) for mat in mats], "d_taps")
        d_out_last = table(d_op, [mat.rows // max(mat.taps, 1) - 1 for mat in mats], "d_out_last")
        d_words = table(d_op, [-(-mat.cols // S) for mat in mats], "d_words")
        with m.If(take & transposed & row_end & ((group_row == S - 1) | op_end)):
            tail = table(op, [mat.cols - (-(-mat.cols // S) - 1) * S for mat in mats], "group_tail")
            m.d.sync += [draining.eq(1), d_op.eq(op), d_group.eq(row >> lane_bits), d_rows.eq(Mux(op_end, tail, S)),
                         d_d.eq(0), d_j.eq(0), d_e.eq(0), d_lane.eq(0),
                         d_slot.eq(table(op, [mat.weight_base for mat in mats], "base"))]
        for i, rd in enumerate(reads):
            # Element e of group row s = (i - e) % S is in memory i at address (e // S) * S + s.
            m.d.comb += rd.addr.eq(Cat((i + S - d_e[:lane_bits])[:lane_bits], d_e[lane_bits:]))
        st_lane, st_addr = Signal(range(P)), Signal(range(self.depth))
        st_rot, st_rows = Signal(range(S)), Signal(range(1, S + 1))
        m.d.sync += drained.eq(draining)
        with m.If(draining):
            m.d.sync += [st_lane.eq(d_lane), st_addr.eq(d_slot + d_group), st_rot.eq(d_e[:lane_bits]),
                         st_rows.eq(d_rows), d_d.eq(d_d + 1), d_e.eq(d_e + d_taps)]
            with m.If(d_d == d_out_last):
                m.d.sync += [d_d.eq(0), d_j.eq(d_j + 1), d_e.eq(d_j + 1)]
                with m.If(d_j == d_taps - 1):
                    m.d.sync += draining.eq(0)
            with m.If(d_lane == P - 1):
                m.d.sync += [d_lane.eq(0), d_slot.eq(d_slot + d_words)]
            with m.Else():
                m.d.sync += d_lane.eq(d_lane + 1)
        read_data = Array(rd.data for rd in reads)
        with m.If(drained):
            m.d.comb += [self.store.valid.eq(1), self.store.lane.eq(st_lane), self.store.addr.eq(st_addr)]
            m.d.comb += [self.store.data[s].eq(Mux(s < st_rows, read_data[(st_rot + s)[:lane_bits]], 0))
                         for s in range(S)]
        return m
