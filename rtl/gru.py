"""GRU engine: whole batch-1 steps of a multi-layer PyTorch ``nn.GRU``, weights and state resident on chip."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat, accumulator_width
from ..model.kernels import Numerics
from .activation import Activation, fabric_multiply
from .fixed import narrow, round_by, saturate, saturates
from .gemm import frame_layout
from .lanes import load_address_major
from .pe import dot_lane
from .pipeline import delayed
from .systolic import DSP_ACC_WIDTH, check_multiplier

__all__ = ["GruCommand", "GruEngine", "GruGeometry", "command_layout"]


class GruCommand(enum.Enum, shape=2):
    """Kind of a command on :class:`GruEngine`'s ``cmd`` stream."""

    #: One step of every layer: the input vector x of layer 0 (``ceil(I / S)`` beats).
    STEP = 0
    #: Load the hidden state h0 of every layer (``layers * ceil(H / S)`` beats, layer 0 first).
    STATE = 1
    #: Load the biases (``GruGeometry.bias_beats`` beats in the order of ``GruGeometry.bias_values``).
    BIAS = 2


def command_layout(act_width: int, simd: int) -> data.StructLayout:
    """Payload of the ``cmd`` stream: ``data`` (``simd`` act values), ``kind`` (:class:`GruCommand`), framing."""
    return data.StructLayout({"data": data.ArrayLayout(signed(act_width), simd), "kind": GruCommand,
                              "first": 1, "last": 1})


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class GruGeometry:
    """Sizes and schedule of a :class:`GruEngine`, without hardware (shared by the engine and its drivers).

    Lane ``p`` computes hidden units ``j = k * P + p`` for slots ``k = 0 .. U - 1`` (``U = ceil(H / P)``). A slot
    is six *segments* of vector words, ``S`` values each, in this order::

        r: x words, h words | z: x words, h words | i_n: x words | h_n: h words

    so a slot of layer ``l`` takes ``3 * (cx_l + ch)`` cycles, ``cx_l = ceil(I_l / S)``, ``ch = ceil(H / S)``
    (``I_0`` is the input size, ``I_l = H`` above). Every lane reads the same weight address in the same cycle:
    the weight memory of lane ``p`` holds, at consecutive addresses, the ``S`` weights each lane multiplies in
    each cycle of a step (all layers, slots and segments in order), zero where a row ends inside a word.
    """

    def __init__(self, input_size: int, hidden: int, layers: int, lanes: int, simd: int,
                 default_shift: int = Numerics().weight.frac):
        self.default_shift = check_int("default_shift", default_shift, 0)
        self.input_size = check_int("input_size", input_size)
        self.hidden = check_int("hidden", hidden)
        self.layers = check_int("layers", layers)
        self.lanes = check_int("lanes", lanes)
        self.simd = check_int("simd", simd)
        self.slots = _ceil_div(hidden, lanes)
        self.h_words = _ceil_div(hidden, simd)
        #: x words of each layer's input.
        self.x_words = [_ceil_div(input_size, simd)] + [self.h_words] * (layers - 1)
        self.slot_cycles = [3 * (cx + self.h_words) for cx in self.x_words]
        self.weight_depth = sum(self.slots * n for n in self.slot_cycles)
        #: Bias words: one per layer, slot and gate (r, z, n), each holding (b_i, b_h) for every lane.
        self.bias_depth = layers * self.slots * 3
        #: A ``BIAS`` command: the bias words' values, then each layer's narrowing shift.
        self.bias_beats = _ceil_div(self.bias_depth * 2 * lanes + layers, simd)

    def weight_words(self, w_ih, w_hh):
        """Contents of every lane's weight memory: an int64 array ``(weight_depth, lanes, simd)``.

        ``w_ih[l]``: ``(3H, I_l)``, ``w_hh[l]``: ``(3H, H)`` integer weights of layer ``l`` (PyTorch layout, gate
        order r, z, n). Lanes beyond H and columns beyond a row's end are zero.
        """
        hidden, lanes, simd = self.hidden, self.lanes, self.simd
        words = np.zeros((self.weight_depth, lanes, simd), dtype=np.int64)
        address = 0
        for layer in range(self.layers):
            wi = np.asarray(w_ih[layer], dtype=np.int64)
            wh = np.asarray(w_hh[layer], dtype=np.int64)
            segments = [(wi, 0), (wh, 0), (wi, 1), (wh, 1), (wi, 2), (wh, 2)]
            for k in range(self.slots):
                for matrix, gate in segments:
                    n_words = _ceil_div(matrix.shape[1], simd)
                    for p in range(lanes):
                        j = k * lanes + p
                        if j < hidden:
                            row = np.zeros(n_words * simd, dtype=np.int64)
                            row[:matrix.shape[1]] = matrix[gate * hidden + j]
                            words[address:address + n_words, p] = row.reshape(n_words, simd)
                    address += n_words
        return words

    def bias_values(self, b_ih, b_hh, shifts=None):
        """The act values of a ``BIAS`` command, in order (``bias_beats * simd`` of them, zero padded).

        Word ``(l * U + k) * 3 + g`` holds, for lane ``p``, ``b_ih[l][g * H + j]`` then ``b_hh[l][g * H + j]``
        with ``j = k * P + p`` (zero for ``j >= H``). Then one value per layer: its narrowing shift (the
        layer's weight ``frac``, :func:`~wavefabric.model.kernels.gru_cell`'s ``shift``; default
        ``default_shift`` for every layer).
        """
        shifts = [self.default_shift] * self.layers if shifts is None else [int(v) for v in shifts]
        if len(shifts) != self.layers:
            raise ValueError(f"{len(shifts)} shifts for {self.layers} layers")
        hidden, lanes = self.hidden, self.lanes
        values = np.zeros((self.layers, self.slots, 3, lanes, 2), dtype=np.int64)
        for layer in range(self.layers):
            for half, b in enumerate((b_ih[layer], b_hh[layer])):
                b = np.asarray(b, dtype=np.int64).reshape(3, hidden)
                for k in range(self.slots):
                    width = min(lanes, hidden - k * lanes)
                    values[layer, k, :, :width, half] = b[:, k * lanes:k * lanes + width]
        flat = np.concatenate([values.reshape(-1), shifts])
        return np.pad(flat, (0, self.bias_beats * self.simd - flat.size))


