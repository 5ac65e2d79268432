import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavefabric.model.fixed import (
    QFormat,
    accumulator_width,
    bit_length,
    int_matmul,
    narrow,
    saturate,
    shift_round,
    signed_width,
)

formats = st.builds(lambda w, f: QFormat(w, min(f, w)), st.integers(2, 24), st.integers(0, 24))


class TestQFormat:
    def test_ranges(self):
        q = QFormat(16, 12)
        assert (q.min_int, q.max_int) == (-32768, 32767)
        assert q.lsb == 2**-12
        assert q.min_value == -8.0 and q.max_value == 8.0 - 2**-12
        assert str(q) == "Q4.12"

    @pytest.mark.parametrize("width", [1, 63, 16.0, "16"])
    def test_bad_width(self, width):
        with pytest.raises(ValueError, match=r"width must be an integer from 2 to 62"):
            QFormat(width, 0)

    @pytest.mark.parametrize("frac", [-1, 33, 1.5])
    def test_bad_frac(self, frac):
        with pytest.raises(ValueError, match=r"frac must be an integer from 0 to 2 \* width = 32"):
            QFormat(16, frac)

    def test_quantize_rounds_half_up_and_saturates(self):
        q = QFormat(8, 2)
        x = np.array([0.125, -0.125, 0.375, -0.375, 100.0, -100.0, 31.75, -32.0])
        assert q.quantize(x).tolist() == [1, 0, 2, -1, 127, -128, 127, -128]

    @given(formats, st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
    def test_quantize_error_at_most_half_lsb_inside_range(self, q, values):
        x = np.clip(np.array(values), q.min_value, q.max_value)
        err = np.abs(q.dequantize(q.quantize(x)) - x)
        assert np.all(err <= q.lsb / 2)

    @given(formats, st.lists(st.integers(-(2**30), 2**30), min_size=1, max_size=20))
    def test_quantize_dequantize_roundtrip(self, q, ints):
        q_ints = saturate(ints, q)
        assert np.array_equal(q.quantize(q.dequantize(q_ints)), q_ints)
        assert q.contains(q_ints)


class TestNarrow:
    @given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), st.integers(0, 30), formats)
    def test_matches_floor_half_up_then_clip(self, values, frac, out):
        x = np.array(values, dtype=np.int64)
        # Reference in exact rational arithmetic: floor(x / 2**(frac - out.frac) + 1/2), clipped.
        shift = frac - out.frac
        ref = [(v * 2 + (1 << shift)) // (1 << (shift + 1)) if shift > 0 else v << -shift for v in values]
        assert np.array_equal(narrow(x, frac, out), np.clip(ref, out.min_int, out.max_int))

    def test_ties_go_up(self):
        out = QFormat(16, 0)
        assert narrow([1, 3, -1, -3, 2], 1, out).tolist() == [1, 2, 0, -1, 1]

    def test_per_row_shift(self):
        x = np.array([[10, 11], [10, 11]])
        assert shift_round(x, np.array([[1], [2]])).tolist() == [[5, 6], [3, 3]]

    def test_widen_is_exact(self):
        assert narrow([3, -3], 2, QFormat(16, 5)).tolist() == [24, -24]


class TestWidths:
    @given(st.integers(-(2**50), 2**50), st.integers(0, 2**50))
    def test_signed_width_is_minimal(self, lo, span):
        hi = lo + span
        w = signed_width(lo, hi)
        assert -(1 << (w - 1)) <= lo and hi < (1 << (w - 1))
        if w > 1:
            assert not (-(1 << (w - 2)) <= lo and hi < (1 << (w - 2)))

    @given(formats, formats, st.integers(1, 5000))
    def test_accumulator_holds_worst_case(self, a, b, length):
        width = accumulator_width(a, b, length)
        acc = QFormat(width, 0)
        worst = [length * a.min_int * b.min_int, length * min(a.min_int * b.max_int, a.max_int * b.min_int)]
        assert acc.contains(worst)
        assert not QFormat(width - 1, 0).contains(worst)

    def test_known_widths(self):
        q16 = QFormat(16, 12)
        # One product of two 16-bit values needs 32 bits (min * min = 2**30); 2**n of them need 32 + n.
        assert accumulator_width(q16, q16, 1) == 32
        assert accumulator_width(q16, q16, 2) == 33
        assert accumulator_width(q16, q16, 3) == 33
        assert accumulator_width(q16, q16, 4) == 34
        assert accumulator_width(q16, QFormat(16, 14), 4096) == 44

    def test_bias_widens(self):
        a, b = QFormat(8, 4), QFormat(8, 4)
        # The bias is shifted left by 8 to the product's frac: 127 * 256 + 2**14 no longer fits 16 bits.
        assert accumulator_width(a, b, 1) == 16
        assert accumulator_width(a, b, 1, bias=QFormat(8, 0)) == 17

    def test_bad_length_and_bias(self):
        q = QFormat(8, 4)
        with pytest.raises(ValueError, match="reduction length must be a positive integer"):
            accumulator_width(q, q, 0)
        with pytest.raises(ValueError, match="more fractional bits than the product"):
            accumulator_width(q, q, 1, bias=QFormat(16, 9))


@given(st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=30))
def test_bit_length(values):
    assert bit_length(values).tolist() == [v.bit_length() for v in values]


def test_int_matmul_exact_on_both_paths():
    rng = np.random.default_rng(1)
    for bits in (16, 24):  # the float64 path, then the int64 path
        a = rng.integers(-(2**bits), 2**bits, size=(5, 64))
        b = rng.integers(-(2**bits), 2**bits, size=(64, 3))
        ref = [[sum(int(a[i, k]) * int(b[k, j]) for k in range(64)) for j in range(3)] for i in range(5)]
        assert int_matmul(a, b).tolist() == ref


def test_int_matmul_refuses_overflow():
    with pytest.raises(ValueError, match="may overflow int64"):
        int_matmul(np.full((1, 4), 2**31), np.full((4, 1), 2**31))
