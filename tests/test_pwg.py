"""Tests of model/pwg.py: config validation, checkpoint loading, float parity with PyTorch, fixed point."""

import dataclasses
import math
import re
import warnings

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics
from wavefabric.model.pwg import (
    PWG_NUMERICS,
    PWGConfig,
    PWGFixed,
    from_state_dict,
    load_checkpoint,
    random_state_dict,
    residual_layer,
    residual_layer_fixed,
    snr_db,
    upsample_table,
)

# Small network for fast tests: two stacks of three layers, dilations 1 2 4 1 2 4, hop 6.
SMALL = PWGConfig(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=12,
                  aux_channels=20, aux_context_window=2, upsample_scales=(2, 3))
LJSPEECH = PWGConfig()


def padded_mel(config: PWGConfig, frames: int, seed: int) -> np.ndarray:
    """A random ``(A, frames + 2w)`` mel, as ``forward`` takes it."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((config.aux_channels, frames + 2 * config.aux_context_window))


def noise(config: PWGConfig, frames: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((config.in_channels, frames * config.hop_size))


# --- config ------------------------------------------------------------------------------------------------


def test_config_defaults_are_ljspeech_v1():
    c = LJSPEECH
    assert (c.layers, c.stacks, c.residual_channels, c.gate_channels, c.skip_channels, c.aux_channels) == (
        30, 3, 64, 128, 64, 80)
    assert c.hop_size == 256 and c.sample_rate == 22050 and c.aux_context_window == 2
    assert [c.dilation(layer) for layer in (0, 9, 10, 29)] == [1, 512, 1, 512]
    assert c.numerics == PWG_NUMERICS


@pytest.mark.parametrize("field, value", [
    ("in_channels", 0),
    ("out_channels", 1.0),
    ("kernel_size", 4),
    ("layers", 0),
    ("layers", 31),            # not divisible by stacks = 3
    ("stacks", 0),
    ("residual_channels", True),
    ("gate_channels", 127),
    ("skip_channels", -1),
    ("aux_channels", 0),
    ("aux_context_window", -1),
    ("upsample_scales", ()),
    ("upsample_scales", (4, 0)),
    ("upsample_scales", 4),
    ("sample_rate", 0),
    ("use_weight_norm", 1),
    ("numerics", None),
])
def test_config_rejects_invalid_field(field, value):
    with pytest.raises(ValueError, match=rf"PWGConfig\.{field} "):
        PWGConfig(**{field: value})


def test_config_rejects_overflowing_accumulator():
    wide = Numerics(act=QFormat(30, 20), weight=QFormat(30, 20), gate=QFormat(16, 15))
    with pytest.raises(ValueError, match=r"PWGConfig\.numerics: the .* accumulator"):
        PWGConfig(numerics=wide)


def test_config_accepts_yaml_list_of_scales():
    assert PWGConfig(upsample_scales=[4, 4, 4, 4]).upsample_scales == (4, 4, 4, 4)


# --- state dicts and loading -------------------------------------------------------------------------------


def test_random_state_dict_names_and_shapes():
    state = random_state_dict(LJSPEECH, seed=0)
    assert {k: v.shape for k, v in state.items()} == LJSPEECH.tensor_shapes()
    assert state["first_conv.weight_g"].shape == (64, 1, 1)
    assert state["conv_layers.7.conv.weight_v"].shape == (128, 64, 3)
    assert state["conv_layers.7.conv1x1_aux.weight_g"].shape == (128, 1, 1)
    assert state["upsample_net.conv_in.weight_v"].shape == (80, 80, 5)
    assert state["upsample_net.upsample.up_layers.1.weight_g"].shape == (1, 1, 1, 1)
    assert state["upsample_net.upsample.up_layers.7.weight_v"].shape == (1, 1, 1, 9)
    assert state["last_conv_layers.3.bias"].shape == (1,)
    assert "conv_layers.0.conv1x1_aux.bias" not in state and "upsample_net.conv_in.bias" not in state
    assert all(v.dtype == np.float32 for v in state.values())
    # Trained-like scales: Conv2d kernels near 1/(2s+1), g near ||v||.
    assert np.allclose(state["upsample_net.upsample.up_layers.3.weight_v"], 1 / 9, rtol=0.5)
    v = state["conv_layers.2.conv.weight_v"]
    assert np.allclose(state["conv_layers.2.conv.weight_g"].ravel(), np.linalg.norm(v.reshape(128, -1), axis=1),
                       rtol=0.5)


def test_plain_weights_when_weight_norm_is_off():
    config = dataclasses.replace(SMALL, use_weight_norm=False)
    state = random_state_dict(config, seed=0)
    assert "conv_layers.1.conv.weight" in state and "conv_layers.1.conv.weight_g" not in state
    generator = from_state_dict(config, state)
    assert np.array_equal(generator.weight("conv_layers.1.conv"), state["conv_layers.1.conv.weight"])


def test_missing_tensor_is_named():
    state = random_state_dict(LJSPEECH, seed=0)
    del state["conv_layers.3.conv.weight_v"]
    with pytest.raises(ValueError, match="^checkpoint is missing tensor 'conv_layers.3.conv.weight_v'$"):
        from_state_dict(LJSPEECH, state)


def test_misshaped_tensor_is_named():
    state = random_state_dict(LJSPEECH, seed=0)
    state["conv_layers.5.conv1x1_skip.bias"] = np.zeros(63, dtype=np.float32)
    message = "tensor 'conv_layers.5.conv1x1_skip.bias' has shape (63,), expected (64,)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        from_state_dict(LJSPEECH, state)


def test_unexpected_tensor_is_named():
    # A 30-layer checkpoint loaded with a 27-layer config.
    state = random_state_dict(LJSPEECH, seed=0)
    with pytest.raises(ValueError, match="unexpected tensor 'conv_layers.27.conv.bias'"):
        from_state_dict(dataclasses.replace(LJSPEECH, layers=27), state)


def test_non_finite_tensor_is_named():
    state = random_state_dict(SMALL, seed=0)
    state["first_conv.bias"][3] = np.nan
    with pytest.raises(ValueError, match="tensor 'first_conv.bias' contains NaN or infinite values"):
        from_state_dict(SMALL, state)


def test_stats_buffers_are_ignored():
    state = random_state_dict(SMALL, seed=0)
    state["mean"] = np.zeros(20, dtype=np.float32)
    state["scale"] = np.ones(20, dtype=np.float32)
    from_state_dict(SMALL, state)


def test_fold_weight_norm_gives_identical_output():
    state = random_state_dict(SMALL, seed=1)
    z, c = noise(SMALL, 5, 2), padded_mel(SMALL, 5, 3)
    folded = from_state_dict(SMALL, state, fold_weight_norm=True).forward(z, c)
    unfolded = from_state_dict(SMALL, state, fold_weight_norm=False).forward(z, c)
    assert np.array_equal(folded, unfolded)


def test_forward_rejects_mismatched_shapes():
    generator = from_state_dict(SMALL, random_state_dict(SMALL, seed=0))
    with pytest.raises(ValueError, match="z must have shape"):
        generator.forward(np.zeros((2, 12)), padded_mel(SMALL, 2, 0))
    with pytest.raises(ValueError, match="c must have shape"):
        generator.forward(noise(SMALL, 2, 0), padded_mel(SMALL, 3, 0))
    with pytest.raises(ValueError, match="c must have shape"):
        generator.inference(np.zeros((4, 19)))


def test_inference_is_forward_on_edge_padded_mel_and_seeded_noise():
    generator = from_state_dict(SMALL, random_state_dict(SMALL, seed=0))
    mel = np.random.default_rng(5).standard_normal((4, SMALL.aux_channels))
    padded = np.concatenate([mel[:1], mel[:1], mel, mel[-1:], mel[-1:]]).T
    expected = generator.forward(np.random.default_rng(9).standard_normal((1, 4 * SMALL.hop_size)), padded).T
    assert np.array_equal(generator.inference(mel, seed=9), expected)
    assert generator.inference(mel, seed=9).shape == (24, 1)


# --- float parity with PyTorch -----------------------------------------------------------------------------


def torch_generator(config: PWGConfig, state: dict, dtype):
    """The package's generator rebuilt from torch primitives, loaded strictly from ``state``.

    Module names follow ``ParallelWaveGANGenerator`` so that ``load_state_dict(strict=True)`` checks every
    name and shape that :func:`random_state_dict` produces.
    """
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    def norm(module):
        if not config.use_weight_norm:
            return module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the package uses the deprecated weight_norm
            return nn.utils.weight_norm(module)

    half = config.gate_channels // 2

    class Block(nn.Module):
        def __init__(self, dilation):
            super().__init__()
            k = config.kernel_size
            self.conv = norm(nn.Conv1d(config.residual_channels, config.gate_channels, k,
                                       padding=(k - 1) // 2 * dilation, dilation=dilation))
            self.conv1x1_aux = norm(nn.Conv1d(config.aux_channels, config.gate_channels, 1, bias=False))
            self.conv1x1_skip = norm(nn.Conv1d(half, config.skip_channels, 1))
            self.conv1x1_out = norm(nn.Conv1d(half, config.residual_channels, 1))

        def forward(self, x, c):
            a, b = self.conv(x).split(half, dim=1)
            ca, cb = self.conv1x1_aux(c).split(half, dim=1)
            g = torch.tanh(a + ca) * torch.sigmoid(b + cb)
            return (self.conv1x1_out(g) + x) * math.sqrt(0.5), self.conv1x1_skip(g)

    class Stretch(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return F.interpolate(x, scale_factor=(1, self.scale), mode="nearest")

    class Upsample(nn.Module):
        def __init__(self):
            super().__init__()
            self.up_layers = nn.ModuleList()
            for s in config.upsample_scales:
                self.up_layers.append(Stretch(s))
                self.up_layers.append(norm(nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False)))

        def forward(self, c):
            c = c.unsqueeze(1)
            for layer in self.up_layers:
                c = layer(c)
            return c.squeeze(1)

    class ConvInUpsample(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_in = norm(nn.Conv1d(config.aux_channels, config.aux_channels,
                                          2 * config.aux_context_window + 1, bias=False))
            self.upsample = Upsample()

        def forward(self, c):
            return self.upsample(self.conv_in(c))

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.first_conv = norm(nn.Conv1d(config.in_channels, config.residual_channels, 1))
            self.upsample_net = ConvInUpsample()
            self.conv_layers = nn.ModuleList(Block(config.dilation(i)) for i in range(config.layers))
            self.last_conv_layers = nn.ModuleList([
                nn.ReLU(), norm(nn.Conv1d(config.skip_channels, config.skip_channels, 1)),
                nn.ReLU(), norm(nn.Conv1d(config.skip_channels, config.out_channels, 1)),
            ])

        def forward(self, z, c):
            c = self.upsample_net(c)
            x = self.first_conv(z)
            skips = 0
            for block in self.conv_layers:
                x, s = block(x, c)
                skips = skips + s
            x = skips * math.sqrt(1.0 / len(self.conv_layers))
            for layer in self.last_conv_layers:
                x = layer(x)
            return x

    model = Generator().to(dtype)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model.eval()


def run_torch(module, *arrays, dtype):
    """``module`` on NumPy inputs (batch of one), outputs as float64 NumPy without the batch axis."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    # One thread: on a loaded 2-core machine torch's OpenMP pool can be 100x slower than serial.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = module(*(torch.from_numpy(a).to(dtype)[None] for a in arrays))
    finally:
        torch.set_num_threads(threads)
    if isinstance(out, tuple):
        return tuple(o[0].double().numpy() for o in out)
    return out[0].double().numpy()


