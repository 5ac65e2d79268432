# amaranth: UnusedElaboratable=no
import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics
from wavefabric.model.perf import gru_layer_cycles, gru_macs, gru_step_cycles, gru_step_latency
from wavefabric.rtl.gru import GruCommand, GruEngine, GruGeometry
from wavefabric.sim.gru import command_beats, gru_reference, random_gru_params, run_gru, simulate_gru
from wavefabric.sim.streams import run_streams, vcd_hint


def check(result: dict, name: str = "gru"):
    """Bit-exact and cycle-exact, with the seed and how to trace it in the message."""
    how = f"seed {result['seed']}, {vcd_hint(name + '...')}"
    assert result["bit_exact"], f"not bit-exact: {result} ({how})"
    assert result["cycles_per_step"] == result["model_cycles_per_step"], f"cycles: {result} ({how})"
    assert result["latency"] == result["model_latency"], f"latency: {result} ({how})"


@pytest.mark.parametrize("input_size, hidden, layers, lanes, simd", [
    (1, 1, 1, 1, 1),        # smallest
    (3, 4, 2, 2, 2),        # ragged words, two layers
    (5, 7, 3, 3, 4),        # three layers, partial last slot and word
    (4, 6, 1, 8, 1),        # more lanes than units
    (9, 4, 1, 4, 3),        # one slot, input wider than hidden
    (2, 9, 2, 2, 5),        # hidden wider than input
])
def test_bit_exact_and_cycle_exact(input_size, hidden, layers, lanes, simd, backend):
    check(simulate_gru(input_size, hidden, layers, lanes, simd, steps=3, seed=input_size * 10 + hidden,
                       backend=backend))


