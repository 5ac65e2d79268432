# amaranth: UnusedElaboratable=no
"""boards.samplernn_top: register map, load stream, Vivado-facing ports, and the core through its AXI channels."""

import re

import numpy as np
import pytest

from wavefabric.boards.samplernn_top import (
    GENERATE_OVERHEAD,
    Mode,
    SampleRNNAxiCore,
    SampleRNNTop,
    SampleRNNTopConfig,
    config_from_register_map,
    load_stream,
    register_map,
)
from wavefabric.boards.shell import StreamView
from wavefabric.model.perf import samplernn_timing
from wavefabric.model.sampler import pcm16, seed_state, temperature_int
from wavefabric.model.samplernn import SampleRNNConfig, SampleRNNFixed, SampleRNNParams, random_state_dict
from wavefabric.rtl.samplernn import LoadRegion
from wavefabric.sim.export import to_verilog
from wavefabric.sim.samplernn import TABLE_BASE, table_image
from wavefabric.sim.streams import AxiReadMemory, run_streams, vcd_hint

# SampleRNN engines built for their sizes only (the import-time filter of boards.samplernn_top does not outlive
# pytest's collection).
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_components")]

#: The smallest legal network: one tier of frame size 2, dim 3, two levels.
TINY = SampleRNNTopConfig(SampleRNNConfig(frame_sizes=(2,), n_rnn=1, dim=3, q_levels=2), lanes=2, simd=4,
                          gru_lanes=2)
SMALL = SampleRNNTopConfig(SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16), lanes=2, simd=4,
                           gru_lanes=2)


def model_of(config: SampleRNNTopConfig, seed: int, scale: float = 1.0) -> SampleRNNFixed:
    state = {name: value * (scale if name.endswith(("weight", "weight_g")) else 1.0)
             for name, value in random_state_dict(config.network, seed).items()}
    return SampleRNNFixed(SampleRNNParams.from_state_dict(config.network, state))


