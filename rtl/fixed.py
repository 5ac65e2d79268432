"""Amaranth twins of :mod:`~wavefabric.model.fixed`: the one narrowing operation, as expressions.

Every engine that turns an accumulator into a storage format calls :func:`narrow` here, exactly as the
NumPy models call :func:`wavefabric.model.fixed.narrow`: round half up (add ``2**(shift - 1)``, shift right
arithmetically), then saturate. The rounding constant is exposed separately (:func:`rounding_offset`) so that
an engine can fold it into a constant it adds anyway (a bias) and save an adder.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, ValueLike, signed

from ..model.fixed import QFormat

__all__ = ["rounding_offset", "saturate", "saturates", "shift_round", "narrow", "round_by", "narrow_by",
           "const_multiply"]


def rounding_offset(frac: int, out: QFormat) -> int:
    """The constant that makes the right shift of :func:`narrow` round half up (0 when nothing is shifted out)."""
    shift = frac - out.frac
    return 1 << (shift - 1) if shift > 0 else 0


def saturate(x: ValueLike, out: QFormat) -> Value:
    """Clamp a signed value to ``out``'s integer range; the result has shape ``signed(out.width)``."""
    x = Value.cast(x)
    if not x.shape().signed:
        x = Cat(x, Const(0, 1)).as_signed()
    shape = signed(out.width)
    # A value no wider than the format needs no wrap; the comparisons below are then constant and vanish.
    wrapped = x if len(x) <= out.width else x[:out.width].as_signed()
    return Mux(x > out.max_int, Const(out.max_int, shape), Mux(x < out.min_int, Const(out.min_int, shape), wrapped))


def shift_round(x: ValueLike, shift: int) -> Value:
    """The Amaranth twin of :func:`wavefabric.model.fixed.shift_round` for a constant shift: divide by
    ``2**shift`` rounding half up (``shift`` > 0), or multiply by ``2**-shift``; no saturation."""
    x = Value.cast(x)
    if shift > 0:
        return (x + (1 << (shift - 1))) >> shift
    return x << -shift


def narrow(x: ValueLike, frac: int, out: QFormat, *, add_offset: bool = True) -> Value:
    """The shared narrowing as an expression: ``x`` with ``frac`` fractional bits to format ``out``.

    Bit-exact with :func:`wavefabric.model.fixed.narrow`: round half up, then saturate; widening
    (``out.frac > frac``) is an exact left shift. Pass ``add_offset=False`` when the caller has already added
    :func:`rounding_offset` ``(frac, out)`` to ``x`` (folded into another constant). Purely combinational.
    """
    x = Value.cast(x)
    shift = frac - out.frac
    if shift > 0:
        if add_offset:
            x = x + rounding_offset(frac, out)
        x = x >> shift  # arithmetic for a signed value: floor division by 2**shift
    elif shift < 0:
        x = x << -shift
    return saturate(x, out)


def round_by(x: ValueLike, shift: ValueLike) -> Value:
    """The rounding half of :func:`narrow_by`: drop ``shift`` fractional bits (a signal, >= 0), rounding half up;
    no saturation. ``round_by(x, s) + b`` equals rounding ``x + (b << s)``: a bias stored at the output's
    format is added after the shift, so it needs no run-time left shift."""
    x, shift = Value.cast(x), Value.cast(shift)
    half = (Const(1, 1 << len(shift)) << shift) >> 1  # 2**(shift - 1), and 0 when nothing is dropped
    return (x + half) >> shift


def narrow_by(x: ValueLike, shift: ValueLike, out: QFormat) -> Value:
    """:func:`narrow` with a run-time right shift: drop ``shift`` fractional bits (a signal, >= 0), rounding
    half up, then saturate to ``out``'s width; bit-exact with :func:`wavefabric.model.fixed.narrow` for
    ``frac - out.frac == shift``. A narrowing whose formats are loaded at run time, not built in.
    """
    return saturate(round_by(x, shift), out)


def saturates(x: ValueLike, out: QFormat) -> Value:
    """Whether :func:`saturate` changes ``x``: it lies outside ``out``'s integer range."""
    x = Value.cast(x)
    return (x > out.max_int) | (x < out.min_int)


def const_multiply(x: ValueLike, c: int) -> Value:
    """``x * c`` for a Python integer ``c`` as a sum of shifts (adders, never a DSP48E1)."""
    x = Value.cast(x)
    total = Const(0, signed(2))
    for bit in range(abs(c).bit_length()):
        if abs(c) >> bit & 1:
            total = total + (x << bit)
    return -total if c < 0 else total
