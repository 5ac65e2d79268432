"""Simulating the ParallelWaveGAN engines: a residual layer (:class:`~wavefabric.rtl.conv1d.ResidualEngine`) and
the whole generator (:class:`~wavefabric.rtl.pwg.PWGEngine`): stream beats, one-call runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.kernels import Numerics
from ..model.perf import pwg_engine_cycles, pwg_layer_cycles, pwg_layer_ideal_cycles
from ..model.pwg import (
    PWG_NUMERICS,
    LayerShifts,
    PWGFixed,
    ResidualLayer,
    UpsampleTable,
    pcm16,
    residual_layer_fixed,
)
from ..rtl.conv1d import ResidualEngine
from ..rtl.pwg import PWGEngine
from .streams import AxiMemory, StreamRun, run_streams

__all__ = ["random_residual_layer", "random_upsample_table", "layer_beats", "cond_beats", "table_beats",
           "format_beats", "block_rows", "from_block_rows", "LayerJob", "layer_streams", "LayerRun",
           "run_residual_layer", "run_residual_layers", "simulate_pwg_layer", "GeneratorRun", "generator_streams",
           "run_pwg"]


def random_residual_layer(rng: np.random.Generator, residual: int, gate: int, skip: int, kernel_size: int,
                          dilation: int, num: Numerics = PWG_NUMERICS, aux: int = 1) -> ResidualLayer:
    """Integer weights for one layer: uniform over +-1.0 (weights) and +-0.5 (biases) in ``num``'s formats.

    ``aux`` sizes the aux 1x1 (which the residual engine does not apply: it takes the aux term).
    """
    w = 1 << num.weight.frac
    b = 1 << (num.act.frac - 1)
    return ResidualLayer(
        conv=rng.integers(-w, w, (gate, residual, kernel_size), endpoint=True),
        conv_bias=rng.integers(-b, b, gate, endpoint=True),
        aux=rng.integers(-w, w, (gate, aux), endpoint=True),
        skip=rng.integers(-w, w, (skip, gate // 2), endpoint=True),
        skip_bias=rng.integers(-b, b, skip, endpoint=True),
        out=rng.integers(-w, w, (residual, gate // 2), endpoint=True),
        out_bias=rng.integers(-b, b, residual, endpoint=True),
        dilation=dilation,
    )


def _frame(beats: list[dict]) -> list[dict]:
    if beats:
        beats[0]["first"] = True
        beats[-1]["last"] = True
    return beats


def block_rows(values: np.ndarray, cols: int) -> list[dict]:
    """A ``(channels, T)`` signal as block-row beats: per block of ``cols`` steps, per channel, one beat."""
    channels, t = values.shape
    blocks = -(-t // cols)
    padded = np.zeros((channels, blocks * cols), dtype=np.int64)
    padded[:, :t] = values
    beats = [{"data": padded[ch, n * cols:(n + 1) * cols].tolist(), "first": False, "last": False}
             for n in range(blocks) for ch in range(channels)]
    return _frame(beats)


def from_block_rows(beats: list[dict], channels: int, t: int, cols: int) -> tuple[np.ndarray, bool]:
    """Reassemble block-row beats into ``(channels, T)``; also whether the framing is right.

    Right framing: ``first`` on the first beat only, ``last`` on the last only, lanes beyond T zero. Raises
    ``ValueError`` if the number of beats is wrong.
    """
    blocks = -(-t // cols)
    if len(beats) != blocks * channels:
        raise ValueError(f"{len(beats)} beats, expected {blocks * channels}")
    data = np.array([beat["data"] for beat in beats], dtype=np.int64).reshape(blocks, channels, cols)
    full = data.transpose(1, 0, 2).reshape(channels, blocks * cols)
    framing_ok = (all(bool(beat["first"]) == (i == 0) for i, beat in enumerate(beats))
                  and all(bool(beat["last"]) == (i == len(beats) - 1) for i, beat in enumerate(beats))
                  and not full[:, t:].any())
    return full[:, :t], framing_ok


def random_upsample_table(rng: np.random.Generator, engine: ResidualEngine,
                          num: Numerics = PWG_NUMERICS) -> UpsampleTable:
    """An :class:`~wavefabric.model.pwg.UpsampleTable` of the engine's geometry, weights uniform over [0, 0.5)."""
    shape = (2 * engine.cond_edge + 1, engine.hop, engine.cond_taps)
    return UpsampleTable(rng.integers(0, 1 << (num.weight.frac - 1), shape), engine.cond_offset, engine.cond_edge)


