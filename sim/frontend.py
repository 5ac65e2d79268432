"""Simulating :class:`~wavefabric.rtl.frontend.PWGFrontEnd`: the beats of a job from a :class:`PWGFixed`, runs.

The beat builders are public so that a whole-generator testbench can drive the front end of ``PWGEngine`` with
them: :func:`frontend_streams` gives every input stream of one job, :func:`frontend_outputs` the beats the unit
sends, both straight from the fixed-point model's own functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model.perf import pwg_frontend_timing
from ..model.pwg import MAX_SHIFT, PWGFixed
from ..rtl.frontend import PWGFrontEnd
from .pwg import block_rows
from .streams import StreamRun, run_streams

__all__ = ["mel_beats", "weight_beats", "bias_beats", "noise_beats", "frontend_streams", "FrontEndReference",
           "frontend_reference", "cond_words", "frontend_outputs", "FrontEndRun", "run_frontend"]

#: The unit's input streams, in its signature's order.
INPUTS = ("mel", "weights", "bias", "noise")


def _beats(values) -> list[dict]:
    """One-lane beats of ``values`` in order, ``first`` on the first, ``last`` on the last."""
    values = [int(v) for v in np.asarray(values, dtype=np.int64).ravel()]
    return [{"data": [v], "first": i == 0, "last": i == len(values) - 1} for i, v in enumerate(values)]


def mel_beats(mel: np.ndarray) -> list[dict]:
    """The ``mel`` beats of a padded mel, act ints ``(A, F + 2w)``: frame-major (for m: for a)."""
    return _beats(np.asarray(mel).T)


def weight_beats(fixed: PWGFixed) -> list[dict]:
    """The ``weights`` beats of a job: the rows of ``conv_in.reshape(A, -1)``, ``first_conv`` row-major, then
    every layer's ``aux`` row-major."""
    conv_in = fixed.conv_in.reshape(fixed.conv_in.shape[0], -1)
    return _beats(np.concatenate([conv_in.ravel(), fixed.first_conv.ravel()]
                                 + [layer.aux.ravel() for layer in fixed.layers]))


def bias_beats(fixed: PWGFixed) -> list[dict]:
    """The ``bias`` beats of a job: ``first_bias``."""
    return _beats(fixed.first_bias)


def noise_beats(z: np.ndarray, cols: int) -> list[dict]:
    """The ``noise`` beats of act ints ``z`` ``(in_channels, T)``: block rows of ``cols`` lanes."""
    return block_rows(np.asarray(z, dtype=np.int64), cols)


def frontend_streams(fixed: PWGFixed, mel_int: np.ndarray, z_int: np.ndarray, rows: int,
                     cols: int) -> dict[str, list[dict]]:
    """Every input stream's beats for one job: padded mel ``(A, F + 2w)`` and noise ``(in_channels, F hop)``,
    act ints. ``rows`` shapes no input (only ``cond``): it is taken so that the call matches
    :func:`frontend_outputs`."""
    return {"mel": mel_beats(mel_int), "weights": weight_beats(fixed), "bias": bias_beats(fixed),
            "noise": noise_beats(z_int, cols)}


@dataclass(frozen=True)
class FrontEndReference:
    """What the front end computes for one job, from the model: f ``(A, F)``, x0 ``(R, T)``, ``aux`` (L of
    ``(G, F)``)."""

    f: np.ndarray
    x0: np.ndarray
    aux: list[np.ndarray]


def frontend_reference(fixed: PWGFixed, mel_int: np.ndarray, z_int: np.ndarray) -> FrontEndReference:
    """The job's results by :class:`PWGFixed`'s own functions, as :meth:`PWGFixed.forward` computes them."""
    f = fixed.frame_conditioning(np.asarray(mel_int, dtype=np.int64))
    return FrontEndReference(f, fixed.first_conv_output(z_int),
                             [fixed.aux_term(layer, f) for layer in range(len(fixed.layers))])


def frontend_shifts(fixed: PWGFixed) -> dict[str, int]:
    """The unit's shift inputs for ``fixed``'s formats (plain inputs of a run)."""
    sh = fixed.shifts
    return {"shift_conv_in": sh.conv_in, "shift_first": sh.first_conv,
            "aux_shifts": sum(v << (MAX_SHIFT.bit_length() * n) for n, v in enumerate(sh.aux))}


