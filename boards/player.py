"""Standalone playback: 16-bit PCM from a stream to the PYNQ-Z1's PWM audio output at a fixed sample rate.

* :class:`PcmPlayer`: a FIFO, a sample clock and a PWM modulator: what an accelerator top uses to sing with no
  host in the loop (:class:`~.samplernn_top.SampleRNNTopConfig`'s ``audio_out``). The pin is open drain (see
  :class:`~.pynq_z1.PynqZ1Platform`): the top drives it through a tristate buffer, high impedance for 1.
* :func:`rc_recover`: the board's analog reconstruction filter as a model (RC low-pass stages), to check it.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..model.checks import check_int

__all__ = ["PcmPlayer", "rc_recover", "pwm_duty"]


def pwm_duty(pcm, bits: int) -> np.ndarray:
    """The duty counts :class:`PcmPlayer` plays for 16-bit PCM: ``(pcm + 32768) >> (16 - bits)``."""
    return (np.asarray(pcm, dtype=np.int64) + 32768) >> (16 - check_int("bits", bits, 1, 16))


class PcmPlayer(wiring.Component):
    """Plays 16-bit PCM from a stream at one sample every ``sample_period`` cycles, as PWM, through a FIFO.

    Every ``sample_period`` cycles the FIFO's oldest sample becomes the current one (mid-scale, silence, when
    the FIFO is empty); its duty is ``(pcm + 32768) >> (16 - bits)`` (offset binary, truncated). The PWM runs
    free in periods of ``2**bits`` cycles, high for the first ``duty`` cycles of each; a period takes the duty of
    the sample current at its start, so a sample shows from the first period that starts after it became
    current. The mean of ``pwm`` over a sample's span is therefore its duty / ``2**bits`` up to the periods cut
    by the sample boundaries.

    Parameters
    ----------
    bits : int
        PWM resolution, 1 to 16.
    sample_period : int
        Clock cycles per sample, at least ``2**bits`` (100 MHz / 16 kHz = 6,250).
    fifo_depth : int
        Samples the FIFO holds, >= 2: a producer faster than real time waits on ``pcm.ready``.

    Ports
    -----
    pcm : In(stream.Signature(signed(16)))
    pwm : Out(1)
        Registered.
    playing : Out(1)
        The current sample came from the FIFO (low while it is silence after an empty FIFO).
    """

    def __init__(self, bits: int = 8, sample_period: int = 6250, fifo_depth: int = 512):
        self.bits = check_int("bits", bits, 1, 16)
        self.sample_period = check_int("sample_period", sample_period, 1 << bits)
        self.fifo_depth = check_int("fifo_depth", fifo_depth, 2)
        super().__init__({"pcm": In(stream.Signature(signed(16))), "pwm": Out(1), "playing": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bits = self.bits
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=16, depth=self.fifo_depth)
        m.d.comb += [fifo.w_data.eq(self.pcm.payload), fifo.w_en.eq(self.pcm.valid), self.pcm.ready.eq(fifo.w_rdy)]
        tick = Signal(range(self.sample_period))
        current = Signal(bits, init=1 << (bits - 1))            # the current sample's duty; mid-scale is silence
        duty, count = Signal(bits), Signal(bits, init=(1 << bits) - 1)
        m.d.sync += [tick.eq(tick + 1), count.eq(count + 1)]
        with m.If(tick == self.sample_period - 1):
            m.d.sync += tick.eq(0)
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [current.eq(fifo.r_data[16 - bits:] ^ (1 << (bits - 1))), self.playing.eq(fifo.r_rdy)]
            with m.If(~fifo.r_rdy):
                m.d.sync += current.eq(1 << (bits - 1))
        with m.If(count == (1 << bits) - 1):
            m.d.sync += duty.eq(current)
        m.d.sync += self.pwm.eq(count < duty)
        return m


def rc_recover(pwm, tau: float, poles: int = 2) -> np.ndarray:
    """A PWM trace (one value per clock cycle) through ``poles`` RC low-pass stages of ``tau`` cycles each: the
    board's analog reconstruction filter as a model. Returns the filtered trace (0 to 1)."""
    y = np.asarray(pwm, dtype=np.float64)
    a = 1.0 / tau
    for _ in range(poles):
        out, acc = np.empty_like(y), y[0]
        for i, v in enumerate(y):
            acc += a * (v - acc)
            out[i] = acc
        y = out
    return y
