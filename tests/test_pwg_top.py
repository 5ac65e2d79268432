# amaranth: UnusedElaboratable=no
"""boards.pwg_top: register map, the s_axis frames and their demux, Vivado-facing ports, and the core through its
AXI channels on Verilator (the driver's twin) with stalls and DDR latency, bit-exact with the model."""

from dataclasses import replace

import numpy as np
import pytest

from wavefabric.boards.driver import PWGOverlay
from wavefabric.boards.pwg_top import (
    FIRST_FLAG,
    LAST_FLAG,
    LOAD_STREAMS,
    Mode,
    PWGAxiCore,
    PWGTop,
    PWGTopConfig,
    config_from_register_map,
    engine_streams,
    frames_stream,
    job_stream,
    load_stream,
    register_map,
)
from wavefabric.boards.shell import StreamView
from wavefabric.model.perf import pwg_engine_cycles
from wavefabric.model.pwg import PWGConfig, PWGFixed, from_state_dict, pcm16, random_state_dict
from wavefabric.model.pwg_profile import choose_formats
from wavefabric.sim.pwg import activation_memories, generator_streams
from wavefabric.sim.streams import run_streams

# PWG engines built for their sizes only (the import-time filter of boards.pwg_top does not outlive pytest's
# collection).
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_components")]

#: Two layers of dilation 1, hop 4 on a 4 x 4 array: 2 frames of context, so 6 frames make blocks of 2.
NET = PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=4, layers=2, stacks=2,
                upsample_scales=(2, 2), aux_context_window=1)
SMALL = PWGTopConfig(NET, rows=4, cols=4, max_frames=6)


@pytest.fixture(scope="module")
def fixed():
    generator = from_state_dict(NET, random_state_dict(NET, 1))
    return PWGFixed(generator, choose_formats(generator))  # the formats PWGOverlay.load chooses


def golden(model: PWGFixed, mel: np.ndarray, seed: int) -> np.ndarray:
    """The PCM of :meth:`PWGFixed.inference` (its float output is the model's integers over 2**act.frac)."""
    act = NET.numerics.act
    return pcm16(act.quantize(model.inference(mel, seed)), act)[:, 0]


def test_register_map_and_config_round_trip():
    regmap = register_map(SMALL)
    regs = regmap["registers"]
    offsets = [reg["offset"] for reg in regs.values()]
    assert offsets[:4] == [0, 4, 8, 12] and offsets[4:] == list(range(0x10, 0x10 + 8 * (len(offsets) - 4), 8))
    assert [name for name in regs][4:12] == ["MODE", "FRAMES", "X_ADDR", "SKIP_ADDR", "STATUS", "CYCLES",
                                             "SATURATION_0", "CONFIG_ID"]
    assert regs["LAYERS"]["value"] == 2 and regs["HOP_SIZE"]["value"] == 4 and regs["UPSAMPLE_SCALE_1"]["value"] == 2
    assert regs["ACT_FORMAT"]["value"] == 16 | 11 << 8 and regs["MAX_FRAMES"]["value"] == 6
    assert regs["CONFIG_ID"]["value"] == regmap["config_id"]
    assert regmap["streams"]["s_axis"] == {"tdata_width": 64, "element_bits": 16, "elements": 4,
                                           "first_flag": FIRST_FLAG, "last_flag": LAST_FLAG}
    assert regmap["streams"]["m_axis"] == {"tdata_width": 64, "pcm_bits": 16, "samples": 4}
    assert list(regmap["engine_streams"]) == ["mel", "noise", "frontend_w", "frontend_bias", "layer_w",
                                              "layer_bias", "table"]
    assert regmap["load_streams"] == list(LOAD_STREAMS) and regmap["modes"] == {"LOAD": 0, "VOCODE": 1}
    assert regmap["ddr"] == {"x_bytes": 4096, "skip_bytes": 4096, "align": 4096}
    assert config_from_register_map(regmap) == SMALL
    edited = {**regmap, "config": {**regmap["config"], "layers": 4}}
    with pytest.raises(ValueError, match="config_id is not that of its configuration"):
        config_from_register_map(edited)
    with pytest.raises(ValueError, match="of design 'samplernn', not 'pwg'"):
        config_from_register_map({"design": "samplernn", "config": {}})


