"""SampleRNN (samplernn-pytorch) as float and fixed-point NumPy models.

The network is the one of ``deepsound-project/samplernn-pytorch`` (``model.py``, ``nn.py``):

* ``len(frame_sizes)`` frame-level tiers. Tier ``k`` sees the previous ``n_frame_samples[k] =
  prod(frame_sizes[:k+1])`` samples as one frame, scaled to ``2 * (s / (q/2) - 1)`` (values in [-2, 2)), and
  computes ``input_expand`` (1x1 conv, ``n_frame_samples -> dim``, with bias), adds the conditioning from the
  tier above, runs ``nn.GRU(dim, dim, n_rnn)`` one step per frame from the (learned) ``h0``, and upsamples the
  GRU output by ``LearnedUpsampling1d``: a ``ConvTranspose1d(dim, dim, kernel = stride = frame_size)`` without
  bias plus a bias of shape ``(dim, frame_size)``, so every frame becomes ``frame_size`` conditioning vectors::

      out[t * fs + j, d] = sum_c W[c, d, j] * h[t, c] + bias[d, j]

* a sample-level MLP: ``Embedding(q, q)`` of the previous ``frame_sizes[0]`` samples, ``Conv1d(q -> dim,
  kernel frame_sizes[0])`` without bias, plus the bottom tier's conditioning, ReLU, 1x1 conv ``dim -> dim``,
  ReLU, 1x1 conv ``dim -> q``, log-softmax.

Generation follows samplernn-pytorch's ``Generator``: the sequence starts with ``lookback`` samples of
``q // 2``; at sample ``i`` every tier with ``i % n_frame_samples == 0`` runs, top down, a lower tier taking
row ``(i // n_frame_samples) % frame_size_above`` of the upper tier's latest output; the MLP takes the last
``frame_sizes[0]`` samples and row ``i % frame_sizes[0]`` of the bottom tier's output.

Sampling is Gumbel-max: ``argmax(logits + T * G)`` with ``G`` standard Gumbel noise and temperature ``T``,
which draws from ``softmax(logits / T)`` (the Gumbel-max trick); samplernn-pytorch draws the same
distribution (at ``T = 1``) with ``torch.multinomial``, from a different random stream. Log-softmax only
shifts the logits by a constant, so the argmax is taken on the logits directly. The float model draws ``G``
from ``np.random.default_rng(seed)``; the fixed-point model draws it as the hardware does
(:class:`~wavefabric.model.sampler.GumbelSampler`: xorshift32, a noise table, integer temperature), so that
its generation is bit-exact with the hardware's for a seed.

Weight-normed layers hold ``weight_g`` and ``weight_v`` with ``w = g * v / ||v||``, the norm taken over every
axis but 0, as PyTorch's ``weight_norm(dim=0)`` does. Axis 0 is the output channel for ``Conv1d`` but the
*input* channel for ``ConvTranspose1d`` (weight ``(in, out, k)``), so the upsampling's ``g`` scales
input-channel slices.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .checkpoint import load_torch_file, read_state_dict, row_norm, weight_norm
from .checks import check_int
from .fixed import QFormat, int_matmul, narrow, narrow_counted
from .formats import WEIGHT_HEADROOM, FormatsError, TensorProfile, act_frac, frac_for, load_formats, save_formats
from .kernels import Numerics, accumulate, float_sigmoid, gru_cell, quantize_weight_norm
from .sampler import GumbelSampler, seed_state, temperature_int

__all__ = [
    "SampleRNNConfig",
    "LayerWeight",
    "TierParams",
    "MLPParams",
    "SampleRNNParams",
    "SampleRNNFloat",
    "SampleRNNFixed",
    "SampleRNNFormats",
    "profile_samplernn",
    "audio_codes",
    "FRAC_MIN",
    "MAX_SHIFT",
    "MAX_MLP_SHIFT",
    "saturation_names",
    "SampleRNNInts",
    "TierInts",
    "tier_input_values",
    "TeacherForcedError",
    "state_dict_shapes",
    "random_state_dict",
    "load_checkpoint",
    "compare_teacher_forced",
]

#: Rows of Gumbel noise drawn at a time in :meth:`generate` (also how often ``progress`` is called), and
#: steps of the MLP evaluated at once in :meth:`teacher_forced` (bounds the memory of the batched MLP).
_BLOCK = 1024


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


@dataclass(frozen=True)
class SampleRNNConfig:
    """Sizes and number formats of a SampleRNN (the samplernn-pytorch hyperparameters).

    Parameters
    ----------
    frame_sizes : tuple of int
        Frame size of each tier, bottom tier first (samplernn-pytorch's ``--frame_sizes``); a list is
        accepted and stored as a tuple. Every entry >= 1.
    n_rnn : int
        GRU layers per tier, >= 1.
    dim : int
        Width of the GRUs, the conditioning and the MLP, >= 1.
    q_levels : int
        Quantisation levels of the samples (linear quantisation), >= 2.
    learn_h0 : bool
        Whether ``h0`` is a learned parameter. Both kinds are saved in checkpoints (as a parameter or a
        buffer), so this only decides whether :func:`random_state_dict` draws ``h0`` or sets it to zero.
    weight_norm : bool
        Whether the convolutions carry ``weight_g`` / ``weight_v`` (True) or a plain ``weight``.
    numerics : Numerics
        Number formats of the fixed-point model. ``numerics.act`` must hold the tier inputs, [-2, 2).
    logits : QFormat or None
        Format of the MLP's output logits. Trained networks give sharp distributions whose logits exceed the
        act range, so the default (None) is ``act.width`` bits with two fewer fractional bits than ``act``
        (Q6.10 at the defaults: [-32, 32)).
    table : QFormat or None
        Storage format of the folded MLP-input table (:attr:`SampleRNNFixed.mlp_table`): at most 18 bits
        (one BRAM word in x18 mode) and at least ``act.frac`` fractional bits. The default (None) is
        ``act.width`` bits with ``act.frac`` fractional bits (Q4.12 at the defaults). Measured
        (``benchmarks/samplernn.py``, seed configuration, random weights): fixed-vs-float teacher-forced
        top-1 99.86% with Q4.12, 99.88% with Q3.13 and with the exact products, all within the measurement's
        noise; Q4.12 keeps [-8, 8) of range over entries that reach 2.1 (Q2.14 saturates).
    gumbel_bits : int
        Uniform bits per draw of the fixed-point model's sampler
        (:class:`~wavefabric.model.sampler.GumbelSampler`), 4 to 16. The default, 12 (a 4,096-entry noise
        table), keeps the sampler's exact distribution within 0.3% total variation of ``softmax(logits / T)``
        at T = 1 and 0.5 on the seed configuration; 10 bits reach 1.3% (``benchmarks/samplernn.py``).

    Raises
    ------
    ValueError
        Naming the field and its legal range, for any invalid field.
    """

    frame_sizes: tuple[int, ...] = (16, 4)
    n_rnn: int = 2
    dim: int = 64
    q_levels: int = 256
    learn_h0: bool = True
    weight_norm: bool = True
    numerics: Numerics = Numerics()
    logits: QFormat | None = None
    table: QFormat | None = None
    gumbel_bits: int = 12

    def __post_init__(self):
        sizes = self.frame_sizes
        if (not isinstance(sizes, tuple | list) or len(sizes) == 0
                or not all(_is_int(s) and s >= 1 for s in sizes)):
            raise ValueError(
                f"SampleRNNConfig.frame_sizes must be a non-empty tuple of integers >= 1, not {sizes!r}"
            )
        object.__setattr__(self, "frame_sizes", tuple(int(s) for s in sizes))
        for name, low in (("n_rnn", 1), ("dim", 1), ("q_levels", 2)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"SampleRNNConfig.{name} must be an integer >= {low}, not {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("learn_h0", "weight_norm"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"SampleRNNConfig.{name} must be True or False, not {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if not isinstance(self.numerics, Numerics):
            raise ValueError(f"SampleRNNConfig.numerics must be a kernels.Numerics, not {self.numerics!r}")
        act = self.numerics.act
        if act.min_value > -2.0 or act.max_value < 2.0 - 4.0 / self.q_levels:
            raise ValueError(
                f"SampleRNNConfig.numerics.act ({act}, range [{act.min_value}, {act.max_value}]) must hold "
                f"the tier inputs in [-2, 2): it needs at least 2 integer bits including the sign"
            )
        if self.logits is None:
            object.__setattr__(self, "logits", QFormat(act.width, max(act.frac - 2, 0)))
        elif not isinstance(self.logits, QFormat):
            raise ValueError(f"SampleRNNConfig.logits must be a QFormat or None, not {self.logits!r}")
        if self.table is None:
            object.__setattr__(self, "table", QFormat(act.width, act.frac))
        elif not isinstance(self.table, QFormat) or self.table.width > 18 or self.table.frac < act.frac:
            raise ValueError(
                f"SampleRNNConfig.table must be None or a QFormat of at most 18 bits with at least act.frac = "
                f"{act.frac} fractional bits, not {self.table!r}"
            )
        if not _is_int(self.gumbel_bits) or not 4 <= self.gumbel_bits <= 16:
            raise ValueError(f"SampleRNNConfig.gumbel_bits must be an integer from 4 to 16, not {self.gumbel_bits!r}")
        object.__setattr__(self, "gumbel_bits", int(self.gumbel_bits))

    @property
    def n_tiers(self) -> int:
        """Number of frame-level tiers."""
        return len(self.frame_sizes)

    @property
    def n_frame_samples(self) -> tuple[int, ...]:
        """Samples per frame of each tier, ``cumprod(frame_sizes)`` (tier ``k`` runs every that many)."""
        return tuple(math.prod(self.frame_sizes[:k + 1]) for k in range(self.n_tiers))

    @property
    def lookback(self) -> int:
        """Samples of history the network sees: the top tier's frame."""
        return self.n_frame_samples[-1]


def _weight_keys(prefix: str, shape: tuple[int, ...], weight_norm: bool) -> dict[str, tuple[int, ...]]:
    if not weight_norm:
        return {f"{prefix}.weight": shape}
    return {f"{prefix}.weight_g": (shape[0],) + (1,) * (len(shape) - 1), f"{prefix}.weight_v": shape}


def state_dict_shapes(config: SampleRNNConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a samplernn-pytorch ``SampleRNN`` state dict holds for ``config``, with its shape.

    Names are those of ``SampleRNN.state_dict()`` (no ``model.`` prefix), in PyTorch's order.
    """
    dim, q, wn = config.dim, config.q_levels, config.weight_norm
    shapes: dict[str, tuple[int, ...]] = {}
    for k, (fs, nfs) in enumerate(zip(config.frame_sizes, config.n_frame_samples, strict=True)):
        p = f"frame_level_rnns.{k}"
        shapes[f"{p}.h0"] = (config.n_rnn, dim)
        shapes.update(_weight_keys(f"{p}.input_expand", (dim, nfs, 1), wn))
        shapes[f"{p}.input_expand.bias"] = (dim,)
        for layer in range(config.n_rnn):
            shapes[f"{p}.rnn.weight_ih_l{layer}"] = (3 * dim, dim)
            shapes[f"{p}.rnn.weight_hh_l{layer}"] = (3 * dim, dim)
            shapes[f"{p}.rnn.bias_ih_l{layer}"] = (3 * dim,)
            shapes[f"{p}.rnn.bias_hh_l{layer}"] = (3 * dim,)
        shapes[f"{p}.upsampling.bias"] = (dim, fs)
        shapes.update(_weight_keys(f"{p}.upsampling.conv_t", (dim, dim, fs), wn))
    p = "sample_level_mlp"
    shapes[f"{p}.embedding.weight"] = (q, q)
    shapes.update(_weight_keys(f"{p}.input", (dim, q, config.frame_sizes[0]), wn))
    shapes.update(_weight_keys(f"{p}.hidden", (dim, dim, 1), wn))
    shapes[f"{p}.hidden.bias"] = (dim,)
    shapes.update(_weight_keys(f"{p}.output", (q, dim, 1), wn))
    shapes[f"{p}.output.bias"] = (q,)
    return shapes


def random_state_dict(config: SampleRNNConfig, seed: int) -> dict[str, np.ndarray]:
    """A float32 state dict with samplernn-pytorch's names and shapes and realistic random values.

    Scales follow samplernn-pytorch's initialisation: Kaiming-uniform ``input_expand`` and MLP ``input`` /
    ``hidden`` weights (bound ``sqrt(6 / fan_in)``), LeCun-uniform GRU and MLP ``output`` weights (bound
    ``sqrt(3 / fan_in)``) with an orthogonal candidate block in ``weight_hh``, upsampling weights uniform in
    ``±sqrt(6 / dim)``, a standard normal embedding. Where samplernn-pytorch starts biases and ``h0`` at
    zero, they are drawn here (biases uniform in ``±1/sqrt(fan_in)``, ``h0`` normal with deviation 0.3,
    zero if not ``learn_h0``) so that tests exercise them. ``weight_g`` is ``||v||`` per axis-0 slice times
    a factor uniform in [0.75, 1.25].
    """
    rng = np.random.default_rng(seed)
    dim, q = config.dim, config.q_levels
    sd: dict[str, np.ndarray] = {}

    def uniform(bound: float, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape)

    def weight(prefix: str, v: np.ndarray) -> None:
        g = row_norm(v) * rng.uniform(0.75, 1.25, size=(v.shape[0],) + (1,) * (v.ndim - 1))
        if config.weight_norm:
            sd[f"{prefix}.weight_g"], sd[f"{prefix}.weight_v"] = g, v
        else:
            sd[f"{prefix}.weight"] = weight_norm(g, v)

    def orthogonal(n: int) -> np.ndarray:
        q_mat, r_mat = np.linalg.qr(rng.standard_normal((n, n)))
        return q_mat * np.sign(np.diag(r_mat))

    lecun = math.sqrt(3 / dim)
    for k, (fs, nfs) in enumerate(zip(config.frame_sizes, config.n_frame_samples, strict=True)):
        p = f"frame_level_rnns.{k}"
        sd[f"{p}.h0"] = (0.3 * rng.standard_normal((config.n_rnn, dim)) if config.learn_h0
                         else np.zeros((config.n_rnn, dim)))
        weight(f"{p}.input_expand", uniform(math.sqrt(6 / nfs), (dim, nfs, 1)))
        sd[f"{p}.input_expand.bias"] = uniform(1 / math.sqrt(nfs), (dim,))
        for layer in range(config.n_rnn):
            sd[f"{p}.rnn.weight_ih_l{layer}"] = uniform(lecun, (3 * dim, dim))
            sd[f"{p}.rnn.weight_hh_l{layer}"] = np.concatenate([uniform(lecun, (2 * dim, dim)), orthogonal(dim)])
            sd[f"{p}.rnn.bias_ih_l{layer}"] = uniform(1 / math.sqrt(dim), (3 * dim,))
            sd[f"{p}.rnn.bias_hh_l{layer}"] = uniform(1 / math.sqrt(dim), (3 * dim,))
        sd[f"{p}.upsampling.bias"] = uniform(1 / math.sqrt(dim), (dim, fs))
        weight(f"{p}.upsampling.conv_t", uniform(math.sqrt(6 / dim), (dim, dim, fs)))
    p = "sample_level_mlp"
    sd[f"{p}.embedding.weight"] = rng.standard_normal((q, q))
    fs0 = config.frame_sizes[0]
    weight(f"{p}.input", uniform(math.sqrt(6 / (q * fs0)), (dim, q, fs0)))
    weight(f"{p}.hidden", uniform(math.sqrt(6 / dim), (dim, dim, 1)))
    sd[f"{p}.hidden.bias"] = uniform(1 / math.sqrt(dim), (dim,))
    weight(f"{p}.output", uniform(lecun, (q, dim, 1)))
    sd[f"{p}.output.bias"] = uniform(1 / math.sqrt(dim), (q,))
    return {name: value.astype(np.float32) for name, value in sd.items()}


@dataclass(frozen=True)
class LayerWeight:
    """One convolution weight in PyTorch layout: plain (``w``), or weight-normed (``g``, ``v``).

    A weight-normed layer keeps ``g`` and ``v`` (the fixed-point model normalises them as the hardware's
    weight-norm unit does) and, when folded at load, also the float ``w = g * v / ||v||``.
    """

    w: np.ndarray | None = None
    g: np.ndarray | None = None
    v: np.ndarray | None = None

    def float(self) -> np.ndarray:
        """The float64 weight: ``w`` if stored, else ``g * v / ||v||`` recomputed now."""
        if self.w is not None:
            return self.w
        return weight_norm(self.g, self.v)

    def quantize(self, num: Numerics, fmt: QFormat | None = None) -> np.ndarray:
        """The weight as ints of ``fmt`` (default ``num.weight``): the load-time weight-norm unit on ``(g, v)``,
        else rounding."""
        fmt = fmt or num.weight
        if self.g is not None:
            return quantize_weight_norm(self.g, self.v, dataclasses.replace(num, weight=fmt))
        return fmt.quantize(self.w)


@dataclass(frozen=True)
class TierParams:
    """The float64 parameters of one ``FrameLevelRNN`` (PyTorch layouts).

    ``input_expand`` (dim, n_frame_samples, 1) and ``input_expand_bias`` (dim,); per GRU layer
    ``weight_ih`` / ``weight_hh`` (3 dim, dim) and ``bias_ih`` / ``bias_hh`` (3 dim,), gates r, z, n;
    ``h0`` (n_rnn, dim); ``upsampling`` (dim in, dim out, frame_size) and ``upsampling_bias`` (dim,
    frame_size).
    """

    frame_size: int
    n_frame_samples: int
    input_expand: LayerWeight
    input_expand_bias: np.ndarray
    weight_ih: tuple[np.ndarray, ...]
    weight_hh: tuple[np.ndarray, ...]
    bias_ih: tuple[np.ndarray, ...]
    bias_hh: tuple[np.ndarray, ...]
    h0: np.ndarray
    upsampling: LayerWeight
    upsampling_bias: np.ndarray


@dataclass(frozen=True)
class MLPParams:
    """The float64 parameters of the ``SampleLevelMLP`` (PyTorch layouts).

    ``embedding`` (q, q); ``input`` (dim, q, frame_sizes[0]), no bias; ``hidden`` (dim, dim, 1) and
    ``hidden_bias`` (dim,); ``output`` (q, dim, 1) and ``output_bias`` (q,).
    """

    embedding: np.ndarray
    input: LayerWeight
    hidden: LayerWeight
    hidden_bias: np.ndarray
    output: LayerWeight
    output_bias: np.ndarray


@dataclass(frozen=True)
class SampleRNNParams:
    """The parameters of a SampleRNN, validated against its config, as float64 arrays.

    Build with :meth:`from_state_dict` or :func:`load_checkpoint`.
    """

    config: SampleRNNConfig
    tiers: tuple[TierParams, ...]
    mlp: MLPParams

    @classmethod
    def from_state_dict(cls, config: SampleRNNConfig, state_dict: Mapping,
                        fold_weight_norm: bool = True) -> SampleRNNParams:
        """Validate a samplernn-pytorch state dict against ``config`` and take its tensors.

        Parameters
        ----------
        config : SampleRNNConfig
        state_dict : mapping of str to array
            NumPy arrays or torch tensors. A ``model.`` prefix on every key (checkpoints of the training
            ``Predictor``) is stripped, and ``X.parametrizations.weight.original0/1`` (PyTorch's newer
            ``weight_norm``) are read as ``X.weight_g`` / ``X.weight_v``.
        fold_weight_norm : bool
            True: compute every ``w = g * v / ||v||`` once now. False: keep ``(g, v)`` only and recompute
            ``w`` on every forward call of the float model (for checking; both give the same outputs).
            The fixed-point model always normalises ``(g, v)`` itself.

        Raises
        ------
        ValueError
            One line naming the first tensor that is missing, has the wrong shape or is not finite, or
            the first unexpected tensor: a key the config does not expect is an error, as in PyTorch's
            strict ``load_state_dict`` (it means the checkpoint and the config disagree).
        """
        if not isinstance(config, SampleRNNConfig):
            raise ValueError(f"config must be a SampleRNNConfig, not {type(config).__name__}")
        arrays = read_state_dict(state_dict, state_dict_shapes(config), weight_norm_option="weight_norm",
                                 strip_prefix="model.")

        def layer(prefix: str) -> LayerWeight:
            if not config.weight_norm:
                return LayerWeight(w=arrays[f"{prefix}.weight"])
            g, v = arrays[f"{prefix}.weight_g"], arrays[f"{prefix}.weight_v"]
            return LayerWeight(w=weight_norm(g, v) if fold_weight_norm else None, g=g, v=v)

        tiers = []
        for k, (fs, nfs) in enumerate(zip(config.frame_sizes, config.n_frame_samples, strict=True)):
            p = f"frame_level_rnns.{k}"
            layers = range(config.n_rnn)
            tiers.append(TierParams(
                frame_size=fs,
                n_frame_samples=nfs,
                input_expand=layer(f"{p}.input_expand"),
                input_expand_bias=arrays[f"{p}.input_expand.bias"],
                weight_ih=tuple(arrays[f"{p}.rnn.weight_ih_l{i}"] for i in layers),
                weight_hh=tuple(arrays[f"{p}.rnn.weight_hh_l{i}"] for i in layers),
                bias_ih=tuple(arrays[f"{p}.rnn.bias_ih_l{i}"] for i in layers),
                bias_hh=tuple(arrays[f"{p}.rnn.bias_hh_l{i}"] for i in layers),
                h0=arrays[f"{p}.h0"],
                upsampling=layer(f"{p}.upsampling.conv_t"),
                upsampling_bias=arrays[f"{p}.upsampling.bias"],
            ))
        p = "sample_level_mlp"
        mlp = MLPParams(
            embedding=arrays[f"{p}.embedding.weight"],
            input=layer(f"{p}.input"),
            hidden=layer(f"{p}.hidden"),
            hidden_bias=arrays[f"{p}.hidden.bias"],
            output=layer(f"{p}.output"),
            output_bias=arrays[f"{p}.output.bias"],
        )
        return cls(config, tuple(tiers), mlp)


def load_checkpoint(path, config: SampleRNNConfig, fold_weight_norm: bool = True) -> SampleRNNParams:
    """Load a samplernn-pytorch ``.pt`` checkpoint (a state dict) with PyTorch and validate it.

    PyTorch is imported only here. A ``model.`` prefix (training checkpoints) is stripped; see
    :meth:`SampleRNNParams.from_state_dict` for the rest.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    ValueError
        If the file does not hold a state dict, or its tensors do not match ``config``.
    """
    state_dict = load_torch_file(path)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict")
    return SampleRNNParams.from_state_dict(config, state_dict, fold_weight_norm)


def _upsampling_matrix(w: np.ndarray) -> np.ndarray:
    """ConvTranspose1d weight ``(c, d, fs)`` as a matrix ``(fs * d, c)`` whose row ``j * dim + d`` is output
    position ``j``, channel ``d``, so ``(M @ h).reshape(fs, dim)`` is a frame's upsampled output in time order."""
    return w.transpose(2, 1, 0).reshape(-1, w.shape[0])


def tier_input_values(config: SampleRNNConfig) -> np.ndarray:
    """The tier input ``2 * (s / (q/2) - 1)`` of every sample code ``s`` in ``config.numerics.act`` ints: what the
    fixed-point model and the hardware feed ``input_expand``."""
    q = config.q_levels
    return config.numerics.act.quantize(2.0 * (np.arange(q) / (q / 2) - 1.0))


@dataclass(frozen=True)
class TierInts:
    """One tier's integer parameters as the fixed-point model uses them (act or weight ints).

    ``input_expand`` (dim, n_frame_samples), ``input_expand_bias`` (dim,); per GRU layer ``weight_ih`` /
    ``weight_hh`` (3 dim, dim), ``bias_ih`` / ``bias_hh`` (3 dim,); ``h0`` (n_rnn, dim); ``upsampling``
    (frame_size * dim, dim) with row ``j * dim + d`` for output position ``j``, channel ``d``, and
    ``upsampling_bias`` (frame_size * dim,) in the same order.
    """

    input_expand: np.ndarray
    input_expand_bias: np.ndarray
    weight_ih: tuple[np.ndarray, ...]
    weight_hh: tuple[np.ndarray, ...]
    bias_ih: tuple[np.ndarray, ...]
    bias_hh: tuple[np.ndarray, ...]
    h0: np.ndarray
    upsampling: np.ndarray
    upsampling_bias: np.ndarray


@dataclass(frozen=True)
class SampleRNNInts:
    """Every integer parameter of :class:`SampleRNNFixed` but the MLP input table (:attr:`~SampleRNNFixed.mlp_table`).

    ``tiers`` bottom first; the MLP's ``hidden`` (dim, dim), ``hidden_bias``, ``output`` (q, dim), ``output_bias``.
    """

    tiers: tuple[TierInts, ...]
    hidden: np.ndarray
    hidden_bias: np.ndarray
    output: np.ndarray
    output_bias: np.ndarray


class _SampleRNNModel:
    """What the float and fixed-point models share: the generation loop and teacher forcing.

    Subclasses provide ``tier_forward``, ``_logits`` (MLP logits, batched over steps) and ``_noise_source``
    (the sampler: ``_noise_source(seed, temperature)`` validates both and returns a function of a number of
    samples that returns their noise rows, to be added to the logits, continuing one stream across calls).
    """

    params: SampleRNNParams

    def __init__(self, params: SampleRNNParams):
        if not isinstance(params, SampleRNNParams):
            raise ValueError(f"params must be SampleRNNParams, not {type(params).__name__}")
        self.params = params
        self.config = params.config

    def _check_samples(self, samples, name: str, ndim: int) -> np.ndarray:
        samples = np.asarray(samples)
        q = self.config.q_levels
        if samples.ndim != ndim or not np.issubdtype(samples.dtype, np.integer):
            raise ValueError(f"{name} must be a {ndim}-D integer array, not {samples.dtype} {samples.shape}")
        if samples.size and (samples.min() < 0 or samples.max() >= q):
            raise ValueError(f"{name} must lie in [0, {q}), found [{samples.min()}, {samples.max()}]")
        return samples.astype(np.int64, copy=False)

    def _check_tier_args(self, tier: int, prev_samples) -> np.ndarray:
        if not 0 <= tier < self.config.n_tiers:
            raise ValueError(f"tier must be in [0, {self.config.n_tiers}), not {tier}")
        prev_samples = np.asarray(prev_samples)
        nfs = self.config.n_frame_samples[tier]
        if prev_samples.ndim != 2 or prev_samples.shape[1] != nfs:
            raise ValueError(f"prev_samples of tier {tier} must have shape (n_frames, {nfs}), "
                             f"not {prev_samples.shape}")
        return prev_samples

    def generate(self, n_samples: int, seed: int, temperature: float = 1.0,
                 progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Generate ``n_samples`` samples autoregressively, as samplernn-pytorch's ``Generator`` does.

        Sample ``i`` is ``argmax(logits_i + noise_i)``, the first maximum on ties, with the noise of the
        model's sampler: ``temperature`` times standard Gumbel noise from ``np.random.default_rng(seed)`` in
        the float model; the hardware sampler's integer noise in the fixed-point model
        (:meth:`SampleRNNFixed.generate`).

        Parameters
        ----------
        n_samples : int
            Number of samples, >= 0.
        seed : int
            Seed of the sampler's random stream, >= 0.
        temperature : float
            Sampling temperature ``T``: samples are drawn from ``softmax(logits / T)``. Finite and > 0 (and
            representable by :func:`~wavefabric.model.sampler.temperature_int` in the fixed-point model).
        progress : callable, optional
            Called with the number of samples just produced (blocks of up to 1024), e.g. ``tqdm.update``.

        Returns
        -------
        (n_samples,) int64 array of sample codes in ``[0, q_levels)``.
        """
        if not _is_int(n_samples) or n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, not {n_samples!r}")
        cfg = self.config
        lookback, q, fs0, top = cfg.lookback, cfg.q_levels, cfg.frame_sizes[0], cfg.n_tiers - 1
        tiers = [(k, cfg.n_frame_samples[k], cfg.frame_sizes[k + 1] if k < top else 0)
                 for k in range(top, -1, -1)]
        draw_noise = self._noise_source(seed, temperature)
        seq = np.full(lookback + n_samples, q // 2, dtype=np.int64)
        hidden: list = [None] * cfg.n_tiers
        outputs: list = [None] * cfg.n_tiers
        tier_forward, logits = self.tier_forward, self._logits
        for start in range(0, n_samples, _BLOCK):
            stop = min(start + _BLOCK, n_samples)
            # The noise does not depend on the logits, so a block of it is drawn ahead in one vectorised call.
            noise = draw_noise(stop - start)
            for i in range(lookback + start, lookback + stop):
                # Every n_frame_samples is a multiple of fs0, so no tier runs unless i % fs0 == 0.
                if i % fs0 == 0:
                    for k, nfs, fs_above in tiers:
                        if i % nfs == 0:
                            cond = None if k == top else outputs[k + 1][None, (i // nfs) % fs_above]
                            outputs[k], hidden[k] = tier_forward(k, seq[None, i - nfs:i], cond, hidden[k])
                step = logits(seq[None, i - fs0:i], outputs[0][None, i % fs0])[0]
                seq[i] = np.argmax(step + noise[i - lookback - start])
            if progress is not None:
                progress(stop - start)
        return seq[lookback:].copy()

    def _teacher_forced_logits(self, samples) -> np.ndarray:
        """MLP logits ``(N, q)`` for every step of ``samples`` (step ``t`` predicts ``samples[t]``)."""
        samples = self._check_samples(samples, "samples", 1)
        cfg = self.config
        n, lookback, fs0 = len(samples), cfg.lookback, cfg.frame_sizes[0]
        if n == 0:
            return np.zeros((0, cfg.q_levels), dtype=np.int64)
        seq = np.concatenate([np.full(lookback, cfg.q_levels // 2, dtype=np.int64), samples])
        cond = None
        for k in range(cfg.n_tiers - 1, -1, -1):
            # Frame m of tier k is the nfs samples before step m * nfs; the tier above has produced one
            # conditioning row per frame of this tier, in order.
            nfs = cfg.n_frame_samples[k]
            frames = -(-n // nfs)
            prev = seq[lookback - nfs:lookback - nfs + frames * nfs].reshape(frames, nfs)
            cond, _ = self.tier_forward(k, prev, None if cond is None else cond[:frames], None)
        windows = np.lib.stride_tricks.sliding_window_view(seq[lookback - fs0:lookback + n - 1], fs0)
        cond = cond[:n]
        return np.concatenate([self._logits(windows[s:s + _BLOCK], cond[s:s + _BLOCK])
                               for s in range(0, n, _BLOCK)])


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


class SampleRNNFloat(_SampleRNNModel):
    """The float64 SampleRNN.

    Parameters
    ----------
    params : SampleRNNParams
    fold_embedding : bool
        Fold the embedding into the MLP input convolution: ``T[j, s, :] = W[:, :, j] @ E[s]`` (shape
        ``(frame_sizes[0], q, dim)``), so the convolution becomes ``frame_sizes[0]`` table rows summed
        (exact algebra; equal to the unfolded model up to float rounding). The table is built once from
        the normalised weight, also when the params keep ``(g, v)``.
    """

    def __init__(self, params: SampleRNNParams, fold_embedding: bool = True):
        super().__init__(params)
        self.fold_embedding = fold_embedding
        self._record: dict[str, list[np.ndarray]] | None = None
        mlp = params.mlp
        q, fs0 = self.config.q_levels, self.config.frame_sizes[0]
        # Tier inputs: 2 * linear_dequantize(s) = 2 * (s / (q/2) - 1), computed as samplernn-pytorch does.
        self._sample_value = 2.0 * (np.arange(q) / (q / 2) - 1.0)
        if fold_embedding:
            w = mlp.input.float()
            self._table = np.concatenate([mlp.embedding @ w[:, :, j].T for j in range(fs0)])
            self._table_offset = np.arange(fs0) * q

    def tier_forward(self, tier: int, prev_samples, conditioning=None, hidden=None):
        """Run frame-level tier ``tier`` over consecutive frames.

        Parameters
        ----------
        tier : int
            0 is the bottom tier.
        prev_samples : (n_frames, n_frame_samples) int array
            Sample codes; row ``m`` is the frame before the ``m``-th step of the tier.
        conditioning : (n_frames, dim) float array or None
            The upper tier's output rows (None for the top tier), added after ``input_expand``.
        hidden : (n_rnn, dim) float array or None
            GRU state; None starts from ``h0``.

        Returns
        -------
        output : (n_frames * frame_size, dim) float array
            Upsampled conditioning for the tier below (or the MLP), in time order.
        hidden : (n_rnn, dim) float array
            The GRU state after the last frame.
        """
        prev_samples = self._check_tier_args(tier, prev_samples)
        p = self.params.tiers[tier]
        dim = self.config.dim
        record = self._recorder(f"tier{tier}")
        x = self._sample_value[prev_samples] @ p.input_expand.float()[:, :, 0].T + p.input_expand_bias
        if conditioning is not None:
            x = x + conditioning
        record("gru_input", x)
        h_all = p.h0 if hidden is None else np.asarray(hidden, dtype=np.float64)
        new_hidden = np.empty_like(h_all)
        for layer in range(self.config.n_rnn):
            gi = x @ p.weight_ih[layer].T + p.bias_ih[layer]
            w_hh, b_hh = p.weight_hh[layer], p.bias_hh[layer]
            h = h_all[layer]
            x = np.empty((len(gi), dim))
            gh = np.empty((len(gi), 3 * dim))
            for t in range(len(gi)):
                gh[t] = w_hh @ h + b_hh
                rz = float_sigmoid(gi[t, :2 * dim] + gh[t, :2 * dim])
                n = np.tanh(gi[t, 2 * dim:] + rz[:dim] * gh[t, 2 * dim:])
                h = n + rz[dim:] * (h - n)  # (1 - z) * n + z * h
                x[t] = h
            record(f"gru{layer}.rz", gi[:, :2 * dim] + gh[:, :2 * dim])
            record(f"gru{layer}.n", np.concatenate([gi[:, 2 * dim:], gh[:, 2 * dim:]]))
            record(f"gru{layer}.h", x)
            new_hidden[layer] = h
        up = x @ _upsampling_matrix(p.upsampling.float()).T + p.upsampling_bias.T.reshape(-1)
        record("upsampling", up)
        return up.reshape(-1, dim), new_hidden

    def _recorder(self, prefix: str) -> Callable[[str, np.ndarray], None]:
        """A function that keeps a copy of a named intermediate tensor while :meth:`activations` runs."""
        record = self._record
        if record is None:
            return lambda name, value: None
        return lambda name, value: record.setdefault(f"{prefix}.{name}", []).append(np.array(value).ravel())

    def activations(self, samples) -> dict[str, np.ndarray]:
        """Every intermediate tensor of a teacher-forced run on ``samples`` (flattened), by name.

        Per tier ``k``: ``tier{k}.gru_input`` (input_expand plus the conditioning), per GRU layer ``l`` the
        pre-activations ``tier{k}.gru{l}.rz`` of r and z, ``tier{k}.gru{l}.n`` (``i_n`` and ``h_n``) and its
        output ``tier{k}.gru{l}.h``, and ``tier{k}.upsampling`` (its conditioning rows); the MLP's
        ``mlp.input`` (before the ReLU), ``mlp.hidden`` (before the ReLU) and ``mlp.output`` (the logits).
        """
        self._record = {}
        try:
            self._teacher_forced_logits(samples)
            return {name: np.concatenate(parts) for name, parts in self._record.items()}
        finally:
            self._record = None

    def _logits(self, prev: np.ndarray, cond: np.ndarray) -> np.ndarray:
        mlp = self.params.mlp
        if self.fold_embedding:
            x = self._table[prev + self._table_offset].sum(axis=1)
        else:
            emb = mlp.embedding[prev]  # (T, fs0, q); the conv's flattened weight index is c * fs0 + j
            w = mlp.input.float()
            x = emb.transpose(0, 2, 1).reshape(len(prev), -1) @ w.reshape(w.shape[0], -1).T
        record = self._recorder("mlp")
        x = x + cond
        record("input", x)
        x = np.maximum(x, 0.0) @ mlp.hidden.float()[:, :, 0].T + mlp.hidden_bias
        record("hidden", x)
        logits = np.maximum(x, 0.0) @ mlp.output.float()[:, :, 0].T + mlp.output_bias
        record("output", logits)
        return logits

    def _noise_source(self, seed: int, temperature: float) -> Callable[[int], np.ndarray]:
        if (isinstance(temperature, bool) or not isinstance(temperature, int | float | np.integer | np.floating)
                or not (math.isfinite(temperature) and temperature > 0)):
            raise ValueError(f"temperature must be a finite number > 0, not {temperature!r}")
        rng = np.random.default_rng(check_int("seed", seed, 0))
        q = self.config.q_levels
        return lambda n: temperature * rng.gumbel(size=(n, q))

    def mlp_log_probs(self, prev_samples, conditioning) -> np.ndarray:
        """The sample-level MLP: log-probabilities of the next sample.

        Parameters
        ----------
        prev_samples : (T, frame_sizes[0]) int array
            For each of T steps, the previous samples, oldest first.
        conditioning : (T, dim) float array
            The bottom tier's output row for each step.

        Returns
        -------
        (T, q_levels) float array of log-probabilities.
        """
        prev = self._check_samples(prev_samples, "prev_samples", 2)
        return _log_softmax(self._logits(prev, np.asarray(conditioning, dtype=np.float64)))

    def teacher_forced(self, samples) -> np.ndarray:
        """Log-probabilities ``(N, q)`` of each of the N ``samples`` given the samples before it.

        The network runs on ``lookback`` samples of ``q // 2`` followed by ``samples`` (as in
        generation, and as samplernn-pytorch's ``Predictor`` does on a padded sequence); row ``t`` is the
        distribution generation would have drawn ``samples[t]`` from.
        """
        return _log_softmax(self._teacher_forced_logits(samples))


class SampleRNNFixed(_SampleRNNModel):
    """The fixed-point SampleRNN on integers, built from the :mod:`~wavefabric.model.kernels` models.

    Formats (:class:`SampleRNNFormats`): every 16-bit tensor is read through its own ``frac``; tier inputs,
    GRU inputs and states, ``h0``, the GRU biases and the upper tiers' conditioning are ``config.numerics.act``
    (the sigmoid and tanh tables index that format); the logits are ``config.logits`` (the sampler's noise
    table is in its units). Each layer's weights have their own format (weight-normed layers through
    :func:`~wavefabric.model.kernels.quantize_weight_norm`, the load-time weight-norm unit); a bias is stored
    at its layer's output format and enters the accumulator shifted left by the layer's narrowing shift
    ``frac_x + frac_w - frac_out``.

    * Tier inputs ``2 * (s / (q/2) - 1)`` are multiples of ``4 / q`` in [-2, 2): exact in ``act`` when
      ``q`` is a power of two and ``act.frac >= log2(q) - 2`` (so at the defaults), else rounded.
    * ``input_expand``: one :func:`linear` whose bias is ``bias + conditioning`` (added before narrowing).
    * GRU: :func:`gru_cell` per frame and layer (its shift: the layer's weight ``frac``). Upsampling: one
      :func:`linear`, a column per frame; the bottom tier's output is at ``mlp.input``'s format.
    * MLP input convolution, folded (the hardware's): the quantised embedding ``E`` and input weight ``W``
      make the table ``T[j, s, d] = narrow(sum_c W[d, c, j] * E[s, c], frac_E + frac_W, mlp.table)``
      (:attr:`mlp_table`), and for previous samples ``prev_0 .. prev_{fs0-1}`` (oldest first) and
      conditioning ``cond`` (at ``mlp.input``'s format)::

          acc[d] = sum_j T[j, prev_j, d] + (cond[d] << (frac_T - frac_x))
          x[d]   = relu(narrow(acc[d], frac_T, mlp.input))

      Unfolded (the exact reference): the ``frame_sizes[0] * q`` products plus the conditioning, narrowed
      once, then ReLU. The two differ only by the rounding of the table entries.
    * Hidden and output 1x1 convs by :func:`linear`; logits in ``config.logits``.
    * Sampling: :attr:`sampler` (``GumbelSampler(config.logits, config.gumbel_bits)``), see :meth:`generate`.

    :attr:`saturations` counts, per narrowing (:func:`saturation_names`), the values that saturated since the
    model was built (or :meth:`reset_saturations`), in generation and teacher forcing alike; a ReLU layer counts
    only the positive side (a negative value saturating is zero either way) and a GRU layer its ``i_n`` and
    ``h_n`` (its sigmoid and tanh inputs saturate harmlessly). The hardware's sticky flags are ``count > 0``.

    Parameters
    ----------
    params : SampleRNNParams
    fold_embedding : bool
        Compute the MLP input from the stored table (True, as the hardware does) or from the exact products
        (False, the reference the table's rounding is measured against).
    formats : SampleRNNFormats, optional
        Default: :meth:`SampleRNNFormats.choose` on the checkpoint and audio the float model generates.
    """

    def __init__(self, params: SampleRNNParams, fold_embedding: bool = True,
                 formats: SampleRNNFormats | None = None):
        super().__init__(params)
        cfg = self.config
        num = self.numerics = cfg.numerics
        if formats is None:
            formats = SampleRNNFormats.choose(params)
        elif not isinstance(formats, SampleRNNFormats) or formats.config != cfg:
            raise ValueError("formats must be SampleRNNFormats of this model's config")
        self.formats = formats
        fmt, shifts = formats.fmt, formats.shifts()
        self._shifts = shifts
        self.fold_embedding = fold_embedding
        q, fs0 = cfg.q_levels, cfg.frame_sizes[0]
        self._sample_value = tier_input_values(cfg)
        self._tiers = []
        for k, p in enumerate(params.tiers):
            cond = fmt(f"tier{k}.upsampling")
            gru_fmts = [fmt(f"tier{k}.gru{layer}.weight") for layer in range(cfg.n_rnn)]
            self._tiers.append(dict(
                input_expand=p.input_expand.quantize(num, fmt(f"tier{k}.input_expand.weight"))[:, :, 0],
                input_expand_bias=num.act.quantize(p.input_expand_bias),
                weight_ih=[f.quantize(w) for f, w in zip(gru_fmts, p.weight_ih, strict=True)],
                weight_hh=[f.quantize(w) for f, w in zip(gru_fmts, p.weight_hh, strict=True)],
                bias_ih=[num.act.quantize(b) for b in p.bias_ih],
                bias_hh=[num.act.quantize(b) for b in p.bias_hh],
                h0=num.act.quantize(p.h0),
                upsampling=_upsampling_matrix(p.upsampling.quantize(num, fmt(f"tier{k}.upsampling.weight"))),
                upsampling_bias=cond.quantize(p.upsampling_bias).T.reshape(-1),
            ))
        mlp = params.mlp
        embedding, w_in_fmt = fmt("mlp.embedding"), fmt("mlp.input.weight")
        self._embedding = embedding.quantize(mlp.embedding)
        w_in = mlp.input.quantize(num, w_in_fmt)  # (dim, q, fs0)
        self._input = w_in.reshape(w_in.shape[0], -1)
        # Row j * q + s of the exact products, rounded once to the table's storage format.
        exact = np.concatenate([int_matmul(self._embedding, w_in[:, :, j].T) for j in range(fs0)])
        self._table = narrow(exact, embedding.frac + w_in_fmt.frac, fmt("mlp.table"))
        self._table.setflags(write=False)
        self._table_offset = np.arange(fs0) * q
        self.sampler = GumbelSampler(cfg.logits, cfg.gumbel_bits)
        self._hidden = mlp.hidden.quantize(num, fmt("mlp.hidden.weight"))[:, :, 0]
        self._hidden_bias = fmt("mlp.hidden").quantize(mlp.hidden_bias)
        self._output = mlp.output.quantize(num, fmt("mlp.output.weight"))[:, :, 0]
        self._output_bias = cfg.logits.quantize(mlp.output_bias)
        self.reset_saturations()

    def reset_saturations(self) -> None:
        """Set every count of :attr:`saturations` to zero."""
        self.saturations = dict.fromkeys(saturation_names(self.config), 0)

    def _narrow(self, name: str, acc, out: QFormat, relu_after: bool = False, shift: int | None = None) -> np.ndarray:
        """:func:`~wavefabric.model.fixed.narrow` by ``shift`` (default: the layer's), counting the values that
        saturate."""
        y, saturated = narrow_counted(acc, self._shifts[name] if shift is None else shift, out, relu_after)
        self.saturations[name] += saturated
        return y

    def tier_forward(self, tier: int, prev_samples, conditioning=None, hidden=None):
        """Run frame-level tier ``tier`` over consecutive frames, in fixed point.

        Parameters
        ----------
        tier : int
            0 is the bottom tier.
        prev_samples : (n_frames, n_frame_samples) int array
            Sample codes.
        conditioning : (n_frames, dim) act int array or None
            The upper tier's output rows (None for the top tier).
        hidden : (n_rnn, dim) act int array or None
            GRU state; None starts from the quantised ``h0``.

        Returns
        -------
        output : (n_frames * frame_size, dim) int array in ``formats.fmt(f"tier{tier}.upsampling")``
        hidden : (n_rnn, dim) act int array
        """
        prev_samples = self._check_tier_args(tier, prev_samples)
        p, num, name = self._tiers[tier], self.numerics, f"tier{tier}"
        bias = p["input_expand_bias"][:, None]
        if conditioning is not None:
            bias = bias + np.asarray(conditioning, dtype=np.int64).T
        ie = f"{name}.input_expand"
        x = self._narrow(ie, accumulate(p["input_expand"], self._sample_value[prev_samples].T, bias,
                                        self._shifts[ie]), num.act).T  # (n_frames, dim)
        h_all = p["h0"] if hidden is None else np.asarray(hidden, dtype=np.int64)
        new_hidden = np.empty_like(h_all)
        for layer in range(self.config.n_rnn):
            args = (p["weight_ih"][layer], p["weight_hh"][layer], p["bias_ih"][layer], p["bias_hh"][layer])
            h = h_all[layer]
            out = np.empty_like(x)
            gru = f"{name}.gru{layer}"
            saturated = np.zeros(1, dtype=np.int64)
            for t in range(len(x)):
                h = out[t] = gru_cell(x[t], h, *args, num, self._shifts[gru], saturated)
            self.saturations[gru] += int(saturated[0])
            x = out
            new_hidden[layer] = h
        up = f"{name}.upsampling"
        up_values = self._narrow(up, accumulate(p["upsampling"], x.T, p["upsampling_bias"], self._shifts[up]),
                                 self.formats.fmt(up))  # (fs * dim, n_frames)
        return up_values.T.reshape(-1, self.config.dim), new_hidden

    def _logits(self, prev: np.ndarray, cond: np.ndarray) -> np.ndarray:
        cond = np.asarray(cond, dtype=np.int64)
        frac = self.formats.frac
        shift = self._shifts["mlp.input"]
        if self.fold_embedding:
            acc = self._table[prev + self._table_offset].sum(axis=1) + (cond << shift)
        else:
            # Column of step t: E[prev[t, j], c] at row c * fs0 + j, the conv's flattened weight order.
            cols = self._embedding[prev].transpose(2, 1, 0).reshape(-1, len(prev))
            shift = frac["mlp.embedding"] + frac["mlp.input.weight"] - frac["mlp.input"]
            acc = accumulate(self._input, cols, cond.T, shift).T
        x = self._narrow("mlp.input", acc, self.formats.fmt("mlp.input"), relu_after=True, shift=shift)
        x = self._narrow("mlp.hidden", accumulate(self._hidden, x.T, self._hidden_bias, self._shifts["mlp.hidden"]),
                         self.formats.fmt("mlp.hidden"), relu_after=True)
        return self._narrow("mlp.output", accumulate(self._output, x, self._output_bias,
                                                     self._shifts["mlp.output"]), self.config.logits).T

    def integer_params(self) -> SampleRNNInts:
        """The integer weights, biases and h0 this model computes with (what the hardware loads)."""
        tiers = tuple(TierInts(**{key: tuple(value) if isinstance(value, list) else value
                                  for key, value in tier.items()}) for tier in self._tiers)
        return SampleRNNInts(tiers, self._hidden, self._hidden_bias, self._output, self._output_bias)

    @property
    def mlp_table(self) -> np.ndarray:
        """The folded MLP-input table as the hardware stores it: ``(frame_sizes[0], q, dim)`` ints in
        ``config.table``; ``[j, s]`` is the row added for sample code ``s`` at position ``j`` of the previous
        ``frame_sizes[0]`` samples (oldest first). Read-only."""
        cfg = self.config
        return self._table.reshape(cfg.frame_sizes[0], cfg.q_levels, cfg.dim)

    def generate(self, n_samples: int, seed: int, temperature: float = 1.0,
                 progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Generate ``n_samples`` samples bit-exactly as the hardware does.

        The sampler's state starts at ``seed_state(seed)`` and is carried from sample to sample; each
        sample's code is what ``sampler.sample(logits, state, temperature_int(temperature))`` draws from
        that sample's fixed-point logits (see :mod:`~wavefabric.model.sampler`). So
        ``sampler.sample(teacher_forced(codes), seed_state(seed), tq)[0]`` reproduces ``codes``. Parameters
        and result as in :meth:`SampleRNNFloat.generate`; ``temperature`` must round to 1 .. 65535 in units
        of 2**-12.
        """
        return super().generate(n_samples, seed, temperature, progress)

    def _noise_source(self, seed: int, temperature: float) -> Callable[[int], np.ndarray]:
        tq = temperature_int(temperature)
        state = seed_state(seed)
        q = self.config.q_levels

        def draw(n: int) -> np.ndarray:
            nonlocal state
            noise, state = self.sampler.noise(state, n, q, tq)
            return noise

        return draw

    def mlp_logits(self, prev_samples, conditioning) -> np.ndarray:
        """The sample-level MLP in fixed point: logits (before log-softmax) of the next sample.

        Parameters
        ----------
        prev_samples : (T, frame_sizes[0]) int array
            For each of T steps, the previous samples, oldest first.
        conditioning : (T, dim) act int array
            The bottom tier's output row for each step.

        Returns
        -------
        (T, q_levels) int array in ``config.logits``.
        """
        prev = self._check_samples(prev_samples, "prev_samples", 2)
        return self._logits(prev, conditioning)

    def teacher_forced(self, samples) -> np.ndarray:
        """Logits ``(N, q)`` (``config.logits`` ints) for each of the N ``samples`` given the samples before it.

        Same sequence convention as :meth:`SampleRNNFloat.teacher_forced`.
        """
        return self._teacher_forced_logits(samples)


@dataclass(frozen=True)
class TeacherForcedError:
    """Fixed-point against float on one teacher-forced sequence.

    Attributes
    ----------
    top1 : float
        Fraction of steps whose most likely sample is the same.
    kl_mean, kl_max : float
        Mean and largest ``KL(float || fixed)`` of the per-step distributions, in nats.
    """

    top1: float
    kl_mean: float
    kl_max: float


def compare_teacher_forced(float_model: SampleRNNFloat, fixed_model: SampleRNNFixed,
                           samples) -> TeacherForcedError:
    """Run both models teacher-forced on ``samples`` and compare their next-sample distributions."""
    log_p = float_model.teacher_forced(samples)
    log_q = _log_softmax(fixed_model.config.logits.dequantize(fixed_model.teacher_forced(samples)))
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
    top1 = np.mean(np.argmax(log_p, axis=1) == np.argmax(log_q, axis=1))
    return TeacherForcedError(float(top1), float(kl.mean()), float(kl.max()))


#: Fewest fractional bits of a per-layer format (a 16-bit tensor up to 8192); the most are ``width - 1``.
FRAC_MIN = 2
#: Largest narrowing shift the accelerator takes: ``frac_x + frac_w - frac_out`` with 15, 15 and 2.
MAX_SHIFT = 28
#: Largest shift of the MLP input's narrowing (``frac`` of the table minus ``frac`` of the MLP input).
MAX_MLP_SHIFT = 16


def saturation_names(config: SampleRNNConfig) -> list[str]:
    """The narrowings whose saturations are counted (:attr:`SampleRNNFixed.saturations`) and flagged by the
    accelerator, in its flag order: the matrix-vector unit's operations (per tier ``input_expand`` and
    ``upsampling``, then ``mlp.hidden`` and ``mlp.output``), the MLP input (``mlp.input``), then every GRU layer
    (``tier{k}.gru{l}``, bottom tier first). Each is also the key of its shift in
    :meth:`SampleRNNFormats.shifts`."""
    ops = [f"tier{k}.{op}" for k in range(config.n_tiers) for op in ("input_expand", "upsampling")]
    return ops + ["mlp.hidden", "mlp.output", "mlp.input"] + [
        f"tier{k}.gru{layer}" for k in range(config.n_tiers) for layer in range(config.n_rnn)]


@dataclass(frozen=True)
class SampleRNNFormats:
    """Per-layer number formats of a SampleRNN: every tensor's ``frac`` at the storage width ``act.width``.

    **Own formats** (names of :meth:`names`): per tier ``k`` the weights ``tier{k}.input_expand.weight``,
    ``tier{k}.gru{l}.weight`` (``weight_ih`` and ``weight_hh`` of GRU layer ``l``: the r and z gates sum both in
    one accumulator) and ``tier{k}.upsampling.weight``; ``tier{k}.upsampling`` is the conditioning that tier
    ``k`` hands down; the MLP's ``mlp.embedding``, ``mlp.input.weight`` (both only build the table, in software),
    ``mlp.table`` (the folded table's entries), ``mlp.input`` (its input, which is also the bottom tier's
    conditioning, added into the same sum), ``mlp.hidden.weight``, ``mlp.hidden`` and ``mlp.output.weight``.

    **Fixed formats** (``config``'s): the tier inputs, the GRU inputs, states, biases and ``h0`` (``act``: the
    sigmoid and tanh tables index it; a gate input beyond its range saturates harmlessly, sigmoid(8) and tanh(8)
    being within 3.4e-4 of their limits), so the conditioning of every tier above the bottom, which adds into a
    GRU input, is ``act`` too (``tier{k}.upsampling`` must equal ``act.frac`` for ``k >= 1``); and the logits
    (``config.logits``: the sampler's noise table is in its units).

    Each narrowing drops ``frac_x + frac_w - frac_out`` bits (:meth:`shifts`), a run-time value in the
    accelerator, from 0 to :data:`MAX_SHIFT` (:data:`MAX_MLP_SHIFT` for the MLP input). Construction validates
    the names, the range of every ``frac`` and the shifts, raising :class:`~wavefabric.model.formats.FormatsError`
    (a ``ValueError``) with one line.
    """

    config: SampleRNNConfig
    frac: Mapping[str, int]

    def __post_init__(self):
        if not isinstance(self.config, SampleRNNConfig):
            raise ValueError(f"config must be a SampleRNNConfig, not {type(self.config).__name__}")
        names = self.names(self.config)
        frac = dict(self.frac)
        missing = [n for n in names if n not in frac]
        if missing:
            raise FormatsError(f"no format for {missing[0]} (formats of another checkpoint's sizes?)")
        unknown = sorted(set(frac) - set(names))
        if unknown:
            raise FormatsError(f"unknown tensor {unknown[0]!r} (formats of another checkpoint's sizes?)")
        for name in names:
            lo, hi = FRAC_MIN, self._width(self.config, name) - 1
            if not _is_int(frac[name]) or not lo <= frac[name] <= hi:
                raise FormatsError(f"{name}'s frac must be an integer from {lo} to {hi}, not {frac[name]!r}")
        act = self.config.numerics.act.frac
        for k in range(1, self.config.n_tiers):
            if frac[f"tier{k}.upsampling"] != act:
                raise FormatsError(f"tier{k}.upsampling's frac must be act's, {act} (it adds into a GRU input), "
                                   f"not {frac[f'tier{k}.upsampling']}")
        object.__setattr__(self, "frac", MappingProxyType({name: int(frac[name]) for name in names}))
        for name, shift in self.shifts().items():
            top = MAX_MLP_SHIFT if name == "mlp.input" else MAX_SHIFT
            if not 0 <= shift <= top:
                raise FormatsError(f"{name}'s narrowing shift (frac of input + weight - output) is {shift}; the "
                                   f"accelerator takes 0 to {top}")

    @property
    def width(self) -> int:
        """The storage width of every tensor."""
        return self.config.numerics.act.width

    @staticmethod
    def names(config: SampleRNNConfig) -> list[str]:
        """The tensors that have their own format, in checkpoint order."""
        names = []
        for k in range(config.n_tiers):
            names += [f"tier{k}.input_expand.weight", *(f"tier{k}.gru{layer}.weight" for layer in range(config.n_rnn)),
                      f"tier{k}.upsampling.weight", f"tier{k}.upsampling"]
        return names + ["mlp.embedding", "mlp.input.weight", "mlp.table", "mlp.input", "mlp.hidden.weight",
                        "mlp.hidden", "mlp.output.weight"]

    def fmt(self, name: str) -> QFormat:
        """The format of tensor ``name``: ``frac[name]`` at its storage width (weights ``weight.width``, the table
        ``config.table.width``, the rest ``act.width``)."""
        return QFormat(self._width(self.config, name), self.frac[name])

    @staticmethod
    def _width(config: SampleRNNConfig, name: str) -> int:
        if name.endswith(".weight"):
            return config.numerics.weight.width
        return config.table.width if name == "mlp.table" else config.numerics.act.width

    def shifts(self) -> dict[str, int]:
        """Every narrowing's shift by :func:`saturation_names`' names: what the accelerator loads."""
        f, cfg = self.frac, self.config
        act = cfg.numerics.act.frac
        shifts = {}
        for k in range(cfg.n_tiers):
            shifts[f"tier{k}.input_expand"] = f[f"tier{k}.input_expand.weight"]  # act in, act out
            shifts[f"tier{k}.upsampling"] = act + f[f"tier{k}.upsampling.weight"] - f[f"tier{k}.upsampling"]
        shifts["mlp.hidden"] = f["mlp.input"] + f["mlp.hidden.weight"] - f["mlp.hidden"]
        shifts["mlp.output"] = f["mlp.hidden"] + f["mlp.output.weight"] - cfg.logits.frac
        shifts["mlp.input"] = f["mlp.table"] - f["mlp.input"]
        for k in range(cfg.n_tiers):
            for layer in range(cfg.n_rnn):
                shifts[f"tier{k}.gru{layer}"] = f[f"tier{k}.gru{layer}.weight"]  # act in, act out
        return {name: shifts[name] for name in saturation_names(cfg)}

    @classmethod
    def default(cls, config: SampleRNNConfig) -> SampleRNNFormats:
        """The global formats of ``config.numerics`` (weights ``weight``, the rest ``act``, the table
        ``config.table``): one format for every checkpoint."""
        num = config.numerics
        return cls(config, {name: (num.weight.frac if name.endswith(".weight") else
                                   config.table.frac if name == "mlp.table" else num.act.frac)
                            for name in cls.names(config)})

    @classmethod
    def choose(cls, params: SampleRNNParams, audio=None) -> SampleRNNFormats:
        """Formats for a checkpoint: :func:`profile_samplernn`'s choice."""
        return profile_samplernn(params, audio)[0]

    def save(self, path: str | os.PathLike) -> None:
        """Write the formats JSON (:func:`~wavefabric.model.formats.save_formats`)."""
        save_formats(path, "samplernn", self.width, self.frac)

    @classmethod
    def load(cls, path: str | os.PathLike, config: SampleRNNConfig) -> SampleRNNFormats:
        """Read a formats JSON for ``config``; :class:`~wavefabric.model.formats.FormatsError` (one line naming
        the file) if it does not fit ``config``'s sizes or the hardware's widths and shifts."""
        width = config.numerics.act.width
        frac = load_formats(path, "samplernn", width, cls.names(config), FRAC_MIN,
                            max(cls._width(config, name) for name in cls.names(config)) - 1)
        try:
            return cls(config, frac)
        except FormatsError as error:
            raise FormatsError(f"{path}: {error}") from None


#: Samples the float model generates as calibration audio when none is given (seed 0).
CALIBRATION_SAMPLES = 2048


def audio_codes(samples, q_levels: int) -> np.ndarray:
    """Audio (float samples, e.g. :func:`~wavefabric.model.audio.read_wav`'s) as sample codes, quantised as
    samplernn-pytorch's ``linear_quantize`` does its training sequences: shifted and scaled so that the minimum
    becomes code 0 and the maximum code ``q_levels - 1``. Calibration audio for :func:`profile_samplernn`.

    Raises
    ------
    ValueError
        For no samples, or samples that are not finite.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("calibration audio must be a non-empty sequence of finite samples")
    span = x.max() - x.min()
    scaled = (x - x.min()) / (span if span > 0 else 1.0)
    eps = 1e-2  # samplernn-pytorch's EPSILON
    return np.floor(scaled * (q_levels - eps) + eps / 2).astype(np.int64)


def _weight_tensors(params: SampleRNNParams) -> dict[str, np.ndarray]:
    """The float weights with their own format, by :meth:`SampleRNNFormats.names`' names."""
    out = {}
    for k, p in enumerate(params.tiers):
        out[f"tier{k}.input_expand.weight"] = p.input_expand.float()
        for layer in range(params.config.n_rnn):
            out[f"tier{k}.gru{layer}.weight"] = np.concatenate([p.weight_ih[layer], p.weight_hh[layer]], axis=1)
        out[f"tier{k}.upsampling.weight"] = p.upsampling.float()
    mlp = params.mlp
    out.update({"mlp.embedding": mlp.embedding, "mlp.input.weight": mlp.input.float(),
                "mlp.hidden.weight": mlp.hidden.float(), "mlp.output.weight": mlp.output.float()})
    return out


def profile_samplernn(params: SampleRNNParams, audio=None) -> tuple[SampleRNNFormats, list[TensorProfile]]:
    """Choose per-layer formats for a checkpoint and profile every tensor against its format.

    Weights (and the folded table, known exactly at load time) get the most fractional bits that hold their
    largest magnitude (:data:`~wavefabric.model.formats.WEIGHT_HEADROOM`); activations by
    :func:`~wavefabric.model.formats.act_frac` (1.125 times the peak, at least 5 rms) from their values, measured
    by running the float model teacher forced on ``audio``: sample codes, by default :data:`CALIBRATION_SAMPLES`
    samples the float model generates with seed 0. A ReLU's input only needs its positive peak (a negative value
    that saturates is zero either way). ``frac`` stays within :data:`FRAC_MIN` to ``width - 1``, the MLP input's
    no finer than the table's, and every shift non-negative.

    Returns
    -------
    formats : SampleRNNFormats
    profile : list of TensorProfile
        One row per tensor, in network order: the weights and activations with their own format, and the fixed
        ones (GRU inputs, gate pre-activations, states, logits) against theirs, noted where saturating is
        harmless.
    """
    cfg = params.config
    act = cfg.numerics.act
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero-norm row: refused just below
        weights = _weight_tensors(params)
    undefined = [name for name, w in weights.items() if not np.all(np.isfinite(w))]
    if undefined:
        raise ValueError(f"{undefined[0]} is not finite in float (a weight-normed row of zero norm?): give the "
                         f"formats explicitly")
    float_model = SampleRNNFloat(params)
    if audio is None:
        audio = float_model.generate(CALIBRATION_SAMPLES, seed=0)
    values = float_model.activations(audio)

    def frac(peak: float, headroom: float, name: str = "") -> int:
        bits = SampleRNNFormats._width(cfg, name)
        return frac_for(peak, bits, headroom, FRAC_MIN, bits - 1)

    def act_format(peak: float, *tensors: np.ndarray) -> int:
        rms = math.sqrt(sum(float(np.sum(np.square(t))) for t in tensors) / sum(t.size for t in tensors))
        return act_frac(peak, rms, act.width, FRAC_MIN, act.width - 1)

    chosen = {name: frac(np.max(np.abs(w)), WEIGHT_HEADROOM, name) for name, w in weights.items()}
    chosen["mlp.table"] = frac(np.max(np.abs(float_model._table)), WEIGHT_HEADROOM, "mlp.table")
    cond0 = values["tier0.upsampling"]
    mlp_in = max(float(np.max(np.abs(cond0))), float(np.max(values["mlp.input"])))
    chosen["mlp.input"] = min(act_format(mlp_in, cond0, values["mlp.input"]), chosen["mlp.table"])
    chosen["mlp.hidden"] = act_format(float(np.max(values["mlp.hidden"])), values["mlp.hidden"])
    for k in range(cfg.n_tiers):
        chosen[f"tier{k}.upsampling"] = chosen["mlp.input"] if k == 0 else act.frac
    # Shifts stay non-negative: an output format no finer than its input and weight together.
    chosen["mlp.hidden"] = min(chosen["mlp.hidden"], chosen["mlp.input"] + chosen["mlp.hidden.weight"])
    chosen["mlp.hidden"] = max(chosen["mlp.hidden"], cfg.logits.frac - chosen["mlp.output.weight"])
    formats = SampleRNNFormats(cfg, {name: chosen[name] for name in SampleRNNFormats.names(cfg)})

    rows = []

    def row(name: str, kind: str, tensor, fmt: QFormat, note: str = "") -> None:
        rows.append(TensorProfile.measure(name, kind, tensor, fmt, note))

    def weight(name: str) -> None:
        row(name, "weight", weights[name], formats.fmt(name))

    relu_note = "before a ReLU: negative values saturating is harmless"
    for k in range(cfg.n_tiers):
        t = f"tier{k}"
        weight(f"{t}.input_expand.weight")
        row(f"{t}.gru_input", "act", values[f"{t}.gru_input"], act)
        for layer in range(cfg.n_rnn):
            g = f"{t}.gru{layer}"
            weight(f"{g}.weight")
            row(f"{g}.rz", "act", values[f"{g}.rz"], act, "sigmoid inputs: saturating is harmless")
            row(f"{g}.n", "act", values[f"{g}.n"], act, "i_n and h_n, parts of a tanh input")
            row(f"{g}.h", "act", values[f"{g}.h"], act)
        weight(f"{t}.upsampling.weight")
        row(f"{t}.upsampling", "act", values[f"{t}.upsampling"], formats.fmt(f"{t}.upsampling"))
    weight("mlp.embedding")
    weight("mlp.input.weight")
    row("mlp.table", "weight", float_model._table, formats.fmt("mlp.table"))
    row("mlp.input", "act", np.maximum(values["mlp.input"], 0), formats.fmt("mlp.input"), relu_note)
    weight("mlp.hidden.weight")
    row("mlp.hidden", "act", np.maximum(values["mlp.hidden"], 0), formats.fmt("mlp.hidden"), relu_note)
    weight("mlp.output.weight")
    row("mlp.output", "act", values["mlp.output"], cfg.logits)
    return formats, rows
