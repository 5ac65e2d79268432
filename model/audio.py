"""WAV input and output (16-bit PCM, mono) with the standard library's ``wave`` module."""

from __future__ import annotations

import os
import wave

import numpy as np

from .files import atomic_write

__all__ = ["write_wav", "read_wav"]


def write_wav(path: str | os.PathLike, samples, sample_rate: int) -> None:
    """Write float samples in [-1, 1] as 16-bit mono PCM, atomically. Values outside [-1, 1] are clipped."""
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767), -32768, 32767).astype("<i2")
    with atomic_write(path, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file: (float samples in [-1, 1) of the first channel, sample rate)."""
    with wave.open(os.fspath(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM is supported, not {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
        return data[:, 0].astype(np.float64) / 32768, w.getframerate()
