# amaranth: UnusedElaboratable=no
"""PWGEngine: the whole generator bit-exact against PWGFixed (as 16-bit PCM), cycle-exact against
perf.pwg_engine_cycles."""

import dataclasses

import numpy as np
import pytest

from wavefabric.model.pwg import PWGConfig, PWGFixed, from_state_dict, pcm16, random_state_dict
from wavefabric.model.pwg_profile import calibration_mel, choose_formats, trained_like_state_dict
from wavefabric.rtl.pwg import PWGEngine
from wavefabric.sim.pwg import generator_streams, run_pwg
from wavefabric.sim.streams import run_streams, vcd_hint

# Three layers on 2x4 (hop 4: two stages, table edge rows); four layers in two stacks on 3x2 with two output and
# two noise channels, a wider conditioning window and one stage (no edge rows), partial row tiles everywhere.
SMALL = PWGConfig(layers=3, stacks=1, residual_channels=4, gate_channels=8, skip_channels=4, aux_channels=3,
                  aux_context_window=1, upsample_scales=(2, 2))
WIDE = PWGConfig(layers=4, stacks=2, residual_channels=6, gate_channels=12, skip_channels=5, aux_channels=4,
                 out_channels=2, in_channels=2, aux_context_window=2, upsample_scales=(4,))
CASES = [(SMALL, 2, 4, 3), (SMALL, 2, 4, 2), (WIDE, 3, 2, 4)]


def job(config: PWGConfig, frames: int, seed: int, scale: float = 1.0):
    """A fixed-point generator of seeded random weights, and a padded mel and noise (act integers)."""
    state = random_state_dict(config, seed)
    state = {name: value * scale if name.endswith("weight_g") and "up_layers" not in name else value
             for name, value in state.items()}
    fixed = PWGFixed(from_state_dict(config, state, hardware_order=True))
    rng = np.random.default_rng(seed + 1)
    act = config.numerics.act
    mel = act.quantize(rng.standard_normal((config.aux_channels, frames + 2 * config.aux_context_window)))
    z = act.quantize(rng.standard_normal((config.in_channels, frames * config.hop_size)))
    return fixed, mel, z


@pytest.mark.parametrize("config, rows, cols, frames", CASES, ids=["small", "small-2-frames", "wide"])
def test_generator_bit_exact_and_cycles_equal_model(config, rows, cols, frames, backend):
    seed = 3 + frames
    fixed, mel, z = job(config, frames, seed)
    name = f"pwg_{rows}x{cols}_f{frames}"
    run = run_pwg(PWGEngine(config, rows, cols, max_frames=5), fixed, mel, z, name=name, backend=backend)
    hint = f"seed {seed}; {vcd_hint(name)}"
    assert run.bit_exact, hint
    assert run.cycles == run.model_cycles, hint


def test_random_stalls_on_every_stream(backend):
    seed = 11
    fixed, mel, z = job(SMALL, 3, seed)
    name = "pwg_stalls"
    run = run_pwg(PWGEngine(SMALL, 2, 4, max_frames=3), fixed, mel, z, seed=seed, p_valid=0.6, p_ready=0.5,
                  name=name, backend=backend)
    assert run.bit_exact and run.cycles > run.model_cycles, f"seed {seed}; {vcd_hint(name)}"


@pytest.mark.parametrize("p", [1.0, 0.6])
def test_activations_in_ddr(p, backend):
    """The activations between layers in two simulated DDRs (reads and writes with a 40-cycle latency, and random
    stalls on every AXI channel and stream): the same PCM, bit for bit; the DDR only adds cycles."""
    seed = 23
    fixed, mel, z = job(WIDE, 3, seed)
    name = f"pwg_ddr_{p}"
    run = run_pwg(PWGEngine(WIDE, 3, 2, max_frames=3, store="ddr"), fixed, mel, z, seed=seed, p_valid=p, p_ready=p,
                  name=name, backend=backend)
    assert run.bit_exact and run.cycles > run.model_cycles, f"seed {seed}; {vcd_hint(name)}"
    memories = run.streams.memories
    assert memories["x"].bytes_written > 0 and memories["skip"].bytes_written > 0


