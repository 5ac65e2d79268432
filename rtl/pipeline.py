"""Pipeline registers: delaying a value by whole cycles, the one way every engine does it."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, ValueLike

__all__ = ["delayed"]


def delayed(m: Module, value: ValueLike, cycles: int, name: str, domain: str = "sync") -> ValueLike:
    """``value`` through ``cycles`` registers of ``domain`` in module ``m`` (named ``{name}_d1`` to ``_dN``).

    ``cycles = 0`` returns ``value`` itself. The registers have ``value``'s shape and reset to zero, so a
    valid bit delayed this way is low for the first ``cycles`` cycles after reset. A ``data.View`` stays a view
    of the same layout.
    """
    for n in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{n + 1}")
        m.d[domain] += reg.eq(value)
        value = reg
    return value
