"""Weight loading: a checkpoint's weight-normed ``(g, v)`` through the weight-norm unit into an engine's memories."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.fixed import QFormat
from ..model.kernels import WEIGHT_NORM_SCALE_EXTRA, Numerics, RsqrtFormat
from ..model.perf import gru_weight_load_cycles
from .gemm import frame_layout
from .gru import GruGeometry
from .weightnorm import MAX_G_WIDTH, WeightNormUnit

__all__ = ["GruWeightLoader", "g_layout"]


def g_layout(width: int, frac_min: int, frac_max: int) -> data.StructLayout:
    """Payload of a loader's ``g`` stream: ``data`` (``signed(width)``) and ``frac`` (its fractional bits)."""
    return data.StructLayout({"data": signed(width), "frac": range(frac_min, frac_max + 1)})


class GruWeightLoader(wiring.Component):
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
    built with the run-time format option (``g_frac_max``). Legal fractions are ``g_frac_min = max(0,
    num.weight.frac - 5)`` (the unit's rounding shift must be at least one bit: ``|g|`` below about
    ``2**(W - 2 - g_frac_min)``) to ``g_frac_max = 2 * W`` (the most the float loader picks).

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
        if not isinstance(num, Numerics) or not 2 <= num.weight.width <= MAX_G_WIDTH:
            raise ValueError(f"num must be a Numerics with a weight width from 2 to {MAX_G_WIDTH} (g shares it, "
                             f"and the weight-norm unit's g is at most {MAX_G_WIDTH} bits), not {num!r}")
        if not isinstance(rsqrt_fmt, RsqrtFormat):
            raise ValueError(f"rsqrt_fmt must be an RsqrtFormat, not {rsqrt_fmt!r}")
        width = num.weight.width
        self.geometry, self.num = geometry, num
        self.g_frac_min = max(0, num.weight.frac - (WEIGHT_NORM_SCALE_EXTRA - 1))
        self.g_frac_max = 2 * width
        self.rsqrt_fmt = rsqrt_fmt
        self.buffer_depth = geometry.weight_depth * geometry.lanes
        self.cycles = gru_weight_load_cycles(geometry.input_size, geometry.hidden, geometry.layers,
                                             geometry.lanes, geometry.simd, rsqrt_fmt.newton_steps)
        word = frame_layout(signed(width), geometry.simd)
        super().__init__({
            "v": In(stream.Signature(word)),
            "g": In(stream.Signature(g_layout(width, self.g_frac_min, self.g_frac_max))),
            "weights": Out(stream.Signature(word)),
            "zero_row": Out(1),
            "clear": In(1),
            "error": Out(1),
        })

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
        width = self.num.weight.width
        # S lanes: a beat is an engine weight word. Rows as short as one word are fine, hence the max with S.
        m.submodules.unit = unit = WeightNormUnit(
            max(geo.input_size, geo.hidden, geo.simd), geo.simd, width, QFormat(width, self.g_frac_min),
            self.num.weight, self.rsqrt_fmt, g_frac_max=self.g_frac_max)

        # ---- Input: v and g into the unit; the row length and the framing check follow the v count --------
        wiring.connect(m, wiring.flipped(self.v), unit.v)
        m.d.comb += [
            unit.g.valid.eq(self.g.valid),
            unit.g.payload.eq(self.g.payload.data),
            unit.g_frac.eq(self.g.payload.frac),
            self.g.ready.eq(unit.g.ready),
            self.zero_row.eq(unit.zero_row),
            unit.clear.eq(self.clear),
        ]
        # Only layer 0's w_ih has rows of length I: every other tensor's rows have length H.
        in_tensor = Signal(range(2 * geo.layers))
        in_row = Signal(range(3 * H))
        in_word = Signal(range(max_words))
        in_words = Mux(in_tensor == 0, geo.x_words[0], geo.h_words)
        m.d.comb += unit.row_length.eq(Mux(in_tensor == 0, geo.input_size, H))
        in_first = (in_row == 0) & (in_word == 0)
        in_last = (in_row == 3 * H - 1) & (in_word == in_words - 1)
        with m.If(self.v.valid & self.v.ready):
            m.d.sync += in_word.eq(in_word + 1)
            with m.If(in_word == in_words - 1):
                m.d.sync += [in_word.eq(0), in_row.eq(in_row + 1)]
                with m.If(in_row == 3 * H - 1):
                    m.d.sync += [in_row.eq(0), in_tensor.eq(Mux(in_tensor == 2 * geo.layers - 1, 0, in_tensor + 1))]
            with m.If((self.v.payload.first != in_first) | (self.v.payload.last != in_last)):
                m.d.sync += self.error.eq(1)

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
