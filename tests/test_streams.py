# amaranth: UnusedElaboratable=no
"""run_streams: the stall rules on a one-register pipeline (cycle stamps, gaps, ready masks), traces, and beyond
plain streams, on both backends cycle for cycle: the AXI4 memory's reads and writes (bursts, latencies, strobes,
stalls, faults, final contents) and plain inputs that change during a run."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from wavefabric.rtl.axi import (
    read_address_layout,
    read_data_layout,
    write_address_layout,
    write_data_layout,
    write_response_layout,
)
from wavefabric.sim.streams import (
    VCD_ENV,
    AxiMemory,
    AxiReadMemory,
    burst_fault,
    run_streams,
    stall_patterns,
    to_python,
    vcd_hint,
)

BACKENDS = ("amaranth", "verilator")
WORD = data.StructLayout({"data": 64, "last": 1})
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


def test_full_rate_cycle_stamps():
    run = run_streams(Register(), {"i": beats(5)}, {"o": 5}, name="stream_register")
    assert run.outputs["o"] == beats(5)
    assert run.times["i"].tolist() == [0, 1, 2, 3, 4] and run.times["o"].tolist() == [1, 2, 3, 4, 5]
    assert run.cycles == 6


@pytest.mark.parametrize("seed, p_valid, p_ready", [(1, 0.5, 1.0), (2, 0.5, 0.5), (3, 0.8, 0.3)])
def test_stalls_follow_the_rules(seed, p_valid, p_ready):
    name = f"stream_register_{seed}"
    run = run_streams(Register(), {"i": beats(40)}, {"o": 40}, seed=seed, p_valid=p_valid, p_ready=p_ready,
                      name=name)
    gaps, masks = stall_patterns(seed, {"i": 40}, ["o"], p_valid, p_ready, 1_000_000)
    where = f"seed {seed}; {vcd_hint(name)}"
    assert run.outputs["o"] == beats(40), where
    t_in, t_out = run.times["i"], run.times["o"]
    due = np.concatenate([[0], t_in[:-1] + 1]) + gaps["i"]  # gaps count from the cycle after a transfer
    if p_ready == 1:
        assert np.array_equal(t_in, due), where  # the register always takes a beat at once
        assert np.array_equal(t_out, t_in + 1), where
    else:
        assert np.all(t_in >= due) and np.all(masks["o"][t_out]), where  # ready only where the mask is high
        assert np.all(t_out > t_in), where
    assert (run.cycles > 41) == (gaps["i"].any() or p_ready < 1)  # the stalls cost cycles


def test_vcd_written_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(VCD_ENV, str(tmp_path / "traces"))
    run_streams(Register(), {"i": beats(2)}, {"o": 2}, name="stream_register")
    assert (tmp_path / "traces" / "stream_register.vcd").stat().st_size > 0
    assert VCD_ENV in vcd_hint("x")


def test_to_python():
    const = LAYOUT.const({"data": [3, -4], "first": 1, "last": 0})
    assert to_python(const) == {"data": [3, -4], "first": 1, "last": 0}
    assert to_python(7) == 7


class BurstReader(wiring.Component):
    """Reads the bursts asked for on ``req`` (at ``addr + offset``) and streams out every word with its ``last``.

    ``ar`` follows ``req`` combinationally; ``r`` goes through one register to ``o``. ``error`` is sticky on a
    response other than OKAY.
    """

    req: In(stream.Signature(read_address_layout()))
    ar: Out(stream.Signature(read_address_layout()))
    r: In(stream.Signature(read_data_layout(64)))
    o: Out(stream.Signature(WORD))
    offset: In(32)
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.ar.valid.eq(self.req.valid), self.req.ready.eq(self.ar.ready),
                     self.ar.payload.addr.eq(self.req.payload.addr + self.offset),
                     self.ar.payload.len.eq(self.req.payload.len),
                     self.r.ready.eq(~self.o.valid | self.o.ready)]
        with m.If(self.r.valid & self.r.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(self.r.payload.data),
                         self.o.payload.last.eq(self.r.payload.last)]
            with m.If(self.r.payload.resp != 0):
                m.d.sync += self.error.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def bursts(rng: np.random.Generator, count: int, size: int) -> list[dict]:
    """Random bursts of 1 to 16 beats inside ``size`` bytes that keep the rules (aligned, inside a 4 KiB page)."""
    out = []
    while len(out) < count:
        length, addr = int(rng.integers(0, 16)), 8 * int(rng.integers(0, size // 8))
        if burst_fault(addr, length, 8, size) is None:
            out.append({"addr": addr, "len": length})
    return out


def expected_words(image: bytes, requests: list[dict], offsets: list[int]) -> list[dict]:
    words = np.frombuffer(image, dtype="<u8")
    return [{"data": int(words[(r["addr"] + off) // 8 + b]), "last": int(b == r["len"])}
            for r, off in zip(requests, offsets, strict=True) for b in range(r["len"] + 1)]


def read_run(seed: int, p: float, latency: int, backend: str, count: int = 12, changes: bool = False):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, 16384, dtype=np.uint8).tobytes()
    requests = bursts(rng, count, 8192)
    offsets = [0] * count
    change = {}
    if changes:  # from request 5 on, the engine reads 8 KiB further on
        offsets[5:] = [8192] * (count - 5)
        change = {"offset": [("req", 5, 8192)]}
    memory = AxiReadMemory(image, latency=latency, p_ar_ready=p, p_r_valid=p)
    words = expected_words(image, requests, offsets)
    run = run_streams(BurstReader(), {"req": requests}, {"o": len(words)}, seed=seed, p_valid=p, p_ready=p,
                      changes=change, memories={"ddr": memory}, tail=2, backend=backend, name=f"reader_{seed}")
    return run, requests, words


@pytest.mark.parametrize("seed, p, latency", [(1, 1.0, 40), (2, 0.6, 7), (3, 0.3, 1)])
def test_memory_serves_bursts_alike_on_both_backends(seed, p, latency):
    runs = [read_run(seed, p, latency, backend) for backend in BACKENDS]
    (run, requests, words), _ = runs
    where = f"seed {seed}; {vcd_hint(f'reader_{seed}')}"
    assert not runs[0][0].differences(runs[1][0])
    assert run.outputs["o"] == words, where
    assert run.flags == {"error": 0}, where
    reads = run.memories["ddr"]
    assert reads.addresses.tolist() == [r["addr"] for r in requests]
    assert reads.lengths.tolist() == [r["len"] for r in requests]
    assert reads.bytes_read == 8 * len(words) and len(reads.r_times) == len(words)
    first = np.cumsum([0] + [r["len"] + 1 for r in requests[:-1]])
    waited = reads.r_times[first] - reads.ar_times
    assert waited.min() >= latency, where
    if p == 1:
        # No stalls: the first burst's data comes exactly after the latency, every later beat right after.
        assert waited[0] == latency and np.all(np.diff(reads.r_times) == 1), where
        assert np.array_equal(reads.ar_times, np.arange(len(requests))), where


def test_plain_input_changes_with_a_beat_on_both_backends():
    runs = [read_run(4, 0.5, 5, backend, count=9, changes=True) for backend in BACKENDS]
    assert not runs[0][0].differences(runs[1][0])
    run, requests, words = runs[0]
    assert run.outputs["o"] == words, f"seed 4; {vcd_hint('reader_4')}"
    assert run.memories["ddr"].addresses.tolist() == [r["addr"] + 8192 * (i >= 5) for i, r in enumerate(requests)]


@pytest.mark.parametrize("request_, fault", [({"addr": 4, "len": 0}, "multiple of 8"),
                                             ({"addr": 4096 - 8, "len": 1}, "crosses a 4 KiB"),
                                             ({"addr": 1024, "len": 0}, "beyond the memory's 1024 bytes")])
def test_a_burst_that_breaks_the_rules_stops_the_run(request_, fault):
    requests = [{"addr": 0, "len": 3}, request_]
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=f"'ddr' \\({backend}\\): the burst accepted in cycle 1 .*{fault}"):
            run_streams(BurstReader(), {"req": requests}, {"o": 5},
                        memories={"ddr": AxiReadMemory(bytes(1024 if "beyond" in fault else 8192), latency=3)},
                        backend=backend)


def test_reads_in_flight_at_the_end_are_dropped():
    requests = [{"addr": 0, "len": 1}, {"addr": 64, "len": 3}]
    for backend in BACKENDS:
        run = run_streams(BurstReader(), {"req": requests}, {"o": 2}, memories={"ddr": AxiReadMemory(bytes(128))},
                          backend=backend)
        reads = run.memories["ddr"]
        # The second burst's first beat goes in the last cycle; its other three never do.
        assert reads.ar_times.tolist() == [0, 1] and reads.r_times.tolist() == [40, 41, 42] and run.cycles == 43


def test_memory_arguments_are_checked():
    reader = BurstReader()
    cases = [({"memories": {"m": AxiReadMemory(b"", ar="o")}}, "its own streams"),
             ({"memories": {"m": AxiReadMemory(b"", ar="req")}}, "not output streams"),
             ({"memories": {"m": AxiReadMemory(b"", latency=0)}}, "latency"),
             ({"memories": {"m": AxiReadMemory(b"", p_r_valid=0)}}, "p_r_valid"),
             ({"memories": {"m": AxiReadMemory(np.zeros(4, np.int32))}}, "uint8"),
             ({"memories": {"m": AxiReadMemory(b""), "n": AxiReadMemory(b"")}}, "its own streams"),
             ({"changes": {"error": [("req", 0, 1)]}}, "not a plain input"),
             ({"changes": {"offset": [("req", 1, 1)]}}, "beat 1 of 'req'")]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            run_streams(reader, {"req": [{"addr": 0, "len": 0}]}, {"o": 1}, **kwargs)


def test_a_change_takes_one_cycle_and_waits_may_wait_for_outputs():
    # Request 1 waits for the first burst's two words to leave on o and changes the offset, so it is offered a
    # cycle after it is due; request 2 follows at once.
    requests = [{"addr": 0, "len": 1}, {"addr": 0, "len": 0}, {"addr": 8, "len": 0}]
    image = np.arange(64, dtype=np.uint8).tobytes()
    runs = [run_streams(BurstReader(), {"req": requests}, {"o": 4}, waits={"req": [(1, "o", 2)]},
                        changes={"offset": [("req", 1, 16)]}, memories={"ddr": AxiReadMemory(image, latency=3)},
                        backend=backend) for backend in BACKENDS]
    assert not runs[0].differences(runs[1])
    run = runs[0]
    # req 0 in cycle 0; its words at 3, 4 on r and 4, 5 on o; req 1 due in 6, offset set in 6, offered in 7.
    assert run.times["req"].tolist() == [0, 7, 8] and run.times["o"].tolist() == [4, 5, 11, 12]
    assert run.memories["ddr"].addresses.tolist() == [0, 16, 24]
    assert run.outputs["o"] == expected_words(image, requests, [0, 16, 16])


class BurstWriter(wiring.Component):
    """Passes ``req`` to ``aw`` and ``data`` to ``w`` as they come, and every B response through a register to ``o``."""

    req: In(stream.Signature(write_address_layout()))
    data: In(stream.Signature(write_data_layout(64)))
    aw: Out(stream.Signature(write_address_layout()))
    w: Out(stream.Signature(write_data_layout(64)))
    b: In(stream.Signature(write_response_layout()))
    o: Out(stream.Signature(write_response_layout()))

    def elaborate(self, platform):
        m = Module()
        for source, sink in ((self.req, self.aw), (self.data, self.w)):
            m.d.comb += [sink.valid.eq(source.valid), source.ready.eq(sink.ready), sink.payload.eq(source.payload)]
        m.d.comb += self.b.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.b.valid & self.b.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.b.payload)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


WRITER_MEMORY = dict(ar=None, r=None, aw="aw", w="w", b="b")


def write_beats(rng: np.random.Generator, requests: list[dict]) -> list[dict]:
    """Random data and strobes for every beat of ``requests``, ``last`` on each burst's final beat."""
    return [{"data": int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)), "strb": int(rng.integers(0, 256)),
             "last": int(b == r["len"])} for r in requests for b in range(r["len"] + 1)]


