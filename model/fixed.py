"""Fixed-point number formats and the one narrowing operation shared by the RTL and the models.

Every value in wavefabric is a two's-complement integer read through a :class:`QFormat`:
the real value is ``integer / 2**frac``. Products keep full precision (their ``frac`` is the sum of the
operands' ``frac``); accumulators are sized by :func:`accumulator_width` so they cannot overflow; and every
narrowing from a wide value to a storage format goes through :func:`narrow`:

* **round half up**: add ``2**(shift - 1)`` and shift right arithmetically, i.e. ``floor(x + 1/2)`` in units of
  the output's last place. In hardware that is one constant added into the accumulator and a wire shift;
  ties (exactly half an LSB) go towards +infinity.
* **saturate**: clamp to ``[format.min_int, format.max_int]``.

The NumPy functions here work on ``int64`` arrays. Values wider than 62 bits are rejected so that no
intermediate can overflow ``int64`` silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "QFormat",
    "accumulator_width",
    "signed_width",
    "narrow",
    "narrow_counted",
    "saturate",
    "shift_round",
    "bit_length",
    "int_matmul",
    "MAX_WIDTH",
]

#: Widest integer any format or accumulator may have (so that ``int64`` arithmetic is exact).
MAX_WIDTH = 62


@dataclass(frozen=True)
class QFormat:
    """Signed two's-complement fixed-point format: ``width`` bits, ``frac`` of them fractional.

    Parameters
    ----------
    width : int
        Total number of bits including the sign, 2 to 62.
    frac : int
        Number of fractional bits, 0 to ``2 * width`` (more fractional than total bits is a format for
        small values, e.g. products of weights).

    Attributes
    ----------
    min_int, max_int : int
        The representable integer range.
    lsb : float
        Real value of one unit in the last place, ``2**-frac``.
    """

    width: int
    frac: int

    def __post_init__(self):
        if not isinstance(self.width, int) or not 2 <= self.width <= MAX_WIDTH:
            raise ValueError(f"QFormat width must be an integer from 2 to {MAX_WIDTH}, not {self.width!r}")
        if not isinstance(self.frac, int) or not 0 <= self.frac <= 2 * self.width:
            raise ValueError(
                f"QFormat frac must be an integer from 0 to 2 * width = {2 * self.width}, not {self.frac!r}"
            )

    def __str__(self) -> str:
        return f"Q{self.width - self.frac}.{self.frac}" if self.frac <= self.width else repr(self)

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def min_value(self) -> float:
        return self.min_int * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    def quantize(self, x) -> np.ndarray:
        """Real values to integers of this format: round half up, then saturate."""
        scaled = np.floor(np.asarray(x, dtype=np.float64) * float(1 << self.frac) + 0.5)
        return np.clip(scaled, self.min_int, self.max_int).astype(np.int64)

    def dequantize(self, q) -> np.ndarray:
        """Integers of this format to real values (exact in float64 for widths up to 53)."""
        return np.asarray(q, dtype=np.float64) * self.lsb

    def contains(self, q) -> bool:
        """Whether every integer in ``q`` is representable in this format."""
        q = np.asarray(q)
        return bool(q.size == 0 or (q.min() >= self.min_int and q.max() <= self.max_int))


def signed_width(lo: int, hi: int) -> int:
    """Smallest two's-complement width that holds every integer in ``[lo, hi]``."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def accumulator_width(a: QFormat, b: QFormat, length: int, bias: QFormat | None = None) -> int:
    """Width of an accumulator that cannot overflow summing ``length`` products of ``a`` by ``b``.

    The accumulator holds products at ``frac = a.frac + b.frac``. If ``bias`` is given, one bias value of that
    format, shifted left to the product's ``frac``, starts the sum (``bias.frac`` must not exceed the
    product's ``frac``).

    Raises
    ------
    ValueError
        If ``length`` < 1, or the bias has more fractional bits than the product.
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"reduction length must be a positive integer, not {length!r}")
    # Most positive product is min*min; most negative is min*max (or max*min, whichever is smaller).
    p_hi = a.min_int * b.min_int
    p_lo = min(a.min_int * b.max_int, a.max_int * b.min_int)
    lo, hi = length * p_lo, length * p_hi
    if bias is not None:
        shift = a.frac + b.frac - bias.frac
        if shift < 0:
            raise ValueError(
                f"bias format {bias} has more fractional bits than the product ({a.frac + b.frac})"
            )
        lo += bias.min_int << shift
        hi += bias.max_int << shift
    return signed_width(lo, hi)


def saturate(x, fmt: QFormat) -> np.ndarray:
    """Clamp integers to ``fmt``'s range."""
    return np.clip(np.asarray(x, dtype=np.int64), fmt.min_int, fmt.max_int)


