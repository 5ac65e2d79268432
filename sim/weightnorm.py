"""Simulating :class:`~wavefabric.rtl.weightnorm.WeightNormUnit`: row beats, result reassembly, one-call runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.fixed import QFormat
from ..model.kernels import RsqrtFormat, weight_norm
from ..model.perf import weightnorm_cycles
from ..rtl.weightnorm import WeightNormUnit
from .streams import StreamRun, run_streams

__all__ = ["weightnorm_beats", "weightnorm_result", "weightnorm_operands", "relative_error",
           "WeightNormRun", "run_weightnorm", "simulate_weightnorm"]


def weightnorm_beats(v: np.ndarray, lanes: int, rng: np.random.Generator | None = None) -> list[dict]:
    """The ``v`` stream payloads of one tensor: each row in ``ceil(cols / lanes)`` beats, tensor framing.

    ``first`` is set on the tensor's first beat, ``last`` on its last. Lanes past a row's end are filled with
    random integers from ``rng`` (the unit must ignore them), zeros without it.
    """
    rows, cols = v.shape
    per_row = -(-cols // lanes)
    lo, hi = -(1 << 15), (1 << 15) - 1
    beats = []
    for r in range(rows):
        padded = np.zeros(per_row * lanes, dtype=np.int64) if rng is None else rng.integers(lo, hi, per_row * lanes)
        padded[:cols] = v[r]
        for b in range(per_row):
            beats.append({"data": padded[b * lanes:(b + 1) * lanes].tolist(), "first": False, "last": False})
    beats[0]["first"] = True
    beats[-1]["last"] = True
    return beats


def weightnorm_result(beats: list[dict], rows: int, cols: int, lanes: int) -> tuple[np.ndarray, bool]:
    """Reassemble ``w`` beats into a ``rows x cols`` array; also whether the framing and padding are right.

    Right means ``first`` on the first beat only, ``last`` on the last beat only, and every lane past a row's
    end zero. Raises ``ValueError`` if the number of beats is wrong.
    """
    per_row = -(-cols // lanes)
    if len(beats) != rows * per_row:
        raise ValueError(f"{len(beats)} result beats, expected {rows * per_row}")
    out = np.zeros((rows, cols), dtype=np.int64)
    ok = True
    for r in range(rows):
        lanes_data = np.concatenate([beats[r * per_row + b]["data"] for b in range(per_row)])
        out[r] = lanes_data[:cols]
        ok &= not lanes_data[cols:].any()
    for i, beat in enumerate(beats):
        ok &= bool(beat["first"]) == (i == 0) and bool(beat["last"]) == (i == len(beats) - 1)
    return out, bool(ok)


def weightnorm_operands(rows: int, cols: int, seed: int, v_width: int = 16, g_fmt: QFormat = QFormat(16, 12),
                        g_range: tuple[float, float] = (0.5, 1.8)) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random ``(v, g)`` integers in which every row has a different norm.

    Row ``r``'s elements are uniform in ``±a_r`` with ``a_r = 2**e_r``, ``e_r`` spread evenly (then shuffled)
    from 0 to ``v_width - 1`` bits, times a random factor in [0.5, 1], so norms span the whole format and no two
    rows share one (the earlier HLS design, which summed squares with the wrong index, fails this). ``|g|`` is
    uniform in ``g_range`` (real) with a random sign, so that ``w`` stays inside Q2.14.
    """
    rng = np.random.default_rng(seed)
    top = (1 << (v_width - 1)) - 1
    exponents = rng.permutation(np.linspace(0, v_width - 1, rows))
    amplitude = np.maximum(1, np.floor(2.0 ** exponents * rng.uniform(0.5, 1.0, rows))).astype(np.int64)
    v = rng.integers(-np.minimum(amplitude, top)[:, None] - 1, np.minimum(amplitude, top)[:, None], (rows, cols),
                     endpoint=True)
    g = g_fmt.quantize(rng.uniform(*g_range, rows) * rng.choice([-1, 1], rows))
    return v, g


def relative_error(w: np.ndarray, v: np.ndarray, g: np.ndarray, g_fmt: QFormat, out_fmt: QFormat) -> float:
    """Largest ``|w - g v / ||v|| | / |g|`` against float on the same integers (rows with g, v != 0).

    The error of each element relative to its row's norm (``||w|| = |g|``): half an output LSB of rounding
    over ``|g|``, plus the reciprocal square root's relative error.
    """
    v = np.asarray(v, dtype=np.float64)
    g_real = np.asarray(g, dtype=np.float64) * g_fmt.lsb
    norm = np.sqrt(np.sum(v * v, axis=1))
    live = (norm > 0) & (g_real != 0)
    if not live.any():
        return 0.0
    ref = g_real[live, None] * v[live] / norm[live, None]
    err = np.abs(np.asarray(w, dtype=np.float64)[live] * out_fmt.lsb - ref)
    return float(np.max(err / np.abs(g_real[live, None])))