def written(image: bytes, requests: list[dict], beats: list[dict]) -> np.ndarray:
    """``image`` after ``beats`` are written by ``requests`` in order, each byte where its strobe is set."""
    out = np.frombuffer(image, dtype=np.uint8).copy()
    addresses = [r["addr"] + 8 * b for r in requests for b in range(r["len"] + 1)]
    for addr, beat in zip(addresses, beats, strict=True):
        for n in range(8):
            if beat["strb"] >> n & 1:
                out[addr + n] = beat["data"] >> 8 * n & 0xFF
    return out


@pytest.mark.parametrize("seed, p, write_latency", [(1, 1.0, 40), (2, 0.6, 5), (3, 0.3, 1)])
def test_memory_serves_writes_alike_on_both_backends(seed, p, write_latency):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()
    requests = bursts(rng, 10, 8192)
    beats = write_beats(rng, requests)
    memory = AxiMemory(image, **WRITER_MEMORY, write_latency=write_latency, p_aw_ready=p, p_w_ready=p, p_b_valid=p)
    runs = [run_streams(BurstWriter(), {"req": requests, "data": beats}, {"o": len(requests)}, seed=seed,
                        p_valid=p, p_ready=p, memories={"ddr": memory}, backend=backend, name=f"writer_{seed}")
            for backend in BACKENDS]
    assert not runs[0].differences(runs[1])
    run, where = runs[0], f"seed {seed}; {vcd_hint(f'writer_{seed}')}"
    traffic = run.memories["ddr"]
    assert np.array_equal(traffic.contents, written(image, requests, beats)), where
    assert image == bytes(np.frombuffer(image, dtype=np.uint8)), "the image given is left alone"
    assert traffic.write_addresses.tolist() == [r["addr"] for r in requests], where
    assert traffic.write_lengths.tolist() == [r["len"] for r in requests], where
    assert traffic.bytes_written == 8 * len(beats) and len(traffic.ar_times) == 0 == traffic.bytes_read
    ends = np.cumsum([r["len"] + 1 for r in requests]) - 1
    starts = ends - [r["len"] for r in requests]
    assert np.all(traffic.w_times[starts] > traffic.aw_times), where  # W only for a burst whose AW came before
    waited = traffic.b_times - traffic.w_times[ends]
    assert waited.min() >= write_latency and np.all(np.diff(traffic.b_times) > 0), where
    assert run.outputs["o"] == [{"resp": 0}] * len(requests), where
    if p == 1:
        assert np.all(waited == write_latency) and np.array_equal(traffic.aw_times, np.arange(len(requests)))
        assert traffic.w_times.tolist() == list(range(1, len(beats) + 1)), where


