# amaranth: UnusedElaboratable=no
"""The weight loaders: weight-normed (g, v) through the weight-norm unit into an engine's memories.

GruWeightLoader: the resident weights must equal the model's folded weights (``quantize_weight_norm`` packed by
``GruGeometry.weight_words``) and a GRU step afterwards must be bit-exact with ``gru_cell``. MatVecWeightLoader:
the matrix-vector unit's memories must equal the image of the model's integer matrices, zero padding included.
A failing simulation names its seed; ``WAVEFABRIC_VCD=DIR pytest tests/test_loader.py -k NAME`` writes its trace.
"""

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics, weight_norm_operands
from wavefabric.model.perf import gru_weight_load_cycles, matvec_weight_load_cycles
from wavefabric.model.samplernn import (
    SampleRNNConfig,
    SampleRNNFixed,
    SampleRNNFormats,
    SampleRNNParams,
    random_state_dict,
)
from wavefabric.rtl.gru import GruGeometry
from wavefabric.rtl.loader import GruWeightLoader, MatVecWeightLoader, NormedMatrix
from wavefabric.rtl.samplernn import SampleRNNLayout
from wavefabric.sim.gru import gru_reference
from wavefabric.sim.loader import (
    ProbedGruEngine,
    ProbedMatVecUnit,
    folded_gru_weights,
    folded_matvec_weights,
    folded_params,
    gru_weight_norm_tensors,
    loader_beats,
    matvec_image,
    matvec_loader_beats,
    run_gru_weight_load,
    run_matvec_weight_load,
)
from wavefabric.sim.samplernn import _matvec_words, matvec_weight_norm_pairs
from wavefabric.sim.streams import run_streams, vcd_hint

NUM = Numerics()


def numpy_state_dict(input_size: int, hidden: int, layers: int, rng: np.random.Generator) -> dict:
    """``weight_{ih,hh}_l{l}_g / _v`` as ``torch.nn.utils.weight_norm`` stores them: rows of very different norms,
    and ``g`` of ``weight_hh`` ten times smaller than ``weight_ih``'s so that the tensors' g formats differ."""
    state = {}
    for layer in range(layers):
        for kind, cols, g_scale in (("ih", input_size if layer == 0 else hidden, 1.0), ("hh", hidden, 0.1)):
            rows = 3 * hidden
            state[f"weight_{kind}_l{layer}_v"] = rng.normal(0, 1, (rows, cols)) * 10.0 ** rng.uniform(-2, 1, (rows, 1))
            state[f"weight_{kind}_l{layer}_g"] = rng.uniform(0.2, 1.8, (rows, 1)) * g_scale
    return state


def biases_state(hidden: int, layers: int, rng: np.random.Generator):
    """Act-format biases and a GRU's h0 and inputs, uniform in [-1, 1]."""
    def uniform(*shape):
        return NUM.act.quantize(rng.uniform(-1, 1, shape))
    return ([uniform(3 * hidden) for _ in range(layers)], [uniform(3 * hidden) for _ in range(layers)]), uniform


