# amaranth: UnusedElaboratable=no
"""boards.top: register map, Vivado-facing ports and attributes, the AXI4-Lite slave under random traffic."""

import json
import random
import re
from types import SimpleNamespace

import pytest
from amaranth.sim import Simulator

from wavefabric.boards.top import (
    ADDR_WIDTH,
    GruAxiCore,
    GruTop,
    GruTopConfig,
    Mode,
    axi_lite_signature,
    config_from_register_map,
    register_map,
    vlnv,
    write_register_map,
)
from wavefabric.model.fixed import QFormat
from wavefabric.model.kernels import Numerics
from wavefabric.sim.axi import axil_read, axil_write, axis_send
from wavefabric.sim.export import to_verilog
from wavefabric.sim.streams import run_simulation

SMALL = GruTopConfig(3, 4, layers=1, lanes=2, simd=2)
OKAY, SLVERR = 0, 2


def test_register_map_layout_and_json(tmp_path):
    regmap = register_map(SMALL)
    regs = regmap["registers"]
    assert [regs[n]["offset"] for n in ("CTRL", "GIE", "IER", "ISR")] == [0x00, 0x04, 0x08, 0x0C]
    params = [r["offset"] for r in regs.values() if r["offset"] >= 0x10]
    assert params == list(range(0x10, 0x10 + 8 * len(params), 8))  # HLS: parameters from 0x10, stride 8
    assert regs["INPUT_SIZE"]["value"] == 3 and regs["TDATA_WIDTH"]["value"] == 32
    assert regmap["vlnv"] == "xilinx.com:module_ref:wavefabric_gru:1.0" == vlnv(SMALL.name)
    assert regmap["modes"] == {"WEIGHTS": 0, "BIAS": 1, "STATE": 2, "STEPS": 3}
    path = write_register_map(SMALL, tmp_path / "map.json")
    assert json.loads(path.read_text()) == regmap
    assert [p.name for p in tmp_path.iterdir()] == ["map.json"]
    assert config_from_register_map(regmap) == SMALL


def test_stream_width_follows_config():
    assert GruTopConfig(4, 4, simd=8).tdata_width == 128
    assert GruTopConfig(4, 4, simd=3).tdata_width == 64          # 48 bits round up to a power of two
    wide = GruTopConfig(4, 4, simd=2, num=Numerics(act=QFormat(20, 12), weight=QFormat(18, 14)))
    assert (wide.element_bits, wide.tdata_width) == (32, 64)
    assert GruTopConfig(4, 4, simd=1, num=Numerics(act=QFormat(8, 4), weight=QFormat(8, 6))).tdata_width == 32


