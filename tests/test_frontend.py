# amaranth: UnusedElaboratable=no
"""PWGFrontEnd: bit-exact against PWGFixed's own functions, cycle-exact against perf.pwg_frontend_timing."""

import dataclasses

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from wavefabric.model.kernels import linear
from wavefabric.model.perf import (
    PWG_FRONTEND_LATENCY,
    pwg_frontend_cond_cycles,
    pwg_frontend_layer_cycles,
    pwg_frontend_timing,
)
from wavefabric.model.pwg import MAX_SHIFT, PWGConfig, PWGFixed, from_state_dict, random_state_dict
from wavefabric.model.pwg_profile import choose_formats, trained_like_state_dict
from wavefabric.rtl.frontend import PWGFrontEnd
from wavefabric.sim.frontend import (
    cond_words,
    frontend_outputs,
    frontend_reference,
    frontend_streams,
    run_frontend,
)
from wavefabric.sim.streams import run_streams, vcd_hint


def small_config(layers=2, residual=4, gate=8, skip=4, aux=3, window=1, scales=(2, 2), in_channels=1):
    return PWGConfig(layers=layers, stacks=1, residual_channels=residual, gate_channels=gate, skip_channels=skip,
                     aux_channels=aux, aux_context_window=window, upsample_scales=scales, in_channels=in_channels)


def fixed_model(config: PWGConfig, seed: int) -> PWGFixed:
    return PWGFixed(from_state_dict(config, random_state_dict(config, seed)))


def random_job(rng, config: PWGConfig, frames: int):
    """A padded mel ``(A, F + 2w)`` and noise ``(in_channels, F hop)``, act ints of trained-like scale."""
    act = config.numerics.act
    mel = act.quantize(rng.standard_normal((config.aux_channels, frames + 2 * config.aux_context_window)))
    z = act.quantize(rng.standard_normal((config.in_channels, frames * config.hop_size)))
    return mel, z


def hint(seed: int, name: str) -> str:
    return f"seed {seed}; {vcd_hint(name)}"


# Partial last gate tile (rows 3, 5 and 16 > G), conv_in of 1, 3 and 5 taps, one and two noise channels, one
# column, a word per output (rows 1), the fewest frames and max_frames.
CASES = [
    dict(config=dict(), frames=3, rows=3, cols=2, max_frames=4),
    dict(config=dict(layers=3, residual=8, gate=16, skip=8, aux=6, window=2, scales=(4,), in_channels=2),
         frames=2, rows=4, cols=4, max_frames=2),
    dict(config=dict(aux=4, window=0, in_channels=2), frames=4, rows=2, cols=4, max_frames=4),
    dict(config=dict(layers=3, residual=5, gate=10, aux=5, window=2, scales=(4,)), frames=2, rows=16, cols=1,
         max_frames=3),
    dict(config=dict(gate=10, skip=2, aux=2), frames=2, rows=1, cols=2, max_frames=2),
]


def _case_id(case):
    return f"{case['rows']}x{case['cols']}-f{case['frames']}-" + "-".join(f"{k}{v}" for k, v in case["config"].items())


@pytest.mark.parametrize("n, case", list(enumerate(CASES)), ids=[_case_id(c) for c in CASES])
def test_two_jobs_bit_exact_and_cycles_equal_model(n, case, backend):
    """Two jobs back to back: every x0 and cond beat equals the model's, the last x0 beat and every cond word
    transfer in the model's cycle, and the second job follows the first by the model's period."""
    seed = 100 + n
    config = small_config(**case["config"])
    fixed = fixed_model(config, seed)
    rng = np.random.default_rng(seed)
    frames, rows, cols = case["frames"], case["rows"], case["cols"]
    unit = PWGFrontEnd(config, rows, cols, case["max_frames"])
    name = f"pwg_frontend_case{n}"
    run = run_frontend(unit, fixed, [random_job(rng, config, frames) for _ in range(2)], name=name,
                       backend=backend)
    assert run.bit_exact and run.error == 0, hint(seed, name)
    timing = pwg_frontend_timing(config, frames, cols, rows)
    times = run.streams.times
    x0_beats = frames * config.hop_size // cols * config.residual_channels
    words = frames * unit.gate_tiles
    for job in range(2):
        shift = job * timing.cycles
        assert times["x0"][(job + 1) * x0_beats - 1] == timing.x0_last + shift, hint(seed, name)
        lasts = [times["cond"][(job * (config.layers + 1) + layer + 1) * words - 1] - shift
                 for layer in range(config.layers + 1)]
        assert tuple(lasts) == timing.cond_last, hint(seed, name)
        for layer in range(config.layers + 1):
            start = (timing.cond_last[layer - 1] if layer else timing.x0_last) + 1 + shift
            first = (job * (config.layers + 1) + layer) * words
            expected = pwg_frontend_cond_cycles(config, frames, rows, zero=layer == config.layers)
            assert (times["cond"][first:first + words] - start).tolist() == expected, hint(seed, name)
    assert run.streams.cycles == 2 * timing.cycles, hint(seed, name)