def _random_configs(count, seed=2024):
    """Seeded random small configurations that satisfy the lanes rule (a slot lasts at least P cycles)."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        input_size, hidden, layers, simd = (int(v) for v in rng.integers(1, [10, 10, 4, 6]))
        lanes = int(rng.integers(1, hidden + 3))
        geo = GruGeometry(input_size, hidden, layers, lanes, simd)
        if geo.slots == 1 or lanes <= min(geo.slot_cycles):
            configs.append((input_size, hidden, layers, lanes, simd))
    return configs


@pytest.mark.parametrize("config", _random_configs(8))
def test_random_configurations(config, backend):
    check(simulate_gru(*config, steps=2, seed=sum(config), backend=backend))


@pytest.mark.parametrize("seed", [0, 1])
def test_full_scale_saturates(seed, backend):
    """Every weight, bias, input and state uniform over its whole format: the accumulators go to saturation."""
    check(simulate_gru(6, 5, 2, 2, 3, steps=3, seed=seed, full_scale=True, backend=backend))


@pytest.mark.parametrize("seed", [3, 4])
def test_random_stalls(seed, backend):
    """Random gaps on weights and cmd, random ready on out: nothing lost, duplicated or reordered."""
    result = simulate_gru(4, 5, 2, 2, 2, steps=4, seed=seed, p_valid=0.6, p_ready=0.4, backend=backend)
    assert result["bit_exact"], f"{result} (seed {seed}, {vcd_hint('gru_4x5x2_p2s2_seed' + str(seed))})"


def test_seed_size_one_layer_step(backend):
    """Input 64, hidden 64 on 8 x 8 multipliers: 412 cycles per step (384 multiply-bound, target 420)."""
    result = simulate_gru(64, 64, 1, 8, 8, steps=2, seed=5, backend=backend)
    check(result)
    assert result["cycles_per_step"] <= 420


def test_zero_inputs_and_state_reset(backend):
    """Zero x and h (the biases alone drive the gates), then STATE commands mid-sequence, one with all zeros."""
    num = Numerics()
    geo_args = (3, 5, 2, 2, 2)
    engine = GruEngine(*geo_args, num)
    rng = np.random.default_rng(11)
    params = random_gru_params(3, 5, 2, num, rng)
    h0 = np.zeros((2, 5), dtype=np.int64)
    xs = np.zeros((5, 3), dtype=np.int64)
    xs[3:] = num.act.quantize(rng.uniform(-2, 2, (2, 3)))
    resets = {2: num.act.quantize(rng.uniform(-1, 1, (2, 5))), 4: np.zeros((2, 5), dtype=np.int64)}
    run = run_gru(engine, params, h0, xs, resets=resets, seed=11, name="gru_zero", backend=backend)
    expected, _ = gru_reference(params, h0, xs, num, resets)
    assert run.framing_ok
    assert np.array_equal(run.outputs, expected), f"seed 11, {vcd_hint('gru_zero')}"
    # The first step, from an idle engine, has the documented latency.
    assert run.step_done[0] - run.step_sent[0] == engine.latency


def test_zero_weights_give_zero_state(backend):
    num = Numerics()
    engine = GruEngine(2, 3, 1, 2, 2, num)
    rng = np.random.default_rng(0)
    params = random_gru_params(2, 3, 1, num, rng)
    for group in (params.w_ih, params.w_hh, params.b_ih, params.b_hh):
        group[0][:] = 0
    xs = num.act.quantize(rng.uniform(-4, 4, (2, 2)))
    # All pre-activations zero: r = z = 1/2, n = 0, h' = h / 2 rounded.
    run = run_gru(engine, params, np.full((1, 3), 4096), xs, name="gru_zero_weights", backend=backend)
    expected, _ = gru_reference(params, np.full((1, 3), 4096), xs, num)
    assert np.array_equal(run.outputs, expected)
    assert run.outputs[0].tolist() == [2048] * 3


@pytest.mark.parametrize("shifts, full_scale", [([15, 14], False), ([0, 15], True), ([8, 4], True)])
def test_run_time_shifts_and_saturation_flags(shifts, full_scale, backend):
    """Per-layer shifts (the layers' weight fracs) loaded with the biases, from 0 to 15; the sticky per-layer
    saturation flags equal the model's."""
    result = simulate_gru(4, 5, 2, 2, 2, steps=3, seed=sum(shifts), full_scale=full_scale, shifts=shifts,
                          backend=backend)
    check(result)
    assert result["saturated"] == (3 if full_scale else 0)


def test_narrow_formats(backend):
    """Other Q formats: 8-bit weights, 12-bit activations and gates, 16-segment tables."""
    num = Numerics(act=QFormat(12, 8), weight=QFormat(8, 6), gate=QFormat(12, 11), table_bits=4)
    check(simulate_gru(4, 3, 2, 2, 2, steps=3, seed=9, num=num, backend=backend))


def test_framing_error_is_sticky():
    engine = GruEngine(2, 2, 1, 1, 2)
    geo = engine.geometry
    beats = command_beats(geo, GruCommand.STATE, np.zeros((1, 2)))
    beats[0]["last"] = False
    beats[-1]["last"] = False  # the only beat should carry last
    run = run_streams(engine, {"cmd": beats}, {}, tail=1, name="gru_framing")
    assert run.flags["error"] == 1


def test_output_waits_and_steps_queue():
    """An output that is not taken for a long time holds the engine after one more step; nothing is lost."""
    num = Numerics()
    engine = GruEngine(2, 3, 1, 3, 2, num)
    rng = np.random.default_rng(2)
    params = random_gru_params(2, 3, 1, num, rng)
    h0 = num.act.quantize(rng.uniform(-1, 1, (1, 3)))
    xs = num.act.quantize(rng.uniform(-1, 1, (4, 2)))
    # Every step is sent at once, but out is ready in 2% of the cycles.
    run = run_gru(engine, params, h0, xs, seed=2, p_ready=0.02, name="gru_queue")
    expected, _ = gru_reference(params, h0, xs, num)
    assert np.array_equal(run.outputs, expected), f"seed 2, {vcd_hint('gru_queue')}"
    assert run.step_done[-1] - run.step_sent[-1] > 5 * engine.step_cycles  # the last output waited that long


def test_cycle_model_matches_engine():
    for args in [(64, 64, 1, 8, 8), (64, 64, 2, 8, 8), (1, 1, 1, 1, 1), (5, 7, 3, 3, 4), (64, 64, 1, 4, 16),
                 (64, 64, 1, 16, 4), (100, 33, 2, 5, 7)]:
        engine = GruEngine(*args)
        assert engine.step_cycles == gru_step_cycles(*args)
        assert engine.latency == gru_step_latency(*args)
    assert gru_layer_cycles(64, 64, 8, 8) == 384 + 3 + 8 + 17
    assert gru_step_cycles(64, 64, 2, 8, 8) == 2 * 412
    assert gru_macs(64, 64, 2) == 3 * 64 * 128 * 2


def test_geometry_weight_words_round_trip():
    """Every weight lands at exactly one (address, lane, multiplier) position; the rest is zero."""
    num = Numerics()
    geo = GruGeometry(5, 7, 2, 3, 4)
    params = random_gru_params(5, 7, 2, num, np.random.default_rng(1), full_scale=True)
    words = geo.weight_words(params.w_ih, params.w_hh)
    assert words.shape == (geo.weight_depth, 3, 4)
    total = sum(np.abs(w).sum() for w in params.w_ih + params.w_hh)
    assert np.abs(words).sum() == total
    bias = geo.bias_values(params.b_ih, params.b_hh, [15, 3])
    assert bias.size == geo.bias_beats * 4
    words = geo.bias_depth * 2 * geo.lanes  # then each layer's shift, then zero padding
    assert np.abs(bias[:words]).sum() == sum(np.abs(b).sum() for b in params.b_ih + params.b_hh)
    assert bias[words:words + 2].tolist() == [15, 3] and not bias[words + 2:].any()
    assert geo.bias_values(params.b_ih, params.b_hh)[words:words + 2].tolist() == [num.weight.frac] * 2


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 0}, "input_size must be an integer >= 1"),
    ({"hidden": -1}, "hidden must be an integer >= 1"),
    ({"layers": 0}, "layers must be an integer >= 1"),
    ({"lanes": 0}, "lanes must be an integer >= 1"),
    ({"simd": True}, "simd must be an integer >= 1"),
    ({"hidden": 64, "lanes": 16, "simd": 64}, "lanes 16 exceed the 6 cycles of a slot"),
    ({"num": "Q4.12"}, "num must be a Numerics"),
    ({"num": Numerics(weight=QFormat(26, 14))}, "weight width 26 does not fit"),
    ({"num": Numerics(weight=QFormat(20, 14), act=QFormat(20, 12))}, "do not fit the 25x18"),
    ({"num": Numerics(act=QFormat(18, 12), weight=QFormat(25, 14)), "hidden": 4096}, "accumulator"),
])
def test_rejects_bad_parameters(kwargs, match):
    args = {"input_size": 4, "hidden": 4, "layers": 1, "lanes": 2, "simd": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        GruEngine(**args)


def test_perf_rejects_bad_sizes():
    with pytest.raises(ValueError, match="lanes must be an integer >= 1"):
        gru_step_cycles(4, 4, 1, 0, 2)
