# amaranth: UnusedElaboratable=no
"""boards.shell: the declarative register map, and a design driven through StreamView's AXI channels."""

import pytest

from wavefabric.boards.shell import Register, StreamView, config_id, register_table
from wavefabric.boards.top import GruAxiCore, GruTopConfig
from wavefabric.sim.streams import run_streams, vcd_hint

OKAY, SLVERR = 0, 2


def test_register_table_is_the_hls_layout():
    table = register_table([Register("A", "rw", "a"), Register("B", "ro", "b", value=7)])
    assert [(name, reg["offset"]) for name, reg in table.items()] == [
        ("CTRL", 0), ("GIE", 4), ("IER", 8), ("ISR", 12), ("A", 0x10), ("B", 0x18)]
    assert table["B"] == {"offset": 0x18, "access": "ro", "description": "b", "value": 7}
    with pytest.raises(ValueError, match="unique"):
        register_table([Register("CTRL", "rw", "again")])
    with pytest.raises(ValueError, match="do not fit"):
        register_table([Register(f"R{i}", "rw", "") for i in range(600)])


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "lower"}, "upper case"),
    ({"access": "wo"}, "access must be 'rw' or 'ro'"),
    ({"width": 33}, "width must be 1 to 32"),
    ({"value": 3}, "a constant is read only"),
    ({"access": "ro", "value": 1 << 32}, "fits 32 bits"),
    ({"access": "ro", "limit": 4}, "only rw registers have a limit"),
])
def test_register_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Register(**{"name": "R", "access": "rw", "description": "", **kwargs})


def test_config_id_ignores_key_order():
    assert config_id({"a": 1, "b": [2, 3]}) == config_id({"b": [2, 3], "a": 1}) != config_id({"a": 2, "b": [2, 3]})


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_stream_view_drives_the_register_file(p):
    """Writes (one refused by MODE's limit, one to a read-only register) and reads through the view's AW, W, B,
    AR and R streams, reads after the writes, with random stalls on every channel when p < 1."""
    config = GruTopConfig(3, 4, lanes=2, simd=2)
    view = StreamView(GruAxiCore(config))
    regs = {name: reg["offset"] for name, reg in view.core.regmap["registers"].items()}
    writes = [(regs["STEPS"], 0x1234_5678), (regs["MODE"], 7), (regs["MODE"], 2), (regs["HIDDEN"], 1)]
    reads = [regs["STEPS"], regs["MODE"], regs["HIDDEN"], 0x800]
    run = run_streams(view, {"ctrl_aw": [{"addr": a} for a, _ in writes],
                             "ctrl_w": [{"data": d, "strb": 0xF} for _, d in writes],
                             "ctrl_ar": [{"addr": a} for a in reads]},
                      {"ctrl_b": len(writes), "ctrl_r": len(reads)}, waits={"ctrl_ar": (0, "ctrl_b")},
                      seed=4, p_valid=p, p_ready=p, max_cycles=2000, name="shell_view")
    assert [b["resp"] for b in run.outputs["ctrl_b"]] == [OKAY, SLVERR, OKAY, SLVERR], vcd_hint("shell_view")
    assert [(r["data"], r["resp"]) for r in run.outputs["ctrl_r"]] == [
        (0x1234_5678, OKAY), (2, OKAY), (4, OKAY), (0, SLVERR)], vcd_hint("shell_view")