def test_reference_is_pwgfixed_forward_front_end():
    """The expected beats come from PWGFixed's own functions, in the layouts the unit documents."""
    config = small_config(in_channels=2)
    fixed = fixed_model(config, 3)
    mel, z = random_job(np.random.default_rng(3), config, 3)
    ref = frontend_reference(fixed, mel, z)
    num = config.numerics
    assert np.array_equal(ref.f, fixed.frame_conditioning(mel))
    assert np.array_equal(ref.x0, linear(fixed.first_conv, z, fixed.first_bias, num))
    assert all(np.array_equal(a, linear(layer.aux, ref.f, None, num)) for a, layer in zip(ref.aux, fixed.layers,
                                                                                           strict=True))
    streams = frontend_streams(fixed, mel, z, 3, 2)
    assert [b["data"][0] for b in streams["mel"][:3]] == mel[:, 0].tolist()  # frame-major
    assert len(streams["weights"]) == 3 * 9 + 4 * 2 + 2 * 8 * 3
    assert streams["weights"][27]["data"] == [fixed.first_conv[0, 0]]
    assert streams["noise"][1]["data"] == z[1, :2].tolist()
    outputs = frontend_outputs(fixed, mel, z, 3, 2)
    assert len(outputs["cond"]) == 3 * 3 * 3 and outputs["cond"][2]["data"] == ref.aux[0][6:, 0].tolist() + [0]
    assert not any(any(w["data"]) for w in outputs["cond"][-9:])  # the zero layer
    assert [w["first"] for w in cond_words(ref.aux[0], 3)].count(True) == 1


@pytest.mark.parametrize("seed, case", [(0, 0), (1, 1), (2, 3)])
def test_random_stalls_on_every_stream(seed, case, backend):
    """Random gaps on every input and random ready on both outputs, two jobs: bit-exact, and slower."""
    case = CASES[case]
    config = small_config(**case["config"])
    fixed = fixed_model(config, seed)
    rng = np.random.default_rng(seed)
    unit = PWGFrontEnd(config, case["rows"], case["cols"], case["max_frames"])
    name = f"pwg_frontend_stalls_seed{seed}"
    run = run_frontend(unit, fixed, [random_job(rng, config, case["frames"]) for _ in range(2)], seed=seed,
                       p_valid=0.6, p_ready=0.4, name=name, backend=backend)
    assert run.bit_exact and run.error == 0, hint(seed, name)
    assert run.streams.cycles > 2 * run.model_cycles, hint(seed, name)


