# amaranth: UnusedElaboratable=no
"""sim.stream helpers on a one-register pipeline: order, stalls, cycle stamps, timeouts, traces."""

import random

import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from wavefabric.sim.stream import VCD_ENV, run_simulation, stream_get, stream_put, to_python, vcd_hint

LAYOUT = data.StructLayout({"data": data.ArrayLayout(signed(8), 2), "first": 1, "last": 1})


class Register(wiring.Component):
    """A stream register stage: full throughput, one cycle of latency."""

    i: In(stream.Signature(LAYOUT))
    o: Out(stream.Signature(LAYOUT))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def beats(n):
    return [{"data": [v, -v], "first": v == 0, "last": v == n - 1} for v in range(n)]


def run(payloads, **kwargs):
    dut = Register()
    got = {}

    async def put(ctx):
        got["in"] = await stream_put(ctx, dut.i, payloads, **kwargs.get("put", {}))

    async def get(ctx):
        got["out"], got["out_times"] = await stream_get(ctx, dut.o, len(payloads), **kwargs.get("get", {}))

    run_simulation(dut, [put, get], name="stream_register")
    return got


def test_full_rate_cycle_stamps():
    got = run(beats(5))
    assert got["out"] == beats(5)
    assert got["in"] == [0, 1, 2, 3, 4]
    assert got["out_times"] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stalls_keep_order(seed):
    got = run(beats(40), put={"rng": random.Random(seed), "p_valid": 0.5},
              get={"rng": random.Random(seed + 100), "p_ready": 0.5})
    assert got["out"] == beats(40), f"seed {seed}; {vcd_hint('stream_register')}"
    assert got["out_times"][-1] > 40  # the stalls cost cycles
    assert all(t_out > t_in for t_in, t_out in zip(got["in"], got["out_times"], strict=True))


def test_timeouts():
    with pytest.raises(TimeoutError, match="beat 1 not taken"):
        run(beats(3), put={"timeout": 4}, get={"rng": random.Random(0), "p_ready": 0.0})
    with pytest.raises(TimeoutError, match="0 of 3 beats"):
        run(beats(3), put={"rng": random.Random(0), "p_valid": 0.0, "timeout": 10}, get={"timeout": 10})


def test_vcd_written_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(VCD_ENV, str(tmp_path / "traces"))
    run(beats(2))
    assert (tmp_path / "traces" / "stream_register.vcd").stat().st_size > 0
    assert VCD_ENV in vcd_hint("x")


def test_to_python():
    const = LAYOUT.const({"data": [3, -4], "first": 1, "last": 0})
    assert to_python(const) == {"data": [3, -4], "first": 1, "last": 0}
    assert to_python(7) == 7
