"""What the cocotb benches share: the clock and reset, cocotbext-axi's AXI4-Lite master on ``s_axi_ctrl``, seeded
random pauses, the ``ap_ctrl`` handshake and the check of the registers against the register map JSON.

The benches run inside the simulator that ``tests/test_cocotb.py`` builds; it passes the build's register map
JSON in :data:`REGMAP_ENV` and the seed as cocotb's ``COCOTB_RANDOM_SEED`` (``cocotb.RANDOM_SEED``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import warnings
from collections.abc import Iterator

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

# cocotbext-axi 0.1.28 still uses cocotb 1.x calls that cocotb 2 deprecates (a warning per call).
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")

#: Environment variable naming the register map JSON of the top under test.
REGMAP_ENV = "WAVEFABRIC_REGMAP"
#: The clock period (100 MHz, the overlay's FCLK0).
PERIOD_NS = 10
#: Polls of CTRL before a job that does not finish fails the test.
MAX_POLLS = 20_000
#: Probability of a pause in a cycle on a stalling channel.
P_PAUSE = 0.3

CTRL_DONE, CTRL_IDLE, CTRL_READY = 0b10, 0b100, 0b1000


def load_regmap() -> dict:
    """The register map JSON of the top under test (written by the build, ``<name>.regmap.json``)."""
    with open(os.environ[REGMAP_ENV], encoding="utf-8") as file:
        return json.load(file)


def format_word(pair: list[int]) -> int:
    """A format's ``[width, frac]`` in the register map's JSON as its configuration register reads it."""
    return pair[0] | pair[1] << 8


def pauses(name: str, p: float = P_PAUSE) -> Iterator[bool]:
    """A pause pattern for a cocotbext-axi channel: True (pause) with probability ``p`` per cycle, from a generator
    seeded by the test's seed and ``name``."""
    rng = random.Random(f"{cocotb.RANDOM_SEED}/{name}")
    while True:
        yield rng.random() < p


async def within(awaitable, cycles: int, what: str):
    """``await awaitable``, or fail naming ``what`` if it has not completed in ``cycles`` clock cycles."""
    try:
        return await with_timeout(awaitable, cycles * PERIOD_NS, "ns")
    except SimTimeoutError:
        raise AssertionError(f"{what}: not done in {cycles:,} cycles") from None


def quiet(*objects) -> None:
    """Log only warnings of cocotbext-axi's models (they log every transfer at INFO)."""
    for obj in objects:
        for interface in (obj, getattr(obj, "write_if", None), getattr(obj, "read_if", None)):
            if interface is not None and hasattr(interface, "log"):
                interface.log.setLevel(logging.WARNING)


class Bench:
    """A top under test: clock, active-low reset, the register map and the AXI4-Lite master.

    Create with :meth:`start`, which starts the clock and holds ``aresetn`` low for a few cycles.
    """

    def __init__(self, dut):
        self.dut = dut
        self.regmap = load_regmap()
        self.offsets = {name: reg["offset"] for name, reg in self.regmap["registers"].items()}
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_ctrl"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        quiet(self.lite)
        self._stalls = 0  # stall() calls that switched pauses on: each gets patterns of its own

    @classmethod
    async def start(cls, dut) -> Bench:
        Clock(dut.aclk, PERIOD_NS, unit="ns").start()
        dut.aresetn.value = 0
        bench = cls(dut)
        await ClockCycles(dut.aclk, 4)
        dut.aresetn.value = 1
        await ClockCycles(dut.aclk, 2)
        return bench

    def channels(self) -> dict:
        """The AXI4-Lite master's five channels by name (what :meth:`stall` pauses)."""
        write, read = self.lite.write_if, self.lite.read_if
        return {"ctrl_aw": write.aw_channel, "ctrl_w": write.w_channel, "ctrl_b": write.b_channel,
                "ctrl_ar": read.ar_channel, "ctrl_r": read.r_channel}

    def stall(self, on: bool, **channels) -> None:
        """Random pauses (seeded, a pattern per channel name) on the AXI4-Lite channels and ``channels`` (name to
        cocotbext-axi source, which then pauses TVALID, or sink, TREADY), or none."""
        self._stalls += on
        for name, channel in (self.channels() | channels).items():
            channel.set_pause_generator(pauses(f"{name}/{self._stalls}") if on else None)
            if not on:
                channel.pause = False  # cocotbext-axi 0.1.28 keeps the last pause when its generator is cleared

    async def read_at(self, offset: int) -> tuple[int, AxiResp]:
        resp = await self.lite.read(offset, 4)
        return int.from_bytes(resp.data, "little"), resp.resp

    async def write_at(self, offset: int, value: int) -> AxiResp:
        return (await self.lite.write(offset, value.to_bytes(4, "little"))).resp

    async def read(self, name: str) -> int:
        value, resp = await self.read_at(self.offsets[name])
        assert resp == AxiResp.OKAY, f"read of {name}: response {resp!r}"
        return value

    async def write(self, name: str, value: int) -> None:
        resp = await self.write_at(self.offsets[name], value)
        assert resp == AxiResp.OKAY, f"write of {value:#x} to {name}: response {resp!r}"

    async def start_job(self) -> None:
        """ap_start."""
        await self.write("CTRL", 1)

    async def poll_done(self) -> int:
        """Poll CTRL until ap_done; return the value that had it (ap_done and ap_ready clear on that read)."""
        for _ in range(MAX_POLLS):
            value = await self.read("CTRL")
            if value & CTRL_DONE:
                return value
        raise AssertionError(f"no ap_done in {MAX_POLLS} polls of CTRL")

    async def check_registers(self, config: dict[str, int], scratch: list[str]) -> None:
        """Every register against the JSON.

        Each constant reads its ``value``, and ``config`` (register name to the value the JSON's ``config``
        section implies) agrees; every register reads OKAY, the other read-only ones 0 after reset (STATUS,
        CYCLES), CTRL ap_idle; a write to a read-only register or a read of an unmapped address answers SLVERR
        and changes nothing; ``scratch`` registers (``rw``, 32 bits) keep what is written.
        """
        registers = self.regmap["registers"]
        for name, expected in config.items():
            assert registers[name].get("value") == expected, f"{name}: the JSON's value is not its config's"
        for name, reg in registers.items():
            value = await self.read(name)
            if "value" in reg:
                assert value == reg["value"], f"{name} reads {value:#x}, the JSON says {reg['value']:#x}"
            elif name == "CTRL":
                assert value == CTRL_IDLE, f"CTRL reads {value:#x} after reset, not ap_idle"
            elif reg["access"] == "ro":
                assert value == 0, f"{name} reads {value:#x} after reset"
        for name, reg in registers.items():
            if reg["access"] == "ro":
                before = await self.read(name)
                assert await self.write_at(reg["offset"], ~before & 0xFFFF_FFFF) == AxiResp.SLVERR, name
                assert await self.read(name) == before, f"a refused write changed {name}"
        used = {reg["offset"] for reg in registers.values()}
        unmapped = next(offset for offset in range((1 << self.regmap["addr_width"]) - 4, 0, -4) if offset not in used)
        assert await self.read_at(unmapped) == (0, AxiResp.SLVERR), f"read of unmapped {unmapped:#x}"
        assert await self.write_at(unmapped, 1) == AxiResp.SLVERR, f"write to unmapped {unmapped:#x}"
        rng = random.Random(f"{cocotb.RANDOM_SEED}/scratch")
        for name in scratch:
            value = rng.getrandbits(32)
            await self.write(name, value)
            assert await self.read(name) == value, f"{name} did not keep {value:#x}"
            await self.write(name, 0)
