"""Simulating :class:`~wavefabric.rtl.gemm.GemmEngine`: operand beats, result reassembly, one-call runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.fixed import QFormat
from ..model.kernels import Numerics, linear
from ..model.perf import gemm_cycles, gemm_ideal_cycles
from ..rtl.gemm import GemmEngine
from .streams import StreamRun, run_streams

__all__ = ["gemm_columns", "gemm_beats", "gemm_result", "GemmRun", "run_gemm", "simulate_gemm"]


def _framing(count: int) -> tuple[np.ndarray, np.ndarray]:
    first, last = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    if count:
        first[0] = last[-1] = True
    return first, last


def _columns(data: np.ndarray) -> dict:
    first, last = _framing(len(data))
    return {"data": data, "first": first, "last": last}


def gemm_columns(a: np.ndarray, b: np.ndarray, bias: np.ndarray, rows: int, cols: int) -> tuple[dict, dict, dict]:
    """The ``a``, ``b`` and ``bias`` payloads of one GEMM as columns (see :func:`~wavefabric.sim.streams.pack`).

    Each is ``{"data": (beats, lanes) ints, "first": (beats,) bools, "last": (beats,) bools}``, beats in the
    order GemmEngine documents; edge lanes beyond M or N are zeros.
    """
    a, b, bias = (np.asarray(x, dtype=np.int64) for x in (a, b, bias))
    m, k = a.shape
    n = b.shape[1]
    blocks, tiles = -(-m // rows), -(-n // cols)
    a_pad = np.pad(a, ((0, blocks * rows - m), (0, 0))).reshape(blocks, rows, k).transpose(0, 2, 1)
    b_pad = np.pad(b, ((0, 0), (0, tiles * cols - n))).reshape(k, tiles, cols).transpose(1, 0, 2)
    # Tile (block, tile) takes block's weights and tile's activations for every k-step.
    a_data = np.broadcast_to(a_pad[:, None], (blocks, tiles, k, rows)).reshape(-1, rows)
    b_data = np.broadcast_to(b_pad[None], (blocks, tiles, k, cols)).reshape(-1, cols)
    bias_data = np.pad(bias, (0, blocks * rows - m)).reshape(blocks, rows)
    return _columns(a_data), _columns(b_data), _columns(bias_data)


def gemm_beats(a: np.ndarray, b: np.ndarray, bias: np.ndarray, rows: int, cols: int
               ) -> tuple[list[dict], list[dict], list[dict]]:
    """The ``a``, ``b`` and ``bias`` stream payloads of one GEMM, in the order GemmEngine documents.

    Python values (for editing single beats) of :func:`gemm_columns`. Edge lanes beyond M or N are zeros.
    """
    return tuple([{"data": d, "first": f, "last": l} for d, f, l in
                  zip(c["data"].tolist(), c["first"].tolist(), c["last"].tolist(), strict=True)]
                 for c in gemm_columns(a, b, bias, rows, cols))


def gemm_result(beats: list[dict], m: int, n: int, rows: int, cols: int) -> tuple[np.ndarray, bool]:
    """Reassemble result beats into the ``M x N`` matrix; also whether their framing is right.

    The framing is right when ``first`` is set on the first beat only, ``last`` on the last beat only, and
    every lane beyond N is zero. Raises ``ValueError`` if the number of beats is wrong.
    """
    expected = -(-n // cols) * m
    if len(beats) != expected:
        raise ValueError(f"{len(beats)} result beats, expected {expected}")
    data = np.array([beat["data"] for beat in beats], dtype=np.int64).reshape(expected, cols)
    first, last = _framing(expected)
    framing_ok = (np.array_equal([bool(beat["first"]) for beat in beats], first)
                  and np.array_equal([bool(beat["last"]) for beat in beats], last))
    out = np.zeros((m, n), dtype=np.int64)
    position = 0
    for m0 in range(0, m, rows):
        height = min(rows, m - m0)
        for n0 in range(0, n, cols):
            width = min(cols, n - n0)
            out[m0:m0 + height, n0:n0 + width] = data[position:position + height, :width]
            framing_ok &= not data[position:position + height, width:].any()
            position += height
    return out, bool(framing_ok)


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
    streams : StreamRun
        The run itself: every transfer with its cycle, the backend and its timings.
    """

    result: np.ndarray
    framing_ok: bool
    cycles: int
    streams: StreamRun


