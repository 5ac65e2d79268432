"""Vivado project generation for a PYNQ-Z1 overlay around an accelerator top on the AXI shell.

A design is given by its configuration (:class:`~.top.GruTopConfig`, :class:`~.samplernn_top.SampleRNNTopConfig`,
:class:`~.pwg_top.PWGTopConfig`): ``name`` (the top's module), ``top()``, ``register_map()`` and ``mm2s_width`` /
``s2mm_width`` (the DMA's streams); the top's AXI4 managers (:func:`~.shell.ddr_managers`) reach the PS DDR.
:func:`write_build` writes a build folder, atomically (it appears whole or not at all):

* ``<top>.v``: the accelerator top in Verilog (:func:`~wavefabric.sim.export.to_verilog`, no source locations).
* ``<name>.regmap.json``: the register map and stream protocol; the driver's input.
* ``<name>.weights.npz`` (SampleRNN and PWG, with a checkpoint): the weights as NumPy arrays, which the driver
  loads without torch.
* ``build.tcl``: Vivado batch script: a project for xc7z020clg400-1; a block design with processing_system7
  configured for the PYNQ-Z1 by explicit ``CONFIG.PCW_*`` properties (DDR3 MT41J256M16 RE-125, 16-bit, 525 MHz,
  the board's DDR delays and MIO peripherals, FCLK0 100 MHz, M_AXI_GP0, S_AXI_HP0 64-bit), an AXI DMA in
  simple mode (no scatter-gather, 26-bit length register, stream widths = the top's TDATA), an AXI interconnect
  for the control ports, a SmartConnect from the DMA (and the accelerator's first AXI4 manager) to HP0, one more
  SmartConnect per further manager to HP1, HP2... (the HP ports map the same DDR addresses, so one SmartConnect
  could not route to two of them; and each manager gets an HP port's bandwidth), a processor system reset, and
  the accelerator as a module reference (VLNV ``xilinx.com:module_ref:<top>:1.0``); the address map (control
  registers, and every manager's view of the DDR through its HP port), ``validate_bd_design``,
  the HDL wrapper, synthesis, implementation, bitstream, and a timing check that exits 1 when WNS or WHS < 0.
* ``build.sh``: runs ``vivado -mode batch -source build.tcl`` and puts ``<name>.bit`` and ``<name>.hwh`` side by
  side (the ``.hwh`` from ``<project>.gen/sources_1/bd/*/hw_handoff/`` (Vivado 2020.2+) or
  ``<project>.srcs/...`` (older)), as PYNQ's ``Overlay("<name>.bit")`` expects.
* ``README.md``: what the folder holds and how to use it.

No XDC is needed unless the design drives PL pins (DDR and MIO belong to the PS, the clock is FCLK0, which the
PS7 IP constrains itself): a SampleRNN design with ``audio_out`` plays on the board's PWM audio output, and its
folder holds ``audio.xdc`` with those two pins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..model.files import atomic_folder, atomic_write
from .pwg_top import PWGTopConfig
from .samplernn_top import SampleRNNTopConfig
from .shell import ddr_managers, vlnv
from .top import write_register_map

__all__ = ["PART", "PS7_PYNQ_Z1", "CONTROL_BASE", "DMA_BASE", "DDR_BASE", "DDR_RANGE", "dma_properties",
           "build_tcl", "build_sh", "write_build", "make_executable", "require_vivado", "run_build"]

PART = "xc7z020clg400-1"
#: Fabric clock FCLK0 in MHz: the accelerator, the DMA and the interconnects run on it.
FCLK0_MHZ = 100
#: Addresses of the control registers as the PS sees them (PYNQ's usual places for a DMA and an HLS block).
DMA_BASE, CONTROL_BASE = 0x4040_0000, 0x43C0_0000
#: Bits of the AXI DMA's transfer length register (transfers up to 64 MiB - 1).
DMA_LENGTH_BITS = 26
#: The PS DDR as the PL's managers see it through S_AXI_HP0: the PYNQ-Z1's 512 MiB from address 0.
DDR_BASE, DDR_RANGE = 0x0000_0000, 0x2000_0000

#: processing_system7 configuration of the PYNQ-Z1: the DDR3 and MIO wiring of the board (the values of
#: PYNQ's own Pynq-Z1 sources: the MT41J256M16 RE-125 part; MT41K256M16 belongs to the Arty Z7 / PYNQ-Z2
#: scripts), plus the interfaces the overlay uses.
PS7_PYNQ_Z1: dict[str, str] = {
    "PCW_PRESET_BANK0_VOLTAGE": "LVCMOS 3.3V",
    "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
    "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
    "PCW_APU_PERIPHERAL_FREQMHZ": "650",
    "PCW_UIPARAM_DDR_ENABLE": "1",
    "PCW_UIPARAM_DDR_MEMORY_TYPE": "DDR 3",
    "PCW_UIPARAM_DDR_PARTNO": "MT41J256M16 RE-125",
    "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
    "PCW_UIPARAM_DDR_FREQ_MHZ": "525",
    "PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL": "1",
    "PCW_UIPARAM_DDR_TRAIN_READ_GATE": "1",
    "PCW_UIPARAM_DDR_TRAIN_DATA_EYE": "1",
    "PCW_UIPARAM_DDR_USE_INTERNAL_VREF": "0",
    "PCW_UIPARAM_DDR_BOARD_DELAY0": "0.223",
    "PCW_UIPARAM_DDR_BOARD_DELAY1": "0.212",
    "PCW_UIPARAM_DDR_BOARD_DELAY2": "0.085",
    "PCW_UIPARAM_DDR_BOARD_DELAY3": "0.092",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0": "0.040",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1": "0.058",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2": "-0.009",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3": "-0.033",
    "PCW_QSPI_PERIPHERAL_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_ENABLE": "1",
    "PCW_QSPI_GRP_FBCLK_ENABLE": "1",
    "PCW_ENET0_PERIPHERAL_ENABLE": "1",
    "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
    "PCW_ENET0_GRP_MDIO_ENABLE": "1",
    "PCW_ENET0_GRP_MDIO_IO": "MIO 52 .. 53",
    "PCW_ENET0_RESET_ENABLE": "1",
    "PCW_ENET0_RESET_IO": "MIO 9",
    "PCW_SD0_PERIPHERAL_ENABLE": "1",
    "PCW_SD0_SD0_IO": "MIO 40 .. 45",
    "PCW_SD0_GRP_CD_ENABLE": "1",
    "PCW_SD0_GRP_CD_IO": "MIO 47",
    "PCW_UART0_PERIPHERAL_ENABLE": "1",
    "PCW_UART0_UART0_IO": "MIO 14 .. 15",
    "PCW_UART0_BAUD_RATE": "115200",
    "PCW_USB0_PERIPHERAL_ENABLE": "1",
    "PCW_USB0_USB0_IO": "MIO 28 .. 39",
    "PCW_USB0_RESET_ENABLE": "1",
    "PCW_USB0_RESET_IO": "MIO 46",
    "PCW_GPIO_MIO_GPIO_ENABLE": "1",
    "PCW_GPIO_MIO_GPIO_IO": "MIO",
    "PCW_FPGA_FCLK0_ENABLE": "1",
    "PCW_EN_CLK0_PORT": "1",
    "PCW_EN_RST0_PORT": "1",
    "PCW_FPGA0_PERIPHERAL_FREQMHZ": str(FCLK0_MHZ),
    "PCW_USE_M_AXI_GP0": "1",
    "PCW_USE_S_AXI_HP0": "1",
    "PCW_S_AXI_HP0_DATA_WIDTH": "64",
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be letters, digits and underscores, not starting with a digit, not {name!r}")
    return name


def _properties(props: dict[str, str], indent: str) -> str:
    return " \\\n".join(f"{indent}CONFIG.{key} {{{value}}}" for key, value in props.items())


def _pins(pins) -> str:
    """``[get_bd_pins ...]`` of each of ``pins``, one per continued line."""
    return " \\\n".join(f"    [get_bd_pins {pin}]" for pin in pins)


def dma_properties(mm2s_width: int, s2mm_width: int) -> dict[str, str]:
    """AXI DMA 7.1 in simple (register direct) mode, each channel as wide as the accelerator's stream."""
    return {
        "c_include_sg": "0",
        "c_sg_length_width": str(DMA_LENGTH_BITS),
        "c_include_mm2s": "1",
        "c_include_s2mm": "1",
        "c_m_axi_mm2s_data_width": str(mm2s_width),
        "c_m_axis_mm2s_tdata_width": str(mm2s_width),
        "c_m_axi_s2mm_data_width": str(s2mm_width),
        "c_s_axis_s2mm_tdata_width": str(s2mm_width),
        "c_mm2s_burst_size": "16",
        "c_s2mm_burst_size": "16",
    }


