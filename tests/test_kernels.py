import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import (
    ActivationTable,
    Numerics,
    RsqrtFormat,
    conv1d,
    gated_activation,
    gru_cell,
    im2col,
    linear,
    mul_const,
    quantize_weight_norm,
    relu,
    rsqrt,
    weight_norm,
)

NUM = Numerics()


def python_narrow(v: int, shift: int, out: QFormat) -> int:
    """Independent scalar reference: floor(v / 2**shift + 1/2), clipped."""
    r = (2 * v + (1 << shift)) // (1 << (shift + 1)) if shift > 0 else v << -shift
    return min(max(r, out.min_int), out.max_int)


class TestActivationTable:
    @pytest.mark.parametrize("function", ["sigmoid", "tanh"])
    def test_matches_scalar_definition(self, function):
        table = getattr(NUM, function)
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.integers(NUM.act.min_int, NUM.act.max_int + 1, 500),
                            [NUM.act.min_int, NUM.act.max_int, 0, -1, 1]])
        s = table.segment_shift
        for xi, yi in zip(x.tolist(), table(x).tolist(), strict=True):
            i, f = (xi - NUM.act.min_int) >> s, (xi - NUM.act.min_int) & ((1 << s) - 1)
            lo, hi = int(table.table[i]), int(table.table[i + 1])
            assert yi == lo + python_narrow((hi - lo) * f, s, QFormat(40, 0))

    # Bounds measured exhaustively over all 65,536 inputs (benchmarks/kernel_errors.py) with a little margin.
    @pytest.mark.parametrize("function, bound", [("sigmoid", 7e-5), ("tanh", 4e-4)])
    def test_worst_case_error_exhaustive(self, function, bound):
        table = getattr(NUM, function)
        x = np.arange(NUM.act.min_int, NUM.act.max_int + 1)
        err = np.abs(NUM.gate.dequantize(table(x)) - table.reference(NUM.act.dequantize(x)))
        assert err.max() <= bound

    @pytest.mark.parametrize("function", ["sigmoid", "tanh"])
    def test_monotonic_and_in_range(self, function):
        table = getattr(NUM, function)
        y = table(np.arange(NUM.act.min_int, NUM.act.max_int + 1))
        assert np.all(np.diff(y) >= 0)
        assert NUM.gate.contains(y)

    def test_eight_bit_tables(self):
        num = Numerics(act=QFormat(8, 4), weight=QFormat(8, 6), gate=QFormat(8, 7), table_bits=6)
        x = np.arange(-128, 128)
        err = np.abs(num.gate.dequantize(num.tanh(x)) - np.tanh(num.act.dequantize(x)))
        assert err.max() < 0.012  # measured 0.0104: interpolation over 1/4-wide segments plus half a Q0.7 LSB

    def test_validation(self):
        with pytest.raises(ValueError, match="function must be one of"):
            ActivationTable("relu", NUM.act, NUM.gate, 8)
        with pytest.raises(ValueError, match="index_bits must be an integer from 1 to the input width 16"):
            ActivationTable("tanh", NUM.act, NUM.gate, 17)
        with pytest.raises(ValueError, match="Numerics.table_bits must be an integer from 1 to act.width"):
            Numerics(table_bits=0)
        with pytest.raises(ValueError, match="Numerics.weight must be a QFormat"):
            Numerics(weight=16)


class TestLinear:
    @given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 4), st.integers(0, 2**32 - 1))
    def test_matches_scalar_reference(self, rows, depth, cols, seed):
        rng = np.random.default_rng(seed)
        w = rng.integers(NUM.weight.min_int, NUM.weight.max_int + 1, (rows, depth))
        x = rng.integers(NUM.act.min_int, NUM.act.max_int + 1, (depth, cols))
        b = rng.integers(2 * NUM.act.min_int, 2 * NUM.act.max_int, rows)
        got = linear(w, x, b, NUM)
        for r in range(rows):
            for c in range(cols):
                acc = sum(int(w[r, k]) * int(x[k, c]) for k in range(depth)) + (int(b[r]) << NUM.weight.frac)
                assert got[r, c] == python_narrow(acc, NUM.weight.frac, NUM.act)

    def test_full_scale_saturates(self):
        w = np.full((2, 64), NUM.weight.min_int)
        x = np.full((64, 3), NUM.act.min_int)
        assert np.all(linear(w, x, None, NUM) == NUM.act.max_int)
        assert np.all(linear(w, -x - 1, None, NUM) == NUM.act.min_int)

    def test_zero(self):
        assert np.array_equal(linear(np.zeros((3, 5)), np.zeros(5), None, NUM), np.zeros(3))

    def test_bias_shapes(self):
        w = np.eye(2, dtype=np.int64) << NUM.weight.frac  # identity in the weight format
        x = np.array([[1, 2, 3], [4, 5, 6]])
        assert linear(w, x, np.array([10, 20]), NUM).tolist() == [[11, 12, 13], [24, 25, 26]]
        assert linear(w, x, x, NUM).tolist() == (2 * x).tolist()
        assert linear(w, x[:, 0], np.array([1, 1]), NUM).tolist() == [2, 5]


