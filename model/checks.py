"""Parameter validation shared by every layer: a bad parameter is a ``ValueError`` naming it and its range."""

from __future__ import annotations

__all__ = ["check_int", "check_sizes"]


def check_int(name: str, value, lo: int = 1, hi: int | None = None) -> int:
    """Return ``value`` if it is an integer (not a bool) in ``[lo, hi]`` (no upper bound without ``hi``), else
    raise ``ValueError`` naming ``name`` and the legal range."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        legal = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        raise ValueError(f"{name} must be an integer {legal}, not {value!r}")
    return value


def check_sizes(**sizes) -> None:
    """:func:`check_int` with ``lo = 1`` for every keyword: sizes, counts and lengths."""
    for name, value in sizes.items():
        check_int(name, value)
