"""sim.axi: the AXI4-Stream view that lets the stream helpers drive TDATA/TLAST."""

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from wavefabric.sim.axi import AxisView


def test_axis_view_packs_tdata_and_tlast():
    axis = type("Axis", (), {"tdata": Signal(16), "tvalid": Signal(), "tready": Signal(), "tlast": Signal()})()
    view = AxisView(axis)
    assert view.beat(0x1234, True) == 0x11234
    assert view.split(0x11234) == (0x1234, True) and view.split(0xBEEF) == (0xBEEF, False)
    assert (view.valid, view.ready) == (axis.tvalid, axis.tready)

    async def testbench(ctx):
        ctx.set(view.payload, view.beat(0xABCD, True))
        assert (ctx.get(axis.tdata), ctx.get(axis.tlast)) == (0xABCD, 1)

    m = Module()
    m.d.comb += Signal(17).eq(view.payload)  # a design that reads the view
    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
