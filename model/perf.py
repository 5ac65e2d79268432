"""Closed-form work and cycle models.

Work is counted in multiply-accumulates (MACs) per output audio sample, layer by layer, so that the CLI, the
benchmarks and the design-space figures all come from one place. Cycle models of the engines live here too:
simulation tests assert that the RTL takes exactly the cycles these functions give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["WorkReport", "samplernn_macs", "pwg_macs"]


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


def pwg_macs(config) -> WorkReport:
    """MACs per output sample of the ParallelWaveGAN generator (``parallel-wavegan`` structure).

    Per residual layer and sample: the dilated convolution (``residual * gate * kernel``), the aux 1x1
    (``aux * gate``), the skip and output 1x1s (``gate/2 * skip`` and ``gate/2 * residual``). Plus the first 1x1,
    the two output 1x1s, and the upsampler: ``conv_in`` at the frame rate and one ``2s+1``-tap filter per aux
    channel at each upsampling stage's rate. The ljspeech v1 configuration gives about 1.30 M.
    """
    report = WorkReport("pwg", config.sample_rate)
    hop = 1
    for scale in config.upsample_scales:
        hop *= scale
    aux = config.aux_channels
    report.layers["upsample.conv_in"] = aux * aux * (2 * config.aux_context_window + 1) / hop
    rate = 1
    for stage, scale in enumerate(config.upsample_scales):
        rate *= scale
        report.layers[f"upsample.stage{stage}"] = aux * (2 * scale + 1) * rate / hop
    res, gate, skip = config.residual_channels, config.gate_channels, config.skip_channels
    report.layers["first_conv"] = config.in_channels * res
    per_layer = res * gate * config.kernel_size + aux * gate + gate // 2 * skip + gate // 2 * res
    report.layers["residual_layers"] = config.layers * per_layer
    report.layers["last_conv"] = skip * skip + skip * config.out_channels
    return report


# ---------------------------------------------------------------------------------------------------------------
# GEMM on the output-stationary systolic array (rtl/systolic.py, rtl/gemm.py)
# ---------------------------------------------------------------------------------------------------------------

__all__ += ["gemm_tiles", "gemm_cycles", "gemm_ideal_cycles", "gemm_fill_drain_cycles", "estimate_gemm"]

#: Cycles from a tile's last k-step transfer to its first result row on the GemmEngine's output, minus ``cols``:
#: skew of the top-right cell (cols - 1), its operand, product and sum registers (3), the shadow and row read
#: (2), the narrowing register (1).
GEMM_LATENCY_BASE = 5


def _check_gemm(rows: int, cols: int, m: int, n: int, k: int) -> None:
    for name, value in (("rows", rows), ("cols", cols), ("m", m), ("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")


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

__all__ += ["weightnorm_latency", "weightnorm_cycles"]


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
    for name, value in (("rows", rows), ("cols", cols), ("lanes", lanes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    beats = -(-cols // lanes)
    return rows * beats + beats + weightnorm_latency(newton_steps) - 1


# ---------------------------------------------------------------------------------------------------------------
# GRU engine: batch-1 steps of a multi-layer GRU (rtl/gru.py)
# ---------------------------------------------------------------------------------------------------------------

__all__ += ["GRU_PIPELINE_TAIL", "gru_macs", "gru_layer_cycles", "gru_step_cycles", "gru_step_latency"]

#: Cycles from a layer's last multiply to its next layer's first, beyond the adder tree's levels and one cycle
#: per lane: weight read (1), processing element (4), narrowing (1), gate pipeline (sigmoid 3, r * h_n 2, add 1,
#: tanh 3, h - n' 1, z * (h - n') 2), state write (1). The gate products are built in LUTs, pipelined.
GRU_PIPELINE_TAIL = 17


def _check_gru(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")


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
