"""SampleRNN accelerator: the whole autoregressive generator, sample after sample, with no host in the loop."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int
from ..model.fixed import QFormat
from ..model.perf import gru_lanes_per_tier
from ..model.sampler import pcm16
from ..model.samplernn import MAX_MLP_SHIFT, SampleRNNConfig, SampleRNNFormats, saturation_names, tier_input_values
from .axi import read_address_layout, read_data_layout
from .fixed import round_by, saturate
from .gru import GruCommand, GruEngine
from .gumbel import GumbelSampler
from .loader import MatVecWeightLoader, NormedMatrix
from .matvec import MatVecUnit

__all__ = ["SampleRNNLayout", "SampleRNNEngine", "LoadRegion", "job_layout", "sample_layout"]

#: Table entries per DDR beat (64-bit reads of 16-bit entries).
TABLE_LANES = 4


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


@dataclass(frozen=True)
class MatVecOp:
    """One matrix of the :class:`~wavefabric.rtl.matvec.MatVecUnit` schedule and where its vectors live.

    ``source`` is ``"history"`` (the sample history of ``tier``) or a scratch word address; ``extra`` is the
    scratch tier whose conditioning row is added (None for none); ``dest`` a scratch word address, or None for
    the sampler. ``taps`` is the kernel size of a ConvTranspose1d (``upsampling``: its weight is normalised per
    matrix column, :class:`~wavefabric.rtl.loader.NormedMatrix`), 0 for the others.
    """

    name: str
    rows: int
    cols: int
    relu: bool
    source: int | str
    tier: int
    extra: int | None
    dest: int | None
    weight_base: int = 0
    bias_base: int = 0
    taps: int = 0


class LoadRegion:
    """Regions of the ``load`` stream, each one frame (``first`` ... ``last``)."""

    #: Narrowing shifts: one per matrix (:attr:`SampleRNNLayout.ops`), then the MLP input's.
    CONFIG = 0
    #: :class:`~wavefabric.rtl.matvec.MatVecUnit` weights as they are, address-major (its ``weights`` stream):
    #: for checkpoints without weight norm, or any precomputed image.
    MATVEC_WEIGHTS = 1
    #: Its biases (its ``biases`` stream).
    MATVEC_BIASES = 2
    #: h0 of every tier and layer, top... bottom tier order by index: tier 0 first, each layer a whole word.
    H0 = 3
    #: The newest position's table rows, ``TABLE_LANES`` entries per beat (the first lanes of ``data``).
    TABLE = 4
    #: The matrix-vector unit's weights as a weight-normed checkpoint stores them, through the weight-norm unit
    #: (:class:`~wavefabric.rtl.loader.MatVecWeightLoader`; engines of ``config.weight_norm`` only): for every
    #: matrix in :attr:`SampleRNNLayout.ops` order, for every row of ``v.reshape(O, -1)``, a ``g`` beat (lane 0
    #: the row's ``g`` in ``QFormat(W, frac)``, lane 1 ``frac``, the tensor's one ``g`` format) and then the row's
    #: ``ceil(len / S)`` ``v`` beats (element ``e`` in lane ``e % S`` of beat ``e // S``, the rest zero).
    MATVEC_NORMED = 5

    @staticmethod
    def gru_weights(tier: int) -> int:
        """Tier ``tier``'s :class:`~wavefabric.rtl.gru.GruEngine` weights (its ``weights`` stream)."""
        return 6 + 2 * tier

    @staticmethod
    def gru_biases(tier: int) -> int:
        """Its biases (a ``BIAS`` command on its ``cmd`` stream)."""
        return 7 + 2 * tier


