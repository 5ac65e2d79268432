"""ParallelWaveGAN generator: checkpoint loading, a float64 model and a bit-exact fixed-point model.

The network is the ``ParallelWaveGANGenerator`` of the ``parallel-wavegan`` package (kan-bayashi) with its
``ConvInUpsampleNetwork``, in the non-causal configuration only (``use_causal_conv=False``), with biases on
every layer that has them in the package (``bias=True``) and no dropout (inference). Shapes follow PyTorch
without the batch axis: signals are ``(channels, time)``.

Float model (``PWGGenerator``)::

    c   = upsample(mel)                        # conv_in (kernel 2w+1, no padding), then per scale s:
                                               #   repeat every frame s times, filter every channel with the
                                               #   same (2s+1)-tap kernel, zero padding s
    x   = first_conv(z)                        # 1x1, in_channels -> R, bias
    for each layer l (dilation 2**(l mod layers_per_stack)):
        h    = conv_l(x) + aux_l(c)            # K taps dilated, zero padding (K-1)/2*d, bias; aux 1x1 no bias
        g    = tanh(h[:G/2]) * sigmoid(h[G/2:])
        s   += skip_l(g)                       # 1x1 G/2 -> S, bias
        x    = (out_l(g) + x) * sqrt(0.5)      # 1x1 G/2 -> R, bias
    y   = last_2(relu(last_1(relu(s * sqrt(1/layers)))))

Every convolution carries weight norm ``w = g v / ||v||`` (norm over all axes but the first) when
``use_weight_norm`` is set, stored as ``weight_g`` / ``weight_v`` as PyTorch's ``weight_norm`` names them.

The hardware's order (``PWGGenerator(..., hardware_order=True)``, and always in ``PWGFixed``) cuts work
without changing the function::

    f   = conv_in(mel)                         # (A, frames): frame-rate conditioning
    for each layer l:
        u_l  = stages(aux_l(f))                # aux 1x1 at frame rate (A -> G), then the upsampling stages
        h    = conv_l(x) + u_l                 #   on its G channels instead of A
        ...                                    # the last layer's out_l is not computed: nothing reads it

In the package (``parallel_wavegan/layers/upsample.py``, ``UpsampleNetwork`` with ``nonlinear_activation=None``
and ``freq_axis_kernel_size=1``, the only case modelled here) each stage is ``Stretch2d`` (nearest repeat) and a
``Conv2d(1, 1, (1, 2s+1), padding (0, s), bias=False)`` over the ``(1, A, T)`` image: the same kernel filters
every channel along time, with zero padding. Every stage is therefore linear, bias-free and per-channel, so it
commutes with ``aux_l``, a channel mix without bias: ``stages(aux_l(f)) = aux_l(stages(f))`` exactly in real
arithmetic (in float64 the two orders differ by rounding only, ~1e-15 relative). It would not hold with a
nonlinearity between the stages or a frequency-axis kernel wider than 1 (neither is in the ljspeech configs),
nor across ``conv_l``'s bias, which therefore stays at sample rate. Work per sample (ljspeech): the aux 1x1s
drop from ``30 * 80 * 128 = 307,200`` MACs to ``30 * 80 * 128 / 256 = 1,200`` plus the stages on ``30 * 128``
channels instead of 80 (about 12 MACs per channel per sample), and the last ``out_l`` saves ``64 * 64``.

Fixed-point model (``PWGFixed``, :func:`residual_layer_fixed`): the hardware order on integers with the kernels
of :mod:`~wavefabric.model.kernels`; the formats and every narrowing are stated on the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import load_torch_file, read_state_dict, weight_norm
from .fixed import MAX_WIDTH, QFormat, accumulator_width, int_matmul, narrow, narrow_counted
from .formats import FormatsError, load_formats, save_formats
from .kernels import (
    Numerics,
    accumulate,
    float_sigmoid,
    gated_activation,
    im2col,
    relu,
    weight_norm_operands,
)
from .kernels import weight_norm as int_weight_norm

__all__ = [
    "BLOCK_FRAMES",
    "PWG_NUMERICS",
    "PWGConfig",
    "ResidualLayer",
    "UpsampleTable",
    "upsample_geometry",
    "upsample_table",
    "PWGGenerator",
    "PWGFixed",
    "random_state_dict",
    "from_state_dict",
    "context_frames",
    "load_mel",
    "load_checkpoint",
    "residual_layer",
    "residual_layer_fixed",
    "snr_db",
    "check_output_layer",
    "PCM_FORMAT",
    "pcm16",
    "MAX_SHIFT",
    "FRAC_RANGE",
    "LayerShifts",
    "PWGShifts",
    "PWGFormats",
    "skip_scale_constant",
    "job_inputs",
]

#: Default formats of the PWG datapath: act Q5.11 (range [-16, 16)), weight Q3.13 (range [-4, 4)), gate Q1.15,
#: 256-segment tables. The first 1x1 conv has one input channel, so its weight-normed weights are
#: ``g * sign(v)``, Kaiming-initialised at std sqrt(2) (peaks ~3.4: Q2.14 saturates them); with noise peaks
#: ~4.5 its outputs reach ~14 (Q4.12 saturates them). Waveform SNR against float, 1 s of audio at ljspeech
#: sizes, random trained-like weights and mels (3-4 seeds): Numerics() 20-22 dB, weight Q3.13 alone 37-39 dB,
#: these 51-55 dB (1024-segment tables would add 3 dB). In the hardware order (``PWGFixed``), seeds 0-7 of
#: ``benchmarks/models.py``'s setting: 49.6-56.1 dB (within 0.1 dB of the package's order), except seed 3 at
#: 38.5 dB in both orders: its first 1x1's outputs peak at 18 and saturate act.
PWG_NUMERICS = Numerics(act=QFormat(16, 11), weight=QFormat(16, 13))


@dataclass(frozen=True)
class PWGConfig:
    """Sizes and formats of a ParallelWaveGAN generator (defaults: ``parallel_wavegan.v1.yaml``, LJSpeech).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the noise input and of the waveform output (>= 1).
    kernel_size : int
        Taps of the dilated convolutions: odd (non-causal, symmetric padding), >= 1.
    layers, stacks : int
        Residual layers (>= 1) in ``stacks`` dilation cycles; ``layers`` must be divisible by ``stacks``.
        Layer ``l`` has dilation ``2**(l mod (layers / stacks))``.
    residual_channels, gate_channels, skip_channels, aux_channels : int
        R, G, S and A (>= 1); ``gate_channels`` is even (split into tanh and sigmoid halves).
    aux_context_window : int
        w >= 0: ``conv_in`` has ``2w + 1`` taps and the mel input is padded by w frames on each side.
    upsample_scales : tuple of int
        Nearest-neighbour stretch factors (each >= 1, at least one); their product is the hop size.
    sample_rate : int
        Output sample rate in Hz (>= 1); only the real-time figures use it.
    use_weight_norm : bool
        Whether checkpoints store ``weight_g``/``weight_v`` (True) or plain ``weight`` tensors.
    numerics : Numerics
        Fixed-point formats (default :data:`PWG_NUMERICS`). Only the non-causal network is modelled.
    """

    in_channels: int = 1
    out_channels: int = 1
    kernel_size: int = 3
    layers: int = 30
    stacks: int = 3
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 64
    aux_channels: int = 80
    aux_context_window: int = 2
    upsample_scales: tuple[int, ...] = (4, 4, 4, 4)
    sample_rate: int = 22050
    use_weight_norm: bool = True
    numerics: Numerics = PWG_NUMERICS

    def __post_init__(self):
        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name in ("in_channels", "out_channels", "kernel_size", "layers", "stacks", "residual_channels",
                     "gate_channels", "skip_channels", "aux_channels", "sample_rate"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"PWGConfig.{name} must be an integer >= 1, not {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"PWGConfig.kernel_size must be odd (non-causal only), not {self.kernel_size}")
        if self.layers % self.stacks:
            raise ValueError(
                f"PWGConfig.layers must be divisible by stacks = {self.stacks}, not {self.layers}"
            )
        if self.gate_channels % 2:
            raise ValueError(f"PWGConfig.gate_channels must be even, not {self.gate_channels}")
        if not is_int(self.aux_context_window) or self.aux_context_window < 0:
            raise ValueError(
                f"PWGConfig.aux_context_window must be an integer >= 0, not {self.aux_context_window!r}"
            )
        # A list (as read from the package's YAML) is accepted and frozen into a tuple.
        scales = self.upsample_scales
        if (not isinstance(scales, tuple | list) or not scales
                or not all(is_int(s) and s >= 1 for s in scales)):
            raise ValueError(
                f"PWGConfig.upsample_scales must be a non-empty sequence of integers >= 1, not {scales!r}"
            )
        object.__setattr__(self, "upsample_scales", tuple(int(s) for s in scales))
        if not isinstance(self.use_weight_norm, bool):
            raise ValueError(f"PWGConfig.use_weight_norm must be a bool, not {self.use_weight_norm!r}")
        if not isinstance(self.numerics, Numerics):
            raise ValueError(f"PWGConfig.numerics must be a Numerics, not {self.numerics!r}")
        self._check_widths()

    def _check_widths(self) -> None:
        """Raise if an accumulator of the fixed-point model could exceed MAX_WIDTH bits."""
        num = self.numerics
        w = self.aux_context_window
        reductions = {
            "first_conv": self.in_channels,
            "conv_in": self.aux_channels * (2 * w + 1),
            "upsample conv": 2 * max(self.upsample_scales) + 1,
            "dilated conv + aux": self.residual_channels * self.kernel_size + self.aux_channels,
            "skip/out 1x1": self.gate_channels // 2,
            "last 1x1": self.skip_channels,
        }
        # The out 1x1 accumulator is preloaded with bias + residual: one bit wider than act.
        preload = QFormat(num.act.width + 1, num.act.frac)
        for what, length in reductions.items():
            width = accumulator_width(num.act, num.weight, length, preload)
            if width > MAX_WIDTH:
                raise ValueError(
                    f"PWGConfig.numerics: the {what} accumulator (reduction {length}) needs {width} bits, "
                    f"more than {MAX_WIDTH}"
                )
        skip_sum = num.act.width + self.layers.bit_length()
        if skip_sum + num.gate.width > MAX_WIDTH:
            raise ValueError(
                f"PWGConfig.numerics: the skip sum ({skip_sum} bits) times a {num.gate.width}-bit constant "
                f"exceeds {MAX_WIDTH} bits"
            )

    @property
    def hop_size(self) -> int:
        """Output samples per mel frame: the product of ``upsample_scales``."""
        return math.prod(self.upsample_scales)

    @property
    def layers_per_stack(self) -> int:
        return self.layers // self.stacks

    def dilation(self, layer: int) -> int:
        """Dilation of residual layer ``layer``: ``2**(layer mod layers_per_stack)``."""
        return 2 ** (layer % self.layers_per_stack)

    def conv_shapes(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        """Every convolution of the generator: state-dict module name to (weight shape, has bias).

        Names are the package's: ``upsample_net.upsample.up_layers`` alternates Stretch2d (even indices, no
        parameters) and Conv2d (odd indices); ``last_conv_layers`` is ReLU, 1x1, ReLU, 1x1.
        """
        r, g, s, a = self.residual_channels, self.gate_channels, self.skip_channels, self.aux_channels
        shapes = {"first_conv": ((r, self.in_channels, 1), True),
                  "upsample_net.conv_in": ((a, a, 2 * self.aux_context_window + 1), False)}
        for i, scale in enumerate(self.upsample_scales):
            shapes[f"upsample_net.upsample.up_layers.{2 * i + 1}"] = ((1, 1, 1, 2 * scale + 1), False)
        for layer in range(self.layers):
            prefix = f"conv_layers.{layer}."
            shapes[prefix + "conv"] = ((g, r, self.kernel_size), True)
            shapes[prefix + "conv1x1_aux"] = ((g, a, 1), False)
            shapes[prefix + "conv1x1_skip"] = ((s, g // 2, 1), True)
            shapes[prefix + "conv1x1_out"] = ((r, g // 2, 1), True)
        shapes["last_conv_layers.1"] = ((s, s, 1), True)
        shapes["last_conv_layers.3"] = ((self.out_channels, s, 1), True)
        return shapes

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of a generator state dict with this config: name to shape, in the package's order."""
        tensors = {}
        for module, (shape, has_bias) in self.conv_shapes().items():
            if has_bias:
                tensors[module + ".bias"] = (shape[0],)
            if self.use_weight_norm:
                tensors[module + ".weight_g"] = (shape[0],) + (1,) * (len(shape) - 1)
                tensors[module + ".weight_v"] = shape
            else:
                tensors[module + ".weight"] = shape
        return tensors