@pytest.mark.parametrize("dilation_layer, length", [(0, 40), (1, 40), (2, 40), (2, 3), (1, 1)])
def test_residual_block_matches_torch(dilation_layer, length):
    torch = pytest.importorskip("torch")
    # Dilations 1, 2 and 4, including inputs shorter than the dilated kernel's span (edges in zero padding).
    config = SMALL
    state = random_state_dict(config, seed=3)
    reference = torch_generator(config, state, torch.float64).conv_layers[dilation_layer]
    generator = from_state_dict(config, state)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((config.residual_channels, length))
    c = rng.standard_normal((config.aux_channels, length))
    x_next, skip = residual_layer(x, c, generator.layer(dilation_layer))
    x_ref, skip_ref = run_torch(reference, x, c, dtype=torch.float64)
    assert np.max(np.abs(x_next - x_ref)) < 1e-12
    assert np.max(np.abs(skip - skip_ref)) < 1e-12


def test_upsampler_matches_torch():
    torch = pytest.importorskip("torch")
    state = random_state_dict(LJSPEECH, seed=5)
    reference = torch_generator(LJSPEECH, state, torch.float64).upsample_net
    c = padded_mel(LJSPEECH, 3, 6)
    up = from_state_dict(LJSPEECH, state).upsample(c)
    assert up.shape == (80, 3 * 256)
    assert np.max(np.abs(up - run_torch(reference, c, dtype=torch.float64))) < 1e-12


