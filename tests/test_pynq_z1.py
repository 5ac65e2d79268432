# amaranth: UnusedElaboratable=no
"""boards.pynq_z1: the platform's pins, PWM playback recovered by a low-pass filter, the Vivado build plan."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from wavefabric.boards.player import rc_recover
from wavefabric.boards.pynq_z1 import PwmPlayer, PynqZ1Platform, pwm_samples, write_pwm_plan


def _pins(resource):
    return {sub.name: (sub.ios[0].names, sub.ios[0].dir, sub.ios[0].invert) for sub in resource.ios}


def test_platform_adds_the_audio_and_microphone_pins():
    platform = PynqZ1Platform()
    assert (platform.device, platform.package, platform.speed) == ("xc7z020", "clg400", "1")
    audio = platform.lookup("audio", 0)
    assert _pins(audio) == {"pwm": (["R18"], "oe", False), "sd": (["T17"], "o", True)}  # open drain; shutdown_n
    assert _pins(platform.lookup("mic", 0)) == {"clk": (["F17"], "o", False), "data": (["G18"], "i", False)}
    for name in ("audio", "mic"):
        assert platform.lookup(name, 0).attrs["IOSTANDARD"] == "LVCMOS33"
    assert platform.lookup("clk125", 0).ios[0].names == ["H16"]   # the rest is the Arty Z7-20's


def _simulate(samples, bits, periods) -> np.ndarray:
    player = PwmPlayer(samples, bits, periods)
    cycles = len(samples) * periods << bits
    trace = []

    async def testbench(ctx):
        for _ in range(cycles + 2):
            _, _, pwm = await ctx.tick().sample(player.pwm)
            trace.append(pwm)

    sim = Simulator(player)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(trace[2:], dtype=np.float64)   # period k of the loop starts at cycle 2 + k * 2**bits


def test_pwm_playback_is_recovered_by_a_low_pass_filter():
    bits, periods, n = 5, 16, 32
    samples = pwm_samples(0.8 * np.sin(2 * np.pi * 2 * np.arange(n) / n), bits)
    pwm = _simulate(samples, bits, periods)
    span = periods << bits
    # Averaged over each sample's span, the duty cycle is exactly the sample.
    assert np.array_equal(pwm.reshape(n, span).sum(axis=1) / periods, samples)
    # An RC low-pass of two poles (time constant 2 PWM periods), read at the end of each sample, like the
    # board's analog reconstruction filter: the samples come back with a high SNR.
    y = rc_recover(pwm, 2 << bits)
    recovered, expected = y[span - 1::span][2:], (samples / (1 << bits))[2:]   # skip the filter's start-up
    error = recovered - expected
    snr = 10 * np.log10(np.var(expected) / np.var(error))
    assert np.corrcoef(recovered, expected)[0, 1] > 0.9999
    assert snr > 40   # measured 44.7 dB


def test_player_loops():
    samples = [1, 3, 0]
    pwm = _simulate(samples * 2, 2, 1)[: 3 * 4 * 2]
    assert pwm.reshape(6, 4).sum(axis=1).tolist() == samples * 2


@pytest.mark.parametrize("args, message", [
    (([],), "at least one sample"),
    (([4], 2), r"samples must lie in \[0, 3\]"),
    (([0], 0), "bits must be an integer from 1 to 16"),
    (([0], 4, 0), "periods must be an integer >= 1"),
])
def test_player_validation(args, message):
    with pytest.raises(ValueError, match=message):
        PwmPlayer(*args)


def test_pwm_samples():
    assert pwm_samples([-1, 0, 1, 2], 8).tolist() == [0, 128, 255, 255]


def test_build_plan_is_written_atomically(tmp_path):
    folder = tmp_path / "pwm"
    files = write_pwm_plan(folder, np.zeros(64), sample_rate=16000, bits=8, name="tone")
    assert {"tone.v", "tone.xdc", "tone.tcl", "build_tone.sh"} <= set(files)
    xdc = (folder / "tone.xdc").read_text()
    for pin in ("R18", "T17", "H16"):
        assert f"set_property LOC {pin}" in xdc
    assert "xc7z020" in (folder / "tone.tcl").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["pwm"]
    with pytest.raises(ValueError, match="sample_rate"):
        write_pwm_plan(tmp_path / "bad", sample_rate=0)