def random_state_dict(config: PWGConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A float32 generator state dict with the package's names and shapes and trained-like scales.

    Convolutions get the package's Kaiming-normal initialisation (ReLU gain, ``std = sqrt(2 / fan_in)``);
    upsampling Conv2d kernels are ``1/(2s+1)`` (the package's constant init) times ``1 + 0.1 N(0, 1)``.
    Unlike a fresh network, biases are ``0.1 N(0, 1)`` and ``weight_g`` is ``||v|| (1 + 0.1 N(0, 1))``, so
    that bias paths and the weight-norm scale are exercised as in a trained checkpoint.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for module, (shape, has_bias) in config.conv_shapes().items():
        if module.startswith("upsample_net.upsample."):
            weight = (1 + 0.1 * rng.standard_normal(shape)) / shape[-1]
        else:
            weight = rng.standard_normal(shape) * math.sqrt(2.0 / math.prod(shape[1:]))
        if has_bias:
            state[module + ".bias"] = 0.1 * rng.standard_normal(shape[0])
        if config.use_weight_norm:
            norm = np.sqrt(np.sum(weight**2, axis=tuple(range(1, weight.ndim)), keepdims=True))
            state[module + ".weight_g"] = norm * (1 + 0.1 * rng.standard_normal(norm.shape))
            state[module + ".weight_v"] = weight
        else:
            state[module + ".weight"] = weight
    return {name: value.astype(np.float32) for name, value in state.items()}


#: Buffers ``register_stats`` may add to a generator state dict; the models here take normalised mels.
_IGNORED_TENSORS = ("mean", "scale")


def _conv_taps(x: np.ndarray, w: np.ndarray, dilation: int, padding: int) -> np.ndarray:
    """Float ``Conv1d`` (no bias) of x ``(C, T)`` by w ``(O, C, K)``: one matrix product per tap."""
    k_size = w.shape[2]
    t_out = x.shape[1] + 2 * padding - dilation * (k_size - 1)
    xp = np.pad(x, ((0, 0), (padding, padding))) if padding else x
    y = w[:, :, 0] @ xp[:, :t_out]
    for k in range(1, k_size):
        y += w[:, :, k] @ xp[:, k * dilation:k * dilation + t_out]
    return y


def _time_filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Filter every row of x ``(C, T)`` with the same odd-length kernel h, zero padding ``len(h) // 2``."""
    pad = len(h) // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    y = h[0] * xp[:, :x.shape[1]]
    for j in range(1, len(h)):
        y += h[j] * xp[:, j:j + x.shape[1]]
    return y


@dataclass(frozen=True)
class ResidualLayer:
    """Weights of one residual block: float64 for the float model, int64 for the fixed-point model.

    In the fixed-point model the weight matrices are ``num.weight`` integers and the biases ``num.act``
    integers. ``G`` gate, ``R`` residual, ``S`` skip, ``A`` aux channels, ``K`` taps.

    Attributes
    ----------
    conv : (G, R, K) dilated convolution weight (PyTorch layout).
    conv_bias : (G,)
    aux : (G, A) 1x1 conditioning weight (no bias).
    skip, skip_bias : (S, G/2), (S,)
    out, out_bias : (R, G/2), (R,)
    dilation : int
    """

    conv: np.ndarray
    conv_bias: np.ndarray
    aux: np.ndarray
    skip: np.ndarray
    skip_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    dilation: int

    @property
    def kernel_size(self) -> int:
        return self.conv.shape[2]

    @property
    def padding(self) -> int:
        """Zero padding at each end: ``(K - 1) / 2 * dilation`` keeps the length (non-causal)."""
        return (self.kernel_size - 1) // 2 * self.dilation

    def gemm_weight(self) -> np.ndarray:
        """The ``(G, R*K + A)`` matrix of the gate GEMM: ``[conv.reshape(G, R*K) | aux]``.

        Column ``r*K + k`` multiplies tap ``k`` of residual channel ``r`` (the :func:`~.kernels.im2col` row
        order); columns ``R*K + a`` multiply conditioning channel ``a``.
        """
        return np.concatenate([self.conv.reshape(self.conv.shape[0], -1), self.aux], axis=1)


def residual_layer(x: np.ndarray, c: np.ndarray, layer: ResidualLayer, *, aux_applied: bool = False,
                   residual_out: bool = True, trace: dict | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Float residual block: ``(x_next, skip)`` from x ``(R, T)`` and conditioning c.

    ``h = conv(x) + conv_bias + aux @ c``; ``g = tanh(h[:G/2]) * sigmoid(h[G/2:])``;
    ``skip = skip @ g + skip_bias``; ``x_next = (out @ g + out_bias + x) * sqrt(0.5)``.

    ``c`` is the upsampled conditioning ``(A, T)``, or with ``aux_applied`` the layer's aux term ``(G, T)``
    already computed (the hardware order: ``aux @`` at frame rate, then upsampled), which is added in place
    of ``aux @ c``. With ``residual_out=False`` (the last layer) ``x_next`` is not computed and is None.
    A ``trace`` dict receives the gate's input ``h`` and, with ``residual_out``, ``y`` (the out 1x1 plus the
    residual, before the scale).
    """
    half = layer.conv.shape[0] // 2
    h = _conv_taps(x, layer.conv, layer.dilation, layer.padding)
    h += c if aux_applied else layer.aux @ c
    h += layer.conv_bias[:, None]
    g = np.tanh(h[:half]) * float_sigmoid(h[half:])
    skip = layer.skip @ g + layer.skip_bias[:, None]
    if trace is not None:
        trace["h"] = h
    if not residual_out:
        return None, skip
    y = layer.out @ g + layer.out_bias[:, None] + x
    if trace is not None:
        trace["y"] = y
    return y * math.sqrt(0.5), skip


@dataclass(frozen=True)
class LayerShifts:
    """The narrowing shifts of one residual layer (fractional bits dropped): the gate GEMM's (into the gate's
    input, ``numerics.act``), the skip 1x1's and the out 1x1's (with the residual). Biases are stored at their
    output's format and enter the accumulator shifted left by the same amount."""

    gate: int
    skip: int
    out: int

    @classmethod
    def uniform(cls, num: Numerics) -> LayerShifts:
        """Every activation in ``num.act``, every weight in ``num.weight``: each shift is ``weight.frac``."""
        return cls(num.weight.frac, num.weight.frac, num.weight.frac)


def _narrow_counted(acc: np.ndarray, shift: int, fmt: QFormat, counts: np.ndarray | None, at: int,
                    relu_after: bool = False) -> np.ndarray:
    """:func:`~.fixed.narrow_counted` into ``fmt``'s width, adding the saturated values to ``counts[at]``."""
    y, saturated = narrow_counted(acc, shift, fmt, relu_after)
    if counts is not None:
        counts[at] += saturated
    return y


def _mac(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, shift: int, fmt: QFormat,
         counts: np.ndarray | None = None, at: int = 0) -> np.ndarray:
    """``narrow(w @ x + (bias << shift))`` by ``shift`` bits (bias at the output's format): one exact accumulation."""
    return _narrow_counted(accumulate(w, x, bias, shift), shift, fmt, counts, at)


def residual_layer_fixed(x: np.ndarray, c: np.ndarray, layer: ResidualLayer, num: Numerics, *,
                         aux_applied: bool = False, residual_out: bool = True, relu_gate: bool = False,
                         shifts: LayerShifts | None = None, counts: np.ndarray | None = None,
                         at: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """Fixed-point residual block: the integers the conv engine must produce for one layer.

    Parameters
    ----------
    x : (R, T) int64 in ``num.act``
        Residual input.
    c : (A, T) int64 in ``num.act``, or with ``aux_applied`` (G, T) int64 at the accumulator's scale
        Upsampled conditioning (the package's order, the residual engine's ``c`` stream); or the layer's aux
        term as the hardware order computes it, exactly, inside the gate accumulator (``acc_frac`` fractional
        bits: :meth:`PWGFixed.upsample`).
    layer : ResidualLayer
        Weights in ``num.weight``, biases in ``num.act`` (as :class:`PWGFixed` builds them).
    num : Numerics
    aux_applied : bool
        Whether ``c`` is the aux term (True) rather than the conditioning (False, the residual engine's
        order: the aux 1x1 in the gate GEMM).
    residual_out : bool
        False for the last layer, whose residual output nothing reads: step 4 is skipped.
    relu_gate : bool
        Step 2 computes ``g = relu(h[:G/2])`` instead: the generator's output layers in the residual engine's
        form (:meth:`PWGFixed.output_layer`).
    shifts : LayerShifts, optional
        The layer's narrowing shifts (default :meth:`LayerShifts.uniform`: every value in ``num.act``). The
        widths are ``num``'s; where the binary points sit is the caller's (:class:`PWGFormats`).
    counts, at : optional
        ``counts[at]`` is incremented by the number of values that saturate when narrowed into a stored format:
        skip, ``y`` and ``x_next``, and with ``relu_gate`` the values of ``h[:G/2]`` that saturate high (a tanh
        or sigmoid input that saturates at act's ±16 changes the table's output by less than 2**-22, and a
        negative one before a relu is zero all the same, so those are not counted).

    Returns
    -------
    x_next : (R, T) int64 in ``num.act``, or None if not ``residual_out``
    skip : (S, T) int64 in ``num.act``

    Notes
    -----
    Every narrowing drops the layer's shift (``shifts``; below, the uniform formats' ``weight.frac``).

    1. Gate GEMM, one exact accumulation per output, narrowed once to ``act``. Without ``aux_applied``,
       ``R*K + A`` products::

           cols = [im2col(x, K, dilation, padding) ; c]          # (R*K + A, T), zero padding at both ends
           h    = linear(layer.gemm_weight(), cols, conv_bias)  # (G, T) act

       With ``aux_applied``, the ``R*K`` products plus the aux term, which is already a sum of products at the
       accumulator's scale, and the bias, in one exact sum narrowed once::

           h    = narrow(conv.reshape(G, R*K) @ im2col(x, K, dilation, padding) + (conv_bias << weight.frac) + c)

    2. ``g = gated_activation(h[:G/2], h[G/2:])``: tanh and sigmoid tables to ``gate``, product narrowed
       to ``act``.
    3. ``skip = linear(layer.skip, g, skip_bias)``, narrowed to ``act``.
    4. The residual is added inside the out 1x1's accumulator, which is preloaded with
       ``(out_bias + x) << weight.frac`` (exact), and narrowed once to ``Q(act.width + 1, act.frac)``: one
       bit wider than ``act``, so the sum of two act-range values cannot saturate. Then
       ``x_next = mul_const(y, sqrt(0.5))``: times sqrt(0.5) quantised to ``gate``, narrowed to ``act``
       (a 17 x 16-bit product at the defaults, one DSP48E1).
    """
    act = num.act
    s = shifts or LayerShifts.uniform(num)
    cols = im2col(x, layer.kernel_size, layer.dilation, layer.padding)
    acc = accumulate(layer.conv.reshape(layer.conv.shape[0], -1), cols, layer.conv_bias, s.gate)
    acc = acc + (c if aux_applied else int_matmul(layer.aux, c))
    half = acc.shape[0] // 2
    if relu_gate:
        g = _narrow_counted(acc[:half], s.gate, act, counts, at, relu_after=True)
    else:
        h = _narrow_counted(acc, s.gate, act, None, at)
        g = gated_activation(h[:half], h[half:], num)
    skip = _mac(layer.skip, g, layer.skip_bias, s.skip, act, counts, at)
    if not residual_out:
        return None, skip
    # The residual enters beside the out bias: x, the bias and y share the residual stream's format.
    wide = QFormat(act.width + 1, act.frac)
    y = _narrow_counted(accumulate(layer.out, g, layer.out_bias[:, None] + x, s.out), s.out, wide, counts, at)
    return _narrow_counted(y * num.gate.quantize(math.sqrt(0.5)), num.gate.frac, act, counts, at), skip


def _check_inputs(config: PWGConfig, z: np.ndarray, c: np.ndarray) -> None:
    """Raise ValueError unless z is ``(in_channels, T)`` and c ``(aux_channels, T / hop + 2w)``."""
    if z.ndim != 2 or z.shape[0] != config.in_channels:
        raise ValueError(f"z must have shape (in_channels={config.in_channels}, T), not {z.shape}")
    frames = z.shape[1] // config.hop_size
    padded = frames + 2 * config.aux_context_window
    if frames < 1 or z.shape[1] % config.hop_size or c.shape != (config.aux_channels, padded):
        raise ValueError(
            f"c must have shape (aux_channels={config.aux_channels}, T / hop_size + 2 * aux_context_window) "
            f"with T a positive multiple of hop_size={config.hop_size}; got z {z.shape}, c {c.shape}"
        )


def _check_mel(config: PWGConfig, c) -> None:
    """Raise ValueError unless ``c`` is a package-layout mel ``(frames >= 1, aux_channels)``."""
    shape = tuple(c.shape)
    if len(shape) != 2 or shape[1] != config.aux_channels or shape[0] < 1:
        raise ValueError(f"c must have shape (frames >= 1, aux_channels={config.aux_channels}), not {shape}")


def load_mel(path: str | Path, config: PWGConfig) -> np.ndarray:
    """A mel from a NumPy ``.npy`` file, ``(frames, A)`` or ``(A, frames)``, as ``(frames, A)`` (memory-mapped).

    Raises
    ------
    ValueError
        One line naming the file: not an ``.npy`` array, not 2-D numbers with ``aux_channels`` channels, no
        frames, or NaN / infinite values.
    """
    try:
        mel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"--mel {path}: not a NumPy .npy array ({reason})") from None
    if mel.ndim != 2 or config.aux_channels not in mel.shape or not np.issubdtype(mel.dtype, np.number):
        raise ValueError(f"--mel {path}: expected a 2-D array of numbers with {config.aux_channels} channels, "
                         f"not {mel.dtype} of shape {mel.shape}")
    mel = mel if mel.shape[1] == config.aux_channels else mel.T
    if len(mel) == 0:
        raise ValueError(f"--mel {path} has no frames")
    if not np.isfinite(mel).all():
        raise ValueError(f"--mel {path} holds NaN or infinite values")
    return mel


def context_frames(config: PWGConfig) -> int:
    """Mel frames of context each side of a block that make blockwise generation exact.

    Every sample depends on the noise and conditioning at most ``H + U`` samples away: ``H`` is the residual
    stack's half receptive field (``sum((K - 1) / 2 * dilation)`` over the layers) and ``U`` the upsampler's
    (each stage's ``s`` taps at its resolution: ``sum(s_i * prod(later scales))``). Zero padding at a block's
    edges can only disturb samples that close to them, so a block computed with this many frames of context
    each side equals the whole-signal result (``conv_in`` sees real neighbouring frames, not padding).
    """
    half = sum((config.kernel_size - 1) // 2 * config.dilation(layer) for layer in range(config.layers))
    scales = config.upsample_scales
    upsample = sum(s * math.prod(scales[i + 1:]) for i, s in enumerate(scales))
    return -(-(half + upsample) // config.hop_size)


class _NoiseStream:
    """The standard normal noise ``z``, time-major from one seeded stream, read in non-decreasing windows."""

    def __init__(self, channels: int, seed: int):
        self._rng = np.random.default_rng(seed)
        self._buffer = np.zeros((0, channels))
        self._start = 0

    def take(self, start: int, stop: int) -> np.ndarray:
        """Noise samples ``[start, stop)`` as ``(channels, stop - start)``; earlier samples are forgotten."""
        end = self._start + len(self._buffer)
        if stop > end:
            fresh = self._rng.standard_normal((stop - end, self._buffer.shape[1]))
            self._buffer = np.concatenate([self._buffer, fresh])
        self._buffer = self._buffer[start - self._start:]
        self._start = start
        return self._buffer[:stop - start].T


#: Mel frames per block of :meth:`PWGGenerator.inference_blocks` (65,536 samples at hop 256).
BLOCK_FRAMES = 256


def _inference_blocks(config: PWGConfig, forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      quantize_noise: Callable[[np.ndarray], np.ndarray],
                      quantize_mel: Callable[[np.ndarray], np.ndarray], dequantize: Callable[[np.ndarray], np.ndarray],
                      c, seed: int, block_frames: int, progress: Callable[[int], object] | None):
    """``forward`` over blocks of ``block_frames`` frames with :func:`context_frames` of context: see
    :meth:`PWGGenerator.inference_blocks`."""
    if not hasattr(c, "shape"):
        c = np.asarray(c, dtype=np.float64)
    _check_mel(config, c)
    frames, hop, w = c.shape[0], config.hop_size, config.aux_context_window
    if not isinstance(block_frames, int) or isinstance(block_frames, bool) or block_frames < 1:
        raise ValueError(f"block_frames must be an integer >= 1, not {block_frames!r}")
    margin = context_frames(config)
    noise = _NoiseStream(config.in_channels, seed)
    for f0 in range(0, frames, block_frames):
        f1 = min(frames, f0 + block_frames)
        e0, e1 = max(0, f0 - margin), min(frames, f1 + margin)
        lo, hi = max(0, e0 - w), min(frames, e1 + w)
        mel = np.asarray(c[lo:hi], dtype=np.float64)
        # Edge replication (the package's ReplicationPad1d) where the padded range leaves the mel.
        padded = mel[np.clip(np.arange(e0 - w, e1 + w), 0, frames - 1) - lo].T
        y = dequantize(forward(quantize_noise(noise.take(e0 * hop, e1 * hop)), quantize_mel(padded)))
        block = y[:, (f0 - e0) * hop:(f1 - e0) * hop].T
        if progress is not None:
            progress(len(block))
        yield block


class PWGGenerator:
    """Float64 ParallelWaveGAN generator built from a package state dict (see :func:`from_state_dict`).

    Parameters
    ----------
    config : PWGConfig
    state_dict : mapping of name to NumPy array or torch tensor
        The generator's tensors, validated as :func:`from_state_dict` describes.
    fold_weight_norm : bool
        True: compute ``w = g v / ||v||`` once here. False: recompute it on every forward call (as the
        package does while training); the results are identical.
    hardware_order : bool
        False (default): the package's order of operations, so that results match PyTorch to rounding.
        True: the hardware's (module docstring): each layer's aux 1x1 at frame rate, then upsampled, and no
        ``conv1x1_out`` in the last layer; the same function, different float rounding (~1e-15 relative).

    Attributes
    ----------
    params : dict of str to float64 ndarray
        The checkpoint's tensors (``weight_g``, ``weight_v``, ``bias`` or ``weight``).
    """

    def __init__(self, config: PWGConfig, state_dict: Mapping, fold_weight_norm: bool = True,
                 hardware_order: bool = False):
        if not isinstance(config, PWGConfig):
            raise ValueError(f"config must be a PWGConfig, not {config!r}")
        arrays = read_state_dict(state_dict, config.tensor_shapes(), weight_norm_option="use_weight_norm",
                                 ignored=_IGNORED_TENSORS)
        self.config = config
        self.fold_weight_norm = fold_weight_norm
        self.hardware_order = hardware_order
        self.params = arrays
        self._folded = {m: self._compute_weight(m) for m in config.conv_shapes()} if fold_weight_norm else None

    def _compute_weight(self, module: str) -> np.ndarray:
        if self.config.use_weight_norm:
            return weight_norm(self.params[module + ".weight_g"], self.params[module + ".weight_v"])
        return self.params[module + ".weight"]

    def weight(self, module: str) -> np.ndarray:
        """Effective float weight of a convolution (state-dict module name, e.g. ``'conv_layers.3.conv'``)."""
        return self._folded[module] if self._folded is not None else self._compute_weight(module)

    def bias(self, module: str) -> np.ndarray:
        return self.params[module + ".bias"]

    def layer(self, index: int) -> ResidualLayer:
        """Float weights of residual layer ``index``."""
        p = f"conv_layers.{index}."
        return ResidualLayer(
            conv=self.weight(p + "conv"), conv_bias=self.bias(p + "conv"),
            aux=self.weight(p + "conv1x1_aux")[:, :, 0],
            skip=self.weight(p + "conv1x1_skip")[:, :, 0], skip_bias=self.bias(p + "conv1x1_skip"),
            out=self.weight(p + "conv1x1_out")[:, :, 0], out_bias=self.bias(p + "conv1x1_out"),
            dilation=self.config.dilation(index),
        )

    def upsample(self, c: np.ndarray) -> np.ndarray:
        """ConvInUpsampleNetwork: mel ``(A, frames + 2w)`` to conditioning ``(A, frames * hop)``.

        :meth:`frame_conditioning`, then :meth:`upsample_stages`.
        """
        return self.upsample_stages(self.frame_conditioning(c))

    def frame_conditioning(self, c: np.ndarray) -> np.ndarray:
        """``conv_in`` (``2w + 1`` taps, no padding, no bias): mel ``(A, frames + 2w)`` to ``(A, frames)``."""
        return _conv_taps(np.asarray(c, dtype=np.float64), self.weight("upsample_net.conv_in"), 1, 0)

    def upsample_stages(self, c: np.ndarray) -> np.ndarray:
        """The upsampling stages on any number of channels: ``(channels, L)`` to ``(channels, L * hop)``.

        For each scale s: repeat every column s times (nearest ``Stretch2d``) and filter every channel with
        the ``(1, 2s+1)`` Conv2d kernel, zero padding s.
        """
        scales = self.config.upsample_scales
        kernels = [self.weight(f"upsample_net.upsample.up_layers.{2 * i + 1}").reshape(-1) for i in range(len(scales))]
        return _stretch_and_filter(c, kernels, scales)

    def forward(self, z: np.ndarray, c: np.ndarray, trace: dict | None = None) -> np.ndarray:
        """Generator forward: noise z ``(in_channels, T)`` and padded mel c ``(A, T / hop + 2w)`` to
        ``(out_channels, T)`` (the package's ``forward`` without the batch axis).

        A ``trace`` dict (hardware order only) receives every value the hardware narrows, under the names of
        :class:`PWGFormats`' tensors: ``mel``, ``z``, ``f``, ``x.0`` (first_conv's output), per layer ``a.l``
        (the aux term at frame rate), ``h.l`` (the gate's input), ``skip.l``, ``y.l`` and ``x.l+1``; ``skips``
        (their sum), ``post`` (the output layers' input), ``hidden`` (``relu(last1 ...)``) and ``out``.
        """
        z = np.asarray(z, dtype=np.float64)
        c = np.asarray(c, dtype=np.float64)
        _check_inputs(self.config, z, c)
        hardware = self.hardware_order
        if trace is not None and not hardware:
            raise ValueError("a trace needs the hardware order (hardware_order=True)")
        record = trace.__setitem__ if trace is not None else (lambda name, value: None)
        record("mel", c)
        record("z", z)
        c = self.frame_conditioning(c) if hardware else self.upsample(c)
        record("f", c)
        x = self.weight("first_conv")[:, :, 0] @ z + self.bias("first_conv")[:, None]
        record("x.0", x)
        skips = 0.0
        for index in range(self.config.layers):
            layer = self.layer(index)
            if hardware:
                a = layer.aux @ c
                record(f"a.{index}", a)
            cond = self.upsample_stages(a) if hardware else c
            inner = {} if trace is not None else None
            x, skip = residual_layer(x, cond, layer, aux_applied=hardware, trace=inner,
                                     residual_out=not hardware or index < self.config.layers - 1)
            for name, value in (inner or {}).items():
                record(f"{name}.{index}", value)
            record(f"skip.{index}", skip)
            if x is not None:
                record(f"x.{index + 1}", x)
            skips = skips + skip
        record("skips", skips)
        h = np.maximum(skips * math.sqrt(1.0 / self.config.layers), 0.0)
        record("post", h)
        h = np.maximum(self.weight("last_conv_layers.1")[:, :, 0] @ h + self.bias("last_conv_layers.1")[:, None],
                       0.0)
        record("hidden", h)
        y = self.weight("last_conv_layers.3")[:, :, 0] @ h + self.bias("last_conv_layers.3")[:, None]
        record("out", y)
        return y

    def inference(self, c, seed: int = 0) -> np.ndarray:
        """Waveform ``(frames * hop, out_channels)`` from a normalised mel ``(frames, A)`` (package layout).

        As the package's ``inference``: the mel is edge-padded by ``aux_context_window`` frames each side and
        the noise is standard normal, here drawn time-major from ``np.random.default_rng(seed)``. The result
        is :meth:`inference_blocks` joined.
        """
        return np.concatenate(list(self.inference_blocks(c, seed)))

    def inference_blocks(self, c, seed: int = 0, block_frames: int = BLOCK_FRAMES,
                         progress: Callable[[int], object] | None = None) -> Iterator[np.ndarray]:
        """:meth:`inference` in blocks of ``block_frames * hop`` samples ``(samples, out_channels)``, in order.

        Each block is computed from its frames plus :func:`context_frames` of context each side, so memory
        does not grow with the length of ``c`` and the joined blocks equal the whole-signal forward pass.
        ``c`` is any ``(frames, A)`` array-like that can be sliced (a memory-mapped ``.npy`` works);
        ``progress`` is called with the samples of each block.
        """
        return _inference_blocks(self.config, self.forward, _same, _same, _same, c, seed, block_frames, progress)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def from_state_dict(config: PWGConfig, state_dict: Mapping, fold_weight_norm: bool = True,
                    hardware_order: bool = False) -> PWGGenerator:
    """A float generator from a ``ParallelWaveGANGenerator`` state dict (options as :class:`PWGGenerator`).

    Every tensor ``config.tensor_shapes()`` lists must be present with that shape; values may be NumPy
    arrays or torch tensors (read through ``.detach().cpu().numpy()``; torch is not imported). Names from
    ``torch.nn.utils.parametrizations.weight_norm`` (``...parametrizations.weight.original0/1``) are
    accepted as ``weight_g``/``weight_v``. The ``mean``/``scale`` buffers of ``register_stats`` are ignored.

    Raises
    ------
    ValueError
        One line naming the first missing, mis-shaped, non-finite or unexpected tensor.
    """
    return PWGGenerator(config, state_dict, fold_weight_norm, hardware_order)


def load_checkpoint(path: str | Path, config: PWGConfig, fold_weight_norm: bool = True) -> PWGGenerator:
    """A float generator from a ``parallel-wavegan`` ``.pkl``/``.pt`` file (loaded with torch, on the CPU).

    Training checkpoints hold ``{"model": {"generator": state_dict, ...}, ...}``; a bare generator state
    dict is accepted too. Loading uses ``torch.load(weights_only=True)``, which runs no pickled code.
    """
    checkpoint = load_torch_file(path)
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping) \
            and "generator" in checkpoint["model"]:
        checkpoint = checkpoint["model"]["generator"]
    return from_state_dict(config, checkpoint, fold_weight_norm)


@dataclass(frozen=True)
class UpsampleTable:
    """The upsampling stages as one linear map from frames to samples, in the form the array applies it.

    Every stage is linear and bias-free, so the whole upsampler maps a frame-rate signal ``a`` (any number of
    channels, F frames) to ``u`` at the sample rate through one banded matrix. Sample ``n`` (frame
    ``m = n // hop``, phase ``p = n % hop``) reads the D frames ``m - offset ... m - offset + D - 1`` (zero
    outside ``[0, F)``)::

        u[n] = sum_d weights[row(m), p, d] * a[m - offset + d]

    The stages' zero padding makes the first and last ``edge`` frames differ from the rest, so ``weights``
    holds ``2 edge + 1`` rows of ``(hop, D)``: ``row(m) = m`` for the first ``edge`` frames, ``edge + 1 +
    (m - (F - edge))`` for the last ``edge``, and ``edge`` for every frame between. That holds for
    ``F >= 2 edge`` (:attr:`min_frames`). At ljspeech sizes (four stages of 4) D = 5, ``offset`` = 2 and
    ``edge`` = 1.

    Attributes
    ----------
    weights : (2 edge + 1, hop, D) ndarray (float64, or integers in the weight format in :class:`PWGFixed`)
    offset, edge : int
    """

    weights: np.ndarray
    offset: int
    edge: int

    @property
    def taps(self) -> int:
        """D: the frames each sample reads."""
        return self.weights.shape[2]

    @property
    def min_frames(self) -> int:
        return max(1, 2 * self.edge)

    def rows(self, frames: int) -> np.ndarray:
        """``row(m)`` for ``m = 0 .. frames - 1``."""
        if frames < self.min_frames:
            raise ValueError(f"the upsampler's table needs at least {self.min_frames} frames, not {frames}")
        interior = np.full(frames - 2 * self.edge, self.edge)
        return np.concatenate([np.arange(self.edge), interior, np.arange(self.edge + 1, 2 * self.edge + 1)])

    def apply(self, a: np.ndarray) -> np.ndarray:
        """``u`` ``(channels, F * hop)`` from ``a`` ``(channels, F)``: exact on integers (int64 in, int64 out)."""
        channels, frames = a.shape
        rows = self.rows(frames)
        taps, hop = self.taps, self.weights.shape[1]
        padded = np.pad(a, ((0, 0), (self.offset, taps - 1 - self.offset)))
        u = np.zeros((channels, frames, hop), dtype=np.result_type(a, self.weights))
        for d in range(taps):
            u += padded[:, d:d + frames, None] * self.weights[rows, :, d][None]
        return u.reshape(channels, frames * hop)


def _stretch_and_filter(c: np.ndarray, kernels, scales) -> np.ndarray:
    """The float upsampling stages with the given kernels (one per scale): repeat, then filter with zero padding."""
    for kernel, scale in zip(kernels, scales, strict=True):
        c = _time_filter(np.repeat(c, scale, axis=1), kernel)
    return c


def _impulse_rows(stages: Callable[[np.ndarray], np.ndarray], hop: int, probe: int, taps: int,
                  offset: int) -> Callable[[int], np.ndarray]:
    """Frame m's ``(hop, taps)`` block of the stages' frame-to-sample matrix (from impulses on ``probe`` frames)."""
    full = stages(np.eye(probe)).T  # (probe * hop, probe): sample by frame

    def rows_of(m: int) -> np.ndarray:
        block = np.zeros((hop, taps))
        for d in range(taps):
            if 0 <= m - offset + d < probe:
                block[:, d] = full[m * hop:(m + 1) * hop, m - offset + d]
        return block
    return rows_of


def upsample_geometry(scales: tuple[int, ...]) -> tuple[int, int, int]:
    """``(taps, offset, edge)`` of the :class:`UpsampleTable` of any stages with these scales.

    Read off the stages with all-one kernels, whose frame-to-sample matrix has the widest band and edges any
    kernels can give (a positive kernel cancels nothing): a frame is an edge frame where its rows differ from
    the interior ones once the frames outside the signal are masked.
    """
    hop = math.prod(scales)
    probe = 4 * len(scales) + 5
    ones = [np.ones(2 * s + 1) for s in scales]
    full = _stretch_and_filter(np.eye(probe), ones, scales).T
    frame = np.arange(probe * hop) // hop
    cols = np.broadcast_to(np.arange(probe)[None, :] - frame[:, None], full.shape)[full != 0]
    lo, hi = int(cols.min()), int(cols.max())
    taps, offset = hi - lo + 1, -lo
    rows_of = _impulse_rows(lambda c: _stretch_and_filter(c, ones, scales), hop, probe, taps, offset)
    interior = rows_of(probe // 2)

    def masked(m: int) -> np.ndarray:
        frames = m - offset + np.arange(taps)
        return interior * ((frames >= 0) & (frames < probe))[None, :]

    edge = 0
    while not all(np.array_equal(rows_of(m), masked(m)) for m in range(edge, probe - edge)):
        edge += 1
    return taps, offset, edge


def upsample_table(stages: Callable[[np.ndarray], np.ndarray], scales: tuple[int, ...]) -> UpsampleTable:
    """The :class:`UpsampleTable` of ``stages`` (a float function ``(channels, F)`` to ``(channels, F hop)``),
    with the geometry of :func:`upsample_geometry`: ``stages`` is applied to impulses on a probe of frames."""
    taps, offset, edge = upsample_geometry(scales)
    probe = 2 * edge + 3
    rows_of = _impulse_rows(stages, math.prod(scales), probe, taps, offset)
    blocks = [rows_of(m) for m in range(edge)] + [rows_of(edge + 1)] + [rows_of(m) for m in range(probe - edge, probe)]
    return UpsampleTable(np.stack(blocks), offset, edge)


def check_output_layer(config: PWGConfig) -> None:
    """Raise ValueError unless the output layers fit one residual layer (:meth:`PWGFixed.output_layer`)."""
    r, g, s, out = config.residual_channels, config.gate_channels, config.skip_channels, config.out_channels
    if s > r or s > g // 2 or out > s:
        raise ValueError(f"config: the output layers run on the residual engine only with skip_channels <= "
                         f"residual_channels and gate_channels / 2 and out_channels <= skip_channels; got S = {s}, "
                         f"R = {r}, G = {g}, out = {out}")


#: Largest narrowing shift the PWG accelerator takes at run time (5 bits).
MAX_SHIFT = 31
#: Legal fractional bits of a PWG tensor in a formats JSON.
FRAC_RANGE = (0, 24)


@dataclass(frozen=True)
class PWGShifts:
    """The narrowing shifts of a :class:`PWGFormats`: what the accelerator loads at run time.

    ``conv_in``, ``first_conv`` and ``aux`` (per layer) are the front end's, ``scale`` the skip sum's scale into the
    output layers, ``layers`` the :class:`LayerShifts` of the L residual layers and then the output layer.
    """

    conv_in: int
    first_conv: int
    scale: int
    aux: tuple[int, ...]
    layers: tuple[LayerShifts, ...]

    def flat(self) -> list[int]:
        """In the order the accelerator loads them: conv_in, first_conv, scale, then per layer ``aux`` (L), then
        ``gate``, ``skip``, ``out`` of each of the L + 1 layers."""
        return ([self.conv_in, self.first_conv, self.scale, *self.aux]
                + [v for layer in self.layers for v in (layer.gate, layer.skip, layer.out)])


@dataclass(frozen=True)
class PWGFormats:
    """Where the binary point sits in every tensor of a PWG generator: fractional bits of ``numerics``' widths.

    Activations: ``mel`` and ``z`` (the inputs), ``f`` (conv_in's output), ``x`` (the residual stream: first_conv's
    output and every layer's, one format because each layer adds its input to its output), ``skip`` (every
    layer's skip and their sum), ``post`` (the output layers' input, the scaled skip sum), ``hidden`` (the output
    layers' ``relu(last1 ...)``). Weights: ``table``
    (the upsampling table), ``conv_in``, ``first_conv``, ``last1``, ``last2`` and per layer ``conv``, ``aux``,
    ``skip_w``, ``out_w``.

    Fixed at ``numerics.act``: the gate's input and output (the tanh and sigmoid tables index act) and the
    waveform (the PCM conversion, which clips at ±1 anyway). A layer's aux term sits at ``x + conv[l] -
    table``: upsampled, it enters the gate accumulator beside the convolution's products.
    """

    mel: int
    z: int
    f: int
    x: int
    skip: int
    post: int
    hidden: int
    table: int
    conv_in: int
    first_conv: int
    last1: int
    last2: int
    conv: tuple[int, ...]
    aux: tuple[int, ...]
    skip_w: tuple[int, ...]
    out_w: tuple[int, ...]

    _SINGLE = ("mel", "z", "f", "x", "skip", "post", "hidden", "table", "conv_in", "first_conv", "last1", "last2")
    _PER_LAYER = {"conv": "conv", "aux": "aux", "skip_w": "skip", "out_w": "out"}

    @classmethod
    def uniform(cls, config: PWGConfig) -> PWGFormats:
        """Every activation in ``numerics.act``, every weight in ``numerics.weight`` (the formats before per-layer
        formats, and what the models use when given none)."""
        a, w, n = config.numerics.act.frac, config.numerics.weight.frac, config.layers
        return cls(mel=a, z=a, f=a, x=a, skip=a, post=a, hidden=a, table=w, conv_in=w, first_conv=w, last1=w, last2=w,
                   conv=(w,) * n, aux=(w,) * n, skip_w=(w,) * n, out_w=(w,) * n)

    @staticmethod
    def names(config: PWGConfig) -> list[str]:
        """The tensors' names in a formats JSON."""
        return [*PWGFormats._SINGLE] + [f"layers.{layer}.{name}" for layer in range(config.layers)
                                         for name in PWGFormats._PER_LAYER.values()]

    def as_dict(self) -> dict[str, int]:
        fracs = {name: getattr(self, name) for name in self._SINGLE}
        for layer in range(len(self.conv)):
            fracs |= {f"layers.{layer}.{name}": getattr(self, field)[layer]
                      for field, name in self._PER_LAYER.items()}
        return fracs

    @classmethod
    def from_dict(cls, fracs: dict[str, int], layers: int) -> PWGFormats:
        per_layer = {field: tuple(fracs[f"layers.{layer}.{name}"] for layer in range(layers))
                     for field, name in cls._PER_LAYER.items()}
        return cls(**{name: fracs[name] for name in cls._SINGLE}, **per_layer)

    def aux_term(self, layer: int) -> int:
        """Fractional bits of layer ``layer``'s aux term."""
        return self.x + self.conv[layer] - self.table

    def shifts(self, config: PWGConfig) -> PWGShifts:
        """The narrowing shifts (:class:`PWGShifts`).

        Raises
        ------
        FormatsError
            If a shift is outside ``[0, MAX_SHIFT]`` (the formats need a left shift, or more than the hardware's).
        """
        num = config.numerics
        h, gate = num.act.frac, num.gate.frac
        n = config.layers
        values = {
            "conv_in": self.mel + self.conv_in - self.f,
            "first_conv": self.z + self.first_conv - self.x,
            "scale": self.skip + gate - self.post,
            **{f"layers.{l}.aux": self.f + self.aux[l] - self.aux_term(l) for l in range(n)},
            **{f"layers.{l}.gate": self.x + self.conv[l] - h for l in range(n)},
            **{f"layers.{l}.skip": h + self.skip_w[l] - self.skip for l in range(n)},
            **{f"layers.{l}.out": h + self.out_w[l] - self.x for l in range(n)},
            "output.gate": self.post + self.last1 - self.hidden,
            "output.skip": self.hidden + self.last2 - h,
        }
        for name, value in values.items():
            if not 0 <= value <= MAX_SHIFT:
                raise FormatsError(f"formats: the {name} narrowing would shift by {value} bits; the accelerator "
                                   f"takes 0 to {MAX_SHIFT}")
        layers = [LayerShifts(values[f"layers.{l}.gate"], values[f"layers.{l}.skip"], values[f"layers.{l}.out"])
                  for l in range(n)]
        # The output layer has no out 1x1: its out shift is never used; 0 keeps the load deterministic.
        layers.append(LayerShifts(values["output.gate"], values["output.skip"], 0))
        return PWGShifts(values["conv_in"], values["first_conv"], values["scale"],
                         tuple(values[f"layers.{l}.aux"] for l in range(n)), tuple(layers))

    def save(self, path: str | Path, config: PWGConfig) -> None:
        """Write the formats JSON (atomically)."""
        self.shifts(config)
        save_formats(path, "pwg", config.numerics.act.width, self.as_dict())

    @classmethod
    def load(cls, path: str | Path, config: PWGConfig) -> PWGFormats:
        """Read a formats JSON written by :meth:`save` for a generator of ``config``'s sizes.

        Raises
        ------
        FormatsError
            One line: not a PWG formats JSON, another width, a missing or unknown tensor, a frac outside
            :data:`FRAC_RANGE`, or a shift the hardware cannot take.
        """
        fracs = load_formats(path, "pwg", config.numerics.act.width, cls.names(config), *FRAC_RANGE)
        formats = cls.from_dict(fracs, config.layers)
        try:
            formats.shifts(config)
        except FormatsError as error:
            raise FormatsError(f"{path}: {error}") from None
        return formats


class PWGFixed:
    """Fixed-point ParallelWaveGAN generator with ``generator.config.numerics`` widths and per-tensor formats.

    It computes in the hardware's order (module docstring; :meth:`forward` states every narrowing).
    Weights are quantised once, as the hardware loader does: weight-normed convolutions through the weight-norm
    unit's arithmetic (:func:`~.kernels.weight_norm`), plain weights by rounding, each into its own format;
    biases into their output's format.

    Parameters
    ----------
    generator : PWGGenerator
    formats : PWGFormats, optional
        Where the binary points sit (default :meth:`PWGFormats.uniform`: ``numerics.act`` and
        ``numerics.weight``); :func:`~wavefabric.model.pwg_profile.choose_formats` picks them for a checkpoint.

    Attributes
    ----------
    config : PWGConfig
    numerics : Numerics
    formats : PWGFormats
    shifts : PWGShifts
    first_conv, first_bias : (R, in_channels), (R,)
    conv_in : (A, A, 2w + 1)
    upsample_table : UpsampleTable
        The upsampling stages as one map (:func:`upsample_table` of the float stages), its weights quantised
        once to ``formats.table``: the array multiplies them with the frame-rate aux terms (:meth:`upsample`).
    layers : tuple of ResidualLayer (integers)
    last1, last1_bias, last2, last2_bias : (S, S), (S,), (out_channels, S), (out_channels,)

    Raises
    ------
    ValueError
        If a weight of the upsampling table is outside its format, or the formats need a shift the hardware
        cannot take (:class:`~wavefabric.model.formats.FormatsError`).
    """

    def __init__(self, generator: PWGGenerator, formats: PWGFormats | None = None):
        config = generator.config
        num = config.numerics
        self.config = config
        self.numerics = num
        self.formats = fm = formats or PWGFormats.uniform(config)
        if not isinstance(fm, PWGFormats) or len(fm.conv) != config.layers:
            raise ValueError(f"formats must be a PWGFormats of {config.layers} layers, not {formats!r}")
        self.shifts = fm.shifts(config)
        wide, act_w = num.weight.width, num.act.width

        def weight(module: str, frac: int) -> np.ndarray:
            fmt = QFormat(wide, frac)
            if config.use_weight_norm:
                v = np.asarray(generator.params[module + ".weight_v"], dtype=np.float64)
                v_int, g_int, g_fmt = weight_norm_operands(generator.params[module + ".weight_g"], v, wide)
                return int_weight_norm(v_int, g_int, g_fmt, fmt)[0].reshape(v.shape)
            return fmt.quantize(generator.params[module + ".weight"])

        def bias(module: str, frac: int) -> np.ndarray:
            return QFormat(act_w, frac).quantize(generator.bias(module))

        h = num.act.frac
        self.first_conv = weight("first_conv", fm.first_conv)[:, :, 0]
        self.first_bias = bias("first_conv", fm.x)
        self.conv_in = weight("upsample_net.conv_in", fm.conv_in)
        table = upsample_table(generator.upsample_stages, config.upsample_scales)
        table_fmt = QFormat(wide, fm.table)
        if np.min(table.weights) < table_fmt.min_value or np.max(table.weights) > table_fmt.max_value:
            raise ValueError(f"a weight of the upsampling table is outside its format {table_fmt}")
        self.upsample_table = UpsampleTable(table_fmt.quantize(table.weights), table.offset, table.edge)
        layers = []
        for index in range(config.layers):
            p = f"conv_layers.{index}."
            layers.append(ResidualLayer(
                conv=weight(p + "conv", fm.conv[index]), conv_bias=bias(p + "conv", h),
                aux=weight(p + "conv1x1_aux", fm.aux[index])[:, :, 0],
                skip=weight(p + "conv1x1_skip", fm.skip_w[index])[:, :, 0], skip_bias=bias(p + "conv1x1_skip", fm.skip),
                out=weight(p + "conv1x1_out", fm.out_w[index])[:, :, 0], out_bias=bias(p + "conv1x1_out", fm.x),
                dilation=config.dilation(index),
            ))
        self.layers = tuple(layers)
        self.last1 = weight("last_conv_layers.1", fm.last1)[:, :, 0]
        self.last1_bias = bias("last_conv_layers.1", fm.hidden)
        self.last2 = weight("last_conv_layers.3", fm.last2)[:, :, 0]
        self.last2_bias = bias("last_conv_layers.3", h)

    def frame_conditioning(self, c: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Fixed-point ``conv_in``: mel ints ``(A, frames + 2w)`` to f ints ``(A, frames)``: one exact accumulation
        of ``A * (2w+1)`` products, narrowed once (saturations into ``counts[0]``)."""
        w = self.conv_in
        cols = im2col(np.asarray(c, dtype=np.int64), w.shape[2], 1, 0)
        return _mac(w.reshape(w.shape[0], -1), cols, None, self.shifts.conv_in, self.numerics.act, counts, 0)

    def first_conv_output(self, z: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """x0 ints ``(R, T)``: first_conv of noise ints ``(in_channels, T)``, narrowed once (into ``counts[0]``)."""
        return _mac(self.first_conv, np.asarray(z, dtype=np.int64), self.first_bias, self.shifts.first_conv,
                    self.numerics.act, counts, 0)

    def aux_term(self, layer: int, f: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Layer ``layer``'s aux term ints ``(G, F)`` at frame rate: its aux 1x1 of f, narrowed once (into
        ``counts[0]``)."""
        return _mac(self.layers[layer].aux, f, None, self.shifts.aux[layer], self.numerics.act, counts, 0)

    def output_layer(self) -> ResidualLayer:
        """The output layers as one residual layer of the residual engine (``relu_gate``, no residual output).

        With ``x = skip_scale(skips)`` (zero-padded to R channels) and no aux term, :func:`residual_layer_fixed`
        ``(x, 0, output_layer(), aux_applied=True, residual_out=False, relu_gate=True, shifts=shifts.layers[L])``
        gives in its first ``out_channels`` skip rows exactly the output layers: ``last1`` sits at the centre
        tap of the gate GEMM's first S rows, ``last2`` in the skip 1x1's first rows, every other weight and bias
        is zero. Needs ``S <= R``, ``S <= G / 2`` and ``out_channels <= S``.

        Raises
        ------
        ValueError
            If the sizes do not allow it.
        """
        cfg = self.config
        check_output_layer(cfg)
        r, g, s, out = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.out_channels
        conv = np.zeros((g, r, cfg.kernel_size), dtype=np.int64)
        conv[:s, :s, (cfg.kernel_size - 1) // 2] = self.last1
        skip = np.zeros((s, g // 2), dtype=np.int64)
        skip[:out, :s] = self.last2
        return ResidualLayer(
            conv=conv, conv_bias=np.pad(self.last1_bias, (0, g - s)), aux=np.zeros((g, cfg.aux_channels), np.int64),
            skip=skip, skip_bias=np.pad(self.last2_bias, (0, s - out)), out=np.zeros((r, g // 2), np.int64),
            out_bias=np.zeros(r, np.int64), dilation=1)

    def upsample(self, a: np.ndarray) -> np.ndarray:
        """The upsampled aux term: ints ``(channels, F)`` to ``(channels, F * hop)`` ints at the gate accumulator's
        scale, exact: :meth:`UpsampleTable.apply` with the quantised table.

        The hardware computes it inside the gate GEMM: D more k-steps per gate tile, with the frame-rate
        aux terms as the array's weight operand and the table's rows as its activation operand.
        """
        return self.upsample_table.apply(np.asarray(a, dtype=np.int64))

    def saturation_slots(self) -> int:
        """Entries of a ``counts`` array of :meth:`forward`: the front end, each residual layer, the output layers."""
        return self.config.layers + 2

    def forward(self, z: np.ndarray, c: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Fixed-point generator: z ints ``(in_channels, T)`` (``formats.z``), c ints ``(A, T / hop + 2w)``
        (``formats.mel``) to waveform ints ``(out_channels, T)`` in ``numerics.act``, in the hardware's order.

        Every ``mac`` is an exact accumulation narrowed once (round half up, saturate) by its shift
        (:attr:`shifts`), its bias stored at the output's format::

            f   = frame_conditioning(c)                       # conv_in: A (2w+1) products, (A, F)
            x   = mac(first_conv, z, first_bias)              # in_channels products
            for each layer l:
                a_l = mac(aux_l, f, None)                     # at frame rate: A products, (G, F)
                u_l = upsample(a_l)                           # D products per sample, exact, (G, T)
                x, skip_l = residual_layer_fixed(x, u_l, layer_l, aux_applied=True,
                                                 residual_out=(l < layers - 1))
                skips += skip_l                               # exact, act.width + bit_length(layers) bits
            h   = skip_scale(skips)                           # relu(skips * sqrt(1/layers)), a constant in gate
            y   = mac(last2, relu(mac(last1, h, last1_bias)), last2_bias)

        ``u_l`` enters the gate accumulator exactly (:func:`residual_layer_fixed`). So against the package's order
        the aux path is narrowed once, after the aux 1x1, instead of after ``conv_in`` and each stage on the 80
        mel channels, with the aux products inside the gate accumulator; the stages' kernels become one table of
        weights (:class:`UpsampleTable`), quantised once.

        ``counts`` (``saturation_slots()`` integers), if given, is incremented by the values that saturate:
        ``counts[0]`` the front end's (f, x0, the aux terms), ``counts[1 + l]`` layer l's
        (:func:`residual_layer_fixed`), ``counts[L + 1]`` the output layers' (the scaled skip sum, the hidden
        values and the waveform).
        """
        num, sh = self.numerics, self.shifts
        z = np.asarray(z, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        _check_inputs(self.config, z, c)
        f = self.frame_conditioning(c, counts)
        x = self.first_conv_output(z, counts)
        skips = np.zeros((self.config.skip_channels, z.shape[1]), dtype=np.int64)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            u = self.upsample(self.aux_term(index, f, counts))
            x, skip = residual_layer_fixed(x, u, layer, num, aux_applied=True, residual_out=index < last,
                                           shifts=sh.layers[index], counts=counts, at=1 + index)
            skips += skip
        out = self.config.layers + 1
        post = self.skip_scale(skips, counts)
        acc = accumulate(self.last1, post, self.last1_bias, sh.layers[-1].gate)
        h = _narrow_counted(acc, sh.layers[-1].gate, num.act, counts, out, relu_after=True)  # at formats.hidden
        return _mac(self.last2, h, self.last2_bias, sh.layers[-1].skip, num.act, counts, out)

    def skip_scale(self, skips: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """The output layers' input ``relu(skips * sqrt(1 / layers))``: the constant in the gate format (with one
        layer ``2**gate.frac``, exactly 1), narrowed by :attr:`shifts`' ``scale`` (saturations into
        ``counts[L + 1]``)."""
        num = self.numerics
        product = np.asarray(skips, dtype=np.int64) * skip_scale_constant(self.config)
        return relu(_narrow_counted(product, self.shifts.scale, num.act, counts, self.config.layers + 1))

    def job(self, c, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The integers ``(z, padded mel)`` that :meth:`inference` gives :meth:`forward` for a mel ``c``
        ``(frames, A)`` of at most :data:`BLOCK_FRAMES` frames: one block, the whole signal (what the
        hardware's one job computes)."""
        z, padded = job_inputs(self.config, c, seed)
        return self._quantize_noise(z), self._quantize_mel(padded)

    def _quantize_mel(self, c: np.ndarray) -> np.ndarray:
        return QFormat(self.numerics.act.width, self.formats.mel).quantize(c)

    def _quantize_noise(self, z: np.ndarray) -> np.ndarray:
        return QFormat(self.numerics.act.width, self.formats.z).quantize(z)

    def inference(self, c, seed: int = 0) -> np.ndarray:
        """Float waveform ``(frames * hop, out_channels)`` through the fixed-point model.

        The same padding and noise as :meth:`PWGGenerator.inference` with the same seed; mel and noise are
        quantised to their formats and the output dequantised.
        """
        return np.concatenate(list(self.inference_blocks(c, seed)))

    def inference_blocks(self, c, seed: int = 0, block_frames: int = BLOCK_FRAMES,
                         progress: Callable[[int], object] | None = None,
                         counts: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """:meth:`inference` in blocks, as :meth:`PWGGenerator.inference_blocks` (bit-exact with it joined);
        saturations into ``counts`` as :meth:`forward`."""
        return _inference_blocks(self.config, lambda z, mel: self.forward(z, mel, counts), self._quantize_noise,
                                 self._quantize_mel, self.numerics.act.dequantize, c, seed, block_frames, progress)


def job_inputs(config: PWGConfig, c, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The float ``(z, padded mel)`` of one job for a mel ``c`` ``(frames, A)`` of at most :data:`BLOCK_FRAMES`
    frames: the noise of ``seed`` and the mel edge-padded by ``aux_context_window`` frames, as :meth:`inference`
    gives them to ``forward`` for one block."""
    c = np.asarray(c, dtype=np.float64)
    _check_mel(config, c)
    frames, w = c.shape[0], config.aux_context_window
    if frames > BLOCK_FRAMES:
        raise ValueError(f"a job is at most {BLOCK_FRAMES} frames, not {frames}")
    padded = c[np.clip(np.arange(-w, frames + w), 0, frames - 1)].T
    return _NoiseStream(config.in_channels, seed).take(0, frames * config.hop_size), padded


def skip_scale_constant(config: PWGConfig) -> int:
    """The skip sum's scale ``sqrt(1 / layers)`` in the gate format; with one layer ``2**gate.frac`` (1.0 exactly,
    which the gate format cannot hold, and the narrowing's shift takes the ``gate.frac`` back)."""
    gate = config.numerics.gate
    return 1 << gate.frac if config.layers == 1 else int(gate.quantize(math.sqrt(1.0 / config.layers)))


#: The PCM samples the generator's hardware streams out: 16 bits, full scale 1.0.
PCM_FORMAT = QFormat(16, 15)


def pcm16(y: np.ndarray, act: QFormat) -> np.ndarray:
    """Act-format waveform integers to 16-bit PCM: ``y / 2**act.frac`` times 32768, saturated (the shared
    :func:`~wavefabric.model.fixed.narrow` into :data:`PCM_FORMAT`; exact when ``act.frac <= 15``)."""
    return narrow(y, act.frac, PCM_FORMAT).astype(np.int16)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` in dB: ``10 log10(sum(ref**2) / sum(err**2))``."""
    reference = np.asarray(reference, dtype=np.float64)
    error = np.asarray(test, dtype=np.float64) - reference
    return float(10.0 * np.log10(np.sum(reference**2) / np.sum(error**2)))