def check_load(pairs, input_size, hidden, layers, lanes, simd, *, seed, name, p=1.0, steps=1):
    """Load ``pairs`` into a fresh engine; assert resident weights, GRU steps, flags and (unstalled) cycles."""
    rng = np.random.default_rng(seed)
    geometry = GruGeometry(input_size, hidden, layers, lanes, simd)
    loader = GruWeightLoader(geometry, NUM)
    engine = ProbedGruEngine(input_size, hidden, layers, lanes, simd, NUM)
    biases, uniform = biases_state(hidden, layers, rng)
    h0, xs = uniform(layers, hidden), uniform(steps, input_size)
    run = run_gru_weight_load(loader, engine, pairs, biases=biases, h0=h0, xs=xs, seed=seed, p_valid=p, p_ready=p,
                              name=name)
    where = f"seed {seed}; {vcd_hint(name)}"
    expected = geometry.weight_words(*folded_gru_weights(pairs, NUM))
    assert np.array_equal(run.resident, expected), \
        f"resident weights differ at addresses {np.flatnonzero((run.resident != expected).any(axis=(1, 2)))} ({where})"
    outputs, _ = gru_reference(folded_params(pairs, biases, NUM), h0, xs, NUM)
    assert np.array_equal(run.outputs, outputs), f"GRU steps after the load differ from gru_cell ({where})"
    assert not run.loader_error and not run.engine_error, f"framing error ({where})"
    if p == 1:
        model = gru_weight_load_cycles(input_size, hidden, layers, lanes, simd)
        assert run.cycles == model == loader.cycles, f"{run.cycles} cycles, model {model} ({where})"
    return run


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize(("api", "p"), [("weight_norm", 1.0), ("parametrizations", 0.6)])
def test_torch_weight_normed_gru_layer(api, p):
    """A torch GRU layer with weight norm on both matrices, loaded from its state dict, equals the folded model.

    Both of PyTorch's weight-norm APIs: ``weight_ih_l0_g`` / ``_v`` keys, and the newer parametrizations.
    """
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    gru = torch.nn.GRU(5, 3)
    with torch.no_grad():
        gru.weight_hh_l0.mul_(0.05)  # a smaller norm, hence another g format, for the second tensor
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if api == "weight_norm":
            gru = torch.nn.utils.weight_norm(gru, name=name)
        else:
            gru = torch.nn.utils.parametrizations.weight_norm(gru, name=name)
    state = {key: value.numpy() for key, value in gru.state_dict().items()}
    if api == "weight_norm":
        assert state["weight_ih_l0_g"].shape == (9, 1) and state["weight_hh_l0_v"].shape == (9, 3)
    pairs = gru_weight_norm_tensors(state, 1)
    # The checkpoint's (g, v) fold to PyTorch's own weight, and the two tensors use different g formats.
    for (g, v), weight in zip(pairs, (gru.weight_ih_l0, gru.weight_hh_l0), strict=True):
        np.testing.assert_allclose(g * v / np.linalg.norm(v, axis=1, keepdims=True), weight.detach().numpy(),
                                   rtol=1e-5, atol=1e-7)
    assert len({weight_norm_operands(g, v, 16)[2].frac for g, v in pairs}) == 2
    check_load(pairs, 5, 3, 1, 2, 2, seed=21, p=p, steps=2, name=f"loader_torch_{api}")


def test_two_layers_zero_row_and_stalls():
    """Two layers (I < H, lanes not dividing H), a zero row of v: its weights are zero and the flag is raised."""
    rng = np.random.default_rng(8)
    state = numpy_state_dict(3, 5, 2, rng)
    state["weight_hh_l1_v"][7] = 0.0
    pairs = gru_weight_norm_tensors(state, 2)
    run = check_load(pairs, 3, 5, 2, 2, 2, seed=8, p=0.5, name="loader_two_layers_zero_row")
    assert run.zero_row, "zero_row flag not raised by a zero row (seed 8)"
    clean = gru_weight_norm_tensors(numpy_state_dict(3, 5, 2, rng), 2)
    assert not check_load(clean, 3, 5, 2, 2, 2, seed=9, steps=0, name="loader_two_layers").zero_row


@pytest.mark.parametrize("sizes", [(7, 4, 1, 1, 3), (4, 7, 1, 3, 1), (20, 12, 1, 4, 4)])
def test_shapes_and_cycle_model(sizes):
    """I > H and I < H, one lane or one multiplier, and a moderately larger layer: bit-exact, cycles = model."""
    input_size, hidden, layers, lanes, simd = sizes
    seed = sum(sizes)
    pairs = gru_weight_norm_tensors(numpy_state_dict(input_size, hidden, layers, np.random.default_rng(seed)),
                                    layers)
    check_load(pairs, *sizes, seed=seed, name=f"loader_{input_size}x{hidden}_p{lanes}s{simd}")


