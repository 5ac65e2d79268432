"""Bad input files (checkpoints, mels): one line, exit 2, no traceback and no output; fp16/bf16 are widened."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wavefabric.model import samplernn  # noqa: E402
from wavefabric.model.audio import read_wav  # noqa: E402
from wavefabric.model.pwg import PWGConfig, random_state_dict  # noqa: E402

SMALL = ["--dim", "8", "--frame-sizes", "2", "2"]


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavefabric", *map(str, argv)], capture_output=True, text=True,
                          timeout=600)


def assert_refused(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def small_state(dtype):
    config = samplernn.SampleRNNConfig(frame_sizes=(2, 2), dim=8)
    return {k: torch.from_numpy(np.asarray(v)).to(dtype) for k, v in samplernn.random_state_dict(config, 0).items()}


def test_bad_checkpoints(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(small_state(torch.float32), good)
    data = good.read_bytes()
    cases = {"empty.pt": b"", "random.pt": np.random.default_rng(0).bytes(2000), "truncated.pt": data[:len(data) // 2],
             "plain.pkl": pickle.dumps({"a": 1}, protocol=4)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    out = tmp_path / "out.wav"
    expected = {"empty.pt": "is empty", "random.pt": "cannot be loaded", "truncated.pt": "cannot be loaded",
                "plain.pkl": "cannot be loaded", "tensor.pt": "holds a Tensor, not a state dict",
                "missing.pt": "No such file or directory", ".": "Is a directory"}
    for name, message in expected.items():
        assert_refused(cli("generate", "samplernn", "--checkpoint", tmp_path / name, "--seconds", "0.01", *SMALL,
                           "-o", out), message)
    assert not out.exists()


def test_half_precision_checkpoints_are_widened(tmp_path):
    for dtype in (torch.bfloat16, torch.float16):
        ckpt = tmp_path / "half.pt"
        torch.save(small_state(dtype), ckpt)
        out = tmp_path / "out.wav"
        proc = cli("generate", "samplernn", "--checkpoint", ckpt, "--seconds", "0.01", *SMALL, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert len(read_wav(out)[0]) == 160


def test_bad_mels(tmp_path):
    mel = np.random.default_rng(0).standard_normal((10, 80))
    np.save(tmp_path / "short.npy", mel[:2])
    nan = mel.copy()
    nan[3, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "shape.npy", mel[:, :70])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not an array")
    (tmp_path / "empty.npy").write_bytes(b"")
    out = tmp_path / "out.wav"
    expected = {"short.npy": "has 2 frames (0.02 s at hop 256), fewer than the 9 that --seconds 0.1 needs",
                "nan.npy": "holds NaN or infinite values", "shape.npy": "expected a 2-D array of numbers with 80",
                "objects.npy": "not a NumPy .npy array", "text.npy": "not a NumPy .npy array",
                "empty.npy": "not a NumPy .npy array"}
    for name, message in expected.items():
        assert_refused(cli("generate", "pwg", "--mel", tmp_path / name, "--seconds", "0.1", "-o", out), message)
    assert not out.exists()


def test_sim_samplernn_bad_inputs(tmp_path):
    """The accelerator's simulation refuses, in one line and before writing anything: a checkpoint of other sizes,
    a temperature the sampler cannot hold, and no audio at all."""
    other = tmp_path / "other.pt"
    torch.save(small_state(torch.float32), other)  # dim 8, frame sizes 2 2: not the default sizes
    out = tmp_path / "out.wav"
    assert_refused(cli("sim", "samplernn", "--checkpoint", other, "-o", out), "frame_level_rnns")
    for argv, message in ((["--temperature", "0"], "argument --temperature"),
                          (["--temperature", "-1"], "argument --temperature"),
                          (["--temperature", "17"], "argument --temperature"),
                          (["--seconds", "0"], "argument --seconds"),
                          (["--seconds", "1e-5"], "is 0 samples")):
        assert_refused(cli("sim", "samplernn", *argv, "-o", out), message)
    assert not out.exists()


#: A small generator for the simulated PWG accelerator: three layers, hop 4 (a cols 4 array).
PWG_SMALL = ["--rows", "2", "--cols", "4", "--residual", "4", "--gate", "8", "--skip", "4", "--aux", "3", "--layers",
             "3", "--stacks", "1", "--upsample-scales", "2", "2", "--aux-context-window", "1", "--backend", "amaranth"]


def test_sim_pwg_bad_inputs(tmp_path):
    """The PWG accelerator's simulation refuses, in one line and before writing anything: mels of the wrong channel
    count, with NaN or infinite values, with no frames (or too few for the upsampler's table), and a checkpoint
    of other sizes."""
    mel = np.random.default_rng(0).standard_normal((4, 3))
    np.save(tmp_path / "channels.npy", mel[:, :2])
    inf = mel.copy()
    inf[1, 1] = np.inf
    np.save(tmp_path / "inf.npy", inf)
    np.save(tmp_path / "empty.npy", mel[:0])
    np.save(tmp_path / "one.npy", mel[:1])
    checkpoint = tmp_path / "ljspeech.pt"
    torch.save({name: torch.from_numpy(value) for name, value in random_state_dict(PWGConfig(), 0).items()},
               checkpoint)
    out = tmp_path / "out.wav"
    for argv, message in ((["--mel", tmp_path / "channels.npy"], "expected a 2-D array of numbers with 3 channels"),
                          (["--mel", tmp_path / "inf.npy"], "holds NaN or infinite values"),
                          (["--mel", tmp_path / "empty.npy"], "has no frames"),
                          (["--mel", tmp_path / "one.npy"], "a job is 2 to 256 frames, not 1"),
                          (["--checkpoint", checkpoint], "tensor 'first_conv.bias' has shape (64,), expected (4,)")):
        assert_refused(cli("sim", "pwg", *PWG_SMALL, *argv, "-o", out), message)
    assert not out.exists()


def test_sim_samplernn_formats(tmp_path):
    """--formats: a JSON of other sizes is refused in one line; formats that saturate make a bit-exact run that
    warns in one line naming where."""
    bad = tmp_path / "bad.json"
    samplernn.SampleRNNFormats.default(samplernn.SampleRNNConfig(frame_sizes=(2, 2), n_rnn=1, dim=8)).save(bad)
    out = tmp_path / "out.wav"
    assert_refused(cli("sim", "samplernn", "--formats", bad, "-o", out), "no format for tier0.gru1.weight")
    assert not out.exists()
    config = samplernn.SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16)
    tight = samplernn.SampleRNNFormats.default(config)
    tight = samplernn.SampleRNNFormats(config, {**tight.frac, "mlp.hidden": 15})  # [-1, 1): the hidden saturates
    tight.save(tmp_path / "tight.json")
    proc = cli("sim", "samplernn", "--frame-sizes", "4", "2", "--n-rnn", "1", "--dim", "8", "--q-levels", "16",
               "--lanes", "2", "--simd", "4", "--gru-lanes", "2", "--seconds", "0.0006", "--backend", "amaranth",
               "--formats", tmp_path / "tight.json", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"bit_exact": true' in proc.stdout and '"mlp.hidden"' in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "saturated in mlp.hidden" in warning[0]