#: The block design's part of ``audio_out``: the PWM pin as an external tristate port (the HDL wrapper puts an IOBUF
#: on a gpio_rtl port: open drain) and the amplifier's shutdown pin.
_AUDIO_PORTS = """
# The PWM audio output: a tristate port (open drain: the board pulls R18 up), and the amplifier on.
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:gpio_rtl:1.0 audio_pwm
connect_bd_intf_net [get_bd_intf_pins accel/audio_pwm] [get_bd_intf_ports audio_pwm]
create_bd_port -dir O audio_sd
connect_bd_net [get_bd_pins accel/audio_sd] [get_bd_ports audio_sd]
"""
_AUDIO_XDC_FILE = "add_files -fileset constrs_1 -norecurse [file join $script_dir audio.xdc]\n"
#: The pins of the PYNQ-Z1's audio output (Digilent's master XDC; see boards/pynq_z1.py).
AUDIO_XDC = """\
# Generated by wavefabric: the PYNQ-Z1's mono audio output. R18 is the PWM (open drain: the board pulls it up to
# its analog 3.3 V), T17 the amplifier's active-low shutdown.
set_property -dict {PACKAGE_PIN R18 IOSTANDARD LVCMOS33} [get_ports audio_pwm_tri_io]
set_property -dict {PACKAGE_PIN T17 IOSTANDARD LVCMOS33} [get_ports audio_sd]
"""


