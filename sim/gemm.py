"""Simulating :class:`~wavefabric.rtl.gemm.GemmEngine`: operand beats, result reassembly, one-call runs."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..model.fixed import QFormat
from ..model.kernels import Numerics, linear
from ..model.perf import gemm_cycles, gemm_ideal_cycles
from ..rtl.gemm import GemmEngine
from .stream import run_simulation, stream_get, stream_put

__all__ = ["gemm_beats", "gemm_result", "GemmRun", "run_gemm", "simulate_gemm"]


def _frame(beats: list[dict]) -> list[dict]:
    if beats:
        beats[0]["first"] = True
        beats[-1]["last"] = True
    return beats


def _block(values: np.ndarray, lanes: int) -> list[int]:
    return np.pad(values, (0, lanes - len(values))).tolist()


def gemm_beats(a: np.ndarray, b: np.ndarray, bias: np.ndarray, rows: int, cols: int
               ) -> tuple[list[dict], list[dict], list[dict]]:
    """The ``a``, ``b`` and ``bias`` stream payloads of one GEMM, in the order GemmEngine documents.

    Edge lanes beyond M or N are padded with zeros.
    """
    m, k = a.shape
    n = b.shape[1]
    a_beats, b_beats, bias_beats = [], [], []
    for m0 in range(0, m, rows):
        bias_beats.append({"data": _block(bias[m0:m0 + rows], rows), "first": False, "last": False})
        for n0 in range(0, n, cols):
            for kk in range(k):
                a_beats.append({"data": _block(a[m0:m0 + rows, kk], rows), "first": False, "last": False})
                b_beats.append({"data": _block(b[kk, n0:n0 + cols], cols), "first": False, "last": False})
    return _frame(a_beats), _frame(b_beats), _frame(bias_beats)


def gemm_result(beats: list[dict], m: int, n: int, rows: int, cols: int) -> tuple[np.ndarray, bool]:
    """Reassemble result beats into the ``M x N`` matrix; also whether their framing is right.

    The framing is right when ``first`` is set on the first beat only, ``last`` on the last beat only, and
    every lane beyond N is zero. Raises ``ValueError`` if the number of beats is wrong.
    """
    expected = -(-n // cols) * m
    if len(beats) != expected:
        raise ValueError(f"{len(beats)} result beats, expected {expected}")
    out = np.zeros((m, n), dtype=np.int64)
    framing_ok = True
    position = 0
    for m0 in range(0, m, rows):
        for n0 in range(0, n, cols):
            for r in range(min(rows, m - m0)):
                beat = beats[position]
                width = min(cols, n - n0)
                out[m0 + r, n0:n0 + width] = beat["data"][:width]
                framing_ok &= bool(beat["first"]) == (position == 0)
                framing_ok &= bool(beat["last"]) == (position == expected - 1)
                framing_ok &= not any(beat["data"][width:])
                position += 1
    return out, framing_ok


@dataclass
class GemmRun:
    """Outcome of :func:`run_gemm`.

    Attributes
    ----------
    result : (M, N) int64 array, as the engine computed it.
    framing_ok : bool
        Result framing as :func:`gemm_result` checks it, and the engine's ``error`` flag low.
    cycles : int
        Cycles from the start of the simulation to the last result transfer, inclusive.
    """

    result: np.ndarray
    framing_ok: bool
    cycles: int


def run_gemm(engine: GemmEngine, a, b, bias, *, seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
             name: str = "gemm") -> GemmRun:
    """Run one GEMM through ``engine`` in Amaranth's simulator.

    With ``p_valid`` / ``p_ready`` below 1, every operand stream has random gaps and the result stream random
    stalls, from generators seeded by ``seed``. ``name`` names the VCD trace (see
    :func:`~wavefabric.sim.stream.run_simulation`). A run that takes more than ten times the cycle model's
    count (plus 1000) raises ``TimeoutError``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    m, k = a.shape
    n = b.shape[1]
    a_beats, b_beats, bias_beats = gemm_beats(a, b, bias, engine.rows, engine.cols)
    count = -(-n // engine.cols) * m
    timeout = 10 * gemm_cycles(engine.rows, engine.cols, m, n, k) + 1000
    rngs = [random.Random(f"{seed}-{stream}") if p < 1 else None
            for stream, p in (("a", p_valid), ("b", p_valid), ("bias", p_valid), ("c", p_ready))]
    got = {}

    async def config(ctx):
        ctx.set(engine.m, m)
        ctx.set(engine.n, n)
        ctx.set(engine.k, k)

    async def put_a(ctx):
        await stream_put(ctx, engine.a, a_beats, rng=rngs[0], p_valid=p_valid, timeout=timeout)

    async def put_b(ctx):
        await stream_put(ctx, engine.b, b_beats, rng=rngs[1], p_valid=p_valid, timeout=timeout)

    async def put_bias(ctx):
        await stream_put(ctx, engine.bias, bias_beats, rng=rngs[2], p_valid=p_valid, timeout=timeout)

    async def get_c(ctx):
        got["beats"], got["times"] = await stream_get(ctx, engine.c, count, rng=rngs[3], p_ready=p_ready,
                                                          timeout=timeout)
        await ctx.tick()  # let a framing error raised by the last operand beats reach the flag
        got["error"] = ctx.get(engine.error)

    run_simulation(engine, [config, put_a, put_b, put_bias, get_c], name=name)
    result, framing_ok = gemm_result(got["beats"], m, n, engine.rows, engine.cols)
    return GemmRun(result, framing_ok and not got["error"], got["times"][-1] + 1)


def simulate_gemm(rows: int, cols: int, m: int, n: int, k: int, seed: int = 0,
                  weight: QFormat = QFormat(16, 14), act: QFormat = QFormat(16, 12), out: QFormat | None = None,
                  p_valid: float = 1.0, p_ready: float = 1.0) -> dict:
    """Simulate one GEMM of seeded random operands on an R x C engine and check it against the model.

    Operands are uniform over their formats' full ranges (``numpy.random.default_rng(seed)``). Returns a
    JSON-ready dict: ``rows``, ``cols``, ``m``, ``n``, ``k``, ``seed``, ``cycles`` (simulated),
    ``model_cycles`` (:func:`~wavefabric.model.perf.gemm_cycles`), ``ideal_cycles`` (``M*N*K / (R*C)``),
    ``utilization`` (ideal / simulated), ``bit_exact`` (``np.array_equal`` with
    :func:`~wavefabric.model.kernels.linear`, and correct framing). Random stalls (``p_valid``, ``p_ready`` < 1)
    make ``cycles`` exceed ``model_cycles``.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(weight.min_int, weight.max_int, (m, k), endpoint=True)
    b = rng.integers(act.min_int, act.max_int, (k, n), endpoint=True)
    bias = rng.integers(act.min_int, act.max_int, m, endpoint=True)
    engine = GemmEngine(rows, cols, weight, act, out, max_m=m, max_n=n, max_k=k)
    run = run_gemm(engine, a, b, bias, seed=seed, p_valid=p_valid, p_ready=p_ready,
                   name=f"gemm_{rows}x{cols}_{m}x{n}x{k}_seed{seed}")
    expected = linear(a, b, bias, Numerics(act=act, weight=weight), out)
    cycles = gemm_cycles(rows, cols, m, n, k)
    ideal = gemm_ideal_cycles(rows, cols, m, n, k)
    return {
        "rows": rows, "cols": cols, "m": m, "n": n, "k": k, "seed": seed,
        "cycles": run.cycles,
        "model_cycles": cycles,
        "ideal_cycles": ideal,
        "utilization": ideal / run.cycles,
        "bit_exact": bool(np.array_equal(run.result, expected) and run.framing_ok),
    }
