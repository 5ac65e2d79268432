"""``wavefabric profile`` and the ``--formats`` option: per-layer number formats chosen from a checkpoint.

``profile NETWORK`` prints every tensor's range against its chosen format, writes box plots of the ranges (PNG)
and the formats JSON. ``--formats F`` gives ``generate --fixed`` and ``sim`` a formats JSON; without it the
formats are chosen from the checkpoint on the calibration input. A run whose values saturate prints one warning
line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .model.files import atomic_write, check_output_file
from .model.formats import TensorProfile, profile_table

__all__ = ["add_formats_option", "pwg_fixed", "samplernn_fixed", "saturation_warning", "pwg_slot_names",
           "write_profile_plot", "add_profile_parser"]


def add_formats_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--formats", metavar="F.json",
                        help="per-tensor number formats (a JSON that `wavefabric profile` writes); default: chosen "
                             "from the checkpoint on the calibration input")


def pwg_fixed(generator, formats: str | None, mel: np.ndarray | None = None):
    """The fixed-point PWG of ``generator``: formats from the JSON ``formats``, or chosen on ``mel`` (default:
    the built-in calibration mel)."""
    from .model.pwg import PWGFixed, PWGFormats
    from .model.pwg_profile import choose_formats

    chosen = PWGFormats.load(formats, generator.config) if formats else choose_formats(generator, mel)
    return PWGFixed(generator, chosen)


def samplernn_fixed(params, formats: str | None, audio: np.ndarray | None = None):
    """The fixed-point SampleRNN of ``params``: formats from the JSON ``formats``, or chosen on ``audio`` codes
    (default: audio the float model generates)."""
    from .model.samplernn import SampleRNNFixed, SampleRNNFormats

    chosen = (SampleRNNFormats.load(formats, params.config) if formats
              else SampleRNNFormats.choose(params, audio))
    return SampleRNNFixed(params, formats=chosen)


def pwg_slot_names(layers: int) -> list[str]:
    """What each saturation slot of the PWG model and accelerator is."""
    return ["the front end"] + [f"layer {n}" for n in range(layers)] + ["the output layers"]


def saturation_warning(saturated: Sequence, names: Sequence[str], command: str) -> str | None:
    """One line naming where values saturated (``saturated[n]`` a count or a flag for ``names[n]``), or None."""
    where = [name for name, hit in zip(names, saturated, strict=True) if hit]
    if not where:
        return None
    listed = ", ".join(where[:6]) + (f" and {len(where) - 6} more" if len(where) > 6 else "")
    counts = sum(int(v) for v in saturated) if all(not isinstance(v, bool | np.bool_) for v in saturated) else None
    what = f"{counts:,} values" if counts is not None else "values"
    return f"wavefabric: warning: {what} saturated in {listed} (see `wavefabric {command}`)"


def warn(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)


def write_profile_plot(path: Path, rows: Sequence[TensorProfile], title: str) -> None:
    """Box plots of every tensor's magnitudes on a log scale (quartiles, 1st to 99th percentile whiskers, the peak
    marked: red if it saturates), each against its format's range (a bar from the smallest step to the largest
    value), weights and activations in two panels, as hls4ml's profiling plots show them."""
    from matplotlib.figure import Figure

    groups = [[r for r in rows if r.kind == kind] for kind in ("weight", "act")]
    height = max(len(g) for g in groups) * 0.16 + 1.5
    figure = Figure(figsize=(13, height))
    for axes, group, label in zip(figure.subplots(1, 2), groups, ("weights", "activations"), strict=True):
        ys = np.arange(len(group))[::-1]
        for y, row in zip(ys, group, strict=True):
            fmt = row.fmt
            axes.plot([fmt.lsb, fmt.max_value], [y, y], color="tab:orange", alpha=0.35, linewidth=6,
                      solid_capstyle="butt")
            p1, q1, median, q3, p99 = (max(m, fmt.lsb / 4) for m in row.magnitudes)  # zero: at the plot's edge
            axes.plot([p1, p99], [y, y], color="tab:blue", linewidth=0.8)
            axes.plot([q1, q3], [y, y], color="tab:blue", linewidth=4)
            axes.plot([median], [y], "|", color="white", markersize=4)
            axes.plot([row.peak], [y], "|", color="red" if row.saturated else "black", markersize=8)
        axes.set_xscale("log", base=2)
        axes.set_yticks(ys, [row.name for row in group], fontsize=6)
        axes.set_xlabel("|value| (orange: the format's range, from its step to its largest value)")
        axes.set_title(label)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)