def test_cycle_model_figures():
    # The seed-size layer (64 x 64, P = S = 8): 3072 beats in, the longest row 8 beats, latency 16, 3072 out.
    assert gru_weight_load_cycles(64, 64, 1, 8, 8) == 3072 + 8 + 16 + 3072
    # Lanes past H (H = 5, P = 2: three slots of two lanes per gate) add zero words to phase 2 only.
    assert gru_weight_load_cycles(3, 5, 1, 2, 2) == 15 * (2 + 3) + 3 + 16 + 3 * 2 * 3 * (2 + 3)
    with pytest.raises(ValueError, match="hidden"):
        gru_weight_load_cycles(3, 0, 1, 2, 2)


def test_parameter_checks():
    with pytest.raises(ValueError, match="geometry must be a GruGeometry"):
        GruWeightLoader((5, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="num must be a Numerics with a weight width from 2 to 17"):
        GruWeightLoader(GruGeometry(5, 3, 1, 2, 2), Numerics(weight=QFormat(18, 16)))
    loader = GruWeightLoader(GruGeometry(5, 3, 1, 2, 2))
    assert (loader.g_frac_min, loader.g_frac_max) == (9, 32)
    state = numpy_state_dict(5, 3, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="state dict has no weight_hh_l0_g"):  # noqa: RUF043
        gru_weight_norm_tensors({k: v for k, v in state.items() if k != "weight_hh_l0_g"}, 1)
    # |g| = 100 needs Q8.8, fewer fractional bits than the unit's rounding shift allows with Q2.14 weights.
    state["weight_ih_l0_g"][0] = 100.0
    with pytest.raises(ValueError, match="tensor 0: .* the loader takes g with 9 to 32 fractional bits"):
        loader_beats(loader, gru_weight_norm_tensors(state, 1))
    with pytest.raises(ValueError, match="loader's GRU needs"):
        loader_beats(loader, gru_weight_norm_tensors(numpy_state_dict(4, 3, 1, np.random.default_rng(0)), 1))


def test_framing_error_flag():
    """A ``v`` beat whose ``first`` / ``last`` disagree with the tensor count sets the sticky ``error``."""
    loader = GruWeightLoader(GruGeometry(5, 3, 1, 2, 2))
    pairs = gru_weight_norm_tensors(numpy_state_dict(5, 3, 1, np.random.default_rng(3)), 1)
    v_beats, g_beats = loader_beats(loader, pairs)
    assert v_beats[0]["first"] and v_beats[26]["last"] and v_beats[27]["first"]  # w_ih: 9 rows of 3 beats
    v_beats[27]["first"] = False
    run = run_streams(loader, {"v": v_beats, "g": g_beats}, {"weights": loader.buffer_depth},
                      name="loader_framing_error")
    assert run.flags["error"] == 1, vcd_hint("loader_framing_error")


# ---- MatVecWeightLoader ------------------------------------------------------------------------------------------

SMALL = SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16)


