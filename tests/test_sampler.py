"""Tests of model/sampler.py: the vectorised sampler against a plain per-draw loop of the hardware's definition."""

import math

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.sampler import (
    TEMPERATURE_FRAC,
    GumbelSampler,
    pcm16,
    seed_state,
    temperature_int,
    xorshift32,
    xorshift32_states,
)

LOGITS = QFormat(16, 10)


def loop_sample(sampler, logits_int, state, tq):
    """The hardware's definition, one draw at a time in plain Python: a running first maximum per sample."""
    table = [math.floor(-math.log(-math.log((k + 0.5) / 2**sampler.bits)) * 2**sampler.logits.frac + 0.5)
             for k in range(2**sampler.bits)]
    table = [min(max(t, sampler.logits.min_int), sampler.logits.max_int) for t in table]
    codes = []
    for row in np.asarray(logits_int).tolist():
        best, code = None, None
        for v, logit in enumerate(row):
            state = xorshift32(state)
            g = table[state >> (32 - sampler.bits)]
            score = logit + ((tq * g + (1 << (TEMPERATURE_FRAC - 1))) >> TEMPERATURE_FRAC)
            if best is None or score > best:
                best, code = score, v
        codes.append(code)
    return np.array(codes, dtype=np.int64), state


# ---------------------------------------------------------------------------------------------- random bits

def test_xorshift32_known_values():
    # Marsaglia's xorshift32 from state 1: 270369, then 67634689.
    assert xorshift32(1) == 270369
    assert xorshift32(270369) == 67634689
    assert xorshift32(0) == 0


def test_seed_state_is_splitmix64_low_word():
    # splitmix64's first output from state 0 is 0xE220A8397B1DCDAF.
    assert seed_state(0) == 0x7B1DCDAF
    states = [seed_state(s) for s in range(1000)]
    assert len(set(states)) == 1000 and all(0 < s < 2**32 for s in states)
    assert seed_state(2**70) == seed_state(2**70)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 65536, 3 * 65536 + 17])
def test_xorshift32_states_equal_the_loop(n):
    state = seed_state(n)
    expected = np.empty(n, dtype=np.uint32)
    x = state
    for k in range(n):
        x = xorshift32(x)
        expected[k] = x
    got = xorshift32_states(state, n)
    assert got.dtype == np.uint32 and np.array_equal(got, expected)


# ---------------------------------------------------------------------------------------------- sampler

def test_table_is_the_quantised_gumbel_quantile_and_monotonic():
    for bits in (4, 8, 10, 12, 16):
        sampler = GumbelSampler(LOGITS, bits)
        u = (np.arange(2**bits) + 0.5) / 2**bits
        assert sampler.table.dtype == np.int64 and len(sampler.table) == 2**bits
        assert np.array_equal(sampler.table, LOGITS.quantize(-np.log(-np.log(u))))
        assert np.all(np.diff(sampler.table) >= 0)
    # A narrow format saturates the table's upper tail.
    narrow = GumbelSampler(QFormat(6, 3), 12)
    assert narrow.table.max() == QFormat(6, 3).max_int


@pytest.mark.parametrize("q", [2, 3, 256])
@pytest.mark.parametrize("bits", [4, 10, 16])
def test_sample_equals_the_loop(q, bits):
    sampler = GumbelSampler(LOGITS, bits)
    rng = np.random.default_rng(q * 100 + bits)
    n = 40 if q == 256 else 300
    for seed, tq in ((0, 4096), (1, 1), (2, 65535), (3, 2048), (4, 12345)):
        logits = rng.integers(-3 * 1024, 3 * 1024, size=(n, q))
        state = seed_state(seed)
        expected, end = loop_sample(sampler, logits, state, tq)
        codes, new_state = sampler.sample(logits, state, tq)
        assert np.array_equal(codes, expected) and new_state == end
        # The per-sample path: one sample at a time, the state carried.
        per_sample = []
        for row in logits:
            noise, state = sampler.noise(state, 1, q, tq)
            per_sample.append(np.argmax(row + noise[0]))
        assert np.array_equal(per_sample, expected) and state == end