@pytest.mark.parametrize("use_weight_norm", [True, False])
def test_small_generator_matches_torch(use_weight_norm):
    torch = pytest.importorskip("torch")
    config = dataclasses.replace(SMALL, use_weight_norm=use_weight_norm)
    state = random_state_dict(config, seed=7)
    z, c = noise(config, 9, 8), padded_mel(config, 9, 9)
    out = from_state_dict(config, state).forward(z, c)
    reference = run_torch(torch_generator(config, state, torch.float64), z, c, dtype=torch.float64)
    assert out.shape == (1, 54)
    assert np.max(np.abs(out - reference)) < 1e-12


def test_ljspeech_generator_matches_torch_float32_and_float64():
    torch = pytest.importorskip("torch")
    state = random_state_dict(LJSPEECH, seed=11)
    z, c = noise(LJSPEECH, 3, 12), padded_mel(LJSPEECH, 3, 13)
    out = from_state_dict(LJSPEECH, state).forward(z, c)
    assert 0.1 < np.std(out) < 10  # outputs of order 1
    ref64 = run_torch(torch_generator(LJSPEECH, state, torch.float64), z, c, dtype=torch.float64)
    assert np.max(np.abs(out - ref64)) < 1e-10
    # The package runs in float32 (measured max difference 1.2e-6).
    ref32 = run_torch(torch_generator(LJSPEECH, state, torch.float32), z, c, dtype=torch.float32)
    assert np.max(np.abs(out - ref32)) < 1e-4


