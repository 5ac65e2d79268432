"""Run a component's streams from batched stimulus on either simulation backend, cycle for cycle alike.

:func:`run_streams` is the one entry point the engines' simulation modules use. It takes every input stream's
beats at once, expands the seeded stalls into arrays up front (:func:`stall_patterns`), packs the payloads into
the flat bit vectors the ports carry (:func:`pack`), and hands the lot to a backend:

* ``"amaranth"``: Amaranth's simulator, one testbench that follows the rules below cycle by cycle;
* ``"verilator"``: the exported Verilog compiled by Verilator (:mod:`wavefabric.sim.verilator`), whose C++ loop
  follows the same rules with no Python on the hot path.

Both see the same stimulus, so they must agree on every output beat and every transfer cycle.

**The rules.** Cycles count from 0; a transfer in cycle ``t`` is sampled at the ``t + 1``-th rising edge, as in
:mod:`wavefabric.sim.stream`. Before the first cycle every static input is set (other plain inputs are 0).

* A source (the component's ``In`` stream) keeps ``valid`` low for ``gaps[i]`` cycles before beat ``i``, counted
  from the cycle after the previous transfer (from cycle 0 for the first beat), then raises ``valid`` with the
  beat and holds both until the transfer (as AXI4-Stream requires). ``waits[s] = (i, u)`` also holds beat ``i``
  of ``s`` back until every beat of ``u`` has been transferred in an earlier cycle.
* A sink (the component's ``Out`` stream) raises ``ready`` in cycle ``t`` if it still expects beats and
  ``ready_mask[t]`` (always without a mask), as :func:`~wavefabric.sim.stream.stream_get` does.
* The run ends when every source has sent and every sink received all its beats; ``tail`` more cycles follow
  with every ``valid`` and ``ready`` low, and then the plain outputs (flags such as ``error``) are read.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from amaranth.hdl import Shape, ShapeCastable, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Flow

from .stream import run_simulation

__all__ = ["BACKENDS", "StreamPort", "PlainPort", "component_ports", "pack", "unpack", "stall_patterns",
           "Stimulus", "StreamRun", "run_streams"]

#: Names of the simulation backends :func:`run_streams` knows.
BACKENDS = ("amaranth", "verilator")


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
            plain.append(PlainPort(name, member.flow, member.shape, Shape.cast(member.shape).width))
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
    """The inverse of :func:`pack`: Python values as :func:`~wavefabric.sim.stream.to_python` gives them.

    Structs become dicts, arrays lists, scalars ints (enum fields too: their value).
    """
    words = np.asarray(words, dtype=np.uint32).reshape(len(words), -1)
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


def stall_patterns(seed: int, sources: Mapping[str, int], sinks: Sequence[str], p_valid: float, p_ready: float,
                   max_cycles: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Seeded stalls for every stream: ``(gaps, ready_masks)``.

    ``gaps[s]`` holds, for each of the ``sources[s]`` beats, the cycles ``valid`` stays low before it: geometric,
    each cycle offering with probability ``p_valid`` (zeros when ``p_valid == 1``). ``ready_masks[s]`` holds
    ``ready`` for each of ``max_cycles`` cycles, high with probability ``p_ready`` (None when ``p_ready == 1``).
    """
    gaps = {name: (_rng(seed, name).geometric(p_valid, count) - 1 if p_valid < 1 else np.zeros(count, np.int64))
            .astype(np.uint32) for name, count in sources.items()}
    masks = {name: (_rng(seed, name).random(max_cycles) < p_ready).astype(np.uint8) if p_ready < 1 else None
             for name in sinks}
    return gaps, masks


@dataclass
class Stimulus:
    """Everything a backend needs for one run, in arrays (see the module's rules).

    Attributes
    ----------
    sources : dict[str, np.ndarray]
        Packed beats ``(beats, words)`` of every input stream the run drives (other input streams stay idle).
    gaps : dict[str, np.ndarray]
        Idle cycles before each beat of each source.
    waits : dict[str, tuple[int, str]]
        ``s: (i, u)``: beat ``i`` of source ``s`` waits until source ``u`` has sent every beat.
    sinks : dict[str, int]
        Beats expected on each output stream the run collects (others are never ready).
    ready_masks : dict[str, np.ndarray | None]
        ``ready`` of each sink per cycle (uint8, at least ``max_cycles`` long), or None for always.
    statics : dict[str, int]
        Value of every plain input port (as the unsigned integer of its bits).
    tail, max_cycles : int
    """

    sources: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]
    waits: dict[str, tuple[int, str]]
    sinks: dict[str, int]
    ready_masks: dict[str, np.ndarray | None]
    statics: dict[str, int]
    tail: int
    max_cycles: int


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