def cond_words(a: np.ndarray, rows: int) -> list[dict]:
    """One layer's ``cond`` words of the aux term ``a`` ``(G, F)``: per frame, per gate tile, ``rows`` lanes
    (zero beyond G), ``first`` / ``last`` on the layer's first and last word."""
    gate, frames = a.shape
    tiles = -(-gate // rows)
    padded = np.zeros((tiles * rows, frames), dtype=np.int64)
    padded[:gate] = a
    words = [padded[i * rows:(i + 1) * rows, m].tolist() for m in range(frames) for i in range(tiles)]
    return [{"data": w, "first": n == 0, "last": n == len(words) - 1} for n, w in enumerate(words)]


def frontend_outputs(fixed: PWGFixed, mel_int: np.ndarray, z_int: np.ndarray, rows: int,
                     cols: int) -> dict[str, list[dict]]:
    """The ``x0`` and ``cond`` beats the unit sends for one job (the model's results, the zero layer last)."""
    ref = frontend_reference(fixed, mel_int, z_int)
    frames = ref.f.shape[1]
    cond = [word for a in ref.aux for word in cond_words(a, rows)]
    cond += cond_words(np.zeros((fixed.config.gate_channels, frames), dtype=np.int64), rows)
    return {"x0": block_rows(ref.x0, cols), "cond": cond}


def _same_beats(got: list[dict], expected: list[dict]) -> bool:
    return len(got) == len(expected) and all(
        list(g["data"]) == list(e["data"]) and bool(g["first"]) == e["first"] and bool(g["last"]) == e["last"]
        for g, e in zip(got, expected, strict=True))


@dataclass
class FrontEndRun:
    """Outcome of :func:`run_frontend`.

    Attributes
    ----------
    bit_exact : bool
        Every ``x0`` and ``cond`` beat of every job (data, ``first``, ``last``) equals the model's.
    error : int
        The unit's sticky ``error`` after the run.
    model_cycles : int
        :func:`~wavefabric.model.perf.pwg_frontend_timing` ``.cycles`` of one job.
    streams : StreamRun
        The whole run: every transfer with its cycle (``streams.cycles``: up to the last ``cond`` transfer,
        inclusive).
    """

    bit_exact: bool
    error: int
    model_cycles: int
    streams: StreamRun


def run_frontend(unit: PWGFrontEnd, fixed: PWGFixed, jobs: Sequence[tuple[np.ndarray, np.ndarray]], *,
                 seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0, name: str = "pwg_frontend",
                 backend: str = "amaranth") -> FrontEndRun:
    """Run ``jobs`` (``(mel_int, z_int)`` pairs of one frame count) back to back through ``unit`` and compare
    every output beat with the model's (:func:`frontend_outputs`)."""
    frames = {mel.shape[1] - 2 * fixed.config.aux_context_window for mel, _ in jobs}
    if len(frames) != 1:
        raise ValueError(f"the jobs must have one frame count, not {sorted(frames)}")
    (frames,) = frames
    inputs = {s: [] for s in INPUTS}
    expected = {"x0": [], "cond": []}
    for mel, z in jobs:
        for s, beats in frontend_streams(fixed, mel, z, unit.rows, unit.cols).items():
            inputs[s] += beats
        for s, beats in frontend_outputs(fixed, mel, z, unit.rows, unit.cols).items():
            expected[s] += beats
    model = pwg_frontend_timing(fixed.config, frames, unit.cols, unit.rows).cycles
    statics = {"frames": frames} | frontend_shifts(fixed)
    run = run_streams(unit, inputs, {s: len(b) for s, b in expected.items()}, statics, seed=seed,
                      p_valid=p_valid, p_ready=p_ready, tail=1, max_cycles=10 * model * len(jobs) + 2000,
                      name=name, backend=backend)
    exact = all(_same_beats(run.outputs[s], expected[s]) for s in expected)
    return FrontEndRun(exact, run.flags["error"], model, run)