@pytest.mark.parametrize("requests, beats, fault", [
    ([{"addr": 4096 - 8, "len": 1}], 2, "write burst accepted in cycle 0 .* crosses a 4 KiB"),
    ([{"addr": 8188, "len": 0}], 1, "write burst accepted in cycle 0 .* multiple of 8"),
    ([{"addr": 8192, "len": 0}], 1, "write burst accepted in cycle 0 .* beyond the memory's 8192 bytes"),
    ([{"addr": 64, "len": 2}], [0, 1, 0], r"W beat 1 \(cycle 2\) of the write burst accepted in cycle 0 "
                                          r"\(addr 0x40, len 2\) has last = 1: the burst has 3 beats"),
    ([{"addr": 0, "len": 0}, {"addr": 64, "len": 1}], [1, 0, 0], r"W beat 1 \(cycle 3\) of the write burst "
                                                                 r"accepted in cycle 1 .* has last = 0"),
])
def test_a_write_that_breaks_the_rules_stops_the_run(requests, beats, fault):
    lasts = beats if isinstance(beats, list) else [int(b == beats - 1) for b in range(beats)]
    data_beats = [{"data": n, "strb": 255, "last": last} for n, last in enumerate(lasts)]
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=f"'ddr' \\({backend}\\): .*{fault}"):
            run_streams(BurstWriter(), {"req": requests, "data": data_beats}, {"o": len(requests)},
                        memories={"ddr": AxiMemory(bytes(8192), **WRITER_MEMORY, write_latency=3)},
                        backend=backend)


