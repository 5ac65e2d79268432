"""Tests of model/samplernn.py: float parity with PyTorch modules, checkpoint validation, folding, generation,
and fixed-point against float."""

import sys

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat, narrow
from wavefabric.model.formats import FormatsError, save_formats
from wavefabric.model.kernels import Numerics, linear
from wavefabric.model.sampler import GumbelSampler, seed_state, temperature_int
from wavefabric.model.samplernn import (
    SampleRNNConfig,
    SampleRNNFixed,
    SampleRNNFloat,
    SampleRNNFormats,
    SampleRNNParams,
    audio_codes,
    compare_teacher_forced,
    load_checkpoint,
    profile_samplernn,
    random_state_dict,
    saturation_names,
    state_dict_shapes,
)
from wavefabric.model.samplernn_torch import tone, torch_samplernn, train_tone

#: Small configurations covering one, two and three tiers, with and without weight norm and h0.
SMALL_CONFIGS = [
    SampleRNNConfig(frame_sizes=(4,), n_rnn=1, dim=8, q_levels=16),
    SampleRNNConfig(frame_sizes=(4, 2), n_rnn=2, dim=16, q_levels=64, learn_h0=False),
    SampleRNNConfig(frame_sizes=(2, 3, 2), n_rnn=2, dim=12, q_levels=32, weight_norm=False),
]
SEED_CONFIG = SampleRNNConfig()


def small_id(config):
    return f"fs{'x'.join(map(str, config.frame_sizes))}-wn{int(config.weight_norm)}"


@pytest.fixture(scope="module")
def seed_params():
    return SampleRNNParams.from_state_dict(SEED_CONFIG, random_state_dict(SEED_CONFIG, seed=0))


@pytest.fixture(scope="module")
def seed_float(seed_params):
    return SampleRNNFloat(seed_params)


@pytest.fixture(scope="module")
def seed_fixed(seed_params):
    return SampleRNNFixed(seed_params)


# ---------------------------------------------------------------------------------------------- torch reference

def torch_reference(config, state_dict):
    """samplernn-pytorch's SampleRNN rebuilt from torch.nn modules, loaded strictly from ``state_dict``."""
    pytest.importorskip("torch")
    return torch_samplernn(config, state_dict)