def shift_round(x, shift) -> np.ndarray:
    """Divide by ``2**shift`` rounding half up (``shift`` > 0), or multiply by ``2**-shift`` (``shift`` <= 0).

    This is the rounding half of :func:`narrow`: ``(x + 2**(shift-1)) >> shift`` with an arithmetic shift.
    ``shift`` may be an array broadcastable against ``x`` (a per-row shift).
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    right = np.maximum(shift, 0)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    return ((x + half) >> right) << np.maximum(-shift, 0)


def bit_length(x) -> np.ndarray:
    """Number of bits of non-negative integers (0 for 0): a priority encoder, exact for any int64."""
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < 0):
        raise ValueError("bit_length of a negative number")
    n = np.zeros(x.shape, dtype=np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = x >= (np.int64(1) << np.int64(s))
        n += np.where(big, s, 0)
        x = np.where(big, x >> np.int64(s), x)
    return n + (x > 0)


def narrow(x, frac, out: QFormat) -> np.ndarray:
    """The shared narrowing: an integer with ``frac`` fractional bits to format ``out``.

    Rounds half up (``floor(v + 1/2)`` in units of ``out``'s last place), then saturates to ``out``.
    Widening (``out.frac > frac``) is an exact left shift, then saturation. ``frac`` may be an array
    broadcastable against ``x``.
    """
    x = np.asarray(x, dtype=np.int64)
    left = np.maximum(out.frac - np.asarray(frac, dtype=np.int64), 0)
    # Before a left shift, clip to just outside the range that can survive saturation: same result, and the
    # shift cannot overflow int64.
    x = np.where(left > 0, np.clip(x, (out.min_int >> left) - 1, (out.max_int >> left) + 1), x)
    return saturate(shift_round(x, frac - out.frac), out)


def narrow_counted(x, shift: int, out: QFormat, relu_after: bool = False) -> tuple[np.ndarray, int]:
    """:func:`narrow` by ``shift`` (>= 0) fractional bits into ``out``, and how many values saturated.

    With ``relu_after`` the result is ``relu`` of it and only the values that saturate high count (a negative
    value that saturates is zero either way). This is what the accelerators' saturation flags count.
    """
    rounded = shift_round(x, shift)
    over = rounded > out.max_int
    count = int(np.count_nonzero(over if relu_after else over | (rounded < out.min_int)))
    y = saturate(rounded, out)
    return (np.maximum(y, 0) if relu_after else y), count


def int_matmul(a, b) -> np.ndarray:
    """Exact integer matrix product of two ``int64`` arrays (``a @ b``).

    NumPy's integer matmul does not use BLAS and is slow; when every partial sum is provably below 2**53 in
    magnitude the product is computed in float64 (which is then exact) and converted back.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return np.matmul(a, b)
    k = a.shape[-1]
    bound = float(np.abs(a).max()) * float(np.abs(b).max()) * k
    if bound < 2.0**53:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if bound >= 2.0**62:
        raise ValueError(f"integer matrix product may overflow int64 (bound 2**{math.log2(bound):.1f})")
    return np.matmul(a, b)
