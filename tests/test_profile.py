"""wavefabric profile and --formats: the table, the plot and the formats JSON; formats that do not fit refused in
one line; a run that saturates warns in one line."""

import json
import subprocess
import sys

import numpy as np

from wavefabric.model.audio import write_wav
from wavefabric.model.pwg import PWGConfig, PWGFormats
from wavefabric.model.samplernn import SampleRNNConfig, SampleRNNFormats

TINY = ["--residual", "8", "--gate", "16", "--skip", "8", "--aux", "10", "--layers", "3", "--stacks", "1",
        "--upsample-scales", "2", "2", "--aux-context-window", "1"]
CONFIG = PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=10, layers=3, stacks=1,
                   upsample_scales=(2, 2), aux_context_window=1)


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavefabric", *map(str, argv)], capture_output=True, text=True,
                          timeout=600)


def test_profile_pwg_writes_the_table_the_plot_and_the_formats(tmp_path):
    folder = tmp_path / "out"
    proc = cli("profile", "pwg", *TINY, "--seed", "2", "-o", folder)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["tensor", "kind", "min"]
    assert any(line.startswith("first_conv ") for line in lines) and any(line.startswith("h.2 ") for line in lines)
    assert lines[-1].startswith("35 tensors; none saturates; formats -> ")
    formats = PWGFormats.load(folder / "pwg.formats.json", CONFIG)
    assert formats != PWGFormats.uniform(CONFIG)
    assert (folder / "pwg.profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sim_takes_formats_and_warns_when_a_run_saturates(tmp_path):
    path = tmp_path / "f.json"
    fracs = PWGFormats.uniform(CONFIG).as_dict() | {"x": 14, "first_conv": 16}  # x in Q2.14: x0 saturates
    path.write_text(json.dumps({"network": "pwg", "width": 16, "frac": fracs}))
    proc = cli("sim", "pwg", *TINY, "--rows", "2", "--cols", "4", "--backend", "amaranth", "--formats", path,
               "--json")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["bit_exact"] and "the front end" in figures["saturated"]
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("wavefabric: warning: values saturated in the front end")


def test_formats_that_do_not_fit_are_refused_in_one_line(tmp_path):
    path = tmp_path / "f.json"
    PWGFormats.uniform(CONFIG).save(path, CONFIG)
    other = [*TINY[:8], "--layers", "4", "--stacks", "1", "--upsample-scales", "2", "2", "--aux-context-window", "1"]
    cases = [
        (["sim", "pwg", *other, "--rows", "2", "--cols", "4", "--formats", path], "no format for layers.3.conv"),
        (["generate", "pwg", "--seconds", "0.01", "-o", tmp_path / "a.wav", "--formats", path],
         "--formats does not apply without --fixed"),
        (["generate", "pwg", "--fixed", "--seconds", "0.01", "-o", tmp_path / "a.wav", "--formats",
          tmp_path / "none.json"], "cannot read the formats"),
    ]
    for argv, message in cases:
        proc = cli(*argv)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.wav").exists()


def test_profile_samplernn_on_given_audio_feeds_generate(tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    write_wav(tmp_path / "tone.wav", tone, 16000)
    proc = cli("profile", "samplernn", "--audio", tmp_path / "tone.wav", "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].endswith(f"formats -> {tmp_path / 'samplernn.formats.json'}, plot -> "
                                                 f"{tmp_path / 'samplernn.profile.png'}")
    formats = SampleRNNFormats.load(tmp_path / "samplernn.formats.json", SampleRNNConfig())
    proc = cli("generate", "samplernn", "--fixed", "--seconds", "0.05", "-o", tmp_path / "a.wav", "--formats",
               tmp_path / "samplernn.formats.json")
    assert proc.returncode == 0 and (tmp_path / "a.wav").exists(), proc.stderr
    assert formats.frac  # a format for every tensor of its own


def test_a_corrupt_calibration_file_is_refused_in_one_line(tmp_path):
    """Not a WAV, a truncated WAV, not a .npy: one line, exit 2, and no output folder made."""
    (tmp_path / "bad.wav").write_bytes(b"garbage" * 10)
    write_wav(tmp_path / "tone.wav", np.zeros(100), 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "tone.wav").read_bytes()[:30])
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    cases = [(["samplernn", "--audio", tmp_path / "bad.wav"], "bad.wav: not a WAV file (file does not start"),
             (["samplernn", "--audio", tmp_path / "cut.wav"], "cut.wav: not a WAV file (truncated)"),
             (["pwg", *TINY, "--mel", tmp_path / "bad.npy"], "bad.npy: not a NumPy .npy array")]
    for argv, message in cases:
        proc = cli("profile", *argv, "-o", tmp_path / "out")
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