def test_config_refuses_what_the_engine_cannot_build():
    with pytest.raises(ValueError, match="cols must be a power of two dividing hop = 4"):
        PWGTopConfig(NET, rows=4, cols=3)
    with pytest.raises(ValueError, match="max_frames must be an integer >= 2"):
        PWGTopConfig(NET, rows=4, cols=4, max_frames=1)
    with pytest.raises(ValueError, match="name must be a Verilog identifier"):
        PWGTopConfig(NET, rows=4, cols=4, name="9x")
    with pytest.raises(ValueError, match="network must be a PWGConfig"):
        PWGTopConfig("ljspeech")
    with pytest.raises(ValueError, match="config must be a PWGTopConfig"):
        PWGAxiCore(NET)


def _decode(config: PWGTopConfig, rows: np.ndarray) -> dict[str, list[dict]]:
    """The engine's beats per stream that the demux makes of ``s_axis`` rows (the protocol, in NumPy)."""
    streams = list(engine_streams(config.engine()).items())
    values = rows.astype(np.int64)
    signed = np.where(values >= 1 << 15, values - (1 << 16), values)
    beats: dict[str, list[dict]] = {name: [] for name, _ in streams}
    i = 0
    while i < len(rows):
        head, count = int(values[i, 0]), int(values[i, 1]) + 1
        name, (lanes, _) = streams[head & (FIRST_FLAG - 1)]
        beats[name] += [{"data": signed[i + 1 + k, :lanes].tolist(), "first": bool(head & FIRST_FLAG and k == 0),
                         "last": bool(head & LAST_FLAG and k == count - 1)} for k in range(count)]
        i += 1 + count
    return beats


def test_the_load_and_job_streams_carry_the_engines_streams(fixed):
    """Every beat of sim.pwg.generator_streams, framed as the engine takes it, exactly once: the table in the LOAD
    job, the rest in the VOCODE job, the weights of layer l after the aux weights of layer l."""
    z, mel = fixed.job(np.random.default_rng(0).standard_normal((3, NET.aux_channels)), 2)
    expected = generator_streams(SMALL.engine(), fixed, mel, z)
    load, job = _decode(SMALL, load_stream(SMALL, fixed)), _decode(SMALL, job_stream(SMALL, fixed, mel, z))
    for name, beats in expected.items():
        got = (load if name in LOAD_STREAMS else job)[name]
        assert got == [{"data": [int(v) for v in b["data"]], "first": bool(b["first"]), "last": bool(b["last"])}
                       for b in beats], name
        assert not (job if name in LOAD_STREAMS else load)[name]
    headers = job_stream(SMALL, fixed, mel, z)
    order, i = [], 0
    while i < len(headers):
        order.append(list(engine_streams(SMALL.engine()))[headers[i, 0] & (FIRST_FLAG - 1)])
        i += 2 + int(headers[i, 1])
    assert order == ["mel", "frontend_w", "frontend_bias", "noise", "frontend_w", "layer_w", "layer_bias",
                     "frontend_w", "layer_w", "layer_bias", "layer_w", "layer_bias"]
    long = [{"data": [k], "first": k == 0, "last": k == 70_000} for k in range(70_001)]
    rows = frames_stream(SMALL, [("mel", long)])
    assert rows.dtype == np.dtype("<u2") and len(rows) == 70_001 + 2
    assert rows[0, :2].tolist() == [FIRST_FLAG, 65_535] and rows[65_537, :2].tolist() == [LAST_FLAG, 70_000 - 65_536]


