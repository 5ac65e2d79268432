"""Simulating :class:`~wavefabric.rtl.samplernn.SampleRNNEngine`: its load image and DDR table, and whole runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..model.sampler import pcm16, seed_state, temperature_int
from ..model.samplernn import SampleRNNFixed, SampleRNNParams
from ..rtl.samplernn import TABLE_LANES, LoadRegion, SampleRNNEngine, SampleRNNLayout
from .loader import matvec_image, matvec_loader_beats
from .streams import AxiReadMemory, StreamRun, run_streams

__all__ = ["load_frames", "matvec_weight_norm_pairs", "table_image", "job_beat", "SampleRNNRun", "run_samplernn",
           "TABLE_BASE"]

#: Where the simulations put the table in the DDR image (4 KiB aligned, not 0, so the base address is exercised).
TABLE_BASE = 0x1000


def _frame(region: int, words: np.ndarray, simd: int) -> dict:
    """One load frame: ``words`` (any shape, flattened) packed ``simd`` per beat, zero padded."""
    flat = np.asarray(words, dtype=np.int64).reshape(-1)
    rows = np.pad(flat, (0, -len(flat) % simd)).reshape(-1, simd)
    n = len(rows)
    return {"data": rows, "region": np.full(n, region), "first": np.arange(n) == 0, "last": np.arange(n) == n - 1}


def _matvec_words(layout: SampleRNNLayout, matrices: list[np.ndarray]) -> np.ndarray:
    """Every lane's weight memory ``(depth, P, S)``: row ``k * P + p`` of each matrix in lane ``p``, slot ``k``."""
    return matvec_image(layout.normed_matrices(), matrices, layout.lanes, layout.simd, layout.weight_depth)


def matvec_weight_norm_pairs(params: SampleRNNParams) -> list[tuple]:
    """The float ``(g, v)`` of the matrix-vector unit's matrices in :attr:`SampleRNNLayout.ops` order (PyTorch
    layouts: ``input_expand``, ``upsampling``'s ConvTranspose1d per tier, then the MLP's ``hidden`` and
    ``output``), for a weight-normed checkpoint (``config.weight_norm``)."""
    layers = [w for tier in params.tiers for w in (tier.input_expand, tier.upsampling)]
    return [(w.g, w.v) for w in (*layers, params.mlp.hidden, params.mlp.output)]