@pytest.mark.parametrize("tq", [1, 4096, 65535])
def test_sample_at_the_edges_of_the_logits_format(tq):
    sampler = GumbelSampler(LOGITS, 10)
    lo, hi = LOGITS.min_int, LOGITS.max_int
    rng = np.random.default_rng(tq)
    logits = np.stack([
        np.full(256, lo), np.full(256, hi), np.full(256, 0),
        np.where(np.arange(256) % 2 == 0, lo, hi), rng.choice([lo, hi], size=256),
    ])
    state = seed_state(tq)
    expected, end = loop_sample(sampler, logits, state, tq)
    codes, new_state = sampler.sample(logits, state, tq)
    assert np.array_equal(codes, expected) and new_state == end
    # A level at the maximum beats every level at the minimum whatever the noise (scores are exact int64).
    assert codes[3] % 2 == 1


def test_ties_go_to_the_lowest_index():
    # With tq = 1 the noise shift_round(g, 12) is 0 for every entry of a small table: every score ties.
    sampler = GumbelSampler(QFormat(8, 2), 4)
    logits = np.zeros((200, 8), dtype=np.int64)
    assert np.all(sampler.sample(logits, seed_state(9), 1)[0] == 0)
    # A 16-entry table at 2 fractional bits repeats values, so equal logits often tie at the maximum.
    codes, _ = sampler.sample(logits, seed_state(9), 4096)
    expected, _ = loop_sample(sampler, logits, seed_state(9), 4096)
    assert np.array_equal(codes, expected)
    noise, _ = sampler.noise(seed_state(9), 200, 8, 4096)
    assert np.sum(np.sum(noise == noise.max(axis=1, keepdims=True), axis=1) > 1) >= 20


def test_sample_follows_the_softmax():
    sampler = GumbelSampler(LOGITS, 10)
    logits = LOGITS.quantize(np.array([[0.0, 1.0, -1.0, 2.0, 0.5, -3.0, 1.5, 0.0]]))
    n = 20000
    for t in (1.0, 0.5):
        codes, _ = sampler.sample(np.repeat(logits, n, axis=0), seed_state(11), temperature_int(t))
        p = np.exp(LOGITS.dequantize(logits[0]) / t)
        p /= p.sum()
        assert 0.5 * np.abs(np.bincount(codes, minlength=8) / n - p).sum() < 0.02


@pytest.mark.parametrize("logits, tq", [([1, 0, 1, -3], 4096), ([0, 0, 0, 0], 2048), ([5, -5, 0, 2], 65535),
                                        ([127, -128, 127, 0], 1)])
def test_probabilities_are_the_exact_distribution(logits, tq):
    # Every combination of table indices over 4 levels of a 16-entry table, equally likely.
    sampler = GumbelSampler(QFormat(8, 2), 4)
    values = np.array([(tq * int(t) + 2048) >> 12 for t in sampler.table])
    combos = np.stack(np.meshgrid(*[values] * 4, indexing="ij"), axis=-1).reshape(-1, 4)
    counts = np.bincount(np.argmax(np.array(logits) + combos, axis=1), minlength=4)
    assert np.allclose(sampler.probabilities(np.array(logits), tq), counts / len(combos), rtol=0, atol=1e-12)


def test_draws_converge_to_the_probabilities():
    sampler = GumbelSampler(LOGITS, 8)
    logits = LOGITS.quantize(np.random.default_rng(12).normal(0, 2, size=16))
    p = sampler.probabilities(logits, 3000)
    assert abs(p.sum() - 1) < 1e-12
    codes, _ = sampler.sample(np.repeat(logits[None], 50000, axis=0), seed_state(13), 3000)
    assert 0.5 * np.abs(np.bincount(codes, minlength=16) / 50000 - p).sum() < 0.01


def test_noise_and_sample_of_nothing():
    sampler = GumbelSampler(LOGITS)
    noise, state = sampler.noise(5, 0, 256, 4096)
    assert noise.shape == (0, 256) and state == 5
    codes, state = sampler.sample(np.zeros((0, 4), dtype=np.int64), 5, 4096)
    assert codes.shape == (0,) and state == 5


