"""Bit-exact integer models of the hardware kernels.

Each function here computes exactly the integers its RTL twin computes; the network models in
:mod:`~wavefabric.model.samplernn` and :mod:`~wavefabric.model.pwg` are built from them. All integer arrays are
``int64``; formats follow :mod:`~wavefabric.model.fixed`. Worst-case errors against float are measured by
``benchmarks/kernel_errors.py`` (exhaustively where the input space is small) and quoted in the docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import QFormat, bit_length, int_matmul, narrow, narrow_counted, saturate, shift_round

__all__ = [
    "Numerics",
    "ActivationTable",
    "float_sigmoid",
    "accumulate",
    "linear",
    "relu",
    "mul_const",
    "gated_activation",
    "gru_cell",
    "im2col",
    "conv1d",
    "RsqrtFormat",
    "rsqrt",
    "weight_norm",
    "weight_norm_operands",
    "quantize_weight_norm",
]


def float_sigmoid(x) -> np.ndarray:
    """The logistic function in float64, by the tanh identity (which never overflows, unlike ``1/(1+e**-x)``)."""
    return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(x, dtype=np.float64))


@dataclass(frozen=True)
class ActivationTable:
    """Sigmoid or tanh by a table of ``2**index_bits + 1`` samples and linear interpolation.

    The table spans the whole input format, so no clamping is needed: the input's top ``index_bits`` bits
    (as an offset from ``in_fmt.min_int``) select a segment, the remaining ``s = in_fmt.width - index_bits``
    bits interpolate within it::

        offset = x - in_fmt.min_int          # unsigned, 0 .. 2**width - 1
        i, f   = offset >> s, offset & (2**s - 1)
        y      = t[i] + ((t[i+1] - t[i]) * f + 2**(s-1)) >> s

    ``t[k]`` is ``f(x_k)`` quantised (round half up, saturate) to ``out_fmt`` at the segment boundaries
    ``x_k = in_fmt.min_value + k * 2**(s - in_fmt.frac)``. The result always lies between two table entries,
    so it needs no saturation. Hardware: one table read of two neighbours, one multiply, one add.

    Worst-case absolute error against float over every input of the default ``Q4.12 -> Q1.15`` tables with
    256 segments (exhaustive, ``benchmarks/kernel_errors.py``): sigmoid 6.7e-5, tanh 3.9e-4.
    """

    function: str
    in_fmt: QFormat
    out_fmt: QFormat
    index_bits: int
    table: np.ndarray = field(init=False, repr=False, compare=False)

    _FUNCTIONS = {
        "sigmoid": float_sigmoid,
        "tanh": np.tanh,
    }

    def __post_init__(self):
        if self.function not in self._FUNCTIONS:
            raise ValueError(f"function must be one of {sorted(self._FUNCTIONS)}, not {self.function!r}")
        if not isinstance(self.index_bits, int) or not 1 <= self.index_bits <= self.in_fmt.width:
            raise ValueError(
                f"index_bits must be an integer from 1 to the input width {self.in_fmt.width}, "
                f"not {self.index_bits!r}"
            )
        step = 1 << self.segment_shift
        points = (self.in_fmt.min_int + step * np.arange((1 << self.index_bits) + 1)) * self.in_fmt.lsb
        table = self.out_fmt.quantize(self._FUNCTIONS[self.function](points))
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    @property
    def segment_shift(self) -> int:
        """Number of low input bits that interpolate within a segment."""
        return self.in_fmt.width - self.index_bits

    def reference(self, x) -> np.ndarray:
        """The float function this table approximates, on real values."""
        return self._FUNCTIONS[self.function](np.asarray(x, dtype=np.float64))

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        s = self.segment_shift
        offset = x - self.in_fmt.min_int
        i = offset >> s
        f = offset & ((1 << s) - 1)
        lo = self.table[i]
        hi = self.table[np.minimum(i + 1, len(self.table) - 1)]
        return lo + shift_round((hi - lo) * f, s)


@dataclass(frozen=True)
class Numerics:
    """The number formats of one network or engine.

    Parameters
    ----------
    act : QFormat
        Activations, hidden states, biases and conditioning (default Q4.12, range [-8, 8)).
    weight : QFormat
        Weights (default Q2.14, range [-2, 2)).
    gate : QFormat
        Outputs of sigmoid and tanh, and constant scale factors (default Q1.15).
    table_bits : int
        Sigmoid and tanh tables have ``2**table_bits`` segments over the whole ``act`` range.

    Accumulators hold products at ``acc_frac = act.frac + weight.frac`` and are as wide as
    :func:`~wavefabric.model.fixed.accumulator_width` says for the reduction at hand.
    """

    act: QFormat = QFormat(16, 12)
    weight: QFormat = QFormat(16, 14)
    gate: QFormat = QFormat(16, 15)
    table_bits: int = 8
    sigmoid: ActivationTable = field(init=False, repr=False, compare=False)
    tanh: ActivationTable = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("act", "weight", "gate"):
            if not isinstance(getattr(self, name), QFormat):
                raise ValueError(f"Numerics.{name} must be a QFormat, not {getattr(self, name)!r}")
        if not isinstance(self.table_bits, int) or not 1 <= self.table_bits <= self.act.width:
            raise ValueError(
                f"Numerics.table_bits must be an integer from 1 to act.width = {self.act.width}, "
                f"not {self.table_bits!r}"
            )
        for function in ("sigmoid", "tanh"):
            object.__setattr__(self, function, ActivationTable(function, self.act, self.gate, self.table_bits))

    @property
    def acc_frac(self) -> int:
        """Fractional bits of an accumulator of weight-by-activation products."""
        return self.act.frac + self.weight.frac


def accumulate(w, x, bias, shift: int) -> np.ndarray:
    """The exact accumulator of :func:`linear`: ``w @ x + (bias << shift)``.

    ``bias`` is None or an int array broadcastable to the result (``(O,)`` is applied to every column).
    """
    acc = int_matmul(w, x)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.int64) << np.int64(shift)
        acc = acc + (bias.reshape(bias.shape + (1,) * (acc.ndim - 1)) if bias.ndim == 1 else bias)
    return acc


def linear(w, x, bias, num: Numerics, out: QFormat | None = None, shift: int | None = None) -> np.ndarray:
    """``narrow(w @ x + bias)``: a matrix product with bias, accumulated exactly, narrowed once.

    Parameters
    ----------
    w : (O, I) int array in ``num.weight``.
    x : (I,) or (I, T) int array in ``num.act``.
    bias : None, or int array in units of ``num.act``'s LSB broadcastable to the result (``(O,)`` is applied
        to every column). It is shifted left to the accumulator's ``frac`` and added exactly, so it may be a
        sum of act values outside the act range.
    out : format of the result (default ``num.act``).
    shift : int, optional
        Per-layer formats: the fractional bits the narrowing drops (``frac_x + frac_w - out.frac``, >= 0); the
        bias is then in units of ``out``'s LSB and enters shifted left by ``shift``. None: the formats of
        ``num`` (``shift = num.acc_frac - out.frac``, the bias in act units shifted by ``num.weight.frac``).

    The product is exact (``w @ x`` with no intermediate rounding); the single rounding is the shared
    :func:`~wavefabric.model.fixed.narrow` (round half up, saturate): worst-case error half an output LSB
    plus saturation.
    """
    out = out or num.act
    if shift is None:
        return narrow(accumulate(w, x, bias, num.weight.frac), num.acc_frac, out)
    return narrow(accumulate(w, x, bias, shift), out.frac + shift, out)


def relu(x) -> np.ndarray:
    """``max(x, 0)`` on integers: exact."""
    return np.maximum(np.asarray(x, dtype=np.int64), 0)


def mul_const(x, c: float, num: Numerics, out: QFormat | None = None) -> np.ndarray:
    """Scale act-format ``x`` by the constant ``c`` (quantised to ``num.gate``), narrowed to ``out``.

    Used for the ParallelWaveGAN scale factors sqrt(0.5) and sqrt(1/30). ``x`` may be wider than the act
    format (a sum of act values); only the result is saturated. Error: ``|x| * 2**-(gate.frac+1)`` from the
    quantised constant plus half an output LSB.
    """
    if not num.gate.min_value <= c <= num.gate.max_value:
        raise ValueError(f"constant {c} is outside the gate format {num.gate} range")
    c_int = num.gate.quantize(c)
    return narrow(np.asarray(x, dtype=np.int64) * c_int, num.act.frac + num.gate.frac, out or num.act)


def gated_activation(a, b, num: Numerics) -> np.ndarray:
    """ParallelWaveGAN's gate ``tanh(a) * sigmoid(b)``: act-format inputs, act-format output.

    Both tables give ``num.gate`` values; their exact product (``2 * gate.frac`` fractional bits) is narrowed
    to ``num.act``. Worst-case error at the defaults: 5.0e-4 over 10**6 random inputs (the tanh table's 3.9e-4,
    the sigmoid table's, and half an act LSB).
    """
    return narrow(num.tanh(a) * num.sigmoid(b), 2 * num.gate.frac, num.act)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, num: Numerics, shift: int | None = None,
             saturated: np.ndarray | None = None) -> np.ndarray:
    """One step of a PyTorch ``nn.GRU`` layer in fixed point (gate order r, z, n).

    Parameters
    ----------
    x : (I,) act ints. h : (H,) act ints.
    w_ih : (3H, I), w_hh : (3H, H) weight ints; b_ih, b_hh : (3H,) act ints.
    shift : int, optional
        The layer's weight ``frac`` (per-layer formats): x, h and the gate inputs stay ``num.act``, so the
        accumulators' narrowing drops exactly the weight's fractional bits. Default ``num.weight.frac``.
    saturated : (1,) int64 array, optional
        Incremented by the number of ``i_n`` and ``h_n`` values that saturate (the hardware's flag; ``r`` and
        ``z`` saturate harmlessly, being sigmoid inputs, and ``n``'s tanh input likewise).

    Computes, with ``acc(.)`` an exact accumulation narrowed once to ``act``::

        r   = sigmoid(acc(W_ir x + W_hr h + b_ir + b_hr))        # one accumulator over [x; h]
        z   = sigmoid(acc(W_iz x + W_hz h + b_iz + b_hz))
        i_n = acc(W_in x + b_in);  h_n = acc(W_hn h + b_hn)
        n   = tanh(sat(i_n + narrow(r * h_n)))                    # r * h_n: gate x act product
        n'  = narrow(n, gate -> act)
        h'  = sat(n' + narrow(z * (h - n')))                      # (1 - z) n + z h with one multiply

    Returns h' as (H,) act ints. Error against a float GRU (64 -> 64, random weights, inputs in [-2, 2],
    ``benchmarks/kernel_errors.py``): max abs error of h 3.6e-4 after one step, 6.7e-4 after 100 steps (the
    state's error does not grow: the gates contract it).
    """
    x = np.asarray(x, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    w_ih = np.asarray(w_ih, dtype=np.int64)
    w_hh = np.asarray(w_hh, dtype=np.int64)
    b_ih = np.asarray(b_ih, dtype=np.int64)
    b_hh = np.asarray(b_hh, dtype=np.int64)
    shift = num.weight.frac if shift is None else shift
    hidden = h.shape[0]
    rz = slice(0, 2 * hidden)
    gate_n = slice(2 * hidden, 3 * hidden)
    pre_rz = linear(np.concatenate([w_ih[rz], w_hh[rz]], axis=1), np.concatenate([x, h]),
                    b_ih[rz] + b_hh[rz], num, shift=shift)
    r = num.sigmoid(pre_rz[:hidden])
    z = num.sigmoid(pre_rz[hidden:])
    acc_n = np.concatenate([accumulate(w_ih[gate_n], x, b_ih[gate_n], shift),
                            accumulate(w_hh[gate_n], h, b_hh[gate_n], shift)])
    narrowed, count = narrow_counted(acc_n, shift, num.act)
    if saturated is not None:
        saturated += count
    i_n, h_n = np.split(narrowed, 2)
    prod_frac = num.gate.frac + num.act.frac
    n = num.tanh(saturate(i_n + narrow(r * h_n, prod_frac, num.act), num.act))
    n_act = narrow(n, num.gate.frac, num.act)
    return saturate(n_act + narrow(z * (h - n_act), prod_frac, num.act), num.act)


def im2col(x, kernel_size: int, dilation: int = 1, padding: int = 0) -> np.ndarray:
    """Columns of a 1-D convolution: ``(C, T)`` to ``(C * K, T_out)``, row ``c * K + k`` holding tap ``k``.

    ``T_out = T + 2 * padding - dilation * (K - 1)``; zeros are padded at both ends. The row order matches
    ``w.reshape(O, C * K)`` for a PyTorch ``(O, C, K)`` weight. In hardware this is an address pattern into a
    line buffer, never a copy.
    """
    x = np.asarray(x)
    if kernel_size < 1 or dilation < 1 or padding < 0:
        raise ValueError("kernel_size and dilation must be >= 1 and padding >= 0")
    channels, length = x.shape
    t_out = length + 2 * padding - dilation * (kernel_size - 1)
    if t_out < 1:
        raise ValueError(f"input of length {length} is too short for kernel {kernel_size}, dilation {dilation}")
    padded = np.pad(x, ((0, 0), (padding, padding)))
    cols = np.stack([padded[:, k * dilation:k * dilation + t_out] for k in range(kernel_size)], axis=1)
    return cols.reshape(channels * kernel_size, t_out)


def conv1d(x, w, bias, num: Numerics, dilation: int = 1, padding: int = 0,
           out: QFormat | None = None) -> np.ndarray:
    """A PyTorch-layout ``Conv1d``: x ``(C, T)`` act, w ``(O, C, K)`` weight, bias ``(O,)`` act or None.

    ``linear`` over :func:`im2col` columns: exact accumulation of ``C * K`` products, one narrowing.
    """
    w = np.asarray(w, dtype=np.int64)
    cols = im2col(x, w.shape[2], dilation, padding)
    return linear(w.reshape(w.shape[0], -1), cols, bias, num, out)


@dataclass(frozen=True)
class RsqrtFormat:
    """Parameters of the fixed-point reciprocal square root used by weight norm.

    Parameters
    ----------
    mant_bits : int
        The normalised operand ``m`` in [1/4, 1) is kept to this many fractional bits (truncated).
    seed_bits : int
        The seed table is indexed by ``m``'s top ``seed_bits`` fractional bits (entries for
        ``2**(seed_bits-2)`` to ``2**seed_bits - 1``).
    frac : int
        Fractional bits of the result ``y ~ 1/sqrt(m)`` in (1, 2].
    newton_steps : int
        Newton-Raphson steps ``y <- y (3 - m y**2) / 2`` after the seed.
    """

    mant_bits: int = 24
    seed_bits: int = 6
    frac: int = 16
    newton_steps: int = 2

    def __post_init__(self):
        for name, lo, hi in (("mant_bits", 4, 32), ("seed_bits", 2, 12), ("frac", 4, 30),
                             ("newton_steps", 0, 4)):
            value = getattr(self, name)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"RsqrtFormat.{name} must be an integer from {lo} to {hi}, not {value!r}")
        if self.seed_bits > self.mant_bits:
            raise ValueError(f"RsqrtFormat.seed_bits must not exceed mant_bits = {self.mant_bits}")

    @property
    def seed_table(self) -> np.ndarray:
        """``1/sqrt`` at the midpoint of each seed interval, in ``frac`` bits (index = top bits of m)."""
        idx = np.arange(1 << self.seed_bits)
        mid = (np.maximum(idx, 1 << (self.seed_bits - 2)) + 0.5) / (1 << self.seed_bits)
        return np.floor(1.0 / np.sqrt(mid) * (1 << self.frac) + 0.5).astype(np.int64)


def rsqrt(ss, fmt: RsqrtFormat = RsqrtFormat()) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point reciprocal square root of positive integers: ``1/sqrt(ss) ~ y * 2**-(frac + k/2)``.

    Normalisation by leading zeros to an even exponent: ``k`` is ``ss``'s bit length rounded up to even, so
    ``m = ss / 2**k`` lies in [1/4, 1) and ``1/sqrt(ss) = 1/sqrt(m) * 2**(-k/2)``. ``m`` is kept to
    ``mant_bits`` fractional bits (truncated); a table indexed by its top bits seeds ``y``; each Newton step
    computes ``y * (3 - m y**2) / 2`` with every product rounded half up to ``frac`` bits.

    Returns ``(y, k)``, ``y`` with ``fmt.frac`` fractional bits. Zero inputs give ``y = 0, k = 0``.
    Worst-case relative error of ``y * 2**-(frac + k/2)`` against ``1/sqrt(ss)`` at the defaults (24-bit
    mantissa, 6-bit seed, 16-bit result, 2 steps), over every mantissa: 1.5e-5 (``benchmarks/kernel_errors.py``).
    """
    ss = np.asarray(ss, dtype=np.int64)
    if np.any(ss < 0):
        raise ValueError("rsqrt of a negative number")
    nonzero = ss > 0
    bits = bit_length(ss)
    k = bits + (bits & 1)
    shift = fmt.mant_bits - k
    m = np.where(shift >= 0, ss << np.maximum(shift, 0), ss >> np.maximum(-shift, 0))
    y = fmt.seed_table[m >> (fmt.mant_bits - fmt.seed_bits)]
    three = 3 << fmt.frac
    for _ in range(fmt.newton_steps):
        y2 = shift_round(y * y, fmt.frac)
        my2 = shift_round(m * y2, fmt.mant_bits)
        y = shift_round(y * (three - my2), fmt.frac + 1)
    y = np.where(nonzero, y, 0)
    return y, np.where(nonzero, k, 0)


#: Extra fractional bits kept in the per-row scale ``g / ||v||`` beyond g's own.
WEIGHT_NORM_SCALE_EXTRA = 6


def weight_norm(v, g, g_fmt: QFormat, out_fmt: QFormat,
                rsqrt_fmt: RsqrtFormat = RsqrtFormat()) -> tuple[np.ndarray, np.ndarray]:
    """Weight normalisation ``w = g * v / ||v||`` per row (dim 0), bit-exact model of the weight-norm unit.

    Parameters
    ----------
    v : (R, ...) int array in any format: its scale cancels in ``v / ||v||``. Every dimension after the
        first is one row (as PyTorch's ``weight_norm(dim=0)``).
    g : (R,) or (R, 1, ...) ints in ``g_fmt``.

    Per row: ``ss = sum(v**2)`` exactly; ``(y, k) = rsqrt(ss)``; the row scale
    ``c = round(g * y / 2**(rsqrt.frac - 6))`` keeps 6 extra fractional bits; then
    ``w = narrow(v * c, g_fmt.frac + 6 + k/2 -> out_fmt)`` per element. Rows with ``ss = 0`` give zeros.

    Returns ``(w, zero_rows)``: w in ``out_fmt`` with v's shape, and a boolean (R,) mask of zero rows (the
    hardware's sticky status flag is ``zero_rows.any()``). Error against float through
    :func:`quantize_weight_norm` at the defaults: at most 0.71 LSB of Q2.14 over 512 random rows of 192 with
    norms from 0.1 to 1400 (``benchmarks/kernel_errors.py``).
    """
    v = np.asarray(v, dtype=np.int64)
    rows = v.shape[0]
    flat = v.reshape(rows, -1)
    g = np.asarray(g, dtype=np.int64).reshape(rows)
    ss = np.sum(flat * flat, axis=1)
    y, k = rsqrt(ss, rsqrt_fmt)
    extra = WEIGHT_NORM_SCALE_EXTRA
    c = shift_round(g * y, rsqrt_fmt.frac - extra)
    w = narrow(flat * c[:, None], (g_fmt.frac + extra + k // 2)[:, None], out_fmt)
    zero_rows = ss == 0
    w[zero_rows] = 0
    return w.reshape(v.shape), zero_rows


def _fit_frac(peak: np.ndarray, width: int) -> np.ndarray:
    """Per value of ``peak`` (>= 0), the most fractional bits a ``width``-bit format can have and still hold it."""
    peak = np.asarray(peak, dtype=np.float64)
    frac = np.full(peak.shape, width - 1, dtype=np.int64)
    nonzero = peak > 0
    frac[nonzero] = width - 2 - np.floor(np.log2(peak[nonzero])).astype(np.int64)
    # Rounding half up can carry a peak just below a power of two over the top: step back one bit there.
    frac -= np.floor(peak * 2.0**frac + 0.5) > (1 << (width - 1)) - 1
    return np.clip(frac, 0, 2 * width)


def weight_norm_operands(g, v, width: int) -> tuple[np.ndarray, np.ndarray, QFormat]:
    """The integers the loader gives the weight-norm unit for float ``(g, v)``: ``(v_int, g_int, g_fmt)``.

    Each row of ``v`` (every axis after the first, flattened) is quantised to ``width`` bits with its own
    power-of-two scale, the most fractional bits that hold the row: a row's scale cancels in ``v / ||v||``, so
    this costs nothing in hardware and keeps rows of small norm precise. ``g`` gets one per-tensor format.
    ``v_int`` has shape ``(rows, -1)``.
    """
    v = np.asarray(v, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64).reshape(v.shape[0])
    rows = v.reshape(v.shape[0], -1)
    v_frac = _fit_frac(np.max(np.abs(rows), axis=1, initial=0.0), width)
    lim = 1 << (width - 1)
    v_int = np.clip(np.floor(rows * 2.0 ** v_frac[:, None] + 0.5), -lim, lim - 1).astype(np.int64)
    g_fmt = QFormat(width, int(_fit_frac(np.max(np.abs(g), initial=0.0), width)))
    return v_int, g_fmt.quantize(g), g_fmt


def quantize_weight_norm(g, v, num: Numerics, rsqrt_fmt: RsqrtFormat = RsqrtFormat()) -> np.ndarray:
    """Load-time weight norm of float ``(g, v)`` into ``num.weight`` ints, as the hardware loader does it.

    :func:`weight_norm_operands` at ``num.weight.width`` bits, then :func:`weight_norm` on the integers.
    """
    v = np.asarray(v, dtype=np.float64)
    v_int, g_int, g_fmt = weight_norm_operands(g, v, num.weight.width)
    w, _ = weight_norm(v_int, g_int, g_fmt, num.weight, rsqrt_fmt)
    return w.reshape(v.shape)