def run_gemm(engine: GemmEngine, a, b, bias, *, seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
             name: str = "gemm", backend: str = "amaranth") -> GemmRun:
    """Run one GEMM through ``engine`` on ``backend`` (:func:`~wavefabric.sim.streams.run_streams`).

    With ``p_valid`` / ``p_ready`` below 1, every operand stream has random gaps and the result stream random
    stalls, from generators seeded by ``seed``. ``name`` names the VCD trace of an Amaranth run (see
    :func:`~wavefabric.sim.streams.run_simulation`). A run that takes more than ten times the cycle model's
    count (plus 1000) raises ``TimeoutError``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    m, k = a.shape
    n = b.shape[1]
    a_cols, b_cols, bias_cols = gemm_columns(a, b, bias, engine.rows, engine.cols)
    # One extra cycle after the last result lets an error raised by the last operand beats reach the flag.
    run = run_streams(engine, {"a": a_cols, "b": b_cols, "bias": bias_cols}, {"c": -(-n // engine.cols) * m},
                      {"m": m, "n": n, "k": k}, seed=seed, p_valid=p_valid, p_ready=p_ready, tail=1,
                      max_cycles=10 * gemm_cycles(engine.rows, engine.cols, m, n, k) + 1000, backend=backend,
                      name=name)
    result, framing_ok = gemm_result(run.outputs["c"], m, n, engine.rows, engine.cols)
    return GemmRun(result, framing_ok and not run.flags["error"], run.cycles, run)


def simulate_gemm(rows: int, cols: int, m: int, n: int, k: int, seed: int = 0,
                  weight: QFormat = QFormat(16, 14), act: QFormat = QFormat(16, 12), out: QFormat | None = None,
                  p_valid: float = 1.0, p_ready: float = 1.0, backend: str = "amaranth") -> dict:
    """Simulate one GEMM of seeded random operands on an R x C engine and check it against the model.

    Operands are uniform over their formats' full ranges (``numpy.random.default_rng(seed)``). Returns a
    JSON-ready dict: ``rows``, ``cols``, ``m``, ``n``, ``k``, ``seed``, ``cycles`` (simulated),
    ``model_cycles`` (:func:`~wavefabric.model.perf.gemm_cycles`), ``ideal_cycles`` (``M*N*K / (R*C)``),
    ``utilization`` (ideal / simulated), ``bit_exact`` (``np.array_equal`` with
    :func:`~wavefabric.model.kernels.linear`, and correct framing). Random stalls (``p_valid``, ``p_ready`` < 1)
    make ``cycles`` exceed ``model_cycles``. ``backend`` picks the simulator; its name, the seconds spent
    compiling and the simulated cycles per second are in ``backend``, ``compile_seconds`` and
    ``cycles_per_second``.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(weight.min_int, weight.max_int, (m, k), endpoint=True)
    b = rng.integers(act.min_int, act.max_int, (k, n), endpoint=True)
    bias = rng.integers(act.min_int, act.max_int, m, endpoint=True)
    engine = GemmEngine(rows, cols, weight, act, out, max_m=m, max_n=n, max_k=k)
    run = run_gemm(engine, a, b, bias, seed=seed, p_valid=p_valid, p_ready=p_ready,
                   name=f"gemm_{rows}x{cols}_{m}x{n}x{k}_seed{seed}", backend=backend)
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
        **run.streams.figures(),
    }