def torch_teacher_forced(net, config, samples):
    """Log-probabilities of ``samples`` the way samplernn-pytorch's Predictor computes them, batched."""
    import torch
    lookback, q, fs0 = config.lookback, config.q_levels, config.frame_sizes[0]
    assert len(samples) % lookback == 0
    seq = torch.from_numpy(np.concatenate([np.full(lookback, q // 2), samples]))[None]
    dtype = net.sample_level_mlp.embedding.weight.dtype
    value = 2 * (seq.to(dtype) / (q / 2) - 1)
    cond = None
    with torch.no_grad():
        for tier, nfs in reversed(list(zip(net.frame_level_rnns, config.n_frame_samples, strict=True))):
            frames = value[:, lookback - nfs:lookback - nfs + len(samples)].reshape(1, -1, nfs)
            cond, _ = tier(frames, cond, None)
        return net.sample_level_mlp(seq[:, lookback - fs0:-1], cond)[0].numpy()


def test_state_dict_names_and_shapes_match_torch_modules():
    torch = pytest.importorskip("torch")
    for config in SMALL_CONFIGS + [SEED_CONFIG]:
        net = torch_reference(config, random_state_dict(config, seed=1))
        names = {name.replace(".parametrizations.weight.original0", ".weight_g")
                 .replace(".parametrizations.weight.original1", ".weight_v"): tuple(t.shape)
                 for name, t in net.state_dict().items()}
        assert names == state_dict_shapes(config)
        assert isinstance(next(iter(net.state_dict().values())), torch.Tensor)


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=small_id)
def test_tier_forward_matches_torch(config):
    torch = pytest.importorskip("torch")
    sd = random_state_dict(config, seed=2)
    net = torch_reference(config, sd)
    model = SampleRNNFloat(SampleRNNParams.from_state_dict(config, sd))
    rng = np.random.default_rng(3)
    n_frames = 5
    for k, nfs in enumerate(config.n_frame_samples):
        prev = rng.integers(0, config.q_levels, size=(n_frames, nfs))
        cond = rng.standard_normal((n_frames, config.dim)).astype(np.float32)
        for hidden in (None, (0.5 * rng.standard_normal((config.n_rnn, config.dim))).astype(np.float32)):
            out, h = model.tier_forward(k, prev, cond, hidden)
            value = torch.from_numpy(2 * (prev / (config.q_levels / 2) - 1)).float()[None]
            with torch.no_grad():
                ref_out, ref_h = net.frame_level_rnns[k](
                    value, torch.from_numpy(cond)[None], None if hidden is None else torch.from_numpy(hidden)[:, None])
            assert out.shape == (n_frames * config.frame_sizes[k], config.dim)
            assert np.max(np.abs(out - ref_out[0].numpy())) <= 1e-5
            assert np.max(np.abs(h - ref_h[:, 0].numpy())) <= 1e-5
    # The top tier takes no conditioning.
    top = config.n_tiers - 1
    prev = rng.integers(0, config.q_levels, size=(2, config.lookback))
    out, _ = model.tier_forward(top, prev)
    with torch.no_grad():
        ref_out, _ = net.frame_level_rnns[top](
            torch.from_numpy(2 * (prev / (config.q_levels / 2) - 1)).float()[None], None, None)
    assert np.max(np.abs(out - ref_out[0].numpy())) <= 1e-5


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=small_id)
def test_mlp_matches_torch(config):
    torch = pytest.importorskip("torch")
    sd = random_state_dict(config, seed=4)
    net = torch_reference(config, sd)
    rng = np.random.default_rng(5)
    prev = rng.integers(0, config.q_levels, size=(7, config.frame_sizes[0]))
    cond = rng.standard_normal((7, config.dim)).astype(np.float32)
    with torch.no_grad():
        ref = net.sample_level_mlp(torch.from_numpy(prev), torch.from_numpy(cond)[:, None])[:, 0].numpy()
    for fold in (True, False):
        model = SampleRNNFloat(SampleRNNParams.from_state_dict(config, sd), fold_embedding=fold)
        assert np.max(np.abs(model.mlp_log_probs(prev, cond) - ref)) <= 1e-5


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=small_id)
def test_teacher_forced_matches_torch_predictor(config):
    pytest.importorskip("torch")
    sd = random_state_dict(config, seed=6)
    samples = np.random.default_rng(7).integers(0, config.q_levels, size=4 * config.lookback)
    ref = torch_teacher_forced(torch_reference(config, sd), config, samples)
    model = SampleRNNFloat(SampleRNNParams.from_state_dict(config, sd))
    assert np.max(np.abs(model.teacher_forced(samples) - ref)) <= 1e-4


def test_teacher_forced_matches_torch_at_seed_config(seed_float):
    pytest.importorskip("torch")
    sd = random_state_dict(SEED_CONFIG, seed=0)
    samples = seed_float.generate(4 * SEED_CONFIG.lookback, seed=8)
    ref = torch_teacher_forced(torch_reference(SEED_CONFIG, sd), SEED_CONFIG, samples)
    assert np.max(np.abs(seed_float.teacher_forced(samples) - ref)) <= 1e-4


def test_teacher_forced_matches_torch_in_float64():
    # In double precision on both sides the only differences left are rounding order.
    pytest.importorskip("torch")
    config = SMALL_CONFIGS[1]
    sd = {name: value.astype(np.float64) for name, value in random_state_dict(config, seed=9).items()}
    samples = np.random.default_rng(10).integers(0, config.q_levels, size=3 * config.lookback)
    ref = torch_teacher_forced(torch_reference(config, sd), config, samples)
    model = SampleRNNFloat(SampleRNNParams.from_state_dict(config, sd))
    assert np.max(np.abs(model.teacher_forced(samples) - ref)) <= 1e-12


# ---------------------------------------------------------------------------------------------- config

def test_config_defaults_and_properties():
    config = SampleRNNConfig(frame_sizes=[16, 4])
    assert config.frame_sizes == (16, 4)
    assert config.n_frame_samples == (16, 64)
    assert config.lookback == 64
    assert config.n_tiers == 2
    assert SampleRNNConfig(frame_sizes=(2, 3, 2)).n_frame_samples == (2, 6, 12)


@pytest.mark.parametrize("field, value", [
    ("frame_sizes", ()),
    ("frame_sizes", (16, 0)),
    ("frame_sizes", (16, 4.0)),
    ("frame_sizes", 16),
    ("frame_sizes", (True, 4)),
    ("n_rnn", 0),
    ("n_rnn", 1.5),
    ("dim", 0),
    ("q_levels", 1),
    ("q_levels", "256"),
    ("learn_h0", 1),
    ("weight_norm", "yes"),
    ("numerics", "Q4.12"),
    ("numerics", Numerics(act=QFormat(16, 15))),  # range [-1, 1) cannot hold the tier inputs
])
def test_config_rejects_invalid_fields(field, value):
    with pytest.raises(ValueError, match=rf"SampleRNNConfig\.{field}"):
        SampleRNNConfig(**{field: value})


# ---------------------------------------------------------------------------------------------- checkpoints

def test_missing_tensor_is_named():
    sd = random_state_dict(SEED_CONFIG, seed=0)
    del sd["sample_level_mlp.input.weight_v"]
    with pytest.raises(ValueError, match=r"^checkpoint is missing tensor 'sample_level_mlp\.input\.weight_v'$"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, sd)


def test_misshaped_tensor_is_named():
    sd = random_state_dict(SEED_CONFIG, seed=0)
    sd["frame_level_rnns.1.rnn.weight_hh_l0"] = np.zeros((192, 32), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^tensor 'frame_level_rnns\.1\.rnn\.weight_hh_l0' has shape "
                                         r"\(192, 32\), expected \(192, 64\)$"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, sd)


def test_config_mismatch_names_first_tensor():
    sd = random_state_dict(SampleRNNConfig(dim=32), seed=0)
    with pytest.raises(ValueError, match=r"'frame_level_rnns\.0\.h0' has shape \(2, 32\), expected \(2, 64\)"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, sd)


def test_unexpected_tensor_is_an_error():
    sd = random_state_dict(SEED_CONFIG, seed=0)
    sd["frame_level_rnns.2.h0"] = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match=r"unexpected tensor 'frame_level_rnns\.2\.h0'"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, sd)


