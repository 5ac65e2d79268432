"""ParallelWaveGAN formats from a checkpoint: profile the float model on a calibration mel, choose every
tensor's format (:class:`~wavefabric.model.pwg.PWGFormats`) by the rule of :mod:`~wavefabric.model.formats`, and
a trained-like generator to test them on.

The profile runs the float generator in the hardware's order on the calibration mel, block by block, twice: once
for every tensor's peak (which chooses the formats), once to count, against the chosen formats, the values that
saturate or lose all precision and to sample the percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .fixed import QFormat
from .formats import WEIGHT_HEADROOM, TensorProfile, act_frac, frac_for, percentiles
from .pwg import (
    BLOCK_FRAMES,
    FRAC_RANGE,
    PWGConfig,
    PWGFormats,
    PWGGenerator,
    job_inputs,
    random_state_dict,
    upsample_table,
)

__all__ = ["CALIBRATION_FRAMES", "calibration_mel", "choose_formats", "profile_pwg", "TRAINED_RANGES",
           "trained_like_state_dict"]

#: Frames of the built-in calibration mel.
CALIBRATION_FRAMES = 24
#: Values kept per tensor and block for the percentiles.
_SAMPLE = 20_000
#: Why a saturation is harmless.
_GATE_NOTE = "tanh/sigmoid input: saturating at act's range changes the table's output by < 2**-22"


def calibration_mel(config: PWGConfig, frames: int = CALIBRATION_FRAMES, seed: int = 0) -> np.ndarray:
    """The built-in calibration mel ``(frames, A)``: normalised like a real one (zero mean, unit variance per
    channel), smooth in time and correlated across channels as speech mels are."""
    rng = np.random.default_rng(seed)
    a = config.aux_channels
    white = rng.standard_normal((frames + 4, a + 8))
    kernel = np.outer(np.hanning(5), np.hanning(9))  # smooth over 5 frames and 9 channels
    smooth = np.array([[np.sum(white[t:t + 5, ch:ch + 9] * kernel) for ch in range(a)] for t in range(frames)])
    return (smooth - smooth.mean(axis=0)) / (smooth.std(axis=0) + 1e-9)


class _Collector:
    """A trace target (``trace[name] = values``) that reduces each value to what the profile needs at once."""

    def __init__(self, formats: Mapping[str, tuple[int, int]] | None = None):
        self.formats = formats  # name -> (width, frac), for the second pass
        self.peak: dict[str, float] = {}
        self.squares: dict[str, float] = {}
        self.lo: dict[str, float] = {}
        self.hi: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.saturated: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.sample: dict[str, list[np.ndarray]] = {}

    def rms(self, name: str) -> float:
        return math.sqrt(self.squares[name] / self.count[name])

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        self.peak[name] = max(self.peak.get(name, 0.0), float(np.max(np.abs(v))))
        self.lo[name] = min(self.lo.get(name, math.inf), float(v.min()))
        self.hi[name] = max(self.hi.get(name, -math.inf), float(v.max()))
        self.count[name] = self.count.get(name, 0) + v.size
        self.squares[name] = self.squares.get(name, 0.0) + float(np.dot(v, v))
        self.sample.setdefault(name, []).append(v[::max(1, v.size // _SAMPLE)])
        if self.formats is not None and name in self.formats:
            width, frac = self.formats[name]
            scaled = np.floor(v * 2.0**frac + 0.5)
            limit = 1 << (width - 1)
            self.saturated[name] = self.saturated.get(name, 0) + int(np.count_nonzero((scaled < -limit)
                                                                                      | (scaled >= limit)))
            self.lost[name] = self.lost.get(name, 0) + int(np.count_nonzero((scaled == 0) & (v != 0)))


def _hardware_order(generator: PWGGenerator) -> PWGGenerator:
    if generator.hardware_order:
        return generator
    return PWGGenerator(generator.config, generator.params, hardware_order=True)


def _trace(generator: PWGGenerator, mel: np.ndarray, seed: int, collector: _Collector) -> None:
    """Run the float generator (hardware order) on ``mel`` block by block into ``collector``."""
    frames = mel.shape[0]
    for f0 in range(0, frames, BLOCK_FRAMES // 4):
        block = mel[f0:f0 + BLOCK_FRAMES // 4]
        if block.shape[0] < 2:
            break
        z, padded = job_inputs(generator.config, block, seed + f0)
        generator.forward(z, padded, trace=collector)


def _weights(generator: PWGGenerator) -> dict[str, np.ndarray]:
    """The float weights of every weight tensor of :class:`PWGFormats`, by its name there."""
    cfg = generator.config
    weights = {"conv_in": generator.weight("upsample_net.conv_in"),
               "first_conv": generator.weight("first_conv"),
               "last1": generator.weight("last_conv_layers.1"),
               "last2": generator.weight("last_conv_layers.3"),
               "table": upsample_table(generator.upsample_stages, cfg.upsample_scales).weights}
    for layer in range(cfg.layers):
        for name, module in (("conv", "conv"), ("aux", "conv1x1_aux"), ("skip", "conv1x1_skip"),
                             ("out", "conv1x1_out")):
            weights[f"layers.{layer}.{name}"] = generator.weight(f"conv_layers.{layer}.{module}")
    return weights


def _choose(config: PWGConfig, weights: dict[str, np.ndarray], measured: _Collector) -> PWGFormats:
    width = config.numerics.act.width
    lo, hi = FRAC_RANGE
    n = config.layers

    def weight(name: str) -> int:
        return frac_for(float(np.max(np.abs(weights[name]))), width, WEIGHT_HEADROOM, lo, hi)

    def act(*names: str, bits: int = width) -> int:  # one format for all of them
        return min(act_frac(measured.peak[name], measured.rms(name), bits, lo, hi) for name in names)

    x = min(act(*(f"x.{layer}" for layer in range(n))), act(*(f"y.{layer}" for layer in range(n - 1)), bits=width + 1)
            if n > 1 else hi)
    table = weight("table")
    # A layer's aux term sits at x + conv - table: the conv weights give up precision if the aux term needs room.
    conv = tuple(min(weight(f"layers.{layer}.conv"), act(f"a.{layer}") + table - x) for layer in range(n))
    return PWGFormats(
        mel=act("mel"), z=act("z"), f=act("f"), x=x, skip=act(*(f"skip.{layer}" for layer in range(n))),
        post=act("post"), hidden=act("hidden"), table=table,
        conv_in=weight("conv_in"), first_conv=weight("first_conv"), last1=weight("last1"), last2=weight("last2"),
        conv=conv, aux=tuple(weight(f"layers.{layer}.aux") for layer in range(n)),
        skip_w=tuple(weight(f"layers.{layer}.skip") for layer in range(n)),
        out_w=tuple(weight(f"layers.{layer}.out") for layer in range(n)))


def choose_formats(generator: PWGGenerator, mel: np.ndarray | None = None, seed: int = 0) -> PWGFormats:
    """Every tensor's format for ``generator``: weights from the checkpoint, activations from the float model
    on ``mel`` ``(frames, A)`` (default :func:`calibration_mel`), by :func:`~wavefabric.model.formats.frac_for`."""
    return profile_pwg(generator, mel, seed, measure=False)[0]


def profile_pwg(generator: PWGGenerator, mel: np.ndarray | None = None, seed: int = 0,
                measure: bool = True) -> tuple[PWGFormats, list[TensorProfile]]:
    """The chosen formats and the profile of every tensor (weights, then activations in the order they are
    computed), on ``mel`` ``(frames, A)`` (default :func:`calibration_mel`) with the noise of ``seed``.

    Activation rows: ``mel``, ``z``, ``f``, ``x`` (every layer's), per layer ``a.l`` (the aux term), ``h.l``
    (the gate's input, in act: its saturation is harmless), ``skip.l``, then ``post``, ``hidden`` and ``out``
    (the waveform, in act). With ``measure=False`` only the formats are computed (one pass).
    """
    cfg = generator.config
    generator = _hardware_order(generator)
    mel = calibration_mel(cfg) if mel is None else np.asarray(mel, dtype=np.float64)
    peaks = _Collector()
    _trace(generator, mel, seed, peaks)
    weights = _weights(generator)
    formats = _choose(cfg, weights, peaks)
    if not measure:
        return formats, []
    num, n = cfg.numerics, cfg.layers
    width, act = num.act.width, num.act.frac
    fm = formats.as_dict()
    acts = {"mel": fm["mel"], "z": fm["z"], "f": fm["f"],
            **{f"x.{layer}": formats.x for layer in range(n)},
            **{f"a.{layer}": formats.aux_term(layer) for layer in range(n)},
            **{f"h.{layer}": act for layer in range(n)},
            **{f"skip.{layer}": formats.skip for layer in range(n)},
            "post": formats.post, "hidden": formats.hidden, "out": act}
    second = _Collector({name: (width, frac) for name, frac in acts.items()})
    _trace(generator, mel, seed, second)
    rows = [TensorProfile.measure(name, "weight", w, QFormat(width, fm[name])) for name, w in weights.items()]
    for name, frac in acts.items():
        stats = percentiles(np.concatenate(second.sample[name]), second.lo[name], second.hi[name])
        rows.append(TensorProfile(name, "act", QFormat(width, frac), *stats, second.count[name],
                                  second.saturated.get(name, 0), second.lost.get(name, 0),
                                  _GATE_NOTE if name.startswith("h.") else ""))
    return formats, rows


#: Ranges measured on a ParallelWaveGAN generator trained on speech (issue 16, ljspeech sizes): the peaks of
#: first_conv's weights, conv_in's output, first_conv's output, the aux terms and the skip sum; and a waveform's.
TRAINED_RANGES = {"first_conv_weight": 4.55, "f": 29.6, "x.0": 19.1, "aux": 26.6, "skips": 96.0, "out": 0.95}


def trained_like_state_dict(config: PWGConfig, seed: int = 0, mel: np.ndarray | None = None,
                            ranges: Mapping[str, float] = TRAINED_RANGES) -> dict[str, np.ndarray]:
    """:func:`~wavefabric.model.pwg.random_state_dict` scaled so that the float model's ranges on ``mel``
    (default :func:`calibration_mel`) are a trained network's (:data:`TRAINED_RANGES`).

    Each scale is linear in its tensors: conv_in's weights set ``f``'s peak, first_conv's set its weights' peak
    (and so ``x.0``'s, with the bias), every aux 1x1 by one factor sets the aux terms' peak, and every skip 1x1
    (weights and bias) by one factor the skip sum's, and the last 1x1 (weights and bias) the waveform's.
    """
    state = random_state_dict(config, seed)
    mel = calibration_mel(config) if mel is None else mel

    def scale(module: str, factor: float, bias: bool = False) -> None:
        keys = [module + (".weight_g" if config.use_weight_norm else ".weight")] + ([module + ".bias"] if bias else [])
        for key in keys:
            state[key] = (state[key] * factor).astype(np.float32)

    def peaks() -> dict[str, float]:
        collector = _Collector()
        _trace(PWGGenerator(config, state, hardware_order=True), mel, seed, collector)
        return collector.peak

    p = peaks()
    scale("upsample_net.conv_in", ranges["f"] / p["f"])
    first = PWGGenerator(config, state).weight("first_conv")
    scale("first_conv", ranges["first_conv_weight"] / float(np.max(np.abs(first))))
    p = peaks()
    aux = ranges["aux"] / max(p[f"a.{layer}"] for layer in range(config.layers))
    for layer in range(config.layers):
        scale(f"conv_layers.{layer}.conv1x1_aux", aux)
    p = peaks()
    for layer in range(config.layers):
        scale(f"conv_layers.{layer}.conv1x1_skip", ranges["skips"] / p["skips"], bias=True)
    p = peaks()
    scale("last_conv_layers.3", ranges["out"] / p["out"], bias=True)
    return state
