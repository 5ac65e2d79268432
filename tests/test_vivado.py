# amaranth: UnusedElaboratable=no
"""boards.vivado: the PYNQ-Z1 build folder: contents, tcl lint and syntax, referenced files, build.sh, atomicity."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wavefabric.boards import vivado
from wavefabric.boards.samplernn_top import SampleRNNTopConfig
from wavefabric.boards.top import GruTopConfig
from wavefabric.cli import main
from wavefabric.model.files import MANIFEST
from wavefabric.model.pwg import PWGConfig
from wavefabric.model.pwg import random_state_dict as random_pwg_state
from wavefabric.model.samplernn import SampleRNNConfig, random_state_dict

CONFIG = GruTopConfig(3, 4, layers=1, lanes=2, simd=2)
FILES = ["README.md", "build.sh", "build.tcl", "gru.regmap.json", "wavefabric_gru.v"]


def listing(folder: Path) -> list[str]:
    """The files of a build folder, without wavefabric's manifest."""
    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vivado") / "overlay"
    assert vivado.write_build(CONFIG, folder, "gru") == FILES
    return folder


def test_folder_contents(build):
    assert listing(build) == FILES
    assert os.access(build / "build.sh", os.X_OK)
    assert "module wavefabric_gru(" in (build / "wavefabric_gru.v").read_text()
    assert json.loads((build / "gru.regmap.json").read_text())["vlnv"] == "xilinx.com:module_ref:wavefabric_gru:1.0"