def test_weight_norm_mismatch_hints_at_the_config():
    plain = random_state_dict(SampleRNNConfig(weight_norm=False), seed=0)
    with pytest.raises(ValueError, match=r"missing tensor .*weight_norm=False"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, plain)
    with pytest.raises(ValueError, match=r"missing tensor .*weight_norm=True"):
        SampleRNNParams.from_state_dict(SampleRNNConfig(weight_norm=False), random_state_dict(SEED_CONFIG, 0))


def test_non_finite_tensor_is_named():
    sd = random_state_dict(SEED_CONFIG, seed=0)
    sd["sample_level_mlp.output.bias"][3] = np.nan
    with pytest.raises(ValueError, match=r"'sample_level_mlp\.output\.bias' contains NaN"):
        SampleRNNParams.from_state_dict(SEED_CONFIG, sd)


def test_random_state_dict_is_seeded_and_exercises_biases():
    a, b = random_state_dict(SEED_CONFIG, seed=3), random_state_dict(SEED_CONFIG, seed=3)
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert all(np.any(a[name] != 0) for name in a)
    no_h0 = random_state_dict(SampleRNNConfig(learn_h0=False), seed=3)
    assert not np.any(no_h0["frame_level_rnns.0.h0"])


def test_torch_state_dict_with_prefix_and_parametrizations_loads(tmp_path):
    torch = pytest.importorskip("torch")
    config = SMALL_CONFIGS[1]
    sd = random_state_dict(config, seed=11)
    net = torch_reference(config, sd)
    # Training checkpoints are saved from the Predictor, which holds the SampleRNN as ``model``.
    path = tmp_path / "checkpoint.pt"
    torch.save({f"model.{name}": tensor for name, tensor in net.state_dict().items()}, path)
    samples = np.random.default_rng(12).integers(0, config.q_levels, size=40)
    expected = SampleRNNFloat(SampleRNNParams.from_state_dict(config, sd)).teacher_forced(samples)
    for params in (load_checkpoint(path, config), SampleRNNParams.from_state_dict(config, net.state_dict())):
        assert np.array_equal(SampleRNNFloat(params).teacher_forced(samples), expected)


