"""The ParallelWaveGAN top (:mod:`wavefabric.boards.pwg_top`) driven by cocotbext-axi's bus models on its exported
Verilog.

The overlay driver's own calls (:class:`~wavefabric.boards.driver.PWGOverlay`: the load and job streams of
:func:`~wavefabric.boards.pwg_top.load_stream` / :func:`~wavefabric.boards.pwg_top.job_stream`, the noise and
the mel's padding of the model) run on a backend of library models instead of the project's ``sim/axi.py``:
AxiLiteMaster on ``s_axi_ctrl``, AxiStreamSource on ``s_axis``, AxiStreamSink on ``m_axis``, and one AxiRam
(reads and writes) per DDR manager, ``m_axi_x`` and ``m_axi_skip``, each holding its scratch buffer at a seeded
4 KiB-aligned address. Two mels are vocoded, the second with seeded random pauses on every channel, the RAMs'
included: the PCM must equal :meth:`~wavefabric.model.pwg.PWGFixed.inference` bit for bit, and CYCLES be at least
the engine's cycle model with the activations on chip (:func:`~wavefabric.model.perf.pwg_engine_cycles`; the DDR
only adds), and below 1.5 times it without stalls.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from axi_bench import Bench, quiet, within
from cocotb.task import bridge, resume
from cocotbext.axi import AxiBus, AxiRam, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from wavefabric.boards.driver import PWGOverlay, _pwg_pcm
from wavefabric.boards.pwg_top import config_from_register_map
from wavefabric.model.perf import pwg_engine_cycles
from wavefabric.model.pwg import PWGFixed, from_state_dict, pcm16, random_state_dict

#: Bytes of each RAM model (a scratch buffer is placed at a seeded aligned address inside it).
RAM_BYTES = 1 << 18
#: The mels: frames (each one VOCODE job, at most the build's max_frames), noise seed, whether every channel stalls.
MELS = ((5, 3, False), (4, 7, True))
#: Clock cycles within which a job's streams must have moved.
STREAM_CYCLES = 50_000


def _format(pair: list[int]) -> int:
    return pair[0] | pair[1] << 8


class BusBackend:
    """:class:`PWGOverlay`'s backend (``load``, ``vocode``) on cocotbext-axi's models; its methods are called from a
    cocotb bridge thread and run in simulated time."""

    def __init__(self, bench: Bench, config):
        dut, regmap = bench.dut, bench.regmap
        self.bench, self.config = bench, config
        clock_reset = dut.aclk, dut.aresetn
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), *clock_reset, reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), *clock_reset, reset_active_level=False)
        self.rams = {name: AxiRam(AxiBus.from_prefix(dut, f"m_axi_{name}"), *clock_reset, reset_active_level=False,
                                  size=RAM_BYTES) for name in ("x", "skip")}
        quiet(self.source, self.sink, *self.rams.values())
        align = regmap["ddr"]["align"]
        rng = random.Random(f"{cocotb.RANDOM_SEED}/ddr")
        self.addresses = {name: align * rng.randrange((RAM_BYTES - regmap["ddr"][f"{name}_bytes"]) // align)
                          for name in self.rams}

    def stall(self, on: bool) -> None:
        channels = {"s_axis": self.source, "m_axis": self.sink}
        for name, ram in self.rams.items():
            write, read = ram.write_if, ram.read_if
            channels |= {f"{name}_aw": write.aw_channel, f"{name}_w": write.w_channel, f"{name}_b": write.b_channel,
                         f"{name}_ar": read.ar_channel, f"{name}_r": read.r_channel}
        self.bench.stall(on, **channels)

    async def _job(self, stream: np.ndarray, beats: int, lanes: int) -> np.ndarray:
        """``stream`` on ``s_axis`` as one frame, ap_start, ``beats`` beats of int16 ``lanes`` wide from
        ``m_axis`` (TLAST on exactly the last), polls of CTRL until ap_done; STATUS must be 0."""
        await self.source.send(AxiStreamFrame(stream.tobytes()))
        await self.bench.start_job()
        received = np.zeros((0, lanes), dtype="<i2")
        if beats:
            data = bytes((await within(self.sink.recv(), STREAM_CYCLES, "m_axis")).tdata)
            assert len(data) == 2 * lanes * beats, \
                f"m_axis: a frame of {len(data)} bytes, not {beats} beats: TLAST not on the job's last beat"
            received = np.frombuffer(data, dtype="<i2").reshape(beats, lanes)
        await within(self.source.wait(), STREAM_CYCLES, "s_axis")
        await self.bench.poll_done()
        status = await self.bench.read("STATUS")
        assert status == 0, f"STATUS {status:#x}"
        return received

    @resume
    async def load(self, stream: np.ndarray) -> None:
        for name, address in self.addresses.items():
            await self.bench.write(f"{name.upper()}_ADDR", address)
        await self.bench.write("MODE", self.bench.regmap["modes"]["LOAD"])
        await self._job(stream, 0, 0)

    @resume
    async def vocode(self, jobs: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int, int]]:
        """VOCODE jobs of ``(stream, frames)``; each one's PCM, CYCLES and SATURATION flags."""
        config, bench = self.config, self.bench
        lanes = config.s2mm_width // 16
        names = [name for name in bench.regmap["registers"] if name.startswith("SATURATION_")]
        results = []
        for stream, frames in jobs:
            await bench.write("MODE", bench.regmap["modes"]["VOCODE"])
            await bench.write("FRAMES", frames)
            beats = frames * config.network.hop_size // config.cols * config.network.out_channels
            received = await self._job(stream, beats, lanes)
            saturation = 0
            for k, name in enumerate(names):
                saturation |= await bench.read(name) << 32 * k
            results.append((_pwg_pcm(config, received, frames), await bench.read("CYCLES"), saturation))
        return results


