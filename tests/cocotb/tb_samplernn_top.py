"""The SampleRNN top (:mod:`wavefabric.boards.samplernn_top`) driven by cocotbext-axi's bus models on its exported
Verilog.

AxiLiteMaster on ``s_axi_ctrl``, AxiStreamSource on ``s_axis`` (the LOAD job's frames, from the project's
:func:`~wavefabric.boards.samplernn_top.load_stream`), AxiStreamSink on ``m_axis`` (the samples), and the library's
RAM model, AxiRamRead, serving the AXI4 read manager ``m_axi`` from the MLP input table
(:func:`~wavefabric.sim.samplernn.table_image`) at a seeded 4 KiB-aligned address. ap_done comes by the interrupt
(GIE, IER), acknowledged in ISR. The samples must equal :meth:`~wavefabric.model.samplernn.SampleRNNFixed.generate`
bit for bit (codes, and PCM as :func:`~wavefabric.model.sampler.pcm16` of them); CYCLES of a job without stalls
must equal the cycle model (:func:`~wavefabric.model.perf.samplernn_timing` + ``GENERATE_OVERHEAD``), and be no
smaller in a job with random pauses on every channel, the RAM's included.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from axi_bench import CTRL_DONE, CTRL_IDLE, CTRL_READY, Bench, format_word, quiet, within
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from wavefabric.boards.samplernn_top import GENERATE_OVERHEAD, config_from_register_map, load_stream
from wavefabric.model.perf import samplernn_timing
from wavefabric.model.sampler import pcm16, seed_state, temperature_int
from wavefabric.model.samplernn import SampleRNNFixed, SampleRNNParams, random_state_dict
from wavefabric.sim.samplernn import table_image

#: Bytes of the RAM model behind ``m_axi`` (the table is placed at a seeded aligned address inside it).
RAM_BYTES = 1 << 20
#: GENERATE jobs: samples, sampler seed, temperature, whether every channel stalls.
JOBS = ((120, 5, 1.0, False), (60, 6, 0.8, True))
#: Clock cycles a job may take to raise the interrupt once its input and output have moved.
DONE_CYCLES = 1000


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def registers(dut):
    """The configuration registers against the JSON's configuration; responses and read-only registers."""
    bench = await Bench.start(dut)
    regmap = bench.regmap
    cfg = regmap["config"]
    expected = {"CONFIG_ID": regmap["config_id"], "N_TIERS": len(cfg["frame_sizes"]), "N_RNN": cfg["n_rnn"],
                "DIM": cfg["dim"], "Q_LEVELS": cfg["q_levels"], "WEIGHT_NORM": int(cfg["weight_norm"]),
                "ACT_FORMAT": format_word(cfg["numerics"]["act"]),
                "WEIGHT_FORMAT": format_word(cfg["numerics"]["weight"]),
                "LOGITS_FORMAT": format_word(cfg["logits"]), "TABLE_FORMAT": format_word(cfg["table"]),
                "GUMBEL_BITS": cfg["gumbel_bits"], "LANES": cfg["lanes"], "SIMD": cfg["simd"],
                "AUDIO_OUT": int(cfg["audio_out"]), "S_AXIS_WIDTH": regmap["streams"]["s_axis"]["tdata_width"],
                "M_AXIS_WIDTH": regmap["streams"]["m_axis"]["tdata_width"], "TABLE_BYTES": regmap["table_bytes"],
                "SAMPLE_RATE": cfg["sample_rate"]}
    expected |= {f"FRAME_SIZE_{k}": size for k, size in enumerate(cfg["frame_sizes"])}
    expected |= {f"GRU_LANES_{k}": lanes for k, lanes in enumerate(cfg["gru_lanes"])}
    await bench.check_registers(expected, scratch=["SAMPLES", "SEED"])