def test_write_memory_arguments_are_checked():
    writer = BurstWriter()
    stim = {"req": [{"addr": 0, "len": 0}], "data": [{"data": 0, "strb": 0, "last": 1}]}
    cases = [(AxiMemory(b"", ar=None, r=None), "serves no streams"),
             (AxiMemory(b"", ar=None, r=None, aw="aw", w="w"), "all of aw, w and b"),
             (AxiMemory(b"", aw="aw", w="w", b="b"), "not input streams"),
             (AxiMemory(b"", **WRITER_MEMORY, write_latency=0), "write_latency"),
             (AxiMemory(b"", **WRITER_MEMORY, p_b_valid=1.5), "p_b_valid"),
             (AxiMemory(b"", ar=None, r=None, aw="w", w="aw", b="b"), "payload of 'w' has no field 'addr'")]
    for memory, match in cases:
        with pytest.raises(ValueError, match=match):
            run_streams(writer, stim, {"o": 1}, memories={"m": memory})


def test_differences_name_what_differs():
    run, other = read_run(1, 1.0, 40, "amaranth")[0], read_run(2, 0.6, 7, "amaranth")[0]
    assert run.differences(run) == []
    assert {"outputs", "cycles", "transfer cycles of req", "ddr.r_times", "ddr.contents"} <= set(run.differences(other))
    changed = replace(run, memories={"ddr": replace(run.memories["ddr"], contents=run.memories["ddr"].contents ^ 1)})
    assert run.differences(changed) == ["ddr.contents"]