def test_tcl_passes_tclint(build):
    tclint = shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))
    if tclint is None:
        pytest.skip("tclint is not installed (pip install wavefabric[test])")
    proc = subprocess.run([tclint, str(build / "build.tcl")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tcl_is_complete_for_tclsh(build):
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("no tclsh")
    script = "set f [open [lindex $argv 0]]; puts [info complete [read $f]]"
    proc = subprocess.run([tclsh], input=script.replace("[lindex $argv 0]", f"{{{build / 'build.tcl'}}}"),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "1"


def test_shell_script_syntax(build):
    subprocess.run(["sh", "-n", str(build / "build.sh")], check=True)


def test_every_referenced_input_exists(build):
    tcl = (build / "build.tcl").read_text()
    inputs = re.findall(r"^(?:add_files|read_verilog|read_xdc|source)\b.*\[file join \$script_dir ([^\]\s]+)\]",
                        tcl, re.MULTILINE)
    assert inputs == ["wavefabric_gru.v"]
    assert all((build / name).is_file() for name in inputs)
    sh = (build / "build.sh").read_text()
    assert re.findall(r"-source (\S+)", sh) == ["build.tcl"]


def test_tcl_configures_the_pynq_z1_overlay(build):
    tcl = (build / "build.tcl").read_text()
    for line in [
        "create_project -force $overlay_name [file join $script_dir project] -part xc7z020clg400-1",
        "CONFIG.PCW_UIPARAM_DDR_PARTNO {MT41J256M16 RE-125}",
        "CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH {16 Bit}",
        "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {100}",
        "CONFIG.PCW_USE_M_AXI_GP0 {1}",
        "CONFIG.PCW_USE_S_AXI_HP0 {1}",
        "CONFIG.c_include_sg {0}",
        "CONFIG.c_sg_length_width {26}",
        f"CONFIG.c_m_axis_mm2s_tdata_width {{{CONFIG.tdata_width}}}",
        f"CONFIG.c_s_axis_s2mm_tdata_width {{{CONFIG.tdata_width}}}",
        "set accel [create_bd_cell -type module -reference $top accel]",
        "set top wavefabric_gru",
        "connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]",
        "connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins dma/S_AXIS_S2MM]",
        "assign_bd_address",
        "validate_bd_design",
        "set wrapper [make_wrapper -files [get_files $design_name.bd] -top -force]",
        "launch_runs impl_1 -to_step write_bitstream -jobs $jobs",
        "set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]",
    ]:
        assert line in tcl.splitlines() or line in tcl, line
    assert re.search(r"if \{\$wns eq \"\" \|\| \$wns < 0.*\n.*\n\s+exit 1", tcl)
    assert tcl.count("smartconnect") == 1 and tcl.count("axi_interconnect") == 1


def _fake_vivado(bin_dir: Path, handoff: str) -> None:
    """A ``vivado`` that leaves the files a real run would, the .hwh under ``handoff`` (``gen`` or ``srcs``)."""
    script = bin_dir / "vivado"
    script.write_text(f"""#!/bin/sh
echo "$@" > vivado.args
mkdir -p project/gru.runs/impl_1 project/gru.{handoff}/sources_1/bd/gru_bd/hw_handoff
echo bit > project/gru.runs/impl_1/gru_bd_wrapper.bit
echo hwh > project/gru.{handoff}/sources_1/bd/gru_bd/hw_handoff/gru_bd.hwh
""")
    script.chmod(0o755)


@pytest.mark.parametrize("handoff", ["gen", "srcs"])
def test_build_sh_collects_bit_and_hwh_from_either_place(build, tmp_path, handoff, monkeypatch):
    folder = tmp_path / "copy"
    shutil.copytree(build, folder)
    _fake_vivado(tmp_path, handoff)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    vivado.run_build(folder, jobs=2)
    assert (folder / "gru.bit").read_text() == "bit\n" and (folder / "gru.hwh").read_text() == "hwh\n"
    assert (folder / "vivado.args").read_text().split() == [
        "-mode", "batch", "-nojournal", "-log", "vivado.log", "-source", "build.tcl", "-tclargs", "2"]


def test_build_sh_without_vivado(build, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    proc = subprocess.run(["/bin/sh", str(build / "build.sh")], capture_output=True, text=True)
    assert proc.returncode == 127 and "vivado is not on PATH" in proc.stderr
    with pytest.raises(OSError, match="vivado is not on PATH"):
        vivado.run_build(build)


def test_folder_is_replaced_atomically(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    vivado.write_build(CONFIG, folder, "gru")
    vivado.write_build(CONFIG, folder, "gru2")   # an earlier build of wavefabric's is replaced whole
    assert "gru2.regmap.json" in listing(folder) and "gru.regmap.json" not in listing(folder)
    vivado.write_build(CONFIG, folder, "gru")
    assert listing(folder) == FILES
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vivado, "build_sh", fail)
    with pytest.raises(KeyboardInterrupt):
        vivado.write_build(CONFIG, folder, "gru")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]   # no temporary folder left


def test_bad_names():
    with pytest.raises(ValueError, match="name must be letters"):
        vivado.write_build(CONFIG, "/tmp/never", "my overlay")
    with pytest.raises(OSError, match="does not exist"):
        vivado.write_build(CONFIG, "/nonexistent/folder/out", "gru")


def test_cli_build_and_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "b"
    assert main(["build", "pynq-z1", "--design", "gru", "--input", "3", "--hidden", "4", "--lanes", "2",
                 "--simd", "2", "--name", "gru", "-o", str(out)]) == 0
    assert listing(out) == FILES
    assert "build.sh" in capsys.readouterr().out

    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["build", "pynq-z1", "--design", "gru", "--run", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vivado is not on PATH" in err
    assert not (tmp_path / "c").exists()   # checked before anything is written
    assert main(["build", "pynq-z1", "--design", "gru", "--simd", "65", "--lanes", "1", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "legal simd is 1 to 64" in err
    assert main(["build", "pynq-z1", "--design", "fpga", "-o", str(out)]) == 2


def test_cli_build_runs_vivado(tmp_path, monkeypatch, capsys):
    _fake_vivado(tmp_path, "gen")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "b"
    assert main(["build", "pynq-z1", "--design", "gru", "--input", "3", "--hidden", "4", "--lanes", "2",
                 "--simd", "2", "--name", "gru", "--run", "--jobs", "3", "-o", str(out)]) == 0
    assert (out / "gru.bit").exists() and (out / "gru.hwh").exists()


def test_cli_synth_pynq_z1_json(capsys):
    assert main(["synth", "pynq-z1", "--design", "gru", "--input", "3", "--hidden", "4", "--lanes", "2",
                 "--simd", "2", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["top"] == "wavefabric_gru" and counts["device"] == "xc7z020"
    assert counts["dsp48e1"] == 4  # the engine's P x S multipliers; the AXI wrapper adds none
    assert 0 < counts["lut"] < 5000 and counts["ff"] > 0 and counts["share"]["dsp48e1"] == 4 / 220


def test_readme_register_table_has_four_cells_per_row(build):
    rows = [line for line in (build / "README.md").read_text().splitlines() if line.startswith("| `")]
    assert len(rows) > 10 and all(len(re.split(r"(?<!\\)\|", row)) == 6 for row in rows)


SAMPLERNN = SampleRNNTopConfig(SampleRNNConfig(frame_sizes=(2,), n_rnn=1, dim=3, q_levels=2), lanes=2, simd=4,
                               gru_lanes=2)
SAMPLERNN_FILES = ["README.md", "build.sh", "build.tcl", "srnn.regmap.json", "srnn.weights.npz",
                   "wavefabric_samplernn.v"]


@pytest.fixture(scope="module")
def samplernn_build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vivado") / "srnn"
    state = random_state_dict(SAMPLERNN.network, 1)
    assert vivado.write_build(SAMPLERNN, folder, "srnn", "samplernn", weights=state) == SAMPLERNN_FILES
    return folder


def test_samplernn_tcl_connects_the_ddr_reader_and_lints_clean(samplernn_build):
    tcl = (samplernn_build / "build.tcl").read_text()
    for line in [
        "set top wavefabric_samplernn",
        "set_property -dict [list CONFIG.NUM_SI {3} CONFIG.NUM_MI {1}] $mem_sc",
        "connect_bd_intf_net [get_bd_intf_pins accel/m_axi] [get_bd_intf_pins mem_sc/S02_AXI]",
        "set hp0_ddr [get_bd_addr_segs ps7/S_AXI_HP0/HP0_DDR_LOWOCM]",
        "    -target_address_space [get_bd_addr_spaces accel/m_axi] $hp0_ddr",
        "    -target_address_space [get_bd_addr_spaces dma/Data_MM2S] $hp0_ddr",
        "    CONFIG.c_m_axis_mm2s_tdata_width {64} \\",
        "    CONFIG.c_s_axis_s2mm_tdata_width {32} \\",
    ]:
        assert line in tcl.splitlines(), line
    assert tcl.count("assign_bd_address -offset 0x00000000 -range 0x20000000") == 3
    tclint = shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))
    if tclint is None:
        pytest.skip("tclint is not installed (pip install wavefabric[test])")
    proc = subprocess.run([tclint, str(samplernn_build / "build.tcl")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_samplernn_folder_holds_what_the_board_needs(samplernn_build):
    regmap = json.loads((samplernn_build / "srnn.regmap.json").read_text())
    assert regmap["vlnv"] == "xilinx.com:module_ref:wavefabric_samplernn:1.0" and regmap["design"] == "samplernn"
    with np.load(samplernn_build / "srnn.weights.npz") as arrays:
        assert dict(arrays).keys() == random_state_dict(SAMPLERNN.network, 1).keys()
    readme = (samplernn_build / "README.md").read_text()
    assert 'synth.load("srnn.weights.npz")' in readme and "SampleRNNOverlay" in readme
    assert "module wavefabric_samplernn(" in (samplernn_build / "wavefabric_samplernn.v").read_text()


def test_cli_build_samplernn_with_a_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    sizes = "--frame-sizes 2 --n-rnn 1 --dim 3 --q-levels 2 --lanes 2 --simd 4 --gru-lanes 2".split()
    checkpoint = tmp_path / "model.pt"
    torch.save({f"model.{k}": torch.from_numpy(v) for k, v in random_state_dict(SAMPLERNN.network, 1).items()},
               checkpoint)
    out = tmp_path / "b"
    assert main(["build", "pynq-z1", "--design", "samplernn", *sizes, "--checkpoint", str(checkpoint),
                 "-o", str(out)]) == 0
    assert listing(out) == sorted(name.replace("srnn", "wavefabric_samplernn") for name in SAMPLERNN_FILES)
    tclint = shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))
    if tclint is not None:   # the default names are the longest in the comments
        proc = subprocess.run([tclint, str(out / "build.tcl")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    other = tmp_path / "other.pt"
    torch.save({k: torch.from_numpy(v) for k, v in random_state_dict(SampleRNNConfig(frame_sizes=(2,), n_rnn=1,
                                                                                    dim=4, q_levels=2), 1).items()},
               other)
    capsys.readouterr()
    assert main(["build", "pynq-z1", "--design", "samplernn", *sizes, "--checkpoint", str(other),
                 "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit these sizes" in err and not (tmp_path / "c").exists()


def test_samplernn_with_audio_out_constrains_the_audio_pins(tmp_path):
    config = SampleRNNTopConfig(SAMPLERNN.network, lanes=2, simd=4, gru_lanes=2, audio_out=True)
    folder = tmp_path / "play"
    assert vivado.write_build(config, folder, "play", "samplernn") == [
        "README.md", "audio.xdc", "build.sh", "build.tcl", "play.regmap.json", "wavefabric_samplernn.v"]
    tcl = (folder / "build.tcl").read_text()
    assert re.findall(r"^add_files .*\[file join \$script_dir (\S+)\]", tcl, re.MULTILINE) == [
        "wavefabric_samplernn.v", "audio.xdc"]
    for line in ("create_bd_intf_port -mode Master -vlnv xilinx.com:interface:gpio_rtl:1.0 audio_pwm",
                 "connect_bd_net [get_bd_pins accel/audio_sd] [get_bd_ports audio_sd]"):
        assert line in tcl.splitlines(), line
    xdc = (folder / "audio.xdc").read_text()
    assert "PACKAGE_PIN R18" in xdc and "[get_ports audio_pwm_tri_io]" in xdc and "PACKAGE_PIN T17" in xdc
    tclint = shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))
    if tclint is not None:
        proc = subprocess.run([tclint, str(folder / "build.tcl")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


PWG_SIZES = ("--residual 8 --gate 16 --skip 8 --aux 4 --layers 2 --stacks 2 --upsample-scales 2 2 "
             "--aux-context-window 1 --rows 4 --cols 4 --max-frames 6").split()
PWG_NET = PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=4, layers=2, stacks=2,
                    upsample_scales=(2, 2), aux_context_window=1)


def _tclint(path: Path) -> None:
    tclint = shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))
    if tclint is None:
        pytest.skip("tclint is not installed (pip install wavefabric[test])")
    proc = subprocess.run([tclint, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def pwg_built(test):
    """PWG engines built for their sizes only (the import-time filter of boards.pwg_top does not outlive pytest's
    collection): no warning about them, and they are collected before the next test."""
    return pytest.mark.usefixtures("collect_components")(
        pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")(test))


@pwg_built
def test_cli_build_pwg_puts_each_ddr_manager_on_an_hp_port(tmp_path, capsys):
    """build pynq-z1 --design pwg: the accelerator's m_axi_x beside the DMA on HP0 (a SmartConnect), m_axi_skip
    alone on HP1 (a second one), each manager's DDR address map assigned; the tcl lints clean."""
    out = tmp_path / "voc"
    assert main(["build", "pynq-z1", "--design", "pwg", *PWG_SIZES, "--name", "voc", "-o", str(out)]) == 0
    assert "voc.regmap.json" in capsys.readouterr().out
    assert listing(out) == ["README.md", "build.sh", "build.tcl", "voc.regmap.json", "wavefabric_pwg.v"]
    tcl = (out / "build.tcl").read_text().splitlines()
    for line in [
        "set top wavefabric_pwg",
        "    CONFIG.PCW_USE_S_AXI_HP1 {1} \\",
        "    CONFIG.PCW_S_AXI_HP1_DATA_WIDTH {64} \\",
        "set_property -dict [list CONFIG.NUM_SI {3} CONFIG.NUM_MI {1}] $mem_sc",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $mem_sc1",
        "connect_bd_intf_net [get_bd_intf_pins accel/m_axi_x] [get_bd_intf_pins mem_sc/S02_AXI]",
        "connect_bd_intf_net [get_bd_intf_pins accel/m_axi_skip] [get_bd_intf_pins mem_sc1/S00_AXI]",
        "connect_bd_intf_net [get_bd_intf_pins mem_sc1/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP1]",
        "set hp1_ddr [get_bd_addr_segs ps7/S_AXI_HP1/HP1_DDR_LOWOCM]",
        "    -target_address_space [get_bd_addr_spaces accel/m_axi_x] $hp0_ddr",
        "    -target_address_space [get_bd_addr_spaces accel/m_axi_skip] $hp1_ddr",
        "    [get_bd_pins ps7/S_AXI_HP1_ACLK] \\",
        "    [get_bd_pins mem_sc1/aresetn] \\",
        "    CONFIG.c_m_axis_mm2s_tdata_width {64} \\",
        "    CONFIG.c_s_axis_s2mm_tdata_width {64} \\",
    ]:
        assert line in tcl, line
    regmap = json.loads((out / "voc.regmap.json").read_text())
    assert regmap["design"] == "pwg" and regmap["vlnv"] == "xilinx.com:module_ref:wavefabric_pwg:1.0"
    assert "PWGOverlay" in (out / "README.md").read_text()
    _tclint(out / "build.tcl")


@pwg_built
def test_cli_build_pwg_with_a_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    checkpoint = tmp_path / "checkpoint.pkl"
    state = random_pwg_state(PWG_NET, 1)
    torch.save({"model": {"generator": {k: torch.from_numpy(v) for k, v in state.items()}}}, checkpoint)
    out = tmp_path / "b"
    assert main(["build", "pynq-z1", "--design", "pwg", *PWG_SIZES, "--checkpoint", str(checkpoint),
                 "-o", str(out)]) == 0
    with np.load(out / "wavefabric_pwg.weights.npz") as arrays:
        assert sorted(arrays) == sorted(PWG_NET.tensor_shapes())
    _tclint(out / "build.tcl")   # the default names are the longest in the comments
    capsys.readouterr()
    other = [*PWG_SIZES[:8], "--layers", "4", *PWG_SIZES[10:]]
    assert main(["build", "pynq-z1", "--design", "pwg", *other, "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit these sizes" in err and not (tmp_path / "c").exists()


@pwg_built
@pytest.mark.parametrize("argv, message", [
    (["build", "--store", "ddr"], "--store does not apply to --design pwg (the overlay keeps the activations in DDR)"),
    (["build", "--cols", "3"], "cols must be a power of two dividing hop = 4"),
    (["build", "--audio-out"], "--audio-out does not apply to --design pwg"),
    (["build", "--frame-sizes", "4"], "--frame-sizes does not apply to --design pwg"),
    (["synth", "--max-frames", "1"], "max_frames must be an integer >= 2"),
])
def test_cli_pwg_refuses_bad_options_in_one_line(argv, message, tmp_path, capsys):
    command, *options = argv
    output = ["-o", str(tmp_path / "b")] if command == "build" else []
    assert main([command, "pynq-z1", "--design", "pwg", *PWG_SIZES, *options, *output]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "b").exists()
