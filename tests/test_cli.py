import json
import subprocess
import sys

import numpy as np
import pytest

from wavefabric.cli import main
from wavefabric.model.audio import read_wav


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_models_json(capsys):
    status, out, _ = run(capsys, "models", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["samplernn"]["macs_per_sample"] == 290944
    assert data["samplernn (embedding folded)"]["macs_per_sample"] == 28800
    assert 0.99e6 < data["pwg ljspeech v1"]["macs_per_sample"] < 1.01e6  # the hardware order (perf.pwg_macs)


def test_demo_writes_wav_and_reports(capsys, tmp_path):
    out_wav = tmp_path / "demo.wav"
    # The seed configuration: its Verilator build is the one tests/test_rtl_samplernn.py's long run uses too.
    status, out, _ = run(capsys, "demo", "--seconds", "0.01", "-o", str(out_wav))
    assert status == 0
    audio, rate = read_wav(out_wav)
    assert rate == 16000 and len(audio) == 160
    assert "MACs/sample" in out and "top-1 agreement" in out
    assert "bit-exact       yes" in out and "on the simulated accelerator" in out


@pytest.mark.parametrize("model, rate, n", [("samplernn", 16000, 400), ("pwg", 22050, 551)])
def test_generate(capsys, tmp_path, model, rate, n):
    out_wav = tmp_path / "out.wav"
    extra = ["--dim", "8", "--frame_sizes", "2", "2"] if model == "samplernn" else []
    status, out, _ = run(capsys, "generate", model, "--seconds", "0.025", "--fixed", "-o", str(out_wav), *extra)
    assert status == 0, out
    audio, got_rate = read_wav(out_wav)
    assert (got_rate, len(audio)) == (rate, n)
    assert np.all(np.abs(audio) <= 1)


@pytest.mark.parametrize("argv, message", [
    (["demo", "--dim", "0"], "argument --dim: must be >= 1, not 0"),
    (["demo", "--seconds", "abc"], "expected a number of seconds"),
    (["generate", "samplernn", "--seconds", "1", "-o", "/nonexistent/x.wav"],
     "cannot write '/nonexistent/x.wav': folder '/nonexistent' does not exist"),
    (["generate", "wavenet", "--seconds", "1", "-o", "x.wav"], "invalid choice: 'wavenet'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_bad_checkpoint_names_tensor_and_writes_nothing(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    from wavefabric.model import samplernn

    config = samplernn.SampleRNNConfig(frame_sizes=(2, 2), dim=8)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in samplernn.random_state_dict(config, 0).items()}
    del state["sample_level_mlp.output.bias"]
    ckpt = tmp_path / "bad.pt"
    torch.save(state, ckpt)
    out_wav = tmp_path / "out.wav"
    status, _, err = run(capsys, "generate", "samplernn", "--checkpoint", str(ckpt), "--seconds", "0.01",
                         "--dim", "8", "--frame-sizes", "2", "2", "-o", str(out_wav))
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "sample_level_mlp.output.bias" in err
    assert list(tmp_path.iterdir()) == [ckpt]


def test_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "wavefabric", "models"], capture_output=True, text=True,
                            check=True)
    assert "290,944 MACs per sample" in result.stdout


def test_estimate_gemm_json(capsys):
    status, out, _ = run(capsys, "estimate", "gemm", "--rows", "8", "--cols", "8", "--m", "128", "--n", "1024",
                         "--k", "192", "--json")
    figures = json.loads(out)
    assert status == 0
    assert figures["ideal_cycles"] == 128 * 1024 * 192 / 64
    assert figures["utilization"] >= 0.99 and figures["fill_drain_utilization"] < 0.94


@pytest.mark.parametrize("argv", [
    ["sim", "gemm", "--rows", "2", "--cols", "3", "--m", "5", "--n", "4", "--k", "7", "--seed", "2"],
    ["sim", "weightnorm", "--rows", "3", "--cols", "10", "--lanes", "4", "--max-row-length", "16", "--seed", "1"],
])
def test_sim_json_is_bit_exact_and_on_model(capsys, argv):
    status, out, _ = run(capsys, *argv, "--json")
    figures = json.loads(out)
    assert status == 0
    assert figures["bit_exact"] is True
    assert figures["cycles"] == figures["model_cycles"]


def test_verilog_and_synth(capsys, tmp_path):
    path = tmp_path / "array.v"
    status, out, _ = run(capsys, "verilog", "systolic", "--rows", "2", "--cols", "2", "--max-k", "8", "-o", str(path))
    assert status == 0 and "module systolic(" in path.read_text()
    status, out, _ = run(capsys, "synth", "systolic", "--rows", "1", "--cols", "1", "--max-k", "4", "--json")
    counts = json.loads(out)
    assert status == 0 and counts["dsp48e1"] == 1 and counts["share"]["dsp48e1"] == 1 / 220


@pytest.mark.parametrize("argv, message", [
    (["verilog", "gemm", "--rows", "0", "-o", "x.v"], "argument --rows: must be >= 1, not 0"),
    (["sim", "gemm", "--weight", "Q20.14"], "weight width 34 does not fit the 25x18 DSP48E1 multiplier"),
    (["sim", "gemm", "--act", "16"], "expected a format like Q4.12"),
    (["sim", "gemm", "--k", "5000"], "--k 5000 exceeds --max-k 4096"),
    (["sim", "gemm", "--p-valid-ready", "0"], "must be in (0, 1]"),
    (["estimate", "weightnorm"], "weightnorm has no 'estimate' yet, only 'verilog', 'synth', 'sim'"),
])
def test_engine_errors_are_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_sim_and_estimate_gru(capsys):
    argv = ["--input", "5", "--hidden", "3", "--layers", "2", "--lanes", "2", "--simd", "2"]
    status, out, _ = run(capsys, "sim", "gru", *argv, "--steps", "3", "--seed", "4", "--json")
    sim = json.loads(out)
    assert status == 0 and sim["bit_exact"] is True
    assert sim["cycles_per_step"] == sim["model_cycles_per_step"]
    status, out, _ = run(capsys, "estimate", "gru", *argv, "--json")
    assert status == 0 and json.loads(out)["model_cycles_per_step"] == sim["model_cycles_per_step"]


def test_sim_and_estimate_pwg(capsys):
    status, out, _ = run(capsys, "sim", "pwg-layer", "--dilation", "4", "--frames", "5", "--hop", "4", "--rows",
                         "2", "--cols", "4", "--seed", "1", "--residual", "4", "--gate", "8", "--skip", "4", "--json")
    sim = json.loads(out)
    assert status == 0 and sim["bit_exact"] is True and sim["cycles"] == sim["model_cycles"]
    assert 0 < sim["utilization"] < 1
    status, out, _ = run(capsys, "estimate", "pwg", "--rows", "16", "--cols", "16", "--clock", "150e6",
                         "--int8-pack", "--json")
    figures = json.loads(out)
    assert status == 0 and figures["dsp48e1"] == 129 and figures["real_time_factor"] > 1


PWG_SMALL = ["--rows", "2", "--cols", "4", "--residual", "4", "--gate", "8", "--skip", "4", "--aux", "3", "--layers",
             "3", "--stacks", "1", "--upsample-scales", "2", "2", "--aux-context-window", "1"]


@pytest.mark.parametrize("backend, store", [("amaranth", "chip"), ("verilator", "chip"), ("verilator", "ddr")])
def test_sim_pwg_writes_the_hardwares_audio(capsys, tmp_path, backend, store):
    """The whole generator, small, on both backends, its activations on chip or in the simulated DDR: bit-exact
    with PWGFixed, the cycle model's count (on chip), and the WAV holds the PCM the simulated hardware streamed."""
    out_wav = tmp_path / "pwg.wav"
    status, out, _ = run(capsys, "sim", "pwg", *PWG_SMALL, "--frames", "3", "--seed", "2", "--backend", backend,
                         "--store", store, "-o", str(out_wav), "--json")
    figures = json.loads(out)
    assert status == 0 and figures["bit_exact"] is True and figures["store"] == store
    if store == "chip":
        assert figures["cycles"] == figures["model_cycles"]
    else:
        assert figures["cycles"] > figures["cycles_with_activations_on_chip"]
    assert figures["samples"] == 12 and figures["backend"] == backend
    assert figures["real_time_factor"] == pytest.approx(100e6 * 12 / (22050 * figures["cycles"]))
    audio, rate = read_wav(out_wav)
    assert rate == 22050 and len(audio) == 12 and np.abs(audio).max() > 0