class BusOverlay(PWGOverlay):
    """The PWG overlay's calls over :class:`BusBackend`."""

    def __init__(self, regmap: dict, backend: BusBackend):
        super().__init__(regmap, backend="sim")
        self._backend = backend


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def registers(dut):
    """The configuration registers against the JSON's configuration; responses and read-only registers."""
    bench = await Bench.start(dut)
    regmap = bench.regmap
    cfg, ddr = regmap["config"], regmap["ddr"]
    names = ("in_channels", "out_channels", "kernel_size", "layers", "stacks", "residual_channels", "gate_channels",
             "skip_channels", "aux_channels", "aux_context_window", "rows", "cols", "gate_lanes", "max_frames",
             "sample_rate")
    expected = {name.upper(): cfg[name] for name in names}
    expected |= {"CONFIG_ID": regmap["config_id"], "N_SCALES": len(cfg["upsample_scales"]),
                 "HOP_SIZE": int(np.prod(cfg["upsample_scales"])), "TABLE_BITS": cfg["numerics"]["table_bits"],
                 "S_AXIS_WIDTH": regmap["streams"]["s_axis"]["tdata_width"],
                 "M_AXIS_WIDTH": regmap["streams"]["m_axis"]["tdata_width"],
                 "X_BYTES": ddr["x_bytes"], "SKIP_BYTES": ddr["skip_bytes"]}
    expected |= {f"{name.upper()}_FORMAT": _format(cfg["numerics"][name]) for name in ("act", "weight", "gate")}
    expected |= {f"UPSAMPLE_SCALE_{k}": scale for k, scale in enumerate(cfg["upsample_scales"])}
    await bench.check_registers(expected, scratch=["X_ADDR", "SKIP_ADDR"])


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def load_and_vocode(dut):
    """A LOAD job, then :data:`MELS` vocoded: bit-exact PCM, CYCLES against the engine's cycle model."""
    seed = cocotb.RANDOM_SEED
    bench = await Bench.start(dut)
    config = config_from_register_map(bench.regmap)
    net = config.network
    state = random_state_dict(net, seed)
    model = PWGFixed(from_state_dict(net, state))
    backend = BusBackend(bench, config)
    overlay = BusOverlay(bench.regmap, backend)
    backend.stall(True)
    await bridge(overlay.load)(state)
    rng = np.random.default_rng(seed)
    for frames, noise_seed, stalled in MELS:
        backend.stall(stalled)
        mel = rng.standard_normal((frames, net.aux_channels))
        pcm = await bridge(overlay.vocode)(mel, noise_seed)
        act = net.numerics.act
        expected = pcm16(act.quantize(model.inference(mel, noise_seed)), act)[:, 0]
        job = f"a mel of {frames} frames (noise seed {noise_seed}, stalls {stalled})"
        assert np.array_equal(pcm, expected), f"{job}: PCM differs from the model from sample " \
                                              f"{np.flatnonzero(pcm != expected)[:1]}"
        (cycles,) = overlay.cycles
        floor = pwg_engine_cycles(net, config.rows, config.cols, frames, config.gate_lanes)
        assert cycles >= floor, f"{job}: CYCLES {cycles} < {floor} of the cycle model with the activations on chip"
        if not stalled:
            assert cycles < 1.5 * floor, f"{job}: CYCLES {cycles}, 1.5 times the cycle model's {floor} or more"
        dut._log.info("%s: bit-exact, CYCLES %d (cycle model on chip %d)", job, cycles, floor)