def _ddr_assignments(spaces, port: int) -> str:
    """``assign_bd_address`` of the HP ``port`` DDR segment in each address space of ``spaces``."""
    return "\n".join(f"assign_bd_address -offset {DDR_BASE:#010x} -range {DDR_RANGE:#010x} \\\n"
                     f"    -target_address_space [get_bd_addr_spaces {space}] $hp{port}_ddr" for space in spaces)


def _hp_ports(managers: list[str]) -> list[list[str]]:
    """The managers on each HP port: the DMA's two and the accelerator's first on HP0, every further one alone on
    HP1, HP2... (at most four ports)."""
    if len(managers) > 4:
        raise ValueError(f"the accelerator has {len(managers)} AXI4 managers; the PS7 has 4 HP ports")
    return [["dma/M_AXI_MM2S", "dma/M_AXI_S2MM"] + [f"accel/{name}" for name in managers[:1]]] + \
        [[f"accel/{name}"] for name in managers[1:]]


def build_tcl(config, name: str, accelerator=None) -> str:
    """The Vivado batch script that builds overlay ``name`` around ``config``'s top (see the module docstring).

    ``accelerator`` is the configuration's top if at hand (its AXI4 managers are read; by default one is built).
    The script reads only ``<top>.v`` from its own folder and writes the project to ``project/``; the optional
    first argument (``-tclargs N``) is the number of parallel jobs (default 4).
    """
    _check_name(name)
    top, bd = config.name, f"{name}_bd"
    ports = _hp_ports(ddr_managers((config.top() if accelerator is None else accelerator).core))
    smartconnects = ["mem_sc"] + [f"mem_sc{port}" for port in range(1, len(ports))]
    ps7 = PS7_PYNQ_Z1 | {key: value for port in range(1, len(ports))
                         for key, value in ((f"PCW_USE_S_AXI_HP{port}", "1"), (f"PCW_S_AXI_HP{port}_DATA_WIDTH", "64"))}
    audio = getattr(config, "audio_out", False)
    smartconnect_cells = "\n".join(
        f"set {sc} [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 {sc}]\n"
        f"set_property -dict [list CONFIG.NUM_SI {{{len(pins)}}} CONFIG.NUM_MI {{1}}] ${sc}"
        for sc, pins in zip(smartconnects, ports, strict=True))
    to_hp = "\n".join(
        [f"connect_bd_intf_net [get_bd_intf_pins {pin}] [get_bd_intf_pins {sc}/S{i:02d}_AXI]"
         for sc, pins in zip(smartconnects, ports, strict=True) for i, pin in enumerate(pins)]
        + [f"connect_bd_intf_net [get_bd_intf_pins {sc}/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP{port}]"
           for port, sc in enumerate(smartconnects)])
    spaces = [[{"dma/M_AXI_MM2S": "dma/Data_MM2S", "dma/M_AXI_S2MM": "dma/Data_S2MM"}.get(pin, pin) for pin in pins]
              for pins in ports]
    ddr = "\n".join(f"set hp{port}_ddr [get_bd_addr_segs ps7/S_AXI_HP{port}/HP{port}_DDR_LOWOCM]\n"
                     + _ddr_assignments(port_spaces, port) for port, port_spaces in enumerate(spaces))
    clocks = _pins((
        "ps7/FCLK_CLK0", "ps7/M_AXI_GP0_ACLK", *(f"ps7/S_AXI_HP{port}_ACLK" for port in range(len(ports))),
        "rst/slowest_sync_clk", "ctrl_ic/ACLK", "ctrl_ic/S00_ACLK", "ctrl_ic/M00_ACLK", "ctrl_ic/M01_ACLK",
        *(f"{sc}/aclk" for sc in smartconnects), "dma/s_axi_lite_aclk", "dma/m_axi_mm2s_aclk",
        "dma/m_axi_s2mm_aclk", "accel/aclk"))
    resets = _pins((
        "rst/peripheral_aresetn", "ctrl_ic/S00_ARESETN", "ctrl_ic/M00_ARESETN", "ctrl_ic/M01_ARESETN",
        *(f"{sc}/aresetn" for sc in smartconnects), "dma/axi_resetn", "accel/aresetn"))
    hp = "S_AXI_HP0" if len(ports) == 1 else f"S_AXI_HP0-{len(ports) - 1}"
    return f"""\
# Generated by wavefabric: the {top} accelerator as a PYNQ-Z1 overlay.
# Run from any folder: vivado -mode batch -source build.tcl [-tclargs JOBS]
# (build.sh does, and collects {name}.bit and {name}.hwh).
# Part {PART}; no board files needed: the PS7 is configured property by property.

set script_dir [file dirname [file normalize [info script]]]
set overlay_name {name}
set design_name {bd}
set top {top}
set jobs 4
if {{$argc > 0}} {{
    set jobs [lindex $argv 0]
}}

create_project -force $overlay_name [file join $script_dir project] -part {PART}
add_files -norecurse [file join $script_dir {top}.v]
{_AUDIO_XDC_FILE if audio else ""}update_compile_order -fileset sources_1

create_bd_design $design_name

# Zynq PS: the PYNQ-Z1's DDR3 and MIO, FCLK0 {FCLK0_MHZ} MHz, M_AXI_GP0 (control),
# {hp} (DMA and accelerator data).
set ps7 [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7]
set_property -dict [list \\
{_properties(ps7, "    ")} \\
] $ps7
set ps7_rule {{make_external "FIXED_IO, DDR" apply_board_preset "0" Master "Disable" Slave "Disable"}}
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config $ps7_rule $ps7

# AXI DMA in simple mode; the S2MM channel completes a transfer on TLAST.
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 dma]
set_property -dict [list \\
{_properties(dma_properties(config.mm2s_width, config.s2mm_width), "    ")} \\
] $dma

# The accelerator, from {top}.v: VLNV {vlnv(top)}.
set accel [create_bd_cell -type module -reference $top accel]

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 rst]
set ctrl_ic [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect:2.1 ctrl_ic]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{2}}] $ctrl_ic
{smartconnect_cells}

connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins ctrl_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ctrl_ic/M00_AXI] [get_bd_intf_pins dma/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins ctrl_ic/M01_AXI] [get_bd_intf_pins accel/s_axi_ctrl]
{to_hp}
connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]
connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins dma/S_AXIS_S2MM]
{_AUDIO_PORTS if audio else ""}
connect_bd_net \\
{clocks}
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst/ext_reset_in]
connect_bd_net [get_bd_pins rst/interconnect_aresetn] [get_bd_pins ctrl_ic/ARESETN]
connect_bd_net \\
{resets}

# Control registers where PYNQ users expect them; each manager sees the DDR through its HP port.
set ps_data [get_bd_addr_spaces ps7/Data]
assign_bd_address -offset {DMA_BASE:#010x} -range 0x00010000 -target_address_space $ps_data \\
    [get_bd_addr_segs dma/S_AXI_LITE/Reg]
assign_bd_address -offset {CONTROL_BASE:#010x} -range 0x00010000 -target_address_space $ps_data \\
    [get_bd_addr_segs -of_objects [get_bd_intf_pins accel/s_axi_ctrl]]
{ddr}
assign_bd_address

validate_bd_design
save_bd_design

set wrapper [make_wrapper -files [get_files $design_name.bd] -top -force]
add_files -norecurse $wrapper
set_property top ${{design_name}}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{
    puts stderr "ERROR: synthesis of $overlay_name failed"
    exit 1
}}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
    puts stderr "ERROR: implementation of $overlay_name failed"
    exit 1
}}

# Timing: a bitstream that misses timing is not a result.
open_run impl_1
report_timing_summary -max_paths 10 -file [file join $script_dir timing_summary.rpt]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
puts "Timing: WNS $wns ns, WHS $whs ns"
if {{$wns eq "" || $wns < 0 || $whs eq "" || $whs < 0}} {{
    puts stderr "ERROR: $overlay_name does not meet timing (WNS $wns ns, WHS $whs ns)"
    exit 1
}}
puts "Timing met: WNS $wns ns"
exit 0
"""