def test_full_scale_saturates_bit_exact():
    # Weights three times their trained scale: activations, skip sums and the waveform saturate.
    seed = 13
    fixed, mel, z = job(SMALL, 2, seed, scale=3.0)
    run = run_pwg(PWGEngine(SMALL, 2, 4, max_frames=2), fixed, mel, z, name="pwg_full_scale")
    assert run.bit_exact, f"seed {seed}; {vcd_hint('pwg_full_scale')}"
    assert np.isin(run.expected, [-32768, 32767]).mean() > 0.1  # the case does saturate


@pytest.mark.parametrize("chosen", [False, True], ids=["uniform", "chosen"])
def test_trained_like_formats_and_saturation_flags(chosen, backend):
    """A trained-like generator: with the uniform formats values saturate in the front end and the layers, and the
    engine's flags say where, as the model's counts do; with the formats chosen for it (loaded at run time with
    the table) nothing saturates. Bit-exact both ways."""
    seed = 31
    mel = 3 * calibration_mel(SMALL, 3, seed)  # the ranges are set and the formats chosen on this job's mel and noise
    generator = from_state_dict(SMALL, trained_like_state_dict(SMALL, seed, mel), hardware_order=True)
    fixed = PWGFixed(generator, choose_formats(generator, mel, seed) if chosen else None)
    z, mel = fixed.job(mel, seed)
    frames = mel.shape[1] - 2 * SMALL.aux_context_window
    name = f"pwg_formats_{'chosen' if chosen else 'uniform'}"
    run = run_pwg(PWGEngine(SMALL, 2, 4, max_frames=frames), fixed, mel, z, seed=seed, name=name, backend=backend)
    assert run.bit_exact, f"seed {seed}; {vcd_hint(name)}"
    assert np.array_equal(run.saturation, run.expected_saturation)
    assert run.saturation.any() != chosen and (chosen or run.saturation[0])


@pytest.mark.parametrize("port", ["mel", "frontend_w", "layer_w", "table"])
def test_framing_error_is_sticky(port):
    seed = 17
    fixed, mel, z = job(SMALL, 2, seed)
    engine = PWGEngine(SMALL, 2, 4, max_frames=2)
    inputs = generator_streams(engine, fixed, mel, z)
    inputs[port][1]["first"] = True
    run = run_streams(engine, inputs, {"pcm": 2}, {"frames": 2}, tail=1, name=f"pwg_framing_{port}")
    assert run.flags["error"] == 1, f"seed {seed}; {vcd_hint(f'pwg_framing_{port}')}"


@pytest.mark.parametrize("config, kwargs, message", [
    (dataclasses.replace(SMALL, skip_channels=6), {}, "the output layers run on the residual engine only"),
    (SMALL, dict(max_frames=1), "max_frames must be an integer >= 2"),
    (SMALL, dict(cols=8), "cols must be a power of two dividing hop = 4"),
    (SMALL, dict(store="sram"), "store must be 'chip' or 'ddr'"),
    ("ljspeech", {}, "config must be a PWGConfig"),
])
def test_bad_parameters(config, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PWGEngine(config, **({"rows": 2, "cols": 4, "max_frames": 3} | kwargs))


def test_two_jobs_of_different_lengths_back_to_back():
    """The second job's mel waits for the first job's last PCM beat (then `frames` changes); every other input
    streams on, and both jobs are bit-exact."""
    seed = 19
    engine = PWGEngine(SMALL, 2, 4, max_frames=4)
    jobs = [job(SMALL, frames, seed) for frames in (3, 2)]
    fixed = jobs[0][0]
    streams = [generator_streams(engine, fixed, mel, z) for _, mel, z in jobs]
    inputs = {port: streams[0][port] + streams[1][port] for port in streams[0] if port != "table"}
    inputs["table"] = streams[0]["table"]
    first = len(streams[0]["mel"])
    pcm = [3 * 4 // 4, 2 * 4 // 4]  # blocks of 4 samples, one output channel
    name = "pwg_two_jobs"
    run = run_streams(engine, inputs, {"pcm": sum(pcm)}, {"frames": 3}, waits={"mel": [(first, "pcm", pcm[0])]},
                      changes={"frames": [("mel", first, 2)]}, tail=1, name=name)
    hint = f"seed {seed}; {vcd_hint(name)}"
    assert run.flags["error"] == 0, hint
    for n, (_, mel, z) in enumerate(jobs):
        beats = run.outputs["pcm"][sum(pcm[:n]):sum(pcm[:n + 1])]
        got = np.concatenate([beat["data"] for beat in beats])
        assert np.array_equal(got, pcm16(fixed.forward(z, mel), SMALL.numerics.act)[0]), hint