async def wait_done(bench: Bench) -> None:
    """Wait for the interrupt (ap_done enabled in IER), check ISR, acknowledge it (toggle on write), check CTRL."""
    dut = bench.dut
    if not dut.interrupt.value:
        await within(RisingEdge(dut.interrupt), DONE_CYCLES, "the interrupt (ap_done)")
    assert await bench.read("ISR") == 0b01, "ISR: not ap_done alone"
    await bench.write("ISR", 0b01)
    assert not dut.interrupt.value, "the interrupt stays high after ISR was acknowledged"
    ctrl = await bench.read("CTRL")
    assert ctrl == CTRL_DONE | CTRL_IDLE | CTRL_READY, f"CTRL {ctrl:#x} after the interrupt"
    assert await bench.read("STATUS") == 0, "STATUS reports an error"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def load_and_generate(dut):
    """A LOAD job with random pauses, then :data:`JOBS`: bit-exact samples, CYCLES against the cycle model."""
    seed = cocotb.RANDOM_SEED
    bench = await Bench.start(dut)
    regmap = bench.regmap
    config = config_from_register_map(regmap)
    net = config.network
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(net, random_state_dict(net, seed)))
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, dut.aresetn, reset_active_level=False)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn, reset_active_level=False)
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.aclk, dut.aresetn, reset_active_level=False,
                     size=RAM_BYTES)
    quiet(source, sink, ram)
    align = regmap["table_align"]
    table_addr = align * random.Random(f"{seed}/table").randrange(1, (RAM_BYTES - regmap["table_bytes"]) // align)
    ram.write(table_addr, table_image(config.layout, model, 0))

    await bench.write("GIE", 1)
    await bench.write("IER", 0b01)
    await bench.write("TABLE_ADDR", table_addr)
    await bench.write("MODE", regmap["modes"]["LOAD"])
    bench.stall(True, s_axis=source)
    rows = load_stream(config, model)
    await source.send(AxiStreamFrame(rows.tobytes()))
    await bench.start_job()
    await within(source.wait(), 4 * len(rows) + DONE_CYCLES, "the LOAD job's s_axis")
    await wait_done(bench)

    timing = samplernn_timing(net, config.lanes, config.simd, config.gru_lanes)
    for n, job_seed, temperature, stalled in JOBS:
        bench.stall(stalled, m_axis=sink, ddr_ar=ram.ar_channel, ddr_r=ram.r_channel)
        for name, value in (("MODE", regmap["modes"]["GENERATE"]), ("SAMPLES", n), ("SEED", seed_state(job_seed)),
                            ("TEMPERATURE", temperature_int(temperature))):
            await bench.write(name, value)
        await bench.start_job()
        model_cycles = timing.total_cycles(n, net.n_frame_samples) + GENERATE_OVERHEAD
        data = bytes((await within(sink.recv(), 4 * model_cycles, f"m_axis ({n} samples)")).tdata)
        assert len(data) == 4 * n, f"m_axis: {len(data) // 4} samples in the frame, not {n}: TLAST misplaced"
        await wait_done(bench)
        words = np.frombuffer(data, dtype="<u4")
        codes, pcm = (words >> 16).astype(np.int64), (words & 0xFFFF).astype(np.uint16).view(np.int16)
        expected = model.generate(n, job_seed, temperature)
        job = f"GENERATE of {n} samples (seed {job_seed}, temperature {temperature}, stalls {stalled})"
        assert np.array_equal(codes, expected), f"{job}: codes differ from the model from sample " \
                                                f"{np.flatnonzero(codes != expected)[:1]}"
        assert np.array_equal(pcm, pcm16(expected, net.q_levels)), f"{job}: PCM is not pcm16 of the codes"
        cycles = await bench.read("CYCLES")
        if stalled:
            assert cycles >= model_cycles, f"{job}: CYCLES {cycles} < the cycle model's {model_cycles} without stalls"
        else:
            assert cycles == model_cycles, f"{job}: CYCLES {cycles}, the cycle model {model_cycles}"
        dut._log.info("%s: bit-exact, CYCLES %d (cycle model without stalls %d)", job, cycles, model_cycles)