@dataclass
class WeightNormRun:
    """Outcome of :func:`run_weightnorm`.

    Attributes
    ----------
    result : (R, C) int64 array, as the unit computed it.
    framing_ok : bool
        As :func:`weightnorm_result` checks it.
    zero_row : bool
        The sticky flag after the last row.
    cycles : int
        Cycles from the start of the simulation to the last ``w`` transfer, inclusive.
    streams : StreamRun
        The run itself: every transfer with its cycle, the backend and its timings.
    """

    result: np.ndarray
    framing_ok: bool
    zero_row: bool
    cycles: int
    streams: StreamRun


def run_weightnorm(unit: WeightNormUnit, v, g, *, seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
                   name: str = "weightnorm", backend: str = "amaranth") -> WeightNormRun:
    """Run one tensor ``(v, g)`` (``v`` of shape ``(R, C)``, ``C <= unit.max_row_length``) through ``unit``.

    With ``p_valid`` / ``p_ready`` below 1 the ``v`` and ``g`` streams have random gaps and ``w`` random stalls,
    from generators seeded by ``seed`` (which also fills the padding lanes with garbage). ``backend`` picks the
    simulator (:func:`~wavefabric.sim.streams.run_streams`); ``name`` names the VCD trace of an Amaranth run
    (:func:`~wavefabric.sim.streams.run_simulation`).
    """
    v = np.asarray(v, dtype=np.int64)
    g = np.asarray(g, dtype=np.int64)
    rows, cols = v.shape
    beats = weightnorm_beats(v, unit.lanes, np.random.default_rng(seed))
    run = run_streams(unit, {"v": beats, "g": g}, {"w": len(beats)}, {"row_length": cols}, seed=seed,
                      p_valid=p_valid, p_ready=p_ready, backend=backend, name=name)
    result, framing_ok = weightnorm_result(run.outputs["w"], rows, cols, unit.lanes)
    return WeightNormRun(result, framing_ok, bool(run.flags["zero_row"]), run.cycles, run)


def simulate_weightnorm(rows: int, cols: int, lanes: int, seed: int = 0, max_row_length: int | None = None,
                        v_width: int = 16, g_fmt: QFormat = QFormat(16, 12), out_fmt: QFormat = QFormat(16, 14),
                        rsqrt_fmt: RsqrtFormat = RsqrtFormat(), p_valid: float = 1.0,
                        p_ready: float = 1.0, backend: str = "amaranth") -> dict:
    """Simulate weight norm of seeded random rows (:func:`weightnorm_operands`) and check it against the model.

    Returns a JSON-ready dict: ``rows``, ``cols``, ``lanes``, ``seed``, ``cycles`` (simulated),
    ``model_cycles`` (:func:`~wavefabric.model.perf.weightnorm_cycles`), ``bit_exact`` (``np.array_equal`` with
    :func:`~wavefabric.model.kernels.weight_norm`, right framing and zero flag), ``max_rel_error``
    (:func:`relative_error`: the unit's arithmetic against float on the same integers). Random stalls
    (``p_valid``, ``p_ready`` < 1) make ``cycles`` exceed ``model_cycles``. ``backend`` picks the simulator; its
    name, the seconds spent compiling and the simulated cycles per second are in ``backend``, ``compile_seconds``
    and ``cycles_per_second``.
    """
    unit = WeightNormUnit(max_row_length or cols, lanes, v_width, g_fmt, out_fmt, rsqrt_fmt)
    v, g = weightnorm_operands(rows, cols, seed, v_width, g_fmt)
    run = run_weightnorm(unit, v, g, seed=seed, p_valid=p_valid, p_ready=p_ready,
                         name=f"weightnorm_{rows}x{cols}_l{lanes}_seed{seed}", backend=backend)
    expected, zero_rows = weight_norm(v, g, g_fmt, out_fmt, rsqrt_fmt)
    return {
        "rows": rows, "cols": cols, "lanes": lanes, "seed": seed,
        "cycles": run.cycles,
        "model_cycles": weightnorm_cycles(rows, cols, lanes, rsqrt_fmt.newton_steps),
        "bit_exact": bool(np.array_equal(run.result, expected) and run.framing_ok
                          and run.zero_row == bool(zero_rows.any())),
        "max_rel_error": relative_error(run.result, v, g, g_fmt, out_fmt),
        **run.streams.figures(),
    }