def test_relu_and_mul_const():
    assert relu([-3, 0, 5]).tolist() == [0, 0, 5]
    x = NUM.act.quantize(np.linspace(-7.9, 7.9, 101))
    y = NUM.act.dequantize(mul_const(x, np.sqrt(0.5), NUM))
    assert np.max(np.abs(y - NUM.act.dequantize(x) * np.sqrt(0.5))) <= NUM.act.lsb / 2 + 8 * 2**-16
    with pytest.raises(ValueError, match="outside the gate format"):
        mul_const(x, 1.5, NUM)


def test_gated_activation_error():
    rng = np.random.default_rng(3)
    a, b = (rng.integers(NUM.act.min_int, NUM.act.max_int + 1, 10000) for _ in range(2))
    ref = np.tanh(NUM.act.dequantize(a)) / (1 + np.exp(-NUM.act.dequantize(b)))
    err = np.abs(NUM.act.dequantize(gated_activation(a, b, NUM)) - ref)
    assert err.max() <= 4e-4 + 7e-5 + NUM.act.lsb / 2


def float_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    n_h = len(h)
    r, z = sig(gi[:n_h] + gh[:n_h]), sig(gi[n_h:2 * n_h] + gh[n_h:2 * n_h])
    n = np.tanh(gi[2 * n_h:] + r * gh[2 * n_h:])
    return (1 - z) * n + z * h


class TestGruCell:
    def random_layer(self, rng, n_in, n_h):
        scale = 1 / np.sqrt(n_h)
        return (rng.uniform(-scale, scale, (3 * n_h, n_in)), rng.uniform(-scale, scale, (3 * n_h, n_h)),
                rng.uniform(-scale, scale, 3 * n_h), rng.uniform(-scale, scale, 3 * n_h))

    @pytest.mark.parametrize("n_in, n_h", [(1, 1), (5, 3), (64, 64)])
    def test_close_to_float_over_steps(self, n_in, n_h):
        rng = np.random.default_rng(n_in * 100 + n_h)
        params = self.random_layer(rng, n_in, n_h)
        q_params = [NUM.weight.quantize(params[0]), NUM.weight.quantize(params[1]),
                    NUM.act.quantize(params[2]), NUM.act.quantize(params[3])]
        h = np.zeros(n_h)
        h_q = NUM.act.quantize(h)
        worst = 0.0
        for _ in range(20):
            x = rng.uniform(-2, 2, n_in)
            h = float_gru_cell(x, h, *params)
            h_q = gru_cell(NUM.act.quantize(x), h_q, *q_params, NUM)
            worst = max(worst, np.max(np.abs(NUM.act.dequantize(h_q) - h)))
        assert worst < 5e-3

    def test_saturating_inputs_stay_in_range(self):
        n = 4
        w = np.full((3 * n, n), NUM.weight.max_int)
        b = np.full(3 * n, NUM.act.max_int)
        x = np.full(n, NUM.act.max_int)
        h = np.full(n, NUM.act.min_int)
        out = gru_cell(x, h, w, w, b, b, NUM)
        assert NUM.act.contains(out)
        # Gates saturate at 1: z = sigmoid(+8) ~ 1 keeps (almost) the old state.
        assert np.all(NUM.act.dequantize(out) < -7.9)