@pytest.mark.parametrize("kwargs, message", [
    ({"simd": 65, "lanes": 1}, "simd 65 .* legal simd is 1 to 64"),
    ({"name": "2top"}, "name must be a Verilog identifier"),
    ({"hidden": 0}, "hidden must be an integer >= 1"),
    ({"num": "Q4.12"}, "num must be a Numerics"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GruTopConfig(**{"input_size": 4, "hidden": 4, **kwargs})


def _ports(verilog: str, module: str) -> dict[str, tuple[str, dict]]:
    """Ports of ``module``: name to (direction, attributes)."""
    body = verilog[verilog.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    ports, attrs = {}, {}
    for line in body.splitlines():
        attr = re.fullmatch(r'\s*\(\* (\w+) = "(.*)" \*\)', line)
        if attr:
            attrs[attr[1]] = attr[2]
            continue
        port = re.fullmatch(r"\s*(input|output) (?:\[\d+:0\] )?(\w+);", line)
        if port:
            ports[port[2]] = (port[1], attrs)
        attrs = {}
    return ports


def test_verilog_ports_are_flat_and_carry_interface_attributes():
    ports = _ports(to_verilog(GruTop(SMALL), SMALL.name), SMALL.name)
    lite = [f"s_axi_ctrl_{n}" for n in axi_lite_signature().members]
    axis = [f"{p}_{n}" for p in ("s_axis", "m_axis") for n in ("tdata", "tvalid", "tready", "tlast")]
    assert set(ports) == {"aclk", "aresetn", "interrupt", "m_axis_tkeep", *lite, *axis}
    assert not [name for name in ports if "__" in name]
    assert ports["aclk"] == ("input", {"X_INTERFACE_INFO": "xilinx.com:signal:clock:1.0 aclk CLK",
                                       "X_INTERFACE_PARAMETER": "XIL_INTERFACENAME aclk, ASSOCIATED_BUSIF "
                                       "s_axi_ctrl:s_axis:m_axis, ASSOCIATED_RESET aresetn"})
    assert ports["aresetn"][1]["X_INTERFACE_PARAMETER"] == "XIL_INTERFACENAME aresetn, POLARITY ACTIVE_LOW"
    outputs = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"}
    for name in lite:
        assert ports[name][0] == ("output" if name[11:] in outputs else "input"), name
        assert ports[name][1]["X_INTERFACE_INFO"] == f"xilinx.com:interface:aximm:1.0 s_axi_ctrl {name[11:].upper()}"
    assert "PROTOCOL AXI4LITE" in ports["s_axi_ctrl_awaddr"][1]["X_INTERFACE_PARAMETER"]
    assert f"ADDR_WIDTH {ADDR_WIDTH}" in ports["s_axi_ctrl_awaddr"][1]["X_INTERFACE_PARAMETER"]
    for name in axis:
        port, signal = name[:6], name[7:]
        assert ports[name][1]["X_INTERFACE_INFO"] == f"xilinx.com:interface:axis:1.0 {port} {signal.upper()}"
        assert ports[name][0] == ("input" if (port == "s_axis") != (signal == "tready") else "output")
    assert ports["m_axis_tkeep"][0] == "output"
    assert ports["interrupt"][1]["X_INTERFACE_INFO"] == "xilinx.com:signal:interrupt:1.0 interrupt INTERRUPT"


def _expected_read(regs: dict, state: dict, offset: int) -> tuple[int, int]:
    for name, reg in regs.items():
        if reg["offset"] == offset & ~3:
            if "value" in reg:
                return reg["value"], OKAY
            return {"CTRL": 0b100, "STATUS": 0, "CYCLES": 0}.get(name, state.get(name, 0)), OKAY
    return 0, SLVERR


def _apply_write(regs: dict, state: dict, offset: int, data: int, strb: int) -> int:
    name = next((n for n, r in regs.items() if r["offset"] == offset & ~3), None)
    mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
    if name is None or regs[name]["access"] == "ro":
        return SLVERR
    if name in ("GIE", "IER", "ISR") and strb & 1:
        bits = 1 if name == "GIE" else 3
        state[name] = state[name] ^ (data & 3) if name == "ISR" else data & bits
    elif name in ("MODE", "STEPS"):
        merged = state[name] & ~mask | data & mask
        if name == "MODE" and merged > 3:
            return SLVERR
        state[name] = merged
    return OKAY


@pytest.mark.parametrize("seed", [1, 2])
def test_axi_lite_random_transactions_against_a_model(seed):
    """Random reads and writes (mapped, unmapped, read-only, partial strobes) with random AW/W order and
    B/R stalls: every one answered, with the model's data and response; the bus never hangs."""
    core = GruAxiCore(SMALL)
    regs = core.regmap["registers"]
    rng = random.Random(seed)
    state = {"GIE": 0, "IER": 0, "ISR": 0, "MODE": 0, "STEPS": 0}
    mapped = [r["offset"] for r in regs.values()]
    checked = []

    async def testbench(ctx):
        for _ in range(150):
            offset = rng.choice(mapped) + rng.choice([0, 0, 0, 1, 2]) if rng.random() < 0.7 \
                else rng.randrange(1 << ADDR_WIDTH)
            if rng.random() < 0.5:
                data, strb = rng.getrandbits(32), rng.choice([0xF, 0xF, 0x1, 0x3, 0xC, 0x0, rng.getrandbits(4)])
                if offset & ~3 == regs["CTRL"]["offset"]:
                    data &= ~1  # no job: it would wait for a stream
                if offset & ~3 == regs["MODE"]["offset"] and rng.random() < 0.7:
                    data = rng.randrange(6)
                resp = await axil_write(ctx, core.ctrl, offset, data, strb, rng=rng)
                assert resp == _apply_write(regs, state, offset, data, strb), (hex(offset), hex(data), strb)
            else:
                got = await axil_read(ctx, core.ctrl, offset, rng=rng)
                assert got == _expected_read(regs, state, offset), hex(offset)
            checked.append(offset)
        assert ctx.get(core.interrupt) == bool(state["GIE"] and state["ISR"])

    run_simulation(core, [testbench], name=f"axi_lite_random_{seed}")
    assert len(checked) == 150


def test_concurrent_reads_and_writes_with_stalls():
    """A writer and a reader on the bus at the same time, both with random timing."""
    core = GruAxiCore(SMALL)
    regs = core.regmap["registers"]
    wrng, rrng = random.Random(5), random.Random(6)
    log = {"writes": 0, "reads": 0}

    async def writer(ctx):
        for value in range(60):
            assert await axil_write(ctx, core.ctrl, regs["STEPS"]["offset"], value, rng=wrng) == OKAY
            assert await axil_write(ctx, core.ctrl, 0x800, value, rng=wrng) == SLVERR
            log["writes"] += 2

    async def reader(ctx):
        for _ in range(80):
            assert await axil_read(ctx, core.ctrl, regs["HIDDEN"]["offset"], rng=rrng) == (SMALL.hidden, OKAY)
            assert await axil_read(ctx, core.ctrl, 0xFFC, rng=rrng) == (0, SLVERR)
            log["reads"] += 2
        value, resp = await axil_read(ctx, core.ctrl, regs["STEPS"]["offset"])
        assert resp == OKAY and value <= 59

    run_simulation(core, [writer, reader], name="axi_lite_concurrent")
    assert log == {"writes": 120, "reads": 160}


def test_ap_ctrl_done_ready_interrupt_and_clear_on_read():
    core = GruAxiCore(SMALL)
    regs = {name: reg["offset"] for name, reg in core.regmap["registers"].items()}

    async def testbench(ctx):
        for name, value in (("GIE", 1), ("IER", 3), ("MODE", Mode.STEPS), ("STEPS", 0), ("CTRL", 1)):
            assert await axil_write(ctx, core.ctrl, regs[name], value) == OKAY
        await ctx.tick().repeat(3)
        assert ctx.get(core.interrupt)
        assert await axil_read(ctx, core.ctrl, regs["ISR"]) == (3, OKAY)
        assert await axil_read(ctx, core.ctrl, regs["CTRL"]) == (0b1110, OKAY)   # done, idle, ready
        assert await axil_read(ctx, core.ctrl, regs["CTRL"]) == (0b0100, OKAY)   # cleared on read
        assert await axil_write(ctx, core.ctrl, regs["ISR"], 1) == OKAY          # toggle-on-write
        assert await axil_read(ctx, core.ctrl, regs["ISR"]) == (2, OKAY)
        assert ctx.get(core.interrupt)
        assert await axil_write(ctx, core.ctrl, regs["GIE"], 0) == OKAY
        assert not ctx.get(core.interrupt)

    run_simulation(core, [testbench], name="ap_ctrl")


def test_tlast_in_the_wrong_place_is_reported_and_the_job_still_ends():
    core = GruAxiCore(SMALL)
    regs = {name: reg["offset"] for name, reg in core.regmap["registers"].items()}
    beats = SMALL.job_beats()["STATE"]

    async def testbench(ctx):
        await axil_write(ctx, core.ctrl, regs["MODE"], Mode.STATE)
        await axil_write(ctx, core.ctrl, regs["CTRL"], 1)
        await axis_send(ctx, core.s_axis, [(0, i == 0) for i in range(beats)])   # TLAST on the first
        for _ in range(20):
            value, _ = await axil_read(ctx, core.ctrl, regs["CTRL"])
            if value & 2:
                break
        assert value & 2
        assert await axil_read(ctx, core.ctrl, regs["STATUS"]) == (0b10, OKAY)

    run_simulation(core, [testbench], name="tlast_error")


def test_top_clock_and_active_low_reset():
    """The flat top: ``aclk`` clocks it, ``aresetn`` low resets it (the registers go back to 0)."""
    top = GruTop(SMALL)
    bus = SimpleNamespace(**{name: getattr(top, f"s_axi_ctrl_{name}") for name in axi_lite_signature().members})
    regs = {name: reg["offset"] for name, reg in register_map(SMALL)["registers"].items()}

    async def clock(ctx):
        while True:
            for level in (1, 0):
                await ctx.delay(5e-9)
                ctx.set(top.aclk, level)

    async def in_reset(ctx, cycles):  # ctx.tick() would raise DomainReset while aresetn is low
        ctx.set(top.aresetn, 0)
        for _ in range(cycles):
            await ctx.posedge(top.aclk)
        ctx.set(top.aresetn, 1)
        await ctx.tick()

    async def testbench(ctx):
        await in_reset(ctx, 3)
        assert await axil_read(ctx, bus, regs["LAYERS"]) == (1, OKAY)
        assert await axil_write(ctx, bus, regs["STEPS"], 77) == OKAY
        assert await axil_read(ctx, bus, regs["STEPS"]) == (77, OKAY)
        await in_reset(ctx, 2)
        assert await axil_read(ctx, bus, regs["STEPS"]) == (0, OKAY)

    sim = Simulator(top)
    sim.add_process(clock)
    sim.add_testbench(testbench)
    sim.run()