def test_torch_tensors_and_parametrization_names_are_accepted():
    torch = pytest.importorskip("torch")
    state = random_state_dict(SMALL, seed=0)
    z, c = noise(SMALL, 2, 1), padded_mel(SMALL, 2, 2)
    expected = from_state_dict(SMALL, state).forward(z, c)
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): torch.from_numpy(v).requires_grad_()
               for k, v in state.items()}
    assert np.array_equal(from_state_dict(SMALL, renamed).forward(z, c), expected)


@pytest.mark.parametrize("nested", [True, False])
def test_load_checkpoint(tmp_path, nested):
    torch = pytest.importorskip("torch")
    state = random_state_dict(SMALL, seed=0)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    path = tmp_path / ("checkpoint-100steps.pkl" if nested else "generator.pt")
    torch.save({"model": {"generator": tensors, "discriminator": {}}, "steps": 100} if nested else tensors, path)
    z, c = noise(SMALL, 2, 1), padded_mel(SMALL, 2, 2)
    expected = from_state_dict(SMALL, state).forward(z, c)
    assert np.array_equal(load_checkpoint(path, SMALL).forward(z, c), expected)


# --- fixed point -------------------------------------------------------------------------------------------


def test_residual_layer_fixed_formats_and_error():
    config = LJSPEECH
    num = config.numerics
    state = random_state_dict(config, seed=2)
    fixed = PWGFixed(from_state_dict(config, state))
    float_layer = from_state_dict(config, state).layer(3)
    rng = np.random.default_rng(3)
    x = num.act.quantize(rng.standard_normal((64, 200)))
    c = num.act.quantize(rng.standard_normal((80, 200)))
    x_next, skip = residual_layer_fixed(x, c, fixed.layers[3], num)
    assert x_next.dtype == np.int64 and skip.dtype == np.int64
    assert num.act.contains(x_next) and num.act.contains(skip)
    x_ref, skip_ref = residual_layer(num.act.dequantize(x), num.act.dequantize(c), float_layer)
    assert np.max(np.abs(num.act.dequantize(x_next) - x_ref)) < 5e-3  # measured 2.5e-3
    assert np.max(np.abs(num.act.dequantize(skip) - skip_ref)) < 5e-3  # measured 2.9e-3
    # Full-scale inputs saturate instead of wrapping.
    full = np.full_like(x, num.act.max_int)
    x_sat, skip_sat = residual_layer_fixed(full, np.full_like(c, num.act.min_int), fixed.layers[3], num)
    assert num.act.contains(x_sat) and num.act.contains(skip_sat)