@dataclass
class RawRun:
    """What a backend returns: transfer cycles and packed sink beats, before unpacking."""

    times: dict[str, np.ndarray]
    words: dict[str, np.ndarray]
    flags: dict[str, int]
    cycles: int
    done: bool
    compile_seconds: float
    run_seconds: float


def _check_ports(component, inputs, outputs, statics, waits) -> tuple[list[StreamPort], list[PlainPort]]:
    streams, plain = component_ports(component)
    by_flow = {flow: {p.name for p in streams if p.flow == flow} for flow in (Flow.In, Flow.Out)}
    checks = [("inputs", inputs, by_flow[Flow.In], "input streams"), ("outputs", outputs, by_flow[Flow.Out],
              "output streams"), ("statics", statics, {p.name for p in plain if p.flow == Flow.In}, "plain inputs")]
    for what, given, known, kind in checks:
        unknown = set(given) - known
        if unknown:
            raise ValueError(f"{what}: {sorted(unknown)} are not {kind} of {type(component).__name__} "
                             f"(it has {sorted(known)})")
    for name, (_, other) in waits.items():
        if name not in inputs or other not in inputs:
            raise ValueError(f"waits: {name!r} and {other!r} must both be driven input streams")
    return streams, plain


def run_streams(component: wiring.Component, inputs: Mapping[str, Any], outputs: Mapping[str, int],
                statics: Mapping[str, int] | None = None, *, seed: int = 0, p_valid: float = 1.0,
                p_ready: float = 1.0, waits: Mapping[str, tuple[int, str]] | None = None, tail: int = 0,
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
        Plain inputs held for the whole run (sizes such as ``m`` / ``n`` / ``k``); the others are 0.
    seed, p_valid, p_ready : stalls
        With ``p_valid`` / ``p_ready`` below 1, sources pause before beats and sinks drop ``ready`` at random,
        from generators seeded by ``seed`` and the stream's name (:func:`stall_patterns`).
    waits : mapping, optional
        ``{s: (i, u)}``: beat ``i`` of ``s`` waits until every beat of ``u`` has been sent.
    tail : int
        Idle cycles after the last transfer before the plain outputs are read.
    max_cycles : int
        A run that has not finished after this many cycles raises ``TimeoutError``.
    backend : {"amaranth", "verilator"}
    name : str
        Names the VCD trace of an Amaranth run (:func:`~wavefabric.sim.stream.run_simulation`).
    vivado_verilog : bool
        Verilator only: simulate the Verilog exactly as exported for Vivado (with its ``rst`` input) instead of
        the faster reset-less build (:func:`~wavefabric.sim.verilator.run_verilator`).

    Returns
    -------
    StreamRun
        Every output beat, every transfer cycle, the plain outputs, the cycle count and the backend's timings;
        both backends return the same run for the same arguments.

    Raises
    ------
    ValueError
        For a backend, port or wait that does not exist. ``TimeoutError``: not finished after ``max_cycles``.
    """
    statics, waits = dict(statics or {}), dict(waits or {})
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    streams, plain = _check_ports(component, inputs, outputs, statics, waits)
    shapes = {p.name: p.shape for p in streams}
    packed = {s: pack(shapes[s], beats) for s, beats in inputs.items()}
    gaps, masks = stall_patterns(seed, {s: len(w) for s, w in packed.items()}, list(outputs), p_valid, p_ready,
                                 max_cycles)
    static_bits = {}
    for port in plain:
        if port.flow == Flow.In:
            value = statics.get(port.name, 0)
            static_bits[port.name] = int(value) & ((1 << port.width) - 1)
    stimulus = Stimulus(packed, gaps, waits, dict(outputs), masks, static_bits, tail, max_cycles)
    if backend == "amaranth":
        raw = _run_amaranth(component, streams, plain, stimulus, name)
    else:
        from .verilator import run_verilator

        raw = run_verilator(component, streams, plain, stimulus, vivado_verilog)
    if not raw.done:
        counts = {s: f"{len(raw.times[s])}/{len(w)}" for s, w in packed.items()}
        counts |= {s: f"{len(raw.times[s])}/{n}" for s, n in outputs.items()}
        raise TimeoutError(f"run_streams ({backend}): not finished after {max_cycles} cycles; beats transferred "
                           f"{counts}")
    return StreamRun(
        outputs={s: unpack(shapes[s], raw.words[s]) for s in outputs},
        times=raw.times, flags=raw.flags, cycles=raw.cycles, backend=backend,
        compile_seconds=raw.compile_seconds, run_seconds=raw.run_seconds,
    )


def _run_amaranth(component: wiring.Component, streams: list[StreamPort], plain: list[PlainPort],
                  stim: Stimulus, name: str) -> RawRun:
    """The rules of the module, cycle by cycle in one testbench: the reference the Verilator harness mirrors."""
    sources = [p for p in streams if p.name in stim.sources]
    sinks = [p for p in streams if p.name in stim.sinks]
    src = [getattr(component, p.name) for p in sources]
    snk = [getattr(component, p.name) for p in sinks]
    beats = [[_to_int(w) for w in stim.sources[p.name]] for p in sources]
    counts = [len(b) for b in beats]
    gaps = [stim.gaps[p.name].tolist() for p in sources]
    index = {p.name: i for i, p in enumerate(sources)}
    waits = {index[s]: (beat, index[other]) for s, (beat, other) in stim.waits.items()}
    masks = [stim.ready_masks[p.name] for p in sinks]
    expected = [stim.sinks[p.name] for p in sinks]
    times: dict[str, list[int]] = {p.name: [] for p in sources + sinks}
    got: list[list[int]] = [[] for _ in sinks]
    result = {"done": False, "cycles": 0, "flags": {}}

    def idle(ctx):
        for s in src:
            ctx.set(s.valid, 0)
        for k in snk:
            ctx.set(k.ready, 0)

    async def bench(ctx):
        for port in plain:
            if port.flow == Flow.In:
                ctx.set(Value.cast(getattr(component, port.name)), stim.statics[port.name])
        sent = [0] * len(sources)
        gap_left = [g[0] if g else 0 for g in gaps]
        valid = [False] * len(sources)
        samples = [s.ready for s in src] + [x for k in snk for x in (k.valid, Value.cast(k.payload).as_unsigned())]
        cycle = 0
        while not (done := sent == counts and [len(g) for g in got] == expected) and cycle < stim.max_cycles:
            for i, s in enumerate(src):
                if not valid[i] and sent[i] < counts[i]:
                    beat, other = waits.get(i, (-1, i))
                    if gap_left[i] > 0:
                        gap_left[i] -= 1
                    elif sent[i] != beat or sent[other] == counts[other]:
                        valid[i] = True
                        ctx.set(Value.cast(s.payload), beats[i][sent[i]])
                ctx.set(s.valid, valid[i])
            ready = [len(got[j]) < expected[j] and (masks[j] is None or bool(masks[j][cycle]))
                     for j in range(len(sinks))]
            for k, r in zip(snk, ready, strict=True):
                ctx.set(k.ready, r)
            values = (await ctx.tick().sample(*samples))[2:]
            for i, p in enumerate(sources):
                if valid[i] and values[i]:
                    times[p.name].append(cycle)
                    sent[i] += 1
                    valid[i] = False
                    gap_left[i] = gaps[i][sent[i]] if sent[i] < counts[i] else 0
            for j, p in enumerate(sinks):
                k_valid, payload = values[len(sources) + 2 * j: len(sources) + 2 * j + 2]
                if ready[j] and k_valid:
                    times[p.name].append(cycle)
                    got[j].append(payload)
            cycle += 1
        result["done"], result["cycles"] = done, cycle
        idle(ctx)
        for _ in range(stim.tail if done else 0):
            await ctx.tick()
        result["flags"] = {p.name: ctx.get(Value.cast(getattr(component, p.name)).as_unsigned())
                           for p in plain if p.flow == Flow.Out}

    start = time.perf_counter()
    run_simulation(component, [bench], name=name)
    seconds = time.perf_counter() - start
    words = {p.name: _from_ints(got[j], p.words) for j, p in enumerate(sinks)}
    return RawRun({s: np.asarray(t, dtype=np.int64) for s, t in times.items()}, words, result["flags"],
                  result["cycles"], result["done"], 0.0, seconds)
