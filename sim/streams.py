"""Run a component's streams from batched stimulus on either simulation backend, cycle for cycle alike.

:func:`run_streams` is the one entry point the engines' simulation modules use. It takes every input stream's
beats at once, expands the seeded stalls into arrays up front (:func:`stall_patterns`), packs the payloads into
the flat bit vectors the ports carry (:func:`pack`), and hands the lot to a backend:

* ``"amaranth"``: Amaranth's simulator, one testbench that follows the rules below cycle by cycle;
* ``"verilator"``: the exported Verilog compiled by Verilator (:mod:`wavefabric.sim.verilator`), whose C++ loop
  follows the same rules with no Python on the hot path.

Both see the same stimulus, so they must agree on every output beat and every transfer cycle.

**The rules.** Cycles count from 0; a transfer in cycle ``t`` is sampled at the ``t + 1``-th rising edge (the
testbench samples every handshake just before the edge). Before the first cycle every static input is set (other
plain inputs are 0).

* A source (the component's ``In`` stream) keeps ``valid`` low for ``gaps[i]`` cycles before beat ``i``, counted
  from the cycle after the previous transfer (from cycle 0 for the first beat); the beat is then due, once
  its waits are met: a wait ``(i, u, n)`` of ``s`` holds beat ``i`` back until stream ``u`` (a driven input or
  a collected output) has transferred ``n`` beats in an earlier cycle. A due beat is offered at once: ``valid``
  rises with the beat, and both hold until the transfer (as AXI4-Stream requires).
* A due beat that carries changes of plain inputs (``(s, i, value)``: beat ``i`` of ``s``) first applies them,
  in the order given, and is offered from the next cycle: a quasi-static input such as a layer's size gets
  one cycle to settle before the beat, as engines that register it require.
* A sink (the component's ``Out`` stream) raises ``ready`` in cycle ``t`` if it still expects beats and
  ``ready_mask[t]`` (always without a mask).
* A memory (:class:`AxiMemory`) serves AXI4 read bursts on an ``ar`` (``Out``) and ``r`` (``In``) stream
  pair, write bursts on ``aw`` (``Out``), ``w`` (``Out``) and ``b`` (``In``), or both. ``ar`` is ready in
  cycle ``t`` if ``ar_mask[t]`` (always without a mask); a burst accepted in cycle ``t`` joins an unbounded
  in-order queue, due in cycle ``t + latency``. A burst must start at a multiple of the beat's bytes, must not
  cross a 4 KiB boundary and must lie inside the memory's contents: the run stops in the cycle of a burst that
  breaks one of these and raises ``ValueError``. In cycle ``t``, if ``r`` holds no beat, the
  queue's head is due (``t >= due``) and ``r_mask[t]`` (always without a mask), ``r`` raises ``valid`` with the
  head's next beat: beat ``b`` of a burst at ``addr`` carries the little-endian word at byte ``addr + b *
  bytes``, ``last`` on its final beat, ``resp`` 0; it holds both until the transfer, after which the burst's
  next beat (or the next burst) may follow in the next cycle.
* Writes: ``aw`` is ready in cycle ``t`` if ``aw_mask[t]``; a write burst accepted in cycle ``t`` must keep
  the same burst rules (else the run stops there) and joins an in-order queue of bursts awaiting W beats. ``w``
  is ready in cycle ``t`` if that queue holds a burst accepted before ``t`` and ``w_mask[t]``. A W beat that
  transfers is beat ``b`` of the queue's head: the bytes of its ``data`` whose ``strb`` bit is set are written
  at once at ``addr + b * bytes`` (reads served later see them); its ``last`` must be high exactly on the
  burst's final beat, else the run stops in that cycle with ``ValueError``. A burst's B response is due
  ``write_latency`` cycles after its final W beat; in cycle ``t``, if ``b`` holds no response, the oldest
  response is due and ``b_mask[t]``, ``b`` raises ``valid`` (payload 0: ``resp`` OKAY) and holds it until the
  transfer. In one cycle the memory takes transfers in the order R, AR, W, B, AW.
* The run ends when every source has sent and every sink received all its beats (memories do not count: reads
  and write responses still in flight are dropped); ``tail`` more cycles follow with every ``valid`` and
  ``ready`` low, and then the plain outputs (flags such as ``error``) are read.
"""

from __future__ import annotations

import enum
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from amaranth.hdl import Const, Shape, ShapeCastable, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Flow
from amaranth.sim import Simulator

__all__ = ["VCD_ENV", "vcd_hint", "to_python", "run_simulation", "BACKENDS", "StreamPort", "PlainPort",
           "component_ports", "pack", "unpack", "stall_patterns",
           "AxiMemory", "AxiReadMemory", "burst_fault", "Fault", "Stimulus", "MemoryTraffic", "StreamRun",
           "run_streams"]

#: Cycles between two ``progress`` calls of an Amaranth run (about a second of a large design).
AMARANTH_PROGRESS_CYCLES = 1024

#: Names of the simulation backends :func:`run_streams` knows.
BACKENDS = ("amaranth", "verilator")

#: Environment variable naming a folder for VCD traces of every simulation run through :func:`run_simulation`.
VCD_ENV = "WAVEFABRIC_VCD"

#: Simulated clock period in seconds (100 MHz; only the VCD time axis depends on it).
CLOCK_PERIOD = 1e-8


def vcd_hint(name: str) -> str:
    """A sentence for failure messages: how to get a trace of the simulation called ``name``."""
    return f"set {VCD_ENV}=DIR to write DIR/{name}.vcd"


def to_python(value: Any) -> Any:
    """A sampled value as plain Python: ``int`` for values, ``dict`` for structs, ``list`` for arrays."""
    if isinstance(value, data.Const):
        layout = data.Layout.cast(value.shape())
        if isinstance(layout, data.ArrayLayout):
            return [to_python(value[n]) for n in range(layout.length)]
        return {name: to_python(value[name]) for name, _ in layout}
    if isinstance(value, Const):
        return value.value
    return int(value)


def run_simulation(dut, testbenches: Sequence[Callable], *, name: str) -> None:
    """Simulate ``dut`` in Amaranth's simulator with a 100 MHz ``sync`` clock until every testbench has returned.

    Testbenches are ``async def tb(ctx)`` functions. With ``WAVEFABRIC_VCD=DIR`` in the environment the run is
    traced to ``DIR/<name>.vcd``.
    """
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    folder = os.environ.get(VCD_ENV)
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(path / f"{name}.vcd")):
            sim.run()
    else:
        sim.run()


