"""The GRU top (:mod:`wavefabric.boards.top`) driven by cocotbext-axi's bus models on its exported Verilog.

The driver's own high-level calls (:class:`~wavefabric.boards.driver.GruApi`: the register map, the packing of
weights, biases, states and steps into beats) run on a backend of library masters instead of the project's
``sim/axi.py``: AxiLiteMaster on ``s_axi_ctrl``, AxiStreamSource on ``s_axis``, AxiStreamSink on ``m_axis``, with
seeded random pauses on every channel in some calls. The outputs must equal the fixed-point model bit for bit;
CYCLES after each call must equal what the project's own simulated twin (:class:`~wavefabric.boards.driver.GruDriver`
on Amaranth's simulator, no stalls) reads, and be no smaller where the bus stalled.
"""

from __future__ import annotations

import cocotb
import numpy as np
from axi_bench import Bench, format_word, load_regmap, quiet, within
from cocotb.task import bridge, resume
from cocotbext.axi import AxiResp, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from wavefabric.boards.driver import GruApi, GruDriver
from wavefabric.boards.top import config_from_register_map
from wavefabric.sim.gru import gru_reference, random_gru_params

#: Steps of the first STEPS job (the state is reloaded before the rest).
SPLIT = 3
#: The session's calls, and whether the buses stall (random pauses on every channel) during each.
CALLS = ("load_weights", "reset_state(h0)", "run_steps(xs[:3])", "reset_state(h1)", "run_steps(xs[3:])")
STALLED = (True, False, False, True, True)
#: Clock cycles within which a job's streams must have moved (the longest job, the weights, takes a few hundred).
STREAM_CYCLES = 20_000


def problem(config, seed: int):
    """Random integer parameters, two states and five input vectors, seeded."""
    rng = np.random.default_rng(seed)
    num = config.num
    params = random_gru_params(config.input_size, config.hidden, config.layers, num, rng)
    h0, h1 = (num.act.quantize(rng.uniform(-1, 1, (config.layers, config.hidden))) for _ in range(2))
    xs = num.act.quantize(rng.uniform(-1, 1, (5, config.input_size)))
    return params, h0, h1, xs


def session(gru: GruApi, params, h0, h1, xs, stall) -> tuple[np.ndarray, list[int]]:
    """:data:`CALLS` on ``gru``, ``stall(on)`` before each; the outputs of the two STEPS jobs and CYCLES after each
    call (blocking: on the bus backend it runs in a cocotb bridge thread)."""
    outputs, cycles = [], []
    calls = [lambda: gru.load_weights(params), lambda: gru.reset_state(h0),
             lambda: outputs.append(gru.run_steps(xs[:SPLIT])), lambda: gru.reset_state(h1),
             lambda: outputs.append(gru.run_steps(xs[SPLIT:]))]
    for call, stalled in zip(calls, STALLED, strict=True):
        stall(stalled)
        call()
        cycles.append(gru.cycles)
    return np.concatenate(outputs), cycles


class BusBackend:
    """:class:`GruApi`'s backend (``write``, ``read``, ``stream``) on cocotbext-axi's masters.

    Its methods are called from a cocotb bridge thread and each runs in simulated time (``cocotb.task.resume``).
    """

    def __init__(self, bench: Bench):
        dut = bench.dut
        self.bench = bench
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, dut.aresetn,
                                      reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        quiet(self.source, self.sink)

    def stall(self, on: bool) -> None:
        self.bench.stall(on, s_axis=self.source, m_axis=self.sink)

    @resume
    async def write(self, offset: int, value: int) -> None:
        resp = await self.bench.write_at(offset, value)
        assert resp == AxiResp.OKAY, f"write of {value:#x} to {offset:#x}: response {resp!r}"

    @resume
    async def read(self, offset: int) -> int:
        value, resp = await self.bench.read_at(offset)
        assert resp == AxiResp.OKAY, f"read of {offset:#x}: response {resp!r}"
        return value

    @resume
    async def stream(self, rows: np.ndarray, recv_beats: int, ctrl_offset: int) -> np.ndarray:
        """The job: ``rows`` on ``s_axis`` as one frame (TLAST on the last beat), ap_start, ``recv_beats`` beats
        from ``m_axis`` as one frame (TLAST on exactly its last beat), then polls of CTRL until ap_done."""
        await self.source.send(AxiStreamFrame(rows.tobytes()))  # queued: TVALID before the job starts
        assert await self.bench.write_at(ctrl_offset, 1) == AxiResp.OKAY, "write of ap_start"
        received = np.zeros((0, rows.shape[1]), dtype=rows.dtype)
        if recv_beats:
            data = bytes((await within(self.sink.recv(), STREAM_CYCLES, "m_axis")).tdata)
            assert len(data) == recv_beats * rows[0].nbytes, \
                f"m_axis: a frame of {len(data)} bytes, not {recv_beats} beats: TLAST not on the job's last beat"
            received = np.frombuffer(data, dtype=rows.dtype).reshape(recv_beats, rows.shape[1])
        await within(self.source.wait(), STREAM_CYCLES, "s_axis")
        await self.bench.poll_done()
        return received


class BusGru(GruApi):
    """The GRU driver's calls over :class:`BusBackend`."""

    def __init__(self, regmap: dict, backend: BusBackend):
        self._bind(regmap, backend)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def registers(dut):
    """The configuration registers against the JSON's configuration; responses and read-only registers."""
    bench = await Bench.start(dut)
    regmap = bench.regmap
    cfg = regmap["config"]
    expected = {"INPUT_SIZE": cfg["input_size"], "HIDDEN": cfg["hidden"], "LAYERS": cfg["layers"],
                "LANES": cfg["lanes"], "SIMD": cfg["simd"], "ACT_FORMAT": format_word(cfg["num"]["act"]),
                "WEIGHT_FORMAT": format_word(cfg["num"]["weight"]), "TDATA_WIDTH": regmap["stream"]["tdata_width"]}
    await bench.check_registers(expected, scratch=["STEPS"])


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def weights_state_steps(dut):
    """A weight load, two states and five steps: bit-exact with the model, CYCLES as the project's twin counts."""
    regmap = load_regmap()
    config = config_from_register_map(regmap)
    params, h0, h1, xs = problem(config, cocotb.RANDOM_SEED)
    expected, _ = gru_reference(params, h0, xs, config.num, resets={SPLIT: h1})
    with GruDriver(regmap, backend="sim") as twin:
        twin_out, twin_cycles = session(twin, params, h0, h1, xs, lambda on: None)
    assert np.array_equal(twin_out, expected), "the project's twin disagrees with the model"

    bench = await Bench.start(dut)
    backend = BusBackend(bench)
    out, cycles = await bridge(session)(BusGru(regmap, backend), params, h0, h1, xs, backend.stall)
    assert np.array_equal(out, expected), f"h' differs from the model:\n{out}\nexpected\n{expected}"
    for call, stalled, got, want in zip(CALLS, STALLED, cycles, twin_cycles, strict=True):
        if stalled:
            assert got >= want, f"{call} with stalls: CYCLES {got} < {want} of the twin without"
        else:
            assert got == want, f"{call}: CYCLES {got}, the twin {want}"
    dut._log.info("CYCLES after each call %s (twin %s)", cycles, twin_cycles)