def test_im2col_and_conv1d_match_direct_convolution():
    rng = np.random.default_rng(5)
    for c_in, c_out, k, d, t in [(1, 1, 1, 1, 1), (3, 2, 3, 4, 20), (4, 5, 3, 1, 7), (2, 3, 5, 2, 30)]:
        x = rng.integers(NUM.act.min_int, NUM.act.max_int + 1, (c_in, t))
        w = rng.integers(NUM.weight.min_int, NUM.weight.max_int + 1, (c_out, c_in, k))
        b = rng.integers(NUM.act.min_int, NUM.act.max_int + 1, c_out)
        pad = (k - 1) // 2 * d
        xp = np.pad(x, ((0, 0), (pad, pad)))
        acc = np.zeros((c_out, t), dtype=object)
        for o in range(c_out):
            for tt in range(t):
                acc[o, tt] = sum(int(w[o, c, j]) * int(xp[c, tt + j * d]) for c in range(c_in) for j in range(k))
                acc[o, tt] = python_narrow(acc[o, tt] + (int(b[o]) << NUM.weight.frac), NUM.weight.frac, NUM.act)
        assert np.array_equal(conv1d(x, w, b, NUM, dilation=d, padding=pad), acc.astype(np.int64))
    assert im2col(np.arange(4)[None], 2, 1, 0).tolist() == [[0, 1, 2], [1, 2, 3]]
    with pytest.raises(ValueError, match="too short"):
        im2col(np.zeros((1, 2)), 3, 2, 0)


class TestRsqrt:
    def test_relative_error_over_all_mantissas(self):
        fmt = RsqrtFormat()
        ss = np.concatenate([np.arange(1 << 22, 1 << 24, 13), [1, 2, 3, 4, 2**61, 2**62 - 1, 2**40 - 1]])
        y, k = rsqrt(ss, fmt)
        rel = np.abs(y * 2.0 ** -(fmt.frac + k / 2) * np.sqrt(ss.astype(np.float64)) - 1)
        assert rel.max() < 2e-5

    def test_zero_and_negative(self):
        assert [a.tolist() for a in rsqrt([0])] == [[0], [0]]
        with pytest.raises(ValueError, match="negative"):
            rsqrt([-1])

    def test_validation(self):
        with pytest.raises(ValueError, match="RsqrtFormat.seed_bits must be an integer from 2 to 12"):
            RsqrtFormat(seed_bits=1)
        with pytest.raises(ValueError, match="seed_bits must not exceed mant_bits"):
            RsqrtFormat(mant_bits=6, seed_bits=8)


class TestWeightNorm:
    g_fmt = QFormat(16, 12)

    def float_ref(self, v, g):
        v = v.astype(np.float64)
        norm = np.sqrt(np.sum(v.reshape(len(v), -1) ** 2, axis=1))
        return self.g_fmt.dequantize(g)[:, None] * v.reshape(len(v), -1) / norm[:, None]

    def test_every_row_has_its_own_norm(self):
        # The earlier HLS design summed squares with the wrong index; rows with distinct norms catch that.
        rng = np.random.default_rng(7)
        v = rng.integers(-3000, 3000, (8, 24)) * (np.arange(1, 9)[:, None])
        g = self.g_fmt.quantize(rng.uniform(0.2, 1.5, 8))
        w, zero = weight_norm(v, g, self.g_fmt, NUM.weight)
        ref = self.float_ref(v, g)
        assert not zero.any()
        assert np.max(np.abs(NUM.weight.dequantize(w) - ref)) <= NUM.weight.lsb
        # Each row keeps its direction: the norm of every output row equals |g|.
        norms = np.linalg.norm(NUM.weight.dequantize(w), axis=1)
        assert np.allclose(norms, self.g_fmt.dequantize(g), rtol=2e-3)

    def test_edge_rows(self):
        v = np.zeros((4, 16), dtype=np.int64)
        v[1, 3] = 1  # one tiny element: the smallest non-zero norm
        v[2, :] = -32768  # full scale
        v[3, 5] = 32767
        g = self.g_fmt.quantize([1.0, 0.75, 1.0, -1.25])
        w, zero = weight_norm(v, g, self.g_fmt, NUM.weight)
        assert zero.tolist() == [True, False, False, False]
        assert not w[0].any()
        assert w[1, 3] == NUM.weight.quantize(0.75) and np.count_nonzero(w[1]) == 1
        assert np.all(w[2] == NUM.weight.quantize(-0.25))
        assert w[3, 5] == NUM.weight.quantize(-1.25)

    def test_conv_shaped_and_float_loader(self):
        rng = np.random.default_rng(11)
        v = rng.normal(0, 0.05, (6, 4, 3))
        g = rng.uniform(0.5, 1.5, (6, 1, 1))
        w = quantize_weight_norm(g, v, NUM)
        ref = g * v / np.linalg.norm(v.reshape(6, -1), axis=1)[:, None, None]
        assert w.shape == v.shape
        assert np.max(np.abs(NUM.weight.dequantize(w) - ref)) <= 1.5 * NUM.weight.lsb