class HeldCond(wiring.Component):
    """``unit`` with its ``cond`` stream closed (neither valid nor ready) from cycle ``close`` to ``reopen`` - 1."""

    def __init__(self, unit: PWGFrontEnd, close: int, reopen: int):
        self.unit, self.close, self.reopen = unit, close, reopen
        super().__init__(unit.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        cycle = Signal(range(self.reopen + 1))
        with m.If(cycle != self.reopen):
            m.d.sync += cycle.eq(cycle + 1)
        passes = (cycle < self.close) | (cycle == self.reopen)
        for name in ("mel", "weights", "bias", "noise"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(unit, name))
        wiring.connect(m, unit.x0, wiring.flipped(self.x0))
        m.d.comb += [unit.frames.eq(self.frames), self.error.eq(unit.error), self.cond.payload.eq(unit.cond.payload),
                     self.cond.valid.eq(unit.cond.valid & passes), unit.cond.ready.eq(self.cond.ready & passes)]
        return m


@pytest.mark.parametrize("accept", [0, 18, 40, 100])  # word 0 is ready in cycle 13, word 1 in 22
def test_layer_composes_with_a_late_consumer(accept):
    """A consumer that takes layer 1's words only from cycle ``accept`` of the layer on (as the residual
    engine's loader does until the layer before starts on the engine): layer 1's words transfer when
    pwg_frontend_cond_cycles says, and every later layer starts the cycle after the previous one's last word."""
    seed = 23
    config = small_config(layers=3)
    fixed = fixed_model(config, seed)
    mel, z = random_job(np.random.default_rng(seed), config, 3)
    unit = PWGFrontEnd(config, 3, 2, 4)
    timing = pwg_frontend_timing(config, 3, 2, 3)
    start = timing.cond_last[0] + 1
    outputs = frontend_outputs(fixed, mel, z, 3, 2)
    name = f"pwg_frontend_late_consumer_{accept}"
    run = run_streams(HeldCond(unit, start, start + accept), frontend_streams(fixed, mel, z, 3, 2),
                      {s: len(b) for s, b in outputs.items()}, {"frames": 3}, name=name)
    assert all(run.outputs[s] == [{**b, "first": int(b["first"]), "last": int(b["last"])} for b in beats]
               for s, beats in outputs.items()), hint(seed, name)
    words = 3 * unit.gate_tiles
    times = run.times["cond"].reshape(config.layers + 1, words)
    assert (times[1] - start).tolist() == pwg_frontend_cond_cycles(config, 3, 3, accept=accept), hint(seed, name)
    for layer in range(2, config.layers + 1):
        expected = pwg_frontend_cond_cycles(config, 3, 3, zero=layer == config.layers)
        assert (times[layer] - times[layer - 1, -1] - 1).tolist() == expected, hint(seed, name)
    assert pwg_frontend_layer_cycles(config, 3, 3, accept=accept) == times[1, -1] - start + 1


def test_full_scale_saturates_bit_exact(backend):
    """Weights, biases, mel and noise at the ends of their formats: f, x0 and the aux terms saturate."""
    seed = 7
    config = small_config(aux=4, window=2, in_channels=2)
    fixed = fixed_model(config, seed)
    rng = np.random.default_rng(seed)
    w, a = config.numerics.weight, config.numerics.act

    def extremes(shape, fmt):
        return rng.choice([fmt.min_int, fmt.max_int], shape)

    fixed.conv_in = extremes(fixed.conv_in.shape, w)
    fixed.first_conv = extremes(fixed.first_conv.shape, w)
    fixed.first_bias = extremes(fixed.first_bias.shape, a)
    for layer in fixed.layers:
        layer.aux[:] = extremes(layer.aux.shape, w)
    mel = extremes((4, 3 + 4), a)
    z = extremes((2, 3 * 4), a)
    ref = frontend_reference(fixed, mel, z)
    for values in (ref.f, ref.x0, ref.aux[0]):
        assert np.isin(values, [a.min_int, a.max_int]).mean() > 0.2  # the case does saturate
    name = "pwg_frontend_full_scale"
    run = run_frontend(PWGFrontEnd(config, 3, 4, 3), fixed, [(mel, z)], name=name, backend=backend)
    assert run.bit_exact and run.error == 0, hint(seed, name)


def test_shifts_of_a_checkpoints_formats(backend):
    """conv_in, first_conv and each layer's aux 1x1 narrow by the formats' own shifts (run-time inputs): formats
    chosen for a trained-like generator, one a shift of 0 and one the largest, bit-exact with stalls."""
    seed = 17
    config = small_config(layers=3, aux=4, window=2, in_channels=2)
    generator = from_state_dict(config, trained_like_state_dict(config, seed))
    formats = choose_formats(generator)
    formats = dataclasses.replace(formats, f=formats.mel + formats.conv_in - 15)  # conv_in shifts by 15
    # Aux weights at the fracs that make the aux shifts 0, the largest and one between.
    aux = tuple(shift - formats.f + formats.aux_term(n) for n, shift in enumerate((0, MAX_SHIFT, 13)))
    fixed = PWGFixed(generator, dataclasses.replace(formats, aux=aux))
    assert fixed.shifts.aux == (0, MAX_SHIFT, 13) and fixed.shifts.conv_in == 15
    rng = np.random.default_rng(seed)
    jobs = [random_job(rng, config, 3) for _ in range(2)]
    name = "pwg_frontend_shifts"
    run = run_frontend(PWGFrontEnd(config, 3, 2, 3), fixed, jobs, seed=seed, p_valid=0.7, p_ready=0.7, name=name,
                       backend=backend)
    assert run.bit_exact and run.error == 0, hint(seed, name)


@pytest.mark.parametrize("port, beat, flag", [("mel", 0, "first"), ("mel", 5, "last"), ("weights", 0, "first"),
                                              ("weights", 30, "first"), ("weights", -1, "last"),
                                              ("bias", 2, "first"), ("noise", -1, "last"), ("noise", 4, "first")])
def test_framing_error_on_each_input_is_sticky(port, beat, flag, backend):
    """An input beat whose first / last disagree with the unit's count sets ``error``, which stays set; the job
    is computed as usual."""
    seed = 17
    config = small_config()
    fixed = fixed_model(config, seed)
    rng = np.random.default_rng(seed)
    mel, z = random_job(rng, config, 3)
    unit = PWGFrontEnd(config, 3, 2, 4)
    inputs = frontend_streams(fixed, mel, z, 3, 2)
    inputs[port][beat][flag] = not inputs[port][beat][flag]
    expected = frontend_outputs(fixed, mel, z, 3, 2)
    name = f"pwg_frontend_framing_{port}"
    run = run_streams(unit, inputs, {s: len(b) for s, b in expected.items()}, {"frames": 3}, seed=seed,
                      p_valid=0.7, p_ready=0.7, tail=1, name=name, backend=backend)
    assert run.flags["error"] == 1, hint(seed, name)
    for s, beats in expected.items():
        assert [b["data"] for b in run.outputs[s]] == [b["data"] for b in beats], hint(seed, name)


def test_verilator_runs_like_amaranth():
    """The exported Verilog on Verilator: two jobs under random stalls with a framing error, cycle for cycle
    and value for value as on Amaranth's simulator."""
    seed = 19
    config = small_config(layers=3, in_channels=2)
    fixed = fixed_model(config, seed)
    rng = np.random.default_rng(seed)
    jobs = [random_job(rng, config, 3) for _ in range(2)]
    unit = PWGFrontEnd(config, 3, 2, 4)
    inputs = {s: [] for s in ("mel", "weights", "bias", "noise")}
    outputs = {"x0": 0, "cond": 0}
    for mel, z in jobs:
        for s, beats in frontend_streams(fixed, mel, z, 3, 2).items():
            inputs[s] += beats
        for s, beats in frontend_outputs(fixed, mel, z, 3, 2).items():
            outputs[s] += len(beats)
    inputs["weights"][40]["last"] = True
    runs = [run_streams(unit, inputs, outputs, {"frames": 3}, seed=seed, p_valid=0.7, p_ready=0.6, tail=1,
                        backend=backend, name="pwg_frontend_cross") for backend in ("amaranth", "verilator")]
    a, b = runs
    assert a.outputs == b.outputs and a.flags == b.flags and a.cycles == b.cycles, f"seed {seed}"
    assert all(np.array_equal(a.times[s], b.times[s]) for s in a.times), f"seed {seed}: transfer cycles differ"
    assert a.flags["error"] == 1, f"seed {seed}"


@pytest.mark.parametrize("kwargs, message", [
    (dict(config=None), "config must be a PWGConfig"),
    (dict(rows=0), "rows must be an integer >= 1"),
    (dict(rows=True), "rows must be an integer >= 1"),
    (dict(cols=0), "cols must be an integer >= 1"),
    (dict(cols=3), "cols must be a power of two dividing hop = 4"),
    (dict(cols=8), "cols must be a power of two dividing hop = 4"),
    (dict(max_frames=1), "max_frames must be an integer >= 2"),
    (dict(max_frames=2.0), "max_frames must be an integer >= 2"),
])
def test_bad_parameters(kwargs, message):
    args = dict(config=small_config(), rows=2, cols=2, max_frames=4) | kwargs
    with pytest.raises(ValueError, match=message):
        PWGFrontEnd(**args)


def test_timing_model():
    """The formulas of the cycle model, its composition by layers, and its checks."""
    config = PWGConfig()  # ljspeech: A 80, R 64, G 128, w 2, hop 256, 30 layers
    timing = pwg_frontend_timing(config, 8, 16, 13)
    mel, conv_in, load, first = 80 * 12, 80 * 8 * 400, 64, 128 * (1 + 64 * 16)
    assert timing.x0_last == mel + conv_in + load + first + PWG_FRONTEND_LATENCY - 1
    layer = pwg_frontend_layer_cycles(config, 8, 13)
    assert layer == 8 * 128 * 80 + 5 and pwg_frontend_layer_cycles(config, 8, 13, zero=True) == 8 * 10 + 5
    assert np.array_equal(np.diff(timing.cond_last), [layer] * 29 + [8 * 10 + 5])
    assert timing.cond_last[0] == timing.x0_last + layer and timing.cycles == timing.cond_last[-1] + 1
    with pytest.raises(ValueError, match="frames must be an integer >= 2"):
        pwg_frontend_timing(config, 1, 16, 13)
    with pytest.raises(ValueError, match="cols must be a power of two dividing hop = 256"):
        pwg_frontend_timing(config, 8, 12, 13)


def test_ljspeech_sizes_elaborate():
    unit = PWGFrontEnd(PWGConfig(), rows=13, cols=16, max_frames=8)
    assert unit.gate_tiles == 10 and unit.reduction == 400 and unit.acc_width <= 48
    rtlil.convert(unit)