class GruEngine(wiring.Component):
    """Batch-1 steps of an L-layer PyTorch ``nn.GRU``: weights, biases and hidden state on chip.

    Each layer computes, bit-exact with :func:`wavefabric.model.kernels.gru_cell` (gate order r, z, n)::

        r = sigmoid(acc(W_ir x + W_hr h + b_ir + b_hr));  z = sigmoid(acc(W_iz x + W_hz h + b_iz + b_hz))
        n = tanh(sat(acc(W_in x + b_in) + narrow(r * acc(W_hn h + b_hn))))
        h' = sat(n' + narrow(z * (h - n'))),  n' = narrow(n, gate -> act)

    and layer ``l``'s h' is layer ``l + 1``'s x. The hidden states stay on chip between steps.

    **Datapath.** A matrix-vector unit of P lanes x S multipliers: each multiplier is a
    :class:`~wavefabric.rtl.pe.ProcessingElement` (the systolic array's cell, one DSP48E1) that accumulates
    every S-th product of a dot product; a lane sums its S partial sums in a registered adder tree, rounds it by
    the layer's run-time shift with the shared rule (:func:`wavefabric.rtl.fixed.round_by`), adds the bias (at
    act's format: the same integer as adding it shifted left before the rounding) and saturates. The schedule
    is in :class:`GruGeometry`: all lanes read one weight
    address and see one broadcast vector word per cycle. When a slot's four sums are narrowed, the lanes' units
    are loaded into a shift register that feeds one unit per cycle into the gate pipeline (two sigmoid
    :class:`~wavefabric.rtl.activation.Activation` tables, ``r * h_n``, tanh, ``z * (h - n')``), which writes
    h' into the state memory while the lanes compute the next slot. State is double-buffered per layer: a layer
    reads its old bank and writes the other, then the banks swap.

    **Streams.** Payloads carry ``first`` / ``last`` on the first and last beat of a command (a DMA's TLAST).
    The engine counts beats itself; a beat whose ``first`` / ``last`` disagree with the count sets the sticky
    ``error`` output.

    - ``weights`` (:func:`~wavefabric.rtl.gemm.frame_layout` of S ``signed(weight.width)``): the weight
      memories, ``weight_depth * P`` beats, address-major: beat ``a * P + p`` is lane ``p``'s word ``a``
      (:meth:`GruGeometry.weight_words`). Accepted only while no step is queued or running.
    - ``cmd`` (:func:`command_layout`): commands, each ``kind`` (:class:`GruCommand`) on all of its beats, data
      in act format, vectors packed S values per beat, zero padded:

      - ``STEP``: x of layer 0. Up to two steps are queued (the next x loads while a step runs).
      - ``STATE``: h0 of every layer. Waits until every queued step has finished and its output left.
      - ``BIAS``: :meth:`GruGeometry.bias_values`: the biases, then each layer's narrowing shift (per-layer
        formats: the layer's weight ``frac``; x, h and the gate inputs stay ``act``, which the tables index).
        Takes S cycles per beat; waits like ``STATE``.
    - ``out`` (:func:`~wavefabric.rtl.gemm.frame_layout` of S ``signed(act.width)``): h' of the **last** layer
      after each step, ``ceil(H / S)`` beats (padding lanes zero), ``first`` / ``last`` framing each step. The
      output of one step may wait on ``ready`` while the next step runs; the step after that waits for it.

    Parameters
    ----------
    input_size, hidden, layers : int
        GRU sizes I, H and L, each >= 1.
    lanes, simd : int
        P lanes of S multipliers each, >= 1 (P * S DSP48E1 for the products). When a layer needs more than one
        slot (P < H), a slot must last at least P cycles: ``P <= 3 * (ceil(I_l / S) + ceil(H / S))``.
    num : Numerics
        Formats: weights and activations must fit a 25 x 18 DSP48E1 multiplier; the accumulator for
        ``max(I, H) + H`` products plus the bias sum (``acc_width``) must fit the DSP48E1's 48-bit P register.
        The gate products (table interpolation, ``r * h_n``, ``z * (h - n')``) are built in LUTs
        (:func:`~wavefabric.rtl.activation.fabric_multiply`), so the engine uses exactly P * S DSP48E1.

    Ports
    -----
    weights, cmd : In(stream)
    out : Out(stream)
    error : Out(1)
        Sticky: a beat's ``first`` / ``last`` disagreed with the engine's count.
    saturated : Out(layers)
        Bit ``l``, sticky until the next ``STATE`` command: an ``i_n`` or ``h_n`` of layer ``l`` saturated (the
        ``saturated`` count of :func:`~wavefabric.model.kernels.gru_cell`; ``r`` and ``z`` saturate harmlessly).

    Attributes
    ----------
    geometry : GruGeometry
    acc_width : int
        Width of a lane's complete sum with the bias sum at the default shift (an upper bound of the sum the
        lanes round), from :func:`~wavefabric.model.fixed.accumulator_width`.
    tree_levels : int
        Registered levels of a lane's adder tree, ``ceil(log2 S)``.
    layer_cycles : list[int]
        Cycles of layer ``l`` from its first multiply to the next layer's:
        ``U * 3 * (cx_l + ch) + tree_levels + P + PIPELINE_TAIL``.
    step_cycles : int
        Cycles between the starts of back-to-back steps: ``sum(layer_cycles)``
        (:func:`wavefabric.model.perf.gru_step_cycles`).
    latency : int
        Cycles from the transfer of a step's last ``cmd`` beat (engine idle) to the transfer of its last output
        beat, when ``out`` is ready: ``step_cycles + ceil(H / S) + 2`` (one cycle to see the queued x, one to
        read the first output word).
    """

    #: Registers in each of the gate products r * h_n and z * (h - n') (built in LUTs: :func:`fabric_multiply`).
    GATE_MULTIPLY_STAGES = 2
    #: Cycle, counted from a unit's entry into the gate pipeline, in which its h' is written: sigmoids (3),
    #: r * h_n, the saturated sum (1), tanh (3), h - n' (1), z * (h - n').
    GATE_WRITE = 2 * Activation.latency + 2 + 2 * GATE_MULTIPLY_STAGES
    #: Cycles from a layer's last multiply to the next layer's first, beyond the tree levels and one per lane:
    #: weight/vector read (1), PE operand, product, sum and result registers (4), then the gate pipeline (whose
    #: first unit enters after the narrowing register) up to and including the write.
    PIPELINE_TAIL = 5 + GATE_WRITE

    def __init__(self, input_size: int, hidden: int, layers: int = 1, lanes: int = 8, simd: int = 8,
                 num: Numerics = Numerics()):
        if not isinstance(num, Numerics):
            raise ValueError(f"num must be a Numerics, not {num!r}")
        self.geometry = geo = GruGeometry(input_size, hidden, layers, lanes, simd, num.weight.frac)
        check_multiplier(num.weight, num.act)
        # The longest dot product (r or z of the wider layer) plus the bias sum b_i + b_h.
        self.acc_width = accumulator_width(num.weight, num.act, max(input_size, hidden) + hidden,
                                           bias=QFormat(num.act.width + 1, num.act.frac))
        if self.acc_width > DSP_ACC_WIDTH:
            raise ValueError(f"input_size {input_size} + hidden {hidden} need a {self.acc_width}-bit accumulator; "
                             f"legal sizes keep it within {DSP_ACC_WIDTH} bits (the DSP48E1 P register)")
        if geo.slots > 1 and lanes > min(geo.slot_cycles):
            raise ValueError(f"lanes {lanes} exceed the {min(geo.slot_cycles)} cycles of a slot: legal lanes are "
                             f"1 to {min(geo.slot_cycles)}, or >= hidden {hidden}")
        self.num = num
        self.tree_levels = (simd - 1).bit_length()
        self.layer_cycles = [geo.slots * n + self.tree_levels + lanes + self.PIPELINE_TAIL for n in geo.slot_cycles]
        self.step_cycles = sum(self.layer_cycles)
        self.latency = self.step_cycles + geo.h_words + 2
        super().__init__({
            "weights": In(stream.Signature(frame_layout(signed(num.weight.width), simd))),
            "cmd": In(stream.Signature(command_layout(num.act.width, simd))),
            "out": Out(stream.Signature(frame_layout(signed(num.act.width), simd))),
            "error": Out(1),
            "saturated": Out(layers),
        })

    def elaborate(self, platform):
        m = Module()
        geo, num = self.geometry, self.num
        act = num.act
        S, P, L, H = geo.simd, geo.lanes, geo.layers, geo.hidden
        U, ch, cx0 = geo.slots, geo.h_words, geo.x_words[0]
        prod_frac = num.gate.frac + act.frac
        vector = data.ArrayLayout(signed(act.width), S)

        # --- Memories -------------------------------------------------------------------------------------------
        weight_mems = []
        for p in range(P):
            mem = Memory(shape=data.ArrayLayout(signed(num.weight.width), S), depth=geo.weight_depth, init=[])
            m.submodules[f"weights_{p}"] = mem
            weight_mems.append(mem)
        weight_writes = [mem.write_port() for mem in weight_mems]
        weight_reads = [mem.read_port() for mem in weight_mems]
        # State: bank b of layer l at words (2 * l + b) * ch ...; written element by element by the gate pipeline.
        m.submodules.state = state = Memory(shape=vector, depth=2 * L * ch, init=[])
        state_write = state.write_port(granularity=1)
        vec_read, h_read, out_read = state.read_port(), state.read_port(), state.read_port()
        m.submodules.xbuf = xbuf = Memory(shape=vector, depth=2 * cx0, init=[])
        x_write, x_read = xbuf.write_port(), xbuf.read_port()
        m.submodules.bias = bias = Memory(shape=data.ArrayLayout(signed(act.width), 2 * P), depth=geo.bias_depth,
                                          init=[])
        bias_write, bias_read = bias.write_port(granularity=1), bias.read_port()

        # --- Step sequencer -------------------------------------------------------------------------------------
        sel = Signal(L)                       # bank holding each layer's current h
        sel_next = Signal(L)                  # sel after this cycle (a layer's banks swap as it ends)
        full = Signal(2)                      # x banks holding a queued step
        rd_bank, wr_bank = Signal(), Signal()
        layer = Signal(range(L))
        slot = Signal(range(U))
        seg = Signal(range(6))
        word = Signal(range(max(cx0, ch)))
        waddr = Signal(range(geo.weight_depth))
        slot_base = Signal(range(geo.bias_depth))
        tail = Signal(range(max(self.layer_cycles)))
        h_base = Signal(range(2 * L * ch))    # this layer's old bank
        n_base = Signal(range(2 * L * ch))    # this layer's new bank
        x_base = Signal(range(2 * L * ch))    # the previous layer's new bank (x of layers >= 1)
        out_busy, out_word = Signal(), Signal(range(ch))
        out_base = Signal(range(2 * L * ch))
        out_valid = Signal()

        seg_is_x = (seg == 0) | (seg == 2) | (seg == 4)
        x_words = Const(cx0) if L == 1 else Mux(layer == 0, cx0, ch)
        word_end = word == Mux(seg_is_x, x_words, ch) - 1
        layer_end = (slot == U - 1) & (seg == 5) & word_end
        issue = Signal()
        m.d.comb += [x_read.addr.eq(rd_bank * cx0 + word), vec_read.addr.eq(Mux(seg_is_x, x_base, h_base) + word)]
        m.d.comb += [read.addr.eq(waddr) for read in weight_reads]
        # Index of the unit entering the gate pipeline, within the layer, as a word and lane of the state vector.
        j = Signal(range(U * P + 1))
        j_word, j_lane = Signal(range((U * P - 1) // S + 1)), Signal(range(S))

        def bank_base(index, bank):
            return (2 * index + bank) * ch

        def start_layer(index):
            m.d.sync += [slot.eq(0), seg.eq(0), word.eq(0), j.eq(0), j_word.eq(0), j_lane.eq(0),
                         h_base.eq(bank_base(index, sel_next.bit_select(index, 1))),
                         n_base.eq(bank_base(index, ~sel_next.bit_select(index, 1)))]

        def begin_step():
            start_layer(0)
            m.d.sync += [layer.eq(0), waddr.eq(0), slot_base.eq(0)]
            m.next = "RUN"

        def hand_off():
            m.d.sync += [out_busy.eq(1), out_word.eq(0), out_base.eq(n_base)]

        m.d.comb += sel_next.eq(sel)
        m.d.sync += sel.eq(sel_next)
        quiet = Signal()  # nothing queued, running or being sent: state and parameters may be loaded
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += quiet.eq((full == 0) & ~out_busy & ~out_valid)
                with m.If(full.bit_select(rd_bank, 1)):
                    begin_step()
            with m.State("RUN"):
                m.d.comb += issue.eq(1)
                m.d.sync += [waddr.eq(waddr + 1), word.eq(word + 1)]
                with m.If(word_end):
                    m.d.sync += [word.eq(0), seg.eq(seg + 1)]
                    with m.If(seg == 5):
                        m.d.sync += [seg.eq(0), slot.eq(slot + 1), slot_base.eq(slot_base + 3)]
                with m.If(layer_end):
                    m.d.sync += tail.eq(0)
                    m.next = "TAIL"
            with m.State("TAIL"):
                # Wait until the layer's last h' is written: every tail has the same fixed length.
                m.d.sync += tail.eq(tail + 1)
                with m.If(tail == self.tree_levels + P + self.PIPELINE_TAIL - 1):
                    m.d.comb += sel_next.bit_select(layer, 1).eq(~sel.bit_select(layer, 1))
                    with m.If(layer == L - 1):
                        # The step is done: free its x bank, hand h' to the output, start the next queued step.
                        m.d.sync += [full.bit_select(rd_bank, 1).eq(0), rd_bank.eq(~rd_bank)]
                        with m.If(out_busy):
                            m.next = "DONE"
                        with m.Else():
                            hand_off()
                            m.next = "IDLE"
                            with m.If(full.bit_select(~rd_bank, 1)):
                                begin_step()
                    with m.Else():
                        m.d.sync += [layer.eq(layer + 1), x_base.eq(n_base)]
                        start_layer(layer + 1)
                        m.next = "RUN"
            with m.State("DONE"):
                # The previous step's output is still leaving: its bank is the next step's to write.
                with m.If(~out_busy):
                    hand_off()
                    m.next = "IDLE"

        # --- Lanes: P x S processing elements, adder trees, bias and narrowing -------------------------------
        ctl_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "gate": 2, "bias": len(slot_base),
                                        "layer": range(L)})
        ctl = Signal(ctl_layout)
        first_seg = (seg == 0) | (seg == 2) | (seg == 4) | (seg == 5)
        last_seg = (seg == 1) | (seg == 3) | (seg == 4) | (seg == 5)
        gate = Mux(seg == 1, 0, Mux(seg == 3, 1, Mux(seg == 4, 2, 3)))  # r, z, i_n, h_n
        m.d.comb += [
            ctl.valid.eq(issue),
            ctl.first.eq(issue & (word == 0) & first_seg),
            ctl.last.eq(issue & word_end & last_seg),
            ctl.gate.eq(gate),
            ctl.bias.eq(slot_base + Mux(gate == 3, 2, gate)),
            ctl.layer.eq(layer),
        ]
        ctl_pe = delayed(m, ctl, 1, "ctl_pe")
        use_x = delayed(m, issue & seg_is_x & (layer == 0), 1, "use_x")
        vec = Signal(vector)
        m.d.comb += vec.eq(Mux(use_x, x_read.data, vec_read.data))
        # The PE result holds a sum from 4 cycles after its k-step enters; the tree adds tree_levels more.
        ctl_bias = delayed(m, ctl_pe, 3 + self.tree_levels, "ctl_bias")
        ctl_narrow = delayed(m, ctl_bias, 1, "ctl_narrow")
        m.d.comb += bias_read.addr.eq(ctl_bias.bias)
        pe_width = accumulator_width(num.weight, act, max(geo.x_words) + ch)
        # Each layer's narrowing shift (its weight frac), loaded with the biases.
        shifts = Array(Signal(range(self.acc_width + 1), name=f"shift_{layer}", init=num.weight.frac)
                       for layer in range(L))
        shift = shifts[ctl_narrow.layer]
        saturated = Signal(L)
        candidate = (ctl_narrow.gate == 2) | (ctl_narrow.gate == 3)  # i_n, h_n
        unit = data.StructLayout({"r": signed(act.width), "z": signed(act.width), "i_n": signed(act.width),
                                  "h_n": signed(act.width), "valid": 1})
        chain = [Signal(unit, name=f"chain_{p}") for p in range(P)]
        for p in range(P):
            total = dot_lane(m, f"lane_{p}", [weight_reads[p].data[s] for s in range(S)], [vec[s] for s in range(S)],
                             ctl_pe, num.weight.width, act.width, pe_width)
            b_i, b_h = bias_read.data[2 * p], bias_read.data[2 * p + 1]
            bias_sum = Mux(ctl_narrow.gate != 3, b_i, 0) + Mux(ctl_narrow.gate != 2, b_h, 0)
            # A bias at act's frac added after the rounding shift equals it added << shift before it.
            rounded = round_by(total, shift) + bias_sum
            value = saturate(rounded, act)
            with m.If(ctl_narrow.last & candidate & saturates(rounded, act)):
                m.d.sync += saturated.bit_select(ctl_narrow.layer, 1).eq(1)
            held = {name: Signal(signed(act.width), name=f"{name}_{p}") for name in ("r", "z", "i_n")}
            with m.If(ctl_narrow.last):
                for g, name in enumerate(("r", "z", "i_n")):
                    with m.If(ctl_narrow.gate == g):
                        m.d.sync += held[name].eq(value)
            # When a slot's last sum (h_n) is narrowed, its P units enter the shift register; else it shifts.
            with m.If(ctl_narrow.last & (ctl_narrow.gate == 3)):
                m.d.sync += [chain[p].r.eq(held["r"]), chain[p].z.eq(held["z"]), chain[p].i_n.eq(held["i_n"]),
                             chain[p].h_n.eq(value), chain[p].valid.eq(1)]
            with m.Else():
                m.d.sync += chain[p].eq(chain[p + 1] if p + 1 < P else 0)

        # --- Gate pipeline: one unit per cycle, entering from chain[0] in cycle c0 ------------------------------
        # Cycle (relative to c0) in which each value is available; the two gate products take GATE_MULTIPLY_STAGES.
        mul = self.GATE_MULTIPLY_STAGES
        t_gates = Activation.latency            # r, z
        t_rh = t_gates + mul                    # r * h_n
        t_pre = t_rh + 1                        # i_n + narrow(r * h_n), saturated
        t_n = t_pre + Activation.latency        # n
        t_diff = t_n + 1                        # h - n', n'
        t_write = t_diff + mul                  # z * (h - n'); h' is written in this cycle
        head = chain[0]
        m.submodules.sigmoid_r = sigmoid_r = Activation(num.sigmoid)
        m.submodules.sigmoid_z = sigmoid_z = Activation(num.sigmoid)
        m.submodules.tanh = tanh = Activation(num.tanh)
        m.d.comb += [sigmoid_r.x.eq(head.r), sigmoid_z.x.eq(head.z)]
        with m.If(head.valid):
            m.d.sync += [j.eq(j + 1), j_lane.eq(j_lane + 1)]
            with m.If(j_lane == S - 1):
                m.d.sync += [j_lane.eq(0), j_word.eq(j_word + 1)]
        keep = delayed(m, head.valid & (j < H), t_write, "keep")
        word_read = delayed(m, j_word, t_n - 1, "j_word")
        lane_read = delayed(m, j_lane, t_n, "j_lane")
        word_write = delayed(m, word_read, t_write - t_n + 1, "j_word_r")
        lane_write = delayed(m, lane_read, t_write - t_n, "j_lane_r")

        # Sigmoid outputs are never negative: their sign bit is left out of the products.
        gate_bits = num.gate.width - 1
        rh = fabric_multiply(m, delayed(m, head.h_n, t_gates, "h_n"), sigmoid_r.y[:gate_bits], stages=mul, name="rh")
        pre_n = Signal(signed(act.width))
        m.d.sync += pre_n.eq(saturate(delayed(m, head.i_n, t_rh, "i_n") + narrow(rh, prod_frac, act), act))
        m.d.comb += [tanh.x.eq(pre_n), h_read.addr.eq(h_base + word_read)]
        n_act = narrow(tanh.y, num.gate.frac, act)
        diff = Signal(signed(act.width + 1))
        m.d.sync += diff.eq(h_read.data[lane_read] - n_act)
        zd = fabric_multiply(m, diff, delayed(m, sigmoid_z.y, t_diff - t_gates, "z")[:gate_bits], stages=mul, name="zd")
        h_new = saturate(delayed(m, n_act, t_write - t_n, "n_act") + narrow(zd, prod_frac, act), act)

        # --- State writes: h' from the gate pipeline while running, h0 from a STATE command otherwise ---------
        kind_reg = Signal(2)
        beat = Signal(range(max(cx0, L * ch, geo.bias_beats)))
        kind = Mux(beat == 0, self.cmd.payload.kind, kind_reg)
        is_step, is_state, is_bias = (kind == GruCommand.STEP), (kind == GruCommand.STATE), (kind == GruCommand.BIAS)
        st_layer, st_word = Signal(range(L)), Signal(range(ch))
        with m.If(keep):
            m.d.comb += [state_write.addr.eq(n_base + word_write), state_write.en.eq(1 << lane_write)]
            m.d.comb += [state_write.data[s].eq(h_new) for s in range(S)]
        with m.Else():
            m.d.comb += [state_write.addr.eq(bank_base(st_layer, sel.bit_select(st_layer, 1)) + st_word),
                         state_write.data.eq(self.cmd.payload.data),
                         state_write.en.eq(Mux(self.cmd.valid & self.cmd.ready & is_state, (1 << S) - 1, 0))]

        # --- Command stream ---------------------------------------------------------------------------------------
        bias_elem = Signal(range(S))
        bias_addr = Signal(range(geo.bias_depth + L // (2 * P) + 2))
        bias_chunk = Signal(range(2 * P))
        take = self.cmd.valid & self.cmd.ready
        with m.If(is_step):
            m.d.comb += self.cmd.ready.eq(~full.bit_select(wr_bank, 1))
        with m.Elif(is_state):
            m.d.comb += self.cmd.ready.eq(quiet)
        with m.Elif(is_bias):
            m.d.comb += self.cmd.ready.eq(quiet & (bias_elem == S - 1))
        cmd_last = Mux(is_step, beat == cx0 - 1,
                       Mux(is_state, (st_layer == L - 1) & (st_word == ch - 1), beat == geo.bias_beats - 1))
        error = Signal()
        with m.If(take):
            m.d.sync += [beat.eq(beat + 1), kind_reg.eq(kind)]
            with m.If(cmd_last):
                m.d.sync += beat.eq(0)
            with m.If((self.cmd.payload.first != (beat == 0)) | (self.cmd.payload.last != cmd_last)):
                m.d.comb += error.eq(1)
        m.d.comb += [x_write.addr.eq(wr_bank * cx0 + beat), x_write.data.eq(self.cmd.payload.data),
                     x_write.en.eq(take & is_step)]
        with m.If(take & is_step & cmd_last):
            m.d.sync += [full.bit_select(wr_bank, 1).eq(1), wr_bank.eq(~wr_bank)]
        m.d.comb += self.saturated.eq(saturated)
        with m.If(take & is_state):
            m.d.sync += [st_word.eq(st_word + 1), saturated.eq(0)]
            with m.If(st_word == ch - 1):
                m.d.sync += [st_word.eq(0), st_layer.eq(st_layer + 1)]
                with m.If(st_layer == L - 1):
                    m.d.sync += st_layer.eq(0)
        # A BIAS beat is written one value per cycle: the memory has one lane-pair per act value.
        with m.If(self.cmd.valid & quiet & is_bias):
            m.d.comb += [bias_write.addr.eq(bias_addr),
                         bias_write.en.eq(Mux(bias_addr < geo.bias_depth, 1 << bias_chunk, 0))]
            m.d.comb += [bias_write.data[c].eq(self.cmd.payload.data[bias_elem]) for c in range(2 * P)]
            m.d.sync += [bias_elem.eq(bias_elem + 1), bias_chunk.eq(bias_chunk + 1)]
            with m.If(bias_elem == S - 1):
                m.d.sync += bias_elem.eq(0)
            for index in range(L):
                with m.If((bias_addr == geo.bias_depth + index // (2 * P)) & (bias_chunk == index % (2 * P))):
                    m.d.sync += shifts[index].eq(self.cmd.payload.data[bias_elem])
            with m.If(bias_chunk == 2 * P - 1):
                m.d.sync += [bias_chunk.eq(0), bias_addr.eq(bias_addr + 1)]
            with m.If(take & cmd_last):
                m.d.sync += [bias_chunk.eq(0), bias_addr.eq(0)]

        # --- Weight stream: address-major, one lane's word per beat ----------------------------------------------
        load_address_major(m, self.weights, weight_writes, geo.weight_depth, quiet, error)
        with m.If(error):
            m.d.sync += self.error.eq(1)

        # --- Output: the last layer's new bank, one word per beat; the read port holds while out stalls -------
        advance = ~out_valid | self.out.ready
        out_first, out_last = Signal(), Signal()
        m.d.comb += [out_read.addr.eq(out_base + out_word), out_read.en.eq(advance), self.out.valid.eq(out_valid),
                     self.out.payload.first.eq(out_first), self.out.payload.last.eq(out_last)]
        with m.If(advance):
            m.d.sync += [out_valid.eq(out_busy), out_first.eq(out_word == 0), out_last.eq(out_word == ch - 1)]
            with m.If(out_busy):
                m.d.sync += out_word.eq(out_word + 1)
                with m.If(out_word == ch - 1):
                    m.d.sync += [out_busy.eq(0), out_word.eq(0)]
        pad = ch * S - H  # lanes of the last word beyond H
        for s in range(S):
            lane = out_read.data[s]
            m.d.comb += self.out.payload.data[s].eq(Mux(out_last, 0, lane) if s >= S - pad else lane)
        return m