def test_load_checkpoint_without_torch_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs torch"):
        load_checkpoint(tmp_path / "checkpoint.pt", SEED_CONFIG)


# ---------------------------------------------------------------------------------------------- folding

@pytest.mark.parametrize("config", SMALL_CONFIGS[:2] + [SEED_CONFIG], ids=small_id)
def test_fold_weight_norm_and_fold_embedding_give_equal_outputs(config):
    sd = random_state_dict(config, seed=13)
    samples = np.random.default_rng(14).integers(0, config.q_levels, size=3 * config.lookback + 5)
    folded = SampleRNNParams.from_state_dict(config, sd, fold_weight_norm=True)
    unfolded = SampleRNNParams.from_state_dict(config, sd, fold_weight_norm=False)
    assert unfolded.mlp.input.w is None
    reference = SampleRNNFloat(folded, fold_embedding=False).teacher_forced(samples)
    for params in (folded, unfolded):
        for fold_embedding in (True, False):
            got = SampleRNNFloat(params, fold_embedding=fold_embedding).teacher_forced(samples)
            np.testing.assert_allclose(got, reference, rtol=0, atol=1e-12)
    # The fixed-point model always normalises (g, v) itself.
    for fold_embedding in (True, False):
        assert np.array_equal(SampleRNNFixed(folded, fold_embedding=fold_embedding).teacher_forced(samples),
                              SampleRNNFixed(unfolded, fold_embedding=fold_embedding).teacher_forced(samples))


def test_fixed_folded_table_agrees_with_the_exact_products(seed_params, seed_fixed):
    # The stored table rounds each entry once; against the exact unfolded reference that moves few logits.
    samples = np.random.default_rng(26).integers(0, 256, size=2048)
    folded = seed_fixed.teacher_forced(samples)
    exact = SampleRNNFixed(seed_params, fold_embedding=False).teacher_forced(samples)
    assert np.mean(np.argmax(folded, axis=1) == np.argmax(exact, axis=1)) >= 0.99
    assert np.max(np.abs(folded - exact)) <= 64  # logit LSBs (2**-10): at most 1/16


def test_mlp_table_is_the_narrowed_exact_products(seed_params, seed_fixed):
    num, formats = SEED_CONFIG.numerics, seed_fixed.formats
    table, x_fmt, shifts = formats.fmt("mlp.table"), formats.fmt("mlp.input"), formats.shifts()
    emb_fmt, w_fmt = formats.fmt("mlp.embedding"), formats.fmt("mlp.input.weight")
    emb = emb_fmt.quantize(seed_params.mlp.embedding)
    w = seed_params.mlp.input.quantize(num, w_fmt)  # (dim, q, fs0)
    # Each product sum is below 2**53, so float64 einsum is exact.
    exact = np.einsum("sc,dcj->jsd", emb.astype(np.float64), w.astype(np.float64)).astype(np.int64)
    stored = seed_fixed.mlp_table
    assert stored.shape == (16, 256, 64) and stored.dtype == np.int64
    assert np.array_equal(stored, narrow(exact, emb_fmt.frac + w_fmt.frac, table))
    assert table.contains(stored) and not stored.flags.writeable
    # The MLP input the hardware computes from the stored table, by the formula of the docstring.
    rng = np.random.default_rng(27)
    prev = rng.integers(0, 256, size=(50, 16))
    cond = x_fmt.quantize(rng.normal(0, 1, size=(50, 64)))
    acc = stored[np.arange(16), prev].sum(axis=1) + (cond << (table.frac - x_fmt.frac))
    x = np.maximum(narrow(acc, table.frac, x_fmt), 0)
    hidden = seed_fixed._hidden, seed_fixed._hidden_bias
    x = np.maximum(linear(hidden[0], x.T, hidden[1], num, formats.fmt("mlp.hidden"), shifts["mlp.hidden"]), 0)
    logits = linear(seed_fixed._output, x, seed_fixed._output_bias, num, SEED_CONFIG.logits, shifts["mlp.output"]).T
    assert np.array_equal(seed_fixed.mlp_logits(prev, cond), logits)