def layer_beats(engine: ResidualEngine, layer: ResidualLayer) -> tuple[list[dict], list[dict]]:
    """The ``w`` and ``bias`` beats of one layer, in the order :class:`ResidualEngine` documents."""
    rows = engine.rows
    gate_w = layer.conv.reshape(layer.conv.shape[0], -1)
    out_w = np.concatenate([layer.skip, layer.out])
    w_beats = []
    for matrix in (gate_w, out_w):
        padded = np.zeros((-(-matrix.shape[0] // rows) * rows, matrix.shape[1]), dtype=np.int64)
        padded[:matrix.shape[0]] = matrix
        for i in range(0, padded.shape[0], rows):
            w_beats += [{"data": padded[i:i + rows, k].tolist(), "first": False, "last": False}
                        for k in range(matrix.shape[1])]
    biases = np.concatenate([layer.conv_bias, layer.skip_bias, layer.out_bias])
    bias_beats = [{"data": [int(v)], "first": False, "last": False} for v in biases]
    return _frame(w_beats), _frame(bias_beats)


def cond_beats(engine: ResidualEngine, a: np.ndarray) -> list[dict]:
    """The ``cond`` beats of a layer's aux term ``a`` (G, F): per frame, per gate tile, ``rows`` channels."""
    rows, frames = engine.rows, a.shape[1]
    padded = np.zeros((engine.gate_tiles * rows, frames), dtype=np.int64)
    padded[:a.shape[0]] = a
    return _frame([{"data": padded[i * rows:(i + 1) * rows, m].tolist(), "first": False, "last": False}
                   for m in range(frames) for i in range(engine.gate_tiles)])


def table_beats(engine: ResidualEngine, table: UpsampleTable) -> list[dict]:
    """The ``table`` beats: per table row, per block of the frame, per tap d, ``cols`` lanes."""
    cols = engine.cols
    return _frame([{"data": table.weights[row, q * cols:(q + 1) * cols, d].tolist(), "first": False,
                    "last": False}
                   for row in range(table.weights.shape[0]) for q in range(engine.hop // cols)
                   for d in range(table.taps)])


@dataclass(frozen=True)
class LayerJob:
    """One layer for :func:`run_residual_layers`: weights, integer signals and the layer's kind.

    ``x`` (R_ch, T), ``a`` (G, F: the aux term at frame rate, ``T = F hop``), ``skip_in`` (S, T); ``last`` and
    ``relu`` as :class:`~wavefabric.rtl.conv1d.ResidualEngine` documents them.
    """

    layer: ResidualLayer
    x: np.ndarray
    a: np.ndarray
    skip_in: np.ndarray
    last: bool = False
    relu: bool = False
    shifts: LayerShifts | None = None

    def model(self, table: UpsampleTable, num: Numerics,
              counts: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """``(x_next, skip)`` of :func:`~wavefabric.model.pwg.residual_layer_fixed` for this job (saturations
        into ``counts[0]``)."""
        return residual_layer_fixed(self.x, table.apply(self.a), self.layer, num, aux_applied=True,
                                    residual_out=not self.last, relu_gate=self.relu, shifts=self.shifts,
                                    counts=counts)


def layer_streams(engine: ResidualEngine, job: LayerJob) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """One layer's input payloads per stream and output beats per stream, in :class:`ResidualEngine`'s order.

    The two dicts are the ``inputs`` and ``outputs`` of :func:`~wavefabric.sim.streams.run_streams` (without
    the table, which loads once per run).
    """
    cols = engine.cols
    w_beats, bias_beats = layer_beats(engine, job.layer)
    inputs = {"x": block_rows(job.x, cols), "cond": cond_beats(engine, job.a),
              "skip_in": block_rows(job.skip_in, cols), "w": w_beats, "bias": bias_beats}
    blocks = job.x.shape[1] // cols
    return inputs, {"x_next": 0 if job.last else blocks * engine.residual, "skip_out": blocks * engine.skip}


def _max_cycles(engine: ResidualEngine, job: LayerJob, loads: int) -> int:
    """Ten times the cycle model (plus 2000): a layer that takes longer has hung."""
    return 10 * pwg_layer_cycles(engine.rows, engine.cols, job.a.shape[1], engine.hop, job.layer.dilation,
                                 engine.residual, engine.gate, engine.skip, engine.kernel_size, engine.cond_taps,
                                 engine.gate_lanes, last=job.last, loads=loads) + 2000


@dataclass
class LayerRun:
    """Outcome of one layer of :func:`run_residual_layer` or :func:`run_residual_layers`.

    Attributes
    ----------
    x_next : (R_ch, T) int64 as the engine computed it, or None for a ``last`` layer.
    skip_out : (S, T) int64: the skip sum after the layer.
    framing_ok : bool
        The layer's outputs framed right (:func:`from_block_rows`) and the engine's sticky ``error`` low at the
        end of the run (no input beat of any layer framed wrong).
    cycles : int
        Cycles of the layer up to its last output transfer, inclusive: for the first layer from cycle 0, for a
        later one from the cycle after the previous layer's last output.
    streams : StreamRun
        The whole run (every transfer with its cycle, the backend and its timings), shared by its layers.
    """

    x_next: np.ndarray | None
    skip_out: np.ndarray
    framing_ok: bool
    cycles: int
    streams: StreamRun


#: The engine's input streams, in the order of :func:`layer_streams`.
_INPUTS = ("x", "cond", "skip_in", "w", "bias")
#: Its inputs that belong to the running layer (the others are double-buffered).
_ACTIVATIONS = ("x", "skip_in")
#: The plain inputs that describe a layer.
_KIND = ("frames", "dilation", "last", "relu", "shift_gate", "shift_skip", "shift_out")


def _kind(engine: ResidualEngine, job: LayerJob) -> dict[str, int]:
    shifts = job.shifts or LayerShifts.uniform(engine.numerics)
    return {"frames": job.a.shape[1], "dilation": job.layer.dilation, "last": int(job.last),
            "relu": int(job.relu), "shift_gate": shifts.gate, "shift_skip": shifts.skip, "shift_out": shifts.out}


def run_residual_layer(engine: ResidualEngine, job: LayerJob, table: UpsampleTable, *, seed: int = 0,
                       p_valid: float = 1.0, p_ready: float = 1.0, name: str = "pwg_layer",
                       backend: str = "amaranth") -> LayerRun:
    """Run one residual layer through ``engine``: :func:`run_residual_layers` with one job."""
    return run_residual_layers(engine, [job], table, seed=seed, p_valid=p_valid, p_ready=p_ready, name=name,
                               backend=backend)[0]


def run_residual_layers(engine: ResidualEngine, jobs, table: UpsampleTable, *, seed: int = 0,
                        p_valid: float = 1.0, p_ready: float = 1.0, weights_ahead: bool = True,
                        name: str = "pwg_layer", backend: str = "amaranth") -> list[LayerRun]:
    """Run residual layers back to back through ``engine`` in one run of :func:`~wavefabric.sim.streams.run_streams`.

    ``jobs`` is a sequence of :class:`LayerJob` (each may have its own T, dilation and kind); ``table`` (integer
    weights) is loaded first. The first job's ``frames``, ``dilation``, ``last`` and ``relu`` are static inputs;
    a later job's first beat on ``x`` and ``skip_in`` waits until the previous job's last output beats have been
    taken and changes them, so the engine holds them from a cycle before the job's first beat on these streams
    until its last output, as it requires. The ``w``, ``bias`` and ``cond`` beats follow each other with no
    waits: the engine takes a job's while the previous job runs (its double buffers); with
    ``weights_ahead=False`` they wait like the other inputs. With ``p_valid`` / ``p_ready`` below 1 every input
    stream has random gaps and every output random stalls (generators seeded by ``seed``). ``name`` names the
    VCD trace of an Amaranth run; ``backend`` picks the simulator. Without stalls every layer's ``cycles`` equal
    :func:`~wavefabric.model.perf.pwg_layer_cycles` (the first with ``loads``: its aux words or the table,
    whichever is longer). Raises ``TimeoutError`` after ten times the cycle model (+ 2000) per job.
    """
    jobs = [LayerJob(job.layer, *(np.asarray(v, dtype=np.int64) for v in (job.x, job.a, job.skip_in)),
                     job.last, job.relu, job.shifts) for job in jobs]
    streams = [layer_streams(engine, job) for job in jobs]
    inputs = {port: [beat for beats, _ in streams for beat in beats[port]] for port in _INPUTS}
    inputs["table"] = table_beats(engine, table)
    outputs = {port: sum(count[port] for _, count in streams) for port in ("x_next", "skip_out")}
    outputs = {port: n for port, n in outputs.items() if n}
    waiting = _ACTIVATIONS if weights_ahead else _INPUTS
    waits: dict[str, list] = {port: [] for port in waiting}
    changes: dict[str, list] = {port: [] for port in _KIND}
    sent = dict.fromkeys(_INPUTS, 0)
    done = dict.fromkeys(outputs, 0)
    for (beats, count), job in zip(streams, jobs, strict=True):
        if any(done.values()):  # a later job
            for port in waiting:
                waits[port] += [(sent[port], out, n) for out, n in done.items()]
            for port in _ACTIVATIONS:
                changes.update({key: changes[key] + [(port, sent[port], value)]
                                for key, value in _kind(engine, job).items()})
        sent = {port: sent[port] + len(beats[port]) for port in _INPUTS}
        done = {port: done[port] + count[port] for port in done}
    loads = max(len(streams[0][0]["cond"]), len(inputs["table"]))
    # One cycle after the last output lets an error raised by the last input beats reach the flag.
    run = run_streams(engine, inputs, outputs, _kind(engine, jobs[0]), seed=seed, p_valid=p_valid,
                      p_ready=p_ready, waits=waits, changes=changes, tail=1,
                      max_cycles=sum(_max_cycles(engine, job, loads) for job in jobs), backend=backend, name=name)
    layers, start, ends = [], 0, dict.fromkeys(outputs, 0)
    for (_, count), job in zip(streams, jobs, strict=True):
        beats = {}
        for port in outputs:
            beats[port] = run.outputs[port][ends[port]:ends[port] + count[port]]
            ends[port] += count[port]
        # Every input beat of a job is taken before its last output (the last skip_out needs the last skip_in).
        end = max(int(run.times[port][ends[port] - 1]) for port in outputs if count[port]) + 1
        t = job.x.shape[1]
        skip_out, ok = from_block_rows(beats["skip_out"], engine.skip, t, engine.cols)
        x_next = None
        if not job.last:
            x_next, ok_x = from_block_rows(beats["x_next"], engine.residual, t, engine.cols)
            ok = ok and ok_x
        layers.append(LayerRun(x_next, skip_out, ok and not run.flags["error"], end - start, run))
        start = end
    return layers


def simulate_pwg_layer(dilation: int, frames: int, rows: int, cols: int, seed: int = 0, *, residual: int = 4,
                       gate: int = 8, skip: int = 4, kernel_size: int = 3, hop: int = 8, last: bool = False,
                       gate_lanes: int | None = None, p_valid: float = 1.0, p_ready: float = 1.0,
                       numerics: Numerics = PWG_NUMERICS, backend: str = "amaranth") -> dict:
    """Simulate one residual layer of seeded random weights and signals and check it against the model.

    Weights by :func:`random_residual_layer`, the upsampling table by :func:`random_upsample_table` (ljspeech's
    geometry: 5 taps, offset 2, edge 1); ``x`` and the aux term uniform over +-4.0, the incoming skip sum over
    the act range. The engine is built for exactly this dilation and length (``frames * hop`` steps). Returns a
    JSON-ready dict: the sizes, ``cycles`` (simulated), ``model_cycles``
    (:func:`~wavefabric.model.perf.pwg_layer_cycles`), ``ideal_cycles`` (MACs / (rows * cols)),
    ``utilization`` (ideal / simulated) and ``bit_exact`` (``x_next`` and ``skip_out - skip_in`` equal
    :func:`~wavefabric.model.pwg.residual_layer_fixed`, framing right). ``backend`` picks the simulator; its
    name, the seconds spent compiling and the simulated cycles per second are in ``backend``,
    ``compile_seconds`` and ``cycles_per_second``.
    """
    engine = ResidualEngine(rows, cols, residual, gate, skip, kernel_size, hop=hop, max_dilation=dilation,
                            max_frames=frames, numerics=numerics, gate_lanes=gate_lanes)
    rng = np.random.default_rng(seed)
    act = numerics.act
    layer = random_residual_layer(rng, residual, gate, skip, kernel_size, dilation, numerics)
    table = random_upsample_table(rng, engine, numerics)
    span = 4 << act.frac
    t = frames * hop
    job = LayerJob(layer, rng.integers(-span, span, (residual, t), endpoint=True),
                   rng.integers(-span, span, (gate, frames), endpoint=True),
                   rng.integers(act.min_int, act.max_int, (skip, t), endpoint=True), last=last)
    run = run_residual_layer(engine, job, table, seed=seed, p_valid=p_valid, p_ready=p_ready,
                             name=f"pwg_layer_d{dilation}_f{frames}_{rows}x{cols}_seed{seed}", backend=backend)
    x_ref, skip_ref = job.model(table, numerics)
    ideal = pwg_layer_ideal_cycles(rows, cols, t, residual, gate, skip, engine.cond_taps, kernel_size)
    loads = max(frames * engine.gate_tiles, engine.table_beats)
    return {
        "dilation": dilation, "frames": frames, "hop": hop, "t": t, "rows": rows, "cols": cols, "seed": seed,
        "residual": residual, "gate": gate, "skip": skip, "kernel_size": kernel_size, "last": last,
        "gate_lanes": engine.gate_lanes,
        "cycles": run.cycles,
        "model_cycles": pwg_layer_cycles(rows, cols, frames, hop, dilation, residual, gate, skip, kernel_size,
                                         engine.cond_taps, engine.gate_lanes, last=last, loads=loads),
        "ideal_cycles": ideal,
        "utilization": ideal / run.cycles,
        "bit_exact": bool((last or np.array_equal(run.x_next, x_ref))
                          and np.array_equal(run.skip_out - job.skip_in, skip_ref) and run.framing_ok),
        **run.streams.figures(),
    }


# --- The whole generator ------------------------------------------------------------------------------------------


@dataclass
class GeneratorRun:
    """Outcome of :func:`run_pwg`.

    Attributes
    ----------
    pcm : (out_channels, T) int16: the samples the engine streamed.
    expected : (out_channels, T) int16: :func:`~wavefabric.model.pwg.pcm16` of :meth:`PWGFixed.forward`.
    bit_exact : bool
        ``pcm`` equals ``expected``, the saturation flags the model's, the stream framed right and the sticky
        ``error`` low.
    cycles, model_cycles : int
        Simulated cycles of the job (to its last PCM transfer, inclusive) and
        :func:`~wavefabric.model.perf.pwg_engine_cycles`.
    streams : StreamRun
    saturation, expected_saturation : (L + 2,) bool
        The engine's ``saturation`` flags after the job, and the model's (its saturation counts nonzero): the
        front end, each residual layer, the output layers.
    """

    pcm: np.ndarray
    expected: np.ndarray
    bit_exact: bool
    cycles: int
    model_cycles: int
    streams: StreamRun
    saturation: np.ndarray
    expected_saturation: np.ndarray


def generator_streams(engine: PWGEngine, fixed: PWGFixed, mel: np.ndarray, z: np.ndarray) -> dict[str, list[dict]]:
    """Every input stream's beats for one job of :class:`~wavefabric.rtl.pwg.PWGEngine`: the front end's
    (:func:`~wavefabric.sim.frontend.frontend_streams`), the L residual layers' and the output layer's weights
    and biases, and the upsampling table. ``mel`` ``(A, F + 2w)`` and ``z`` ``(in_channels, F hop)`` are act
    integers."""
    from .frontend import frontend_streams  # sim.frontend builds on this module's block rows

    layers = engine.engine
    front = frontend_streams(fixed, mel, z, engine.rows, engine.cols)
    w, bias = [], []
    for layer in (*fixed.layers, fixed.output_layer()):
        w_beats, bias_beats = layer_beats(layers, layer)
        w += w_beats
        bias += bias_beats
    return {"mel": front["mel"], "noise": front["noise"], "frontend_w": front["weights"],
            "frontend_bias": front["bias"], "layer_w": w, "layer_bias": bias,
            "table": format_beats(engine, fixed) + table_beats(layers, fixed.upsample_table)}


def format_beats(engine: PWGEngine, fixed: PWGFixed) -> list[dict]:
    """The formats frame of :class:`~wavefabric.rtl.pwg.PWGEngine`'s ``table`` stream: ``fixed``'s shifts
    (:meth:`~wavefabric.model.pwg.PWGShifts.flat`), one per beat in lane 0."""
    zeros = [0] * (engine.cols - 1)
    return _frame([{"data": [shift, *zeros], "first": False, "last": False} for shift in fixed.shifts.flat()])


def activation_memories(engine: PWGEngine, latency: int = 40, p_ready: float = 1.0) -> dict[str, AxiMemory]:
    """The DDR of an engine with ``store="ddr"``: one memory per AXI4 port, x and skip sums, each at address 0
    and just large enough, with ``latency`` cycles for reads and writes and, below 1, random stalls on every
    channel (``p_ready``)."""
    memories = {}
    for memory, channels in (("x", engine.config.residual_channels), ("skip", engine.config.skip_channels)):
        writer = engine.movers[f"{memory}_writer"]
        size = engine.max_blocks * channels * writer.beats_per_record * writer.beat_bytes
        memories[memory] = AxiMemory(bytes(-(-size // 4096) * 4096), ar=f"{memory}_ar", r=f"{memory}_r",
                                     aw=f"{memory}_aw", w=f"{memory}_w", b=f"{memory}_b", latency=latency,
                                     write_latency=latency, p_ar_ready=p_ready, p_r_valid=p_ready,
                                     p_aw_ready=p_ready, p_w_ready=p_ready, p_b_valid=p_ready)
    return memories


def run_pwg(engine: PWGEngine, fixed: PWGFixed, mel: np.ndarray, z: np.ndarray, *, seed: int = 0,
            p_valid: float = 1.0, p_ready: float = 1.0, latency: int = 40, progress=None, name: str = "pwg",
            backend: str = "amaranth") -> GeneratorRun:
    """One job through ``engine``: the padded mel ``mel`` ``(A, F + 2w)`` and the noise ``z`` ``(in_channels,
    F hop)`` (act integers) in, PCM out, checked against ``fixed`` (built for the engine's configuration).

    With ``p_valid`` / ``p_ready`` below 1 every input stream has random gaps and the PCM output random stalls
    (seeded by ``seed``). An engine with ``store="ddr"`` reads and writes its activations in
    :func:`activation_memories` of ``latency`` cycles (stalled with ``p_ready`` too). ``progress`` is called now
    and then with the PCM beats so far.
    """
    cfg = engine.config
    mel, z = np.asarray(mel, dtype=np.int64), np.asarray(z, dtype=np.int64)
    frames = mel.shape[1] - 2 * cfg.aux_context_window
    t = frames * cfg.hop_size
    if not 2 <= frames <= engine.max_frames or z.shape != (cfg.in_channels, t):
        raise ValueError(f"a job of {frames} frames (2 to max_frames = {engine.max_frames}) needs noise of shape "
                         f"{(cfg.in_channels, t)}, not {z.shape}")
    beats = t // engine.cols * cfg.out_channels
    model = pwg_engine_cycles(cfg, engine.rows, engine.cols, frames, engine.engine.gate_lanes)
    ddr = engine.store == "ddr"
    memories = activation_memories(engine, latency, p_ready) if ddr else None
    statics = {"frames": frames} | ({"x_base": 0, "skip_base": 0} if ddr else {})
    run = run_streams(engine, generator_streams(engine, fixed, mel, z), {"pcm": beats}, statics, seed=seed,
                      p_valid=p_valid, p_ready=p_ready, memories=memories, tail=1, progress=progress,
                      max_cycles=3 * model + 10_000, backend=backend, name=name)
    pcm, framed = from_block_rows(run.outputs["pcm"], cfg.out_channels, t, engine.cols)
    counts = np.zeros(fixed.saturation_slots(), dtype=np.int64)
    expected = pcm16(fixed.forward(z, mel, counts), cfg.numerics.act)
    flags = np.array([(run.flags["saturation"] >> n) & 1 for n in range(len(counts))], dtype=bool)
    return GeneratorRun(pcm.astype(np.int16), expected,
                        bool(framed and not run.flags["error"] and np.array_equal(pcm, expected)
                             and np.array_equal(flags, counts > 0)),
                        int(run.times["pcm"][-1]) + 1, model, run, flags, counts > 0)
