"""Closed-form work and cycle models.

Work is counted in multiply-accumulates (MACs) per output audio sample, layer by layer, so that the CLI, the
benchmarks and the design-space figures all come from one place. Cycle models of the engines live here too:
simulation tests assert that the RTL takes exactly the cycles these functions give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import check_int, check_sizes

__all__ = [
    "WorkReport",
    "samplernn_macs",
    "pwg_macs",
    "gemm_tiles",
    "gemm_cycles",
    "gemm_ideal_cycles",
    "gemm_fill_drain_cycles",
    "estimate_gemm",
    "weightnorm_latency",
    "weightnorm_cycles",
    "GRU_PIPELINE_TAIL",
    "gru_macs",
    "gru_layer_cycles",
    "gru_step_cycles",
    "gru_step_latency",
    "matvec_op_cycles",
    "gru_lanes_per_tier",
    "samplernn_dsp48e1",
    "SampleRNNTiming",
    "samplernn_timing",
    "pwg_skip_width",
    "pwg_line_slots",
    "pwg_gate_lanes",
    "gru_weight_load_cycles",
    "matvec_weight_load_cycles",
    "PWG_H_LATENCY",
    "PWG_GATE_LATENCY",
    "PWG_OUT_LATENCY",
    "pwg_layer_ideal_cycles",
    "pwg_layer_cycles",
    "pwg_engine_cycles",
    "PWG_RECOMMENDED",
    "estimate_pwg",
    "PYNQ_Z1_HP_PORT_BYTES_PER_S",
    "PYNQ_Z1_DDR_BYTES_PER_S",
    "XC7Z020",
    "XC7Z020_DSP48E1",
    "XC7Z020_BRAM_BYTES",
]


@dataclass
class WorkReport:
    """MACs per output sample of one network, by layer.

    Attributes
    ----------
    name : str
        Network name.
    sample_rate : int
        Output samples per second.
    layers : dict[str, float]
        Layer name to MACs per output sample (layers that run at a frame rate are divided by their frame).
    """

    name: str
    sample_rate: int
    layers: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.layers.values())

    @property
    def macs_per_second(self) -> float:
        """MACs per second of real-time audio."""
        return self.total * self.sample_rate

    def as_dict(self) -> dict:
        return {"name": self.name, "sample_rate": self.sample_rate, "macs_per_sample": self.total,
                "macs_per_second": self.macs_per_second, "layers": dict(self.layers)}


def samplernn_macs(config, fold_embedding: bool = False, sample_rate: int = 16000) -> WorkReport:
    """MACs per output sample of SampleRNN (samplernn-pytorch structure) for ``config``.

    Tier ``t`` runs once per ``n_frame_samples[t]`` samples: its input expansion (``n_frame_samples -> dim``),
    its ``n_rnn`` GRU layers (``3 * (dim*dim + dim*dim)`` each) and its learned upsampling (``dim * dim *
    frame_size``). The sample-level MLP runs every sample: the input convolution over the embedded previous
    ``frame_sizes[0]`` samples (``q * dim * frame_sizes[0]``), the hidden and output 1x1 convolutions. With
    ``fold_embedding`` the input convolution becomes ``frame_sizes[0]`` table lookups (no MACs).

    The seed configuration (frame sizes 16 4, 2 GRU layers, dim 64, 256 levels) gives 290,944 (28,800
    folded).
    """
    report = WorkReport("samplernn", sample_rate)
    dim, q = config.dim, config.q_levels
    n_frame_samples = 1
    for tier, frame_size in enumerate(config.frame_sizes):
        n_frame_samples *= frame_size
        report.layers[f"tier{tier}.input_expand"] = n_frame_samples * dim / n_frame_samples
        report.layers[f"tier{tier}.gru"] = config.n_rnn * 3 * 2 * dim * dim / n_frame_samples
        report.layers[f"tier{tier}.upsampling"] = dim * dim * frame_size / n_frame_samples
    report.layers["mlp.input"] = 0 if fold_embedding else q * dim * config.frame_sizes[0]
    report.layers["mlp.hidden"] = dim * dim
    report.layers["mlp.output"] = dim * q
    return report


def pwg_macs(config, hardware_order: bool = True) -> WorkReport:
    """MACs per output sample of the ParallelWaveGAN generator (``parallel-wavegan`` structure).

    Per residual layer and sample: the dilated convolution (``residual * gate * kernel``), the skip and output
    1x1s (``gate/2 * skip`` and ``gate/2 * residual``). Plus the first 1x1, the two output 1x1s, ``conv_in`` at
    the frame rate, and one ``2s+1``-tap filter per channel at each upsampling stage's rate.

    In the hardware order (default; :class:`~wavefabric.model.pwg.PWGFixed`) every layer's aux 1x1 runs at the
    frame rate (``aux * gate / hop``), and the stages become one table of D taps per sample applied to its
    ``gate`` outputs inside the gate GEMM (:class:`~wavefabric.model.pwg.UpsampleTable`: ``layers * gate * D``;
    D = 5 at scales 4 4 4 4), and the last layer's output 1x1 is not computed. With ``hardware_order=False``,
    the package's order and arithmetic: the aux 1x1 at the sample rate (``aux * gate``) and ``2s+1`` taps per
    output on ``aux`` channels at each stage's rate.
    """
    report = WorkReport("pwg", config.sample_rate)
    hop = config.hop_size
    aux, layers = config.aux_channels, config.layers
    res, gate, skip = config.residual_channels, config.gate_channels, config.skip_channels
    report.layers["upsample.conv_in"] = aux * aux * (2 * config.aux_context_window + 1) / hop
    if hardware_order:
        from .pwg import upsample_geometry

        report.layers["aux_1x1"] = layers * gate * aux / hop
        report.layers["upsample.table"] = layers * gate * upsample_geometry(config.upsample_scales)[0]
    else:
        rate = 1
        for stage, scale in enumerate(config.upsample_scales):
            rate *= scale
            report.layers[f"upsample.stage{stage}"] = aux * (2 * scale + 1) * rate / hop
    report.layers["first_conv"] = config.in_channels * res
    per_layer = res * gate * config.kernel_size + gate // 2 * skip + gate // 2 * res
    if hardware_order:
        report.layers["residual_layers"] = layers * per_layer - gate // 2 * res
    else:
        report.layers["residual_layers"] = layers * (per_layer + aux * gate)
    report.layers["last_conv"] = skip * skip + skip * config.out_channels
    return report


# ---------------------------------------------------------------------------------------------------------------
# GEMM on the output-stationary systolic array (rtl/systolic.py, rtl/gemm.py)
# ---------------------------------------------------------------------------------------------------------------

#: Cycles from a tile's last k-step transfer to its first result row on the GemmEngine's output, minus ``cols``:
#: skew of the top-right cell (cols - 1), its operand, product and sum registers (3), the shadow and row read
#: (2), the narrowing register (1).
GEMM_LATENCY_BASE = 5


def _check_gemm(rows: int, cols: int, m: int, n: int, k: int) -> None:
    check_sizes(rows=rows, cols=cols, m=m, n=n, k=k)


def gemm_tiles(rows: int, cols: int, m: int, n: int) -> int:
    """Number of R x C output tiles of an M x N result: ``ceil(M / R) * ceil(N / C)``."""
    _check_gemm(rows, cols, m, n, 1)
    return -(-m // rows) * -(-n // cols)


def gemm_cycles(rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Exact cycles of one ``M x K`` by ``K x N`` GEMM on :class:`~wavefabric.rtl.gemm.GemmEngine` (R x C).

    Counted from the first cycle in which operands are offered (the engine idle, every operand stream valid
    and the result stream ready from then on) to the transfer of the last result beat, inclusive::

        T = ceil(M / R) * ceil(N / C)                      tiles
        P = max(K, R, C)                                   cycles per tile, back to back
        cycles = (T - 1) * P + K + (C + 5) + (M - R * (ceil(M / R) - 1)) - 1

    The tiles stream back to back (``P = K`` when ``K >= max(R, C)``: the drain of one tile, one row per cycle,
    hides under the next tile's reduction); the last tile's K k-steps then take ``C + 5`` cycles to reach the
    output (the engine's ``latency``), followed by the rows of the last row-block that lie inside M.
    """
    _check_gemm(rows, cols, m, n, k)
    tiles = gemm_tiles(rows, cols, m, n)
    last_block_rows = m - rows * (-(-m // rows) - 1)
    return (tiles - 1) * max(k, rows, cols) + k + cols + GEMM_LATENCY_BASE + last_block_rows - 1


def gemm_ideal_cycles(rows: int, cols: int, m: int, n: int, k: int) -> float:
    """``M * N * K / (R * C)``: every processing element busy in every cycle."""
    _check_gemm(rows, cols, m, n, k)
    return m * n * k / (rows * cols)


def gemm_fill_drain_cycles(rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Cycles of the same GEMM on an array that fills and drains its skew for every tile (no double buffer).

    Each tile then costs ``K + R + C - 2`` cycles (the last k-step reaches the bottom-right element
    ``R + C - 2`` cycles after it enters): the comparison point for the double-buffered array.
    """
    return gemm_tiles(rows, cols, m, n) * (k + rows + cols - 2)


def estimate_gemm(rows: int, cols: int, m: int, n: int, k: int) -> dict:
    """The cycle model's figures for one GEMM, as a JSON-ready dict.

    Keys: ``rows``, ``cols``, ``m``, ``n``, ``k``, ``tiles``, ``model_cycles`` (:func:`gemm_cycles`),
    ``ideal_cycles``, ``utilization`` (ideal / model), ``fill_drain_cycles`` and ``fill_drain_utilization``.
    """
    cycles = gemm_cycles(rows, cols, m, n, k)
    ideal = gemm_ideal_cycles(rows, cols, m, n, k)
    fill_drain = gemm_fill_drain_cycles(rows, cols, m, n, k)
    return {
        "rows": rows, "cols": cols, "m": m, "n": n, "k": k,
        "tiles": gemm_tiles(rows, cols, m, n),
        "model_cycles": cycles,
        "ideal_cycles": ideal,
        "utilization": ideal / cycles,
        "fill_drain_cycles": fill_drain,
        "fill_drain_utilization": ideal / fill_drain,
    }


# ---------------------------------------------------------------------------------------------------------------
# Weight-norm unit (rtl/weightnorm.py)
# ---------------------------------------------------------------------------------------------------------------

def weightnorm_latency(newton_steps: int = 2) -> int:
    """Cycles from a row's last ``v`` transfer to its first valid ``w`` beat on the weight-norm unit.

    ``10 + 3 * newton_steps`` for :class:`~wavefabric.rtl.weightnorm.WeightNormUnit`: squares, adder tree,
    sum (3); leading-zero count, normalising shift, seed ROM (3); three multiplies per Newton step; queueing the
    row scale (1); reading the row buffer, multiplying, narrowing (3). Valid when the output side is idle.
    """
    if isinstance(newton_steps, bool) or not isinstance(newton_steps, int) or newton_steps < 0:
        raise ValueError(f"newton_steps must be an integer >= 0, not {newton_steps!r}")
    return 10 + 3 * newton_steps


def weightnorm_cycles(rows: int, cols: int, lanes: int, newton_steps: int = 2) -> int:
    """Exact cycles to weight-normalise ``rows`` rows of ``cols`` elements on a ``lanes``-lane WeightNormUnit.

    Counted from the first ``v`` beat offered to an idle unit (``v`` and ``g`` valid, ``w`` ready throughout)
    to the last ``w`` transfer, inclusive. Each row is ``b = ceil(cols / lanes)`` beats; pass 1 takes one beat
    per cycle without a stall, and pass 2 emits row ``r`` from ``latency`` cycles after row ``r``'s last beat,
    one beat per cycle, so it finishes just as row ``r + 1`` becomes ready::

        cycles = rows * b + b + latency - 1,   latency = weightnorm_latency(newton_steps)
    """
    check_sizes(rows=rows, cols=cols, lanes=lanes)
    beats = -(-cols // lanes)
    return rows * beats + beats + weightnorm_latency(newton_steps) - 1


# ---------------------------------------------------------------------------------------------------------------
# GRU engine: batch-1 steps of a multi-layer GRU (rtl/gru.py)
# ---------------------------------------------------------------------------------------------------------------

#: Cycles from a layer's last multiply to its next layer's first, beyond the adder tree's levels and one cycle
#: per lane: weight read (1), processing element (4), narrowing (1), gate pipeline (sigmoid 3, r * h_n 2, add 1,
#: tanh 3, h - n' 1, z * (h - n') 2), state write (1). The gate products are built in LUTs, pipelined.
GRU_PIPELINE_TAIL = 17


def _check_gru(**sizes: int) -> None:
    check_sizes(**sizes)


def gru_macs(input_size: int, hidden: int, layers: int = 1) -> int:
    """Multiply-accumulates of one step of an L-layer GRU: ``3H * (I + H)`` for layer 0, ``3H * 2H`` above."""
    _check_gru(input_size=input_size, hidden=hidden, layers=layers)
    return 3 * hidden * (input_size + hidden) + (layers - 1) * 3 * hidden * 2 * hidden


def gru_layer_cycles(input_size: int, hidden: int, lanes: int, simd: int) -> int:
    """Exact cycles of one layer of a step on :class:`~wavefabric.rtl.gru.GruEngine`, first multiply to next.

    ``ceil(H / P)`` slots of ``3 * (ceil(I / S) + ceil(H / S))`` multiply cycles (each lane computes r and z over
    the x and h words, then i_n over x and h_n over h, S products per cycle), then the tail: the adder tree's
    ``ceil(log2 S)`` levels, one cycle per lane into the gate pipeline, and :data:`GRU_PIPELINE_TAIL`.
    """
    _check_gru(input_size=input_size, hidden=hidden, lanes=lanes, simd=simd)
    x_words, h_words = -(-input_size // simd), -(-hidden // simd)
    return -(-hidden // lanes) * 3 * (x_words + h_words) + (simd - 1).bit_length() + lanes + GRU_PIPELINE_TAIL


def gru_step_cycles(input_size: int, hidden: int, layers: int, lanes: int, simd: int) -> int:
    """Exact cycles per step of back-to-back steps on :class:`~wavefabric.rtl.gru.GruEngine` (P lanes x S).

    ``sum(gru_layer_cycles)``, layer 0 with input size I, the others H. This
    is the period of steps when the next x is queued in time and the output is always ready. The seed size (64,
    64) at P = S = 8 takes 384 + 3 + 8 + 17 = 412 cycles per layer (384 is the multiply bound at 64 MACs/cycle).
    """
    _check_gru(layers=layers)
    return (gru_layer_cycles(input_size, hidden, lanes, simd)
            + (layers - 1) * gru_layer_cycles(hidden, hidden, lanes, simd))


def gru_step_latency(input_size: int, hidden: int, layers: int, lanes: int, simd: int) -> int:
    """Cycles from a step's last input beat (engine idle) to its last output beat: ``step + ceil(H / S) + 2``."""
    return gru_step_cycles(input_size, hidden, layers, lanes, simd) + -(-hidden // simd) + 2


# ---------------------------------------------------------------------------------------------------------------
# The SampleRNN accelerator (rtl/matvec.py, rtl/samplernn.py)
# ---------------------------------------------------------------------------------------------------------------

#: Cycles of a :class:`~wavefabric.rtl.matvec.MatVecUnit` operation beyond its issue cycles, the tree levels and
#: the last row's lane: start (1), weight read (1), PE operand, product, sum and result registers (4), the load
#: into the chain (1), the row leaving the chain (1), the narrowing register (1).
MATVEC_TAIL = 9
#: Extra cycles of a sample around its MLP: the decision (1), the wait for the partial sum (1), the MLP input's
#: last cycle (1) and the sampler's table read, product and comparison (3). Each operation's start costs a cycle
#: but overlaps the cycle of the previous operation's last result (the unit is free again in that cycle).
SAMPLERNN_SAMPLE_OVERHEAD = 6
#: Cycles of a tier around its two operations and its GRU step: the hand-over from the GRU to ``upsampling``.
SAMPLERNN_TIER_OVERHEAD = 1
#: Cycles from the DDR fetch's start to the MLP seeing its partial sum, beyond the read latency and the beats:
#: the AR's first cycle (1) and the read-modify-write of the last beat (1).
SAMPLERNN_FETCH_OVERHEAD = 2
#: Cycles from a job's ``cmd`` transfer to its first sample's decision, beyond the h0 commands: one per tier.
SAMPLERNN_START = 1
#: Cycles from a sample's code to its transfer on ``out`` (PCM read, FIFO write and read).
SAMPLERNN_OUT_LATENCY = 3


def matvec_op_cycles(rows: int, cols: int, lanes: int, simd: int) -> int:
    """Exact cycles of one operation on :class:`~wavefabric.rtl.matvec.MatVecUnit`, from ``start`` to its last result.

    ``ceil(rows / P)`` slots of ``period = max(ceil(cols / S), P)`` cycles (the narrowing stage takes one row per
    cycle, so a slot lasts at least P), then the last slot's words, the adder tree, the last row's lane and
    :data:`MATVEC_TAIL`: ``(slots - 1) * period + words + ceil(log2 S) + p_last + 9``.
    """
    check_sizes(rows=rows, cols=cols, lanes=lanes, simd=simd)
    slots, words = -(-rows // lanes), -(-cols // simd)
    p_last = rows - 1 - (slots - 1) * lanes
    return (slots - 1) * max(words, lanes) + words + (simd - 1).bit_length() + p_last + MATVEC_TAIL


def gru_lanes_per_tier(n_tiers: int, gru_lanes=None) -> tuple[int, ...]:
    """The lanes of each tier's GRU engine, bottom tier first.

    ``gru_lanes`` is one count for every tier, a sequence of one per tier, or None: 8 lanes for the bottom tier,
    which runs every ``frame_sizes[0]`` samples, and 4 for the tiers above, which run at most a quarter as often
    (at the seed configuration that saves 32 DSP48E1 and 8 BRAM36 for 13 cycles per sample).
    """
    check_sizes(n_tiers=n_tiers)
    if gru_lanes is None:
        return (8,) + (4,) * (n_tiers - 1)
    if isinstance(gru_lanes, int):
        gru_lanes = (gru_lanes,) * n_tiers
    gru_lanes = tuple(gru_lanes)
    if len(gru_lanes) != n_tiers:
        raise ValueError(f"gru_lanes must give one lane count per tier ({n_tiers}), not {len(gru_lanes)}")
    check_sizes(**{f"gru_lanes[{k}]": lanes for k, lanes in enumerate(gru_lanes)})
    return gru_lanes


def samplernn_dsp48e1(config, lanes: int, simd: int, gru_lanes=None) -> int:
    """DSP48E1 of the SampleRNN accelerator: the matrix-vector unit's P x S, each tier's GRU engine's lanes x S,
    the sampler's one, and the weight-norm loader's S squares and S + 5 for its reciprocal square root and scale
    (when the config is weight-normed)."""
    grus = gru_lanes_per_tier(config.n_tiers, gru_lanes)
    loader = 2 * simd + 13 if config.weight_norm else 0
    return lanes * simd + sum(grus) * simd + 1 + loader


@dataclass(frozen=True)
class SampleRNNTiming:
    """The SampleRNN accelerator's schedule in cycles (:func:`samplernn_timing`).

    Attributes
    ----------
    mlp : int
        Cycles of one sample without tier work: the MLP input, ``hidden``, ``output`` and the sampler.
    tiers : tuple of int
        Cycles of each tier's run (``input_expand``, the GRU step, ``upsampling``), bottom tier first.
    fetch : int
        Cycles from a DDR fetch's start to its partial sum being usable; it starts with the previous sample's MLP.
    start : int
        Cycles from a job's start to its first sample's decision (the h0 commands to the GRU engines).
    cycles_per_sample : float
        The period in steady state, averaged over a top-tier frame: ``mlp + sum(tiers[k] / n_frame_samples[k])``
        when the fetch hides behind the MLP (``fetch <= mlp``), which :func:`samplernn_timing` checks exactly.
    ddr_bytes_per_sample : int
        Bytes read from DDR per sample: ``(frame_sizes[0] - 1)`` table rows.
    """

    mlp: int
    tiers: tuple[int, ...]
    fetch: int
    start: int
    cycles_per_sample: float
    ddr_bytes_per_sample: int
    lookback: int

    def total_cycles(self, n_samples: int, frame_samples: tuple[int, ...]) -> int:
        """Exact cycles from a job's ``cmd`` transfer to its ``n_samples``-th sample's transfer on ``out``."""
        check_sizes(n_samples=n_samples)
        decide, fetch_start = self.start, self.start - 1
        for i in range(n_samples):
            ready = decide + 1 + sum(t for t, nfs in zip(self.tiers, frame_samples, strict=True) if i % nfs == 0)
            passed = max(ready, fetch_start + self.fetch)
            fetch_start = passed
            decide = passed + self.mlp - 1
        return decide - 1 + SAMPLERNN_OUT_LATENCY

    def real_time_factor(self, clock_hz: float, sample_rate: float) -> float:
        """Seconds of audio generated per second at ``clock_hz``."""
        return clock_hz / (sample_rate * self.cycles_per_sample)


def samplernn_timing(config, lanes: int = 8, simd: int = 8, gru_lanes=None, latency: int = 40) -> SampleRNNTiming:
    """The exact cycle model of :class:`~wavefabric.rtl.samplernn.SampleRNNEngine` for a SampleRNN ``config``.

    ``latency`` is the DDR read latency in cycles (AR transfer to the first R beat), with the DDR and ``out``
    never stalling. Per sample: the MLP input (``ceil(dim / 4)`` table words), the ``hidden`` and ``output``
    operations (:func:`matvec_op_cycles`) and the sampler; at a frame boundary of tier k, its ``input_expand``,
    the ``dim`` words of the GRU step's input (two cycles each), the GRU step (:func:`gru_step_latency`) and
    its ``upsampling``. The next sample's table rows (``frame_sizes[0] - 1`` bursts of ``ceil(dim / 4)`` beats)
    are fetched while the MLP runs.
    """
    dim, q, fs0 = config.dim, config.q_levels, config.frame_sizes[0]
    check_sizes(lanes=lanes, simd=simd, latency=latency)
    grus = gru_lanes_per_tier(config.n_tiers, gru_lanes)
    row_beats, dim_words = -(-dim // 4), -(-dim // simd)
    mlp = (row_beats + matvec_op_cycles(dim, dim, lanes, simd) + matvec_op_cycles(q, dim, lanes, simd)
           + SAMPLERNN_SAMPLE_OVERHEAD)
    tiers = tuple(matvec_op_cycles(dim, nfs, lanes, simd) + 2 * dim_words
                  + gru_step_latency(dim, dim, config.n_rnn, tier_lanes, simd)
                  + matvec_op_cycles(fs * dim, dim, lanes, simd) + SAMPLERNN_TIER_OVERHEAD
                  for fs, nfs, tier_lanes in zip(config.frame_sizes, config.n_frame_samples, grus, strict=True))
    fetch = latency + (fs0 - 1) * row_beats + SAMPLERNN_FETCH_OVERHEAD
    start = config.n_tiers * (2 * config.n_rnn * dim_words + 1) + SAMPLERNN_START
    per_sample = mlp + sum(t / nfs for t, nfs in zip(tiers, config.n_frame_samples, strict=True))
    if fetch > mlp:
        # The fetch is on the critical path: average the exact schedule over whole top-tier frames.
        frame = config.lookback
        timing = SampleRNNTiming(mlp, tiers, fetch, start, 0.0, 0, frame)
        per_sample = (timing.total_cycles(3 * frame, config.n_frame_samples)
                      - timing.total_cycles(2 * frame, config.n_frame_samples)) / frame
    return SampleRNNTiming(mlp, tiers, fetch, start, per_sample, (fs0 - 1) * row_beats * 8, config.lookback)


# ---------------------------------------------------------------------------------------------------------------
# ParallelWaveGAN residual layers on the systolic array (rtl/conv1d.py), and the whole generator
# ---------------------------------------------------------------------------------------------------------------

def pwg_skip_width(act_width: int, layers: int) -> int:
    """Bits of the running skip sum of ``layers`` act values: ``act_width + bit_length(layers)`` (no overflow)."""
    return act_width + layers.bit_length()


def pwg_line_slots(cols: int, kernel_size: int, max_dilation: int) -> int:
    """Blocks of C time steps the residual engine's line buffer holds for dilations up to ``max_dilation``.

    The gate GEMM of block n reads blocks ``n + floor(-p / C)`` to ``n + floor((p + C - 1) / C)``
    (``p = (K - 1) / 2 * d``, the padding); two more slots let the input run one block ahead.
    """
    pad = (kernel_size - 1) // 2 * max_dilation
    return (pad + cols - 1) // cols - (-pad) // cols + 1 + 2


#: Cycles from the transfer of a gate GEMM's last k-step into the array to the gate unit's first read of the
#: block's h, beyond ``cols`` and the row ``(G - 1) mod rows`` of the last h row: the array's result (4: skew
#: out of the last cell is in ``cols``, product, sum, shadow, row read), the result register (1), the h write
#: (1).
PWG_H_LATENCY = 6
#: Cycles from the gate unit's last read of a block to the first 1x1 k-step it allows, beyond one cycle per
#: read: h read (1), tanh and sigmoid (3), product (1), g write and the block count (1).
PWG_GATE_LATENCY = 5
#: Cycles from the transfer of the last 1x1 k-step to the transfer of the last output row, beyond ``cols`` and
#: its row in the tile: the array's result (4), the result register (1), the output register (1), inclusive
#: count (1).
PWG_OUT_LATENCY = 7


def _pwg_tile_period(rows: int, cols: int, k: int) -> int:
    return max(k, rows, cols)


def pwg_gate_lanes(rows: int, cols: int, residual: int, gate: int, skip: int, cond_taps: int,
                   kernel_size: int) -> int:
    """The fewest gate-unit lanes L (a power of two dividing ``cols``) that keep the gate off the critical path.

    The gate unit turns block n's h into g while the array runs the next block's gate GEMM; g(n) must be
    complete when the 1x1 GEMM of block n would start, ``ceil(G / rows) * max(K_g, rows, cols)`` cycles after
    the gate GEMM of block n ended (at the least, for block 0; ``K_g = R_ch K + D``, D = ``cond_taps``)::

        cols + PWG_H_LATENCY + (G - 1) mod rows + (G / 2) * cols / L + PWG_GATE_LATENCY
            <= ceil(G / rows) * max(K_g, rows, cols)

    Raises ``ValueError`` if even ``L = cols`` is too slow (tiny reductions on a wide array).
    """
    k_gate = residual * kernel_size + cond_taps
    budget = -(-gate // rows) * _pwg_tile_period(rows, cols, k_gate)
    lanes = 1
    while lanes <= cols:
        need = cols + PWG_H_LATENCY + (gate - 1) % rows + gate // 2 * (cols // lanes) + PWG_GATE_LATENCY
        if need <= budget:
            return lanes
        lanes *= 2
    raise ValueError(f"the gate unit cannot keep up with a {rows}x{cols} array on gate GEMMs of "
                     f"{-(-gate // rows)} tiles of K = {k_gate}: use more channels or a smaller array")


def pwg_layer_ideal_cycles(rows: int, cols: int, t: int, residual: int = 64, gate: int = 128, skip: int = 64,
                           aux: int = 80, kernel_size: int = 3) -> float:
    """A residual layer's MACs divided by ``rows * cols``: every processing element busy in every cycle.

    ``aux`` is the reduction the conditioning adds per gate output: A (the package's order) or D (the
    hardware's, the upsampling table's taps).
    """
    macs = t * (gate * (residual * kernel_size + aux) + gate // 2 * (skip + residual))
    return macs / (rows * cols)


def pwg_layer_cycles(rows: int, cols: int, frames: int, hop: int, dilation: int, residual: int = 64,
                     gate: int = 128, skip: int = 64, kernel_size: int = 3, cond_taps: int = 5,
                     gate_lanes: int | None = None, *, last: bool = False, loads: int = 0) -> int:
    """Exact cycles of one residual layer on :class:`~wavefabric.rtl.conv1d.ResidualEngine` (R x C array).

    Counted from cycle 0 of an idle engine whose ``x`` is valid and outputs ready from then on, to the transfer
    of the last output beat, inclusive. ``loads`` is the number of beats of aux terms or table that the first
    gate tile waits for, arriving one per cycle from cycle 0 (``F ceil(G / R)`` aux words, or the table's
    beats if more, for a layer whose were not loaded before; 0 for one that loaded during the previous layer).
    With ``N = F hop / C`` blocks, ``t_g = ceil(G / R)`` gate tiles of ``P_g = max(K_g, R, C)`` cycles
    (``K_g = R_ch K + D``) and ``t_o = ceil((S + R_ch) / R)`` 1x1 tiles (``ceil(S / R)`` for a ``last``
    layer) of ``P_o = max(G / 2, R, C)`` cycles per block, and ``q = ceil((p + C - 1) / C)`` blocks of
    look-ahead for the padding ``p = (K - 1) / 2 * dilation``::

        s0     = max(1 + min(q + 1, N) * R_ch, loads)          first k-step (line buffer filled, loads in)
        L_g    = s0 + K_g + (N t_g - 1) P_g + max(N - 2, 0) t_o P_o       last k-step of G(N-1)
        L_prev = L_g + t_o P_o if N > 1 else L_g                 last k-step of O(N-2)
        ready  = L_g + C + H + (G - 1) mod R + (G / 2)(C / L) + E      g(N-1) complete (H, E: latencies)
        L_o    = max(ready + K_o, L_prev + P_o) + (t_o - 1) P_o             last k-step of O(N-1)
        cycles = L_o + C + F + (rows_o - 1) mod R                rows_o = S + R_ch, or S for a last layer

    Every tile follows the previous one back to back (the array's ``max(K, R, C)`` spacing) except the last
    block's 1x1 GEMM, which waits for its own gate; ``H``, ``E``, ``F`` are :data:`PWG_H_LATENCY`,
    :data:`PWG_GATE_LATENCY` and :data:`PWG_OUT_LATENCY`. Assumes the biases (``G + S + R_ch`` beats) have
    arrived before the first result row (``G + S <= K_g + C + 5``; checked).
    """
    check_sizes(rows=rows, cols=cols, frames=frames, hop=hop, dilation=dilation, residual=residual, gate=gate,
                skip=skip, kernel_size=kernel_size, cond_taps=cond_taps)
    check_int("loads", loads, lo=0)
    if gate_lanes is None:
        gate_lanes = pwg_gate_lanes(rows, cols, residual, gate, skip, cond_taps, kernel_size)
    k_gate, k_out = residual * kernel_size + cond_taps, gate // 2
    if gate + skip > k_gate + cols + 5:
        raise ValueError(f"the cycle model assumes gate + skip <= K_g + cols + 5 = {k_gate + cols + 5}")
    blocks = frames * hop // cols
    pad = (kernel_size - 1) // 2 * dilation
    look_ahead = (pad + cols - 1) // cols
    rows_o = skip if last else skip + residual
    tiles_g, tiles_o = -(-gate // rows), -(-rows_o // rows)
    p_g, p_o = _pwg_tile_period(rows, cols, k_gate), _pwg_tile_period(rows, cols, k_out)
    start = max(1 + min(look_ahead + 1, blocks) * residual, loads)
    last_g = start + k_gate + (blocks * tiles_g - 1) * p_g + max(blocks - 2, 0) * tiles_o * p_o
    last_prev = last_g + tiles_o * p_o if blocks > 1 else last_g
    ready = (last_g + cols + PWG_H_LATENCY + (gate - 1) % rows + k_out * (cols // gate_lanes)
             + PWG_GATE_LATENCY)
    last_o = max(ready + k_out, last_prev + p_o) + (tiles_o - 1) * p_o
    return last_o + cols + PWG_OUT_LATENCY + (rows_o - 1) % rows


# ---------------------------------------------------------------------------------------------------------------
# GRU weight loader: weight-normed (g, v) through the weight-norm unit into the GRU engine (rtl/loader.py)
# ---------------------------------------------------------------------------------------------------------------

def gru_weight_load_cycles(input_size: int, hidden: int, layers: int, lanes: int, simd: int,
                           newton_steps: int = 2) -> int:
    """Exact cycles to load a GRU's weight-normed weights through :class:`~wavefabric.rtl.loader.GruWeightLoader`.

    Counted from the first ``v`` beat offered to an idle loader (``v`` and ``g`` valid throughout, the engine
    accepting weights) to the engine's last ``weights`` transfer, inclusive. The loader's weight-norm unit has
    S lanes: a row of n elements is ``ceil(n / S)`` beats, one engine weight word each. Phase 1 normalises the
    ``B = sum_l 3H * (ceil(I_l / S) + ceil(H / S))`` beats of every tensor back to back into the reorder buffer
    (the unit's :func:`weightnorm_cycles` for rows of mixed length: its output trails by the longest row,
    ``b_max = max(ceil(I / S), ceil(H / S))`` beats, plus its latency); phase 2 starts the cycle after the last
    write and streams the buffer's ``N = weight_depth * P`` words, one per cycle after a read cycle::

        cycles = B + b_max + weightnorm_latency(newton_steps) + N

    ``N`` exceeds ``B`` only by the zero words of lanes past H in the last slot (``ceil(H / P) * P > H``).
    The seed size (64 x 64, one layer) at P = S = 8: 3072 + 8 + 16 + 3072 = 6168 cycles.
    """
    _check_gru(input_size=input_size, hidden=hidden, layers=layers, lanes=lanes, simd=simd)
    x_words, h_words = -(-input_size // simd), -(-hidden // simd)
    words = [x_words + h_words] + [2 * h_words] * (layers - 1)
    beats = sum(3 * hidden * n for n in words)
    buffered = sum(-(-hidden // lanes) * lanes * 3 * n for n in words)
    return beats + max(x_words, h_words) + weightnorm_latency(newton_steps) + buffered


#: One Zynq-7000 AXI_HP port: 64 bits at up to 150 MHz (Zynq-7000 TRM, UG585, "AXI_HP interfaces"): 1.2 GB/s.
PYNQ_Z1_HP_PORT_BYTES_PER_S = 8 * 150e6
#: The PYNQ-Z1's DDR3 peak: a 16-bit interface at 1066 MT/s (PYNQ-Z1 reference manual, 512 MB DDR3): 2.13 GB/s,
#: shared by all four HP ports and the processors.
PYNQ_Z1_DDR_BYTES_PER_S = 2 * 1066e6
#: Resources of the xc7z020 (PYNQ-Z1): logic LUTs, flip-flops, DSP48E1 slices, 36 Kb block RAMs (4.5 KB each).
XC7Z020 = {"lut": 53_200, "ff": 106_400, "dsp48e1": 220, "bram36": 140}
XC7Z020_DSP48E1 = XC7Z020["dsp48e1"]
XC7Z020_BRAM_BYTES = XC7Z020["bram36"] * 4608


def pwg_engine_cycles(config, rows: int, cols: int, frames: int, gate_lanes: int | None = None) -> int:
    """Exact cycles of one job of ``frames`` frames on :class:`~wavefabric.rtl.pwg.PWGEngine`, from cycle 0 of an
    idle engine (its table loaded) whose inputs are always valid and PCM output always ready, to the last PCM
    transfer, inclusive.

    The front end (:func:`pwg_frontend_timing`) writes x0 into the x memory, last beat at ``x0_last``; layer
    l = 0 .. L (L: the output layer) then starts (its cycle 0, :func:`pwg_layer_cycles`) at ``X_0 = x0_last
    + 1`` and ``X_l = E_(l-1) + 3`` (``E``: the cycle of a layer's last output; two cycles to see the counts
    and set the next layer's kind). Layer l's aux words come from the front end, which starts them the cycle
    after layer l - 1's last word ``c_(l-1)`` was taken; the engine takes them once the bank of layer l - 2 is
    free, from ``E_(l-2)`` (:func:`pwg_frontend_layer_cycles` with ``accept``). A layer waits for its last aux
    word (``loads = max(0, c_l + 1 - X_l)``)::

        E_l    = X_l + pwg_layer_cycles(..., last=(l >= L - 1), loads) - 1
        cycles = E_L - g + 2                      the PCM register

    The output layer runs as a last layer with dilation 1; its last output is skip row S - 1 of the last block,
    the waveform's last sample is row ``o = out_channels - 1``, ``g = ((S - 1) // R - o // R) max(G / 2, R, C)
    + (S - 1) % R - o % R`` cycles earlier (rows leave one per cycle, tiles ``max(G / 2, R, C)`` apart).
    """
    from .pwg import upsample_geometry

    taps = upsample_geometry(config.upsample_scales)[0]
    layers, gate = config.layers, config.gate_channels
    front = pwg_frontend_timing(config, frames, cols, rows)
    ends: list[int] = []
    cond_last = front.x0_last
    start = front.x0_last + 1
    for layer in range(layers + 1):
        zero = layer == layers
        begin = cond_last + 1
        accept = max(0, ends[layer - 2] - begin) if layer >= 2 else 0  # the bank of layer l - 2 frees at its end
        cond_last = begin + pwg_frontend_layer_cycles(config, frames, rows, zero, accept) - 1
        if layer:
            start = ends[-1] + 3
        loads = max(0, cond_last + 1 - start)
        dilation = 1 if zero else config.dilation(layer)
        span = pwg_layer_cycles(rows, cols, frames, config.hop_size, dilation, config.residual_channels, gate,
                                config.skip_channels, config.kernel_size, taps, gate_lanes,
                                last=layer >= layers - 1, loads=loads)
        ends.append(start + span - 1)
    skip, out = config.skip_channels - 1, config.out_channels - 1
    gap = (skip // rows - out // rows) * _pwg_tile_period(rows, cols, gate // 2) + skip % rows - out % rows
    return ends[-1] - gap + 2


#: The recommended ParallelWaveGAN configuration on the xc7z020 (``benchmarks/pwg.py``): the array that fits
#: the 220 DSP48E1 at 16 bits and reaches real time at the lowest clock, and that clock rounded up to 5 MHz.
PWG_RECOMMENDED = {"rows": 13, "cols": 16, "clock_hz": 120e6}


def estimate_pwg(rows: int = PWG_RECOMMENDED["rows"], cols: int = PWG_RECOMMENDED["cols"],
                 clock_hz: float = PWG_RECOMMENDED["clock_hz"], int8_pack: bool = False, t: int = 22050,
                 config=None) -> dict:
    """Real-time figures of :class:`~wavefabric.rtl.pwg.PWGEngine` on an R x C array at ``clock_hz``.

    Defaults: :data:`PWG_RECOMMENDED`. One job of ``ceil(t / hop)`` frames (default one second at 22.05 kHz),
    timed by :func:`pwg_engine_cycles`. With ``int8_pack`` (a what-if: the engine is 16-bit) two 8-bit
    multiplies would share one DSP48E1 at the same cycles. Returns a JSON-ready dict: ``clock_hz``, ``cycles``
    (``total``, ``front_end``: to the last x0 row, ``layers``: the rest), ``cycles_per_sample``,
    ``real_time_factor`` (samples per second generated / ``sample_rate``), ``clock_hz_for_real_time``,
    ``utilization`` (MACs of :func:`pwg_macs` / (R C cycles)), ``dsp48e1`` (the array and the front end's one)
    and ``fits_dsp`` (<= 220), and the block RAM the job's activations need on chip (``activation_bram36``:
    the x and skip-sum memories, one row of C lanes per 36 Kb).
    """
    from .pwg import PWGConfig

    config = PWGConfig() if config is None else config
    check_sizes(rows=rows, cols=cols, t=t)
    if not clock_hz > 0:
        raise ValueError(f"clock_hz must be > 0, not {clock_hz!r}")
    frames = max(2, -(-t // config.hop_size))
    samples = frames * config.hop_size
    total = pwg_engine_cycles(config, rows, cols, frames)
    front = pwg_frontend_timing(config, frames, cols, rows).x0_last + 1
    per_sample = total / samples
    macs = pwg_macs(config)
    dsp = (-(-rows * cols // 2) if int8_pack else rows * cols) + 1
    row_bits = cols * (config.numerics.act.width * config.residual_channels
                       + pwg_skip_width(config.numerics.act.width, config.layers) * config.skip_channels)
    return {
        "rows": rows, "cols": cols, "clock_hz": clock_hz, "int8_pack": int8_pack, "frames": frames, "t": samples,
        "sample_rate": config.sample_rate,
        "cycles": {"front_end": front, "layers": total - front, "total": total},
        "cycles_per_sample": per_sample,
        "macs_per_sample": macs.total,
        "real_time_factor": clock_hz / per_sample / config.sample_rate,
        "clock_hz_for_real_time": per_sample * config.sample_rate,
        "utilization": macs.total * samples / (rows * cols * total),
        "dsp48e1": dsp,
        "fits_dsp": dsp <= XC7Z020_DSP48E1,
        "activation_bram36": -(-samples // cols * row_bits // (36 * 1024)),
    }

def matvec_weight_load_cycles(matrices, simd: int, newton_steps: int = 2) -> int:
    """Exact cycles to load weight-normed matrices through :class:`~wavefabric.rtl.loader.MatVecWeightLoader`.

    ``matrices`` lists ``(rows, cols, taps)`` per matrix in stream order: ``taps = 0`` for a tensor normalised
    per matrix row (``v`` rows of ``cols`` elements), else a ConvTranspose1d normalised per matrix column (``v``
    rows of ``rows`` elements, one per column). Counted from the first ``v`` beat offered to an idle loader (``v``
    and ``g`` valid throughout) to the last word written into the matrix-vector unit, inclusive.

    The weight-norm unit (S lanes) takes ``B = sum(v_rows * ceil(row_length / S))`` beats at one per cycle; its
    output of row ``k`` (``b_k`` beats) can start ``b_k + latency`` cycles after the row's first beat, and
    every row-normalised beat is written as it leaves the unit. A ConvTranspose group of S ``v`` rows (the last
    group of a matrix may be shorter) is collected in the transposition buffer and then drained, one word per
    matrix row, while the unit's output waits: ``rows + 1`` cycles (the buffer's read cycle). Once the output
    has waited, the unit's row buffer (a longest row plus its latency) keeps it busy, so the only bubbles are
    the waits for a row's scale, which the lag of the first row of each matrix bounds::

        cycles = B + latency - 1 + max over matrices m of (b_m + sum over m' >= m of groups_m' * (rows_m' + 1))

    with ``groups = ceil(cols / S)`` for a ConvTranspose and 0 otherwise. ``P`` does not enter: a word is
    written per cycle into any lane. At the SampleRNN seed configuration (S = 8): 13,440 beats, 10,256 drain
    cycles (tier 0 ``upsampling``: 8 groups of 1,025; tier 1: 8 of 257) and the 128-beat rows of tier 0's
    ``upsampling`` give 13,440 + 15 + 128 + 10,256 = 23,839 cycles (0.24 ms at 100 MHz).
    """
    check_sizes(simd=simd)
    beats, lag, drains = 0, 0, 0
    for rows, cols, taps in reversed(list(matrices)):
        check_sizes(rows=rows, cols=cols)
        if isinstance(taps, bool) or not isinstance(taps, int) or taps < 0 or (taps and rows % taps):
            raise ValueError(f"taps must be 0 or an integer >= 1 dividing rows = {rows}, not {taps!r}")
        v_rows, length = (cols, rows) if taps else (rows, cols)
        b = -(-length // simd)
        beats += v_rows * b
        if taps:
            drains += -(-cols // simd) * (rows + 1)
        lag = max(lag, b + drains)
    return beats + weightnorm_latency(newton_steps) - 1 + lag


# --- DMA: records between a stream and the DDR (rtl/dma.py) ------------------------------------------------------

__all__ += ["AXI_MAX_BURST", "AXI_PAGE", "dma_bursts", "memory_reader_cycles", "memory_reader_commands_cycles",
            "memory_writer_cycles", "memory_writer_commands_cycles"]

#: Beats of the longest AXI4 INCR burst.
AXI_MAX_BURST = 256
#: Bytes of the address range no AXI4 burst may cross.
AXI_PAGE = 4096


def dma_bursts(addr: int, beats: int, beat_bytes: int) -> list[int]:
    """Beats of each burst that moves ``beats`` beats from byte ``addr`` (a multiple of ``beat_bytes``).

    Each burst is as long as it may be: at most :data:`AXI_MAX_BURST` beats, and up to the next 4 KiB boundary,
    which it never crosses. This is how :class:`~wavefabric.rtl.dma.MemoryReader` and
    :class:`~wavefabric.rtl.dma.MemoryWriter` split a command.
    """
    check_int("addr", addr, lo=0)
    check_int("beats", beats, lo=0)
    check_int("beat_bytes", beat_bytes)
    if addr % beat_bytes:
        raise ValueError(f"addr must be a multiple of beat_bytes = {beat_bytes}, not {addr}")
    bursts = []
    while beats:
        n = min(AXI_MAX_BURST, beats, (AXI_PAGE - addr % AXI_PAGE) // beat_bytes)
        bursts.append(n)
        addr, beats = addr + n * beat_bytes, beats - n
    return bursts


def _dma_commands(record_bits: int, commands, data_width: int) -> list[tuple[int, int]]:
    """``commands`` checked, as ``(addr, beats)``."""
    check_int("record_bits", record_bits)
    if data_width not in (32, 64):
        raise ValueError(f"data_width must be 32 or 64, not {data_width!r}")
    commands = list(commands)
    if not commands:
        raise ValueError("commands must hold at least one (addr, count)")
    return [(check_int("addr", addr, lo=0), check_int("count", count, lo=0) * -(-record_bits // data_width))
            for addr, count in commands]


def memory_reader_commands_cycles(record_bits: int, commands, data_width: int = 64, latency: int = 40,
                                  outstanding: int = 2) -> int:
    """Exact cycles of :class:`~wavefabric.rtl.dma.MemoryReader` commands ``[(addr, count), ...]``, from the
    first ``cmd`` transfer (cycle 0) to the transfer of the last record, inclusive.

    The reader is idle and every command valid from cycle 0, the memory
    (:class:`~wavefabric.sim.streams.AxiMemory`) takes AR at once and offers each R beat as soon as its
    ``latency`` allows, ``records`` is always ready. Each command's ``count * ceil(record_bits / data_width)``
    beats go in the bursts of :func:`dma_bursts`; over all commands, burst ``k`` (``n_k`` beats) has its AR in
    cycle ``a_k`` and its R beats in cycles ``s_k .. e_k = s_k + n_k - 1``::

        a_k = a_(k-1) + 1                          within a command (a_(-1) = -1)
        a_k = c + 1                                first burst of a command taken in cycle c: the cycle after
                                                   the previous command's last AR (or after it was taken, for
                                                   a count of 0), c = 0 for the first
        a_k = max(a_k, e_(k-outstanding) + 1)      once k >= outstanding
        s_k = max(a_k + latency, e_(k-1) + 1)
        cycles = e_last + 2                        (the record register, then its transfer)

    When R never waits (``s_k = e_(k-1) + 1``, as with two bursts in flight on long transfers at the default
    latency) one command takes ``beats + latency + 2`` and the next command's beats follow without a gap.
    """
    check_int("latency", latency)
    check_int("outstanding", outstanding)
    issued, ends, taken = [], [], 0
    for addr, beats in _dma_commands(record_bits, commands, data_width):
        for n, size in enumerate(dma_bursts(addr, beats, data_width // 8)):
            a = taken + 1 if n == 0 else issued[-1] + 1
            if len(issued) >= outstanding:
                a = max(a, ends[len(issued) - outstanding] + 1)
            ends.append(max(a + latency, ends[-1] + 1 if ends else 0) + size - 1)
            issued.append(a)
        taken = issued[-1] + 1 if beats else taken + 1
    if not ends:
        raise ValueError("commands must read at least one record")
    return ends[-1] + 2


def memory_reader_cycles(record_bits: int, count: int, data_width: int = 64, addr: int = 0, latency: int = 40,
                         outstanding: int = 2) -> int:
    """Exact cycles of one :class:`~wavefabric.rtl.dma.MemoryReader` command of ``count`` (>= 1) records at
    ``addr``: :func:`memory_reader_commands_cycles` of ``[(addr, count)]``; ``beats + latency + 2`` when R never
    waits."""
    check_int("count", count)
    return memory_reader_commands_cycles(record_bits, [(addr, count)], data_width, latency, outstanding)


def memory_writer_commands_cycles(record_bits: int, commands, data_width: int = 64, write_latency: int = 40,
                                  pending: int = 4) -> int:
    """Exact cycles of :class:`~wavefabric.rtl.dma.MemoryWriter` commands ``[(addr, count), ...]``, from the
    first ``cmd`` transfer (cycle 0) to the transfer of the last ``done`` beat, inclusive.

    The writer is idle, commands and records are always valid, the memory takes AW at once and every W beat as
    soon as its burst's AW has transferred, and offers each B response ``write_latency`` cycles after the
    burst's last W beat; ``done`` is always ready. A command of ``N = count * ceil(record_bits / data_width)``
    beats taken in cycle ``c_j`` has its first record taken in ``c_j + 1`` and its W beats back to back in
    cycles ``c_j + 2 .. t_j = c_j + N + 1`` (its AWs, one per cycle from ``c_j + 1``, stay ahead of them); its
    last B response transfers in cycle ``t_j + write_latency`` and its ``done`` once that is counted, in order::

        c_0 = 0,  c_j = max(t_(j-1) + 1, d_(j-pending) + 1)    (the second term once j >= pending)
        d_j = max(t_j + write_latency + 1, d_(j-1) + 1)        (a count of 0: t_j = c_j, d_j = max(c_j + 1, ...))
        cycles = d_last + 1

    One command takes ``N + write_latency + 3`` cycles (2 for a count of 0); commands that follow overlap
    their W beats with the previous command's wait for B, two cycles apart. The addresses do not matter:
    bursts only decide where ``last`` goes.
    """
    check_int("write_latency", write_latency)
    check_int("pending", pending)
    done: list[int] = []
    last_w = -1
    for _, beats in _dma_commands(record_bits, commands, data_width):
        taken = last_w + 1 if len(done) < pending else max(last_w + 1, done[len(done) - pending] + 1)
        last_w = taken + beats + 1 if beats else taken
        done.append(max(last_w + (write_latency + 1 if beats else 1), done[-1] + 1 if done else 0))
    return done[-1] + 1


def memory_writer_cycles(record_bits: int, count: int, data_width: int = 64, write_latency: int = 40) -> int:
    """Exact cycles of one :class:`~wavefabric.rtl.dma.MemoryWriter` command of ``count`` records:
    :func:`memory_writer_commands_cycles` of one command, ``N + write_latency + 3`` (2 for a count of 0)."""
    return memory_writer_commands_cycles(record_bits, [(0, count)], data_width, write_latency)


# ---------------------------------------------------------------------------------------------------------------
# ParallelWaveGAN front end: conv_in, first_conv and every layer's frame-rate aux 1x1 on one multiplier
# (rtl/frontend.py)
# ---------------------------------------------------------------------------------------------------------------

__all__ += ["PWG_FRONTEND_LATENCY", "PWGFrontEndTiming", "pwg_frontend_cond_cycles", "pwg_frontend_layer_cycles",
            "pwg_frontend_timing"]

#: Cycles from the issue of an output's last multiply-accumulate to the transfer of its word on a ready stream,
#: inclusive of the issue cycle: operand registers, product, accumulator, narrowing into the output register
#: (the issue and these four cycles), then the transfer.
PWG_FRONTEND_LATENCY = 5


def _check_frontend(config, frames: int, cols: int, rows: int) -> None:
    check_int("frames", frames, lo=2)
    check_int("rows", rows)
    check_int("cols", cols)
    if cols & (cols - 1) or config.hop_size % cols:
        raise ValueError(f"cols must be a power of two dividing hop = {config.hop_size}, not {cols}")


def pwg_frontend_cond_cycles(config, frames: int, rows: int, zero: bool = False, accept: int = 0) -> list[int]:
    """When each of one layer's ``cond`` words transfers on :class:`~wavefabric.rtl.frontend.PWGFrontEnd`,
    counted from the layer's start, with ``weights`` always valid.

    A layer starts (its cycle 0) in the cycle after the previous layer's last ``cond`` word has been taken
    (layer 0: after the last ``x0`` beat; the next job's mel load likewise after the zero layer's last word),
    so a chain of layers composes: each starts the cycle after the previous one's last word. Its ``F G A``
    multiply-accumulates issue one per cycle from cycle 0 (frame-major, gate tile by gate tile), and a word
    leaves :data:`PWG_FRONTEND_LATENCY` cycles after its last one issued: word ``n`` (frame m, gate tile i) at
    ``o_n = m G A + min((i + 1) rows, G) A + 4``; the zero layer (``zero=True``) issues one word per cycle,
    ``o_n = n + 5``.

    ``accept`` models the consumer of the residual engine's double-buffered loader: it takes no word before
    cycle ``accept`` and every word from then on. A finished word waits in the output register, and the next
    finished word (word 1, in its last pipeline stage in cycle ``o_1 - 1``) stalls the whole unit until the
    register is taken, so::

        word 0:       max(o_0, accept)
        word n >= 1:  o_n + max(0, accept - o_1 + 1)
    """
    _check_frontend(config, frames, 1, rows)
    check_int("accept", accept, lo=0)
    gate, aux = config.gate_channels, config.aux_channels
    tiles = -(-gate // rows)
    if zero:
        issued = list(range(frames * tiles))
    else:
        issued = [m * gate * aux + min((i + 1) * rows, gate) * aux - 1 for m in range(frames) for i in range(tiles)]
    offsets = [n + PWG_FRONTEND_LATENCY for n in issued]
    stall = max(0, accept - offsets[1] + 1)
    return [max(offsets[0], accept)] + [o + stall for o in offsets[1:]]


def pwg_frontend_layer_cycles(config, frames: int, rows: int, zero: bool = False, accept: int = 0) -> int:
    """Cycles of one layer's ``cond`` words on :class:`~wavefabric.rtl.frontend.PWGFrontEnd`, from the layer's
    start to the transfer of its last word, inclusive: the next layer starts this many cycles after it
    (:func:`pwg_frontend_cond_cycles`, whose last word this counts). With ``cond`` always ready::

        cycles = F G A + 5           (zero layer: F ceil(G / rows) + 5)
    """
    return pwg_frontend_cond_cycles(config, frames, rows, zero, accept)[-1] + 1


@dataclass(frozen=True)
class PWGFrontEndTiming:
    """Exact timing of one job on :class:`~wavefabric.rtl.frontend.PWGFrontEnd` (:func:`pwg_frontend_timing`).

    Attributes
    ----------
    x0_last : int
        Cycle of the last ``x0`` transfer.
    cond_last : tuple of int
        Cycle of each layer's last ``cond`` transfer: L layers, then the zero layer.
    cycles : int
        ``cond_last[-1] + 1``: the cycles of the job, and its period when jobs follow back to back.
    """

    x0_last: int
    cond_last: tuple[int, ...]
    cycles: int


def pwg_frontend_timing(config, frames: int, cols: int, rows: int) -> PWGFrontEndTiming:
    """Exact cycles of one job of ``frames`` frames on :class:`~wavefabric.rtl.frontend.PWGFrontEnd`, from cycle 0
    of an idle unit whose inputs are always valid and outputs always ready.

    With A, R, G, ``I = in_channels``, ``taps = 2w + 1``, ``N = F hop / C`` blocks, the issue stage takes one
    item per cycle with no gap between phases::

        mel load     A (F + 2w)                    beats into the mel memory
        conv_in      A F A taps                    MACs (frame 0 of each row takes its weights as they arrive)
        first load   R I                           first_conv weights (the R biases load beside them)
        first_conv   N (I + R C I)                 per block: its noise, then R C outputs of I MACs
        x0_last    = (sum of the above) + 4        the last x0 beat, PWG_FRONTEND_LATENCY after its last issue

    then the layers one after the other, each starting the cycle after the previous stream's last word
    (:func:`pwg_frontend_layer_cycles`)::

        cond_last[l] = (x0_last if l == 0 else cond_last[l - 1]) + F G A + 5        l < L
        cond_last[L] = cond_last[L - 1] + F ceil(G / rows) + 5                       the zero layer
        cycles       = cond_last[L] + 1
    """
    _check_frontend(config, frames, cols, rows)
    a, r, i = config.aux_channels, config.residual_channels, config.in_channels
    taps = 2 * config.aux_context_window + 1
    blocks = frames * config.hop_size // cols
    issued = a * (frames + taps - 1) + a * frames * a * taps + r * i + blocks * (i + r * cols * i)
    x0_last = issued + PWG_FRONTEND_LATENCY - 1
    ends, last = [], x0_last
    for layer in range(config.layers + 1):
        last += pwg_frontend_layer_cycles(config, frames, rows, zero=layer == config.layers)
        ends.append(last)
    return PWGFrontEndTiming(x0_last, tuple(ends), ends[-1] + 1)
