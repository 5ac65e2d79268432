import numpy as np
import pytest

from wavefabric.model.audio import read_wav, write_wav


def test_roundtrip(tmp_path):
    x = np.sin(np.linspace(0, 20, 1000)) * 0.5
    write_wav(tmp_path / "a.wav", x, 16000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000
    assert np.max(np.abs(y - x)) < 2 / 32768


def test_clips_and_validates(tmp_path):
    write_wav(tmp_path / "a.wav", [2.0, -2.0], 8000)
    y, _ = read_wav(tmp_path / "a.wav")
    assert y.tolist() == [32767 / 32768, -1.0]
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        write_wav(tmp_path / "b.wav", [0.0], 0)
    assert not (tmp_path / "b.wav").exists()
