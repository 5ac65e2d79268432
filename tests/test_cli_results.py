"""No wrong result with exit 0: options that would not act are refused, short or empty outputs are refused."""

import subprocess
import sys


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavefabric", *map(str, argv)], capture_output=True, text=True,
                          timeout=600)


def test_options_that_would_not_act_are_refused(tmp_path):
    cases = [
        (["estimate", "gemm", "--seed", "3"], "unrecognized arguments: --seed 3"),
        (["estimate", "gru", "--p-valid-ready", "0.5"], "unrecognized arguments: --p-valid-ready 0.5"),
        (["generate", "pwg", "--sample-rate", "8000", "--seconds", "1", "-o", tmp_path / "a.wav"],
         "unrecognized arguments: --sample-rate 8000"),
        (["generate", "samplernn", "--mel", "m.npy", "--seconds", "1", "-o", tmp_path / "a.wav"],
         "unrecognized arguments: --mel m.npy"),
        (["build", "pynq-z1", "--design", "audio", "--hidden", "32", "-o", tmp_path / "b"],
         "--hidden does not apply to --design audio"),
        (["build", "pynq-z1", "--design", "gru", "--pwm-bits", "4", "-o", tmp_path / "b"],
         "--pwm-bits does not apply to --design gru"),
        (["build", "pynq-z1", "--design", "gru", "--jobs", "2", "-o", tmp_path / "b"],
         "--jobs does not apply without --run"),
        (["sim", "pwg-layer", "--frames", "300"], "--frames 300 must be from 2 (the upsampler's edge frames) to "
                                                   "--max-frames 256"),
        (["sim", "pwg-layer", "--dilation", "1024"], "--dilation 1024 exceeds --max-dilation 512"),
        (["generate", "samplernn", "--seconds", "1e-5", "-o", tmp_path / "a.wav"],
         "--seconds 1e-05 is less than one sample at 16000 Hz"),
        (["estimate", "pwg", "--store", "ddr"], "estimate pwg models the activations on chip"),
        (["sim", "pwg", "--latency", "20"], "--latency does not apply to --store chip"),
        (["sim", "pwg", "--max-frames", "4"], "--max-frames does not apply to sim"),
        (["estimate", "pwg", "--max-frames", "4"], "--max-frames does not apply to estimate"),
        (["verilog", "pwg", "--skip", "100", "-o", tmp_path / "p.v"],
         "the output layers run on the residual engine only with skip_channels <= residual_channels"),
        (["verilog", "gemm", "--name", "my gemm", "-o", tmp_path / "g.v"], "a module name must be letters"),
    ]
    for argv, message in cases:
        proc = cli(*argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_nested_figures_are_printed_without_json(tmp_path):
    # The estimate's cycles by part must show in the text output too.
    proc = cli("estimate", "pwg", "--rows", "1", "--cols", "2", "--residual", "4", "--gate", "4", "--skip", "2",
               "--aux", "2")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert {"cycles.front_end", "cycles.layers", "cycles.total"} <= set(lines)


def test_version_and_legal_default_module_name(tmp_path):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("wavefabric 0.")
    out = tmp_path / "layer.v"
    proc = cli("verilog", "pwg-layer", "--rows", "1", "--cols", "2", "--residual", "2", "--gate", "2", "--skip", "2",
               "--hop", "2", "--max-dilation", "2", "--max-frames", "4", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "module pwg_layer(" in out.read_text()