def words_for(width: int) -> int:
    """32-bit words that hold ``width`` bits (at least one): the unit of every port value in the stimulus."""
    return max(1, -(-width // 32))


@dataclass(frozen=True)
class PlainPort:
    """A plain (non-stream) port: a static input such as a size, or an output flag."""

    name: str
    flow: Flow
    shape: Any
    width: int
    init: int = 0

    @property
    def words(self) -> int:
        return words_for(self.width)


@dataclass(frozen=True)
class StreamPort(PlainPort):
    """A ``lib.stream`` member of a component: its name and direction, its payload's shape and width."""

    def verilog(self, part: str) -> str:
        """The flattened port name of ``part`` (``payload``, ``valid``, ``ready``): Amaranth joins with ``__``."""
        return f"{self.name}__{part}"


def component_ports(component: wiring.Component) -> tuple[list[StreamPort], list[PlainPort]]:
    """The component's stream members and plain ports, in signature order, from its signature alone.

    Raises ``ValueError`` for members the backends cannot drive: other interfaces than ``lib.stream``, and
    streams with ``always_valid`` or ``always_ready`` (their constant port is not in the Verilog).
    """
    streams, plain = [], []
    for name, member in component.signature.members.items():
        if member.is_port:
            width = Shape.cast(member.shape).width
            init = Value.cast(Signal(member.shape, init=member.init)).init & ((1 << width) - 1)
            plain.append(PlainPort(name, member.flow, member.shape, width, init))
            continue
        sig = member.signature
        if isinstance(sig, wiring.FlippedSignature):  # an In member's signature comes flipped
            sig = sig.flip()
        if not isinstance(sig, stream.Signature):
            raise ValueError(f"member {name!r} is a {type(sig).__name__}: only lib.stream interfaces are supported")
        if sig.always_valid or sig.always_ready:
            raise ValueError(f"stream {name!r} is always_valid or always_ready: not supported")
        shape = sig.members["payload"].shape
        streams.append(StreamPort(name, member.flow, shape, Shape.cast(shape).width))
    return streams, plain


# --- Payload packing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Leaf:
    """A scalar field of a payload: where its bits are, how to read them, and the keys that lead to it."""

    path: tuple
    offset: int
    width: int
    signed: bool


def _layout(shape) -> data.Layout | None:
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def _leaves(shape, offset: int = 0, path: tuple = ()) -> Iterator[_Leaf]:
    layout = _layout(shape)
    if layout is None:
        scalar = Shape.cast(shape)
        if scalar.width > 64:
            raise ValueError(f"payload field {path} is {scalar.width} bits wide; fields up to 64 bits are supported")
        yield _Leaf(path, offset, scalar.width, scalar.signed)
        return
    for key, fld in layout:
        yield from _leaves(fld.shape, offset + fld.offset, path + (key,))


def _is_enum(shape) -> bool:
    return isinstance(shape, type) and issubclass(shape, enum.Enum)


def _columns(shape, payloads: Sequence) -> Any:
    """Payloads (Python values as ``ctx.set`` takes them) as columns: arrays of one field over every beat."""
    layout = _layout(shape)
    if layout is None:
        if _is_enum(shape):
            payloads = [shape(p).value for p in payloads]
        if Shape.cast(shape).width == 64 and not Shape.cast(shape).signed:
            # Above 2**63 - 1 as its two's-complement int64: pack only looks at the bits.
            return np.asarray(payloads, dtype=np.uint64).view(np.int64)
        return np.asarray(payloads, dtype=np.int64)
    if isinstance(layout, data.ArrayLayout) and _layout(layout.elem_shape) is None and not _is_enum(layout.elem_shape):
        # Lanes of plain integers, the common case, in one conversion rather than one per lane.
        return np.asarray(payloads, dtype=np.int64).reshape(len(payloads), layout.length)
    return {key: _columns(fld.shape, [p[key] for p in payloads]) for key, fld in layout}


def _column(columns: Any, path: tuple) -> np.ndarray:
    for key in path:
        columns = columns[key] if isinstance(columns, Mapping) else columns[:, key]
    return np.asarray(columns, dtype=np.int64)


def pack(shape: ShapeCastable, payloads: Sequence | Mapping | np.ndarray) -> np.ndarray:
    """Payloads of ``shape`` as the bits of the flattened port: a ``(beats, words)`` uint32 array, LSW first.

    ``payloads`` is a sequence of Python values (ints, dicts for structs, lists for arrays, enum members), or
    the same as columns, which is much faster for long runs: an int array ``(beats,)`` for a scalar, a mapping
    of field names to columns for a struct, an int array ``(beats, length)`` (or a mapping of indices) for an
    array of integers.
    """
    columns = payloads if isinstance(payloads, (Mapping, np.ndarray)) else _columns(shape, list(payloads))
    leaves = list(_leaves(shape))
    count = len(_column(columns, leaves[0].path)) if leaves else 0
    words = np.zeros((count, words_for(Shape.cast(shape).width)), dtype=np.uint32)
    for leaf in leaves:
        bits = _column(columns, leaf.path).view(np.uint64) & np.uint64((1 << leaf.width) - 1)
        offset, left = leaf.offset, leaf.width
        while left > 0:  # a field may straddle 32-bit words
            index, shift = divmod(offset, 32)
            take = min(32 - shift, left)
            chunk = (bits & np.uint64((1 << take) - 1)) << np.uint64(shift)
            words[:, index] |= chunk.astype(np.uint32)
            bits >>= np.uint64(take)
            offset, left = offset + take, left - take
    return words


def _python(shape, values: dict[tuple, np.ndarray], count: int, path: tuple = ()) -> list:
    layout = _layout(shape)
    if layout is None:
        return values[path].tolist()
    if isinstance(layout, data.ArrayLayout) and _layout(layout.elem_shape) is None:
        lanes = [values[path + (n,)] for n in range(layout.length)]
        return np.stack(lanes, axis=1).tolist() if lanes else [[] for _ in range(count)]
    keys = [key for key, _ in layout]
    fields = [_python(fld.shape, values, count, path + (key,)) for key, fld in layout]
    if isinstance(layout, data.ArrayLayout):
        return [list(beat) for beat in zip(*fields, strict=True)]
    return [dict(zip(keys, beat, strict=True)) for beat in zip(*fields, strict=True)]


def unpack(shape: ShapeCastable, words: np.ndarray) -> list:
    """The inverse of :func:`pack`: Python values as :func:`to_python` gives them.

    Structs become dicts, arrays lists, scalars ints (enum fields too: their value).
    """
    words = np.asarray(words, dtype=np.uint32)
    if words.ndim != 2:  # one word per beat
        words = words.reshape(len(words), 1)
    values = {}
    for leaf in _leaves(shape):
        bits = np.zeros(len(words), dtype=np.uint64)
        offset, got = leaf.offset, 0
        while got < leaf.width:
            index, shift = divmod(offset, 32)
            take = min(32 - shift, leaf.width - got)
            chunk = (words[:, index].astype(np.uint64) >> np.uint64(shift)) & np.uint64((1 << take) - 1)
            bits |= chunk << np.uint64(got)
            offset, got = offset + take, got + take
        if leaf.signed:
            value = bits.view(np.int64)
            values[leaf.path] = np.where(value >= 1 << (leaf.width - 1), value - (1 << leaf.width), value) \
                if leaf.width < 64 else value
        else:
            values[leaf.path] = bits
    return _python(shape, values, len(words))


def _to_int(words: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(words, dtype="<u4").tobytes(), "little")


def _from_ints(values: Sequence[int], count_words: int) -> np.ndarray:
    raw = b"".join(v.to_bytes(4 * count_words, "little") for v in values)
    return np.frombuffer(raw, dtype="<u4").reshape(len(values), count_words).astype(np.uint32)


# --- Stimulus ---------------------------------------------------------------------------------------------------

def _rng(seed: int, stream_name: str) -> np.random.Generator:
    # One independent generator per stream, so adding a stream never changes another's pattern.
    return np.random.default_rng(list(f"{seed}/{stream_name}".encode()))


def _mask(seed: int, stream_name: str, p: float, max_cycles: int) -> np.ndarray | None:
    """One stream's per-cycle pattern (uint8, ``max_cycles`` long): high with probability ``p``; None for ``p == 1``."""
    return (_rng(seed, stream_name).random(max_cycles) < p).astype(np.uint8) if p < 1 else None


def stall_patterns(seed: int, sources: Mapping[str, int], sinks: Sequence[str], p_valid: float, p_ready: float,
                   max_cycles: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Seeded stalls for every stream: ``(gaps, ready_masks)``.

    ``gaps[s]`` holds, for each of the ``sources[s]`` beats, the cycles ``valid`` stays low before it: geometric,
    each cycle offering with probability ``p_valid`` (zeros when ``p_valid == 1``). ``ready_masks[s]`` holds
    ``ready`` for each of ``max_cycles`` cycles, high with probability ``p_ready`` (None when ``p_ready == 1``).
    """
    gaps = {name: (_rng(seed, name).geometric(p_valid, count) - 1 if p_valid < 1 else np.zeros(count, np.int64))
            .astype(np.uint32) for name, count in sources.items()}
    masks = {name: _mask(seed, name, p_ready, max_cycles) for name in sinks}
    return gaps, masks


# --- Memories ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AxiMemory:
    """An AXI4 memory (the PS DDR as an engine sees it) serving a component's read and/or write streams.

    Attributes
    ----------
    contents : bytes or uint8 array
        The memory image: byte ``a`` at address ``a``. A burst that reaches beyond it stops the run with
        ``ValueError``: an engine that reads or writes past its data has a bug, which zeros would hide. The
        image given is never modified: the run returns the final contents.
    ar, r : str or None
        The component's read-address (``Out``) and read-data (``In``) streams, with the payloads of
        :func:`~wavefabric.rtl.axi.read_address_layout` and :func:`~wavefabric.rtl.axi.read_data_layout` (any
        struct with the fields ``addr``, ``len`` and ``data`` (whole bytes, up to 64 bits), ``last`` will do).
        Both None: the memory serves no reads.
    latency : int
        Cycles from a burst's AR transfer to the first cycle its first R beat may be valid (at least 1). The
        default, 40 cycles (400 ns at 100 MHz), is our assumption of a pessimistic Zynq-7000 HP-port DDR read
        latency, at or above the published figures we know of: an engine that keeps up with it should keep up
        with the board.
    p_ar_ready : float
        Probability that ``ar`` is ready in a cycle.
    p_r_valid : float
        Probability that a due R beat is offered in a cycle (the R stream's gaps).
    aw, w, b : str or None
        The component's write-address (``Out``), write-data (``Out``) and write-response (``In``) streams, with
        the payloads of :func:`~wavefabric.rtl.axi.write_address_layout`, :func:`~wavefabric.rtl.axi.write_data_layout`
        and :func:`~wavefabric.rtl.axi.write_response_layout` (``aw``: ``addr``, ``len``; ``w``: ``data``, ``strb``
        of one bit per data byte, ``last``). All three None (the default): the memory serves no writes.
    write_latency : int
        Cycles from a burst's last W transfer to the first cycle its B response may be valid (at least 1). The
        default, 40 cycles, is the read latency's assumption applied to writes: we have no measured figure.
    p_aw_ready, p_w_ready : float
        Probability that ``aw`` is ready in a cycle, and that ``w`` is ready in a cycle in which it may be.
    p_b_valid : float
        Probability that a due B response is offered in a cycle.

    The stalls come from generators seeded by the run's ``seed`` and the stream's name, as every stream's do.
    """

    contents: bytes | np.ndarray
    ar: str | None = "ar"
    r: str | None = "r"
    latency: int = 40
    p_ar_ready: float = 1.0
    p_r_valid: float = 1.0
    aw: str | None = None
    w: str | None = None
    b: str | None = None
    write_latency: int = 40
    p_aw_ready: float = 1.0
    p_w_ready: float = 1.0
    p_b_valid: float = 1.0

    @property
    def streams(self) -> list[str]:
        """The component's streams this memory serves."""
        return [s for s in (self.ar, self.r, self.aw, self.w, self.b) if s is not None]


#: The name of a memory that only serves reads (:class:`AxiMemory`'s defaults), kept for its users.
AxiReadMemory = AxiMemory


def burst_fault(addr: int, length: int, beat_bytes: int, size: int) -> str | None:
    """Why a burst of ``length + 1`` beats at byte ``addr`` breaks the memory rules, or None if it does not."""
    end = addr + (length + 1) * beat_bytes
    if addr % beat_bytes:
        return f"does not start at a multiple of {beat_bytes} bytes"
    if addr >> 12 != (end - 1) >> 12:
        return "crosses a 4 KiB boundary"
    if end > size:
        return f"reaches beyond the memory's {size} bytes"
    return None


class Fault(enum.IntEnum):
    """What stopped a run at a memory (the codes the Verilator harness writes)."""

    NONE = 0
    AR = 1  # a read burst that breaks the burst rules
    AW = 2  # a write burst that breaks them
    W = 3  # a W beat whose last is not on the burst's final beat


#: Stream name meaning "no stream" in :class:`MemoryStimulus` (a memory without reads or without writes).
NO_STREAM = ""


@dataclass
class MemoryStimulus:
    """One memory of a run, resolved against the component's ports: what a backend needs (see the rules).

    ``fields`` are the bit offsets and widths ``(addr, addr_width, len, len_width, data, data_width, last)`` of
    the payload fields in the flattened ``ar`` and ``r`` ports, ``write_fields`` those of ``(addr, addr_width,
    len, len_width, data, data_width, strb, strb_width, last)`` in ``aw`` and ``w`` (zeros where the memory
    serves no reads, or no writes); ``r`` and ``b`` payloads are built from zero, so every other field
    (``resp``) is 0. Streams the memory does not serve are :data:`NO_STREAM`.
    """

    ar: str
    r: str
    aw: str
    w: str
    b: str
    contents: np.ndarray
    latency: int
    write_latency: int
    masks: dict[str, np.ndarray | None]
    fields: tuple[int, ...]
    write_fields: tuple[int, ...]
    beat_bytes: int

    def mask(self, stream_name: str) -> np.ndarray | None:
        """The stall pattern of one of the memory's streams (None: always)."""
        return self.masks.get(stream_name)


def _memory_stimulus(name: str, memory: AxiMemory, shapes: Mapping[str, Any], seed: int,
                     max_cycles: int) -> MemoryStimulus:
    def field(stream_name: str, key: str) -> tuple[int, int]:
        layout = _layout(shapes[stream_name])
        if layout is None or not isinstance(layout, data.StructLayout) or key not in dict(iter(layout)):
            raise ValueError(f"memory {name!r}: the payload of {stream_name!r} has no field {key!r}")
        return layout[key].offset, Shape.cast(layout[key].shape).width

    reads, writes = (memory.ar, memory.r), (memory.aw, memory.w, memory.b)
    if None in reads and reads != (None, None) or None in writes and writes != (None, None, None):
        raise ValueError(f"memory {name!r}: give both of ar and r (or neither) and all of aw, w and b (or none)")
    if reads == (None, None) and writes == (None, None, None):
        raise ValueError(f"memory {name!r}: serves no streams (give ar and r, or aw, w and b)")
    fields, write_fields, widths = (0,) * 7, (0,) * 9, set()
    if memory.ar is not None:
        fields = (*field(memory.ar, "addr"), *field(memory.ar, "len"), *field(memory.r, "data"),
                  field(memory.r, "last")[0])
        widths.add(fields[5])
        if field(memory.r, "last")[1] != 1:
            raise ValueError(f"memory {name!r}: the last of {memory.r!r} must be one bit")
    if memory.aw is not None:
        write_fields = (*field(memory.aw, "addr"), *field(memory.aw, "len"), *field(memory.w, "data"),
                        *field(memory.w, "strb"), field(memory.w, "last")[0])
        widths.add(write_fields[5])
        if field(memory.w, "last")[1] != 1 or write_fields[7] * 8 != write_fields[5]:
            raise ValueError(f"memory {name!r}: {memory.w!r} needs a one-bit last and one strb bit per data byte")
    addressing = [fields[1], fields[3], write_fields[1], write_fields[3]]
    if len(widths) != 1 or max(addressing) > 64 or any(w % 8 or not 8 <= w <= 64 for w in widths):
        raise ValueError(f"memory {name!r}: addr and len up to 64 bits and one data width (whole bytes up to 64 "
                         f"bits) for reads and writes are supported")
    for what, value in (("latency", memory.latency), ("write_latency", memory.write_latency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"memory {name!r}: {what} must be an int of at least 1, not {value!r}")
    probabilities = {memory.ar: memory.p_ar_ready, memory.r: memory.p_r_valid, memory.aw: memory.p_aw_ready,
                     memory.w: memory.p_w_ready, memory.b: memory.p_b_valid}
    for what, p in (("p_ar_ready", memory.p_ar_ready), ("p_r_valid", memory.p_r_valid),
                    ("p_aw_ready", memory.p_aw_ready), ("p_w_ready", memory.p_w_ready),
                    ("p_b_valid", memory.p_b_valid)):
        if not 0 < p <= 1:
            raise ValueError(f"memory {name!r}: {what} must be in (0, 1], not {p!r}")
    contents = memory.contents
    contents = np.frombuffer(bytes(contents), dtype=np.uint8) if isinstance(contents, (bytes, bytearray)) \
        else np.asarray(contents)
    if contents.dtype != np.uint8 or contents.ndim != 1:
        raise ValueError(f"memory {name!r}: contents must be bytes or a one-dimensional uint8 array")
    masks = {s: _mask(seed, s, p, max_cycles) for s, p in probabilities.items() if s is not None}
    return MemoryStimulus(*(s or NO_STREAM for s in (*reads, *writes)), contents, memory.latency,
                          memory.write_latency, masks, fields, write_fields, widths.pop() // 8)


def _field(payload: int, at: int, width: int) -> int:
    return payload >> at & ((1 << width) - 1)


class _MemoryServer:
    """The memory rules of the module for one memory, as the Amaranth testbench runs them."""

    def __init__(self, stim: MemoryStimulus, component):
        self.stim = stim
        self.ports = {s: getattr(component, s) for s in (stim.ar, stim.r, stim.aw, stim.w, stim.b) if s}
        self.contents = bytearray(stim.contents.tobytes())
        self.queue: deque[list[int]] = deque()  # [addr, len, due, next beat] of every accepted read burst
        self.writes: deque[list[int]] = deque()  # [addr, len, next beat] of every write burst awaiting W beats
        self.responses: deque[int] = deque()  # due cycle of every B response not yet taken
        self.r_valid = self.ar_ready = self.w_ready = self.b_valid = self.aw_ready = False
        # Transfer cycles of every stream; (addr, len) of every read and write burst.
        self.times: dict[str, list[int]] = {key: [] for key in ("ar", "r", "aw", "w", "b")}
        self.bursts: dict[str, list[tuple[int, int]]] = {"ar": [], "aw": []}
        self.fault, self.fault_cycle = Fault.NONE, 0

    def _allowed(self, stream_name: str, cycle: int) -> bool:
        mask = self.stim.mask(stream_name)
        return mask is None or bool(mask[cycle])

    def drive(self, ctx, cycle: int) -> None:
        """Set the memory's side of its streams for ``cycle``."""
        stim = self.stim
        if stim.ar:
            r = self.ports[stim.r]
            if not self.r_valid and self.queue and self.queue[0][2] <= cycle and self._allowed(stim.r, cycle):
                addr, length, _, beat = self.queue[0]
                at = addr + beat * stim.beat_bytes
                word = int.from_bytes(self.contents[at:at + stim.beat_bytes], "little")
                ctx.set(Value.cast(r.payload), word << stim.fields[4] | (beat == length) << stim.fields[6])
                self.r_valid = True
            ctx.set(r.valid, self.r_valid)
            self.ar_ready = self._allowed(stim.ar, cycle)
            ctx.set(self.ports[stim.ar].ready, self.ar_ready)
        if stim.aw:
            self.w_ready = bool(self.writes) and self._allowed(stim.w, cycle)
            ctx.set(self.ports[stim.w].ready, self.w_ready)
            if not self.b_valid and self.responses and self.responses[0] <= cycle and self._allowed(stim.b, cycle):
                self.b_valid = True
            ctx.set(self.ports[stim.b].valid, self.b_valid)
            self.aw_ready = self._allowed(stim.aw, cycle)
            ctx.set(self.ports[stim.aw].ready, self.aw_ready)

    def samples(self) -> list:
        """What :meth:`update` takes, sampled before the edge."""
        stim, ports = self.stim, self.ports
        out = []
        if stim.ar:
            out += [ports[stim.r].ready, ports[stim.ar].valid, Value.cast(ports[stim.ar].payload).as_unsigned()]
        if stim.aw:
            out += [ports[stim.w].valid, Value.cast(ports[stim.w].payload).as_unsigned(), ports[stim.b].ready,
                    ports[stim.aw].valid, Value.cast(ports[stim.aw].payload).as_unsigned()]
        return out

    def _accept(self, channel: str, cycle: int, payload: int, fields: tuple[int, ...]) -> tuple[int, int] | None:
        """Log the burst of an address transfer; None (and the fault recorded) if it breaks the rules."""
        addr, length = _field(payload, *fields[0:2]), _field(payload, *fields[2:4])
        self.times[channel].append(cycle)
        self.bursts[channel].append((addr, length))
        if burst_fault(addr, length, self.stim.beat_bytes, len(self.contents)) is not None:
            self.fault, self.fault_cycle = Fault[channel.upper()], cycle
            return None
        return addr, length

    def update(self, cycle: int, values: Sequence) -> bool:
        """Take the transfers of ``cycle`` (sampled values of :meth:`samples`); False when a fault stops the run.

        The order (R, AR, W, B, AW) is the harness's: it decides which fault is reported when two coincide.
        """
        stim, at = self.stim, 0
        if stim.ar:
            r_ready, ar_valid, ar_payload = values[:3]
            at = 3
            if self.r_valid and r_ready:
                self.times["r"].append(cycle)
                self.r_valid = False
                head = self.queue[0]
                head[3] += 1
                if head[3] > head[1]:
                    self.queue.popleft()
            if self.ar_ready and ar_valid:
                burst = self._accept("ar", cycle, ar_payload, stim.fields)
                if burst is None:
                    return False
                self.queue.append([*burst, cycle + stim.latency, 0])
        if stim.aw:
            w_valid, w_payload, b_ready, aw_valid, aw_payload = values[at:at + 5]
            if self.w_ready and w_valid:
                self.times["w"].append(cycle)
                head = self.writes[0]
                addr, length, beat = head
                word, strb = _field(w_payload, *stim.write_fields[4:6]), _field(w_payload, *stim.write_fields[6:8])
                start = addr + beat * stim.beat_bytes
                for n in range(stim.beat_bytes):
                    if strb >> n & 1:
                        self.contents[start + n] = word >> 8 * n & 0xFF
                if _field(w_payload, stim.write_fields[8], 1) != (beat == length):
                    self.fault, self.fault_cycle = Fault.W, cycle
                    return False
                head[2] += 1
                if head[2] > length:
                    self.writes.popleft()
                    self.responses.append(cycle + stim.write_latency)
            if self.b_valid and b_ready:
                self.times["b"].append(cycle)
                self.b_valid = False
                self.responses.popleft()
            if self.aw_ready and aw_valid:
                burst = self._accept("aw", cycle, aw_payload, stim.write_fields)
                if burst is None:
                    return False
                self.writes.append([*burst, 0])
        return True

    def idle(self, ctx) -> None:
        """Drop the memory's valid and ready signals (the run is over)."""
        for name in (self.stim.r, self.stim.b):
            if name:
                ctx.set(self.ports[name].valid, 0)
        for name in (self.stim.ar, self.stim.aw, self.stim.w):
            if name:
                ctx.set(self.ports[name].ready, 0)

    def raw(self) -> dict[str, Any]:
        """The run's traffic as the backends return it (:attr:`RawRun.memories`)."""
        ar, aw = (np.asarray(self.bursts[c], dtype=np.uint64).reshape(-1, 2) for c in ("ar", "aw"))
        times = {f"{c}_times": np.asarray(t, dtype=np.int64) for c, t in self.times.items()}
        return times | {"addresses": ar[:, 0].copy(), "lengths": ar[:, 1].copy(),
                        "write_addresses": aw[:, 0].copy(), "write_lengths": aw[:, 1].copy(),
                        "contents": np.frombuffer(bytes(self.contents), dtype=np.uint8),
                        "fault": (Fault(self.fault), self.fault_cycle)}


@dataclass
class Stimulus:
    """Everything a backend needs for one run, in arrays (see the module's rules).

    Attributes
    ----------
    sources : dict[str, np.ndarray]
        Packed beats ``(beats, words)`` of every input stream the run drives (other input streams stay idle).
    gaps : dict[str, np.ndarray]
        Idle cycles before each beat of each source.
    waits : dict[str, list[tuple[int, str, int]]]
        ``s: [(i, u, n), ...]``, sorted by ``i``: beat ``i`` of source ``s`` waits until stream ``u`` has
        transferred ``n`` beats.
    sinks : dict[str, int]
        Beats expected on each output stream the run collects (others are never ready).
    ready_masks : dict[str, np.ndarray | None]
        ``ready`` of each sink per cycle (uint8, at least ``max_cycles`` long), or None for always.
    statics : dict[str, int]
        Value of every plain input port before the first cycle (as the unsigned integer of its bits).
    changes : dict[str, list[tuple[int, str, int]]]
        ``s: [(i, port, bits), ...]``, sorted by ``i``: the plain inputs that change when beat ``i`` of source
        ``s`` is due (the beat follows a cycle later).
    memories : dict[str, MemoryStimulus]
    tail, max_cycles : int
    """

    sources: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]
    waits: dict[str, list[tuple[int, str, int]]]
    sinks: dict[str, int]
    ready_masks: dict[str, np.ndarray | None]
    statics: dict[str, int]
    changes: dict[str, list[tuple[int, str, int]]]
    memories: dict[str, MemoryStimulus]
    tail: int
    max_cycles: int


@dataclass
class MemoryTraffic:
    """What an :class:`AxiMemory` served in a run, bursts in the order of their address transfers.

    Attributes
    ----------
    ar_times : (bursts,) int64
        Transfer cycle of every read burst's address.
    addresses, lengths : (bursts,) uint64
        Byte address and ``len`` (beats - 1) of every read burst.
    r_times : (beats,) int64
        Transfer cycle of every R beat (beats of bursts still in flight at the end are not there).
    aw_times, write_addresses, write_lengths : (write bursts,)
        The same for every write burst's address.
    w_times : (beats,) int64
        Transfer cycle of every W beat.
    b_times : (write bursts,) int64
        Transfer cycle of every B response (responses still due at the end are not there).
    contents : uint8 array
        The memory's contents at the end of the run, every W beat applied.
    beat_bytes : int
    """

    ar_times: np.ndarray
    addresses: np.ndarray
    lengths: np.ndarray
    r_times: np.ndarray
    aw_times: np.ndarray
    write_addresses: np.ndarray
    write_lengths: np.ndarray
    w_times: np.ndarray
    b_times: np.ndarray
    contents: np.ndarray
    beat_bytes: int

    @property
    def bytes_read(self) -> int:
        """Bytes transferred on ``r``."""
        return len(self.r_times) * self.beat_bytes

    @property
    def bytes_written(self) -> int:
        """Bytes transferred on ``w`` (whole beats, whatever their strobes)."""
        return len(self.w_times) * self.beat_bytes


@dataclass
class StreamRun:
    """Outcome of :func:`run_streams`.

    Attributes
    ----------
    outputs : dict[str, list]
        The beats each sink received, as Python values (:func:`unpack`).
    times : dict[str, np.ndarray]
        Transfer cycle of every beat, for sources and sinks alike.
    flags : dict[str, int]
        Every plain output port after the run (and its tail), as an unsigned integer.
    memories : dict[str, MemoryTraffic]
        The reads and writes each memory served and its final contents, by the memory's name.
    cycles : int
        Cycles up to and including the last transfer.
    backend : str
    compile_seconds : float
        Wall time spent before simulating: Verilog export and Verilator build (a cache hit costs only the
        export); 0 for Amaranth.
    run_seconds : float
        Wall time of the simulation itself (for Verilator: the compiled model's process, file I/O included).
    """

    outputs: dict[str, list]
    times: dict[str, np.ndarray]
    flags: dict[str, int]
    memories: dict[str, MemoryTraffic]
    cycles: int
    backend: str
    compile_seconds: float
    run_seconds: float

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.run_seconds if self.run_seconds > 0 else float("inf")

    def figures(self) -> dict:
        """The backend's JSON figures: ``backend``, ``compile_seconds``, ``cycles_per_second``."""
        return {"backend": self.backend, "compile_seconds": self.compile_seconds,
                "cycles_per_second": self.cycles_per_second}

    def differences(self, other: StreamRun) -> list[str]:
        """What ``other`` (the same run on another backend, say) does not have alike: output beats, flags, the
        cycle count, any stream's transfer cycles, any memory's traffic or final contents. Empty: the same run."""
        out = [what for what in ("outputs", "flags", "cycles") if getattr(self, what) != getattr(other, what)]
        if self.times.keys() != other.times.keys() or self.memories.keys() != other.memories.keys():
            return out + ["streams or memories"]
        out += [f"transfer cycles of {name}" for name in self.times
                if not np.array_equal(self.times[name], other.times[name])]
        for name, traffic in self.memories.items():
            out += [f"{name}.{key}" for key, value in vars(traffic).items()
                    if not np.array_equal(value, getattr(other.memories[name], key))]
        return out


@dataclass
class RawRun:
    """What a backend returns: transfer cycles and packed sink beats, before unpacking.

    ``memories`` holds, by name, a dict of every :class:`MemoryTraffic` field but ``beat_bytes`` and
    ``fault``: ``(Fault, cycle)``, what stopped the run at that memory (``Fault.NONE`` if nothing did).
    """

    times: dict[str, np.ndarray]
    words: dict[str, np.ndarray]
    flags: dict[str, int]
    memories: dict[str, dict[str, Any]]
    cycles: int
    done: bool
    compile_seconds: float
    run_seconds: float


def _check_ports(component, inputs, outputs, statics, memories) -> tuple[list[StreamPort], list[PlainPort]]:
    streams, plain = component_ports(component)
    by_flow = {flow: {p.name for p in streams if p.flow == flow} for flow in (Flow.In, Flow.Out)}
    checks = [("inputs", inputs, by_flow[Flow.In], "input streams"), ("outputs", outputs, by_flow[Flow.Out],
              "output streams"), ("statics", statics, {p.name for p in plain if p.flow == Flow.In}, "plain inputs")]
    checks += [(f"memory {name!r}", [s for s in (m.r, m.b) if s is not None], by_flow[Flow.In], "input streams")
               for name, m in memories.items()]
    checks += [(f"memory {name!r}", [s for s in (m.ar, m.aw, m.w) if s is not None], by_flow[Flow.Out],
                "output streams") for name, m in memories.items()]
    for what, given, known, kind in checks:
        unknown = set(given) - known
        if unknown:
            raise ValueError(f"{what}: {sorted(unknown)} are not {kind} of {type(component).__name__} "
                             f"(it has {sorted(known)})")
    served = [s for m in memories.values() for s in m.streams]
    if len(set(served)) < len(served) or set(served) & (set(inputs) | set(outputs)):
        raise ValueError(f"every memory needs its own streams, driven by nothing else (memories use {served})")
    return streams, plain


def _waits(waits: Mapping[str, Any], sources: Mapping[str, int],
           sinks: Mapping[str, int]) -> dict[str, list[tuple[int, str, int]]]:
    """``waits`` checked, as :attr:`Stimulus.waits`: a lone ``(i, u)`` waits for every beat of ``u``."""
    counts = dict(sources) | dict(sinks)
    out = {}
    for name, entries in waits.items():
        entries = [entries] if len(entries) == 2 and isinstance(entries[1], str) else list(entries)
        checked = []
        for beat, other, *count in entries:
            count = count[0] if count else counts.get(other, 0)
            if name not in sources or other not in counts:
                raise ValueError(f"waits: {name!r} must be a driven input stream and {other!r} a driven input or a "
                                 f"collected output")
            if not 0 <= beat < counts[name] or not 0 <= count <= counts[other]:
                raise ValueError(f"waits of {name!r}: beat {beat} waiting for {count} beats of {other!r} is out of "
                                 f"range")
            checked.append((beat, other, count))
        out[name] = sorted(checked, key=lambda entry: entry[0])
    return out


def _changes(changes: Mapping[str, Sequence[tuple[str, int, int]]], widths: Mapping[str, int],
             counts: Mapping[str, int]) -> dict[str, list[tuple[int, str, int]]]:
    """``changes`` by port, checked, as :attr:`Stimulus.changes` (by source, sorted by beat, stable)."""
    by_source: dict[str, list[tuple[int, str, int]]] = {s: [] for s in counts}
    for port, entries in changes.items():
        if port not in widths:
            raise ValueError(f"changes: {port!r} is not a plain input (they are {sorted(widths)})")
        for stream_name, beat, value in entries:
            if not 0 <= beat < counts.get(stream_name, 0):
                raise ValueError(f"changes of {port!r}: beat {beat} of {stream_name!r} is not a beat the run "
                                 f"drives")
            by_source[stream_name].append((beat, port, int(value) & ((1 << widths[port]) - 1)))
    return {s: sorted(entries, key=lambda entry: entry[0]) for s, entries in by_source.items() if entries}


def run_streams(component: wiring.Component, inputs: Mapping[str, Any], outputs: Mapping[str, int],
                statics: Mapping[str, int] | None = None, *, seed: int = 0, p_valid: float = 1.0,
                p_ready: float = 1.0, waits: Mapping[str, Any] | None = None,
                changes: Mapping[str, Sequence[tuple[str, int, int]]] | None = None,
                memories: Mapping[str, AxiMemory] | None = None, tail: int = 0,
                progress: Callable[[int], object] | None = None,
                max_cycles: int = 1_000_000, backend: str = "amaranth", name: str = "run",
                vivado_verilog: bool = False) -> StreamRun:
    """Drive ``component``'s streams from batched stimulus on ``backend``; collect every output transaction.

    Parameters
    ----------
    component : wiring.Component
        Any component whose members are ``lib.stream`` interfaces and plain ports, clocked by ``sync``.
    inputs : mapping of stream name to payloads
        Every beat of each input stream to drive: a sequence of Python payloads or columns (see :func:`pack`).
    outputs : mapping of stream name to beat count
        The output streams to collect and how many beats each must deliver.
    statics : mapping of port name to int, optional
        Plain inputs from the first cycle on (sizes such as ``m`` / ``n`` / ``k``); the others keep their
        ``init`` (0 unless the port gives one).
    seed, p_valid, p_ready : stalls
        With ``p_valid`` / ``p_ready`` below 1, sources pause before beats and sinks drop ``ready`` at random,
        from generators seeded by ``seed`` and the stream's name (:func:`stall_patterns`).
    waits : mapping, optional
        ``{s: [(i, u, n), ...]}``: beat ``i`` of the input stream ``s`` waits until the stream ``u`` (a driven
        input or a collected output) has transferred ``n`` beats; ``{s: (i, u)}`` waits for every beat of ``u``.
    changes : mapping of port name to ``[(stream, beat, value), ...]``, optional
        Plain inputs that change during the run: when beat ``beat`` of the input stream ``stream`` is due, the
        port takes ``value`` and the beat is offered one cycle later (a layer's ``t`` changes with its first
        beats; with ``waits`` on the previous layer's outputs it changes only once that layer is done).
    memories : mapping of name to :class:`AxiMemory`, optional
        Memories that serve the component's AXI4 read and write streams (those streams are not in ``inputs`` /
        ``outputs`` and do not decide when the run ends); the traffic they served and their final contents
        are in :attr:`StreamRun.memories` under the same names.
    progress : callable, optional
        Called now and then with the output beats received so far (every
        :data:`~wavefabric.sim.verilator.PROGRESS_CYCLES` cycles on Verilator, every :data:`AMARANTH_PROGRESS_CYCLES`
        on Amaranth), e.g. to move a progress bar.
    tail : int
        Idle cycles after the last transfer before the plain outputs are read.
    max_cycles : int
        A run that has not finished after this many cycles raises ``TimeoutError``.
    backend : {"amaranth", "verilator"}
    name : str
        Names the VCD trace of an Amaranth run (:func:`run_simulation`).
    vivado_verilog : bool
        Verilator only: simulate the Verilog exactly as exported for Vivado (with its ``rst`` input) instead of
        the faster reset-less build (:func:`~wavefabric.sim.verilator.run_verilator`).

    Returns
    -------
    StreamRun
        Every output beat, every transfer cycle, the plain outputs, the memories' reads, the cycle count and
        the backend's timings; both backends return the same run for the same arguments.

    Raises
    ------
    ValueError
        For a backend, port, wait, change or memory that does not exist or does not fit, and for a burst or
        W beat that breaks the memory rules (the run stops there). ``TimeoutError``: not finished after ``max_cycles``.

    Examples
    --------
    An engine that reads its weights from DDR over ``ar`` / ``r`` and takes its commands on ``cmd``::

        run = run_streams(engine, {"cmd": commands}, {"out": 64}, seed=3, p_valid=0.7, p_ready=0.7,
                          memories={"ddr": AxiMemory(image, latency=40, p_ar_ready=0.8, p_r_valid=0.9)})
        run.memories["ddr"].bytes_read

    An engine that also writes its results back (``aw`` / ``w`` / ``b``), into the same memory::

        memory = AxiMemory(image, aw="aw", w="w", b="b", write_latency=20, p_w_ready=0.8)
        run = run_streams(engine, {"cmd": commands}, {"done": 1}, memories={"ddr": memory})
        run.memories["ddr"].contents
    """
    statics, memories = dict(statics or {}), dict(memories or {})
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    streams, plain = _check_ports(component, inputs, outputs, statics, memories)
    shapes = {p.name: p.shape for p in streams}
    packed = {s: pack(shapes[s], beats) for s, beats in inputs.items()}
    gaps, masks = stall_patterns(seed, {s: len(w) for s, w in packed.items()}, list(outputs), p_valid, p_ready,
                                 max_cycles)
    widths = {p.name: p.width for p in plain if p.flow == Flow.In}
    inits = {p.name: p.init for p in plain if p.flow == Flow.In}
    static_bits = {port: int(statics.get(port, inits[port])) & ((1 << width) - 1) for port, width in widths.items()}
    served = {m: _memory_stimulus(m, memory, shapes, seed, max_cycles) for m, memory in memories.items()}
    counts = {s: len(w) for s, w in packed.items()}
    stimulus = Stimulus(packed, gaps, _waits(waits or {}, counts, outputs), dict(outputs), masks, static_bits,
                        _changes(changes or {}, widths, counts), served, tail, max_cycles)
    if backend == "amaranth":
        raw = _run_amaranth(component, streams, plain, stimulus, name, progress)
    else:
        from .verilator import run_verilator

        raw = run_verilator(component, streams, plain, stimulus, vivado_verilog, progress)
    traffic = {m: MemoryTraffic(**{k: v for k, v in raw.memories[m].items() if k != "fault"},
                                beat_bytes=served[m].beat_bytes) for m in memories}
    for m, (fault, cycle) in ((m, raw.memories[m]["fault"]) for m in memories):
        if fault != Fault.NONE:
            why = _fault_message(traffic[m], fault, cycle, len(served[m].contents))
            raise ValueError(f"memory {m!r} ({backend}): {why}")
    if not raw.done:
        counts = {s: f"{len(raw.times[s])}/{len(w)}" for s, w in packed.items()}
        counts |= {s: f"{len(raw.times[s])}/{n}" for s, n in outputs.items()}
        raise TimeoutError(f"run_streams ({backend}): not finished after {max_cycles} cycles; beats transferred "
                           f"{counts}")
    return StreamRun(
        outputs={s: unpack(shapes[s], raw.words[s]) for s in outputs},
        times=raw.times, flags=raw.flags, memories=traffic, cycles=raw.cycles, backend=backend,
        compile_seconds=raw.compile_seconds, run_seconds=raw.run_seconds,
    )


def _fault_message(traffic: MemoryTraffic, fault: Fault, cycle: int, size: int) -> str:
    """Why the run stopped at a memory: the faulty burst (always the last accepted on its channel) or W beat."""
    times, addresses, lengths = ((traffic.ar_times, traffic.addresses, traffic.lengths) if fault == Fault.AR else
                                 (traffic.aw_times, traffic.write_addresses, traffic.write_lengths))
    if fault != Fault.W:
        addr, length = int(addresses[-1]), int(lengths[-1])
        what = "burst" if fault == Fault.AR else "write burst"
        return (f"the {what} accepted in cycle {cycle} (addr {addr:#x}, len {length}) "
                f"{burst_fault(addr, length, traffic.beat_bytes, size)}")
    ends = np.cumsum(lengths.astype(np.int64) + 1)
    index = int(np.searchsorted(ends, len(traffic.w_times), side="left"))  # the burst of the faulty beat
    beat = len(traffic.w_times) - 1 - (int(ends[index - 1]) if index else 0)
    length = int(lengths[index])
    return (f"W beat {beat} (cycle {cycle}) of the write burst accepted in cycle {int(times[index])} (addr "
            f"{int(addresses[index]):#x}, len {length}) has last = {int(beat != length)}: the burst has "
            f"{length + 1} beats")


def _run_amaranth(component: wiring.Component, streams: list[StreamPort], plain: list[PlainPort],
                  stim: Stimulus, name: str, progress: Callable[[int], object] | None = None) -> RawRun:
    """The rules of the module, cycle by cycle in one testbench: the reference the Verilator harness mirrors."""
    sources = [p for p in streams if p.name in stim.sources]
    sinks = [p for p in streams if p.name in stim.sinks]
    src = [getattr(component, p.name) for p in sources]
    snk = [getattr(component, p.name) for p in sinks]
    servers = {m: _MemoryServer(mem, component) for m, mem in stim.memories.items()}
    beats = [[_to_int(w) for w in stim.sources[p.name]] for p in sources]
    counts = [len(b) for b in beats]
    gaps = [stim.gaps[p.name].tolist() for p in sources]
    index = {p.name: i for i, p in enumerate(sources + sinks)}  # what waits refer to
    waits = [deque((beat, index[other], n) for beat, other, n in stim.waits.get(p.name, [])) for p in sources]
    changes = [deque(stim.changes.get(p.name, [])) for p in sources]
    masks = [stim.ready_masks[p.name] for p in sinks]
    expected = [stim.sinks[p.name] for p in sinks]
    times: dict[str, list[int]] = {p.name: [] for p in sources + sinks}
    got: list[list[int]] = [[] for _ in sinks]
    result = {"done": False, "cycles": 0, "flags": {}}

    def port(port_name: str) -> Value:
        return Value.cast(getattr(component, port_name))

    async def bench(ctx):
        for p in plain:
            if p.flow == Flow.In:
                ctx.set(port(p.name), stim.statics[p.name])
        sent = [0] * len(sources)

        def waiting(i: int) -> bool:
            """Whether beat ``sent[i]`` of source ``i`` has a wait not met yet (met waits are dropped)."""
            pending = waits[i]
            while pending and pending[0][0] == sent[i]:
                other, n = pending[0][1:]
                if (sent[other] if other < len(sources) else len(got[other - len(sources)])) < n:
                    return True
                pending.popleft()
            return False

        gap_left = [g[0] if g else 0 for g in gaps]
        valid = [False] * len(sources)
        samples = [s.ready for s in src] + [x for k in snk for x in (k.valid, Value.cast(k.payload).as_unsigned())]
        sampled = [len(server.samples()) for server in servers.values()]
        samples += [x for server in servers.values() for x in server.samples()]
        cycle, healthy = 0, True
        while not (done := sent == counts and [len(g) for g in got] == expected) and healthy \
                and cycle < stim.max_cycles:
            for i, s in enumerate(src):
                if not valid[i] and sent[i] < counts[i]:
                    if gap_left[i] > 0:
                        gap_left[i] -= 1
                    elif waiting(i):
                        pass
                    elif changes[i] and changes[i][0][0] == sent[i]:
                        while changes[i] and changes[i][0][0] == sent[i]:
                            _, changed, bits = changes[i].popleft()
                            ctx.set(port(changed), bits)
                    else:
                        valid[i] = True
                        ctx.set(Value.cast(s.payload), beats[i][sent[i]])
                ctx.set(s.valid, valid[i])
            ready = [len(got[j]) < expected[j] and (masks[j] is None or bool(masks[j][cycle]))
                     for j in range(len(sinks))]
            for k, r in zip(snk, ready, strict=True):
                ctx.set(k.ready, r)
            for server in servers.values():
                server.drive(ctx, cycle)
            values = (await ctx.tick().sample(*samples))[2:]
            for i, p in enumerate(sources):
                if valid[i] and values[i]:
                    times[p.name].append(cycle)
                    sent[i] += 1
                    valid[i] = False
                    gap_left[i] = gaps[i][sent[i]] if sent[i] < counts[i] else 0
            at = len(sources)
            for j, p in enumerate(sinks):
                k_valid, payload = values[at + 2 * j: at + 2 * j + 2]
                if ready[j] and k_valid:
                    times[p.name].append(cycle)
                    got[j].append(payload)
            at += 2 * len(sinks)
            for server, taken in zip(servers.values(), sampled, strict=True):
                healthy &= server.update(cycle, values[at:at + taken])
                at += taken
            cycle += 1
            if progress is not None and cycle % AMARANTH_PROGRESS_CYCLES == 0:
                progress(sum(map(len, got)))
        result["done"], result["cycles"] = done, cycle
        for s in src:
            ctx.set(s.valid, 0)
        for k in snk:
            ctx.set(k.ready, 0)
        for server in servers.values():
            server.idle(ctx)
        for _ in range(stim.tail if done else 0):
            await ctx.tick()
        result["flags"] = {p.name: ctx.get(port(p.name).as_unsigned()) for p in plain if p.flow == Flow.Out}

    start = time.perf_counter()
    run_simulation(component, [bench], name=name)
    seconds = time.perf_counter() - start
    words = {p.name: _from_ints(got[j], p.words) for j, p in enumerate(sinks)}
    return RawRun({s: np.asarray(t, dtype=np.int64) for s, t in times.items()}, words, result["flags"],
                  {m: server.raw() for m, server in servers.items()}, result["cycles"], result["done"], 0.0, seconds)
