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


def test_nan_or_wrong_length_writes_nothing(tmp_path):
    from wavefabric.model.audio import write_wav_blocks

    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "a.wav", [0.0, np.nan], 8000)
    with pytest.raises(ValueError, match="fewer than 3 samples"):
        write_wav_blocks(tmp_path / "a.wav", [np.zeros(1), np.zeros(1)], 3, 8000)
    assert list(tmp_path.iterdir()) == []
    write_wav_blocks(tmp_path / "b.wav", [np.zeros(2), np.full(1, 0.5)], 3, 8000)
    assert read_wav(tmp_path / "b.wav")[0].tolist() == [0.0, 0.0, 16384 / 32768]


def test_integer_pcm_is_written_as_it_is(tmp_path):
    path = tmp_path / "pcm.wav"
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    write_wav(path, pcm, 16000)
    samples, rate = read_wav(path)
    assert rate == 16000 and np.array_equal(np.round(samples * 32768), pcm)
    with pytest.raises(ValueError, match="16-bit"):
        write_wav(tmp_path / "wide.wav", np.array([40000]), 16000)
    assert not (tmp_path / "wide.wav").exists()
