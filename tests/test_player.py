# amaranth: UnusedElaboratable=no
"""boards.player: SampleRNN's PCM through the FIFO and the PWM, recovered by the board's RC filter model."""

import numpy as np
import pytest

from wavefabric.boards.player import PcmPlayer, pwm_duty, rc_recover
from wavefabric.model.sampler import pcm16
from wavefabric.model.samplernn import SampleRNNConfig, SampleRNNFixed, SampleRNNParams, random_state_dict
from wavefabric.sim.streams import run_simulation, vcd_hint

BITS, PERIOD = 6, 512   # 8 PWM periods per sample (the board: 8 bits, 6,250 cycles: 24.4)


def _play(pcm, bits, period, gap=0, seed=0):
    """Feed ``pcm`` (a source stalling at random ``gap`` > 0) and trace ``pwm`` and ``playing`` every cycle."""
    player = PcmPlayer(bits, period, fifo_depth=8)
    rng = np.random.default_rng(seed)
    cycles = (len(pcm) + 3) * period + len(pcm) * gap
    trace, playing = [], []

    async def source(ctx):
        for value in pcm:
            ctx.set(player.pcm.valid, 0)
            for _ in range(int(rng.integers(0, gap + 1))):
                await ctx.tick()
            ctx.set(player.pcm.payload, int(value))
            ctx.set(player.pcm.valid, 1)
            await ctx.tick().until(player.pcm.ready)
        ctx.set(player.pcm.valid, 0)

    async def probe(ctx):
        for _ in range(cycles):
            _, _, pwm, on = await ctx.tick().sample(player.pwm, player.playing)
            trace.append(pwm)
            playing.append(on)

    run_simulation(player, [source, probe], name="pcm_player")
    return np.array(trace, dtype=np.float64), np.array(playing)


def _snr(expected, recovered):
    return 10 * np.log10(np.var(expected) / np.var(recovered - expected))


def test_samplernn_pcm_is_recovered_by_the_rc_filter(capsys):
    """PCM of the fixed-point SampleRNN (seed configuration, random weights) through the player: every whole PWM
    period in a sample's span carries its duty, and the RC filter model gives the PCM stream back: the played
    waveform against the PCM stream's ideal (zero-order hold) waveform through the same filter."""
    config = SampleRNNConfig()
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(config, random_state_dict(config, 0)))
    n = 48
    pcm = pcm16(model.generate(n, 1), config.q_levels).astype(np.int64)
    pwm, playing = _play(pcm, BITS, PERIOD)
    start = int(np.argmax(playing))  # the cycle after the first sample became current
    spans = pwm[start:start + n * PERIOD].reshape(n, PERIOD)
    duty = pwm_duty(pcm, BITS)
    # Whole PWM periods within a sample's span carry its duty: the first period may still be the previous one.
    whole = spans[:, (1 << BITS):].reshape(n, -1, 1 << BITS).sum(axis=2)
    assert (whole == duty[:, None]).all(), vcd_hint("pcm_player")
    # Two RC poles of two PWM periods each (as test_pynq_z1's), on both waveforms, past the filter's start-up.
    ideal = np.full(len(pwm), 0.5)
    ideal[start:start + n * PERIOD] = np.repeat((pcm + 32768) / 65536, PERIOD)
    played, reference = (rc_recover(wave, 2 << BITS)[start + 4 * PERIOD:start + n * PERIOD] for wave in (pwm, ideal))
    snr, snr_ends = _snr(reference, played), _snr(reference[PERIOD - 1::PERIOD], played[PERIOD - 1::PERIOD])
    with capsys.disabled():
        print(f"\nplayer ({BITS}-bit PWM, {PERIOD} cycles per sample): SNR against the PCM stream {snr:.1f} dB over "
              f"the waveform, {snr_ends:.1f} dB at the sample ends")
    assert snr > 27 and snr_ends > 32   # measured 29.3 dB and 34.5 dB


def test_an_empty_fifo_plays_silence_and_a_slow_source_loses_nothing():
    """A source far slower than the sample rate: silence (mid-scale duty, ``playing`` low) whenever the FIFO is
    empty, and every sample played once, in order."""
    pcm = np.array([-32768, 32767, -4096, 12288, 0, -20000])
    bits, period = 4, 64
    pwm, playing = _play(pcm, bits, period, gap=150, seed=3)
    first = int(np.argmax(playing))
    spans = range(first % period, len(pwm) - period + 1, period)
    # The last three of a span's four PWM periods carry its sample's duty.
    duties = [int(pwm[s + (1 << bits):s + period].sum()) // 3 for s in spans]
    played = [d for s, d in zip(spans, duties, strict=True) if playing[s]]
    assert played == pwm_duty(pcm, bits).tolist(), vcd_hint("pcm_player")
    silent = [d for s, d in zip(spans, duties, strict=True) if not playing[s]]
    assert silent and set(silent) == {1 << (bits - 1)}


@pytest.mark.parametrize("args, message", [
    ((0, 64), "bits must be"),
    ((6, 63), "sample_period must be"),
    ((6, 64, 1), "fifo_depth must be"),
])
def test_player_validation(args, message):
    with pytest.raises(ValueError, match=message):
        PcmPlayer(*args)