def test_lossless_table_format_makes_folding_bit_identical():
    # With table.frac = acc_frac and no entry saturating, the stored table holds the exact products.
    config = SampleRNNConfig(frame_sizes=(4, 2), dim=8, q_levels=16,
                             numerics=Numerics(weight=QFormat(8, 3)), table=QFormat(18, 15))
    params = SampleRNNParams.from_state_dict(config, random_state_dict(config, seed=28))
    formats = SampleRNNFormats.default(config)
    folded, exact = SampleRNNFixed(params, formats=formats), SampleRNNFixed(params, False, formats)
    assert np.abs(folded.mlp_table).max() < 2**17 - 1
    samples = np.random.default_rng(29).integers(0, 16, size=200)
    assert np.array_equal(folded.teacher_forced(samples), exact.teacher_forced(samples))


# ---------------------------------------------------------------------------------------------- generation

def test_generation_is_deterministic_and_reports_progress(seed_float):
    reported = []
    a = seed_float.generate(1500, seed=21, progress=reported.append)
    assert a.shape == (1500,) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < SEED_CONFIG.q_levels
    assert sum(reported) == 1500 and len(reported) == 2
    assert np.array_equal(a, seed_float.generate(1500, seed=21))
    assert not np.array_equal(a, seed_float.generate(1500, seed=22))
    assert seed_float.generate(0, seed=21).shape == (0,)


