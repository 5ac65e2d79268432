"""Testbench helpers for ``amaranth.lib.stream`` interfaces, shared by every engine's tests.

* :func:`stream_put` drives a stream from a list of payloads, optionally with seeded random gaps before beats
  (``valid`` low), and returns the cycle of every transfer.
* :func:`stream_get` collects a number of beats, optionally with seeded random ``ready`` stalls, and returns
  the payloads (as plain Python values, see :func:`to_python`) and their transfer cycles.
* :func:`run_simulation` runs testbenches on a component; with the environment variable
  ``WAVEFABRIC_VCD=DIR`` set it writes ``DIR/<name>.vcd`` (:func:`vcd_hint` says so in failure messages).

Cycles are counted from 0 at the start of the simulation: a transfer in cycle ``t`` is sampled at the
``t + 1``-th rising clock edge. All helpers must therefore be started at time 0 (as testbenches are).
Sources keep ``valid`` high until the transfer once they raise it (as AXI4-Stream requires).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from amaranth.sim import SimulatorContext

from .streams import CLOCK_PERIOD, VCD_ENV, run_simulation, to_python, vcd_hint

__all__ = ["CLOCK_PERIOD", "VCD_ENV", "vcd_hint", "to_python", "stream_put", "stream_get", "run_simulation"]


async def stream_put(ctx: SimulatorContext, stream, payloads: Iterable[Any], *, rng: random.Random | None = None,
                     p_valid: float = 1.0, timeout: int = 1_000_000) -> list[int]:
    """Send ``payloads`` in order on ``stream`` (the component's ``In`` stream); return the transfer cycles.

    Before each beat, ``valid`` stays low for as many cycles as draws of ``rng.random() >= p_valid`` (none
    without ``rng``). Raises ``TimeoutError`` if the stream has not taken every beat after ``timeout`` cycles.
    """
    cycle = 0
    times = []
    for payload in payloads:
        while rng is not None and rng.random() >= p_valid:
            await ctx.tick()
            cycle += 1
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(stream.ready)
            cycle += 1
            if ready:
                break
            if cycle >= timeout:
                raise TimeoutError(f"stream_put: beat {len(times)} not taken after {timeout} cycles")
        times.append(cycle - 1)
        ctx.set(stream.valid, 0)
    return times


async def stream_get(ctx: SimulatorContext, stream, count: int, *, rng: random.Random | None = None,
                     p_ready: float = 1.0, timeout: int = 1_000_000) -> tuple[list[Any], list[int]]:
    """Receive ``count`` beats from ``stream`` (the component's ``Out`` stream).

    In every cycle ``ready`` is high with probability ``p_ready`` (always without ``rng``). Returns the payloads
    as plain Python values and their transfer cycles. Raises ``TimeoutError`` after ``timeout`` cycles.
    """
    cycle = 0
    beats, times = [], []
    while len(beats) < count:
        if cycle >= timeout:
            raise TimeoutError(f"stream_get: {len(beats)} of {count} beats after {timeout} cycles")
        ready = rng is None or rng.random() < p_ready
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            beats.append(to_python(payload))
            times.append(cycle)
        cycle += 1
    ctx.set(stream.ready, 0)
    return beats, times
