"""Simulating :class:`~wavefabric.rtl.gru.GruEngine`: parameters, command beats, one-call runs and checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.fixed import QFormat
from ..model.kernels import Numerics, gru_cell
from ..model.perf import gru_macs, gru_step_cycles
from ..rtl.gru import GruCommand, GruEngine, GruGeometry
from .streams import StreamRun, run_streams

__all__ = ["GruParams", "random_gru_params", "gru_reference", "command_beats", "weight_beats", "gru_streams",
           "gru_result", "GruRun", "run_gru", "simulate_gru"]


@dataclass
class GruParams:
    """Integer parameters of an L-layer GRU in PyTorch layout (gate order r, z, n).

    Attributes
    ----------
    w_ih : list of (3H, I_l) weight ints. w_hh : list of (3H, H) weight ints.
    b_ih, b_hh : list of (3H,) act ints.
    shifts : list of int or None
        Each layer's narrowing shift (its weight ``frac``: per-layer formats); None for ``num.weight.frac``.
    """

    w_ih: list[np.ndarray]
    w_hh: list[np.ndarray]
    b_ih: list[np.ndarray]
    b_hh: list[np.ndarray]
    shifts: list[int] | None = None


def _uniform(rng: np.random.Generator, fmt: QFormat, shape, scale: float | None) -> np.ndarray:
    if scale is None:
        return rng.integers(fmt.min_int, fmt.max_int, shape, endpoint=True)
    return fmt.quantize(rng.uniform(-scale, scale, shape))


def random_gru_params(input_size: int, hidden: int, layers: int, num: Numerics, rng: np.random.Generator,
                      full_scale: bool = False) -> GruParams:
    """Random parameters: PyTorch's initialisation range ``U(-1/sqrt(H), 1/sqrt(H))``, quantised.

    With ``full_scale`` every integer is uniform over its whole format (the gates then saturate).
    """
    scale = None if full_scale else 1 / np.sqrt(hidden)
    sizes = [input_size] + [hidden] * (layers - 1)
    return GruParams(
        w_ih=[_uniform(rng, num.weight, (3 * hidden, n), scale) for n in sizes],
        w_hh=[_uniform(rng, num.weight, (3 * hidden, hidden), scale) for _ in sizes],
        b_ih=[_uniform(rng, num.act, 3 * hidden, scale) for _ in sizes],
        b_hh=[_uniform(rng, num.act, 3 * hidden, scale) for _ in sizes],
    )


def gru_reference(params: GruParams, h0: np.ndarray, xs: np.ndarray, num: Numerics,
                  resets: dict[int, np.ndarray] | None = None,
                  saturated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point model: :func:`~wavefabric.model.kernels.gru_cell` per step and layer.

    ``resets`` maps a step index to the state ``(L, H)`` loaded just before that step. Returns
    ``(outputs, h)``: the last layer's h' after every step ``(T, H)``, and the final state ``(L, H)``. A given
    ``saturated`` ``(L,)`` int64 array receives each layer's count of saturated ``i_n`` / ``h_n`` values since the
    last reset (the engine's ``saturated`` flags, which a ``STATE`` command clears).
    """
    h = np.array(h0, dtype=np.int64)
    layers = len(params.w_ih)
    shifts = params.shifts or [num.weight.frac] * layers
    counts = np.zeros((layers, 1), dtype=np.int64)
    outputs = []
    for t, x in enumerate(np.asarray(xs, dtype=np.int64)):
        if resets and t in resets:
            h = np.array(resets[t], dtype=np.int64)
            counts[:] = 0
        for layer in range(layers):
            x = h[layer] = gru_cell(x, h[layer], params.w_ih[layer], params.w_hh[layer], params.b_ih[layer],
                                    params.b_hh[layer], num, shifts[layer], counts[layer])
        outputs.append(x)
    if saturated is not None:
        saturated[:] = counts[:, 0]
    return np.array(outputs).reshape(len(outputs), h.shape[1]), h


def _frame(values: np.ndarray, simd: int, kind: GruCommand) -> list[dict]:
    """A command's beats: ``values`` packed ``simd`` per beat, zero padded, ``first`` / ``last`` set."""
    padded = np.pad(np.asarray(values, dtype=np.int64), (0, -len(values) % simd)).reshape(-1, simd)
    return [{"data": row.tolist(), "kind": kind, "first": i == 0, "last": i == len(padded) - 1}
            for i, row in enumerate(padded)]