def _outputs(args, stem: str) -> tuple[Path, Path]:
    """The formats JSON's and the plot's paths, checked before any work (their folder is made when they are
    written, so a run that fails or is interrupted leaves no empty one)."""
    folder = Path(args.output) if args.output else (Path(args.checkpoint).parent if args.checkpoint else Path("."))
    name = Path(args.checkpoint).stem if args.checkpoint else stem
    paths = folder / f"{name}.formats.json", folder / f"{name}.profile.png"
    if folder.exists():
        for path in paths:
            check_output_file(path)
    return paths


def _publish(args, paths: tuple[Path, Path], save, rows: Sequence[TensorProfile], network: str) -> int:
    """Write the formats (``save(path)``) and the plot, print the table and a summary line."""
    json_path, png_path = paths
    json_path.parent.mkdir(parents=True, exist_ok=True)
    save(json_path)
    source = args.checkpoint or f"random weights, seed {args.seed}"
    write_profile_plot(png_path, rows, f"{network} ({source}): ranges against the chosen formats")
    print(profile_table(rows))
    hits = [r for r in rows if r.saturated and not r.note]
    print(f"{len(rows)} tensors; "
          + (f"{len(hits)} saturate ({', '.join(r.name for r in hits[:5])})" if hits else "none saturates")
          + f"; formats -> {json_path}, plot -> {png_path}")
    return 0


def cmd_profile_pwg(args) -> int:
    from .engines import pwg_config
    from .model import pwg
    from .model.pwg_profile import profile_pwg

    config = pwg_config(args)
    paths = _outputs(args, "pwg")
    mel = pwg.load_mel(args.mel, config) if args.mel else None
    generator = (pwg.load_checkpoint(args.checkpoint, config) if args.checkpoint
                 else pwg.from_state_dict(config, pwg.random_state_dict(config, args.seed)))
    formats, rows = profile_pwg(generator, None if mel is None else np.asarray(mel), args.seed)
    return _publish(args, paths, lambda path: formats.save(path, config), rows, "ParallelWaveGAN")


def cmd_profile_samplernn(args) -> int:
    from .engines import samplernn_config
    from .model import samplernn
    from .model.audio import read_wav

    config = samplernn_config(args)
    paths = _outputs(args, "samplernn")
    audio = None
    if args.audio:
        audio = samplernn.audio_codes(read_wav(args.audio)[0], config.q_levels)  # as samplernn-pytorch trains
    params = (samplernn.load_checkpoint(args.checkpoint, config) if args.checkpoint
              else samplernn.SampleRNNParams.from_state_dict(config, samplernn.random_state_dict(config, args.seed)))
    formats, rows = samplernn.profile_samplernn(params, audio)
    return _publish(args, paths, formats.save, rows, "SampleRNN")


def add_profile_parser(commands) -> None:
    from .cli import _Parser
    from .engines import add_samplernn_options, nonnegative, pwg_size_options

    profile = commands.add_parser("profile", help="ranges of a checkpoint's tensors against the formats chosen for "
                                                  "them: a table, box plots (PNG) and the formats JSON")
    networks = profile.add_subparsers(dest="network", required=True, metavar="NETWORK", parser_class=_Parser)
    for name, text, sizes, checkpoint, calibration, seed, run in (
            ("pwg", "ParallelWaveGAN (ljspeech v1 sizes by default)", pwg_size_options,
             "parallel-wavegan checkpoint (.pkl/.pt)",
             ("--mel", "M.npy", "calibration mel, .npy of (frames, 80) or (80, frames) (default: a built-in "
                                "normalised mel of 24 frames)"),
             "seed of the noise (and random weights)", cmd_profile_pwg),
            ("samplernn", "SampleRNN (samplernn-pytorch)", add_samplernn_options,
             "samplernn-pytorch state dict (.pt)",
             ("--audio", "A.wav", "calibration audio, 16-bit PCM WAV, run teacher-forced (default: audio the "
                                  "float model generates, seed 0)"),
             "seed of the random weights", cmd_profile_samplernn)):
        sub = networks.add_parser(name, help=text)
        sizes(sub)
        sub.add_argument("--checkpoint", help=f"{checkpoint}; random weights when omitted")
        sub.add_argument(calibration[0], metavar=calibration[1], help=calibration[2])
        sub.add_argument("--seed", type=nonnegative, default=0, help=seed)
        sub.add_argument("-o", "--output", metavar="DIR", help="folder of the formats JSON and the plot (default: "
                                                              "the checkpoint's folder, or the current one)")
        sub.set_defaults(run=run)