def build_sh(name: str, design: str) -> str:
    """The shell script that runs ``build.tcl`` and puts ``<name>.bit`` and ``<name>.hwh`` beside it."""
    _check_name(name)
    bd = f"{name}_bd"
    return f"""\
#!/bin/sh
# Generated by wavefabric: builds the {design} overlay {name}.bit + {name}.hwh (+ {name}.regmap.json) for the
# PYNQ-Z1. Needs Vivado on PATH (source its settings64.sh). JOBS=N sets Vivado's parallel jobs (default 4).
set -eu
cd "$(dirname "$0")"
if ! command -v vivado >/dev/null 2>&1; then
    echo "build.sh: vivado is not on PATH (source Vivado's settings64.sh first)" >&2
    exit 127
fi
vivado -mode batch -nojournal -log vivado.log -source build.tcl -tclargs "${{JOBS:-4}}"

cp "project/{name}.runs/impl_1/{bd}_wrapper.bit" "{name}.bit"
# Vivado 2020.2 and later write the hardware handoff under .gen, older versions under .srcs.
hwh=""
for candidate in project/{name}.gen/sources_1/bd/*/hw_handoff/{bd}.hwh \\
                 project/{name}.srcs/sources_1/bd/*/hw_handoff/{bd}.hwh; do
    if [ -f "$candidate" ]; then
        hwh=$candidate
        break
    fi
done
if [ -z "$hwh" ]; then
    echo "build.sh: no {bd}.hwh under project/{name}.gen or project/{name}.srcs" >&2
    exit 1
fi
cp "$hwh" "{name}.hwh"
echo "build.sh: {name}.bit and {name}.hwh are ready (copy them with {name}.regmap.json to the board)"
"""