def test_fixed_upsampler_error():
    config = LJSPEECH
    num = config.numerics
    generator = from_state_dict(config, random_state_dict(config, seed=4))
    fixed = PWGFixed(generator)
    c = padded_mel(config, 4, 5)
    up = fixed.upsample(fixed.frame_conditioning(num.act.quantize(c)))
    assert up.shape == (80, 4 * 256)
    error = np.max(np.abs(up / 2.0**num.acc_frac - generator.upsample(c)))
    assert error < 3e-3  # measured 9.9e-4 (1.7e-3 when narrowed after every stage)


@pytest.mark.parametrize("config", [SMALL, LJSPEECH], ids=["scales 2 3", "scales 4 4 4 4"])
def test_upsample_table_is_the_stages(config):
    # The table reproduces the stages, zero padding at both ends included, for every length it allows.
    generator = from_state_dict(config, random_state_dict(config, seed=6))
    table = upsample_table(generator.upsample_stages, config.upsample_scales)
    assert (table.taps, table.offset, table.edge, table.min_frames) == (5, 2, 1, 2)
    assert table.weights.shape == (3, config.hop_size, 5)
    rng = np.random.default_rng(7)
    for frames in range(table.min_frames, table.min_frames + 6):
        a = rng.standard_normal((6, frames))
        assert np.max(np.abs(table.apply(a) - generator.upsample_stages(a))) < 1e-12
    with pytest.raises(ValueError, match=r"^the upsampler's table needs at least 2 frames, not 1$"):
        table.apply(np.zeros((6, 1)))
    one_stage = from_state_dict(dataclasses.replace(config, upsample_scales=(4,)), random_state_dict(
        dataclasses.replace(config, upsample_scales=(4,)), seed=6))
    single = upsample_table(one_stage.upsample_stages, (4,))
    assert (single.taps, single.offset, single.edge, single.min_frames) == (3, 1, 0, 1)


def test_fixed_upsample_is_exact():
    # Integer table times integer frames, full scale included: the exact sums (no narrowing), as the array
    # accumulates them.
    config = SMALL
    num = config.numerics
    fixed = PWGFixed(from_state_dict(config, random_state_dict(config, seed=8)))
    table = fixed.upsample_table
    assert np.issubdtype(table.weights.dtype, np.integer) and num.weight.contains(table.weights)
    rng = np.random.default_rng(9)
    frames, hop = 7, config.hop_size
    a = rng.integers(num.act.min_int, num.act.max_int + 1, size=(4, frames))
    a[0], a[1] = num.act.max_int, num.act.min_int
    expected = np.zeros((4, frames * hop), dtype=np.int64)
    rows = table.rows(frames)
    for n in range(frames * hop):
        m, p = divmod(n, hop)
        for d in range(table.taps):
            if 0 <= m - table.offset + d < frames:
                expected[:, n] += int(table.weights[rows[m], p, d]) * a[:, m - table.offset + d]
    assert np.array_equal(fixed.upsample(a), expected)


def test_upsample_table_must_fit_the_weight_format():
    config = dataclasses.replace(SMALL, use_weight_norm=False)
    state = random_state_dict(config, seed=0)
    state["upsample_net.upsample.up_layers.3.weight"][:] = 9.0  # a composite gain far beyond Q3.13's 4
    with pytest.raises(ValueError, match=r"^a weight of the upsampling table is outside its format"):
        PWGFixed(from_state_dict(config, state))