def place(specs, lanes: int, simd: int) -> list[NormedMatrix]:
    """``(rows, cols, taps)`` matrices packed one after the other into the unit's memories."""
    matrices, base = [], 0
    for rows, cols, taps in specs:
        matrices.append(NormedMatrix(base, rows, cols, taps))
        base += -(-rows // lanes) * -(-cols // simd)
    return matrices


def depth_of(matrices, lanes: int, simd: int) -> int:
    return max(mat.weight_base + -(-mat.rows // lanes) * -(-mat.cols // simd) for mat in matrices)


def random_pairs(matrices, rng: np.random.Generator) -> list[tuple]:
    """Float ``(g, v)`` per matrix in PyTorch's layout (a ConvTranspose1d as ``(in, out, taps)``), rows of very
    different norms."""
    pairs = []
    for mat in matrices:
        rows, length = mat.v_shape
        v = rng.normal(0, 1, (rows, length)) * 10.0 ** rng.uniform(-2, 1, (rows, 1))
        shape = (mat.cols, mat.rows // mat.taps, mat.taps) if mat.taps else (rows, length, 1)
        pairs.append((rng.uniform(0.2, 1.8, (rows,) + (1,) * (len(shape) - 1)), v.reshape(shape)))
    return pairs


def check_matvec_load(matrices, pairs, lanes, simd, expected, *, seed, name, p=1.0):
    """Load ``pairs``; assert the resident image equals ``expected``, no framing error, and (unstalled) cycles."""
    depth = depth_of(matrices, lanes, simd)
    loader = MatVecWeightLoader(matrices, lanes, simd, depth, NUM)
    unit = ProbedMatVecUnit(lanes, simd, depth, 4, max(mat.cols for mat in matrices),
                            max(mat.rows for mat in matrices), NUM)
    run = run_matvec_weight_load(loader, unit, pairs, seed=seed, p_valid=p, p_ready=p, name=name)
    where = f"seed {seed}; {vcd_hint(name)}"
    assert np.array_equal(run.resident, expected), \
        f"resident weights differ at addresses {np.flatnonzero((run.resident != expected).any(axis=(1, 2)))} ({where})"
    assert not run.error, f"framing error ({where})"
    if p == 1:
        model = matvec_weight_load_cycles([(mat.rows, mat.cols, mat.taps) for mat in matrices], simd)
        assert run.cycles == model == loader.cycles, f"{run.cycles} cycles, model {model} ({where})"
    return run


@pytest.mark.parametrize("p", [1.0, 0.6])
def test_matvec_samplernn_matrices_equal_integer_params(p):
    """A weight-normed SampleRNN checkpoint's input_expand, upsampling (ConvTranspose), hidden and output load as
    exactly the matrices SampleRNNFixed computes with (quantize_weight_norm on the same float (g, v))."""
    lay = SampleRNNLayout(SMALL, lanes=2, simd=4, gru_lanes=2)
    # The loader normalises into num.weight: the global formats (the engine offsets g's frac for others).
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(SMALL, random_state_dict(SMALL, 3)),
                           formats=SampleRNNFormats.default(SMALL))
    ints = model.integer_params()
    matrices = [w for tier in ints.tiers for w in (tier.input_expand, tier.upsampling)] + [ints.hidden, ints.output]
    check_matvec_load(lay.normed_matrices(), matvec_weight_norm_pairs(model.params), 2, 4,
                      _matvec_words(lay, matrices), seed=3, p=p, name=f"matvec_load_samplernn_{p}")


@pytest.mark.parametrize("specs, lanes, simd, seed", [
    # dim not a multiple of S (9, 6, 3 columns), P = 3 dividing no row count, ConvTransposes of 2 and 8 taps,
    # a 60-column matrix after them (rows longer than any before: the unit's row buffer keeps the output busy).
    ([(3, 2, 0), (24, 9, 2), (6, 6, 0), (40, 3, 8), (5, 60, 0)], 3, 4, 11),
    # The smallest: one element; a 2 x 2 ConvTranspose of one tap (a transposed matrix); one lane, two lanes S.
    ([(1, 1, 0)], 1, 2, 12),
    ([(2, 2, 1)], 1, 2, 13),
    # One output channel (taps = rows): the drain walks the taps only; S = 8 with a short last group.
    ([(16, 6, 16), (8, 2, 0)], 2, 8, 14),
])
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_matvec_shapes_stalls_and_cycle_model(specs, lanes, simd, seed, p):
    matrices = place(specs, lanes, simd)
    pairs = random_pairs(matrices, np.random.default_rng(seed))
    expected = matvec_image(matrices, folded_matvec_weights(matrices, pairs, NUM), lanes, simd,
                            depth_of(matrices, lanes, simd))
    check_matvec_load(matrices, pairs, lanes, simd, expected, seed=seed, p=p,
                      name=f"matvec_load_{len(specs)}x_p{lanes}s{simd}_{p}")


def test_matvec_zero_rows():
    """A zero v row in a row-normalised matrix and in a ConvTranspose (a zero column): zeros, and the flag."""
    matrices = place([(6, 5, 0), (8, 5, 2)], 2, 4)
    pairs = random_pairs(matrices, np.random.default_rng(21))
    pairs[0][1][4] = 0.0
    pairs[1][1][2] = 0.0
    folded = folded_matvec_weights(matrices, pairs, NUM)
    assert not folded[0][4].any() and not folded[1][:, 2].any()
    expected = matvec_image(matrices, folded, 2, 4, depth_of(matrices, 2, 4))
    run = check_matvec_load(matrices, pairs, 2, 4, expected, seed=21, name="matvec_load_zero_rows")
    assert run.zero_row, "zero_row flag not raised by a zero row (seed 21)"


def test_matvec_cycle_model_figures():
    # Seed configuration: 13,440 beats; tier 0 upsampling drains 8 groups of 1,025 cycles, tier 1 8 of 257; its
    # 128-beat rows set the lag.
    lay = SampleRNNLayout(SampleRNNConfig())
    specs = [(mat.rows, mat.cols, mat.taps) for mat in lay.normed_matrices()]
    assert specs[1] == (1024, 64, 16)
    assert matvec_weight_load_cycles(specs, 8) == 13_440 + 15 + 128 + 8 * 1025 + 8 * 257
    # Without a ConvTranspose it is the weight-norm unit's own count: B + b_max + latency - 1.
    assert matvec_weight_load_cycles([(5, 9, 0), (3, 2, 0)], 4) == 5 * 3 + 3 * 1 + 3 + 16 - 1
    with pytest.raises(ValueError, match="taps"):
        matvec_weight_load_cycles([(6, 4, 4)], 4)


def test_matvec_parameter_checks():
    with pytest.raises(ValueError, match="taps"):
        NormedMatrix(0, 6, 4, 4)
    with pytest.raises(ValueError, match="matrices must be a non-empty sequence of NormedMatrix"):
        MatVecWeightLoader([], 2, 4, 8)
    with pytest.raises(ValueError, match="simd must be a power of two"):
        MatVecWeightLoader([NormedMatrix(0, 2, 2)], 2, 3, 8)
    with pytest.raises(ValueError, match="past the depth 2"):
        MatVecWeightLoader([NormedMatrix(1, 4, 5)], 2, 4, 2)
    loader = MatVecWeightLoader([NormedMatrix(0, 4, 3, 2)], 2, 4, 4)
    assert (loader.v_beats, loader.g_beats, loader.buffer_depth) == (3, 3, 4)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="tensor 0: v rows"):
        matvec_loader_beats(loader, random_pairs([NormedMatrix(0, 4, 3, 0)], rng))
    pairs = random_pairs(loader.matrices, rng)
    pairs[0][0][0] = 100.0
    with pytest.raises(ValueError, match="tensor 0: .* the loader takes g with 9 to 32 fractional bits"):
        matvec_loader_beats(loader, pairs)


def test_matvec_framing_error_flag():
    """The v stream is framed once per load: a ``first`` on a later beat sets the sticky ``error``."""
    matrices = place([(3, 5, 0), (4, 3, 2)], 2, 4)
    loader = MatVecWeightLoader(matrices, 2, 4, 8, NUM)
    v_beats, g_beats = matvec_loader_beats(loader, random_pairs(matrices, np.random.default_rng(4)))
    assert [b["first"] for b in v_beats].count(True) == 1 and v_beats[-1]["last"]
    v_beats[6]["first"] = True  # the ConvTranspose's first beat
    run = run_streams(loader, {"v": v_beats, "g": g_beats}, {}, tail=40, name="matvec_loader_framing_error")
    assert run.flags["error"] == 1, vcd_hint("matvec_loader_framing_error")