def _usage(config, name: str, files: list[str]) -> str:
    """The notebook cells that use the overlay, and a line on its streams."""
    if isinstance(config, PWGTopConfig):
        weights = f"{name}.weights.npz"
        load = (f'vocoder.load("{weights}")        # or a parallel-wavegan .pkl where torch is installed'
                if weights in files else
                'vocoder.load("weights.npz")  # a generator state dict as .npz: build with --checkpoint writes one')
        net = config.network
        return f"""\
```python
import numpy as np
from wavefabric.boards.driver import PWGOverlay
from wavefabric.model.audio import write_wav

vocoder = PWGOverlay("{name}.regmap.json")     # loads {name}.bit, checks its configuration registers
{load}
mel = np.load("mel.npy")                        # (frames, {net.aux_channels}), the package's normalised mel
pcm = vocoder.vocode(mel, seed=0)               # int16 at {net.sample_rate} Hz, {net.hop_size} samples per frame
write_wav("out.wav", pcm, vocoder.sample_rate)
```

Streams: `s_axis` {config.mm2s_width}-bit TDATA ({config.elements} x {config.element_bits}-bit values per beat;
frames behind header beats for the engine's streams: the table in a LOAD job, mel, noise and weights in each
VOCODE job of up to {config.max_frames} frames), `m_axis` {config.s2mm_width}-bit ({config.cols} PCM samples per
beat). The activations live in two DDR buffers the driver allocates ({config.ddr_bytes()["x"]:,} and
{config.ddr_bytes()["skip"]:,} bytes); the accelerator reads and writes them through `m_axi_x` (S_AXI_HP0) and
`m_axi_skip` (S_AXI_HP1)."""
    if isinstance(config, SampleRNNTopConfig):
        weights = f"{name}.weights.npz"
        load = (f'synth.load("{weights}")               # or a samplernn-pytorch .pt where torch is installed'
                if weights in files else
                'synth.load("weights.npz")  # a state dict as .npz: build with --checkpoint writes one; or a .pt')
        return f"""\
```python
from wavefabric.boards.driver import SampleRNNOverlay
from wavefabric.model.audio import write_wav

synth = SampleRNNOverlay("{name}.regmap.json")     # loads {name}.bit, checks its configuration registers
{load}
pcm = synth.generate(seconds=4, seed=0, temperature=1.0)   # int16 at {config.sample_rate} Hz
write_wav("out.wav", pcm, synth.sample_rate)
```

Streams: `s_axis` {config.mm2s_width}-bit TDATA ({config.simd} x {config.element_bits}-bit values per beat; a
LOAD job's frames), `m_axis` 32-bit (one sample per beat: PCM in bits 15:0, code in 31:16). The MLP input table
({config.layout.table_bytes:,} bytes) lives in a DDR buffer the driver allocates; the accelerator reads it
through `m_axi` and S_AXI_HP0."""
    return f"""\
```python
from pynq import Overlay
from wavefabric.boards.driver import GruIP  # binds {vlnv(config.name)}

overlay = Overlay("{name}.bit")
gru = overlay.accel.attach(overlay.dma, "{name}.regmap.json")
gru.load_weights(params)
gru.reset_state(h0)
h = gru.run_steps(xs)
```

Stream: {config.tdata_width}-bit TDATA, {config.simd} x {config.element_bits}-bit values per beat."""