class SampleRNNLayout:
    """Sizes, memory maps and schedule of a :class:`SampleRNNEngine`, without hardware (shared with its drivers).

    Scratch memory (words of S act values): per tier its conditioning rows (``frame_size * ceil(dim / S)``
    words), its GRU input and output (one vector each) and its h0 (``n_rnn`` vectors); the MLP's input and
    hidden vectors. The matrices run on the matrix-vector unit in :attr:`ops` order: per tier ``input_expand``
    then ``upsampling``, then the MLP's ``hidden`` and ``output``.

    The MLP input table ``T[j, s, :]`` (:attr:`~wavefabric.model.samplernn.SampleRNNFixed.mlp_table`) lives in
    DDR at ``table_base``: row ``(j, s)`` is ``row_beats`` 64-bit words (four 16-bit entries each, zero padded) at
    byte ``table_base + (j * q + s) * row_bytes``; ``row_bytes`` is a power of two, so no burst crosses 4 KiB when
    ``table_base`` is 4 KiB aligned. The newest position's rows (``j = frame_sizes[0] - 1``) are also on chip.
    """

    def __init__(self, config: SampleRNNConfig, lanes: int = 8, simd: int = 8, gru_lanes=None):
        if not isinstance(config, SampleRNNConfig):
            raise ValueError(f"config must be a SampleRNNConfig, not {type(config).__name__}")
        self.config = config
        self.lanes = check_int("lanes", lanes)
        self.simd = check_int("simd", simd, 4)
        if simd & (simd - 1):
            raise ValueError(f"simd must be a power of two >= 4, not {simd}")
        #: Lanes of each tier's GRU engine, bottom tier first (:func:`~wavefabric.model.perf.gru_lanes_per_tier`).
        self.gru_lanes = gru_lanes_per_tier(config.n_tiers, gru_lanes)
        num = config.numerics
        if config.frame_sizes[0] < 2:
            raise ValueError(f"frame_sizes[0] must be >= 2 on the accelerator (its older table rows come from "
                             f"DDR), not {config.frame_sizes[0]}")
        if config.table.width > 16:
            raise ValueError(f"config.table ({config.table}) must be at most 16 bits wide on the accelerator "
                             f"(DDR entries are 16-bit)")
        if config.logits.width != num.act.width:
            raise ValueError(f"config.logits ({config.logits}) must be as wide as act ({num.act})")
        if config.q_levels > 1 << 16:
            raise ValueError(f"q_levels must be at most 65536 on the accelerator, not {config.q_levels}")
        dim, q, S = config.dim, config.q_levels, simd
        self.dim_words = dw = -(-dim // S)
        self.row_beats = rb = -(-dim // TABLE_LANES)
        if rb > 256:
            raise ValueError(f"dim must be at most {256 * TABLE_LANES} (a table row is one AXI burst), not {dim}")
        self.row_stride = _pow2(rb)          # words of a row on chip and in the partial sums
        self.row_bytes = 8 * self.row_stride
        self.table_bytes = config.frame_sizes[0] * q * self.row_bytes
        # Scratch memory map.
        address = 0

        def take(words: int) -> int:
            nonlocal address
            base, address = address, address + words
            return base

        self.cond = [take(fs * dw) for fs in config.frame_sizes]
        self.gru_x = [take(dw) for _ in config.frame_sizes]
        self.gru_h = [take(dw) for _ in config.frame_sizes]
        self.h0 = take(config.n_tiers * config.n_rnn * dw)
        self.mlp_x, self.mlp_h = take(dw), take(dw)
        self.scratch_depth = address
        # The matrices, in schedule order, packed into the unit's memories.
        ops: list[MatVecOp] = []
        for k, (fs, nfs) in enumerate(zip(config.frame_sizes, config.n_frame_samples, strict=True)):
            upper = k + 1 if k + 1 < config.n_tiers else None
            ops.append(MatVecOp(f"tier{k}.input_expand", dim, nfs, False, "history", k, upper, self.gru_x[k]))
            ops.append(MatVecOp(f"tier{k}.upsampling", fs * dim, dim, False, self.gru_h[k], k, None, self.cond[k],
                                taps=fs))
        ops.append(MatVecOp("mlp.hidden", dim, dim, True, self.mlp_x, 0, None, self.mlp_h))
        ops.append(MatVecOp("mlp.output", q, dim, False, self.mlp_h, 0, None, None))
        weight_base = bias_base = 0
        self.ops = []
        for op in ops:
            self.ops.append(MatVecOp(**{**op.__dict__, "weight_base": weight_base, "bias_base": bias_base}))
            weight_base += self.slots(op) * self.words(op)
            bias_base += op.rows
        self.weight_depth, self.bias_rows = weight_base, bias_base
        self.max_cols = max(op.cols for op in self.ops)
        self.max_rows = max(op.rows for op in self.ops)
        self.config_values = len(self.ops) + 1
        self.config_beats = -(-self.config_values // S)
        self.load_width = max(num.act.width, num.weight.width, config.table.width)

    def slots(self, op: MatVecOp) -> int:
        return -(-op.rows // self.lanes)

    def words(self, op: MatVecOp) -> int:
        return -(-op.cols // self.simd)

    def normed_matrices(self) -> list[NormedMatrix]:
        """The matrices of :attr:`ops` as the weight loader places them (``upsampling`` normalised per column)."""
        return [NormedMatrix(op.weight_base, op.rows, op.cols, op.taps) for op in self.ops]

    def shifts(self, formats: SampleRNNFormats | None = None) -> list[int]:
        """The ``CONFIG`` values: each matrix's narrowing shift, then the MLP input's, for ``formats`` (default:
        :meth:`~wavefabric.model.samplernn.SampleRNNFormats.default`)."""
        formats = formats or SampleRNNFormats.default(self.config)
        if formats.config != self.config:
            raise ValueError("the formats are not of this layout's config")
        return list(formats.shifts().values())[:self.config_values]

    def saturation_names(self) -> list[str]:
        """The narrowing of each bit of the engine's ``saturated`` output, bit 0 first
        (:func:`~wavefabric.model.samplernn.saturation_names`)."""
        return saturation_names(self.config)


def job_layout(addr_width: int = 32) -> data.StructLayout:
    """Payload of ``cmd``: one generation job.

    ``count`` samples (>= 1), the sampler's ``seed`` state (nonzero,
    :func:`~wavefabric.model.sampler.seed_state`), ``temperature`` (``tq``,
    :func:`~wavefabric.model.sampler.temperature_int`) and the table's byte address ``table_base``.
    """
    return data.StructLayout({"count": unsigned(32), "seed": unsigned(32), "temperature": unsigned(16),
                              "table_base": unsigned(addr_width)})


def sample_layout(q_levels: int) -> data.StructLayout:
    """Payload of ``out``: a sample's ``code``, its 16-bit ``pcm`` and ``last`` on a job's final sample."""
    return data.StructLayout({"code": range(q_levels), "pcm": signed(16), "last": 1})


class SampleRNNEngine(wiring.Component):
    """SampleRNN generation in hardware, bit-exact with :meth:`~wavefabric.model.samplernn.SampleRNNFixed.generate`.

    **Blocks.** A :class:`~wavefabric.rtl.gru.GruEngine` per tier (weights and state on chip); one
    :class:`~wavefabric.rtl.matvec.MatVecUnit` for every other matrix (the tiers' ``input_expand`` and
    ``upsampling``, the MLP's ``hidden`` and ``output``); the MLP input as table rows summed; a
    :class:`~wavefabric.rtl.gumbel.GumbelSampler`; the sample history in registers. With ``config.weight_norm``,
    a :class:`~wavefabric.rtl.loader.MatVecWeightLoader` (one weight-norm unit of S lanes and an S-row
    transposition buffer) normalises the unit's matrices from the checkpoint's ``(g, v)`` as they load.

    **Loading.** Weights load once, while no job runs, as frames of :class:`LoadRegion` on ``load``. The
    matrix-vector unit's matrices come either as they are (``MATVEC_WEIGHTS``) or, with ``config.weight_norm``, as
    ``(g, v)`` (``MATVEC_NORMED``): each row's ``g`` beat goes into a one-entry register, which the loader takes
    with the row's last ``v`` beat. The loader finishes its rows after the frame's last beat (its
    :func:`~wavefabric.model.perf.matvec_weight_load_cycles`); meanwhile other regions but ``MATVEC_WEIGHTS`` load
    on, and jobs wait.

    **Schedule, per sample** (each step starts when the one before it has finished): at a bottom-tier frame
    boundary, every tier that is due runs top down: ``input_expand`` on the tier's history window plus the upper
    tier's conditioning row, a GRU step, ``upsampling`` into the tier's conditioning rows. Then the MLP: the
    table rows of the frame's positions are summed (the newest position's row from on-chip memory, the others
    from a partial sum prefetched from DDR while the previous sample ran) with the conditioning row, narrowed,
    ReLU; ``hidden`` with ReLU; ``output``, whose logits stream through the sampler; the code enters the history
    and the output FIFO. The cycle count is :func:`~wavefabric.model.perf.samplernn_cycles`.

    Ports
    -----
    load : In(stream)
        ``data`` (S values of ``load_width`` bits), ``region`` (:class:`LoadRegion`), ``first``, ``last``: one
        frame per region, taken while no job runs.
    cmd : In(stream)
        :func:`job_layout`: one job per beat, taken while no job runs.
    out : Out(stream)
        :func:`sample_layout`: every generated sample.
    ar, r : Out(stream), In(stream)
        AXI4 read channels (:mod:`wavefabric.rtl.axi`) to the table in DDR.
    busy : Out(1)
        A job is running.
    error : Out(1)
        Sticky: a load frame's framing was wrong, a ``g`` beat's ``frac`` was outside the loader's
        ``g_frac_min .. g_frac_max``, or a DDR read answered with an error.
    saturated : Out
        Sticky per job (cleared when a job starts): bit ``i`` is set when narrowing
        :meth:`SampleRNNLayout.saturation_names` ``[i]`` saturated a value (the matrices', the MLP input's, each GRU
        layer's ``i_n`` / ``h_n``), exactly when :attr:`~wavefabric.model.samplernn.SampleRNNFixed.saturations`
        counts one.
    zero_row : Out(1)
        Sticky until the next ``MATVEC_NORMED`` frame: a ``v`` row of that frame was all zeros (its weights load
        as zeros, where float weight norm would divide by zero). Always 0 without ``config.weight_norm``.

    Parameters
    ----------
    config : SampleRNNConfig
        Sizes and the fixed formats; the per-layer formats
        (:class:`~wavefabric.model.samplernn.SampleRNNFormats`) are run-time configuration: their shifts load in
        ``LoadRegion.CONFIG`` and at the end of each ``gru_biases`` frame.
    lanes, simd : int
        The matrix-vector unit's P and S (S a power of two >= 4; also the GRU engines' S).
    gru_lanes : int, sequence of int or None
        Lanes of each tier's GRU engine, bottom tier first; one int for every tier; None for 8 on the bottom
        tier and 4 above (:func:`~wavefabric.model.perf.gru_lanes_per_tier`).
    fifo_depth : int
        Samples the output FIFO holds, >= 2.
    """

    def __init__(self, config: SampleRNNConfig, lanes: int = 8, simd: int = 8, gru_lanes=None,
                 fifo_depth: int = 16, addr_width: int = 32):
        self.layout = lay = SampleRNNLayout(config, lanes, simd, gru_lanes)
        self.fifo_depth = check_int("fifo_depth", fifo_depth, 2)
        self.addr_width = check_int("addr_width", addr_width, 12, 64)
        num = config.numerics
        self.matvec = MatVecUnit(lanes, simd, lay.weight_depth, lay.bias_rows, lay.max_cols, lay.max_rows, num)
        self.grus = [GruEngine(config.dim, config.dim, config.n_rnn, tier_lanes, simd, num)
                     for tier_lanes in lay.gru_lanes]
        self.sampler = GumbelSampler(config.logits, config.q_levels, config.gumbel_bits)
        self.loader = (MatVecWeightLoader(lay.normed_matrices(), lanes, simd, lay.weight_depth, num)
                       if config.weight_norm else None)
        self.regions = {LoadRegion.CONFIG: lay.config_beats, LoadRegion.MATVEC_WEIGHTS: lay.weight_depth * lanes,
                        LoadRegion.MATVEC_BIASES: self.matvec.bias_words,
                        LoadRegion.H0: config.n_tiers * config.n_rnn * lay.dim_words,
                        LoadRegion.TABLE: config.q_levels * lay.row_stride}
        for k, gru in enumerate(self.grus):
            self.regions[LoadRegion.gru_weights(k)] = gru.geometry.weight_depth * gru.geometry.lanes
            self.regions[LoadRegion.gru_biases(k)] = gru.geometry.bias_beats
        if self.loader is not None:
            self.regions[LoadRegion.MATVEC_NORMED] = self.loader.g_beats + self.loader.v_beats
        load = data.StructLayout({"data": data.ArrayLayout(signed(lay.load_width), simd),
                                  "region": range(max(self.regions) + 1), "first": 1, "last": 1})
        super().__init__({
            "load": In(stream.Signature(load)),
            "cmd": In(stream.Signature(job_layout(addr_width))),
            "out": Out(stream.Signature(sample_layout(config.q_levels))),
            "ar": Out(stream.Signature(read_address_layout(addr_width))),
            "r": In(stream.Signature(read_data_layout(64))),
            "busy": Out(1),
            "error": Out(1),
            "zero_row": Out(1),
            "saturated": Out(len(lay.saturation_names())),
        })

    def elaborate(self, platform):
        m = Module()
        lay, cfg = self.layout, self.layout.config
        act = cfg.numerics.act.width
        S, T, dim, q, fs0 = lay.simd, cfg.n_tiers, cfg.dim, cfg.q_levels, cfg.frame_sizes[0]
        dw, rb, stride = lay.dim_words, lay.row_beats, lay.row_stride
        lane_bits = (S - 1).bit_length()
        m.submodules.matvec = mv = self.matvec
        m.submodules.sampler = sampler = self.sampler
        for k, gru in enumerate(self.grus):
            m.submodules[f"gru_{k}"] = gru
        vector = data.ArrayLayout(signed(act), S)
        error = Signal()
        loader_busy = Signal()  # the weight loader still has rows to write into the unit

        # --- Memories ----------------------------------------------------------------------------------------
        m.submodules.scratch = scratch = Memory(shape=vector, depth=lay.scratch_depth, init=[])
        scratch_write = scratch.write_port(granularity=1)
        vec_read, aux_read = scratch.read_port(), scratch.read_port()
        table_word = data.ArrayLayout(signed(cfg.table.width), TABLE_LANES)
        m.submodules.table = table = Memory(shape=table_word, depth=q * stride, init=[])
        table_write, table_read = table.write_port(), table.read_port()
        partial_width = cfg.table.width + (fs0 - 1).bit_length()
        m.submodules.partial = partial = Memory(shape=data.ArrayLayout(signed(partial_width), TABLE_LANES),
                                                depth=2 * stride, init=[])
        partial_write = partial.write_port()
        rmw_read = partial.read_port(transparent_for=(partial_write,))
        sum_read = partial.read_port(transparent_for=(partial_write,))
        pcm_values = [int(v) for v in pcm16(range(q), q)]
        m.submodules.pcm = pcm_rom = Memory(shape=signed(16), depth=q, init=pcm_values)
        pcm_read = pcm_rom.read_port()

        # --- Job and configuration registers ---------------------------------------------------------------
        job = Signal(job_layout(self.addr_width))
        shifts = Array(Signal(range(mv.max_shift + 1), name=f"shift_{i}") for i in range(len(lay.ops)))
        mlp_shift = Signal(range(MAX_MLP_SHIFT + 1))
        count = Signal(32)                       # samples drawn in this job
        hist = [Signal(range(q), name=f"hist_{n}", init=q // 2) for n in range(cfg.lookback)]  # newest first
        pos_mlp = Signal(range(fs0))             # i % frame_sizes[0]
        pos = [Signal(range(fs), name=f"pos_{k}") for k, fs in enumerate(cfg.frame_sizes[1:])]  # tier k runs
        pos_base = [Signal(range(fs * dw), name=f"pos_base_{k}") for k, fs in enumerate(cfg.frame_sizes[1:])]
        tier = Signal(range(T))

        # --- Matrix-vector unit: operation table, vector sources, extra values, result writer --------------------
        ops = lay.ops
        op_id = Signal(range(len(ops)))
        field = {name: Array(Const(value) for value in values) for name, values in {
            "weight_base": [op.weight_base for op in ops], "bias_base": [op.bias_base for op in ops],
            "rows": [op.rows for op in ops], "slots": [lay.slots(op) for op in ops],
            "words": [lay.words(op) for op in ops], "relu": [int(op.relu) for op in ops],
            "from_history": [int(op.source == "history") for op in ops],
            "vec_base": [0 if op.source == "history" else op.source for op in ops],
            "has_extra": [int(op.extra is not None) for op in ops],
            "dest_base": [0 if op.dest is None else op.dest for op in ops],
            "to_sampler": [int(op.dest is None) for op in ops],
        }.items()}
        mv_start = Signal()
        m.d.comb += [mv.start.eq(mv_start), mv.op.weight_base.eq(field["weight_base"][op_id]),
                     mv.op.bias_base.eq(field["bias_base"][op_id]), mv.op.rows.eq(field["rows"][op_id]),
                     mv.op.slots.eq(field["slots"][op_id]), mv.op.words.eq(field["words"][op_id]),
                     mv.op.shift.eq(shifts[op_id]), mv.op.relu.eq(field["relu"][op_id])]
        # History window of the running tier, S codes per word, oldest first; lanes beyond the window are 0.
        sample_value = Array(Const(int(v), signed(act)) for v in tier_input_values(cfg))
        hist_word = Signal(vector)
        for s in range(S):
            per_tier = []
            for nfs in cfg.n_frame_samples:
                words = -(-nfs // S)
                codes = [(hist[nfs - 1 - (t * S + s)], 1) if t * S + s < nfs else (Const(0, range(q)), 0)
                         for t in range(words)]
                code = Array(c for c, _ in codes)[mv.vec_addr] if words > 1 else codes[0][0]
                valid = Array(Const(v) for _, v in codes)[mv.vec_addr] if words > 1 else Const(codes[0][1])
                per_tier.append((code, valid))
            code = Array(c for c, _ in per_tier)[tier] if T > 1 else per_tier[0][0]
            valid = Array(v for _, v in per_tier)[tier] if T > 1 else per_tier[0][1]
            m.d.sync += hist_word[s].eq(Mux(valid, sample_value[code], 0))
        from_history = Signal()
        m.d.sync += from_history.eq(field["from_history"][op_id])
        m.d.comb += [vec_read.addr.eq(field["vec_base"][op_id] + mv.vec_addr),
                     mv.vec_data.eq(Mux(from_history, hist_word, vec_read.data))]
        # Extra: the upper tier's conditioning row (input_expand of a tier below the top).
        extra_lane, extra_on = Signal(range(S)), Signal()
        upper_base = Array([*(Const(lay.cond[k + 1]) + pos_base[k] for k in range(T - 1)), Const(0)])[tier]
        m.d.sync += [extra_lane.eq(mv.row[:lane_bits]), extra_on.eq(field["has_extra"][op_id] & mv.row_valid)]
        m.d.comb += mv.extra.eq(Mux(extra_on, aux_read.data[extra_lane], 0))
        # Results: into scratch rows of ``dim`` values (a row starts a word), or into the sampler.
        w_word, w_lane, w_elem = Signal(range(lay.scratch_depth)), Signal(range(S)), Signal(range(dim))
        to_sampler = field["to_sampler"][op_id]
        res = mv.result
        m.d.comb += [sampler.logit.valid.eq(res.valid & to_sampler), sampler.logit.index.eq(res.row),
                     sampler.logit.value.eq(res.value)]
        # Saturation flags: the unit's per operation, the MLP input's; the GRU engines' (cleared by the STATE
        # commands that start a job) follow them.
        op_saturated = Signal(len(ops) + 1)
        with m.If(res.valid & res.saturated):
            m.d.sync += op_saturated.bit_select(op_id, 1).eq(1)
        m.d.comb += self.saturated.eq(Cat(op_saturated, *(gru.saturated for gru in self.grus)))
        with m.If(mv_start):
            m.d.sync += [w_word.eq(field["dest_base"][op_id]), w_lane.eq(0), w_elem.eq(0)]
        with m.Elif(res.valid):
            m.d.sync += [w_lane.eq(w_lane + 1), w_elem.eq(w_elem + 1)]
            with m.If((w_lane == S - 1) | (w_elem == dim - 1)):
                m.d.sync += [w_word.eq(w_word + 1), w_lane.eq(0)]
            with m.If(w_elem == dim - 1):
                m.d.sync += w_elem.eq(0)

        # --- DDR prefetch: the older positions' rows of the next sample, summed into a partial bank ----------
        fetch_go = Signal()
        fetch_bank = Signal()
        fetched = Signal(2)
        fcodes = [Signal(range(q), name=f"fcode_{j}") for j in range(fs0 - 1)]
        ar_left = Signal(range(fs0))
        row_index = Signal(range(fs0 * q))
        with m.If(fetch_go):
            # Sample i + 1 reads positions j = 0 .. fs0 - 2: codes seq[i + 1 - fs0 + j] = hist[fs0 - 2 - j].
            m.d.sync += [fcodes[j].eq(hist[fs0 - 2 - j]) for j in range(fs0 - 1)]
            m.d.sync += [ar_left.eq(fs0 - 1), row_index.eq(0)]
        m.d.comb += [self.ar.valid.eq(ar_left != 0), self.ar.payload.len.eq(rb - 1),
                     self.ar.payload.addr.eq(job.table_base + ((row_index + fcodes[0]) << (lay.row_bytes.bit_length()
                                                                                            - 1)))]
        with m.If(self.ar.valid & self.ar.ready):
            m.d.sync += [ar_left.eq(ar_left - 1), row_index.eq(row_index + q)]
            m.d.sync += [fcodes[j].eq(fcodes[j + 1]) for j in range(fs0 - 2)]
        r_row, r_beat = Signal(range(fs0)), Signal(range(stride))
        m.d.comb += [self.r.ready.eq(1), rmw_read.addr.eq(Cat(r_beat, fetch_bank) if stride > 1 else fetch_bank)]
        r_take = Signal()
        m.d.comb += r_take.eq(self.r.valid)
        with m.If(fetch_go):
            m.d.sync += [r_row.eq(0), r_beat.eq(0)]
        with m.Elif(r_take):
            m.d.sync += r_beat.eq(r_beat + 1)
            with m.If(self.r.payload.last):
                m.d.sync += [r_beat.eq(0), r_row.eq(r_row + 1)]
            with m.If(self.r.payload.resp != 0):
                m.d.comb += error.eq(1)
        # Read-modify-write one cycle after the beat: the first row overwrites, the others add.
        beat_data = Signal(64)
        beat_valid, beat_first, beat_done = Signal(), Signal(), Signal()
        beat_addr = Signal(range(2 * stride))
        m.d.sync += [beat_data.eq(self.r.payload.data), beat_valid.eq(r_take), beat_first.eq(r_row == 0),
                     beat_done.eq(r_take & self.r.payload.last & (r_row == fs0 - 2)), beat_addr.eq(rmw_read.addr)]
        m.d.comb += [partial_write.addr.eq(beat_addr), partial_write.en.eq(beat_valid)]
        for v in range(TABLE_LANES):
            entry = beat_data[16 * v:16 * v + cfg.table.width].as_signed()
            m.d.comb += partial_write.data[v].eq(Mux(beat_first, 0, rmw_read.data[v]) + entry)
        with m.If(beat_done):
            m.d.sync += fetched.bit_select(fetch_bank, 1).eq(1)
        with m.If(fetch_go):
            m.d.sync += fetch_bank.eq(~fetch_bank)

        # --- MLP input: partial + newest row + conditioning, narrowed, ReLU, TABLE_LANES values per cycle --------
        sbits = (stride - 1).bit_length()
        sum_beat = Signal(range(stride + 1))
        sum_on, use_bank = Signal(), Signal()
        sum_group = Signal(range(S // TABLE_LANES))
        sum_word = Signal(range(lay.scratch_depth))
        sum_valid = Signal()
        cond_word = Const(lay.cond[0]) + Array(Const(p * dw) for p in range(fs0))[pos_mlp]
        m.d.comb += [table_read.addr.eq((hist[0] << sbits) + sum_beat),
                     sum_read.addr.eq((use_bank << sbits) + sum_beat)]
        m.d.sync += [sum_valid.eq(sum_on), sum_group.eq(sum_beat[:lane_bits - 2] if S > TABLE_LANES else 0),
                     sum_word.eq(lay.mlp_x + ((sum_beat * TABLE_LANES) >> lane_bits))]
        sum_values, sum_saturates = [], []
        for v in range(TABLE_LANES):
            cond = Array(aux_read.data[g * TABLE_LANES + v] for g in range(S // TABLE_LANES))[sum_group]
            # The conditioning, at the MLP input's format, added after the rounding shift (the same integer as
            # added << shift before it).
            total = round_by(sum_read.data[v] + table_read.data[v], mlp_shift) + cond
            value = saturate(total, QFormat(act, 0))
            sum_values.append(Mux(value < 0, 0, value))
            sum_saturates.append(total > QFormat(act, 0).max_int)  # below the range it is 0 after the ReLU
        with m.If(sum_valid & Cat(*sum_saturates).any()):
            m.d.sync += op_saturated[len(ops)].eq(1)

        # --- Output: code and PCM into a FIFO ----------------------------------------------------------------
        code = sampler.code
        fifo = m.submodules.fifo = SyncFIFOBuffered(width=Shape.cast(self.out.payload.shape()).width,
                                                    depth=self.fifo_depth)
        code_d, last_d, push = Signal(range(q)), Signal(), Signal()
        m.d.comb += pcm_read.addr.eq(code.code)
        m.d.sync += [code_d.eq(code.code), last_d.eq(count + 1 == job.count), push.eq(code.valid)]
        m.d.comb += [fifo.w_en.eq(push), fifo.w_data.eq(Cat(code_d, pcm_read.data, last_d)),
                     self.out.valid.eq(fifo.r_rdy), self.out.payload.eq(fifo.r_data), fifo.r_en.eq(self.out.ready)]
        room = fifo.level <= self.fifo_depth - 2

        # --- Sequencer -----------------------------------------------------------------------------------------
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        feed_base = Signal(range(lay.scratch_depth))
        feed_count, feed_beat = Signal(range(cfg.n_rnn * dw + 1)), Signal(range(cfg.n_rnn * dw + 1))
        feed_kind, feed_primed, feed_tier = Signal(GruCommand), Signal(), Signal(range(T))
        feeding, receiving = Signal(), Signal()
        recv_beat = Signal(range(dw + 1))
        # An operation's table entries (indexed by op_id) must be in place in the cycle of ``start``.
        start_pending = Signal()
        m.d.comb += mv_start.eq(start_pending)
        m.d.sync += start_pending.eq(0)
        op_done = ~mv.busy & ~start_pending

        def start_op(op_index):
            m.d.sync += [op_id.eq(op_index), start_pending.eq(1)]

        def feed(tier_index, kind, base, beats):
            m.d.sync += [feed_tier.eq(tier_index), feed_kind.eq(kind), feed_base.eq(base), feed_count.eq(beats),
                         feed_beat.eq(0), feed_primed.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                # A job waits for the weight loader's last rows (they write through the unit's store port).
                m.d.comb += self.cmd.ready.eq(~loader_busy)
                with m.If(self.cmd.valid & ~loader_busy):
                    m.d.sync += [job.eq(self.cmd.payload), busy.eq(1), count.eq(0), pos_mlp.eq(0), fetched.eq(0),
                                 op_saturated.eq(0),
                                 fetch_bank.eq(1), use_bank.eq(0)]
                    m.d.sync += [h.eq(q // 2) for h in hist] + [p.eq(0) for p in pos] + [b.eq(0) for b in pos_base]
                    m.d.comb += [sampler.seed.eq(self.cmd.payload.seed), sampler.load.eq(1)]
                    feed(0, GruCommand.STATE, lay.h0, cfg.n_rnn * dw)
                    m.next = "H0"
            with m.State("H0"):
                # Every tier's GRU state back to its h0: a STATE command each, from the scratch copy.
                m.d.comb += feeding.eq(feed_beat != feed_count)
                with m.If(feed_beat == feed_count):
                    with m.If(feed_tier == T - 1):
                        m.d.comb += fetch_go.eq(1)
                        m.next = "SAMPLE"
                    with m.Else():
                        feed(feed_tier + 1, GruCommand.STATE, feed_base + cfg.n_rnn * dw, cfg.n_rnn * dw)
            with m.State("SAMPLE"):
                # The highest tier due: tier k runs when tier k - 1 does and pos[k - 1] == 0.
                due = Const(0, range(T))
                for k in range(T - 1, 0, -1):
                    due = Mux(Cat(*(p == 0 for p in pos[:k])).all() & (due == 0), k, due)
                with m.If(pos_mlp == 0):
                    m.d.sync += tier.eq(due)
                    start_op(2 * due)
                    m.next = "INPUT_EXPAND"
                with m.Else():
                    m.next = "MLP_WAIT"
            with m.State("INPUT_EXPAND"):
                with m.If(op_done):
                    feed(tier, GruCommand.STEP, Array(Const(b) for b in lay.gru_x)[tier], dw)
                    m.d.sync += recv_beat.eq(0)
                    m.next = "GRU"
            with m.State("GRU"):
                m.d.comb += [feeding.eq(feed_beat != feed_count), receiving.eq(1)]
                with m.If(recv_beat == dw):
                    start_op(2 * tier + 1)
                    m.next = "UPSAMPLE"
            with m.State("UPSAMPLE"):
                with m.If(op_done):
                    for k in range(T - 1):
                        with m.If(tier == k):
                            wrap = pos[k] == cfg.frame_sizes[k + 1] - 1
                            m.d.sync += [pos[k].eq(Mux(wrap, 0, pos[k] + 1)),
                                         pos_base[k].eq(Mux(wrap, 0, pos_base[k] + dw))]
                    with m.If(tier == 0):
                        m.next = "MLP_WAIT"
                    with m.Else():
                        m.d.sync += tier.eq(tier - 1)
                        start_op(2 * tier - 2)
                        m.next = "INPUT_EXPAND"
            with m.State("MLP_WAIT"):
                # The partial sum of this sample is in; the next sample's fetch starts now.
                with m.If(fetched.bit_select(use_bank, 1) & room):
                    m.d.sync += [fetched.bit_select(use_bank, 1).eq(0), sum_beat.eq(0)]
                    with m.If(count + 1 != job.count):
                        m.d.comb += fetch_go.eq(1)
                    m.next = "MLP_INPUT"
            with m.State("MLP_INPUT"):
                m.d.comb += sum_on.eq(sum_beat != rb)
                m.d.sync += sum_beat.eq(sum_beat + 1)
                with m.If(sum_beat == rb):
                    start_op(len(ops) - 2)
                    m.next = "HIDDEN"
            with m.State("HIDDEN"):
                with m.If(op_done):
                    start_op(len(ops) - 1)
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                with m.If(code.valid):
                    m.d.sync += [count.eq(count + 1), use_bank.eq(~use_bank),
                                 pos_mlp.eq(Mux(pos_mlp == fs0 - 1, 0, pos_mlp + 1))]
                    m.d.sync += [hist[0].eq(code.code)] + [hist[n].eq(hist[n - 1]) for n in range(1, len(hist))]
                    with m.If(count + 1 == job.count):
                        m.d.sync += busy.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "SAMPLE"
        m.d.comb += sampler.temperature.eq(job.temperature)

        # --- Scratch read port B: GRU commands, the MLP input's conditioning, the extra values ----------------
        with m.If(feeding):
            m.d.comb += aux_read.addr.eq(feed_base + feed_beat)
        with m.Elif(sum_on):
            m.d.comb += aux_read.addr.eq(cond_word + ((sum_beat * TABLE_LANES) >> lane_bits))
        with m.Else():
            m.d.comb += aux_read.addr.eq(upper_base + (mv.row >> lane_bits))

        # --- GRU engines: loads while idle, commands from the scratch memory while running ---------------------
        payload = self.load.payload
        loading = ~busy & self.load.valid
        for k, gru in enumerate(self.grus):
            mine = feeding & (feed_tier == k)
            m.d.comb += [gru.weights.valid.eq(loading & (payload.region == LoadRegion.gru_weights(k))),
                         gru.weights.payload.first.eq(payload.first), gru.weights.payload.last.eq(payload.last),
                         gru.cmd.valid.eq(Mux(busy, mine & feed_primed,
                                              loading & (payload.region == LoadRegion.gru_biases(k)))),
                         gru.cmd.payload.kind.eq(Mux(busy, feed_kind, GruCommand.BIAS)),
                         gru.cmd.payload.first.eq(Mux(busy, feed_beat == 0, payload.first)),
                         gru.cmd.payload.last.eq(Mux(busy, feed_beat == feed_count - 1, payload.last)),
                         gru.out.ready.eq(receiving & (tier == k))]
            m.d.comb += [gru.weights.payload.data[s].eq(payload.data[s]) for s in range(S)]
            m.d.comb += [gru.cmd.payload.data[s].eq(Mux(busy, aux_read.data[s], payload.data[s])) for s in range(S)]
            with m.If(gru.error):
                m.d.comb += error.eq(1)
        gru_out = Array(gru.out for gru in self.grus)[tier]
        gru_ready = Array(gru.cmd.ready for gru in self.grus)[feed_tier]
        # A command beat is offered the cycle after its word is read, and read again after each transfer.
        with m.If(feeding & feed_primed & gru_ready):
            m.d.sync += [feed_beat.eq(feed_beat + 1), feed_primed.eq(0)]
        with m.Elif(feeding):
            m.d.sync += feed_primed.eq(1)
        recv_take = receiving & gru_out.valid
        with m.If(recv_take):
            m.d.sync += recv_beat.eq(recv_beat + 1)

        # --- Scratch writes: results, GRU outputs, the MLP input, h0 loads --------------------------------------
        h0_beat = Signal(range(self.regions[LoadRegion.H0] + 1))
        region = payload.region
        load_take = self.load.valid & self.load.ready
        with m.If(res.valid & ~to_sampler):
            m.d.comb += [scratch_write.addr.eq(w_word), scratch_write.en.eq(1 << w_lane)]
            m.d.comb += [scratch_write.data[s].eq(res.value) for s in range(S)]
        with m.Elif(recv_take):
            m.d.comb += [scratch_write.addr.eq(Array(Const(b) for b in lay.gru_h)[tier] + recv_beat),
                         scratch_write.en.eq((1 << S) - 1)]
            m.d.comb += [scratch_write.data[s].eq(gru_out.payload.data[s]) for s in range(S)]
        with m.Elif(sum_valid):
            m.d.comb += [scratch_write.addr.eq(sum_word),
                         scratch_write.en.eq(((1 << TABLE_LANES) - 1) << (sum_group << 2))]
            m.d.comb += [scratch_write.data[s].eq(sum_values[s % TABLE_LANES]) for s in range(S)]
        with m.Elif(load_take & (region == LoadRegion.H0)):
            m.d.comb += [scratch_write.addr.eq(lay.h0 + h0_beat), scratch_write.en.eq((1 << S) - 1)]
            m.d.comb += [scratch_write.data[s].eq(payload.data[s]) for s in range(S)]

        # --- Loading ---------------------------------------------------------------------------------------------
        beat = Signal(range(max(self.regions.values()) + 1))
        regions = range(max(self.regions) + 1)
        dest_ready = Const(1)
        for k, gru in enumerate(self.grus):
            dest_ready = Mux(region == LoadRegion.gru_weights(k), gru.weights.ready,
                             Mux(region == LoadRegion.gru_biases(k), gru.cmd.ready, dest_ready))
        # Plain weights wait for the loader: its store port and the weights stream share the write ports.
        dest_ready = Mux(region == LoadRegion.MATVEC_WEIGHTS, mv.weights.ready & ~loader_busy,
                         Mux(region == LoadRegion.MATVEC_BIASES, mv.biases.ready, dest_ready))
        for port, kind, free in ((mv.weights, LoadRegion.MATVEC_WEIGHTS, ~loader_busy),
                                 (mv.biases, LoadRegion.MATVEC_BIASES, Const(1))):
            m.d.comb += [port.valid.eq(loading & (region == kind) & free), port.payload.first.eq(payload.first),
                         port.payload.last.eq(payload.last)]
            m.d.comb += [port.payload.data[s].eq(payload.data[s]) for s in range(S)]
        if self.loader is not None:
            # (g, v) through the weight loader: a g beat fills the one-entry register, which the loader empties
            # with the row's last v beat, so a beat is g exactly when the register is empty.
            m.submodules.loader = loader = self.loader
            g_full = Signal()
            g_data = Signal(signed(cfg.numerics.weight.width))
            g_frac = Signal(range(loader.g_frac_min, loader.g_frac_max + 1))
            normed = region == LoadRegion.MATVEC_NORMED
            dest_ready = Mux(normed, ~g_full | loader.v.ready, dest_ready)
            m.d.comb += [loader.v.valid.eq(loading & normed & g_full), loader.v.payload.first.eq(beat == 1),
                         loader.v.payload.last.eq(payload.last), loader.g.valid.eq(g_full),
                         loader.g.payload.data.eq(g_data), loader.g.payload.frac.eq(g_frac),
                         loader.clear.eq(load_take & normed & payload.first), mv.store.eq(loader.store),
                         loader_busy.eq(loader.busy), self.zero_row.eq(loader.zero_row)]
            m.d.comb += [loader.v.payload.data[s].eq(payload.data[s]) for s in range(S)]
            with m.If(loader.g.valid & loader.g.ready):
                m.d.sync += g_full.eq(0)
            with m.If(load_take & normed & ~g_full):
                m.d.sync += [g_full.eq(1), g_data.eq(payload.data[0]), g_frac.eq(payload.data[1])]
                with m.If((payload.data[1] < loader.g_frac_min) | (payload.data[1] > loader.g_frac_max)):
                    m.d.comb += error.eq(1)
            with m.If(loader.error):
                m.d.comb += error.eq(1)
        m.d.comb += self.load.ready.eq(~busy & dest_ready)
        expected = Array(Const(self.regions.get(r, 0)) for r in regions)[region]
        with m.If(load_take):
            m.d.sync += beat.eq(Mux(payload.last, 0, beat + 1))
            with m.If((payload.first != (beat == 0)) | (payload.last != (beat == expected - 1)) | (expected == 0)):
                m.d.comb += error.eq(1)
            with m.If(region == LoadRegion.CONFIG):
                for i in range(lay.config_values):
                    target = shifts[i] if i < len(ops) else mlp_shift
                    with m.If(beat == i // S):
                        m.d.sync += target.eq(payload.data[i % S])
            with m.If(region == LoadRegion.H0):
                m.d.sync += h0_beat.eq(Mux(payload.last, 0, h0_beat + 1))
        m.d.comb += [table_write.addr.eq(beat), table_write.en.eq(load_take & (region == LoadRegion.TABLE))]
        m.d.comb += [table_write.data[v].eq(payload.data[v]) for v in range(TABLE_LANES)]
        with m.If(mv.error | error):
            m.d.sync += self.error.eq(1)
        return m

