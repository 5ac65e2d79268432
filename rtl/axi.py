"""AXI4 read and write channels as ``lib.stream`` payloads: how an engine reads and writes the PS DDR.

An engine that reads memory has two streams: ``ar`` (``Out``, :func:`read_address_layout`) and ``r`` (``In``,
:func:`read_data_layout`). They are the AR and R channels of an AXI4 manager with the fields an engine needs;
the board top fills in the rest as constants (``ARSIZE`` = log2 of the data bytes, ``ARBURST`` = INCR,
``ARCACHE`` = 0b0011, ``ARPROT`` = 0, ``ARID`` = 0) and ignores ``RRESP`` except to raise an error. Bursts are
``len + 1`` beats of ``data_width`` bits from the byte address ``addr``, which is a multiple of the data bytes
and never crosses a 4 KiB boundary within one burst (AXI4's rule).

An engine that writes memory has three: ``aw`` (``Out``, :func:`write_address_layout`), ``w`` (``Out``,
:func:`write_data_layout`) and ``b`` (``In``, :func:`write_response_layout`), the AW, W and B channels. The board
top fills in ``AWSIZE`` = log2 of the data bytes, ``AWBURST`` = INCR, ``AWCACHE`` = 0b0011, ``AWPROT`` = 0,
``AWID`` = 0 (so ``BID`` is ignored); bursts follow the read rules, each has exactly ``len + 1`` W beats with
``last`` on the final one, and one B response arrives per burst.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data

from ..model.checks import check_int

__all__ = ["read_address_layout", "read_data_layout", "write_address_layout", "write_data_layout",
           "write_response_layout", "check_data_width", "AXI_DATA_WIDTHS"]

#: Data widths of the Zynq-7000 HP ports' AXI3/AXI4 side that an engine may use.
AXI_DATA_WIDTHS = (32, 64)


def check_data_width(data_width: int) -> int:
    """Return ``data_width`` if it is one of :data:`AXI_DATA_WIDTHS`, else raise ``ValueError`` naming it."""
    if data_width not in AXI_DATA_WIDTHS:
        raise ValueError(f"data_width must be one of {AXI_DATA_WIDTHS}, not {data_width!r}")
    return data_width


def read_address_layout(addr_width: int = 32) -> data.StructLayout:
    """Payload of ``ar``: ``addr`` (byte address) and ``len`` (beats - 1, AXI4 ``ARLEN``, up to 255)."""
    check_int("addr_width", addr_width, lo=12, hi=64)
    return data.StructLayout({"addr": unsigned(addr_width), "len": unsigned(8)})


def read_data_layout(data_width: int = 64) -> data.StructLayout:
    """Payload of ``r``: ``data`` (``data_width`` bits, byte 0 in the low bits), ``resp`` (``RRESP``) and ``last``."""
    check_data_width(data_width)
    return data.StructLayout({"data": unsigned(data_width), "resp": unsigned(2), "last": 1})


def write_address_layout(addr_width: int = 32) -> data.StructLayout:
    """Payload of ``aw``: ``addr`` (byte address) and ``len`` (beats - 1, AXI4 ``AWLEN``, up to 255): as ``ar``'s."""
    return read_address_layout(addr_width)


def write_data_layout(data_width: int = 64) -> data.StructLayout:
    """Payload of ``w``: ``data`` (byte 0 in the low bits), ``strb`` (``WSTRB``: bit ``i`` writes byte ``i``) and
    ``last``."""
    check_data_width(data_width)
    return data.StructLayout({"data": unsigned(data_width), "strb": unsigned(data_width // 8), "last": 1})


def write_response_layout() -> data.StructLayout:
    """Payload of ``b``: ``resp`` (``BRESP``: 0 OKAY; anything else is an error)."""
    return data.StructLayout({"resp": unsigned(2)})