@pytest.mark.parametrize("config", [SMALL_CONFIGS[2], SEED_CONFIG], ids=small_id)
def test_tiers_run_at_their_rates_on_the_right_samples(config, monkeypatch):
    model = SampleRNNFloat(SampleRNNParams.from_state_dict(config, random_state_dict(config, seed=15)))
    calls = {k: [] for k in range(config.n_tiers)}
    mlp_calls = []
    tier_forward, logits = model.tier_forward, model._logits

    def counting_tier_forward(tier, prev, cond, hidden):
        calls[tier].append((prev.copy(), cond is None, hidden is None))
        return tier_forward(tier, prev, cond, hidden)

    def counting_logits(prev, cond):
        mlp_calls.append(prev.copy())
        return logits(prev, cond)

    monkeypatch.setattr(model, "tier_forward", counting_tier_forward)
    monkeypatch.setattr(model, "_logits", counting_logits)
    n = 2 * config.lookback + 3
    seq = np.concatenate([np.full(config.lookback, config.q_levels // 2), model.generate(n, seed=16)])
    for k, nfs in enumerate(config.n_frame_samples):
        assert len(calls[k]) == -(-n // nfs)
        for m, (prev, no_cond, no_hidden) in enumerate(calls[k]):
            start = config.lookback + m * nfs
            assert np.array_equal(prev[0], seq[start - nfs:start])
            assert no_cond == (k == config.n_tiers - 1)
            assert no_hidden == (m == 0)
    fs0 = config.frame_sizes[0]
    assert len(mlp_calls) == n
    assert all(np.array_equal(prev[0], seq[config.lookback + i - fs0:config.lookback + i])
               for i, prev in enumerate(mlp_calls))


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_float_generation_draws_from_the_teacher_forced_distributions(seed_float, temperature):
    # Gumbel-max on the same per-step distributions that teacher forcing recomputes.
    n, seed = 1100, 23  # more than one block of noise
    noise = np.random.default_rng(seed).gumbel(size=(n, SEED_CONFIG.q_levels))
    samples = seed_float.generate(n, seed, temperature)
    assert np.array_equal(np.argmax(seed_float.teacher_forced(samples) + temperature * noise, axis=1), samples)


@pytest.mark.parametrize("config, temperature", [(SMALL_CONFIGS[2], 0.6), (SEED_CONFIG, 1.0), (SEED_CONFIG, 0.6)],
                         ids=["fs2x3x2-T0.6", "seed-T1", "seed-T0.6"])
def test_fixed_generation_is_the_hardware_sampler_on_teacher_forced_logits(config, temperature):
    # Bit-exact with the hardware: its sampler on each sample's logits, the state carried across samples.
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(config, random_state_dict(config, seed=30)))
    n, seed = 1100, 31
    samples = model.generate(n, seed, temperature=temperature)
    sampler = GumbelSampler(config.logits, config.gumbel_bits)
    codes, _ = sampler.sample(model.teacher_forced(samples), seed_state(seed), temperature_int(temperature))
    assert np.array_equal(codes, samples)


def test_temperature_sharpens_generation(seed_fixed):
    # Lower temperature concentrates on likely samples: the codes' spread shrinks.
    hot, cold = seed_fixed.generate(600, 32, temperature=2.0), seed_fixed.generate(600, 32, temperature=0.25)
    logits = seed_fixed.teacher_forced(cold)
    assert np.mean(cold == np.argmax(logits, axis=1)) > 0.5
    assert not np.array_equal(hot, cold)


def test_invalid_inputs_are_rejected(seed_float):
    with pytest.raises(ValueError, match="n_samples"):
        seed_float.generate(-1, seed=0)
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0"):
        seed_float.generate(1, seed=-1)
    for temperature in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match=r"^temperature must be a finite number > 0"):
            seed_float.generate(1, seed=0, temperature=temperature)
    with pytest.raises(ValueError, match=r"samples must lie in \[0, 256\)"):
        seed_float.teacher_forced(np.array([0, 256]))
    with pytest.raises(ValueError, match=r"shape \(n_frames, 16\)"):
        seed_float.tier_forward(0, np.zeros((1, 64), dtype=np.int64))
    assert seed_float.teacher_forced(np.zeros(0, dtype=np.int64)).shape == (0, 256)


# ---------------------------------------------------------------------------------------------- fixed point

def test_fixed_tier_tracks_float(seed_float, seed_fixed):
    rng = np.random.default_rng(24)
    act = SEED_CONFIG.numerics.act
    prev = rng.integers(0, SEED_CONFIG.q_levels, size=(8, 64))
    top_float, h_float = seed_float.tier_forward(1, prev)
    top_fixed, h_fixed = seed_fixed.tier_forward(1, prev)
    assert np.max(np.abs(act.dequantize(top_fixed) - top_float)) < 0.02
    assert np.max(np.abs(act.dequantize(h_fixed) - h_float)) < 0.02
    prev = rng.integers(0, SEED_CONFIG.q_levels, size=(8, 16))
    out_float, _ = seed_float.tier_forward(0, prev, act.dequantize(top_fixed[:8]))
    out_fixed, _ = seed_fixed.tier_forward(0, prev, top_fixed[:8])
    cond = seed_fixed.formats.fmt("tier0.upsampling")
    assert np.max(np.abs(cond.dequantize(out_fixed) - out_float)) < 0.02


def test_fixed_teacher_forced_agrees_with_float(seed_float, seed_fixed):
    samples = seed_float.generate(4096, seed=25)
    error = compare_teacher_forced(seed_float, seed_fixed, samples)
    # Measured at this seed: top-1 0.998, mean KL 3e-6 nats.
    assert error.top1 >= 0.99
    assert error.kl_mean <= 1e-4
    assert error.kl_max <= 0.1


def test_fixed_tier_inputs_are_exact(seed_fixed):
    act = SEED_CONFIG.numerics.act
    codes = np.arange(SEED_CONFIG.q_levels)
    assert np.array_equal(act.dequantize(seed_fixed._sample_value), 2 * (codes / 128 - 1))


def test_fixed_generation_rejects_temperatures_the_hardware_cannot_hold(seed_fixed):
    for temperature in (0.0, 1e-5, 16.5, float("nan")):
        with pytest.raises(ValueError, match=r"^temperature must be a finite number > 0 .*65535"):
            seed_fixed.generate(1, seed=0, temperature=temperature)
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0"):
        seed_fixed.generate(1, seed=-1)


def test_table_and_gumbel_bits_defaults():
    assert SampleRNNConfig().table == QFormat(16, 12)
    assert SampleRNNConfig(numerics=Numerics(act=QFormat(14, 10))).table == QFormat(14, 10)
    assert SampleRNNConfig(table=QFormat(18, 14)).table == QFormat(18, 14)
    assert SampleRNNConfig().gumbel_bits == 12


@pytest.mark.parametrize("field, value", [
    ("table", QFormat(16, 11)),  # fewer fractional bits than act
    ("table", QFormat(19, 14)),  # wider than a BRAM word
    ("table", "Q4.12"),
    ("gumbel_bits", 3),
    ("gumbel_bits", 17),
    ("gumbel_bits", 10.0),
])
def test_table_and_gumbel_bits_are_validated(field, value):
    with pytest.raises(ValueError, match=rf"^SampleRNNConfig\.{field} must be"):
        SampleRNNConfig(**{field: value})


def test_logits_format():
    assert SampleRNNConfig().logits == QFormat(16, 10)
    assert SampleRNNConfig(logits=QFormat(20, 12)).logits == QFormat(20, 12)
    with pytest.raises(ValueError, match="SampleRNNConfig.logits must be a QFormat or None"):
        SampleRNNConfig(logits=16)


# ---------------------------------------------------------------------------------------------- per-layer formats

def test_default_formats_are_the_global_ones():
    formats = SampleRNNFormats.default(SEED_CONFIG)
    assert set(formats.frac) == set(SampleRNNFormats.names(SEED_CONFIG))
    shifts = formats.shifts()
    assert list(shifts) == saturation_names(SEED_CONFIG)
    # act Q4.12 in and out: the weight's 14 bits; the logits (Q6.10) 16; the table (Q4.12) none.
    assert shifts["tier0.input_expand"] == shifts["mlp.hidden"] == shifts["tier1.gru1"] == 14
    assert shifts["mlp.output"] == 16 and shifts["mlp.input"] == 0


def test_formats_json_round_trip_and_bad_files(tmp_path):
    config = SMALL_CONFIGS[1]
    formats = SampleRNNFormats.choose(SampleRNNParams.from_state_dict(config, random_state_dict(config, seed=3)))
    formats.save(tmp_path / "f.json")
    assert SampleRNNFormats.load(tmp_path / "f.json", config) == formats
    cases = {
        "missing": ({k: v for k, v in formats.frac.items() if k != "mlp.table"}, "no format for mlp.table"),
        "unknown": ({**formats.frac, "tier9.upsampling": 12}, "unknown tensor 'tier9.upsampling'"),
        "range": ({**formats.frac, "mlp.hidden": 16}, "mlp.hidden's frac must be an integer from 2 to 15"),
        # The MLP input finer than the table: its narrowing would shift left.
        "shift": ({**formats.frac, "mlp.table": 8, "mlp.input": 12}, "mlp.input's narrowing shift"),
        "upper": ({**formats.frac, "tier1.upsampling": 10}, "tier1.upsampling's frac must be act's, 12"),
    }
    for name, (frac, message) in cases.items():
        path = tmp_path / f"{name}.json"
        save_formats(path, "samplernn", 16, frac)
        with pytest.raises(FormatsError, match=message) as error:
            SampleRNNFormats.load(path, config)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    save_formats(tmp_path / "pwg.json", "pwg", 16, formats.frac)
    with pytest.raises(FormatsError, match="formats for 'pwg', not 'samplernn'"):
        SampleRNNFormats.load(tmp_path / "pwg.json", config)
    with pytest.raises(FormatsError, match="unknown tensor 'tier0.gru1.weight'"):
        SampleRNNFormats.load(tmp_path / "f.json", SMALL_CONFIGS[0])
    with pytest.raises(ValueError, match="formats must be SampleRNNFormats of this model's config"):
        SampleRNNFixed(SampleRNNParams.from_state_dict(SMALL_CONFIGS[0], random_state_dict(SMALL_CONFIGS[0], 0)),
                       formats=formats)


def test_saturations_are_counted_per_narrowing(seed_params, seed_float):
    tight = SampleRNNFormats(SEED_CONFIG, {**SampleRNNFormats.default(SEED_CONFIG).frac, "mlp.hidden": 15})
    model = SampleRNNFixed(seed_params, formats=tight)
    samples = seed_float.generate(256, seed=1)
    model.teacher_forced(samples)
    hits = {name: count for name, count in model.saturations.items() if count}
    assert list(hits) == ["mlp.hidden"] and 0 < hits["mlp.hidden"] < 256 * SEED_CONFIG.dim
    # Counted in generation too, from zero after a reset; the chosen formats saturate nowhere.
    model.reset_saturations()
    model.generate(64, seed=2)
    assert model.saturations["mlp.hidden"] > 0
    chosen = SampleRNNFixed(seed_params)
    chosen.teacher_forced(samples)
    assert not any(chosen.saturations.values())


@pytest.fixture(scope="module")
def trained_like():
    """A SampleRNN trained for a few seconds on a tone: sharp distributions, an MLP beyond Q4.12's range."""
    pytest.importorskip("torch")
    config = SampleRNNConfig(frame_sizes=(4, 4), n_rnn=1, dim=16, q_levels=64)
    state, audio = train_tone(config, seed=0, steps=120)
    return SampleRNNParams.from_state_dict(config, state), audio


def test_trained_like_network_meets_the_targets_with_chosen_formats(trained_like):
    """The global formats saturate the MLP of a trained network; the chosen ones meet top-1 >= 99.5% and
    KL <= 1e-3 nats on held-out audio, and saturate nowhere."""
    params, audio = trained_like
    config = params.config
    float_model = SampleRNNFloat(params)
    held_out = tone(4096, config.q_levels, seed=1)
    default = SampleRNNFixed(params, formats=SampleRNNFormats.default(config))
    before = compare_teacher_forced(float_model, default, held_out)
    assert before.top1 < 0.99 and default.saturations["mlp.hidden"] > 0
    formats, rows = profile_samplernn(params, audio[:4096])
    chosen = SampleRNNFixed(params, formats=formats)
    after = compare_teacher_forced(float_model, chosen, held_out)
    assert after.top1 >= 0.995 and after.kl_mean <= 1e-3, after
    assert not any(chosen.saturations.values())
    assert formats.frac["mlp.hidden"] < SEED_CONFIG.numerics.act.frac  # wider than Q4.12
    # One profile row per tensor, the chosen format's; only harmless saturations (gate inputs) remain.
    by_name = {row.name: row for row in rows}
    assert len(by_name) == len(rows) and by_name["mlp.hidden"].fmt == formats.fmt("mlp.hidden")
    assert all(row.note for row in rows if row.saturated)
    # Without calibration audio, the float model's own generation calibrates.
    default_choice = SampleRNNFixed(params)
    assert compare_teacher_forced(float_model, default_choice, held_out).top1 >= 0.995


def test_audio_codes_quantise_as_samplernn_pytorch():
    x = np.array([-0.5, 0.0, 0.25, 0.5])
    assert audio_codes(x, 256).tolist() == [0, 128, 191, 255]
    assert audio_codes(np.zeros(3), 16).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="finite samples"):
        audio_codes([0.0, np.nan], 16)


def test_profile_refuses_undefined_float_weights():
    config = SMALL_CONFIGS[0]
    state = random_state_dict(config, 1)
    state["sample_level_mlp.hidden.weight_v"][2] = 0.0
    params = SampleRNNParams.from_state_dict(config, state, fold_weight_norm=False)
    with pytest.raises(ValueError, match="mlp.hidden.weight is not finite"):
        profile_samplernn(params)