def test_top_has_the_vivado_ports():
    top = PWGTop(SMALL)
    ports = set(top.signature.members)
    for name in ("aclk", "aresetn", "s_axi_ctrl_awaddr", "s_axis_tdata", "m_axis_tkeep", "m_axi_x_awlen",
                 "m_axi_x_wstrb", "m_axi_skip_bready", "m_axi_skip_araddr", "interrupt"):
        assert name in ports, name
    info = top.m_axi_x_araddr.attrs["X_INTERFACE_PARAMETER"]
    assert "PROTOCOL AXI4, DATA_WIDTH 64, ADDR_WIDTH 32, READ_WRITE_MODE READ_WRITE" in info
    assert top.m_axi_skip_wdata.attrs["X_INTERFACE_INFO"] == "xilinx.com:interface:aximm:1.0 m_axi_skip WDATA"
    assert "ASSOCIATED_BUSIF s_axi_ctrl:s_axis:m_axis:m_axi_x:m_axi_skip" in top.aclk.attrs["X_INTERFACE_PARAMETER"]


def test_vocode_with_stalls_and_ddr_latency_is_bit_exact(fixed):
    """The twin (the core through its StreamView on Verilator): two LOAD jobs, of which the second holds (each
    resets the engine), then one job without stalls, CYCLES at least the
    engine's cycle model with the activations on chip (the DDR only adds); then every AXI channel and the DDR
    stalling at random, and a mel vocoded in blocks of 2 frames."""
    state = random_state_dict(NET, 1)
    mel = np.random.default_rng(4).standard_normal((5, NET.aux_channels))
    overlay = PWGOverlay(register_map(SMALL), backend="sim")
    overlay.load(random_state_dict(NET, 5))  # another table and other formats: the next LOAD job replaces them
    overlay.load(state)
    assert np.array_equal(overlay.vocode(mel, 3), golden(fixed, mel, 3))
    (cycles,) = overlay.cycles
    model = pwg_engine_cycles(NET, 4, 4, 5, SMALL.gate_lanes)
    assert model <= cycles < 1.5 * model
    stalled = PWGOverlay(register_map(SMALL), backend="sim", seed=3, p_valid=0.6, p_ready=0.7, latency=11)
    stalled.load(state)
    long = np.random.default_rng(5).standard_normal((7, NET.aux_channels))
    assert np.array_equal(stalled.vocode(long, 1), golden(fixed, long, 1))
    assert len(stalled.cycles) == len(stalled.saturation) == 4


def test_status_reports_bad_frames_unknown_streams_and_tlast():
    """FRAMES < 2: the VOCODE job ends at once (STATUS bit 3), taking no input; a header of an unknown stream (bit
    2) carrying TLAST (bit 1) ends the LOAD job after it."""
    regs = {name: reg["offset"] for name, reg in register_map(SMALL)["registers"].items()}
    writes = [("MODE", Mode.VOCODE), ("FRAMES", 1), ("CTRL", 1), ("MODE", Mode.LOAD), ("CTRL", 1)]
    reads = ["STATUS", "CYCLES", "CTRL"]
    core = PWGAxiCore(SMALL)
    channels = ("ar", "r", "aw", "w", "b")
    run = run_streams(
        StreamView(core),
        {"ctrl_aw": [{"addr": regs[name]} for name, _ in writes],
         "ctrl_w": [{"data": value, "strb": 15} for _, value in writes],
         "s_axis": {"tdata": np.array([[63 | FIRST_FLAG, 0]]), "tlast": np.array([1])},
         "ctrl_ar": [{"addr": regs[name]} for name in reads]},
        {"ctrl_b": len(writes), "ctrl_r": len(reads)},
        waits={"ctrl_ar": [(0, "s_axis")], "s_axis": [(0, "ctrl_b", 5)]},
        memories={name: replace(memory, **{c: f"m_axi_{name}_{c}" for c in channels})
                  for name, memory in activation_memories(core.engine).items()},
        tail=4, max_cycles=5_000, backend="verilator", name="pwg_top_status")
    status, cycles, ctrl = (beat["data"] for beat in run.outputs["ctrl_r"])
    assert status == 0b1110 and cycles < 10 and ctrl & 0b110 == 0b110
