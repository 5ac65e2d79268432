"""Lane memories: the address-major load stream that the GRU engine and the matrix-vector unit share."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, ValueLike

__all__ = ["load_address_major"]


def load_address_major(m: Module, stream, writes: list, depth: int, ready: ValueLike, error: Signal) -> None:
    """Write ``stream`` into P lane memories: beat ``a * P + p`` is lane ``p``'s word ``a``, ``depth * P`` beats.

    Drives every write port's ``addr``, ``data`` and ``en`` (a later assignment in ``m`` may take them over),
    ``stream.ready`` (as ``ready``), and ``error`` high in a cycle whose beat's ``first`` / ``last`` disagree with
    the count (the first beat of word 0, the last of word ``depth - 1``). A frame may follow another at once.
    """
    lanes = len(writes)
    addr, lane = Signal(range(depth), name="load_addr"), Signal(range(lanes), name="load_lane")
    last = (addr == depth - 1) & (lane == lanes - 1)
    m.d.comb += stream.ready.eq(ready)
    take = stream.valid & stream.ready
    for p, port in enumerate(writes):
        m.d.comb += [port.addr.eq(addr), port.data.eq(stream.payload.data), port.en.eq(take & (lane == p))]
    with m.If(take):
        m.d.sync += lane.eq(lane + 1)
        with m.If(lane == lanes - 1):
            m.d.sync += [lane.eq(0), addr.eq(addr + 1)]
        with m.If(last):
            m.d.sync += addr.eq(0)
        with m.If((stream.payload.first != ((addr == 0) & (lane == 0))) | (stream.payload.last != last)):
            m.d.comb += error.eq(1)