def _normed_frame(engine: SampleRNNEngine, model: SampleRNNFixed) -> dict:
    """The ``MATVEC_NORMED`` frame: per row of every matrix, its ``g`` beat (``g``, ``frac``) then its ``v`` beats.

    The unit normalises into ``num.weight``'s format; a matrix whose own format has ``d`` more fractional bits
    gets ``g``'s ``frac`` minus ``d`` (the unit's narrowing then drops ``d`` fewer bits: the same integers as
    normalising into the matrix's format)."""
    S, num = engine.layout.simd, model.config.numerics
    v_beats, g_beats = matvec_loader_beats(engine.loader, matvec_weight_norm_pairs(model.params))
    v, g = iter(v_beats), iter(g_beats)
    offsets = [model.formats.frac[f"{op.name}.weight"] - num.weight.frac for op in engine.layout.ops]
    words = []
    for mat, offset in zip(engine.loader.matrices, offsets, strict=True):
        for _ in range(mat.v_shape[0]):
            beat = next(g)
            frac = beat["frac"] - offset
            if not engine.loader.g_frac_min <= frac <= engine.loader.g_frac_max:
                raise ValueError(f"g of {mat} needs frac {frac} at its weight format; the loader takes "
                                 f"{engine.loader.g_frac_min} to {engine.loader.g_frac_max}")
            words.append([beat["data"], frac] + [0] * (S - 2))
            words += [next(v)["data"] for _ in range(-(-mat.v_shape[1] // S))]
    return _frame(LoadRegion.MATVEC_NORMED, np.array(words), S)


def load_frames(engine: SampleRNNEngine, model: SampleRNNFixed) -> dict:
    """The ``load`` stream that puts ``model``'s weights and formats into ``engine``, as payload columns.

    Frames in region order (:class:`~wavefabric.rtl.samplernn.LoadRegion`): the narrowing shifts of the model's
    formats (:meth:`~wavefabric.rtl.samplernn.SampleRNNLayout.shifts`), the matrix-vector unit's weights (with
    ``config.weight_norm`` the checkpoint's ``(g, v)`` as ``MATVEC_NORMED``, which the engine's loader normalises
    to :meth:`~wavefabric.model.samplernn.SampleRNNFixed.integer_params`' matrices; else the integer matrices
    as ``MATVEC_WEIGHTS``) and biases, every tier's h0, the newest position's table rows, and each tier's GRU
    weights and biases (with each layer's shift).
    """
    lay, cfg = engine.layout, model.config
    if cfg != lay.config:
        raise ValueError("the model's config is not the engine's")
    ints = model.integer_params()
    S, dw, dim = lay.simd, lay.dim_words, cfg.dim
    matrices, biases = [], []
    for tier in ints.tiers:
        matrices += [tier.input_expand, tier.upsampling]
        biases += [tier.input_expand_bias, tier.upsampling_bias]
    matrices += [ints.hidden, ints.output]
    biases += [ints.hidden_bias, ints.output_bias]
    h0 = np.zeros((cfg.n_tiers, cfg.n_rnn, dw * S), dtype=np.int64)
    for k, tier in enumerate(ints.tiers):
        h0[k, :, :dim] = tier.h0
    newest = np.zeros((cfg.q_levels, lay.row_stride * TABLE_LANES), dtype=np.int64)
    newest[:, :dim] = model.mlp_table[-1]
    shifts = model.formats.shifts()
    frames = [_frame(LoadRegion.CONFIG, lay.shifts(model.formats), S),
              (_frame(LoadRegion.MATVEC_WEIGHTS, _matvec_words(lay, matrices), S) if engine.loader is None
               else _normed_frame(engine, model)),
              _frame(LoadRegion.MATVEC_BIASES, np.concatenate(biases), S),
              _frame(LoadRegion.H0, h0, S),
              # One table word (TABLE_LANES entries) per beat, in the first lanes.
              _frame(LoadRegion.TABLE, np.pad(newest.reshape(-1, TABLE_LANES), ((0, 0), (0, S - TABLE_LANES))), S)]
    for k, (tier, gru) in enumerate(zip(ints.tiers, engine.grus, strict=True)):
        geo = gru.geometry
        frames.append(_frame(LoadRegion.gru_weights(k), geo.weight_words(tier.weight_ih, tier.weight_hh), S))
        layer_shifts = [shifts[f"tier{k}.gru{layer}"] for layer in range(cfg.n_rnn)]
        frames.append(_frame(LoadRegion.gru_biases(k), geo.bias_values(tier.bias_ih, tier.bias_hh, layer_shifts), S))
    return {key: np.concatenate([f[key] for f in frames]) for key in frames[0]}


def table_image(layout: SampleRNNLayout, model: SampleRNNFixed, base: int = TABLE_BASE) -> bytes:
    """The DDR image: zeros up to ``base``, then the table rows as ``layout`` places them (little-endian int16)."""
    cfg = layout.config
    rows = np.zeros((cfg.frame_sizes[0], cfg.q_levels, layout.row_bytes // 2), dtype="<i2")
    rows[:, :, :cfg.dim] = model.mlp_table
    return bytes(base) + rows.tobytes()


def job_beat(count: int, seed: int, temperature: float, base: int = TABLE_BASE) -> dict:
    """The ``cmd`` beat of a job: ``count`` samples from ``seed`` at ``temperature``, the table at ``base``."""
    return {"count": count, "seed": seed_state(seed), "temperature": temperature_int(temperature),
            "table_base": base}


@dataclass
class SampleRNNRun:
    """Outcome of :func:`run_samplernn`.

    Attributes
    ----------
    codes, pcm : the generated samples as the engine streamed them.
    expected : the codes of :meth:`~wavefabric.model.samplernn.SampleRNNFixed.generate` with the same seed.
    bit_exact : bool
        Codes equal, PCM equal to :func:`~wavefabric.model.sampler.pcm16` of them, ``last`` only on the final
        sample, the engine's ``error`` low and its ``saturated`` flags those of the model's counts.
    saturated : dict[str, bool]
        The engine's saturation flags after the job, by narrowing
        (:meth:`~wavefabric.rtl.samplernn.SampleRNNLayout.saturation_names`).
    expected_saturated : dict[str, bool]
        The model's: which of :attr:`~wavefabric.model.samplernn.SampleRNNFixed.saturations` counted any.
    cycles : int
        From the job's ``cmd`` transfer to the last sample's transfer.
    ddr_bytes : int
        Bytes the engine read from DDR.
    streams : StreamRun
    """

    codes: np.ndarray
    pcm: np.ndarray
    expected: np.ndarray
    bit_exact: bool
    cycles: int
    ddr_bytes: int
    streams: StreamRun
    saturated: dict[str, bool]
    expected_saturated: dict[str, bool]


def run_samplernn(engine: SampleRNNEngine, model: SampleRNNFixed, n_samples: int, seed: int = 0,
                  temperature: float = 1.0, *, latency: int = 40, stall_seed: int = 0, p_valid: float = 1.0,
                  p_ready: float = 1.0, backend: str = "amaranth", vivado_verilog: bool = False,
                  expected: np.ndarray | None = None, progress: Callable[[int], object] | None = None,
                  name: str = "samplernn") -> SampleRNNRun:
    """Load ``model`` into ``engine``, generate ``n_samples`` on ``backend`` and check them against the model.

    ``p_valid`` / ``p_ready`` below 1 stall every stream at random (the DDR's AR and R channels too), from
    generators seeded by ``stall_seed``. ``vivado_verilog`` runs the Verilog exactly as exported for Vivado
    (Verilator only). ``expected`` saves generating the model's codes again (the model's saturation counts must
    then be those of that generation alone: :meth:`~wavefabric.model.samplernn.SampleRNNFixed.reset_saturations`
    before it). ``progress`` is called now and then with the samples generated so far
    (:func:`~wavefabric.sim.streams.run_streams`).
    """
    lay = engine.layout
    load = load_frames(engine, model)
    if expected is None:
        model.reset_saturations()
        expected = model.generate(n_samples, seed, temperature)
    expected_saturated = {name: count > 0 for name, count in model.saturations.items()}
    memory = AxiReadMemory(table_image(lay, model), latency=latency, p_ar_ready=p_valid, p_r_valid=p_valid)
    n_load = len(load["region"])
    budget = n_load * 4 + (n_samples + lay.config.lookback) * 4000 + 10_000
    run = run_streams(engine, {"load": load, "cmd": [job_beat(n_samples, seed, temperature)]}, {"out": n_samples},
                      waits={"cmd": (0, "load")}, memories={"ddr": memory}, seed=stall_seed, p_valid=p_valid,
                      p_ready=p_ready, tail=2, max_cycles=budget, backend=backend, name=name,
                      vivado_verilog=vivado_verilog, progress=progress)
    out = run.outputs["out"]
    codes = np.array([beat["code"] for beat in out], dtype=np.int64)
    pcm = np.array([beat["pcm"] for beat in out], dtype=np.int64)
    last = np.array([bool(beat["last"]) for beat in out])
    q = model.config.q_levels
    saturated = {name: bool(run.flags["saturated"] >> i & 1) for i, name in enumerate(lay.saturation_names())}
    bit_exact = (np.array_equal(codes, expected) and np.array_equal(pcm, pcm16(codes, q))
                 and np.array_equal(last, np.arange(n_samples) == n_samples - 1) and not run.flags["error"]
                 and saturated == expected_saturated)
    cycles = int(run.times["out"][-1] - run.times["cmd"][0]) if n_samples else 0
    return SampleRNNRun(codes, pcm, np.asarray(expected), bool(bit_exact), cycles,
                        int(run.memories["ddr"].bytes_read), run, saturated, expected_saturated)