def command_beats(geometry: GruGeometry, kind: GruCommand, values) -> list[dict]:
    """``cmd`` payloads of one command: ``STEP`` (x, ``(I,)``), ``STATE`` (h0, ``(L, H)``, each layer padded to
    whole words) or ``BIAS`` (``values`` as :meth:`~wavefabric.rtl.gru.GruGeometry.bias_values` gives them)."""
    if kind == GruCommand.STATE:
        words = np.asarray(values, dtype=np.int64).reshape(geometry.layers, geometry.hidden)
        words = np.pad(words, ((0, 0), (0, geometry.h_words * geometry.simd - geometry.hidden)))
        return _frame(words.reshape(-1), geometry.simd, kind)
    return _frame(values, geometry.simd, kind)


def weight_beats(geometry: GruGeometry, params: GruParams) -> list[dict]:
    """``weights`` payloads: :meth:`~wavefabric.rtl.gru.GruGeometry.weight_words`, address-major."""
    words = geometry.weight_words(params.w_ih, params.w_hh).reshape(-1, geometry.simd)
    return [{"data": row.tolist(), "first": i == 0, "last": i == len(words) - 1} for i, row in enumerate(words)]


def gru_streams(geometry: GruGeometry, params: GruParams, h0, xs, resets: dict[int, np.ndarray] | None = None
                ) -> tuple[dict, list[int]]:
    """The stimulus of a GRU run for :func:`~wavefabric.sim.streams.run_streams`, and where each step ends.

    ``cmd`` carries BIAS and STATE (``h0``), then one STEP per row of ``xs``, with a STATE command before step
    ``t`` for every ``t`` in ``resets`` (the state to load); ``weights`` carries :func:`weight_beats`. The first
    command after the setup waits until every weight beat has been taken: the engine refuses weights while a
    step is queued or running, so an early STEP would run on a partly written memory.

    Returns
    -------
    streams : dict
        ``inputs``, ``outputs`` (``out``: ``ceil(H / S)`` beats per step) and ``waits``: keyword arguments of
        ``run_streams``.
    step_ends : list[int]
        Index in ``cmd`` of each STEP's last beat.
    """
    setup = (command_beats(geometry, GruCommand.BIAS, geometry.bias_values(params.b_ih, params.b_hh, params.shifts))
             + command_beats(geometry, GruCommand.STATE, h0))
    cmd, step_ends = list(setup), []
    for t, x in enumerate(np.asarray(xs, dtype=np.int64).reshape(-1, geometry.input_size)):
        if resets and t in resets:
            cmd += command_beats(geometry, GruCommand.STATE, resets[t])
        cmd += command_beats(geometry, GruCommand.STEP, x)
        step_ends.append(len(cmd) - 1)
    streams = {"inputs": {"weights": weight_beats(geometry, params), "cmd": cmd},
               "outputs": {"out": len(step_ends) * geometry.h_words}, "waits": {"cmd": (len(setup), "weights")}}
    return streams, step_ends