def test_register_map_and_config_round_trip():
    regmap = register_map(SMALL)
    regs = regmap["registers"]
    offsets = [reg["offset"] for reg in regs.values()]
    assert offsets[:4] == [0, 4, 8, 12] and offsets[4:] == list(range(0x10, 0x10 + 8 * (len(offsets) - 4), 8))
    assert regs["FRAME_SIZE_1"]["value"] == 2 and regs["Q_LEVELS"]["value"] == 16
    assert regs["CONFIG_ID"]["value"] == regmap["config_id"]
    assert regmap["streams"]["s_axis"] == {"tdata_width": 64, "element_bits": 16, "elements": 4}
    assert regmap["load_regions"]["MATVEC_NORMED"]["value"] == LoadRegion.MATVEC_NORMED
    assert config_from_register_map(regmap) == SMALL
    edited = {**regmap, "config": {**regmap["config"], "dim": 9}}
    with pytest.raises(ValueError, match="config_id is not that of its configuration"):
        config_from_register_map(edited)
    with pytest.raises(ValueError, match="of design 'gru', not 'samplernn'"):
        config_from_register_map({"config": {}})


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "2top"}, "name must be a Verilog identifier"),
    ({"sample_rate": 0}, "sample_rate must be"),
    ({"simd": 6}, "simd must be a power of two"),
    ({"network": SampleRNNConfig(frame_sizes=(1, 4))}, "frame_sizes.0. must be >= 2"),
    ({"network": "seed"}, "network must be a SampleRNNConfig"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SampleRNNTopConfig(**kwargs)


def test_load_stream_puts_a_header_before_every_frame():
    model = model_of(SMALL, 1)
    rows = load_stream(SMALL, model)
    regions = register_map(SMALL)["load_regions"]
    at = 0
    seen = []
    while at < len(rows):
        region = int(rows[at, 0])
        assert not rows[at, 1:].any()
        seen.append(region)
        at += 1 + next(r["beats"] for r in regions.values() if r["value"] == region)
    assert at == len(rows)
    assert seen == [LoadRegion.CONFIG, LoadRegion.MATVEC_NORMED, LoadRegion.MATVEC_BIASES, LoadRegion.H0,
                    LoadRegion.TABLE, 6, 7, 8, 9]


def _ports(verilog: str, module: str) -> dict[str, dict]:
    body = verilog[verilog.index(f"module {module}("):]
    ports, attrs = {}, {}
    for line in body[:body.index("endmodule")].splitlines():
        attr = re.fullmatch(r'\s*\(\* (\w+) = "(.*)" \*\)', line)
        if attr:
            attrs[attr[1]] = attr[2]
            continue
        port = re.fullmatch(r"\s*(input|output) (?:\[\d+:0\] )?(\w+);", line)
        if port:
            ports[port[2]] = attrs
        attrs = {}
    return ports


def test_verilog_ports_carry_the_axi4_read_manager():
    ports = _ports(to_verilog(SampleRNNTop(TINY), TINY.name), TINY.name)
    manager = {name for name in ports if name.startswith("m_axi_")}
    assert manager == {"m_axi_araddr", "m_axi_arlen", "m_axi_arsize", "m_axi_arburst", "m_axi_arcache",
                       "m_axi_arprot", "m_axi_arvalid", "m_axi_arready", "m_axi_rdata", "m_axi_rresp",
                       "m_axi_rlast", "m_axi_rvalid", "m_axi_rready"}
    assert "PROTOCOL AXI4, DATA_WIDTH 64, ADDR_WIDTH 32, READ_WRITE_MODE READ_ONLY" in \
        ports["m_axi_araddr"]["X_INTERFACE_PARAMETER"]
    assert ports["m_axi_rlast"]["X_INTERFACE_INFO"] == "xilinx.com:interface:aximm:1.0 m_axi RLAST"
    assert "ASSOCIATED_BUSIF s_axi_ctrl:s_axis:m_axis:m_axi," in ports["aclk"]["X_INTERFACE_PARAMETER"]
    assert "TDATA_NUM_BYTES 4" in ports["m_axis_tdata"]["X_INTERFACE_PARAMETER"]
    assert not [name for name in ports if "__" in name]


def _session(config, model, jobs, *, header=None, tlast_at=None, p=1.0, latency=40, seed=0):
    """A LOAD job then GENERATE jobs ``(samples, seed, temperature)`` through the core's AXI channels; the reads
    of STATUS, CYCLES, CTRL and SATURATED after each GENERATE job. ``header`` replaces the first header's region,
    ``tlast_at`` moves the LOAD job's TLAST to that beat (the job then ends there)."""
    regs = {name: reg["offset"] for name, reg in register_map(config)["registers"].items()}
    rows = load_stream(config, model)
    if header is not None:
        rows[0, 0] = header
    words = np.ascontiguousarray(rows).view("<u4").astype(np.int64)
    end = len(words) - 1 if tlast_at is None else tlast_at
    words = words[:end + 1]
    writes = [("TABLE_ADDR", TABLE_BASE), ("MODE", Mode.LOAD), ("CTRL", 1)]
    waits = {"s_axis": [(0, "ctrl_b", 3)], "ctrl_aw": [], "ctrl_w": [], "ctrl_ar": []}
    reads = []
    for k, (n, job_seed, temperature) in enumerate(jobs):
        first = len(writes)
        writes += [("MODE", Mode.GENERATE), ("SAMPLES", n), ("SEED", seed_state(job_seed)),
                   ("TEMPERATURE", temperature_int(temperature)), ("CTRL", 1)]
        for stream in ("ctrl_aw", "ctrl_w"):
            waits[stream].append((first, "s_axis", len(words)) if k == 0 else (first, "ctrl_r", len(reads)))
        waits["ctrl_ar"].append((len(reads), "m_axis", sum(job[0] for job in jobs[:k + 1])))
        reads += ["STATUS", "CYCLES", "CTRL", "SATURATED"]
    run = run_streams(
        StreamView(SampleRNNAxiCore(config)),
        {"ctrl_aw": [{"addr": regs[name]} for name, _ in writes],
         "ctrl_w": [{"data": value, "strb": 15} for _, value in writes],
         "s_axis": {"tdata": words, "tlast": (np.arange(len(words)) == end).astype(np.int64)},
         "ctrl_ar": [{"addr": regs[name]} for name in reads] or [{"addr": regs["STATUS"]}]},
        {"ctrl_b": len(writes), "ctrl_r": max(len(reads), 1), "m_axis": sum(job[0] for job in jobs)},
        waits={key: value for key, value in waits.items() if value} | ({} if reads else {"ctrl_ar": [(0, "s_axis")]}),
        memories={"ddr": AxiReadMemory(table_image(config.layout, model, TABLE_BASE), latency=latency,
                                       p_ar_ready=p, p_r_valid=p)},
        seed=seed, p_valid=p, p_ready=p, tail=4, max_cycles=200_000, name="samplernn_top")
    return run


def job_flags(model, job) -> int:
    """The SATURATED register the model predicts for one GENERATE job."""
    model.reset_saturations()
    model.generate(*job)
    return sum(1 << i for i, count in enumerate(model.saturations.values()) if count)


def test_generate_jobs_are_bit_exact_and_count_the_model_cycles():
    """Two GENERATE jobs after one load (a job starts from h0); CYCLES = the cycle model + GENERATE_OVERHEAD."""
    config, model = SMALL, model_of(SMALL, 2)
    jobs = [(9, 3, 0.8), (5, 4, 1.0)]
    run = _session(config, model, jobs)
    out = run.outputs["m_axis"]
    codes = np.array([beat["tdata"][0] >> 16 for beat in out])
    pcm = np.array([beat["tdata"][0] & 0xFFFF for beat in out]).astype(np.uint16).view(np.int16)
    expected = np.concatenate([model.generate(*job) for job in jobs])
    flags = [job_flags(model, job) for job in jobs]
    assert np.array_equal(codes, expected), vcd_hint("samplernn_top")
    assert np.array_equal(pcm, pcm16(expected, config.network.q_levels))
    assert [beat["tlast"] for beat in out] == [0] * 8 + [1] + [0] * 4 + [1]
    assert [b["resp"] for b in run.outputs["ctrl_b"]] == [0] * 13
    timing = samplernn_timing(config.network, lanes=2, simd=4, gru_lanes=2)
    reads = [r["data"] for r in run.outputs["ctrl_r"]]
    frames = config.network.n_frame_samples
    assert reads == [0, timing.total_cycles(9, frames) + GENERATE_OVERHEAD, 0b1110, flags[0],
                     0, timing.total_cycles(5, frames) + GENERATE_OVERHEAD, 0b1110, flags[1]], vcd_hint("samplernn_top")


@pytest.mark.parametrize("seed", [1, 2])
def test_stalls_on_every_channel(seed):
    """The smallest network at saturation, every AXI channel and the DDR stalling at random."""
    model = model_of(TINY, seed, scale=8.0)
    run = _session(TINY, model, [(12, seed, 1.0)], p=0.5, latency=7, seed=seed)
    codes = [beat["tdata"][0] >> 16 for beat in run.outputs["m_axis"]]
    assert codes == model.generate(12, seed, 1.0).tolist(), vcd_hint("samplernn_top")
    reads = [r["data"] for r in run.outputs["ctrl_r"]]
    assert reads[::2] == [0, 0b1110]
    assert reads[3] == job_flags(model, (12, seed, 1.0)) != 0


def test_load_errors_are_reported_in_status():
    model = model_of(TINY, 0)
    run = _session(TINY, model, [], header=40)                # an unknown region: its frame is skipped
    assert run.outputs["ctrl_r"][0]["data"] & 0b100
    run = _session(TINY, model, [], tlast_at=5)               # TLAST inside a frame: the job still ends there
    assert run.outputs["ctrl_r"][0]["data"] & 0b010


def test_play_routes_a_job_to_the_audio_output():
    """With audio_out and PLAY = 1, a GENERATE job's samples go into the player's FIFO, none to m_axis, and the job
    is done once the FIFO has taken them all (polled through CTRL)."""
    config = SampleRNNTopConfig(TINY.network, lanes=2, simd=4, gru_lanes=2, audio_out=True, pwm_bits=4,
                                audio_period=64, audio_fifo=16)
    model = model_of(config, 3)
    regs = {name: reg["offset"] for name, reg in register_map(config)["registers"].items()}
    assert "PLAY" in regs and register_map(config)["registers"]["AUDIO_OUT"]["value"] == 1
    words = np.ascontiguousarray(load_stream(config, model)).view("<u4").astype(np.int64)
    writes = [("TABLE_ADDR", TABLE_BASE), ("MODE", Mode.LOAD), ("CTRL", 1), ("MODE", Mode.GENERATE),
              ("SAMPLES", 10), ("SEED", seed_state(1)), ("TEMPERATURE", 4096), ("PLAY", 1), ("CTRL", 1)]
    polls = 1500
    run = run_streams(
        StreamView(SampleRNNAxiCore(config)),
        {"ctrl_aw": [{"addr": regs[name]} for name, _ in writes],
         "ctrl_w": [{"data": value, "strb": 15} for _, value in writes],
         "s_axis": {"tdata": words, "tlast": (np.arange(len(words)) == len(words) - 1).astype(np.int64)},
         "ctrl_ar": [{"addr": regs["CTRL"]}] * polls + [{"addr": regs["STATUS"]}]},
        {"ctrl_b": len(writes), "ctrl_r": polls + 1},
        waits={"s_axis": [(0, "ctrl_b", 3)], "ctrl_aw": [(3, "s_axis")], "ctrl_w": [(3, "s_axis")],
               "ctrl_ar": [(0, "ctrl_b", len(writes))]},
        memories={"ddr": AxiReadMemory(table_image(config.layout, model, TABLE_BASE))}, max_cycles=100_000,
        name="samplernn_top_play")
    reads = [r["data"] for r in run.outputs["ctrl_r"]]
    done = [i for i, value in enumerate(reads[:-1]) if value & 0b10]
    assert done and reads[-1] == 0, vcd_hint("samplernn_top_play")
    assert run.flags["audio_sd"] == 1 and run.flags["audio_pwm_tri_o"] == 0
