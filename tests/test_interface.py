# amaranth: UnusedElaboratable=no
"""sim.interface: docs/verilog.md is what the hardware is, port for port."""

from pathlib import Path

import pytest

from wavefabric.rtl.gru import GruCommand, command_layout
from wavefabric.sim.interface import (
    REGENERATE,
    check_verilog,
    engine_design,
    fields,
    ports,
    render,
    render_document,
    samplernn_top_design,
    top_design,
    verilog_ports,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "verilog.md"

# The document's components are built for their interfaces only: their sub-components are never elaborated.
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_components")]


def test_document_is_up_to_date():
    assert render_document() == DOC.read_text(encoding="utf-8"), f"docs/verilog.md is stale: run `{REGENERATE}`"


# The default sizes of the small designs (what the document shows), and the large engines at small sizes (the
# names follow the same rule, and their default exports take 10 to 25 s each).
@pytest.mark.parametrize("name, argv", [
    ("systolic", []), ("gemm", []), ("weightnorm", []), ("gru", []),
    ("pwg-layer", "--rows 2 --cols 2 --residual 4 --gate 4 --skip 4 --hop 4 --max-dilation 4 --max-frames 4".split()),
    ("samplernn", "--frame-sizes 2 2 --n-rnn 1 --dim 8 --q-levels 16 --lanes 2 --simd 4 --gru-lanes 2".split()),
])
def test_engine_ports_are_the_exported_verilog_ports(name, argv):
    check_verilog(engine_design(name, argv))


def test_top_ports_are_the_exported_verilog_ports():
    design = top_design()
    check_verilog(design)
    names = [port.name for port in ports(design)]
    assert names[:3] == ["aclk", "aresetn", "s_axi_ctrl_awaddr"] and "clk" not in names  # its own domain


def test_samplernn_top_ports_are_the_exported_verilog_ports():
    design = samplernn_top_design("--frame-sizes 2 --n-rnn 1 --dim 3 --q-levels 2 --lanes 2 --simd 4 "
                                  "--gru-lanes 2".split())
    check_verilog(design)
    names = [port.name for port in ports(design)]
    assert names[:2] == ["aclk", "aresetn"] and "m_axi_araddr" in names and "clk" not in names


def test_a_port_the_document_does_not_have_is_found():
    design = engine_design("gru")
    text = "module gru(clk);\n  input clk;\n  input [1:0] extra;\nendmodule\n"
    with pytest.raises(ValueError, match="disagree on ports"):
        check_verilog(design, text)


def test_verilog_ports_reads_directions_widths_and_signedness():
    text = ("module other(a);\n  input [7:0] a;\nendmodule\n"
            "module unit(a, b, c);\n  input clk;\n  input signed [15:0] g__payload;\n  output [129:0] w__payload;\n"
            "  reg [3:0] r = 4'h0;\nendmodule\n")
    assert verilog_ports(text, "unit") == {"clk": ("input", 1, False), "g__payload": ("input", 16, True),
                                           "w__payload": ("output", 130, False)}
    with pytest.raises(ValueError, match="no module 'missing'"):
        verilog_ports(text, "missing")


def test_payload_fields_are_lanes_enums_and_bits():
    rows = fields(command_layout(16, 8))
    assert [(row.name, row.offset, row.width, row.lanes) for row in rows] == [
        ("data[j]", 0, 16, 8), ("kind", 128, 2, 1), ("first", 130, 1, 1), ("last", 131, 1, 1)]
    assert rows[1].shape is GruCommand
    text = render(engine_design("gru"))
    assert "| `cmd__payload[16*j+15:16*j]`, j = 0..7 | `data[j]` | 16 | signed |" in text
    assert "| `cmd__payload[129:128]` | `kind` | 2 | enum `GruCommand`: 0 `STEP`, 1 `STATE`, 2 `BIAS` |" in text
    assert "    .cmd__payload     (cmd__payload)," in text


def test_every_port_must_be_described():
    design = engine_design("gemm")
    notes = dict(design.notes)
    del notes["error"]
    with pytest.raises(ValueError, match="port 'error' matches 0 notes"):
        ports(design.__class__(**{**design.__dict__, "notes": notes}))
    with pytest.raises(ValueError, match="note 'gone' describes no port"):
        ports(design.__class__(**{**design.__dict__, "notes": {**design.notes, "gone": "..."}}))