def _readme(config, regmap: dict, name: str, design: str, files: list[str]) -> str:
    # A "|" inside a cell would end it: Markdown tables need it escaped.
    rows = "\n".join(f"| `{reg['offset']:#04x}` | {reg_name} | {reg['access']} | "
                     f"{reg['description'].replace('|', chr(92) + '|')} |"
                     for reg_name, reg in regmap["registers"].items())
    listing = ", ".join(f"`{file}`" for file in files)
    return f"""\
# {name}: the {design} accelerator as a PYNQ-Z1 overlay

Generated by `wavefabric build pynq-z1 --design {design}`. Build with `./build.sh` (Vivado on PATH); it leaves
`{name}.bit` and `{name}.hwh` here. On the board, with those and the other files below in one folder:

{_usage(config, name, files)}

Files: {listing}; `build.tcl` is the Vivado batch script (project, block design, implementation, timing check).
Control: AXI DMA at `{DMA_BASE:#010x}`, accelerator at `{CONTROL_BASE:#010x}`.

| offset | register | access | meaning |
|---|---|---|---|
{rows}
"""


def write_build(config, folder: str | os.PathLike, name: str = "wavefabric_gru", design: str = "gru",
                force: bool = False, weights=None) -> list[str]:
    """Write the build folder for overlay ``name`` (see the module docstring) atomically; return its file names.

    ``config`` is a design's configuration (the module docstring says what it offers); ``weights``, for a
    SampleRNN or PWG design, a state dict written as ``<name>.weights.npz`` (:func:`~.driver.write_weights`,
    :func:`~.driver.write_pwg_weights`). The folder
    is written by :func:`~wavefabric.model.files.atomic_folder`: a new folder, or one holding only files of an
    earlier wavefabric build, is replaced as a whole once everything has been written; a folder with other
    files is refused (``OSError``) unless ``force``, which adds the files beside them.
    """
    from ..sim.export import write_verilog
    from .driver import write_pwg_weights, write_weights

    _check_name(name)
    writer = {SampleRNNTopConfig: write_weights, PWGTopConfig: write_pwg_weights}.get(type(config))
    if weights is not None and writer is None:
        raise ValueError("weights belong to a SampleRNN or PWG design")
    with atomic_folder(folder, force) as tmp:
        if weights is not None:
            writer(config, weights, tmp / f"{name}.weights.npz")
        top = config.top()
        write_verilog(top, tmp / f"{config.name}.v", config.name)
        write_register_map(top.core.regmap, tmp / f"{name}.regmap.json")
        files = sorted([path.name for path in tmp.iterdir()] + ["README.md", "build.sh", "build.tcl"]
                       + (["audio.xdc"] if getattr(config, "audio_out", False) else []))
        texts = [("build.tcl", build_tcl(config, name, top)), ("build.sh", build_sh(name, design)),
                 ("README.md", _readme(config, top.core.regmap, name, design, files))]
        if getattr(config, "audio_out", False):
            texts.append(("audio.xdc", AUDIO_XDC))
        for file_name, text in texts:
            with atomic_write(tmp / file_name) as file:
                file.write(text)
        make_executable(tmp / "build.sh")
        return sorted(path.name for path in tmp.iterdir())


def make_executable(path: Path) -> None:
    """``chmod +x``: add execute permission wherever ``path`` has read permission."""
    mode = path.stat().st_mode
    path.chmod(mode | (mode & 0o444) >> 2)


def require_vivado() -> str:
    """The path of ``vivado``; ``OSError`` with a one-line explanation if it is not on PATH."""
    path = shutil.which("vivado")
    if path is None:
        raise OSError("vivado is not on PATH: source Vivado's settings64.sh, or run the build script where Vivado is")
    return path


def run_build(folder: str | os.PathLike, jobs: int = 4, script: str = "build.sh") -> None:
    """Run ``folder/script`` (Vivado must be on PATH; ``JOBS`` set to ``jobs``).

    Raises ``OSError`` without Vivado or without the script, ``RuntimeError`` when the build fails.
    """
    require_vivado()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, not {jobs!r}")
    path = Path(folder, script)
    if not path.is_file():
        raise OSError(f"no build script {str(path)!r}")
    proc = subprocess.run(["sh", script], cwd=folder, env={**os.environ, "JOBS": str(jobs)})
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}): see the Vivado log in {folder}")