def gru_result(beats: list[dict], geometry: GruGeometry) -> tuple[np.ndarray, bool]:
    """The last layer's h' of each step ``(T, H)`` from the ``out`` beats; also whether their framing is right.

    Right framing: ``first`` on each step's first beat, ``last`` on its last beat, neither elsewhere, and the
    padding lanes beyond H zero. Raises ``ValueError`` if the beats are not whole steps.
    """
    per_step = geometry.h_words
    if len(beats) % per_step:
        raise ValueError(f"{len(beats)} output beats are not whole steps of {per_step}")
    data = np.array([beat["data"] for beat in beats], dtype=np.int64).reshape(len(beats) // per_step, -1)
    position = np.arange(len(beats)) % per_step
    framing_ok = (np.array_equal([bool(beat["first"]) for beat in beats], position == 0)
                  and np.array_equal([bool(beat["last"]) for beat in beats], position == per_step - 1)
                  and not data[:, geometry.hidden:].any())
    return data[:, :geometry.hidden], bool(framing_ok)


@dataclass
class GruRun:
    """Outcome of :func:`run_gru`.

    Attributes
    ----------
    outputs : (T, H) int64 array: the last layer's h' after each step, as the engine sent it.
    framing_ok : bool
        As :func:`gru_result` checks it, and the engine's ``error`` low.
    step_done : list[int]
        Cycle of each step's last output beat transfer.
    step_sent : list[int]
        Cycle of each step's last ``cmd`` beat transfer.
    streams : StreamRun
        The run itself: every transfer with its cycle, the backend and its timings.
    """

    outputs: np.ndarray
    framing_ok: bool
    step_done: list[int]
    step_sent: list[int]
    streams: StreamRun


def run_gru(engine: GruEngine, params: GruParams, h0, xs, *, resets: dict[int, np.ndarray] | None = None,
            seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0, name: str = "gru",
            backend: str = "amaranth") -> GruRun:
    """Load ``params`` and ``h0`` into ``engine``, run one step per row of ``xs`` on ``backend``.

    The stimulus is :func:`gru_streams` (``resets`` maps a step to the state loaded just before it), run by
    :func:`~wavefabric.sim.streams.run_streams`. With ``p_valid`` / ``p_ready`` below 1 the input streams have
    random gaps and ``out`` random stalls, from generators seeded by ``seed``. ``name`` names the VCD trace of an
    Amaranth run (:func:`~wavefabric.sim.streams.run_simulation`). A run that takes more than ten times the
    cycles of loading every beat and running every step one after the other (plus 1000) raises
    ``TimeoutError``.
    """
    geo = engine.geometry
    streams, step_ends = gru_streams(geo, params, h0, xs, resets)
    serial = sum(len(beats) for beats in streams["inputs"].values()) + len(step_ends) * engine.latency
    run = run_streams(engine, **streams, seed=seed, p_valid=p_valid, p_ready=p_ready, max_cycles=10 * serial + 1000,
                      backend=backend, name=name)
    outputs, framing_ok = gru_result(run.outputs["out"], geo)
    done = run.times["out"][geo.h_words - 1::geo.h_words].tolist()
    sent = run.times["cmd"][step_ends].tolist()
    return GruRun(outputs, framing_ok and not run.flags["error"], done, sent, run)


def simulate_gru(input_size: int, hidden: int, layers: int = 1, lanes: int = 8, simd: int = 8, steps: int = 2,
                 seed: int = 0, num: Numerics = Numerics(), full_scale: bool = False, p_valid: float = 1.0,
                 p_ready: float = 1.0, backend: str = "amaranth", shifts: list[int] | None = None) -> dict:
    """Run ``steps`` GRU steps of seeded random parameters and inputs on a P x S engine; check against the model.

    Parameters are :func:`random_gru_params` (``numpy.random.default_rng(seed)``), h0 and the inputs uniform in
    [-1, 1] (the whole act range with ``full_scale``). Returns a JSON-ready dict: the sizes and ``seed``,
    ``cycles_per_step`` (simulated: the mean period between the last output beats of consecutive steps, or for a
    single step its latency minus ``ceil(H / S) + 2``, see ``GruEngine.latency``), ``model_cycles_per_step``
    (:func:`~wavefabric.model.perf.gru_step_cycles`), ``latency`` (simulated, first step: last ``cmd`` beat to last
    output beat) and ``model_latency``, ``macs_per_cycle`` (MACs of a step over the simulated cycles),
    ``bit_exact`` (``np.array_equal`` with :func:`gru_reference`, correct framing, and the engine's ``saturated``
    flags those of the model; ``shifts``: each layer's narrowing shift, default ``num.weight.frac``). Random stalls
    (``p_valid``, ``p_ready`` < 1) make the simulated cycles exceed the model's. ``backend`` picks the simulator;
    its name, the seconds spent compiling and the simulated cycles per second are in ``backend``,
    ``compile_seconds`` and ``cycles_per_second``.
    """
    engine = GruEngine(input_size, hidden, layers, lanes, simd, num)
    rng = np.random.default_rng(seed)
    params = random_gru_params(input_size, hidden, layers, num, rng, full_scale)
    params.shifts = shifts
    scale = None if full_scale else 1.0
    h0 = _uniform(rng, num.act, (layers, hidden), scale)
    xs = _uniform(rng, num.act, (steps, input_size), scale)
    run = run_gru(engine, params, h0, xs, seed=seed, p_valid=p_valid, p_ready=p_ready,
                  name=f"gru_{input_size}x{hidden}x{layers}_p{lanes}s{simd}_seed{seed}", backend=backend)
    saturated = np.zeros(layers, dtype=np.int64)
    expected, _ = gru_reference(params, h0, xs, num, saturated=saturated)
    flags = sum(1 << layer for layer in range(layers) if saturated[layer])
    latency = run.step_done[0] - run.step_sent[0]
    if steps > 1:
        cycles = (run.step_done[-1] - run.step_done[0]) / (steps - 1)
    else:
        cycles = latency - engine.geometry.h_words - 2
    return {
        "input": input_size, "hidden": hidden, "layers": layers, "lanes": lanes, "simd": simd, "steps": steps,
        "seed": seed,
        "cycles_per_step": cycles,
        "model_cycles_per_step": gru_step_cycles(input_size, hidden, layers, lanes, simd),
        "latency": latency,
        "model_latency": engine.latency,
        "macs_per_cycle": gru_macs(input_size, hidden, layers) / cycles,
        "bit_exact": bool(np.array_equal(run.outputs, expected) and run.framing_ok
                          and run.streams.flags["saturated"] == flags),
        "saturated": flags,
        **run.streams.figures(),
    }
