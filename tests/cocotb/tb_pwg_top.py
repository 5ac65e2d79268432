"""The ParallelWaveGAN top (:mod:`wavefabric.boards.pwg_top`) driven by cocotbext-axi's bus models on its exported
Verilog.

AxiLiteMaster on ``s_axi_ctrl``, AxiStreamSource on ``s_axis`` (the LOAD job's and each VOCODE job's frames, from
the project's :func:`~wavefabric.boards.pwg_top.load_stream` and :func:`~wavefabric.boards.pwg_top.job_stream`
of the model's own job inputs, :meth:`~wavefabric.model.pwg.PWGFixed.job`), AxiStreamSink on ``m_axis`` (the
PCM), and one AxiRam (reads and writes) per DDR manager, ``m_axi_x`` and ``m_axi_skip``, each holding its scratch
buffer at a seeded 4 KiB-aligned address. Two mels are vocoded, one job each, the second with seeded random
pauses on every channel, the RAMs' included: the PCM must equal :meth:`~wavefabric.model.pwg.PWGFixed.inference`
bit for bit, and CYCLES be at least the engine's cycle model with the activations on chip
(:func:`~wavefabric.model.perf.pwg_engine_cycles`; the DDR only adds), and below 1.5 times it without stalls.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from axi_bench import Bench, format_word, quiet, within
from cocotbext.axi import AxiBus, AxiRam, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from wavefabric.boards.driver import _pwg_pcm
from wavefabric.boards.pwg_top import config_from_register_map, job_stream, load_stream
from wavefabric.model.perf import pwg_engine_cycles
from wavefabric.model.pwg import PWGFixed, from_state_dict, pcm16, random_state_dict

#: Bytes of each RAM model (a scratch buffer is placed at a seeded aligned address inside it).
RAM_BYTES = 1 << 18
#: The mels: frames (one VOCODE job each, at most the build's max_frames), noise seed, whether every channel stalls.
MELS = ((5, 3, False), (4, 7, True))
#: Clock cycles within which a job's streams must have moved.
STREAM_CYCLES = 50_000


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
    expected |= {f"{name.upper()}_FORMAT": format_word(cfg["numerics"][name]) for name in ("act", "weight", "gate")}
    expected |= {f"UPSAMPLE_SCALE_{k}": scale for k, scale in enumerate(cfg["upsample_scales"])}
    await bench.check_registers(expected, scratch=["X_ADDR", "SKIP_ADDR"])


async def job(bench: Bench, source, sink, stream: np.ndarray, beats: int) -> np.ndarray:
    """``stream`` on ``s_axis`` as one frame, ap_start, ``beats`` beats from ``m_axis`` (rows of int16, TLAST on
    exactly the last), polls of CTRL until ap_done; STATUS must be 0."""
    lanes = bench.regmap["streams"]["m_axis"]["tdata_width"] // 16
    await source.send(AxiStreamFrame(stream.tobytes()))
    await bench.start_job()
    received = np.zeros((0, lanes), dtype="<i2")
    if beats:
        data = bytes((await within(sink.recv(), STREAM_CYCLES, "m_axis")).tdata)
        assert len(data) == 2 * lanes * beats, \
            f"m_axis: a frame of {len(data)} bytes, not {beats} beats: TLAST not on the job's last beat"
        received = np.frombuffer(data, dtype="<i2").reshape(beats, lanes)
    await within(source.wait(), STREAM_CYCLES, "s_axis")
    await bench.poll_done()
    status = await bench.read("STATUS")
    assert status == 0, f"STATUS {status:#x}"
    return received


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def load_and_vocode(dut):
    """A LOAD job, then :data:`MELS` vocoded: bit-exact PCM, CYCLES against the engine's cycle model."""
    seed = cocotb.RANDOM_SEED
    bench = await Bench.start(dut)
    regmap = bench.regmap
    config = config_from_register_map(regmap)
    net = config.network
    model = PWGFixed(from_state_dict(net, random_state_dict(net, seed)))
    clock_reset = dut.aclk, dut.aresetn
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), *clock_reset, reset_active_level=False)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), *clock_reset, reset_active_level=False)
    rams = {name: AxiRam(AxiBus.from_prefix(dut, f"m_axi_{name}"), *clock_reset, reset_active_level=False,
                         size=RAM_BYTES) for name in ("x", "skip")}
    quiet(source, sink, *rams.values())
    channels = {"s_axis": source, "m_axis": sink}
    for name, ram in rams.items():
        write, read = ram.write_if, ram.read_if
        channels |= {f"{name}_aw": write.aw_channel, f"{name}_w": write.w_channel, f"{name}_b": write.b_channel,
                     f"{name}_ar": read.ar_channel, f"{name}_r": read.r_channel}

    align, place = regmap["ddr"]["align"], random.Random(f"{seed}/ddr")
    for name in rams:
        address = align * place.randrange((RAM_BYTES - regmap["ddr"][f"{name}_bytes"]) // align)
        await bench.write(f"{name.upper()}_ADDR", address)
    await bench.write("MODE", regmap["modes"]["LOAD"])
    bench.stall(True, **channels)
    await job(bench, source, sink, load_stream(config, model), 0)

    rng = np.random.default_rng(seed)
    act = net.numerics.act
    for frames, noise_seed, stalled in MELS:
        bench.stall(stalled, **channels)
        mel = rng.standard_normal((frames, net.aux_channels))
        z, padded = model.job(mel, noise_seed)
        await bench.write("MODE", regmap["modes"]["VOCODE"])
        await bench.write("FRAMES", frames)
        beats = frames * net.hop_size // config.cols * net.out_channels
        pcm = _pwg_pcm(config, await job(bench, source, sink, job_stream(config, model, padded, z), beats), frames)
        expected = pcm16(act.quantize(model.inference(mel, noise_seed)), act).T
        name = f"a mel of {frames} frames (noise seed {noise_seed}, stalls {stalled})"
        assert np.array_equal(pcm, expected), f"{name}: PCM differs from the model from sample " \
                                              f"{np.flatnonzero((pcm != expected).any(axis=0))[:1]}"
        cycles = await bench.read("CYCLES")
        floor = pwg_engine_cycles(net, config.rows, config.cols, frames, config.gate_lanes)
        assert cycles >= floor, f"{name}: CYCLES {cycles} < {floor} of the cycle model with the activations on chip"
        if not stalled:
            assert cycles < 1.5 * floor, f"{name}: CYCLES {cycles}, 1.5 times the cycle model's {floor} or more"
        dut._log.info("%s: bit-exact, CYCLES %d (cycle model on chip %d)", name, cycles, floor)