# ---------------------------------------------------------------------------------------------- temperature, PCM

def test_temperature_int():
    assert temperature_int(1.0) == 4096 and temperature_int(0.5) == 2048 and temperature_int(1) == 4096
    assert temperature_int(1 / 4096) == 1 and temperature_int(0.5 / 4096) == 1
    assert temperature_int(65535 / 4096) == 65535 and temperature_int(np.float32(0.25)) == 1024


@pytest.mark.parametrize("t", [0, -1.0, 0.49 / 4096, 65535.5 / 4096, 16.5, math.nan, math.inf, "1", True, None])
def test_temperature_out_of_range(t):
    with pytest.raises(ValueError, match=r"^temperature must be a finite number > 0 .*65535"):
        temperature_int(t)


def test_pcm16():
    codes = np.arange(256)
    out = pcm16(codes, 256)
    assert out.dtype == np.int16 and np.array_equal(out, (codes - 128) * 256)
    assert np.array_equal(pcm16([0, 1, 2], 3), [-32768, -10923, 10922])
    for q in (2, 5, 1000, 65536):
        out = pcm16(np.arange(q), q)
        assert out[0] == -32768 and (q % 2 or out[q // 2] == 0)
        assert np.all(np.diff(out.astype(np.int64)) > 0)
    assert pcm16(np.zeros((2, 3), dtype=np.int64), 4).shape == (2, 3)


# ---------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("call, match", [
    (lambda: GumbelSampler(LOGITS, 3), r"^bits must be an integer from 4 to 16, not 3$"),
    (lambda: GumbelSampler(LOGITS, 17), r"^bits must be an integer from 4 to 16"),
    (lambda: GumbelSampler(LOGITS, True), r"^bits must be"),
    (lambda: GumbelSampler("Q6.10"), r"^logits must be a QFormat at most 45 bits wide"),
    (lambda: GumbelSampler(QFormat(46, 10)), r"^logits must be a QFormat at most 45 bits wide"),
    (lambda: xorshift32(2**32), r"^x must be an integer from 0 to 4294967295"),
    (lambda: xorshift32_states(0, 4), r"^state must be an integer from 1 to 4294967295, not 0$"),
    (lambda: xorshift32_states(1, -1), r"^n must be an integer >= 0"),
    (lambda: seed_state(-1), r"^seed must be an integer >= 0, not -1$"),
    (lambda: GumbelSampler(LOGITS).noise(1, 1, 256, 0), r"^tq must be an integer from 1 to 65535, not 0$"),
    (lambda: GumbelSampler(LOGITS).noise(1, 1, 256, 65536), r"^tq must be an integer from 1 to 65535"),
    (lambda: GumbelSampler(LOGITS).noise(1, 1, 1, 4096), r"^q_levels must be an integer >= 2"),
    (lambda: GumbelSampler(LOGITS).sample(np.zeros((2, 4)), 1, 4096), r"^logits_int must be an \(n, q >= 2\)"),
    (lambda: GumbelSampler(LOGITS).sample(np.zeros(4, dtype=int), 1, 4096), r"^logits_int must be"),
    (lambda: GumbelSampler(LOGITS).sample(np.full((1, 4), 2**15), 1, 4096), r"^logits_int .* \[-32768, 32767\]"),
    (lambda: GumbelSampler(LOGITS).sample(np.zeros((1, 4), dtype=int), 0, 4096), r"^state must be"),
    (lambda: GumbelSampler(LOGITS).probabilities(np.zeros((2, 4), dtype=int), 4096), r"^logits_int must be a \(q"),
    (lambda: GumbelSampler(LOGITS).probabilities(np.zeros(4, dtype=int), 0), r"^tq must be"),
    (lambda: pcm16([0, 256], 256), r"^codes must be integers in \[0, 256\)"),
    (lambda: pcm16([0.5], 256), r"^codes must be integers"),
    (lambda: pcm16([0], 1), r"^q_levels must be an integer from 2 to 65536"),
])
def test_bad_inputs_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
