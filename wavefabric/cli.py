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

from .model import perf, pwg, samplernn
from .model.audio import write_wav

__all__ = ["main"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CliError(f"{self.prog}: {message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


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
    group.add_argument("--frame-sizes", "--frame_sizes", type=_positive_int, nargs="+", default=[16, 4],
                       metavar="N", help="frame size of each tier, bottom first (default: 16 4)")
    group.add_argument("--n-rnn", "--n_rnn", type=_positive_int, default=2, help="GRU layers per tier (default: 2)")
    group.add_argument("--dim", type=_positive_int, default=64, help="GRU and MLP width (default: 64)")
    group.add_argument("--q-levels", "--q_levels", type=_positive_int, default=256,
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
    return 0


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
    generate.add_argument("--sample-rate", type=_positive_int, default=16000,
                          help="SampleRNN output rate in Hz (default: 16000)")
    generate.add_argument("--mel", help="pwg: conditioning features, .npy of (frames, 80) or (80, frames); "
                                        "seeded noise when omitted")
    _add_samplernn_options(generate)
    generate.set_defaults(run=cmd_generate)
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