# --- the hardware's order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config, frames", [(SMALL, 9), (LJSPEECH, 3)], ids=["small", "ljspeech"])
def test_hardware_order_equals_package_order_in_float(config, frames):
    # Aux 1x1s at frame rate, upsampled on their G channels, and no last conv1x1_out: the same function
    # (measured max difference 1.8e-15 at ljspeech sizes, outputs of order 1).
    state = random_state_dict(config, seed=14)
    z, c = noise(config, frames, 15), padded_mel(config, frames, 16)
    package = from_state_dict(config, state).forward(z, c)
    hardware = from_state_dict(config, state, hardware_order=True)
    assert hardware.hardware_order and not from_state_dict(config, state).hardware_order
    assert np.max(np.abs(hardware.forward(z, c) - package)) < 1e-10
    f = hardware.frame_conditioning(c)
    aux = hardware.layer(1).aux
    assert np.max(np.abs(hardware.upsample_stages(aux @ f) - aux @ hardware.upsample_stages(f))) < 1e-12


def test_residual_layer_options():
    # aux_applied adds the given (G, T) term in place of aux @ c; residual_out=False leaves x_next out.
    config = SMALL
    num = config.numerics
    generator = from_state_dict(config, random_state_dict(config, seed=17))
    rng = np.random.default_rng(18)
    x, c = rng.standard_normal((16, 30)), rng.standard_normal((20, 30))
    layer = generator.layer(2)
    x_next, skip = residual_layer(x, c, layer)
    x_aux, skip_aux = residual_layer(x, layer.aux @ c, layer, aux_applied=True)
    assert np.max(np.abs(x_aux - x_next)) < 1e-12 and np.max(np.abs(skip_aux - skip)) < 1e-12
    none, skip_last = residual_layer(x, c, layer, residual_out=False)
    assert none is None and np.array_equal(skip_last, skip)
    # Fixed point: an aux term at the accumulator's scale is bit for bit an aux column of weight 1.0 per gate
    # channel times an act value.
    fixed = PWGFixed(generator).layers[2]
    gate = fixed.conv.shape[0]
    x_int = num.act.quantize(x)
    u = rng.integers(num.act.min_int, num.act.max_int + 1, size=(gate, 30))
    identity = dataclasses.replace(fixed, aux=np.eye(gate, dtype=np.int64) << num.weight.frac)
    expected = residual_layer_fixed(x_int, u, identity, num)
    scaled = u << num.weight.frac
    got = residual_layer_fixed(x_int, scaled, fixed, num, aux_applied=True)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    none, skip_last = residual_layer_fixed(x_int, scaled, fixed, num, aux_applied=True, residual_out=False)
    assert none is None and np.array_equal(skip_last, expected[1])


def test_fixed_vs_float_snr_ljspeech():
    # Measured at these seeds: 53.3 dB with PWG_NUMERICS in the hardware order (53.2 in the package's; see
    # PWG_NUMERICS for 1 s of audio over eight seeds) and 22 dB with Numerics(), whose Q2.14 weights and Q4.12
    # activations saturate the first 1x1 conv.
    state = random_state_dict(LJSPEECH, seed=0)
    generator = from_state_dict(LJSPEECH, state)
    mel = np.random.default_rng(1).standard_normal((16, 80))
    reference = generator.inference(mel, seed=2)
    fixed = PWGFixed(generator).inference(mel, seed=2)
    assert fixed.shape == reference.shape == (16 * 256, 1)
    assert snr_db(reference, fixed) > 50
    kernel_defaults = from_state_dict(dataclasses.replace(LJSPEECH, numerics=Numerics()), state)
    assert snr_db(reference, PWGFixed(kernel_defaults).inference(mel, seed=2)) < 30


def test_fixed_single_layer_network():
    config = dataclasses.replace(SMALL, layers=1, stacks=1)
    generator = from_state_dict(config, random_state_dict(config, seed=0))
    mel = np.random.default_rng(1).standard_normal((8, 20))
    assert snr_db(generator.inference(mel), PWGFixed(generator).inference(mel)) > 40
