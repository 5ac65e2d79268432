"""Parameter validation shared by every layer: a bad parameter is a ``ValueError`` naming it and its range."""

from __future__ import annotations

__all__ = ["check_int", "check_sizes"]


def check_int(name: str, value, lo: int = 1) -> int:
    """Return ``value`` if it is an integer (not a bool) >= ``lo``, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return value


def check_sizes(**sizes) -> None:
    """:func:`check_int` with ``lo = 1`` for every keyword: sizes, counts and lengths."""
    for name, value in sizes.items():
        check_int(name, value)
